"""
Helpers for the security tests: real protocol legs on the rig, a dialer
that rings several visits at once, and a visit driven to the resident.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gatekeeper.audiosocket.protocol import (
    AudioSocketFactory,
    AudioSocketProtocol,
    ListenerPolicy,
)
from gatekeeper.audiosocket.wire import FrameDecoder, Kind, encode
from gatekeeper.dialer.interfaces import OriginateResult
from gatekeeper.dialer.interfaces import Outcome as DialOutcome
from tests.flow.rig import CALL, FakeConnection, FakeDialer, Rig

__all__ = [
    "CALL",
    "CALL_B",
    "Line",
    "ManyCallsDialer",
    "connect",
    "dtmf",
    "uuid_frame",
]

CALL_B = "b0b0b0b0-2222-4333-8444-555566667777"


def uuid_frame(call_uuid: str) -> bytes:
    return encode(Kind.UUID, uuid.UUID(call_uuid).bytes)


def dtmf(digits: str) -> bytes:
    return b"".join(encode(Kind.DTMF, d.encode()) for d in digits)


def connect(rig: Rig, call_uuid: str, peer: str) -> FakeConnection:
    """A rig leg for any call UUID (the rig's own ``connect`` knows only CALL)."""
    connection = FakeConnection(rig.clock, call_uuid, peer)
    connection.receiver = rig.registry.bind(call_uuid, connection)
    return connection


class Line:
    """
    A real AudioSocketProtocol bound to the rig's registry over a
    StringTransport: what an attacker's socket would reach.
    """

    def __init__(self, rig: Rig, port: int = 6666) -> None:
        self.factory = AudioSocketFactory(
            rig.registry, rig.clock, ListenerPolicy(), direct_send=False
        )
        address = IPv4Address("TCP", "127.0.0.1", port)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, AudioSocketProtocol)
        self.protocol = protocol
        self.transport = StringTransport(peerAddress=address)
        protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.settle()

    def settle(self) -> None:
        """Deliver the close the protocol asked for, as the reactor would."""
        if self.protocol.connected and self.transport.disconnecting:
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def received(self) -> list[tuple[Kind, bytes]]:
        """Every frame the server sent this connection."""
        frames = FrameDecoder().feed(self.transport.value())
        return [(f.kind, f.payload) for f in frames]


class ManyCallsDialer(FakeDialer):
    """The rig's dialer, answering for whichever visit rang the extension."""

    def __init__(self) -> None:
        super().__init__()
        self.uuids: dict[str, str] = {}

    def call_resident(
        self, call_uuid: str, extension: str, ring_timeout: float
    ) -> Deferred[OriginateResult]:
        self.uuids[extension] = call_uuid
        return super().call_resident(call_uuid, extension, ring_timeout)

    def answer(
        self, extension: str, outcome: DialOutcome = DialOutcome.ANSWERED
    ) -> None:
        call_uuid = self.uuids[extension]
        self.calls.pop(extension).callback(
            OriginateResult(call_uuid, extension, f"{call_uuid}-{extension}", outcome)
        )


def to_resident(rig: Rig, call_uuid: str, apartment: str, port: int) -> Any:
    """A visitor of ``call_uuid`` who chose ``apartment`` and said a name."""
    visitor = connect(rig, call_uuid, f"127.0.0.1:{port}")
    rig.run(0.3)
    visitor.press(apartment + "#")
    rig.run(0.5)
    rig.speak(visitor)
    return visitor
