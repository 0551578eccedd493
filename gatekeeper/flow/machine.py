"""
The visit as a pure state machine: events in, commands out, no I/O.

A visit goes greet → apartment (DTMF) → record the name → call residents in
ring order → announce to the resident who picks up → the resident decides
(1 allow, 2 deny, 3 talk) → door → visit record → tell the visitor → hang up.
Every wait has a timeout and a defined outcome, and every leg may drop and
come back inside its grace period.

:class:`VisitMachine` holds where the visit stands.  :meth:`VisitMachine.handle`
takes one event (a key press, a playback that finished, a timer, a dial
result, a leg that dropped) and returns the commands that follow from it (play
these prompts to that leg, start this timer, dial that extension, write the
record).  The Twisted side (:mod:`gatekeeper.flow.conversation`) carries the
commands out and turns their Deferreds back into events.  Because nothing here
waits or touches a socket, every transition is tested directly.

Two rules are enforced here rather than trusted to the callers: only the
resident's leg can decide, and the visit record is written before the
visitor hears the outcome.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

from attrs import define, field, frozen, validators

from gatekeeper.session.callpair import Outcome

__all__ = [
    "BEEP",
    "VISITOR_NAME",
    "Bridge",
    "CancelDial",
    "CancelTimer",
    "Decision",
    "Dial",
    "DialFinished",
    "DialResult",
    "Digit",
    "DoorFinished",
    "Finish",
    "FlowSettings",
    "LegBack",
    "LegDropped",
    "LegGoneForGood",
    "LookUp",
    "LookUpFinished",
    "OpenDoor",
    "PairEnded",
    "Phase",
    "Play",
    "PlaybackFinished",
    "Record",
    "RecordWritten",
    "RecordingFinished",
    "ResidentArrived",
    "Ringback",
    "Role",
    "StartTimer",
    "Stop",
    "StopRecording",
    "TimerFired",
    "VisitMachine",
    "VisitorArrived",
    "WriteRecord",
]

# Placeholders a Play may carry besides prompt names.
VISITOR_NAME = "@visitor_name"
BEEP = "@beep"


class Role(enum.StrEnum):
    VISITOR = "visitor"
    RESIDENT = "resident"


class Phase(enum.StrEnum):
    NEW = "new"
    APARTMENT = "apartment"
    RECORDING = "recording"
    CALLING = "calling"
    DECIDING = "deciding"
    TALKING = "talking"
    CONCLUDING = "concluding"
    DONE = "done"


class Decision(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    TALK = "talk"


class DialResult(enum.StrEnum):
    """What came of ringing one extension (AMI ``OriginateResponse`` reasons)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    # The dialer itself is down: nobody can be rung.
    UNAVAILABLE = "unavailable"


_KEYS = {"1": Decision.ALLOW, "2": Decision.DENY, "3": Decision.TALK}

# Outcomes written to the visit record: the session's Outcome slugs.
ALLOWED = Outcome.ALLOWED.value
DENIED = Outcome.DENIED.value
NO_ANSWER = Outcome.NO_ANSWER.value
BUSY = Outcome.BUSY.value
UNKNOWN_APARTMENT = Outcome.UNKNOWN_APARTMENT.value
RESIDENTS_UNREACHABLE = Outcome.RESIDENT_UNREACHABLE.value
VISITOR_LEFT = Outcome.VISITOR_LEFT.value


@frozen
class FlowSettings:
    """Every wait of a visit, in seconds, and how often things are tried."""

    first_digit_timeout: float = field(default=8.0, validator=validators.gt(0))
    inter_digit_timeout: float = field(default=3.0, validator=validators.gt(0))
    apartment_tries: int = field(default=3, validator=validators.ge(1))
    max_apartment_digits: int = field(default=10, validator=validators.ge(1))
    # Per extension: ringing, plus the time its AudioSocket leg takes to arrive.
    ring_timeout: float = field(default=25.0, validator=validators.gt(0))
    answer_timeout: float = field(default=10.0, validator=validators.gt(0))
    # After the resident heard the choice: wait this long for a key.
    decision_timeout: float = field(default=8.0, validator=validators.gt(0))
    # The announcement is repeated this many times before a silence is a "no".
    announcement_repeats: int = field(default=1, validator=validators.ge(0))
    talk_limit: float = field(default=120.0, validator=validators.gt(0))


