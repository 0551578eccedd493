"""
The result of trying to open a door, and what an opener is told about the call.

Failures are values here, not exceptions: the flow records every result and
tells the visitor what happened, whatever went wrong.  :func:`never_fails`
turns a stray exception from an opener into such a value.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import field, frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["FAILED", "NOT_CONFIGURED", "OPENED", "DoorContext", "DoorResult"]

OPENED = "opened"
FAILED = "failed"
NOT_CONFIGURED = "not_configured"


@frozen
class DoorContext:
    """What the flow knows about the call beyond its UUID and apartment."""

    #: The gate the visitor is at, from the dialplan's GatekeeperVisit event.
    gate: str | None = None
    #: The visitor's Asterisk channel, from the same event; None if it never came.
    visitor_channel: str | None = None


@frozen
class DoorResult:
    """
    What happened when the door was asked to open.

    ``status`` and ``detail`` go to the access log as ``door_result`` and
    ``door_detail``; ``detail`` never holds credentials or door codes.
    """

    STATUSES: ClassVar[frozenset[str]] = frozenset({OPENED, FAILED, NOT_CONFIGURED})

    status: str = field()
    detail: str
    method: str
    attempts: int = 1

    @status.validator
    def _check_status(self, attribute: object, value: str) -> None:
        if value not in self.STATUSES:
            raise ValueError(f"door status {value!r} is not one of {self.STATUSES}")

    @property
    def opened(self) -> bool:
        """True only if the opener has positive word that the door opened."""
        return self.status == OPENED

    @classmethod
    def success(cls, method: str, detail: str, attempts: int = 1) -> DoorResult:
        return cls(OPENED, detail, method, attempts)

    @classmethod
    def failure(cls, method: str, detail: str, attempts: int = 1) -> DoorResult:
        return cls(FAILED, detail, method, attempts)


def never_fails(
    d: Deferred[DoorResult], method: str, call_uuid: str, log: Logger
) -> Deferred[DoorResult]:
    """A bug in an opener becomes a failed result (and a logged traceback)."""

    def unexpected(failure: Failure) -> DoorResult:
        log.failure(
            "door opener {method} crashed for {call_uuid}",
            failure,
            method=method,
            call_uuid=call_uuid,
        )
        return DoorResult.failure(
            method, f"internal error: {failure.getErrorMessage()}"
        )

    return d.addErrback(unexpected)
