"""
The dialer: what the visit flow asks of Asterisk, over one AMI connection.

The flow rings a resident with :meth:`IDialer.call_resident`: an ``Originate``
whose channel runs the resident context, where ``AudioSocket(${GK_UUID},
${GK_TARGET})`` brings the resident's leg back to this process under the
visitor's call UUID.  Each Originate carries a preset ``ChannelId`` made from
the call UUID, so its ``OriginateResponse`` (even a failed one) and its
``Hangup`` events can be tied to the call, and the resident's channel can be
hung up by that id while it rings.

The visitor's channel is not on the AudioSocket wire; the gate's dialplan
announces it with ``UserEvent(GatekeeperVisit,Uuid: <uuid>,Gate: <name>)``,
whose standard ``Channel`` header names it.  :class:`AMIDialer` remembers these
announcements for a while (bounded, expiring) so the flow can play DTMF to the
gate or mark the call done (``GK_DONE=1``) before hanging up.

The AMI connection is kept up by :class:`AMIDialer` with exponential backoff.
While it is down the server still answers visitors; ``call_resident`` fails at
once with :class:`DialerUnavailable` so the flow can tell the visitor.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    succeed,
)
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.door.interfaces import IDTMFPlayer
from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid

from .ami import (
    DTMF_DIGITS,
    AMIConnectionLost,
    AMIFactory,
    AMIProtocol,
    AMITimeout,
    Message,
    NoSuchChannel,
    OriginateRefused,
    OriginateResponse,
)
from .interfaces import (
    DialerUnavailable,
    IDialer,
    OriginateResult,
    Outcome,
    VisitorChannel,
)
from .settings import AMISettings

__all__ = [
    "AMIDialer",
    "DialerUnavailable",
    "IDialer",
    "OriginateResult",
    "Outcome",
    "VisitorChannel",
]


_REASONS = {
    0: Outcome.UNREACHABLE,
    1: Outcome.HUNG_UP,
    3: Outcome.NO_ANSWER,
    4: Outcome.ANSWERED,
    5: Outcome.BUSY,
    8: Outcome.CONGESTION,
}


K = TypeVar("K")
V = TypeVar("V")


class _ExpiringMap(Generic[K, V]):
    """A dict whose entries expire ``ttl`` seconds after they were set, and
    that drops its oldest entries beyond ``max_size``."""

    def __init__(self, clock: IReactorTime, ttl: float, max_size: int) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max = max_size
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _purge(self) -> None:
        now = self._clock.seconds()
        items = self._items
        while items:
            key, (expires, _) = next(iter(items.items()))
            if expires > now:
                break
            del items[key]

    def set(self, key: K, value: V) -> int:
        """Store ``value``; returns how many entries were dropped for room."""
        self._purge()
        self._items.pop(key, None)
        self._items[key] = (self._clock.seconds() + self._ttl, value)
        dropped = 0
        while len(self._items) > self._max:
            self._items.popitem(last=False)
            dropped += 1
        return dropped

    def get(self, key: K) -> V | None:
        self._purge()
        entry = self._items.get(key)
        return None if entry is None else entry[1]

    def pop(self, key: K) -> V | None:
        self._purge()
        entry = self._items.pop(key, None)
        return None if entry is None else entry[1]

    def values(self) -> list[V]:
        self._purge()
        return [v for _, v in self._items.values()]

    def __len__(self) -> int:
        self._purge()
        return len(self._items)


@define
class _Resident:
    call_uuid: str
    channel_id: str
    extension: str
    waiters: list[Deferred[int | None]] = field(factory=list)


_EXTENSION = re.compile(r"[A-Za-z0-9_+*#.@:\-]+")


@implementer(IDialer, IDTMFPlayer)
class AMIDialer(Service):
    """
    Keeps one logged-in AMI connection to Asterisk and rings residents
    over it.

    Reconnects with exponential backoff (``backoff_initial`` doubling by
    ``backoff_factor`` up to ``backoff_max``, plus ``jitter()``), including
    after a refused login.  This is a small loop of its own rather than
    ``ClientService(prepareConnection=...)``: in Twisted 26.10 a failed
    ``prepareConnection`` leaves the connection open, and its later close
    raises ``NoTransition`` inside ``ClientService``.
    """

    _log = Logger()

    def __init__(
        self,
        settings: AMISettings,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        action_ids: Callable[[str], str] | None = None,
        channel_ids: Callable[[str], str] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._endpoint = endpoint
        self._clock = clock
        self._jitter = jitter
        self._factory = AMIFactory(clock, action_ids, settings.action_timeout)
        self._protocol: AMIProtocol | None = None
        self._connecting: Deferred[AMIProtocol] | None = None
        self._retry: IDelayedCall | None = None
        self._failed_attempts = 0
        self.logins = 0
        """Successful logins since the service started."""
        self.reconnects = 0
        """Logins after the first: how often the connection came back."""
        self._visitors: _ExpiringMap[str, VisitorChannel] = _ExpiringMap(
            clock, settings.visitor_ttl, settings.visitor_max
        )
        self._visitor_waiters: dict[str, list[Deferred[VisitorChannel | None]]] = {}
        # Visitors' channels whose hang-up someone waits for, by Uniqueid.
        self._visitor_gone: dict[str, list[Deferred[bool]]] = {}
        self._residents: _ExpiringMap[str, _Resident] = _ExpiringMap(
            clock, settings.visitor_ttl, settings.visitor_max
        )
        self._attempt_numbers: Iterator[int] = itertools.count(1)
        self._channel_ids = channel_ids or self._next_channel_id

    @classmethod
    def from_settings(
        cls, reactor: IReactorTime, settings: AMISettings, **kwargs: Any
    ) -> AMIDialer:
        """A dialer connecting to ``settings.endpoint`` with ``reactor``
        (which must also provide the reactor interfaces the endpoint needs)."""
        endpoint = clientFromString(reactor, settings.endpoint)
        return cls(settings, endpoint, reactor, **kwargs)

    def _next_channel_id(self, call_uuid: str) -> str:
        # The call's UUID plus an attempt number: unique per Originate (the
        # same resident may be rung twice), short of Asterisk's 149
        # characters, and greppable by call in Asterisk's own logs.
        return f"{call_uuid}-{next(self._attempt_numbers)}"

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    # -- connection -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._connect()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return succeed(None)
        done = protocol.when_lost()
        protocol.logoff().addErrback(lambda _: None)
        protocol.transport.loseConnection()
        return done.addCallback(lambda _: None)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before connection attempt ``attempt`` + 1."""
        s = self.settings
        try:
            delay = s.backoff_initial * s.backoff_factor ** max(0, attempt - 1)
        except OverflowError:
            delay = s.backoff_max
        return min(delay, s.backoff_max) + self._jitter()

    def _connect(self) -> None:
        self._retry = None
        self._log.info(
            "connecting to AMI at {endpoint}", endpoint=self.settings.endpoint
        )
        d: Deferred[AMIProtocol] = self._endpoint.connect(self._factory)
        self._connecting = d
        d.addCallback(self._prepare)
        d.addCallbacks(self._logged_in, self._attempt_failed)

    def _prepare(self, protocol: AMIProtocol) -> Deferred[AMIProtocol]:
        s = self.settings
        ready = protocol.when_banner()
        ready.addTimeout(s.action_timeout, self._clock)
        ready.addCallback(
            lambda _: protocol.login(s.username, s.secret.reveal(), s.events)
        )

        def give_up(failure: Failure) -> Failure:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
            return failure

        return ready.addCallbacks(lambda _: protocol, give_up)

    def _logged_in(self, protocol: AMIProtocol) -> None:
        self._connecting = None
        if not self.running:
            protocol.transport.loseConnection()
            return
        self._protocol = protocol
        self._failed_attempts = 0
        self.logins += 1
        if self.logins > 1:
            self.reconnects += 1
        protocol.subscribe(self._on_user_event, "UserEvent")
        protocol.subscribe(self._on_hangup, "Hangup")
        protocol.when_lost().addCallback(self._lost, protocol)
        self._log.info(
            "AMI logged in as {username} ({banner}); reconnects so far: {reconnects}",
            username=self.settings.username,
            banner=protocol.banner,
            reconnects=self.reconnects,
        )

    def _attempt_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._failed_attempts += 1
        delay = self.retry_delay(self._failed_attempts)
        self._log.error(
            "AMI connection to {endpoint} failed ({why}); retry {attempt} "
            "in {delay:.1f} s",
            endpoint=self.settings.endpoint,
            why=failure.getErrorMessage(),
            attempt=self._failed_attempts,
            delay=delay,
        )
        self._retry = self._clock.callLater(delay, self._connect)

    def _lost(self, reason: BaseException, protocol: AMIProtocol) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        if not self.running:
            return
        delay = self.retry_delay(1)
        self._log.warn(
            "AMI connection lost ({why}); reconnecting in {delay:.1f} s; "
            "residents cannot be rung meanwhile",
            why=str(reason) or type(reason).__name__,
            delay=delay,
        )
        self._retry = self._clock.callLater(delay, self._connect)

    def _require(self, what: str, call_uuid: str | None = None) -> AMIProtocol:
        protocol = self._protocol
        if protocol is None:
            self._log.warn(
                "cannot {what}: AMI is not connected",
                what=what,
                call_uuid=call_uuid,
            )
            raise DialerUnavailable(
                f"cannot {what}: not connected to Asterisk's manager at "
                f"{self.settings.endpoint}"
            )
        return protocol

    # -- residents ------------------------------------------------------------

    def call_resident(
        self, call_uuid: str, extension: str, ring_timeout: float
    ) -> Deferred[OriginateResult]:
        try:
            call_uuid = canonical_uuid(call_uuid)
            if not isinstance(extension, str) or not _EXTENSION.fullmatch(extension):
                raise ValueError(f"not an extension: {extension!r}")
            if not ring_timeout > 0:
                raise ValueError(f"ring_timeout must be above 0, not {ring_timeout}")
            protocol = self._require(f"ring {extension}", call_uuid)
        except (InvalidCallUUID, ValueError, DialerUnavailable) as e:
            return fail(e)
        s = self.settings
        channel_id = self._channel_ids(call_uuid)
        channel = s.channel_for(extension)
        resident = _Resident(call_uuid, channel_id, extension)
        self._residents.set(channel_id, resident)
        self._log.info(
            "ringing {extension} as {channel} for {call_uuid} "
            "(ChannelId {channel_id}, {ring_timeout} s)",
            extension=extension,
            channel=channel,
            call_uuid=call_uuid,
            channel_id=channel_id,
            ring_timeout=ring_timeout,
        )
        outcome = protocol.originate(
            channel,
            s.resident_context,
            s.resident_exten,
            s.resident_priority,
            channel_id=channel_id,
            variables=[("GK_UUID", call_uuid), ("GK_TARGET", s.target)],
            timeout_ms=round(ring_timeout * 1000),
            caller_id=s.caller_id,
        )
        outcome.addTimeout(ring_timeout + s.originate_grace, self._clock)

        def cancel(result: Deferred[OriginateResult]) -> None:
            result.errback(CancelledError())
            outcome.cancel()
            self._log.info(
                "ringing {extension} for {call_uuid} cancelled",
                extension=extension,
                call_uuid=call_uuid,
            )
            self._hang_up_quietly(channel_id, call_uuid)

        result: Deferred[OriginateResult] = Deferred(cancel)

        def deliver(r: OriginateResult) -> None:
            if r.outcome not in (Outcome.ANSWERED, Outcome.LOST):
                self._gone(channel_id, None)
            self._log.info(
                "resident {extension} for {call_uuid}: {outcome}{detail}",
                extension=extension,
                call_uuid=call_uuid,
                outcome=r.outcome.value,
                detail=f" ({r.message})" if r.message else "",
                channel_id=channel_id,
            )
            if not result.called:
                result.callback(r)

        def answered(response: OriginateResponse) -> None:
            mapped = (
                _REASONS.get(response.reason) if response.reason is not None else None
            )
            deliver(
                OriginateResult(
                    call_uuid,
                    extension,
                    channel_id,
                    mapped or Outcome.FAILED,
                    response.reason,
                    response.channel,
                    response.uniqueid,
                    "" if mapped else f"unexpected Reason {response.reason}",
                )
            )

        def failed(failure: Failure) -> None:
            if failure.check(OriginateRefused):
                response = failure.value.response
                text = (response.get("Message") if response else None) or ""
                deliver(
                    OriginateResult(
                        call_uuid,
                        extension,
                        channel_id,
                        Outcome.FAILED,
                        channel=channel,
                        message=text.strip() or failure.getErrorMessage(),
                    )
                )
            elif failure.check(AMIConnectionLost, AMITimeout, TimeoutError):
                if failure.check(TimeoutError):
                    self._hang_up_quietly(channel_id, call_uuid)
                deliver(
                    OriginateResult(
                        call_uuid,
                        extension,
                        channel_id,
                        Outcome.LOST,
                        channel=channel,
                        message=failure.getErrorMessage()
                        if not failure.check(TimeoutError)
                        else "no OriginateResponse from Asterisk in time",
                    )
                )
            elif failure.check(CancelledError) and result.called:
                pass
            elif not result.called:
                result.errback(failure)

        outcome.addCallbacks(answered, failed)
        return result

    def _hang_up_quietly(self, channel_id: str, call_uuid: str) -> None:
        protocol = self._protocol
        if protocol is None:
            return

        def report(failure: Failure) -> None:
            if not failure.check(NoSuchChannel, AMIConnectionLost):
                self._log.warn(
                    "could not hang up {channel_id} of {call_uuid}: {why}",
                    channel_id=channel_id,
                    call_uuid=call_uuid,
                    why=failure.getErrorMessage(),
                )

        protocol.hangup(channel_id).addErrback(report)

    def _gone(self, channel_id: str, cause: int | None) -> None:
        resident = self._residents.pop(channel_id)
        if resident is None:
            return
        for w in resident.waiters:
            w.callback(cause)

    def _on_hangup(self, event: Message) -> None:
        uniqueid = event.get("Uniqueid")
        if uniqueid is None:
            return
        for waiter in self._visitor_gone.pop(uniqueid, []):
            waiter.callback(True)
        resident = self._residents.get(uniqueid)
        if resident is None:
            return
        cause_text = (event.get("Cause") or "").strip()
        cause = int(cause_text) if cause_text.isdigit() else None
        self._log.info(
            "resident channel {channel_id} of {call_uuid} hung up: "
            "cause {cause} ({cause_txt})",
            channel_id=uniqueid,
            call_uuid=resident.call_uuid,
            cause=cause,
            cause_txt=event.get("Cause-txt"),
        )
        self._gone(uniqueid, cause)

    def when_resident_gone(self, channel_id: str) -> Deferred[int | None]:
        resident = self._residents.get(channel_id)
        if resident is None:
            return succeed(None)
        d: Deferred[int | None] = Deferred(
            lambda d: resident.waiters.remove(d) if d in resident.waiters else None
        )
        resident.waiters.append(d)
        return d

    def when_visitor_gone(self, call_uuid: str) -> Deferred[bool]:
        """
        Fires with True when Asterisk reports the visitor's channel hung up.

        A dropped AudioSocket connection alone cannot tell a caller who hung
        up from a network blip; this can.  It needs the visitor's channel
        from the gate's ``GatekeeperVisit`` event, and waits for it if it has
        not come yet.  Cancel it when the call is over.
        """
        try:
            call_uuid = canonical_uuid(call_uuid)
        except InvalidCallUUID as e:
            return fail(e)
        watching: list[tuple[str, Deferred[bool]]] = []

        def cancel(d: Deferred[bool]) -> None:
            announced.cancel()
            for uniqueid, waiter in watching:
                waiters = self._visitor_gone.get(uniqueid, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._visitor_gone.pop(uniqueid, None)

        gone: Deferred[bool] = Deferred(cancel)

        def watch(visitor: VisitorChannel | None) -> None:
            if visitor is None or not visitor.uniqueid or gone.called:
                return
            watching.append((visitor.uniqueid, gone))
            self._visitor_gone.setdefault(visitor.uniqueid, []).append(gone)

        announced = self.when_visitor_announced(call_uuid)
        announced.addCallbacks(watch, lambda f: f.trap(CancelledError))
        return gone

    def hang_up_resident(self, call_uuid: str) -> Deferred[int]:
        try:
            call_uuid = canonical_uuid(call_uuid)
        except InvalidCallUUID as e:
            return fail(e)
        channel_ids = [
            r.channel_id for r in self._residents.values() if r.call_uuid == call_uuid
        ]
        if not channel_ids:
            return succeed(0)
        try:
            protocol = self._require("hang up the resident", call_uuid)
        except DialerUnavailable as e:
            return fail(e)
        self._log.info(
            "hanging up resident channel(s) {channel_ids} of {call_uuid}",
            channel_ids=channel_ids,
            call_uuid=call_uuid,
        )
        attempts = [
            protocol.hangup(cid).addCallbacks(lambda _: 1, _gone_is_zero)
            for cid in channel_ids
        ]
        d = DeferredList(attempts, fireOnOneErrback=True, consumeErrors=True)
        return d.addCallbacks(
            lambda results: sum(value for _, value in results),
            lambda f: f.value.subFailure,
        )

    # -- any channel ----------------------------------------------------------

    def hang_up(self, channel: str) -> Deferred[bool]:
        try:
            protocol = self._require(f"hang up {channel}")
        except DialerUnavailable as e:
            return fail(e)
        return protocol.hangup(channel).addCallbacks(
            lambda _: True, lambda f: bool(_gone_is_zero(f))
        )

    def play_dtmf(self, channel: str, digits: str) -> Deferred[None]:
        if not digits or any(c not in DTMF_DIGITS for c in digits):
            return fail(ValueError(f"not DTMF digits: {digits!r}"))
        try:
            protocol = self._require(f"play DTMF on {channel}")
        except DialerUnavailable as e:
            return fail(e)

        async def play() -> None:
            # One PlayDTMF per digit, each after the last: Asterisk answers a
            # digit only once it has played it (about 100 ms).
            for digit in digits:
                await protocol.play_dtmf(channel, digit)

        return Deferred.fromCoroutine(play())

    def set_done(self, channel: str) -> Deferred[bool]:
        try:
            protocol = self._require(f"set GK_DONE on {channel}")
        except DialerUnavailable as e:
            return fail(e)
        return protocol.setvar(channel, "GK_DONE", "1").addCallbacks(
            lambda _: True, lambda f: bool(_gone_is_zero(f))
        )

    # -- visitors -------------------------------------------------------------

    def _on_user_event(self, event: Message) -> None:
        if (event.get("UserEvent") or "").strip().lower() != "gatekeepervisit":
            return
        raw = (event.get("Uuid") or "").strip()
        channel = event.get("Channel")
        try:
            call_uuid = canonical_uuid(raw)
        except InvalidCallUUID:
            self._log.warn(
                "GatekeeperVisit from {channel} has no valid Uuid ({uuid!r}); ignored",
                channel=channel,
                uuid=raw[:60],
            )
            return
        if not channel:
            self._log.warn(
                "GatekeeperVisit for {call_uuid} names no Channel; ignored",
                call_uuid=call_uuid,
            )
            return
        gate = (event.get("Gate") or "").strip() or None
        visitor = VisitorChannel(call_uuid, channel, gate, event.get("Uniqueid"))
        dropped = self._visitors.set(call_uuid, visitor)
        if dropped:
            self._log.warn(
                "visitor map full ({size}); forgot the {dropped} oldest",
                size=self.settings.visitor_max,
                dropped=dropped,
            )
        self._log.info(
            "visitor {call_uuid} is {channel} at gate {gate}",
            call_uuid=call_uuid,
            channel=channel,
            gate=gate,
        )
        for w in self._visitor_waiters.pop(call_uuid, []):
            w.callback(visitor)

    def visitor_channel(self, call_uuid: str) -> VisitorChannel | None:
        return self._visitors.get(canonical_uuid(call_uuid))

    def when_visitor_announced(
        self, call_uuid: str, timeout: float | None = None
    ) -> Deferred[VisitorChannel | None]:
        try:
            call_uuid = canonical_uuid(call_uuid)
        except InvalidCallUUID as e:
            return fail(e)
        known = self._visitors.get(call_uuid)
        if known is not None:
            return succeed(known)
        waiters = self._visitor_waiters.setdefault(call_uuid, [])

        def cancel(d: Deferred[VisitorChannel | None]) -> None:
            if d in waiters:
                waiters.remove(d)
            if not waiters:
                self._visitor_waiters.pop(call_uuid, None)

        d: Deferred[VisitorChannel | None] = Deferred(cancel)
        waiters.append(d)
        if timeout is not None:

            def give_up() -> None:
                if d.called:
                    return
                cancel(d)
                self._log.warn(
                    "no GatekeeperVisit event for {call_uuid} within {timeout} s: "
                    "carrying on without the visitor's channel (no DTMF door, "
                    "no GK_DONE)",
                    call_uuid=call_uuid,
                    timeout=timeout,
                )
                d.callback(None)

            timer = self._clock.callLater(timeout, give_up)
            d.addBoth(_cancel_timer, timer)
        return d

    def forget(self, call_uuid: str) -> None:
        call_uuid = canonical_uuid(call_uuid)
        self._visitors.pop(call_uuid)
        for w in self._visitor_waiters.pop(call_uuid, []):
            w.callback(None)
        for r in self._residents.values():
            if r.call_uuid == call_uuid:
                self._gone(r.channel_id, None)


def _gone_is_zero(failure: Failure) -> int:
    failure.trap(NoSuchChannel)
    return 0


def _cancel_timer(result: object, timer: IDelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result
