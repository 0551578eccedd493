"""
A simulated Asterisk: the gate's calls, the residents' phones and AMI.

:class:`SimulatedAsterisk` plays the PBX of the sample dialplan
(``etc/asterisk/extensions.conf``) against a running gatekeeper:

- a visitor's call (:meth:`SimulatedAsterisk.visit`) is a channel that sends
  ``UserEvent(GatekeeperVisit, Uuid, Gate)`` on AMI and then runs
  ``AudioSocket(uuid, gatekeeper)``: an :class:`~.legs.AsteriskLeg`;
- ``Originate`` rings the extension's :class:`~.script.Phone`: it answers
  after its delay (then the channel runs the resident context, an AudioSocket
  leg to ``GK_TARGET`` with ``GK_UUID``, and ``OriginateResponse`` Reason 4
  is sent), or fails with its reason (busy 5, congestion 8, unreachable 0),
  or rings until the Originate's ``Timeout`` (no answer, 3);
- a channel that hangs up (the caller's script, an AMI ``Hangup``, or the
  dialplan ending after ``AudioSocket()`` returns) sends a ``Hangup`` event
  whose ``Uniqueid`` is the channel's (the ``ChannelId`` for originated
  ones), so gatekeeper can tell a hang-up from a lost connection.  A dropped
  connection (:class:`~.script.Drop`) sends no event and comes back with the
  same UUID, after announcing itself again as the dialplan does.

When gatekeeper ends a leg, ``AudioSocket()`` returns and the dialplan looks
at ``GK_DONE``: set (gatekeeper's ``Setvar``), the channel hangs up; unset,
it retries up to ``dialplan_retries`` times a second apart (0 by default:
the sample dialplan's retries are for restarts, which tests do on purpose).

Everything that happens is also written to :attr:`SimulatedAsterisk.timeline`
for the demo.
"""

from __future__ import annotations

import itertools
import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    succeed,
)
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.testing.ami import (
    AMIServerFactory,
    AMIServerProtocol,
    IManagerBackend,
    ManagerMessage,
    get_all,
    get_header,
)
from gatekeeper.testing.audio import Heard, SoundSpotter
from gatekeeper.testing.legs import AsteriskLeg, FrameClock
from gatekeeper.testing.script import (
    NO_ANSWER,
    UNREACHABLE,
    Phone,
    Step,
    Visitor,
    run_script,
)

__all__ = ["SimChannel", "SimulatedAsterisk", "TimelineEntry"]

TimelineEntry = tuple[float, str, str]
"""(seconds, who, what happened)."""

_CAUSES = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer", 34: "Circuit/channel congestion"}  # fmt: skip
_FAILURE_CAUSE = {0: 0, 3: 19, 5: 17, 8: 34}
_EXTENSION = re.compile(r"^[^/]+/([^@/]+)")


