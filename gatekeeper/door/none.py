"""The ``none`` opener: for sites where gatekeeper only announces visitors."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import NOT_CONFIGURED, DoorContext, DoorResult

__all__ = ["NoDoorOpener"]


@implementer(IDoorOpener)
class NoDoorOpener:
    """Says plainly that no door is wired up; never claims it opened."""

    name = "none"
    _log = Logger()

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        self._log.warn(
            "visit {call_uuid} to {apartment} was allowed, but no door opener"
            " is configured",
            call_uuid=call_uuid,
            apartment=apartment,
        )
        return succeed(
            DoorResult(NOT_CONFIGURED, "no door opener is configured", self.name, 0)
        )
