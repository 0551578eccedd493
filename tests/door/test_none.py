"""Tests for the ``none`` opener and the per-gate dispatcher."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gatekeeper.door import (
    DoorContext,
    DoorResult,
    GateDoorOpener,
    IDoorOpener,
    NoDoorOpener,
)
from gatekeeper.door.result import NOT_CONFIGURED

UUID = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"


@implementer(IDoorOpener)
class Named:
    """An opener that reports its own name as the detail."""

    name = "fake"

    def __init__(self, label: str) -> None:
        self.label = label

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        return succeed(DoorResult.success("fake", self.label))


class NoneTests(SynchronousTestCase):
    """With no opener configured the result never pretends the door opened."""

    def test_not_configured(self) -> None:
        """The result is not_configured, not opened, and the log names the call."""
        opener = NoDoorOpener()
        self.assertTrue(verifyObject(IDoorOpener, opener))
        with capturedLogs() as events:
            result = self.successResultOf(opener.open(UUID, "101", DoorContext()))
        self.assertEqual((result.status, result.opened), (NOT_CONFIGURED, False))
        self.assertEqual([e["call_uuid"] for e in events], [UUID])

    def test_result_status_checked(self) -> None:
        """A DoorResult with a made-up status cannot be built."""
        self.assertRaises(ValueError, DoorResult, "sort_of", "", "http")


class GateTests(SynchronousTestCase):
    """Each gate's visits reach that gate's opener."""

    def test_dispatch(self) -> None:
        """Known gates get their opener; unknown or missing gates the default."""
        opener = GateDoorOpener(Named("default"), {"north": Named("north")})
        self.assertTrue(verifyObject(IDoorOpener, opener))
        details = [
            self.successResultOf(opener.open(UUID, "1", DoorContext(gate=g))).detail
            for g in ("north", "south", None)
        ]
        self.assertEqual(details, ["north", "default", "default"])
