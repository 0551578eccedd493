"""
A small Asterisk Manager Interface (AMI) client on Twisted.

No maintained Twisted AMI library can be installed from PyPI, and gatekeeper
needs only a handful of actions, so this is the part of AMI we use, written
against sessions recorded from a real Asterisk (``tests/fixtures/ami``).

Wire protocol
=============

AMI is text over TCP; every line ends with CRLF.

* On connect Asterisk sends one banner line, ``Asterisk Call Manager/13.0.0``,
  with no blank line after it, before the client sends anything.
* After that every message is a block of ``Key: value`` lines ended by an empty
  line.  Keys repeat (``Variable:`` in an Originate), order matters to nobody
  but a reader, and a value may be empty (``Value: `` for an unset variable) or
  carry a bare LF (``Uniqueid length exceeds maximum of 149\\n``).
* The client sends *actions*: ``Action: Name`` first, then an ``ActionID`` we
  choose and the action's headers.
* Asterisk sends *responses* (``Response: Success | Error | Goodbye``) with the
  ``ActionID`` of the action they answer, and *events* (``Event: Name``), which
  carry no ``ActionID`` except ``OriginateResponse`` and the events of a list
  (a response with ``EventList: start``, list events carrying the ActionID,
  then one with ``EventList: Complete``).  Events and responses interleave
  freely, and two calls' events interleave message by message.
* ``Login`` with a wrong secret is answered after about a second with
  ``Response: Error`` / ``Authentication failed`` and the connection is closed.
* ``Originate`` with ``Async: true`` is acknowledged at once with
  ``Response: Success`` / ``Originate successfully queued`` (or
  ``Response: Error`` for what Asterisk can check at once: ``Extension does not
  exist.``, ``Invalid channel``, ``Invalid timeout``, ...); its outcome comes
  later as an ``OriginateResponse`` event with the same ActionID, whose
  ``Reason`` says what happened and whose ``Uniqueid`` is ``<unknown>`` on
  failure unless a ``ChannelId`` was sent.

Everything above a bounded size (line, header count, message bytes) or not in
this shape is treated as a peer we do not understand: we log why and hang up,
and the dialer's reconnect loop takes it from there.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

__all__ = [
    "AMIConnectionLost",
    "AMIError",
    "AMIFactory",
    "AMIProtocol",
    "AMITimeout",
    "ActionIDs",
    "LoginRefused",
    "Message",
    "NoSuchChannel",
    "OriginateRefused",
    "OriginateResponse",
    "Reply",
    "encode_action",
]

BANNER_PREFIX = "Asterisk Call Manager"
"""What every AMI banner starts with (``.../13.0.0``, or ``Proxy/...``)."""

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")

# Headers whose value is never written to a log line, whatever the level.
_SECRET_KEYS = frozenset({"secret", "key"})

_UNKNOWN_UNIQUEIDS = frozenset({"<unknown>", "<null>", ""})


class AMIError(Exception):
    """Asterisk said no, or the AMI session could not say anything."""

    def __init__(self, message: str, response: Message | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class LoginRefused(AMIError):
    """The manager user or its secret was refused; retrying will not help
    until the configuration changes."""


class NoSuchChannel(AMIError):
    """The channel named in an action no longer exists (often: already hung
    up)."""


class OriginateRefused(AMIError):
    """Asterisk refused an Originate at once (``Response: Error``); no
    ``OriginateResponse`` event will follow."""


class AMIConnectionLost(AMIError):
    """The AMI connection closed before Asterisk answered."""


class AMITimeout(AMIError):
    """Asterisk did not answer an action in time."""


@frozen
class Message:
    """One AMI message: its headers in wire order, repeated keys kept."""

    headers: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (AMI keys are case-insensitive)."""
        wanted = key.lower()
        for k, v in self.headers:
            if k.lower() == wanted:
                return v
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key``, in wire order."""
        wanted = key.lower()
        return [v for k, v in self.headers if k.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def response(self) -> str | None:
        """``Success``/``Error``/``Goodbye``... when this is a response."""
        if self.headers and self.headers[0][0].lower() == "response":
            return self.headers[0][1]
        return None

    @property
    def event(self) -> str | None:
        """The event name when this is an event."""
        if self.headers and self.headers[0][0].lower() == "event":
            return self.headers[0][1]
        return None

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def redacted(self) -> list[tuple[str, str]]:
        """Headers fit for a log line: secrets replaced."""
        return [
            (k, "********" if k.lower() in _SECRET_KEYS else v) for k, v in self.headers
        ]


@frozen
class Reply:
    """An action's response and, for list actions, the events of the list."""

    response: Message
    events: tuple[Message, ...] = ()