@define(eq=False)
class SimChannel:
    """One simulated channel and the AudioSocket legs it has opened."""

    pbx: SimulatedAsterisk
    label: str
    name: str
    uniqueid: str
    call_uuid: str
    target: tuple[str, int]
    context: str
    exten: str
    number: int = 0
    gate: str | None = None
    variables: dict[str, str] = field(factory=dict)
    legs: list[AsteriskLeg] = field(factory=list)
    state: str = "down"
    retries_left: int = 0
    hung_up_at: float | None = None
    _gone: list[Deferred[None]] = field(factory=list)
    heard_log: list[Heard] = field(factory=list)
    _heard: list[tuple[str, Deferred[int]]] = field(factory=list)

    @property
    def clock(self) -> Any:
        return self.pbx.reactor

    @property
    def leg(self) -> AsteriskLeg | None:
        return self.legs[-1] if self.legs else None

    @property
    def up(self) -> bool:
        return self.state != "gone"

    def note(self, what: str, detail: str = "") -> None:
        self.pbx.note(self.label, f"{what} {detail}".rstrip())

    def when_gone(self) -> Deferred[None]:
        if self.state == "gone":
            return succeed(None)

        def cancel(d: Deferred[None]) -> None:
            if d in self._gone:
                self._gone.remove(d)

        d: Deferred[None] = Deferred(cancel)
        self._gone.append(d)
        return d

    def when_heard(self, sound: str, since: int = 0) -> Deferred[int]:
        """Fires when ``sound`` is (or was, after the ``since``-th sound this
        channel heard) heard, with the number of sounds heard up to it."""
        for i in range(since, len(self.heard_log)):
            if self.heard_log[i].name == sound:
                return succeed(i + 1)

        def cancel(d: Deferred[int]) -> None:
            if (sound, d) in self._heard:
                self._heard.remove((sound, d))

        d: Deferred[int] = Deferred(cancel)
        self._heard.append((sound, d))
        return d

    def heard(self) -> list[Heard]:
        """Everything heard on every leg of this channel, in order."""
        return list(self.heard_log)

    def heard_names(self, *ignore: str) -> list[str]:
        return [h.name for h in self.heard() if h.name not in ignore]

    # -- CallHandle ------------------------------------------------------------

    def press(self, digit: str) -> None:
        leg = self.leg
        if leg is not None and leg.connected:
            leg.press(digit)
            self.note("presses", digit)

    def speak(self, pcm: bytes) -> Deferred[None]:
        leg = self.leg
        if leg is None or not leg.connected:
            return succeed(None)
        return leg.speak(pcm)

    def hang_up(self, cause: int = 16) -> None:
        """The caller hangs up: the socket closes, then AMI says Hangup."""
        if self.state == "gone":
            return
        self.note("hangs up")
        self._end(cause)

    def drop(self, back_after: float) -> Deferred[None]:
        """The connection is lost; the dialplan connects again, same UUID."""
        leg = self.leg
        self.note("connection drops", f"(back in {back_after:g} s)")
        if leg is not None and leg.connected:
            leg.closed_by_us = True
            leg.transport.abortConnection()
        self.state = "dropped"
        d = Deferred()
        self.pbx.later(back_after, self._reconnect, d)
        return d

    def _reconnect(self, done: Deferred[None]) -> None:
        if self.state == "gone":
            done.callback(None)
            return
        self.state = "up"
        self.connect().addBoth(lambda _: done.callback(None))

    # -- the dialplan ------------------------------------------------------------

    def connect(self) -> Deferred[AsteriskLeg | None]:
        """``AudioSocket(uuid, target)``: announce (visitors) and connect."""
        pbx = self.pbx
        if self.gate is not None:
            pbx.user_event(self)
        leg = pbx.leg_class(
            self.call_uuid,
            pbx.frames,
            label=self.label,
            continuous=pbx.continuous,
            record=pbx.record,
            spotter=pbx.spotter(),
        )
        leg.on_heard = self._on_heard
        self.legs.append(leg)
        host, port = self.target
        endpoint = TCP4ClientEndpoint(pbx.reactor, host, port, timeout=5)
        connecting = endpoint.connect(_LegFactory(leg))

        def connected(_: object) -> AsteriskLeg:
            leg.when_closed().addCallback(lambda _: self._leg_closed(leg))
            return leg

        def failed(failure: Failure) -> None:
            self.note("AudioSocket() could not connect", failure.getErrorMessage())
            self._end(0)

        return connecting.addCallbacks(connected, failed)

    def _on_heard(self, leg: AsteriskLeg, heard: Heard) -> None:
        self.heard_log.append(heard)
        if self.pbx.listener is not None:
            self.pbx.listener((heard.at, self.label, f"hears {heard.name}"))
        waiters, self._heard = self._heard, []
        for sound, d in waiters:
            if sound == heard.name:
                d.callback(len(self.heard_log))
            else:
                self._heard.append((sound, d))

    def _leg_closed(self, leg: AsteriskLeg) -> None:
        if leg is not self.leg or leg.closed_by_us or self.state in ("gone", "dropped"):
            return
        # gatekeeper ended the leg: AudioSocket() returns to the dialplan.
        if self.variables.get("GK_DONE") == "1" or self.retries_left <= 0:
            self.note("AudioSocket() returned; dialplan hangs up")
            self._end(16)
            return
        self.retries_left -= 1
        self.note("AudioSocket() returned; dialplan retries in 1 s")
        self.pbx.later(1.0, self._retry)

    def _retry(self) -> None:
        if self.state != "gone":
            self.connect()

    def _end(self, cause: int) -> None:
        if self.state == "gone":
            return
        self.state = "gone"
        self.hung_up_at = self.pbx.reactor.seconds()
        for leg in self.legs:
            if leg.connected:
                leg.closed_by_us = True
                leg.transport.loseConnection()
        self.pbx.hangup_event(self, cause)
        waiters, self._heard = self._heard, []
        for _, d in waiters:
            d.cancel()
        gone, self._gone = self._gone, []
        for d in gone:
            d.callback(None)


