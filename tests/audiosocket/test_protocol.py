"""AudioSocketProtocol and AudioSocketFactory, over in-memory transports."""

from __future__ import annotations

import uuid

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.protocol import (
    AudioSocketFactory,
    AudioSocketProtocol,
    ListenerPolicy,
)
from gatekeeper.audiosocket.wire import Kind, encode

from .recording import RecordingBinder

CALL = uuid.UUID("e69439e9-1489-4bba-b55d-37612b5dffaf")
UUID_FRAME = encode(Kind.UUID, CALL.bytes)
AUDIO = encode(Kind.SLIN, bytes(320))


class NoDelayTransport(StringTransport):
    nodelay = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def loseConnection(self) -> None:
        super().loseConnection()


class Harness:
    """A factory, a clock, and helpers to open in-memory connections."""

    def __init__(self, policy: ListenerPolicy | None = None, **binder: object) -> None:
        self.clock = Clock()
        self.binder = RecordingBinder(**binder)  # type: ignore[arg-type]
        self.factory = AudioSocketFactory(self.binder, self.clock, policy)

    def connect(
        self, host: str = "127.0.0.1", port: int = 40000
    ) -> tuple[AudioSocketProtocol | None, NoDelayTransport]:
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        protocol = self.factory.buildProtocol(address)
        transport = NoDelayTransport(peerAddress=address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    @staticmethod
    def lose(protocol: AudioSocketProtocol) -> None:
        protocol.connectionLost(Failure(ConnectionDone()))


class HandshakeTests(SynchronousTestCase):
    def test_uuid_binds(self) -> None:
        """The UUID frame binds the call; audio and DTMF then reach the receiver."""
        h = Harness()
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME + AUDIO + encode(Kind.DTMF, b"7"))
        call = h.binder.calls[str(CALL)]
        self.assertEqual(call.audio, [(Kind.SLIN, bytes(320))])
        self.assertEqual(call.digits, ["7"])
        self.assertEqual(protocol.call_uuid, str(CALL))
        self.assertFalse(transport.disconnecting)

    def test_leg_interface(self) -> None:
        """The protocol provides IAudioSocketLeg to the call's owner."""
        h = Harness()
        protocol, _ = h.connect()
        verifyObject(IAudioSocketLeg, protocol)

    def test_nodelay(self) -> None:
        """TCP_NODELAY is set on every connection, as Asterisk sets it."""
        _, transport = Harness().connect()
        self.assertTrue(transport.nodelay)

    def test_first_frame_not_uuid(self) -> None:
        """Audio before the UUID is a protocol error: one log line with the peer, close."""
        h = Harness()
        protocol, transport = h.connect("127.0.0.1", 41000)
        assert protocol is not None
        with capturedLogs() as events:
            protocol.dataReceived(AUDIO)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.binder.calls, {})
        warnings = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["peer"], "127.0.0.1:41000")
        self.assertIn("not the call UUID", warnings[0]["problem"])

    def test_garbage_closes(self) -> None:
        """An unknown kind closes the connection and counts a protocol error."""
        h = Harness()
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME + b"\x42\x00\x01x")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.factory.protocol_errors, 1)
        # The UUID before the garbage was whole and was acted on.
        self.assertIn(str(CALL), h.binder.calls)

    def test_no_data_after_close(self) -> None:
        """Bytes arriving after a protocol error are ignored, not decoded."""
        h = Harness()
        protocol, _ = h.connect()
        assert protocol is not None
        protocol.dataReceived(b"\x42\x00\x00")
        protocol.dataReceived(UUID_FRAME)
        self.assertEqual(h.binder.calls, {})

    def test_second_uuid(self) -> None:
        """A second UUID frame on a bound connection is a protocol error."""
        h = Harness()
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME + UUID_FRAME)
        self.assertTrue(transport.disconnecting)

    def test_refused(self) -> None:
        """A refused UUID gets a hang-up frame and a close, with a warning naming it."""
        h = Harness(refuse=frozenset({str(CALL)}))
        protocol, transport = h.connect()
        assert protocol is not None
        with capturedLogs() as events:
            protocol.dataReceived(UUID_FRAME + AUDIO)
        self.assertEqual(transport.value(), b"\x00\x00\x00")
        self.assertTrue(transport.disconnecting)
        (warning,) = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(warning["call_uuid"], str(CALL))
        self.assertEqual(warning["reason"], "test_refusal")

    def test_oversized_frame(self) -> None:
        """A frame over the policy's bound closes the connection before buffering it."""
        h = Harness(ListenerPolicy(max_payload=1000))
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME + b"\x10\xff\xff")
        self.assertTrue(transport.disconnecting)

    def test_error_frame_closes(self) -> None:
        """An error frame from the peer ends the connection with a warning."""
        h = Harness()
        protocol, transport = h.connect()
        assert protocol is not None
        with capturedLogs() as events:
            protocol.dataReceived(UUID_FRAME + encode(Kind.ERROR, b"\x01"))
        self.assertTrue(transport.disconnecting)
        self.assertTrue(any(e.get("flags") == 1 for e in events))

    def test_connection_lost_reaches_receiver(self) -> None:
        """Asterisk hangs up by closing: the receiver is told, once."""
        h = Harness()
        protocol, _ = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME)
        h.lose(protocol)
        self.assertEqual(len(h.binder.calls[str(CALL)].lost), 1)
        self.assertEqual(h.factory.connections, set())


