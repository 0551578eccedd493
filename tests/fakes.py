"""Small fakes shared by tests of code that sits above the protocol."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.wire import Kind


@implementer(IAudioSocketLeg)
class FakeLeg:
    """Records every frame sent to it, with the clock's time."""

    def __init__(
        self, clock: IReactorTime, call_uuid: str = "", peer: str = "127.0.0.1:1"
    ) -> None:
        self.clock = clock
        self.call_uuid = call_uuid
        self.peer = peer
        self.connected = True
        self.sent: list[tuple[float, Kind, bytes]] = []
        self.hung_up = False

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        if not self.connected:
            return False
        self.sent.append((self.clock.seconds(), kind, payload))
        return True

    def send_frame(self, frame: bytes) -> bool:
        return self.send_audio(Kind(frame[0]), bytes(frame[3:]))

    def hang_up(self) -> None:
        self.hung_up = True
        self.connected = False

    @property
    def times(self) -> list[float]:
        return [round(t, 6) for t, _, _ in self.sent]

    @property
    def audio(self) -> bytes:
        return b"".join(payload for _, _, payload in self.sent)
