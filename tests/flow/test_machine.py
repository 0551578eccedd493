"""The visit's pure state machine, transition by transition."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.flow.machine import (
    BEEP,
    VISITOR_NAME,
    Bridge,
    CancelDial,
    Dial,
    DialFinished,
    DialResult,
    Digit,
    DoorFinished,
    Finish,
    FlowSettings,
    LegBack,
    LegDropped,
    LegGoneForGood,
    LookUp,
    LookUpFinished,
    OpenDoor,
    PairEnded,
    Phase,
    Play,
    PlaybackFinished,
    Record,
    RecordingFinished,
    RecordWritten,
    ResidentArrived,
    Ringback,
    Role,
    StartTimer,
    Stop,
    StopRecording,
    TimerFired,
    VisitMachine,
    VisitorArrived,
    WriteRecord,
)

V, R = Role.VISITOR, Role.RESIDENT


class Visit:
    """Feeds events to a machine and keeps every command it answered with."""

    def __init__(self, **settings: object) -> None:
        self.machine = VisitMachine(FlowSettings(**settings))  # type: ignore[arg-type]
        self.commands: list[object] = []

    def __call__(self, *events: object) -> list[object]:
        out: list[object] = []
        for event in events:
            out.extend(self.machine.handle(event))  # type: ignore[arg-type]
        self.commands.extend(out)
        return out

    @property
    def phase(self) -> Phase:
        return self.machine.phase

    def to_calling(self, plan: tuple[str, ...] = ("201", "9000")) -> None:
        self(
            VisitorArrived(), Digit(V, "1"), Digit(V, "0"), Digit(V, "1"), Digit(V, "#")
        )
        self(LookUpFinished("101", plan), PlaybackFinished(V, "say_name"))
        self(RecordingFinished("var/recordings/x.wav"))

    def to_deciding(self) -> None:
        self.to_calling()
        self(DialFinished("201", DialResult.ANSWERED), ResidentArrived())


def plays(commands: list[object], role: Role) -> list[tuple[str, ...]]:
    return [c.items for c in commands if isinstance(c, Play) and c.role is role]


class ApartmentTests(SynchronousTestCase):
    def test_greeting(self) -> None:
        """A new visitor hears the greeting and the apartment question."""
        visit = Visit()
        self.assertEqual(
            visit(VisitorArrived()), [Play(V, ("greeting", "ask_apartment"), "ask")]
        )
        self.assertIs(visit.phase, Phase.APARTMENT)

    def test_digits_then_hash(self) -> None:
        """Digits then # look the apartment up; the first digit cuts the prompt."""
        visit = Visit()
        visit(VisitorArrived())
        self.assertEqual(visit(Digit(V, "1"))[0], Stop(V))
        visit(Digit(V, "0"), Digit(V, "2"))
        self.assertIn(LookUp("102"), visit(Digit(V, "#")))

    def test_star_clears(self) -> None:
        """* starts the number again."""
        visit = Visit()
        visit(VisitorArrived(), Digit(V, "9"), Digit(V, "*"), Digit(V, "4"))
        self.assertIn(LookUp("4"), visit(Digit(V, "#")))

    def test_inter_digit_timeout_submits(self) -> None:
        """A pause after some digits submits them."""
        visit = Visit(inter_digit_timeout=2.0)
        visit(VisitorArrived())
        self.assertIn(StartTimer("digits", 2.0), visit(Digit(V, "7")))
        self.assertIn(LookUp("7"), visit(TimerFired("digits")))

    def test_first_digit_timeout(self) -> None:
        """No digit after the question counts as a wrong try and asks again."""
        visit = Visit(first_digit_timeout=5.0)
        visit(VisitorArrived())
        self.assertEqual(visit(PlaybackFinished(V, "ask")), [StartTimer("digits", 5.0)])
        self.assertEqual(
            plays(visit(TimerFired("digits")), V),
            [("invalid_apartment", "ask_apartment")],
        )

    def test_max_digits(self) -> None:
        """The number is submitted once it reaches its maximum length."""
        visit = Visit(max_apartment_digits=3)
        visit(VisitorArrived(), Digit(V, "1"), Digit(V, "2"))
        self.assertIn(LookUp("123"), visit(Digit(V, "3")))

    def test_unknown_apartment_retried(self) -> None:
        """An unknown apartment is asked again, up to the number of tries, then refused."""
        visit = Visit(apartment_tries=3)
        visit(VisitorArrived())
        for _ in range(2):
            visit(Digit(V, "9"), Digit(V, "#"))
            self.assertEqual(
                plays(visit(LookUpFinished("9", None)), V),
                [("invalid_apartment", "ask_apartment")],
            )
        visit(Digit(V, "9"), Digit(V, "#"))
        self.assertIn(
            WriteRecord("unknown_apartment"), visit(LookUpFinished("9", None))
        )
        self.assertEqual(
            plays(visit(RecordWritten()), V), [("invalid_apartment", "goodbye")]
        )
        self.assertEqual(
            visit(PlaybackFinished(V, "told")), [Finish("unknown_apartment")]
        )

    def test_found_goes_to_recording(self) -> None:
        """A known apartment asks for the name, with a beep, then records."""
        visit = Visit()
        visit(VisitorArrived(), Digit(V, "1"), Digit(V, "#"))
        self.assertEqual(
            visit(LookUpFinished("1", ("201",))),
            [Play(V, ("say_name", BEEP), "say_name")],
        )
        self.assertEqual(visit(PlaybackFinished(V, "say_name")), [Record()])

    def test_nobody_to_ring(self) -> None:
        """An apartment with no extension (and no concierge) ends as no answer."""
        visit = Visit()
        visit(VisitorArrived(), Digit(V, "1"), Digit(V, "#"))
        self.assertIn(WriteRecord("no_answer"), visit(LookUpFinished("1", ())))


