"""
The Twisted side of a visit: carries out what the machine decides.

One :class:`Conversation` per call pair (the registry makes it through
:class:`ConversationFactory` when the visitor's leg arrives).  It feeds the
pure :class:`~gatekeeper.flow.machine.VisitMachine` the events of its pair —
frames and legs from the registry, ends of playbacks from the pacer, dial
results from the AMI dialer, timers from the injected clock, the door and the
access log — and carries out the commands the machine answers with.

Events are queued and handled one at a time, so a command whose result is
immediate (a directory lookup, a dialer that is down) never re-enters the
machine in the middle of a transition.  Every log event carries the call's
UUID.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from attrs import field, frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.accesslog import AccessLog, VisitRecord
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.dialer.interfaces import (
    DialerUnavailable,
    IDialer,
    OriginateResult,
    VisitorChannel,
)
from gatekeeper.dialer.interfaces import Outcome as DialOutcome
from gatekeeper.directory import DirectoryService
from gatekeeper.door import DoorContext, DoorResult, IDoorOpener
from gatekeeper.flow import machine as m
from gatekeeper.media.bridge import Bridge
from gatekeeper.media.dtmf import DtmfDetector
from gatekeeper.media.pacer import LegGone, OutboundStream, Pacer, PlaybackInterrupted
from gatekeeper.media.prompts import PromptLibrary
from gatekeeper.media.resample import resample, samples_to_pcm
from gatekeeper.media.tones import beep, ringback
from gatekeeper.media.vad import Recorder, RecordingOutcome, VadSettings, save_recording
from gatekeeper.session.callpair import CallPair, Leg, Outcome, Role
from gatekeeper.session.interfaces import IPairListener

__all__ = ["Conversation", "ConversationFactory", "VisitServices"]

_ROLES = {Role.VISITOR: m.Role.VISITOR, Role.RESIDENT: m.Role.RESIDENT}

# Seconds without a frame from the visitor, while recording, that count as
# silence (a phone that suppresses silence sends nothing then).
_RECORDING_GAP = 0.2

# Seconds the registry keeps expecting a resident after the flow gave up.
_EXPECTATION_MARGIN = 2.0

_DIAL_RESULTS = {
    DialOutcome.ANSWERED: m.DialResult.ANSWERED,
    DialOutcome.BUSY: m.DialResult.BUSY,
    DialOutcome.NO_ANSWER: m.DialResult.NO_ANSWER,
    DialOutcome.CONGESTION: m.DialResult.BUSY,
    DialOutcome.UNREACHABLE: m.DialResult.UNREACHABLE,
    DialOutcome.HUNG_UP: m.DialResult.NO_ANSWER,
    DialOutcome.FAILED: m.DialResult.FAILED,
    DialOutcome.LOST: m.DialResult.FAILED,
}


@frozen
class VisitServices:
    """Everything a visit talks to, built once by the service tree."""

    clock: IReactorTime
    pacer: Pacer
    prompts: PromptLibrary
    directory: DirectoryService
    access_log: AccessLog
    door: IDoorOpener
    dialer: IDialer | None
    registry: Any  # SessionRegistry; Any to keep the import graph one-way
    recordings: Path
    flow: m.FlowSettings = field(factory=m.FlowSettings)
    vad: VadSettings = field(factory=VadSettings)
    record_retries: tuple[float, ...] = (0.5, 1.0, 2.0)
    # How long to wait for the gate's GatekeeperVisit event after the call.
    announce_timeout: float = 10.0
    # How long the final hang-up waits for AMI to set GK_DONE.
    done_timeout: float = 1.0
    # Listen for DTMF tones inside the audio too (intercoms that send no
    # out-of-band digits), while the flow waits for keys from that leg.
    inband_dtmf: bool = False


class ConversationFactory:
    """The registry's listener factory: one conversation per new pair."""

    def __init__(self, services: VisitServices) -> None:
        self.services = services
        self.live: dict[str, Conversation] = {}

    def __call__(self, pair: CallPair) -> Conversation:
        conversation = Conversation(pair, self.services)
        self.live[pair.call_uuid] = conversation
        conversation.when_done().addBoth(lambda _: self.live.pop(pair.call_uuid, None))
        return conversation


