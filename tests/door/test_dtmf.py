"""Tests for the ``dtmf`` door opener, with a fake AMI player."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gatekeeper.door import DoorContext, DTMFDoorOpener, IDoorOpener, IDTMFPlayer
from gatekeeper.door.result import FAILED, OPENED

UUID = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"
CHANNEL = "PJSIP/gate-00000001"
CODE = "*4711#"


@implementer(IDTMFPlayer)
class FakePlayer:
    """Records what it was asked to play and answers as scripted."""

    def __init__(self, answer: Deferred[Any]) -> None:
        self.answer = answer
        self.played: list[tuple[str, str]] = []

    def play_dtmf(self, channel: str, digits: str) -> Deferred[Any]:
        self.played.append((channel, digits))
        return self.answer


class DTMFTests(SynchronousTestCase):
    """The door code goes to the visitor's channel, or the result says why not."""

    def setUp(self) -> None:
        self.clock = Clock()

    def opener(self, answer: Deferred[Any]) -> tuple[DTMFDoorOpener, FakePlayer]:
        player = FakePlayer(answer)
        return DTMFDoorOpener(player, CODE, clock=self.clock), player

    def test_provides_interface(self) -> None:
        """The opener provides IDoorOpener."""
        self.assertTrue(verifyObject(IDoorOpener, self.opener(succeed(None))[0]))

    def test_plays_code(self) -> None:
        """The code is played on the visitor's channel and the door is opened."""
        opener, player = self.opener(succeed(None))
        with capturedLogs() as events:
            result = self.successResultOf(
                opener.open(UUID, "101", DoorContext(visitor_channel=CHANNEL))
            )
        self.assertEqual(player.played, [(CHANNEL, CODE)])
        self.assertEqual((result.status, result.method), (OPENED, "dtmf"))
        self.assertEqual([e["call_uuid"] for e in events], [UUID])

    def test_channel_unknown(self) -> None:
        """Without the visitor's channel nothing is played and the result says so."""
        opener, player = self.opener(succeed(None))
        with capturedLogs() as events:
            result = self.successResultOf(opener.open(UUID, "101", DoorContext()))
        self.assertEqual((player.played, result.status), ([], FAILED))
        self.assertIn("channel is unknown", result.detail)
        self.assertEqual([e["call_uuid"] for e in events], [UUID])

    def test_player_refuses(self) -> None:
        """An AMI error becomes a failed result carrying its message."""
        opener, _ = self.opener(fail(RuntimeError("No such channel")))
        with capturedLogs():
            result = self.successResultOf(
                opener.open(UUID, "101", DoorContext(visitor_channel=CHANNEL))
            )
        self.assertEqual(result.status, FAILED)
        self.assertIn("No such channel", result.detail)

    def test_player_silent(self) -> None:
        """An AMI that never answers fails the door at the timeout."""
        opener, _ = self.opener(Deferred())
        with capturedLogs():
            d = opener.open(UUID, "101", DoorContext(visitor_channel=CHANNEL))
            self.clock.advance(9.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
        result = self.successResultOf(d)
        self.assertEqual(
            (result.status, result.detail),
            (
                FAILED,
                f"door code not played on {CHANNEL}:"
                " no answer from Asterisk within 10 s",
            ),
        )

    def test_code_kept_secret(self) -> None:
        """The door code appears in no log event, result or repr."""
        opener, _ = self.opener(succeed(None))
        with capturedLogs() as events:
            result = self.successResultOf(
                opener.open(UUID, "101", DoorContext(visitor_channel=CHANNEL))
            )
        self.assertNotIn("4711", repr(events) + repr(result) + repr(opener))

    def test_bad_code_refused(self) -> None:
        """A code with characters DTMF cannot carry is refused at setup."""
        self.assertRaises(
            ValueError,
            DTMFDoorOpener,
            FakePlayer(succeed(None)),
            "12x",
            clock=self.clock,
        )