class CallingTests(SynchronousTestCase):
    def test_rings_first_extension(self) -> None:
        """After the name, the visitor is asked to wait and the first extension rings."""
        visit = Visit(ring_timeout=20, answer_timeout=5)
        visit.to_calling()
        self.assertIs(visit.phase, Phase.CALLING)
        self.assertIn(Dial("201", 25), visit.commands)
        self.assertEqual(visit(PlaybackFinished(V, "wait")), [Ringback(True)])

    def test_busy_tries_next(self) -> None:
        """A busy extension moves on to the next in ring order."""
        visit = Visit()
        visit.to_calling()
        out = visit(DialFinished("201", DialResult.BUSY))
        self.assertIn(CancelDial(), out)
        self.assertEqual(next(c for c in out if isinstance(c, Dial)).extension, "9000")

    def test_ring_timeout_tries_next(self) -> None:
        """An extension that rings out moves on to the next."""
        visit = Visit()
        visit.to_calling()
        out = visit(TimerFired("ring"))
        self.assertEqual([c.extension for c in out if isinstance(c, Dial)], ["9000"])

    def test_stale_dial_result_ignored(self) -> None:
        """A late result for an extension no longer rung changes nothing."""
        visit = Visit()
        visit.to_calling()
        visit(TimerFired("ring"))
        self.assertEqual(visit(DialFinished("201", DialResult.BUSY)), [])

    def test_everyone_busy(self) -> None:
        """When the last extension is busy the visit ends busy."""
        visit = Visit()
        visit.to_calling()
        visit(DialFinished("201", DialResult.NO_ANSWER))
        self.assertIn(WriteRecord("busy"), visit(DialFinished("9000", DialResult.BUSY)))

    def test_nobody_answers(self) -> None:
        """When nobody answers the visitor is told so after the record is written."""
        visit = Visit()
        visit.to_calling()
        visit(DialFinished("201", DialResult.NO_ANSWER))
        self.assertIn(WriteRecord("no_answer"), visit(TimerFired("ring")))
        self.assertEqual(
            plays(visit(RecordWritten()), V), [("resident_not_answering", "goodbye")]
        )

    def test_dialer_unavailable(self) -> None:
        """With AMI down the visitor is told residents cannot be reached."""
        visit = Visit()
        visit.to_calling()
        self.assertIn(
            WriteRecord("resident_unreachable"),
            visit(DialFinished("201", DialResult.UNAVAILABLE)),
        )
        self.assertEqual(
            plays(visit(RecordWritten()), V), [("residents_unreachable", "goodbye")]
        )

    def test_pickup_announces(self) -> None:
        """The resident's leg arriving plays intro, the visitor's name and the choice."""
        visit = Visit()
        visit.to_calling()
        out = visit(DialFinished("201", DialResult.ANSWERED), ResidentArrived())
        self.assertEqual(
            plays(out, R), [("resident_intro", VISITOR_NAME, "resident_choice")]
        )
        self.assertIs(visit.phase, Phase.DECIDING)


