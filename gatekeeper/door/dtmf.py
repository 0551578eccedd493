"""
The ``dtmf`` opener: many gate intercoms open when they hear a code.

The code is played on the visitor's own channel (the intercom's call) through
AMI ``PlayDTMF``, which the dialer provides as an :class:`IDTMFPlayer`.  Only
the dialplan's ``GatekeeperVisit`` event tells us that channel; without it
there is nothing to play on, and the result says so.  The code opens the
gate, so it is never logged nor put in a result's detail.  There is no retry:
a code played twice may be read as a wrong code by the intercom.
"""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener, IDTMFPlayer
from gatekeeper.door.result import DoorContext, DoorResult, never_fails

__all__ = ["DTMF_DIGITS", "DTMFDoorOpener"]

DTMF_DIGITS = re.compile(r"[0-9*#A-Da-d]{1,32}")


@implementer(IDoorOpener)
class DTMFDoorOpener:
    """Plays the door code on the visitor's channel."""

    name = "dtmf"
    _log = Logger()

    def __init__(
        self,
        player: IDTMFPlayer,
        digits: str,
        *,
        clock: IReactorTime,
        timeout: float = 10.0,
    ) -> None:
        if DTMF_DIGITS.fullmatch(digits) is None:
            raise ValueError("the door code must be 1 to 32 DTMF digits (0-9 * # A-D)")
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0, not {timeout}")
        self._player = IDTMFPlayer(player)
        self._digits = digits.upper()
        self._clock = clock
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<DTMFDoorOpener {len(self._digits)} digits>"

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        channel = context.visitor_channel
        if not channel:
            self._log.error(
                "cannot open the door for {call_uuid} by DTMF: the visitor's"
                " channel is unknown (no GatekeeperVisit event arrived)",
                call_uuid=call_uuid,
            )
            return succeed(
                DoorResult.failure(
                    self.name,
                    "the visitor's channel is unknown (no GatekeeperVisit event),"
                    " so the door code could not be played",
                    attempts=0,
                )
            )
        d = maybeDeferred(self._player.play_dtmf, channel, self._digits)
        d.addTimeout(self._timeout, self._clock)

        def played(_: object) -> DoorResult:
            self._log.info(
                "door code played on {channel} for {call_uuid} ({apartment})",
                channel=channel,
                call_uuid=call_uuid,
                apartment=apartment,
            )
            return DoorResult.success(self.name, f"door code played on {channel}")

        def refused(failure: Failure) -> DoorResult:
            reason = failure.getErrorMessage() or failure.type.__name__
            if failure.check(defer.TimeoutError):
                reason = f"no answer from Asterisk within {self._timeout:g} s"
            self._log.error(
                "door code could not be played on {channel} for {call_uuid}: {reason}",
                channel=channel,
                call_uuid=call_uuid,
                reason=reason,
            )
            return DoorResult.failure(
                self.name, f"door code not played on {channel}: {reason}"
            )

        d.addCallbacks(played, refused)
        return never_fails(d, self.name, call_uuid, self._log)
