"""
The Asterisk Manager Interface, server side, answering as Asterisk does.

Every answer here is shaped after a session recorded from a real Asterisk
(``tests/fixtures/ami``):

- on connect, the banner ``Asterisk Call Manager/13.0.0`` and CRLF, with no
  blank line after it, before the client says anything;
- ``Login``: ``Response: Success`` / ``Message: Authentication accepted``
  then ``Event: FullyBooted``; a wrong secret gets a second of silence, then
  ``Response: Error`` / ``Message: Authentication failed`` and the close;
- ``Logoff``: ``Response: Goodbye`` / ``Message: Thanks for all the fish.``
  and the close;
- in every response ``ActionID`` is the second line; events carry no
  ``ActionID`` but ``OriginateResponse``;
- ``Originate`` (``Async: true``) is acknowledged at once with ``Message:
  Originate successfully queued``; what Asterisk can refuse at once it
  refuses with ``Response: Error`` (``Channel not specified``, ``Invalid
  channel``, ``Invalid timeout``) and no event follows;
- ``Hangup`` answers ``Message: Channel Hungup`` (``No such channel`` when
  it is gone) before the ``Hangup`` events; ``PlayDTMF`` answers ``DTMF
  successfully queued``; ``Setvar`` ``Variable Set``; ``Getvar`` carries
  ``Variable`` and ``Value`` (empty when unset) and no ``Message``.

What the actions *do* (ring, answer, open AudioSocket legs, hang up) belongs
to the simulated PBX behind :class:`IManagerBackend`; this module only speaks
the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

__all__ = [
    "BANNER",
    "AMIServerFactory",
    "AMIServerProtocol",
    "IManagerBackend",
    "ManagerMessage",
    "encode_message",
]

BANNER = "Asterisk Call Manager/13.0.0"

ManagerMessage = list[tuple[str, str]]
"""One AMI message as (key, value) pairs in wire order."""


def encode_message(headers: Sequence[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


class IManagerBackend(Interface):
    """What the AMI server asks the simulated PBX."""

    username = Attribute("The manager user name accepted by Login.")
    secret = Attribute("Its secret.")
    login_delay = Attribute("Seconds of silence before a refused login's answer.")

    def session_opened(session: AMIServerProtocol) -> None:  # noqa: N805
        """A client logged in: it gets every event from now on."""

    def session_closed(session: AMIServerProtocol) -> None:  # noqa: N805
        """A client went away."""

    def action(
        session: AMIServerProtocol,  # noqa: N805
        name: str,
        message: ManagerMessage,
    ) -> None:
        """Carry out an action; the backend answers with ``session.respond``."""


def _get(message: ManagerMessage, key: str) -> str | None:
    wanted = key.lower()
    for k, v in message:
        if k.lower() == wanted:
            return v
    return None


class AMIServerProtocol(LineOnlyReceiver):
    """One manager session; see the module docstring."""

    _log = Logger()
    delimiter = b"\r\n"
    MAX_LENGTH = 16384

    def __init__(self, backend: IManagerBackend, clock: IReactorTime) -> None:
        self.backend = backend
        self.clock = clock
        self.logged_in = False
        self.events_on = True
        self._headers: ManagerMessage = []
        self._lost: list[Deferred[None]] = []
        self.closed = False
        self.refusing: IDelayedCall | None = None
        self.actions: list[ManagerMessage] = []
        """Every action received, for tests to look at."""

    def connectionMade(self) -> None:
        self.sendLine(BANNER.encode())

    def when_lost(self) -> Deferred[None]:
        """Fires once this session's connection has closed."""
        if self.closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost.append(d)
        return d

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        if self.refusing is not None and self.refusing.active():
            self.refusing.cancel()
        if self.logged_in:
            self.logged_in = False
            self.backend.session_closed(self)
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(None)

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if text:
            key, _, value = text.partition(":")
            self._headers.append(
                (key.strip(), value[1:] if value[:1] == " " else value)
            )
            return
        if not self._headers:
            return
        message, self._headers = self._headers, []
        self.actions.append(message)
        name = (_get(message, "Action") or "").strip()
        self._dispatch(name, message)

    # -- writing -------------------------------------------------------------

    def respond(
        self,
        message: ManagerMessage,
        response: str,
        fields: Sequence[tuple[str, str]] = (),
    ) -> None:
        """A response to ``message``: Response, then its ActionID, then ``fields``."""
        headers = [("Response", response)]
        action_id = _get(message, "ActionID")
        if action_id is not None:
            headers.append(("ActionID", action_id))
        headers.extend(fields)
        self.send(headers)

    def send(self, headers: Sequence[tuple[str, str]]) -> None:
        if self.transport is not None and self.connected:
            self.transport.write(encode_message(headers))

    def event(self, headers: Sequence[tuple[str, str]]) -> None:
        """An event, if this session asked for events."""
        if self.logged_in and self.events_on:
            self.send(headers)

    # -- actions -------------------------------------------------------------

    def _dispatch(self, name: str, message: ManagerMessage) -> None:
        lowered = name.lower()
        if lowered == "login":
            self._login(message)
        elif lowered == "logoff":
            self.respond(message, "Goodbye", [("Message", "Thanks for all the fish.")])
            self.transport.loseConnection()
        elif not self.logged_in:
            self.respond(message, "Error", [("Message", "Permission denied")])
        elif not name:
            self.respond(message, "Error", [("Message", "Missing action in request")])
        else:
            self.backend.action(self, name, message)

    def _login(self, message: ManagerMessage) -> None:
        backend = self.backend
        if (_get(message, "Username") or "") == backend.username and (
            _get(message, "Secret") or ""
        ) == backend.secret:
            self.events_on = (_get(message, "Events") or "on").strip().lower() != "off"
            self.respond(message, "Success", [("Message", "Authentication accepted")])
            self.logged_in = True
            self.event(
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", "0"),
                    ("LastReload", "0"),
                    ("Status", "Fully Booted"),
                ]
            )
            backend.session_opened(self)
            return

        def refuse() -> None:
            if self.connected:
                self.respond(message, "Error", [("Message", "Authentication failed")])
                self.transport.loseConnection()

        self._log.info("AMI login refused for {user!r}", user=_get(message, "Username"))
        self.refusing = self.clock.callLater(backend.login_delay, refuse)


class AMIServerFactory(Factory):
    """Builds one :class:`AMIServerProtocol` per manager connection."""

    def __init__(self, backend: IManagerBackend, clock: IReactorTime) -> None:
        self.backend = backend
        self.clock = clock
        self.sessions: list[AMIServerProtocol] = []

    def buildProtocol(self, addr: object) -> AMIServerProtocol:
        protocol = AMIServerProtocol(self.backend, self.clock)
        protocol.factory = self
        self.sessions.append(protocol)
        return protocol


def get_header(message: ManagerMessage, key: str) -> str | None:
    """The first value of ``key`` (case-insensitive), as AMI reads it."""
    return _get(message, key)


def get_all(message: ManagerMessage, key: str) -> list[str]:
    wanted = key.lower()
    return [v for k, v in message if k.lower() == wanted]