class DecisionTests(SynchronousTestCase):
    def test_allow(self) -> None:
        """1 opens the door, then writes the record, then tells both sides, then ends."""
        visit = Visit()
        visit.to_deciding()
        out = visit(Digit(R, "1"))
        self.assertIn(OpenDoor(), out)
        self.assertNotIn(WriteRecord("allowed"), out)
        self.assertEqual(visit(DoorFinished(True)), [WriteRecord("allowed")])
        out = visit(RecordWritten())
        self.assertEqual(plays(out, V), [("access_granted", "goodbye")])
        self.assertEqual(plays(out, R), [("access_granted",)])
        self.assertEqual(visit(PlaybackFinished(R, "told")), [])
        self.assertEqual(visit(PlaybackFinished(V, "told")), [Finish("allowed")])
        self.assertIs(visit.phase, Phase.DONE)

    def test_door_failure_told(self) -> None:
        """A door that did not open is told to the visitor, not 'come in'."""
        visit = Visit()
        visit.to_deciding()
        visit(Digit(R, "1"), DoorFinished(False))
        self.assertEqual(plays(visit(RecordWritten()), V), [("door_failed", "goodbye")])

    def test_deny(self) -> None:
        """2 writes a denied record without touching the door."""
        visit = Visit()
        visit.to_deciding()
        out = visit(Digit(R, "2"))
        self.assertIn(WriteRecord("denied"), out)
        self.assertNotIn(OpenDoor(), visit.commands)

    def test_visitor_keys_never_decide(self) -> None:
        """The visitor pressing 1 while the resident decides does nothing at all."""
        visit = Visit()
        visit.to_deciding()
        self.assertEqual(visit(Digit(V, "1"), Digit(V, "2"), Digit(V, "3")), [])
        self.assertIs(visit.phase, Phase.DECIDING)

    def test_resident_keys_only_when_connected(self) -> None:
        """A resident key before the resident's leg is live decides nothing."""
        visit = Visit()
        visit.to_calling()
        self.assertEqual(visit(Digit(R, "1")), [])

    def test_other_keys_ignored(self) -> None:
        """Keys other than 1, 2, 3 leave the resident deciding."""
        visit = Visit()
        visit.to_deciding()
        self.assertEqual(visit(Digit(R, "9"), Digit(R, "#")), [])

    def test_silence_repeats_then_denies(self) -> None:
        """No key: the announcement is repeated once, then it counts as a deny."""
        visit = Visit(announcement_repeats=1, decision_timeout=6)
        visit.to_deciding()
        self.assertEqual(
            visit(PlaybackFinished(R, "announce")), [StartTimer("decision", 6)]
        )
        self.assertEqual(
            plays(visit(TimerFired("decision")), R),
            [("resident_intro", VISITOR_NAME, "resident_choice")],
        )
        visit(PlaybackFinished(R, "announce"))
        self.assertIn(WriteRecord("denied"), visit(TimerFired("decision")))

    def test_talk_then_allow(self) -> None:
        """3 bridges both legs; 1 during talk unbridges and opens the door."""
        visit = Visit()
        visit.to_deciding()
        out = visit(Digit(R, "3"))
        self.assertIn(Bridge(True), out)
        self.assertIs(visit.phase, Phase.TALKING)
        out = visit(Digit(R, "1"))
        self.assertIn(Bridge(False), out)
        self.assertIn(OpenDoor(), out)

    def test_hangup_during_talk_denies(self) -> None:
        """The resident hanging up during talk is a deny."""
        visit = Visit()
        visit.to_deciding()
        visit(Digit(R, "3"))
        self.assertIn(WriteRecord("denied"), visit(LegDropped(R)))

    def test_talk_limit(self) -> None:
        """Talk that runs past its limit ends as a deny."""
        visit = Visit()
        visit.to_deciding()
        visit(Digit(R, "3"))
        self.assertIn(WriteRecord("denied"), visit(TimerFired("talk")))


