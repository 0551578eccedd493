"""
Tests for :mod:`gatekeeper.session.callpair`: the validators that keep a
visit's identity and context whole wherever they are set.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.session.callpair import (
    AttemptResult,
    CallPair,
    ContextMismatchError,
    Leg,
    LegState,
    Outcome,
    ResidentAttempt,
    Role,
    VisitContext,
)
from gatekeeper.session.uuids import InvalidCallUUID
from tests.session.test_registry import FakeConnection, new_uuid


def make_pair(call_uuid: str | None = None) -> CallPair:
    call_uuid = call_uuid or new_uuid()
    visitor = Leg(Role.VISITOR, FakeConnection(call_uuid), attached_at=0.0)
    pair = CallPair(
        call_uuid,
        visitor=visitor,
        context=VisitContext(call_uuid, started_at=0.0),
        started_at=0.0,
    )
    visitor.pair = pair
    return pair


class CallPairTests(SynchronousTestCase):
    def test_uuid_must_be_canonical(self) -> None:
        """A pair cannot be built on an uppercase or malformed UUID."""
        call = new_uuid()
        for bad in (call.upper(), call.replace("-", ""), "x"):
            self.assertRaises(InvalidCallUUID, make_pair, bad)

    def test_uuid_cannot_change(self) -> None:
        """A pair's UUID, and its context's, are fixed for life."""
        pair = make_pair()
        self.assertRaises(
            attrs.exceptions.FrozenAttributeError,
            setattr,
            pair,
            "call_uuid",
            new_uuid(2),
        )
        self.assertRaises(
            attrs.exceptions.FrozenAttributeError,
            setattr,
            pair.context,
            "call_uuid",
            new_uuid(2),
        )

    def test_context_must_be_the_pairs(self) -> None:
        """A context of another call is refused, at construction and on assignment."""
        pair = make_pair(new_uuid(1))
        foreign = VisitContext(new_uuid(2), started_at=0.0)
        self.assertRaises(ContextMismatchError, setattr, pair, "context", foreign)
        with self.assertRaises(ContextMismatchError):
            CallPair(
                new_uuid(1),
                visitor=pair.visitor,
                context=foreign,
                started_at=0.0,
            )

    def test_legs_must_play_their_roles(self) -> None:
        """The visitor slot takes a visitor leg and the resident slot a resident leg."""
        pair = make_pair()
        visitor_again = Leg(Role.VISITOR, None, attached_at=0.0)
        self.assertRaises(ValueError, setattr, pair, "resident", visitor_again)
        resident = Leg(Role.RESIDENT, None, attached_at=0.0)
        pair.resident = resident
        self.assertEqual(pair.legs, (pair.visitor, resident))
        self.assertIs(pair.leg(Role.RESIDENT), resident)
        with self.assertRaises(ValueError):
            CallPair(
                pair.call_uuid,
                visitor=resident,
                context=pair.context,
                started_at=0.0,
            )

    def test_outcome_must_be_an_outcome(self) -> None:
        """Only Outcome members are outcomes."""
        pair = make_pair()
        self.assertRaises(TypeError, setattr, pair, "outcome", "allowed")
        pair.outcome = Outcome.ALLOWED
        self.assertTrue(pair.ended)

    def test_outcome_names(self) -> None:
        """The outcomes the flow and the metrics rely on exist with these names."""
        self.assertLessEqual(
            {
                "allowed",
                "denied",
                "no_answer",
                "busy",
                "visitor_left",
                "visitor_lost",
                "resident_lost",
                "resident_unreachable",
                "failed",
                "shutdown",
            },
            {outcome.value for outcome in Outcome},
        )

    def test_pair_outside_a_registry_cannot_end(self) -> None:
        """end() needs the registry that owns the pair."""
        self.assertRaises(RuntimeError, make_pair().end, Outcome.FAILED)

    def test_when_ended_on_an_ended_pair(self) -> None:
        """when_ended() on a pair that has an outcome fires with it at once."""
        pair = make_pair()
        pair.outcome = Outcome.BUSY
        self.assertEqual(self.successResultOf(pair.when_ended()), Outcome.BUSY)


class LegTests(SynchronousTestCase):
    def test_kind_must_be_audio(self) -> None:
        """A leg's kind is always an audio kind."""
        leg = Leg(Role.VISITOR, None, attached_at=0.0)
        self.assertEqual(leg.kind, Kind.SLIN)
        self.assertRaises(ValueError, setattr, leg, "kind", Kind.DTMF)
        self.assertRaises(ValueError, Leg, Role.VISITOR, None, 0.0, kind=Kind.UUID)

    def test_role_is_fixed(self) -> None:
        """A leg never changes role."""
        leg = Leg(Role.VISITOR, None, attached_at=0.0)
        self.assertRaises(
            attrs.exceptions.FrozenAttributeError, setattr, leg, "role", Role.RESIDENT
        )

    def test_frames_on_a_leg_that_is_not_live_are_ignored(self) -> None:
        """A leg hanging up passes nothing on and sends nothing."""
        pair = make_pair()
        leg = pair.visitor
        leg.state = LegState.HANGING_UP
        leg.audio_received(Kind.SLIN16, b"\x00\x00")
        self.assertEqual(leg.kind, Kind.SLIN)
        self.assertFalse(leg.send_audio(b"\x00\x00"))

    def test_leg_knows_its_call(self) -> None:
        """A leg reports its pair's UUID, and none before it joins one."""
        pair = make_pair()
        self.assertEqual(pair.visitor.call_uuid, pair.call_uuid)
        self.assertIsNone(Leg(Role.RESIDENT, None, attached_at=0.0).call_uuid)


