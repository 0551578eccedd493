"""Test doubles for the seam between the protocol and a call's owner."""

from __future__ import annotations

from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import (
    CallRefused,
    IAudioSocketLeg,
    ICallBinder,
    ICallReceiver,
)
from gatekeeper.audiosocket.wire import Kind


@implementer(ICallReceiver)
class RecordingReceiver:
    def __init__(self, leg: IAudioSocketLeg) -> None:
        self.leg = leg
        self.audio: list[tuple[Kind, bytes]] = []
        self.digits: list[str] = []
        self.lost: list[Failure] = []

    def audio_received(self, kind: Kind, payload: bytes) -> None:
        self.audio.append((kind, payload))

    def dtmf_received(self, digit: str) -> None:
        self.digits.append(digit)

    def connection_lost(self, reason: Failure) -> None:
        self.lost.append(reason)


@implementer(ICallBinder)
class RecordingBinder:
    """Binds every UUID, or refuses those in ``refuse``."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.calls: dict[str, RecordingReceiver] = {}

    def bind(self, call_uuid: str, leg: IAudioSocketLeg) -> ICallReceiver:
        if call_uuid in self.refuse:
            raise CallRefused("test_refusal", "this UUID is refused")
        receiver = RecordingReceiver(leg)
        self.calls[call_uuid] = receiver
        return receiver