# -- events ---------------------------------------------------------------


@frozen
class VisitorArrived:
    pass


@frozen
class PlaybackFinished:
    role: Role
    token: str


@frozen
class Digit:
    role: Role
    digit: str


@frozen
class TimerFired:
    name: str


@frozen
class LookUpFinished:
    """The directory's answer: the extensions to ring, or None if unknown."""

    apartment: str
    ring_plan: tuple[str, ...] | None


@frozen
class RecordingFinished:
    recording: str | None


@frozen
class DialFinished:
    extension: str
    result: DialResult


@frozen
class ResidentArrived:
    pass


@frozen
class LegDropped:
    role: Role


@frozen
class LegBack:
    role: Role


@frozen
class LegGoneForGood:
    """The caller on this leg hung up (Asterisk said so), not a network blip."""

    role: Role


@frozen
class DoorFinished:
    opened: bool


@frozen
class RecordWritten:
    pass


@frozen
class PairEnded:
    """The registry ended the pair (grace expired, shutdown): stop everything."""

    outcome: str


Event: TypeAlias = (
    VisitorArrived
    | PlaybackFinished
    | Digit
    | TimerFired
    | LookUpFinished
    | RecordingFinished
    | DialFinished
    | ResidentArrived
    | LegDropped
    | LegBack
    | LegGoneForGood
    | DoorFinished
    | RecordWritten
    | PairEnded
)

# -- commands -------------------------------------------------------------


@frozen
class Play:
    """Play ``items`` (prompt names, VISITOR_NAME, BEEP) to a leg, after what it plays."""

    role: Role
    items: tuple[str, ...]
    token: str


@frozen
class Stop:
    """Cut what a leg is hearing (barge-in)."""

    role: Role


@frozen
class Ringback:
    on: bool


@frozen
class StartTimer:
    name: str
    seconds: float


@frozen
class CancelTimer:
    name: str


@frozen
class LookUp:
    digits: str


@frozen
class Record:
    pass


@frozen
class StopRecording:
    pass


@frozen
class Dial:
    extension: str
    # How long the dialer and the registry wait for this extension's leg.
    timeout: float


@frozen
class CancelDial:
    pass


@frozen
class Bridge:
    on: bool


@frozen
class OpenDoor:
    pass


@frozen
class WriteRecord:
    outcome: str


@frozen
class Finish:
    """Hang up both legs and end the pair with ``outcome``."""

    outcome: str


Command: TypeAlias = (
    Play
    | Stop
    | Ringback
    | StartTimer
    | CancelTimer
    | LookUp
    | Record
    | StopRecording
    | Dial
    | CancelDial
    | Bridge
    | OpenDoor
    | WriteRecord
    | Finish
)

# What the visitor hears for each outcome (the record is written first).
_TOLD = {
    ALLOWED: ("access_granted", "goodbye"),
    DENIED: ("access_denied", "goodbye"),
    NO_ANSWER: ("resident_not_answering", "goodbye"),
    BUSY: ("resident_not_answering", "goodbye"),
    UNKNOWN_APARTMENT: ("invalid_apartment", "goodbye"),
    RESIDENTS_UNREACHABLE: ("residents_unreachable", "goodbye"),
    VISITOR_LEFT: (),
}


