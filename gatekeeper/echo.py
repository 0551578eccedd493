"""
The echo application (``--app echo``): every call hears itself.

Integrators point Asterisk at it to check their wiring end to end, and the
load benchmark drives it.  Each received audio frame goes back at the same
kind, paced by the shared :class:`~gatekeeper.media.pacer.Pacer` (so it
leaves one tick after it arrived, never in a burst), and silence fills every
tick with nothing queued, because Asterisk hangs up after 2 s with no frame
either way.  DTMF digits are logged with the call's UUID.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import (
    IAudioSocketLeg,
    ICallBinder,
    ICallReceiver,
)
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.media.pacer import OutboundStream, Pacer

__all__ = ["EchoApplication", "EchoCall"]


@implementer(ICallReceiver)
class EchoCall:
    """One echoed connection."""

    _log = Logger()

    def __init__(self, leg: IAudioSocketLeg, stream: OutboundStream) -> None:
        self.leg = leg
        self.stream = stream
        self.digits: list[str] = []

    def audio_received(self, kind: Kind, payload: bytes) -> None:
        stream = self.stream
        if kind is not stream.kind:
            self._log.info(
                "call {call_uuid}: echoing {kind} audio",
                call_uuid=self.leg.call_uuid,
                kind=kind.name,
            )
            stream.interrupt()
            stream.set_kind(kind)
        stream.enqueue(payload)

    def dtmf_received(self, digit: str) -> None:
        self.digits.append(digit)
        self._log.info(
            "call {call_uuid}: DTMF {digit}", call_uuid=self.leg.call_uuid, digit=digit
        )

    def connection_lost(self, reason: Failure) -> None:
        self.stream.pacer.detach(self.stream)
        self._log.info(
            "call {call_uuid}: ended ({digits} DTMF digits, {dropped} bytes over "
            "the echo queue bound)",
            call_uuid=self.leg.call_uuid,
            digits=len(self.digits),
            dropped=self.stream.overflowed_bytes,
        )


@implementer(ICallBinder)
class EchoApplication:
    """Binds every connection to its own echo; refuses a UUID already live."""

    _log = Logger()

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def bind(self, call_uuid: str, leg: IAudioSocketLeg) -> ICallReceiver:
        self._log.info(
            "call {call_uuid}: echo from {peer}", call_uuid=call_uuid, peer=leg.peer
        )
        return EchoCall(leg, self.pacer.attach(leg, Kind.SLIN))