class VisitContextTests(SynchronousTestCase):
    def context(self) -> VisitContext:
        return VisitContext(new_uuid(), started_at=10.0)

    def test_fields_validated_on_assignment(self) -> None:
        """Bad apartments, channels and references fail where they are written."""
        context = self.context()
        for name, bad in (
            ("apartment", ""),
            ("apartment", "12 B"),
            ("apartment", "../../etc"),
            ("apartment", "a/../etc"),
            ("apartment", "x" * 33),
            ("visitor_channel", "PJSIP/gate\n"),
            ("gate", ""),
            ("recording", "a b.wav"),
            ("recording", 7),
        ):
            self.assertRaises(ValueError, setattr, context, name, bad)
        context.apartment = "12B"
        context.visitor_channel = "PJSIP/gate-00000001"
        context.recording = f"recordings/{context.call_uuid}.wav"
        self.assertEqual(context.apartment, "12B")

    def test_started_at_is_a_time(self) -> None:
        """Times are finite numbers."""
        for bad in (float("nan"), float("inf"), "0", True):
            self.assertRaises((TypeError, ValueError), VisitContext, new_uuid(), bad)

    def test_phases(self) -> None:
        """Phases keep their order and their first entry time."""
        context = self.context()
        self.assertEqual(context.phase, "new")
        context.enter_phase("greeting", 10.0)
        context.enter_phase("apartment", 12.5)
        context.enter_phase("greeting", 20.0)
        self.assertEqual(context.phase, "greeting")
        self.assertEqual(context.phase_started("greeting"), 10.0)
        self.assertEqual(context.phase_started("apartment"), 12.5)
        self.assertIsNone(context.phase_started("announce"))

    def test_phases_do_not_go_back(self) -> None:
        """A phase entered before the previous one is refused, as is a bad name."""
        context = self.context()
        context.enter_phase("greeting", 10.0)
        self.assertRaises(ValueError, context.enter_phase, "apartment", 9.0)
        self.assertRaises(ValueError, context.enter_phase, "Apartment", 11.0)
        self.assertRaises(ValueError, context.enter_phase, "", 11.0)
        self.assertEqual(context.phases, (("greeting", 10.0),))

    def test_attempts_numbered_in_order(self) -> None:
        """Resident attempts are numbered 1, 2, ... with no gap."""
        context = self.context()
        first = ResidentAttempt(1, None, 0.0, 30.0)
        third = ResidentAttempt(3, None, 0.0, 30.0)
        self.assertRaises(ValueError, setattr, context, "resident_attempts", (third,))
        context.resident_attempts = (first,)
        self.assertIs(context.last_attempt, first)

    def test_attempt_consistency(self) -> None:
        """A deadline follows its start; a result comes with its resolution time."""
        self.assertRaises(ValueError, ResidentAttempt, 1, None, 10.0, 5.0)
        self.assertRaises(
            ValueError, ResidentAttempt, 1, None, 0.0, 5.0, AttemptResult.ANSWERED
        )
        self.assertRaises(ValueError, ResidentAttempt, 0, None, 0.0, 5.0)
        self.assertRaises(ValueError, ResidentAttempt, 1, "a b", 0.0, 5.0)

    def test_check_at_the_handover(self) -> None:
        """check() passes a whole context of the right call, and nothing else."""
        context = self.context()
        context.check(context.call_uuid)
        self.assertRaises(ContextMismatchError, context.check, new_uuid(99))
        object.__setattr__(context, "phases", [("greeting", 1.0)])
        error = self.assertRaises(
            ContextMismatchError, context.check, context.call_uuid
        )
        self.assertIn("damaged", str(error))
