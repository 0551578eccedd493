"""
Fault primitives the simulated Asterisk lacks, applied to a leg's transport.

Each fault acts on one AudioSocket TCP connection only: the simulated channel
stays up on AMI (no ``Hangup`` event unless the simulated dialplan sends one
because gatekeeper closed the connection itself).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet.defer import succeed

from gatekeeper.audiosocket.wire import Kind, encode
from gatekeeper.testing.legs import AsteriskLeg

__all__ = ["FAULTS", "GARBAGE", "apply_fault", "mute"]

#: A frame of a kind ``res_audiosocket.h`` does not define.
GARBAGE = bytes([0x7F, 0x00, 0x01, 0x00])

FAULTS = ("close", "reset", "silence", "garbage", "split")


def mute(leg: AsteriskLeg) -> None:
    """The leg sends nothing more: no audio, no DTMF; the socket stays open."""
    leg.frames.remove(leg)
    leg.continuous = False
    leg._outbound.clear()
    leg.press = lambda digit: None  # type: ignore[method-assign]
    leg.speak = lambda pcm: succeed(None)  # type: ignore[method-assign]


def close(leg: AsteriskLeg) -> None:
    """A plain FIN from the Asterisk side."""
    leg.closed_by_us = True
    leg.transport.loseConnection()


def reset(leg: AsteriskLeg) -> None:
    """An RST: SO_LINGER 0, then close."""
    leg.closed_by_us = True
    sock = leg.transport.getHandle()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    leg.transport.abortConnection()


def garbage(leg: AsteriskLeg) -> None:
    """One frame of an unknown kind, then the leg goes quiet."""
    mute(leg)
    leg.transport.write(GARBAGE)


def split(leg: AsteriskLeg, clock: Any, stall: float) -> None:
    """One valid audio frame in two TCP segments with a stall between them.

    The leg's 20 ms clock is paused meanwhile, so no other write lands in the
    middle of the frame (key presses wait too, as a real leg's would behind
    a partly written frame); afterwards the leg carries on as before.
    """
    frame = encode(Kind.SLIN, bytes(Kind.SLIN.frame_bytes))
    leg.frames.remove(leg)
    pressed: list[str] = []
    leg.press = pressed.append  # type: ignore[method-assign]
    leg.transport.write(frame[:5])

    def rest() -> None:
        del leg.press  # back to the class's method
        if leg.connected:
            leg.transport.write(frame[5:])
            leg.frames.add(leg)
            for digit in pressed:
                leg.press(digit)

    clock.callLater(stall, rest)


def apply_fault(fault: str, leg: AsteriskLeg, clock: Any, stall: float) -> None:
    if fault == "close":
        close(leg)
    elif fault == "reset":
        reset(leg)
    elif fault == "silence":
        mute(leg)
    elif fault == "garbage":
        garbage(leg)
    elif fault == "split":
        split(leg, clock, stall)
    else:
        raise ValueError(fault)