class _LegFactory(Factory):
    def __init__(self, leg: AsteriskLeg) -> None:
        self.leg = leg

    def buildProtocol(self, addr: object) -> AsteriskLeg:
        return self.leg


@define(eq=False)
class _Ringing:
    """An Originate whose phone has not answered or failed yet."""

    session: AMIServerProtocol
    message: ManagerMessage
    channel: SimChannel
    requested: str
    phone: Phone
    timers: list[IDelayedCall] = field(factory=list)


@implementer(IManagerBackend)
class SimulatedAsterisk:
    """The PBX; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        gatekeeper: tuple[str, int],
        *,
        phones: Mapping[str, Phone] | None = None,
        sounds: Mapping[str, bytes] | None = None,
        username: str = "gatekeeper",
        secret: str = "simulated-secret",
        login_delay: float = 1.0,
        continuous: bool = True,
        record: bool = True,
        dialplan_retries: int = 0,
        leg_class: type[AsteriskLeg] = AsteriskLeg,
        spotter_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.gatekeeper = gatekeeper
        self.phones: dict[str, Phone] = dict(phones or {})
        self.sounds = dict(sounds or {})
        self.username = username
        self.secret = secret
        self.login_delay = login_delay
        self.continuous = continuous
        self.record = record
        self.dialplan_retries = dialplan_retries
        self.leg_class = leg_class
        self.spotter_factory = spotter_factory
        self.frames = FrameClock(reactor)
        self.factory = AMIServerFactory(self, reactor)
        self.port: IListeningPort | None = None
        self.sessions: list[AMIServerProtocol] = []
        self.channels: list[SimChannel] = []
        self.globals: dict[str, str] = {}
        self.dtmf_played: list[tuple[str, str]] = []
        self.timeline: list[TimelineEntry] = []
        self.listener: Callable[[TimelineEntry], object] | None = None
        """Told of every timeline entry and every sound heard, as they happen."""
        self.started = reactor.seconds()
        self._ringing: dict[str, _Ringing] = {}
        self._timers: list[IDelayedCall] = []
        self._scripts: list[Deferred[None]] = []
        self._numbers = itertools.count(1)
        self._login_waiters: list[Deferred[None]] = []

    # -- life ------------------------------------------------------------------

    def listen(self, port: int = 0) -> Deferred[int]:
        """Serve AMI on 127.0.0.1; fires with the port number."""
        endpoint = TCP4ServerEndpoint(self.reactor, port, interface="127.0.0.1")

        def listening(p: IListeningPort) -> int:
            self.port = p
            return p.getHost().port  # type: ignore[attr-defined, no-any-return]

        return endpoint.listen(self.factory).addCallback(listening)

    def when_logged_in(self) -> Deferred[None]:
        """Fires once a manager client (gatekeeper's dialer) has logged in."""
        if self.sessions:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._login_waiters.append(d)
        return d

    def stop(self) -> Deferred[object]:
        """Hang up every channel, stop every timer, close AMI."""
        for channel in list(self.channels):
            channel.retries_left = 0
            if channel.state != "gone":
                channel._end(16)
        for ringing in list(self._ringing.values()):
            for timer in ringing.timers:
                if timer.active():
                    timer.cancel()
        self._ringing.clear()
        scripts, self._scripts = self._scripts, []
        for script in scripts:
            script.cancel()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        # Only legs that connected can close; one whose connect failed (the
        # server was killed, say) never will.
        waits: list[Deferred[Any]] = [
            leg.when_closed()
            for c in self.channels
            for leg in c.legs
            if getattr(leg, "transport", None) is not None
        ]
        for session in self.factory.sessions:
            if not session.closed and session.transport is not None:
                waits.append(session.when_lost())
                session.transport.loseConnection()
        if self.port is not None:
            waits.append(Deferred.fromCoroutine(_stop_port(self.port)))
            self.port = None
        stopped = DeferredList(waits, consumeErrors=True)
        # Never hang a test run: whatever has not closed in 10 s is left.
        stopped.addTimeout(10, self.reactor)
        return stopped.addErrback(lambda f: f.trap(TimeoutError))

    def later(self, seconds: float, f: Callable[..., object], *args: Any) -> None:
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.reactor.callLater(seconds, f, *args))

    def note(self, who: str, what: str) -> None:
        entry = (self.reactor.seconds(), who, what)
        self.timeline.append(entry)
        if self.listener is not None:
            self.listener(entry)

    def spotter(self) -> Any:
        if self.spotter_factory is not None:
            return self.spotter_factory()
        return SoundSpotter(self.sounds) if self.sounds else None

    # -- visitors --------------------------------------------------------------

    def visit(self, visitor: Visitor, call_uuid: str | None = None) -> SimChannel:
        """A visitor presses the gate's button: the gate context runs."""
        number = next(self._numbers)
        call_uuid = call_uuid or str(uuidlib.uuid4())
        channel = SimChannel(
            self,
            label="visitor" if visitor.number == 0 else f"visitor {visitor.number}",
            name=f"PJSIP/gate-{visitor.gate}-{number:08x}",
            uniqueid=f"1795567432.{number}",
            call_uuid=call_uuid,
            target=self.gatekeeper,
            context="gatekeeper-visitor",
            exten="s",
            number=visitor.number,
            gate=visitor.gate,
            state="up",
            retries_left=self.dialplan_retries,
        )
        channel.variables["GKCALL"] = call_uuid
        self.channels.append(channel)
        channel.note("calls from the gate", f"(UUID {call_uuid})")
        channel.connect()
        self._run(channel, visitor.steps)
        return channel

    def _run(self, channel: SimChannel, steps: tuple[Step, ...]) -> None:
        running = Deferred.fromCoroutine(run_script(channel, steps))

        def failed(failure: Failure) -> None:
            if not failure.check(CancelledError):
                self._log.failure("script of {who} failed", failure, who=channel.label)

        running.addErrback(failed)
        self._scripts = [s for s in self._scripts if not s.called]
        self._scripts.append(running)

    # -- events ----------------------------------------------------------------

    def broadcast(self, headers: list[tuple[str, str]]) -> None:
        for session in self.sessions:
            session.event(headers)

    def _channel_fields(self, channel: SimChannel) -> list[tuple[str, str]]:
        return [
            ("Channel", channel.name),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "<unknown>"),
            ("CallerIDName", "<unknown>"),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", channel.context),
            ("Exten", channel.exten),
            ("Priority", "4"),
            ("Uniqueid", channel.uniqueid),
            ("Linkedid", channel.uniqueid),
        ]

    def user_event(self, channel: SimChannel) -> None:
        """``UserEvent(GatekeeperVisit,Uuid: ...,Gate: ...)`` from the gate context."""
        self.broadcast(
            [
                ("Event", "UserEvent"),
                ("Privilege", "user,all"),
                *self._channel_fields(channel),
                ("UserEvent", "GatekeeperVisit"),
                ("Uuid", channel.call_uuid),
                ("Gate", channel.gate or ""),
            ]
        )

    def hangup_event(self, channel: SimChannel, cause: int) -> None:
        channel.note("channel hung up", f"(cause {cause})")
        self.broadcast(
            [
                ("Event", "Hangup"),
                ("Privilege", "call,all"),
                *self._channel_fields(channel),
                ("Cause", str(cause)),
                ("Cause-txt", _CAUSES.get(cause, "Unknown")),
            ]
        )

    # -- IManagerBackend --------------------------------------------------------

    def session_opened(self, session: AMIServerProtocol) -> None:
        self.sessions.append(session)
        self.note("asterisk", "AMI client logged in")
        waiters, self._login_waiters = self._login_waiters, []
        for d in waiters:
            d.callback(None)

    def session_closed(self, session: AMIServerProtocol) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    def action(
        self, session: AMIServerProtocol, name: str, message: ManagerMessage
    ) -> None:
        handler = getattr(self, "_action_" + name.lower(), None)
        if handler is None:
            session.respond(message, "Error", [("Message", "Invalid/unknown command")])
            return
        handler(session, message)

    def _find(self, name: str | None) -> SimChannel | None:
        if not name:
            return None
        for channel in reversed(self.channels):
            if channel.state != "gone" and name in (channel.name, channel.uniqueid):
                return channel
        return None

    def _action_ping(self, session: AMIServerProtocol, message: ManagerMessage) -> None:
        session.respond(message, "Success", [("Ping", "Pong")])

    def _action_originate(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> None:
        requested = (get_header(message, "Channel") or "").strip()
        timeout_text = (get_header(message, "Timeout") or "30000").strip()
        if not requested:
            session.respond(message, "Error", [("Message", "Channel not specified")])
            return
        if "/" not in requested:
            session.respond(message, "Error", [("Message", "Invalid channel")])
            return
        if not timeout_text.isdigit():
            session.respond(message, "Error", [("Message", "Invalid timeout")])
            return
        variables = dict(
            v.partition("=")[::2] for v in get_all(message, "Variable") if "=" in v
        )
        match = _EXTENSION.match(requested)
        extension = match.group(1) if match else requested
        number = next(self._numbers)
        channel_id = get_header(message, "ChannelId") or f"1795567432.{number}"
        target_host, _, target_port = variables.get("GK_TARGET", "").rpartition(":")
        channel = SimChannel(
            self,
            label=f"resident {extension}",
            name=f"{requested.split('@')[0].removesuffix('/n')}-{number:08x}",
            uniqueid=channel_id,
            call_uuid=variables.get("GK_UUID", ""),
            target=(target_host, int(target_port or 0)),
            context=get_header(message, "Context") or "",
            exten=get_header(message, "Exten") or "s",
            state="ringing",
            variables=variables,
        )
        self.channels.append(channel)
        session.respond(
            message, "Success", [("Message", "Originate successfully queued")]
        )
        phone = self.phones.get(extension, Phone(reason=UNREACHABLE, answer_after=0.01))
        ringing = _Ringing(session, message, channel, requested, phone)
        self._ringing[channel_id] = ringing
        channel.note("rings", f"(Originate {requested}, ChannelId {channel_id})")
        limit = int(timeout_text) / 1000
        clock = self.reactor
        if phone.reason is not None:
            delay = phone.answer_after or 0.05
            ringing.timers.append(
                clock.callLater(delay, self._fail, ringing, phone.reason)
            )
        elif phone.answer_after is not None and phone.answer_after < limit:
            ringing.timers.append(
                clock.callLater(phone.answer_after, self._answer, ringing)
            )
        else:
            ringing.timers.append(
                clock.callLater(limit, self._fail, ringing, NO_ANSWER)
            )

    def _originate_response(
        self, ringing: _Ringing, reason: int, channel_name: str
    ) -> None:
        channel = ringing.channel
        fields = [
            ("Event", "OriginateResponse"),
            ("Privilege", "call,all"),
            ("ActionID", get_header(ringing.message, "ActionID") or ""),
            ("Response", "Success" if reason == 4 else "Failure"),
            ("Channel", channel_name),
            ("Context", channel.context),
            ("Exten", channel.exten),
            ("Reason", str(reason)),
            ("Uniqueid", channel.uniqueid),
            ("CallerIDNum", "<unknown>"),
            ("CallerIDName", "<unknown>"),
        ]
        # Only the session that originated hears its OriginateResponse.
        ringing.session.event(fields)

    def _fail(self, ringing: _Ringing, reason: int) -> None:
        channel = ringing.channel
        self._ringing.pop(channel.uniqueid, None)
        what = {0: "is unreachable", 1: "was hung up", 3: "did not answer", 5: "is busy", 8: "is congested"}  # fmt: skip
        channel.note(what.get(reason, f"failed (reason {reason})"))
        channel.state = "gone"
        channel.hung_up_at = self.reactor.seconds()
        self.hangup_event(channel, _FAILURE_CAUSE.get(reason, 0))
        self._originate_response(ringing, reason, ringing.requested)
        for d in channel._gone:
            d.callback(None)
        channel._gone.clear()

    def _answer(self, ringing: _Ringing) -> None:
        channel = ringing.channel
        self._ringing.pop(channel.uniqueid, None)
        channel.state = "up"
        channel.number = ringing.phone.voice
        channel.note("answers")
        self._originate_response(ringing, 4, channel.name)
        channel.connect()
        self._run(channel, ringing.phone.steps)

    def _action_hangup(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> None:
        name = get_header(message, "Channel")
        ringing = self._ringing.get(name or "")
        channel = ringing.channel if ringing is not None else self._find(name)
        if channel is None:
            session.respond(message, "Error", [("Message", "No such channel")])
            return
        session.respond(message, "Success", [("Message", "Channel Hungup")])
        cause = int(get_header(message, "Cause") or "0")
        channel.note("hung up over AMI")
        if ringing is not None:
            for timer in ringing.timers:
                if timer.active():
                    timer.cancel()
            self._fail(ringing, 1)
            return
        channel._end(cause)

    def _action_playdtmf(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> None:
        channel = self._find(get_header(message, "Channel"))
        digit = get_header(message, "Digit") or ""
        if channel is None:
            session.respond(message, "Error", [("Message", "No such channel")])
            return
        if not digit:
            session.respond(message, "Error", [("Message", "No digit specified")])
            return
        session.respond(message, "Success", [("Message", "DTMF successfully queued")])
        receive = (get_header(message, "Receive") or "").lower() in ("true", "yes", "1")
        self.dtmf_played.append((channel.name, digit))
        channel.note("DTMF played", f"{digit}{' (received)' if receive else ''}")
        if receive:
            channel.press(digit)

    def _variables(self, message: ManagerMessage) -> tuple[bool, dict[str, str] | None]:
        name = get_header(message, "Channel")
        if name is None:
            return True, self.globals
        channel = self._find(name)
        return False, None if channel is None else channel.variables

    def _variable(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> tuple[dict[str, str], str] | None:
        """The variables and the name an action names, or None, answered with the error."""
        _, variables = self._variables(message)
        name = get_header(message, "Variable")
        if variables is None:
            session.respond(message, "Error", [("Message", "No such channel")])
            return None
        if not name:
            session.respond(message, "Error", [("Message", "No variable specified")])
            return None
        return variables, name

    def _action_setvar(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> None:
        found = self._variable(session, message)
        if found is None:
            return
        variables, name = found
        variables[name] = get_header(message, "Value") or ""
        session.respond(message, "Success", [("Message", "Variable Set")])
        channel = self._find(get_header(message, "Channel"))
        if channel is not None:
            channel.note("Setvar", f"{name}={variables[name]}")

    def _action_getvar(
        self, session: AMIServerProtocol, message: ManagerMessage
    ) -> None:
        found = self._variable(session, message)
        if found is None:
            return
        variables, name = found
        session.respond(
            message, "Success", [("Variable", name), ("Value", variables.get(name, ""))]
        )


async def _stop_port(port: IListeningPort) -> None:
    await port.stopListening()


def resident_channel(pbx: SimulatedAsterisk, extension: str) -> SimChannel | None:
    """The latest channel that rang ``extension``."""
    for channel in reversed(pbx.channels):
        if channel.label == f"resident {extension}":
            return channel
    return None


def format_timeline(pbx: SimulatedAsterisk) -> str:
    """Everything the simulated Asterisk saw and did, with what each leg heard."""
    entries = list(pbx.timeline)
    for channel in pbx.channels:
        for heard in channel.heard():
            entries.append((heard.at, channel.label, f"hears {heard.name}"))
    entries.sort(key=lambda e: e[0])
    return "\n".join(
        f"{at - pbx.started:8.3f}  {who:<14} {what}" for at, who, what in entries
    )