@frozen
class OriginateResponse:
    """What the ``OriginateResponse`` event said about one Originate."""

    success: bool
    reason: int | None
    channel: str
    uniqueid: str | None
    """``None`` when Asterisk said ``<unknown>`` (failed, no ChannelId sent)."""
    event: Message = field(repr=False, eq=False)

    @classmethod
    def from_event(cls, event: Message) -> OriginateResponse:
        reason_text = (event.get("Reason") or "").strip()
        uniqueid = (event.get("Uniqueid") or "").strip()
        return cls(
            success=(event.get("Response") or "").strip().lower() == "success",
            reason=int(reason_text) if reason_text.isdigit() else None,
            channel=event.get("Channel") or "",
            uniqueid=None if uniqueid in _UNKNOWN_UNIQUEIDS else uniqueid,
            event=event,
        )


class ActionIDs:
    """The default ActionID source: ``gk-1``, ``gk-2``, ... per factory.

    Any ``Callable[[str], str]`` taking the action name will do; tests pass
    one that replays the ActionIDs of a recorded session.
    """

    def __init__(self, prefix: str = "gk") -> None:
        self._prefix = prefix
        self._counter: Iterator[int] = itertools.count(1)

    def __call__(self, action: str) -> str:
        return f"{self._prefix}-{next(self._counter)}"


def _check_text(what: str, text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"AMI {what} must be str, not {type(text).__name__}")
    if "\r" in text or "\n" in text:
        # A CR or LF would end the header (or the message) early and let the
        # rest be read as headers or actions of its own.
        raise ValueError(f"AMI {what} may not contain CR or LF: {text[:40]!r}")
    return text