class TimeoutTests(SynchronousTestCase):
    def test_handshake_timeout(self) -> None:
        """A connection that sends no UUID within the handshake timeout is closed."""
        h = Harness(ListenerPolicy(handshake_timeout=5))
        _protocol, transport = h.connect()
        h.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_idle_timeout(self) -> None:
        """After the UUID, silence for idle_timeout hangs up; each frame resets it."""
        h = Harness(ListenerPolicy(idle_timeout=30))
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME)
        h.clock.advance(29)
        protocol.dataReceived(AUDIO)
        h.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"\x00\x00\x00")

    def test_no_timer_left(self) -> None:
        """A closed connection leaves no pending timer behind."""
        h = Harness()
        protocol, _ = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME)
        h.lose(protocol)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class FactoryTests(SynchronousTestCase):
    def test_allowlist_default_loopback(self) -> None:
        """By default only loopback peers (v4, v6, v4-mapped) get a protocol."""
        h = Harness()
        self.assertIsNotNone(h.connect("127.0.0.1")[0])
        self.assertIsNotNone(h.connect("::1")[0])
        self.assertIsNotNone(h.connect("::ffff:127.0.0.1")[0])
        with capturedLogs() as events:
            self.assertIsNone(h.connect("192.0.2.7")[0])
        self.assertEqual(h.factory.refused_connections, 1)
        self.assertIn("allowlist", events[0]["log_format"])

    def test_allowlist_configured(self) -> None:
        """A configured network admits its hosts and nobody else."""
        h = Harness(ListenerPolicy(allow=("10.1.0.0/16",)))
        self.assertIsNotNone(h.connect("10.1.2.3")[0])
        self.assertIsNone(h.connect("127.0.0.1")[0])

    def test_max_connections(self) -> None:
        """Past max_connections new connections are refused; a closed one frees a place."""
        h = Harness(ListenerPolicy(max_connections=2))
        first, _ = h.connect()
        h.connect()
        self.assertIsNone(h.connect()[0])
        assert first is not None
        h.lose(first)
        self.assertIsNotNone(h.connect()[0])

    def test_garbage_does_not_touch_other_calls(self) -> None:
        """Garbage on one connection closes it alone; a parallel call carries on."""
        h = Harness()
        good, good_transport = h.connect(port=1)
        bad, bad_transport = h.connect(port=2)
        assert good is not None and bad is not None
        good.dataReceived(UUID_FRAME)
        bad.dataReceived(encode(Kind.UUID, uuid.uuid4().bytes) + b"\xfe\x00\x01x")
        good.dataReceived(AUDIO)
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(len(h.binder.calls[str(CALL)].audio), 1)
        self.assertTrue(good.send_audio(Kind.SLIN, b"\x00\x00"))

    def test_hang_up_all(self) -> None:
        """hang_up_all sends hang-up frames and fires once every connection closed."""
        h = Harness()
        protocol, transport = h.connect()
        assert protocol is not None
        protocol.dataReceived(UUID_FRAME)
        done = h.factory.hang_up_all(5)
        self.assertNoResult(done)
        self.assertEqual(transport.value(), b"\x00\x00\x00")
        h.lose(protocol)
        self.successResultOf(done)

    def test_hang_up_all_times_out(self) -> None:
        """hang_up_all gives up waiting after its timeout."""
        h = Harness()
        _protocol, _ = h.connect()
        done = h.factory.hang_up_all(5)
        h.clock.advance(5)
        self.successResultOf(done)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class OutboundTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        protocol, self.transport = self.h.connect()
        assert protocol is not None
        self.protocol = protocol
        protocol.dataReceived(UUID_FRAME)

    def test_single_write(self) -> None:
        """An audio frame goes out as one write of header and payload."""
        self.protocol.send_audio(Kind.SLIN16, bytes(640))
        self.assertEqual(self.transport.writes, [b"\x12\x02\x80" + bytes(640)])

    def test_never_sends_forbidden_kinds(self) -> None:
        """send_audio refuses kinds and lengths that make Asterisk hang up."""
        self.assertRaises(ValueError, self.protocol.send_audio, Kind.DTMF, b"1")
        self.assertRaises(ValueError, self.protocol.send_audio, Kind.SLIN, b"")
        self.assertEqual(self.transport.value(), b"")

    def test_paused_peer_drops_audio(self) -> None:
        """While the transport's buffer is full, audio is dropped and counted, not piled up."""
        self.protocol.pauseProducing()
        self.assertFalse(self.protocol.send_audio(Kind.SLIN, bytes(320)))
        self.assertEqual(self.protocol.frames_dropped, 1)
        self.protocol.resumeProducing()
        self.assertTrue(self.protocol.send_audio(Kind.SLIN, bytes(320)))
        self.assertEqual(len(self.transport.value()), 323)

    def test_hang_up_once(self) -> None:
        """hang_up writes one hang-up frame and closes, however often it is called."""
        self.protocol.hang_up()
        self.protocol.hang_up()
        self.assertEqual(self.transport.value(), b"\x00\x00\x00")
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.protocol.send_audio(Kind.SLIN, bytes(320)))


class PolicyTests(SynchronousTestCase):
    def test_bounds(self) -> None:
        """The policy refuses a payload bound the wire cannot carry."""
        self.assertRaises(ValueError, ListenerPolicy, max_payload=65536)
        self.assertRaises(ValueError, ListenerPolicy, max_payload=0)

    def test_not_an_address(self) -> None:
        """A peer host that is not an IP address is never allowed."""
        self.assertFalse(ListenerPolicy().allows("localhost"))
