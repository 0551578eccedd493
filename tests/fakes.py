"""Small fakes shared by tests: a leg for code above the protocol, and an
in-memory connection for tests of the protocol with the registry."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.protocol import (
    AudioSocketFactory,
    AudioSocketProtocol,
    ListenerPolicy,
)
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.session.registry import SessionRegistry


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


def registry_connection(
    port: int, max_payload: int = 1024
) -> tuple[AudioSocketProtocol, StringTransport, AudioSocketFactory, SessionRegistry]:
    """A started registry on a Clock and one connection to its factory from
    127.0.0.1:``port``, over a StringTransport (no direct sends)."""
    clock = Clock()
    registry = SessionRegistry(clock)
    registry.startService()
    factory = AudioSocketFactory(
        registry, clock, ListenerPolicy(max_payload=max_payload), direct_send=False
    )
    address = IPv4Address("TCP", "127.0.0.1", port)
    protocol = factory.buildProtocol(address)
    assert isinstance(protocol, AudioSocketProtocol)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport, factory, registry