class LegTests(SynchronousTestCase):
    def test_visitor_leaves_while_ringing(self) -> None:
        """The visitor hanging up while ringing cancels the call and ends visitor_left."""
        visit = Visit()
        visit.to_calling()
        out = visit(LegGoneForGood(V))
        self.assertIn(CancelDial(), out)
        self.assertIn(WriteRecord("visitor_left"), out)
        self.assertEqual(visit(RecordWritten()), [Finish("visitor_left")])

    def test_visitor_leaves_while_resident_decides(self) -> None:
        """The resident is told the visitor left, then the pair ends."""
        visit = Visit()
        visit.to_deciding()
        visit(LegGoneForGood(V))
        self.assertEqual(plays(visit(RecordWritten()), R), [("visitor_left",)])
        self.assertEqual(visit(PlaybackFinished(R, "told")), [Finish("visitor_left")])

    def test_visitor_leaves_while_recording(self) -> None:
        """Leaving during the recording stops it."""
        visit = Visit()
        visit(
            VisitorArrived(), Digit(V, "1"), Digit(V, "#"), LookUpFinished("1", ("2",))
        )
        visit(PlaybackFinished(V, "say_name"))
        self.assertIn(StopRecording(), visit(LegGoneForGood(V)))

    def test_visitor_back_while_ringing(self) -> None:
        """A visitor leg that comes back while ringing hears 'please wait' again."""
        visit = Visit()
        visit.to_calling()
        self.assertEqual(visit(LegDropped(V)), [])
        self.assertEqual(plays(visit(LegBack(V)), V), [("calling_resident",)])
        self.assertIs(visit.phase, Phase.CALLING)

    def test_visitor_back_while_choosing_apartment(self) -> None:
        """A visitor back during the apartment question is asked again from scratch."""
        visit = Visit()
        visit(VisitorArrived(), Digit(V, "1"))
        visit(LegDropped(V))
        self.assertEqual(plays(visit(LegBack(V)), V), [("ask_apartment",)])
        self.assertEqual(visit.machine.digits, "")

    def test_resident_back_hears_announcement_again(self) -> None:
        """A resident leg that comes back inside the grace period hears it all again."""
        visit = Visit()
        visit.to_deciding()
        visit(LegDropped(R))
        self.assertEqual(visit(Digit(R, "1")), [])  # nobody is there to decide
        self.assertEqual(
            plays(visit(LegBack(R)), R),
            [("resident_intro", VISITOR_NAME, "resident_choice")],
        )
        self.assertIn(OpenDoor(), visit(Digit(R, "1")))

    def test_resident_hangs_up_before_deciding(self) -> None:
        """A resident who hangs up before deciding: the next extension rings."""
        visit = Visit()
        visit.to_deciding()
        out = visit(LegGoneForGood(R))
        self.assertEqual([c.extension for c in out if isinstance(c, Dial)], ["9000"])
        self.assertIs(visit.phase, Phase.CALLING)

    def test_pair_ended_by_registry(self) -> None:
        """A pair the registry ended (grace expired) is recorded once and never told."""
        visit = Visit()
        visit.to_calling()
        out = visit(PairEnded("visitor_lost"))
        self.assertIn(CancelDial(), out)
        self.assertIn(WriteRecord("visitor_lost"), out)
        self.assertEqual(visit(RecordWritten()), [])
        self.assertIs(visit.phase, Phase.DONE)

    def test_pair_ended_after_record(self) -> None:
        """The registry ending a concluded pair writes nothing twice."""
        visit = Visit()
        visit.to_deciding()
        visit(Digit(R, "2"), RecordWritten())
        self.assertEqual(visit(PairEnded("denied")), [])
        self.assertIs(visit.phase, Phase.DONE)


EVENTS = st.sampled_from(
    [
        VisitorArrived(),
        Digit(V, "1"),
        Digit(V, "#"),
        Digit(R, "1"),
        Digit(R, "2"),
        Digit(R, "3"),
        TimerFired("digits"),
        TimerFired("ring"),
        TimerFired("decision"),
        TimerFired("talk"),
        LookUpFinished("1", ("201", "9000")),
        LookUpFinished("9", None),
        RecordingFinished("r.wav"),
        RecordingFinished(None),
        DialFinished("201", DialResult.ANSWERED),
        DialFinished("201", DialResult.BUSY),
        DialFinished("9000", DialResult.NO_ANSWER),
        DialFinished("201", DialResult.UNAVAILABLE),
        ResidentArrived(),
        LegDropped(V),
        LegDropped(R),
        LegBack(V),
        LegBack(R),
        LegGoneForGood(V),
        LegGoneForGood(R),
        DoorFinished(True),
        DoorFinished(False),
        RecordWritten(),
        PairEnded("visitor_lost"),
        PlaybackFinished(V, "ask"),
        PlaybackFinished(V, "say_name"),
        PlaybackFinished(V, "wait"),
        PlaybackFinished(V, "told"),
        PlaybackFinished(R, "announce"),
        PlaybackFinished(R, "told"),
    ]
)


class InvariantTests(SynchronousTestCase):
    @settings(
        deadline=None,
        derandomize=True,
        max_examples=400,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(EVENTS, max_size=60))
    def test_rules_hold_for_any_order(self, events: list[object]) -> None:
        """Whatever happens in whatever order: the door opens only on the resident's 1,
        the outcome is told only after its record is written, one record, one end."""
        machine = VisitMachine()
        written = False
        record_requested = 0
        finished = 0
        resident_allowed = False
        for event in events:
            if isinstance(event, Digit) and event.role is R and event.digit == "1":
                resident_allowed = resident_allowed or machine.resident_present
            commands = machine.handle(event)  # type: ignore[arg-type]
            if isinstance(event, RecordWritten) and record_requested:
                written = True
            for command in commands:
                if isinstance(command, OpenDoor):
                    self.assertTrue(resident_allowed)
                if isinstance(command, WriteRecord):
                    record_requested += 1
                if isinstance(command, Play) and command.token == "told":
                    self.assertTrue(written)
                if isinstance(command, Finish):
                    finished += 1
                    self.assertTrue(written)
        self.assertLessEqual(record_requested, 1)
        self.assertLessEqual(finished, 1)