def encode_action(headers: Iterable[tuple[str, str]]) -> bytes:
    """The bytes of one AMI message, refusing header injection."""
    parts: list[str] = []
    for key, value in headers:
        _check_text("header name", key)
        _check_text(f"value of {key}", value)
        if not key or ":" in key:
            raise ValueError(f"bad AMI header name {key!r}")
        parts.append(f"{key}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


@define
class _Pending:
    action: str
    deferred: Deferred[Reply]
    response: Message | None = None
    events: list[Message] = field(factory=list)


_KEY = re.compile(r"[!-9;-~]+")  # printable ASCII but ':' and space


class AMIProtocol(LineOnlyReceiver):
    """
    One AMI session: parses what Asterisk sends, matches responses to actions
    by ActionID and hands events to subscribers.

    Each action's Deferred gets its own ActionID from ``action_ids`` and is
    answered by the response carrying it, or failed with
    :class:`AMITimeout` after ``action_timeout`` seconds on ``clock``, or with
    :class:`AMIConnectionLost`.
    """

    _log = Logger()

    delimiter = b"\r\n"
    MAX_LENGTH = 8192
    MAX_HEADERS = 512
    MAX_MESSAGE_BYTES = 256 * 1024

    def __init__(
        self,
        clock: IReactorTime,
        action_ids: Callable[[str], str] | None = None,
        action_timeout: float = 10.0,
    ) -> None:
        self._clock = clock
        self._action_ids = action_ids if action_ids is not None else ActionIDs()
        self._action_timeout = action_timeout
        self.banner: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._size = 0
        self._pending: dict[str, _Pending] = {}
        self._originates: dict[str, Deferred[OriginateResponse]] = {}
        self._subscribers: list[tuple[str | None, Callable[[Message], object]]] = []
        self._banner_waiters: list[Deferred[str]] = []
        self._lost_waiters: list[Deferred[BaseException]] = []
        self._lost: Failure | None = None

    # -- connection lifecycle -------------------------------------------------

    def when_banner(self) -> Deferred[str]:
        """Fires with the banner line once Asterisk has sent it."""
        if self.banner is not None:
            return succeed(self.banner)
        if self._lost is not None:
            return fail(AMIConnectionLost("AMI connection closed before the banner"))
        d: Deferred[str] = Deferred(self._banner_waiters.remove)
        self._banner_waiters.append(d)
        return d

    def when_lost(self) -> Deferred[BaseException]:
        """Fires with the reason (an exception) once this connection has
        closed."""
        d: Deferred[BaseException] = Deferred(self._lost_waiters.remove)
        if self._lost is not None:
            d.callback(self._lost.value)
        else:
            self._lost_waiters.append(d)
        return d

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:  # pragma: no cover - the reactor always passes one
            reason = Failure(AMIConnectionLost("connection closed"))
        self._lost = reason
        lost = AMIConnectionLost(f"AMI connection closed: {reason.getErrorMessage()}")
        banner_waiters, self._banner_waiters = self._banner_waiters, []
        for bw in banner_waiters:
            bw.errback(AMIConnectionLost("AMI connection closed before the banner"))
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.deferred.errback(lost)
        originates, self._originates = self._originates, {}
        for d in originates.values():
            d.errback(lost)
        lost_waiters, self._lost_waiters = self._lost_waiters, []
        for lw in lost_waiters:
            lw.callback(reason.value)

    # -- parsing --------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if self.banner is None:
            if not text.startswith(BANNER_PREFIX):
                self._violation("the first line is not an AMI banner", text)
                return
            self.banner = text
            self._log.info("AMI peer says {banner}", banner=text)
            waiters, self._banner_waiters = self._banner_waiters, []
            for w in waiters:
                w.callback(text)
            return
        if not text:
            if self._headers:
                message = Message(tuple(self._headers))
                self._headers = []
                self._size = 0
                self._dispatch(message)
            return
        key, sep, value = text.partition(":")
        key = key.strip()
        if not sep or _KEY.fullmatch(key) is None:
            self._violation("a line that is not 'Key: value'", text)
            return
        if value.startswith(" "):
            value = value[1:]
        self._size += len(line) + 2
        if len(self._headers) >= self.MAX_HEADERS:
            self._violation(f"a message of more than {self.MAX_HEADERS} headers", text)
            return
        if self._size > self.MAX_MESSAGE_BYTES:
            self._violation(
                f"a message of more than {self.MAX_MESSAGE_BYTES} bytes", text
            )
            return
        self._headers.append((key, value))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._violation(
            f"a line longer than {self.MAX_LENGTH} bytes",
            line[:60].decode("utf-8", errors="replace"),
        )

    def _violation(self, why: str, sample: str) -> None:
        self._log.error(
            "AMI peer sent {why} ({sample!r}); closing the connection",
            why=why,
            sample=sample[:60],
        )
        self._headers = []
        self.transport.loseConnection()

    def _dispatch(self, message: Message) -> None:
        if message.response is not None:
            self._response_received(message)
        elif message.event is not None:
            self._event_received(message)
        else:
            self._log.warn(
                "AMI message is neither a response nor an event: {first}",
                first=message.headers[0][0],
            )

    def _response_received(self, message: Message) -> None:
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None:
            self._log.warn(
                "AMI response for unknown ActionID {action_id}: {response}",
                action_id=action_id,
                response=message.response,
            )
            return
        if (message.get("EventList") or "").lower() == "start":
            pending.response = message
            return
        del self._pending[action_id]  # type: ignore[arg-type]
        pending.deferred.callback(Reply(message))

    def _event_received(self, message: Message) -> None:
        action_id = message.action_id
        if action_id is not None:
            if message.event == "OriginateResponse":
                # Asterisk acks first, but the outcome is accepted either way.
                waiter = self._originates.pop(action_id, None)
                if waiter is not None:
                    waiter.callback(OriginateResponse.from_event(message))
            else:
                pending = self._pending.get(action_id)
                if pending is not None and pending.response is not None:
                    if (message.get("EventList") or "").lower() == "complete":
                        del self._pending[action_id]
                        pending.deferred.callback(
                            Reply(pending.response, tuple(pending.events))
                        )
                    else:
                        pending.events.append(message)
        for name, handler in list(self._subscribers):
            if name is None or name == message.event:
                try:
                    handler(message)
                except Exception:
                    self._log.failure(
                        "AMI event subscriber failed on {event}", event=message.event
                    )

    # -- events ---------------------------------------------------------------

    def subscribe(
        self, handler: Callable[[Message], object], event: str | None = None
    ) -> Callable[[], None]:
        """Call ``handler`` with every event (or every ``event`` event); the
        returned callable unsubscribes."""
        entry = (event, handler)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    # -- actions --------------------------------------------------------------

    def send_action(
        self,
        action: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        action_id_last: bool = False,
    ) -> Deferred[Reply]:
        """
        Send one action; fires with its :class:`Reply` whatever the
        ``Response`` says (callers decide what an ``Error`` means).

        ``action_id_last`` puts the ActionID after the other headers, where
        the recorded Originates had it; Asterisk does not mind either way.
        """
        return self._send(action, headers, action_id_last=action_id_last)[1]

    def _send(
        self,
        action: str,
        headers: Sequence[tuple[str, str]],
        *,
        action_id_last: bool = False,
        log_headers: bool = True,
    ) -> tuple[str, Deferred[Reply]]:
        if self._lost is not None or self.transport is None:
            return "", fail(AMIConnectionLost(f"AMI is not connected; cannot {action}"))
        action_id = self._action_ids(action)
        if action_id in self._pending or action_id in self._originates:
            return "", fail(ValueError(f"ActionID {action_id!r} is already in use"))
        id_header = [("ActionID", action_id)]
        lines = [("Action", action)]
        lines += [*headers, *id_header] if action_id_last else [*id_header, *headers]
        try:
            data = encode_action(lines)
        except (TypeError, ValueError) as e:
            return "", fail(e)

        def cancel(d: Deferred[Reply]) -> None:
            self._pending.pop(action_id, None)

        d: Deferred[Reply] = Deferred(cancel)
        self._pending[action_id] = _Pending(action, d)
        if log_headers:
            self._log.debug(
                "AMI action {action} {action_id}: {headers}",
                action=action,
                action_id=action_id,
                headers=Message(tuple(lines)).redacted(),
            )
        self.transport.write(data)
        if self._action_timeout:
            d.addTimeout(self._action_timeout, self._clock, self._timed_out(action))
        return action_id, d

    def _timed_out(self, action: str) -> Callable[[object, float], object]:
        def on_timeout(result: object, timeout: float) -> object:
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(
                    AMITimeout(f"Asterisk did not answer {action} within {timeout} s")
                )
            return result

        return on_timeout

    def _expect_success(self, reply: Reply, action: str) -> Message:
        response = reply.response
        if (response.response or "").lower() == "success":
            return response
        message = (response.get("Message") or "").strip()
        if message.lower() == "no such channel":
            raise NoSuchChannel(f"{action}: {message}", response)
        raise AMIError(f"{action} failed: {message or response.response}", response)

    def login(
        self, username: str, secret: str, events: str = "on"
    ) -> Deferred[Message]:
        """Log in; fails with :class:`LoginRefused` when Asterisk says no.

        The secret goes to the wire only: never to a log line or an error.
        """
        self._log.info("AMI login as {username}", username=username)
        _, d = self._send(
            "Login",
            [("Username", username), ("Secret", secret), ("Events", events)],
            log_headers=False,
        )

        def check(reply: Reply) -> Message:
            response = reply.response
            if (response.response or "").lower() == "success":
                return response
            message = (response.get("Message") or "").strip()
            raise LoginRefused(
                f"Asterisk refused the AMI login for user {username!r}: "
                f"{message or response.response}",
                response,
            )

        return d.addCallback(check)

    def logoff(self) -> Deferred[Reply]:
        """Say goodbye; Asterisk answers ``Goodbye`` and closes."""
        return self.send_action("Logoff")

    def originate(
        self,
        channel: str,
        context: str,
        exten: str,
        priority: int = 1,
        *,
        channel_id: str | None = None,
        variables: Sequence[tuple[str, str]] = (),
        timeout_ms: int | None = None,
        caller_id: str | None = None,
    ) -> Deferred[OriginateResponse]:
        """
        Originate ``channel`` into ``context``/``exten``/``priority`` with
        ``Async: true``; fires with the :class:`OriginateResponse` event, or
        fails with :class:`OriginateRefused` if Asterisk refuses at once.

        Send a ``channel_id``: without it a failed Originate reports
        ``Uniqueid: <unknown>`` and cannot be tied to its channel.
        """
        headers = [
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Priority", str(priority)),
            ("Async", "true"),
        ]
        if channel_id is not None:
            headers.append(("ChannelId", channel_id))
        for name, value in variables:
            _check_text("variable name", name)
            if not name or "=" in name:
                return fail(ValueError(f"bad channel variable name {name!r}"))
            headers.append(("Variable", f"{name}={value}"))
        if timeout_ms is not None:
            headers.append(("Timeout", str(int(timeout_ms))))
        if caller_id is not None:
            headers.append(("CallerID", caller_id))
        action_id, ack = self._send("Originate", headers, action_id_last=True)
        if not action_id:
            return ack  # type: ignore[return-value]

        def cancel(d: Deferred[OriginateResponse]) -> None:
            self._originates.pop(action_id, None)
            ack.cancel()

        outcome: Deferred[OriginateResponse] = Deferred(cancel)
        self._originates[action_id] = outcome

        def acked(reply: Reply) -> None:
            response = reply.response
            if (response.response or "").lower() != "success":
                self._originates.pop(action_id, None)
                message = (response.get("Message") or "").strip()
                outcome.errback(
                    OriginateRefused(
                        f"Asterisk refused the Originate of {channel}: "
                        f"{message or response.response}",
                        response,
                    )
                )
                return

        def ack_failed(failure: Failure) -> None:
            if self._originates.pop(action_id, None) is not None:
                outcome.errback(failure)

        ack.addCallbacks(acked, ack_failed)
        return outcome

    def hangup(self, channel: str, cause: int | None = None) -> Deferred[Message]:
        """Hang up ``channel`` (a name or a ChannelId); fails with
        :class:`NoSuchChannel` when it is already gone."""
        headers = [("Channel", channel)]
        if cause is not None:
            headers.append(("Cause", str(int(cause))))
        return self.send_action("Hangup", headers).addCallback(
            self._expect_success, "Hangup"
        )

    def play_dtmf(
        self, channel: str, digit: str, *, receive: bool = False
    ) -> Deferred[Message]:
        """Play one DTMF ``digit`` out of ``channel`` (towards its far end),
        or into it with ``receive``."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            return fail(ValueError(f"not a DTMF digit: {digit!r}"))
        headers = [("Channel", channel), ("Digit", digit)]
        if receive:
            headers.append(("Receive", "true"))
        return self.send_action("PlayDTMF", headers).addCallback(
            self._expect_success, "PlayDTMF"
        )

    def setvar(self, channel: str | None, name: str, value: str) -> Deferred[Message]:
        """Set a channel variable (a global one when ``channel`` is None)."""
        headers = [] if channel is None else [("Channel", channel)]
        headers += [("Variable", name), ("Value", value)]
        return self.send_action("Setvar", headers).addCallback(
            self._expect_success, "Setvar"
        )

    def getvar(self, channel: str | None, name: str) -> Deferred[str]:
        """A channel variable's value (a global's when ``channel`` is None);
        ``""`` when it is unset, as Asterisk reports it."""
        headers = [] if channel is None else [("Channel", channel)]
        headers.append(("Variable", name))
        d = self.send_action("Getvar", headers).addCallback(
            self._expect_success, "Getvar"
        )
        return d.addCallback(lambda response: response.get("Value") or "")


class AMIFactory(Factory):
    """Builds :class:`AMIProtocol`s sharing a clock and an ActionID source."""

    def __init__(
        self,
        clock: IReactorTime,
        action_ids: Callable[[str], str] | None = None,
        action_timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.action_ids = action_ids if action_ids is not None else ActionIDs()
        self.action_timeout = action_timeout

    def buildProtocol(self, addr: object) -> AMIProtocol:
        p = AMIProtocol(self.clock, self.action_ids, self.action_timeout)
        p.factory = self
        return p