@implementer(IPairListener)
class Conversation:
    """One visit's conversation; see the module docstring."""

    _log = Logger()

    def __init__(self, pair: CallPair, services: VisitServices) -> None:
        self.pair = pair
        self.call_uuid = pair.call_uuid
        self.services = services
        self.machine = m.VisitMachine(services.flow)
        self.streams: dict[m.Role, OutboundStream] = {}
        self.timers: dict[str, IDelayedCall] = {}
        self.recorder: Recorder | None = None
        self.name: tuple[np.ndarray, int] | None = None
        self.bridge: Bridge | None = None
        self.ringing_back = False
        self.door_result: DoorResult | None = None
        self.pair_over = False
        self._dialing: Deferred[OriginateResult] | None = None
        self._queue: deque[m.Event] = deque()
        self._busy = False
        self._phase = self.machine.phase
        self._done: list[Deferred[None]] = []
        self._watches: list[Deferred[Any]] = []
        self._tone_detectors: dict[m.Role, DtmfDetector] = {}
        # The answered resident's channel (its preset ChannelId), for GK_DONE.
        self._resident_channel: str | None = None
        self._frames_heard = 0  # visitor frames fed to the recorder
        self._frames_seen = 0  # ... as of the last gap check

    def when_done(self) -> Deferred[None]:
        """Fires once the pair has ended and its record is written (or given up)."""
        if self._finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._done.append(d)
        return d

    @property
    def _finished(self) -> bool:
        return self.pair_over and (
            self.machine.phase is m.Phase.DONE or not self.machine.record_requested
        )

    # -- the event loop ---------------------------------------------------------

    def feed(self, event: m.Event) -> None:
        self._queue.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                event = self._queue.popleft()
                for command in self.machine.handle(event):
                    self._run(command)
                self._note_phase()
        finally:
            self._busy = False
        self._maybe_done()

    def _note_phase(self) -> None:
        phase = self.machine.phase
        if phase is self._phase:
            return
        self._phase = phase
        if not self.pair_over:
            self.pair.context.enter_phase(str(phase), self.services.clock.seconds())
        self._log.info(
            "call {call_uuid}: {phase}", call_uuid=self.call_uuid, phase=str(phase)
        )

    def _maybe_done(self) -> None:
        if self._finished and self._done:
            done, self._done = self._done, []
            for d in done:
                d.callback(None)

    def _run(self, command: m.Command) -> None:
        handler = getattr(self, "_do_" + type(command).__name__)
        try:
            handler(command)
        except Exception:
            self._log.failure(
                "call {call_uuid}: {command} failed",
                call_uuid=self.call_uuid,
                command=command,
            )

    # -- IPairListener ------------------------------------------------------------

    def leg_attached(self, leg: Leg) -> None:
        role = _ROLES[leg.role]
        self._attach(role, leg)
        if role is m.Role.VISITOR:
            self.feed(m.VisitorArrived())
            self._watch_visitor()
        else:
            # The visit's context crosses to the resident's side here: check it.
            self.pair.context.check(self.call_uuid)
            self.feed(m.ResidentArrived())

    def leg_dropped(self, leg: Leg) -> None:
        role = _ROLES[leg.role]
        self._detach(role)
        self.feed(m.LegDropped(role))

    def leg_reattached(self, leg: Leg) -> None:
        role = _ROLES[leg.role]
        self._attach(role, leg)
        self.feed(m.LegBack(role))

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        role = _ROLES[leg.role]
        stream = self.streams.get(role)
        if stream is not None and stream.kind is not kind:
            stream.interrupt()
            stream.set_kind(kind)
        if self.services.inband_dtmf and self._wants_keys(role):
            self._listen_for_tones(role, kind, payload)
        if role is m.Role.VISITOR:
            if self.recorder is not None:
                self._record(payload)
            if self.bridge is not None:
                self.bridge.from_visitor(kind, payload)
        elif self.bridge is not None:
            self.bridge.from_resident(kind, payload)

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        self.feed(m.Digit(_ROLES[leg.role], digit))

    def _wants_keys(self, role: m.Role) -> bool:
        """Whether a key from ``role`` could mean anything now (tones cost CPU)."""
        phase = self.machine.phase
        if role is m.Role.VISITOR:
            return phase is m.Phase.APARTMENT
        return phase in (m.Phase.DECIDING, m.Phase.TALKING)

    def _listen_for_tones(self, role: m.Role, kind: Kind, payload: bytes) -> None:
        detector = self._tone_detectors.get(role)
        if detector is None or detector.sample_rate != kind.sample_rate:
            detector = self._tone_detectors[role] = DtmfDetector(kind.sample_rate)
        for digit in detector.feed_pcm(payload):
            self._log.info(
                "call {call_uuid}: in-band DTMF {digit} from the {leg} leg",
                call_uuid=self.call_uuid,
                digit=digit,
                leg=str(role),
            )
            self.feed(m.Digit(role, digit))

    def pair_ended(self, pair: CallPair) -> None:
        self.pair_over = True
        for role in list(self.streams):
            self._detach(role)
        self._do_Bridge(m.Bridge(False))
        self.recorder = None
        watches, self._watches = self._watches, []
        for watch in watches:
            watch.addErrback(lambda f: f.trap(*_CANCELLED))
            watch.cancel()
        outcome = str(pair.outcome) if pair.outcome is not None else "failed"
        self.feed(m.PairEnded(outcome))
        dialer = self.services.dialer
        if dialer is not None:
            # The visit is over (and the machine knows it): its AMI
            # announcement and resident watches need not be kept.
            dialer.forget(self.call_uuid)
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        self._maybe_done()

    # -- legs and streams -----------------------------------------------------------

    def _attach(self, role: m.Role, leg: Leg) -> None:
        self._detach(role)
        assert leg.connection is not None
        self.streams[role] = self.services.pacer.attach(leg.connection, leg.kind)

    def _detach(self, role: m.Role) -> None:
        stream = self.streams.pop(role, None)
        if stream is not None:
            self.services.pacer.detach(stream)
        if role is m.Role.VISITOR:
            self.ringing_back = False

    def _watch_visitor(self) -> None:
        """
        Learn the visitor's channel and gate from AMI, and hear when it hangs up.

        A dropped connection alone cannot tell a visitor who hung up from a
        network blip (Asterisk closes the socket both ways); Asterisk's own
        Hangup event for the visitor's channel can.
        """
        dialer = self.services.dialer
        if dialer is None:
            return
        known = dialer.visitor_channel(self.call_uuid)
        if known is not None:
            self._announced(known)
        else:
            self._watches.append(
                dialer.when_visitor_announced(
                    self.call_uuid, timeout=self.services.announce_timeout
                ).addCallback(self._announced)
            )
        self._watches.append(
            dialer.when_visitor_gone(self.call_uuid).addCallback(
                lambda _: self.feed(m.LegGoneForGood(m.Role.VISITOR))
            )
        )

    def _announced(self, visitor: VisitorChannel | None) -> None:
        if visitor is None or self.pair_over:
            return
        context = self.pair.context
        context.gate = visitor.gate
        context.visitor_channel = visitor.channel

    # -- audio out ------------------------------------------------------------------

    def _pcm(self, item: str, rate: int) -> bytes:
        if item == m.BEEP:
            return beep(rate)
        if item == m.VISITOR_NAME:
            if self.name is None:
                return b""
            samples, name_rate = self.name
            return samples_to_pcm(resample(samples, name_rate, rate))
        return self.services.prompts.pcm(item, rate)

    def _do_Play(self, command: m.Play) -> None:
        stream = self.streams.get(command.role)
        if stream is None:
            return
        if command.role is m.Role.VISITOR and self.ringing_back:
            self.ringing_back = False
            stream.interrupt()
        rate = stream.kind.sample_rate
        pcm = b"".join(self._pcm(item, rate) for item in command.items)
        played = stream.play(pcm)
        played.addCallbacks(
            lambda _: self.feed(m.PlaybackFinished(command.role, command.token)),
            lambda f: f.trap(PlaybackInterrupted, LegGone) and None,
        )

    def _do_Stop(self, command: m.Stop) -> None:
        stream = self.streams.get(command.role)
        if stream is not None:
            stream.interrupt()

    def _do_Ringback(self, command: m.Ringback) -> None:
        stream = self.streams.get(m.Role.VISITOR)
        if not command.on:
            if self.ringing_back and stream is not None:
                stream.interrupt()
            self.ringing_back = False
            return
        if self.ringing_back or stream is None:
            return
        self.ringing_back = True
        self._ring(stream)

    def _ring(self, stream: OutboundStream) -> None:
        if not self.ringing_back or self.streams.get(m.Role.VISITOR) is not stream:
            return
        stream.play(ringback(stream.kind.sample_rate)).addCallbacks(
            lambda _: self._ring(stream),
            lambda f: f.trap(PlaybackInterrupted, LegGone) and None,
        )

    def _do_Bridge(self, command: m.Bridge) -> None:
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None
        if not command.on:
            return
        visitor = self.streams.get(m.Role.VISITOR)
        resident = self.streams.get(m.Role.RESIDENT)
        if visitor is not None and resident is not None:
            self.bridge = Bridge(visitor, resident)

    # -- timers -------------------------------------------------------------------

    def _do_StartTimer(self, command: m.StartTimer) -> None:
        self._do_CancelTimer(m.CancelTimer(command.name))
        self.timers[command.name] = self.services.clock.callLater(
            command.seconds, self._timer_fired, command.name
        )

    def _timer_fired(self, name: str) -> None:
        self.timers.pop(name, None)
        self.feed(m.TimerFired(name))

    def _do_CancelTimer(self, command: m.CancelTimer) -> None:
        timer = self.timers.pop(command.name, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- apartment and recording -----------------------------------------------------

    def _do_LookUp(self, command: m.LookUp) -> None:
        directory = self.services.directory.for_gate(self.pair.context.gate)
        apartment = directory.lookup(command.digits)
        plan = None if apartment is None else tuple(directory.ring_plan(apartment))
        if apartment is not None:
            self.pair.context.apartment = command.digits
        self._log.info(
            "call {call_uuid}: apartment {apartment} {found}",
            call_uuid=self.call_uuid,
            apartment=command.digits,
            found="found" if plan is not None else "unknown",
        )
        self.feed(m.LookUpFinished(command.digits, plan))

    def _do_Record(self, command: m.Record) -> None:
        stream = self.streams.get(m.Role.VISITOR)
        rate = stream.kind.sample_rate if stream is not None else 8000
        self.recorder = Recorder(rate, self.services.vad)
        self._watch_recording()

    def _watch_recording(self) -> None:
        """
        Keep the recorder's clock running when no frames come.

        The recorder counts time in the frames it is fed; a phone that
        suppresses silence sends none while its user is quiet.  A check every
        ``_RECORDING_GAP`` seconds feeds silence for a gap with no frame at all.
        """
        self._frames_seen = self._frames_heard
        self.timers["@recording"] = self.services.clock.callLater(
            _RECORDING_GAP, self._recording_gap
        )

    def _recording_gap(self) -> None:
        self.timers.pop("@recording", None)
        recorder = self.recorder
        if recorder is None:
            return
        if self._frames_heard == self._frames_seen:
            silence = bytes(int(recorder.sample_rate * _RECORDING_GAP) * 2)
            if self._record(silence):
                return
        self._watch_recording()

    def _record(self, payload: bytes) -> bool:
        """Feed the recorder; True once the name is recorded."""
        assert self.recorder is not None
        self._frames_heard += 1
        recording = self.recorder.feed(payload)
        if recording is None:
            return False
        self._do_CancelTimer(m.CancelTimer("@recording"))
        self.recorder = None
        path: str | None = None
        if recording.outcome is not RecordingOutcome.NO_SPEECH:
            self.name = (np.asarray(recording.samples), recording.sample_rate)
            try:
                self.services.recordings.mkdir(parents=True, exist_ok=True)
                path = str(
                    save_recording(recording, self.services.recordings, self.call_uuid)
                )
                self.pair.context.recording = path
            except (OSError, ValueError):
                self._log.failure(
                    "call {call_uuid}: could not save the visitor's recording",
                    call_uuid=self.call_uuid,
                )
        self._log.info(
            "call {call_uuid}: recorded the visitor's name ({outcome}, {seconds:.1f}s)",
            call_uuid=self.call_uuid,
            outcome=recording.outcome.value,
            seconds=recording.duration,
        )
        self.feed(m.RecordingFinished(path))
        return True

    def _do_StopRecording(self, command: m.StopRecording) -> None:
        self.recorder = None
        self._do_CancelTimer(m.CancelTimer("@recording"))

    # -- ringing residents ------------------------------------------------------------

    def _do_Dial(self, command: m.Dial) -> None:
        if self.pair_over:
            return
        extension = command.extension
        dialer = self.services.dialer
        if dialer is None or not getattr(dialer, "connected", True):
            self._log.warn(
                "call {call_uuid}: cannot ring {extension}: AMI is not connected",
                call_uuid=self.call_uuid,
                extension=extension,
            )
            self.feed(m.DialFinished(extension, m.DialResult.UNAVAILABLE))
            return
        # The registry's deadline is a safety net behind the flow's own ring
        # timer, which moves on to the next extension: it must not fire first.
        self.services.registry.expect_resident(
            self.call_uuid, command.timeout + _EXPECTATION_MARGIN, target=extension
        )
        dialing = dialer.call_resident(
            self.call_uuid, extension, self.services.flow.ring_timeout
        )
        self._dialing = dialing

        def finished(result: OriginateResult) -> None:
            if self._dialing is dialing:
                self._dialing = None
            outcome = _DIAL_RESULTS.get(result.outcome, m.DialResult.FAILED)
            if result.answered and result.channel_id:
                self._resident_channel = result.channel_id
                dialer.when_resident_gone(result.channel_id).addCallback(
                    lambda _: self._resident_gone(extension)
                )
            self.feed(m.DialFinished(extension, outcome))

        def failed(failure: Failure) -> None:
            if self._dialing is dialing:
                self._dialing = None
            if failure.check(DialerUnavailable):
                self.feed(m.DialFinished(extension, m.DialResult.UNAVAILABLE))
            elif not failure.check(*_CANCELLED):
                self._log.failure(
                    "call {call_uuid}: dialling {extension} failed",
                    failure,
                    call_uuid=self.call_uuid,
                    extension=extension,
                )
                self.feed(m.DialFinished(extension, m.DialResult.FAILED))

        dialing.addCallbacks(finished, failed)

    def _resident_gone(self, extension: str) -> None:
        """Asterisk says the resident's channel hung up."""
        if self.pair_over:
            return
        if self.machine.phase is m.Phase.CALLING and self.machine.dialing == extension:
            self.feed(m.DialFinished(extension, m.DialResult.NO_ANSWER))
        elif self.machine.resident_present or self.machine.phase is m.Phase.DECIDING:
            self.feed(m.LegGoneForGood(m.Role.RESIDENT))

    def _do_CancelDial(self, command: m.CancelDial) -> None:
        dialing, self._dialing = self._dialing, None
        if dialing is not None:
            dialing.cancel()
        registry = self.services.registry
        if not self.pair_over:
            registry.withdraw_resident(self.call_uuid)
            release = getattr(registry, "release_resident", None)
            if release is not None:
                release(self.call_uuid)
        dialer = self.services.dialer
        if dialer is not None and getattr(dialer, "connected", False):
            dialer.hang_up_resident(self.call_uuid).addErrback(lambda _: None)

    # -- the end ------------------------------------------------------------------

    def _do_OpenDoor(self, command: m.OpenDoor) -> None:
        context = self.pair.context
        opening = self.services.door.open(
            self.call_uuid,
            context.apartment or "",
            DoorContext(gate=context.gate, visitor_channel=context.visitor_channel),
        )

        def opened(result: DoorResult) -> None:
            self.door_result = result
            self._log.info(
                "call {call_uuid}: door {status} ({detail})",
                call_uuid=self.call_uuid,
                status=result.status,
                detail=result.detail,
            )
            self.feed(m.DoorFinished(result.opened))

        opening.addCallback(opened)

    def visit_record(self, outcome: str) -> VisitRecord:
        context = self.pair.context
        phases = {"started": context.started_at}
        for name, at in context.phases:
            phases.setdefault(name, at)
        phases["ended"] = self.services.clock.seconds()
        door = self.door_result
        return VisitRecord(
            call_uuid=self.call_uuid,
            outcome=outcome,
            phases=phases,
            apartment=context.apartment,
            gate=context.gate,
            extensions_tried=self.machine.extensions_tried,
            recording_path=context.recording,
            door_result=door.status if door is not None else "not_attempted",
            door_detail=door.detail if door is not None else "",
        )

    def _do_WriteRecord(self, command: m.WriteRecord, attempt: int = 0) -> None:
        record = self.visit_record(command.outcome)
        writing = self.services.access_log.record(record)

        def written(_: object) -> None:
            self._log.info(
                "call {call_uuid}: visit recorded as {outcome}",
                call_uuid=self.call_uuid,
                outcome=command.outcome,
            )
            self.feed(m.RecordWritten())

        def failed(failure: Failure) -> None:
            retries = self.services.record_retries
            if attempt < len(retries):
                self._log.warn(
                    "call {call_uuid}: writing the visit record failed ({error}); "
                    "retrying",
                    call_uuid=self.call_uuid,
                    error=failure.getErrorMessage(),
                )
                self.services.clock.callLater(
                    retries[attempt], self._do_WriteRecord, command, attempt + 1
                )
                return
            # Never tell an outcome that is not on record: hang up instead.
            self._log.critical(
                "call {call_uuid}: the visit record could not be written "
                "({error}); hanging up without telling the outcome",
                call_uuid=self.call_uuid,
                error=failure.getErrorMessage(),
            )
            self.machine.phase = m.Phase.DONE
            self._end(Outcome.FAILED)

        writing.addCallbacks(written, failed)

    def _do_Finish(self, command: m.Finish) -> None:
        self._end(_outcome(command.outcome))

    def _end(self, outcome: Outcome) -> None:
        if self.pair_over:
            self._maybe_done()
            return
        dialer = self.services.dialer
        channels = [
            c for c in (self.pair.context.visitor_channel, self._resident_channel) if c
        ]
        if dialer is None or not channels or not getattr(dialer, "connected", False):
            self.services.registry.end(self.call_uuid, outcome)
            return
        # GK_DONE tells a dialplan that retries AudioSocket() that this hang-up
        # was on purpose.  It must reach Asterisk before the hang-up frame does
        # (that one goes straight out on the socket), so the hang-up waits for
        # it, a bounded while.
        done = DeferredList(
            [dialer.set_done(channel) for channel in channels], consumeErrors=True
        )
        done.addTimeout(self.services.done_timeout, self.services.clock)
        done.addErrback(
            lambda f: self._log.warn(
                "call {call_uuid}: could not set GK_DONE on {channels}: {error}",
                call_uuid=self.call_uuid,
                channels=channels,
                error=f.getErrorMessage(),
            )
        )
        done.addBoth(lambda _: self.services.registry.end(self.call_uuid, outcome))


def _outcome(slug: str) -> Outcome:
    try:
        return Outcome(slug)
    except ValueError:
        return Outcome.FAILED


_CANCELLED: tuple[type[BaseException], ...] = (CancelledError,)