@define
class VisitMachine:
    """Where one visit stands; see the module docstring."""

    settings: FlowSettings = field(factory=FlowSettings)
    phase: Phase = Phase.NEW
    digits: str = ""
    apartment: str | None = None
    apartment_tries: int = 0
    ring_plan: tuple[str, ...] = ()
    extensions_tried: tuple[str, ...] = ()
    dialing: str | None = None
    last_failure: DialResult | None = None
    recording: str | None = None
    announcements: int = 0
    decision: Decision | None = None
    door_opened: bool | None = None
    outcome: str | None = None
    record_requested: bool = False
    record_written: bool = False
    visitor_present: bool = False
    resident_present: bool = False
    # Tokens of the plays whose end the machine waits for, by role.
    playing: dict[Role, str] = field(factory=dict)
    # Legs whose outcome prompt must finish before the pair ends.
    telling: set[Role] = field(factory=set)
    timers: set[str] = field(factory=set)
    ended_externally: bool = False

    # -- the one entry point --------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        """The commands that follow from ``event``; the machine's state moves on."""
        out: list[Command] = []
        if self.phase is Phase.DONE:
            return out
        if isinstance(event, PairEnded):
            self._pair_ended(event, out)
        elif isinstance(event, VisitorArrived):
            self._visitor_arrived(out)
        elif isinstance(event, PlaybackFinished):
            self._playback_finished(event, out)
        elif isinstance(event, Digit):
            self._digit(event, out)
        elif isinstance(event, TimerFired):
            self._timer_fired(event, out)
        elif isinstance(event, LookUpFinished):
            self._looked_up(event, out)
        elif isinstance(event, RecordingFinished):
            self._recorded(event, out)
        elif isinstance(event, DialFinished):
            self._dialled(event, out)
        elif isinstance(event, ResidentArrived):
            self._resident_arrived(out)
        elif isinstance(event, LegDropped):
            self._dropped(event.role, out)
        elif isinstance(event, LegBack):
            self._back(event.role, out)
        elif isinstance(event, LegGoneForGood):
            self._gone(event.role, out)
        elif isinstance(event, DoorFinished):
            self._door_finished(event, out)
        elif isinstance(event, RecordWritten):
            self._record_written(out)
        else:  # pragma: no cover - the type says this cannot happen
            raise TypeError(f"not a visit event: {event!r}")
        return out

    # -- helpers ------------------------------------------------------------------

    def _play(
        self, role: Role, items: tuple[str, ...], token: str, out: list[Command]
    ) -> None:
        self.playing[role] = token
        out.append(Play(role, items, token))

    def _stop(self, role: Role, out: list[Command]) -> None:
        if self.playing.pop(role, None) is not None:
            out.append(Stop(role))

    def _start(self, name: str, seconds: float, out: list[Command]) -> None:
        self.timers.add(name)
        out.append(StartTimer(name, seconds))

    def _cancel(self, name: str, out: list[Command]) -> None:
        if name in self.timers:
            self.timers.discard(name)
            out.append(CancelTimer(name))

    def _cancel_all(self, out: list[Command]) -> None:
        for name in sorted(self.timers):
            out.append(CancelTimer(name))
        self.timers.clear()

    # -- arrival and the apartment ------------------------------------------------

    def _visitor_arrived(self, out: list[Command]) -> None:
        if self.phase is not Phase.NEW:
            return
        self.visitor_present = True
        self.phase = Phase.APARTMENT
        self._play(Role.VISITOR, ("greeting", "ask_apartment"), "ask", out)

    def _apartment_digit(self, digit: str, out: list[Command]) -> None:
        self._stop(Role.VISITOR, out)  # barge-in: the visitor knows what to do
        if digit == "#":
            self._submit(out)
            return
        if digit == "*":
            self.digits = ""
        elif digit.isdigit():
            self.digits += digit
            if len(self.digits) >= self.settings.max_apartment_digits:
                self._submit(out)
                return
        self._start("digits", self.settings.inter_digit_timeout, out)

    def _submit(self, out: list[Command]) -> None:
        self._cancel("digits", out)
        digits, self.digits = self.digits, ""
        if not digits:
            self._wrong_apartment(out)
            return
        out.append(LookUp(digits))

    def _looked_up(self, event: LookUpFinished, out: list[Command]) -> None:
        if self.phase is not Phase.APARTMENT:
            return
        if event.ring_plan is None:
            self._wrong_apartment(out)
            return
        self.apartment = event.apartment
        self.ring_plan = event.ring_plan
        if not event.ring_plan:
            self._conclude(NO_ANSWER, out)
            return
        self.phase = Phase.RECORDING
        self._play(Role.VISITOR, ("say_name", BEEP), "say_name", out)

    def _wrong_apartment(self, out: list[Command]) -> None:
        self.apartment_tries += 1
        if self.apartment_tries >= self.settings.apartment_tries:
            self._conclude(UNKNOWN_APARTMENT, out)
        else:
            self._play(Role.VISITOR, ("invalid_apartment", "ask_apartment"), "ask", out)

    # -- recording and ringing ----------------------------------------------------

    def _recorded(self, event: RecordingFinished, out: list[Command]) -> None:
        if self.phase is not Phase.RECORDING:
            return
        self.recording = event.recording
        self.phase = Phase.CALLING
        self._play(Role.VISITOR, ("calling_resident",), "wait", out)
        self._dial_next(out)

    def _dial_next(self, out: list[Command]) -> None:
        untried = self.ring_plan[len(self.extensions_tried) :]
        if not untried:
            failure = BUSY if self.last_failure is DialResult.BUSY else NO_ANSWER
            self._conclude(failure, out)
            return
        extension = untried[0]
        self.extensions_tried = (*self.extensions_tried, extension)
        self.dialing = extension
        timeout = self.settings.ring_timeout + self.settings.answer_timeout
        out.append(Dial(extension, timeout))
        self._start("ring", timeout, out)

    def _dialled(self, event: DialFinished, out: list[Command]) -> None:
        if self.phase is not Phase.CALLING or event.extension != self.dialing:
            return
        if event.result is DialResult.ANSWERED:
            return  # the resident's leg is on its way; "ring" still bounds it
        if event.result is DialResult.UNAVAILABLE:
            self.dialing = None
            self._cancel("ring", out)
            self._conclude(RESIDENTS_UNREACHABLE, out)
            return
        self.last_failure = event.result
        self._next_extension(out)

    def _next_extension(self, out: list[Command]) -> None:
        self.dialing = None
        self._cancel("ring", out)
        out.append(CancelDial())
        self._dial_next(out)

    def _resident_arrived(self, out: list[Command]) -> None:
        if self.phase is not Phase.CALLING:
            return
        self.resident_present = True
        self._cancel("ring", out)
        self.phase = Phase.DECIDING
        self.announcements = 0
        self._announce(out)

    def _announce(self, out: list[Command]) -> None:
        self.announcements += 1
        self._play(
            Role.RESIDENT,
            ("resident_intro", VISITOR_NAME, "resident_choice"),
            "announce",
            out,
        )

    # -- deciding and talking -----------------------------------------------------

    def _decide(self, decision: Decision, out: list[Command]) -> None:
        self.decision = decision
        self._cancel("decision", out)
        self._stop(Role.RESIDENT, out)
        if decision is Decision.TALK:
            self.phase = Phase.TALKING
            out.append(Ringback(False))
            self._stop(Role.VISITOR, out)
            out.append(Bridge(True))
            self._start("talk", self.settings.talk_limit, out)
            return
        if self.phase is Phase.TALKING:
            out.append(Bridge(False))
            self._cancel("talk", out)
        self._conclude(ALLOWED if decision is Decision.ALLOW else DENIED, out)

    def _digit(self, event: Digit, out: list[Command]) -> None:
        if event.role is Role.VISITOR:
            # The visitor's keys choose an apartment and nothing else: they
            # can never open the door.
            if self.phase is Phase.APARTMENT and self.visitor_present:
                self._apartment_digit(event.digit, out)
            return
        decision = _KEYS.get(event.digit)
        if decision is None or not self.resident_present:
            return
        if self.phase is Phase.DECIDING or (
            self.phase is Phase.TALKING and decision is not Decision.TALK
        ):
            self._decide(decision, out)

    # -- timers and playbacks -----------------------------------------------------

    def _playback_finished(self, event: PlaybackFinished, out: list[Command]) -> None:
        if self.playing.get(event.role) != event.token:
            return  # a play that was cut or replaced
        del self.playing[event.role]
        token = event.token
        if token == "ask" and self.phase is Phase.APARTMENT and not self.digits:
            self._start("digits", self.settings.first_digit_timeout, out)
        elif token == "say_name" and self.phase is Phase.RECORDING:
            out.append(Record())
        elif token == "wait" and self.phase in (Phase.CALLING, Phase.DECIDING):
            out.append(Ringback(True))
        elif token == "announce" and self.phase is Phase.DECIDING:
            self._start("decision", self.settings.decision_timeout, out)
        elif token == "told":
            self.telling.discard(event.role)
            self._maybe_finish(out)

    def _timer_fired(self, event: TimerFired, out: list[Command]) -> None:
        if event.name not in self.timers:
            return
        self.timers.discard(event.name)
        name = event.name
        if name == "digits" and self.phase is Phase.APARTMENT:
            if self.digits:
                self._submit(out)
            else:
                self._wrong_apartment(out)
        elif name == "ring" and self.phase is Phase.CALLING:
            self.last_failure = DialResult.NO_ANSWER
            self._next_extension(out)
        elif name == "decision" and self.phase is Phase.DECIDING:
            if self.announcements <= self.settings.announcement_repeats:
                self._announce(out)
            else:
                self._decide(Decision.DENY, out)
        elif name == "talk" and self.phase is Phase.TALKING:
            self._decide(Decision.DENY, out)

    # -- legs that drop, come back, or leave ----------------------------------------

    def _dropped(self, role: Role, out: list[Command]) -> None:
        self.playing.pop(role, None)
        if role is Role.VISITOR:
            self.visitor_present = False
            self._cancel("digits", out)
            if self.phase is Phase.RECORDING:
                out.append(StopRecording())
            if self.phase is Phase.TALKING:
                out.append(Bridge(False))
            return
        self.resident_present = False
        if self.phase is Phase.DECIDING:
            self._cancel("decision", out)
        elif self.phase is Phase.TALKING:
            # Hanging up during talk is a "no"; a blip gets no second chance.
            out.append(Bridge(False))
            self._cancel("talk", out)
            self._conclude(DENIED, out)
        self.telling.discard(role)
        self._maybe_finish(out)

    def _back(self, role: Role, out: list[Command]) -> None:
        if role is Role.VISITOR:
            self.visitor_present = True
            if self.phase is Phase.APARTMENT:
                self.digits = ""
                self._play(Role.VISITOR, ("ask_apartment",), "ask", out)
            elif self.phase is Phase.RECORDING:
                self._play(Role.VISITOR, ("say_name", BEEP), "say_name", out)
            elif self.phase in (Phase.CALLING, Phase.DECIDING):
                self._play(Role.VISITOR, ("calling_resident",), "wait", out)
            elif self.phase is Phase.TALKING:
                out.append(Bridge(True))
            elif self.phase is Phase.CONCLUDING and self.record_written:
                self._tell(Role.VISITOR, out)
            return
        self.resident_present = True
        if self.phase is Phase.DECIDING:
            self.announcements = 0
            self._announce(out)

    def _gone(self, role: Role, out: list[Command]) -> None:
        """Asterisk reported a real hang-up on this leg."""
        if role is Role.VISITOR:
            self.visitor_present = False
            self.playing.pop(Role.VISITOR, None)
            self.telling.discard(Role.VISITOR)
            if self.phase is Phase.CONCLUDING:
                self._maybe_finish(out)
                return
            if self.phase is Phase.TALKING:
                out.append(Bridge(False))
            if self.phase is Phase.RECORDING:
                out.append(StopRecording())
            self._conclude(VISITOR_LEFT, out)
            return
        self.resident_present = False
        self.playing.pop(Role.RESIDENT, None)
        self.telling.discard(Role.RESIDENT)
        if self.phase is Phase.DECIDING:
            # Hung up before deciding: try the next extension.
            self._cancel("decision", out)
            self.phase = Phase.CALLING
            self.last_failure = DialResult.NO_ANSWER
            self._next_extension(out)
        elif self.phase is Phase.TALKING:
            out.append(Bridge(False))
            self._cancel("talk", out)
            self._conclude(DENIED, out)
        elif self.phase is Phase.CONCLUDING:
            self._maybe_finish(out)

    # -- the end ------------------------------------------------------------------

    def _conclude(self, outcome: str, out: list[Command]) -> None:
        """Stop every wait; open the door if allowed; then write the record."""
        if self.phase in (Phase.CONCLUDING, Phase.DONE):
            return
        previous = self.phase
        self.phase = Phase.CONCLUDING
        self.outcome = outcome
        self._cancel_all(out)
        out.append(Ringback(False))
        for role in list(self.playing):
            self._stop(role, out)
        if previous is Phase.CALLING and self.dialing is not None:
            self.dialing = None
            out.append(CancelDial())
        if outcome == ALLOWED:
            out.append(OpenDoor())
        else:
            self._write_record(out)

    def _write_record(self, out: list[Command]) -> None:
        if not self.record_requested:
            self.record_requested = True
            out.append(WriteRecord(self.outcome or NO_ANSWER))

    def _door_finished(self, event: DoorFinished, out: list[Command]) -> None:
        if (
            self.phase is not Phase.CONCLUDING
            or self.outcome != ALLOWED
            or self.door_opened is not None
            or self.ended_externally
        ):
            return
        self.door_opened = event.opened
        self._write_record(out)

    def _record_written(self, out: list[Command]) -> None:
        if self.record_written or not self.record_requested:
            return
        self.record_written = True
        if self.ended_externally:
            self.phase = Phase.DONE
            return
        if self.visitor_present:
            self._tell(Role.VISITOR, out)
        if self.resident_present and self.outcome == VISITOR_LEFT:
            self.telling.add(Role.RESIDENT)
            self._play(Role.RESIDENT, ("visitor_left",), "told", out)
        elif self.resident_present and self.decision in (Decision.ALLOW, Decision.DENY):
            prompt = (
                "access_granted" if self.decision is Decision.ALLOW else "access_denied"
            )
            self.telling.add(Role.RESIDENT)
            self._play(Role.RESIDENT, (prompt,), "told", out)
        self._maybe_finish(out)

    def _tell(self, role: Role, out: list[Command]) -> None:
        items = _TOLD.get(self.outcome or "", ("goodbye",))
        if self.outcome == ALLOWED and self.door_opened is False:
            items = ("door_failed", "goodbye")
        if not items:
            return
        self.telling.add(role)
        self._play(role, items, "told", out)

    def _maybe_finish(self, out: list[Command]) -> None:
        if self.phase is Phase.CONCLUDING and self.record_written and not self.telling:
            self.phase = Phase.DONE
            out.append(Finish(self.outcome or NO_ANSWER))

    def _pair_ended(self, event: PairEnded, out: list[Command]) -> None:
        """The registry ended the pair: record it, if nobody has, and stop."""
        self.ended_externally = True
        if self.phase is Phase.CONCLUDING:
            self.telling.clear()
            if self.record_written:
                self.phase = Phase.DONE
            else:
                # Still waiting for the door, perhaps: record what we know now.
                self._write_record(out)
            return
        self.phase = Phase.CONCLUDING
        self.outcome = event.outcome
        self._cancel_all(out)
        self.playing.clear()
        out.append(Ringback(False))
        out.append(Bridge(False))
        if self.dialing is not None:
            self.dialing = None
            out.append(CancelDial())
        self._write_record(out)
