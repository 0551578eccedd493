"""The two bypasses of Twisted's generic paths, and the internals they rely on."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gatekeeper.fastpath import (
    direct_writer,
    fast_poll_supported,
    install_fast_poll,
    uninstall_fast_poll,
)


class Collect(Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.data = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.data))


class DirectWriterTests(TestCase):
    def test_other_transports_untouched(self) -> None:
        """A transport that is not a TCP connection keeps its own write."""
        transport = StringTransport()
        self.assertEqual(direct_writer(transport), transport.write)

    @inlineCallbacks
    def test_order_kept(self):  # type: ignore[no-untyped-def]
        """Direct and buffered writes interleave without reordering a byte."""
        chunks = [bytes([i % 256]) * (1 + i * 37 % 3000) for i in range(400)]
        total = sum(map(len, chunks))
        receiver = Collect(total)
        port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: receiver), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        connected: Deferred[Protocol] = Deferred()

        class Sender(Protocol):
            def connectionMade(self) -> None:
                connected.callback(self)

        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        sender = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Sender()
        )
        yield connected
        write = direct_writer(sender.transport)
        self.assertIsNot(write, sender.transport.write)
        for i, chunk in enumerate(chunks):
            # Every tenth chunk through Twisted's buffer, so both paths mix.
            (sender.transport.write if i % 10 == 0 else write)(chunk)
        received = yield receiver.done
        self.assertEqual(received, b"".join(chunks))
        sender.transport.loseConnection()
        receiver.transport.loseConnection()


class Reader:
    """A minimal IReadDescriptor over one end of a socketpair."""

    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock = sock
        self.fail = fail
        self.read: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.read.append(self.sock.recv(100))
        if self.fail:
            raise RuntimeError("boom")

    def connectionLost(self, reason: object) -> None:
        pass

    def logPrefix(self) -> str:
        return "Reader"


class FastPollTests(SynchronousTestCase):
    def test_twisted_internals_still_there(self) -> None:
        """Twisted's epoll loop is still the one fastpath replaces (fails loudly if not)."""
        self.assertTrue(fast_poll_supported(EPollReactor()))

    def test_other_reactors_untouched(self) -> None:
        """A reactor that is not epoll keeps its own loop."""
        from twisted.internet.selectreactor import SelectReactor

        other = SelectReactor()
        self.assertFalse(install_fast_poll(other))
        self.assertNotIn("doIteration", other.__dict__)

    def test_events_dispatched(self) -> None:
        """The lean loop hands a ready socket to its reader, as Twisted's would."""
        r = EPollReactor()
        self.assertTrue(install_fast_poll(r))
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        reader = Reader(a)
        r.addReader(reader)  # type: ignore[arg-type]
        b.send(b"frame")
        r.doIteration(0.1)
        self.assertEqual(reader.read, [b"frame"])
        uninstall_fast_poll(r)
        self.assertNotIn("doIteration", r.__dict__)

    def test_errors_logged_not_raised(self) -> None:
        """An exception from one reader is logged and the loop goes on."""
        r = EPollReactor()
        install_fast_poll(r)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        r.addReader(Reader(a, fail=True))  # type: ignore[arg-type]
        b.send(b"x")
        r.doIteration(0.1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
