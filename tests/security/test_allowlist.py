"""
Peers outside ``[audiosocket] allow`` are refused before any protocol exists.

The whole service is built from a configuration (``makeService``), listens
on 127.0.0.1 over real TCP, and is told to allow only networks that do not
hold 127.0.0.1: the connection must be closed at once, with no protocol
built, no byte read or written, and one log line.  A control with loopback
allowed shows the same client gets through.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from gatekeeper.config import parse_config
from gatekeeper.service import makeService

from .support import CALL, uuid_frame


class Asterisk(Protocol):
    """A peer that sends its UUID frame and waits to be told anything."""

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(uuid_frame(CALL))

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.reason = reason
        self.lost.callback(None)


class AllowlistTests(TestCase):
    """A real listener with and without 127.0.0.1 in its allowlist."""

    timeout = 15

    @inlineCallbacks
    def serve(self, allow: str) -> Any:
        config = parse_config(
            "[audiosocket]\n"
            "listen = tcp:0:interface=127.0.0.1\n"
            "app = echo\n"
            f"allow = {allow}\n"
            # The test's reactor is shared: leave its poll loop as it is.
            "[performance]\nlean_poll = no\n"
        )
        top = makeService(config, reactor)
        listener = top.getServiceNamed("audiosocket")
        factory = listener.factory  # type: ignore[attr-defined]
        self.built: list[object] = []
        build = factory.buildProtocol

        def spy(address: Any) -> Any:
            protocol = build(address)
            self.built.append(protocol)
            return protocol

        factory.buildProtocol = spy
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        port = yield listener.when_listening()  # type: ignore[attr-defined]
        return factory, port.getHost().port

    @inlineCallbacks
    def test_outsider_refused(self) -> Any:
        """127.0.0.1 outside the allowlist: closed at once, nothing built or said."""
        factory, port = yield self.serve("10.0.0.0/8, 192.168.0.0/16, fd00::/8")
        peer = Asterisk()
        with capturedLogs() as events:
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
            yield peer.lost
        self.assertEqual(self.built, [None])
        self.assertEqual(peer.received, b"")
        self.assertEqual(factory.connections, set())
        self.assertEqual(factory.refused_connections, 1)
        lines = [
            e["log_format"] for e in events if "allowlist" in e.get("log_format", "")
        ]
        self.assertEqual(
            lines, ["refused AudioSocket connection from {peer}: not in the allowlist"]
        )

    @inlineCallbacks
    def test_loopback_allowed(self) -> Any:
        """Control: with 127.0.0.0/8 allowed the same peer is served (echo)."""
        factory, port = yield self.serve("127.0.0.0/8")
        peer = Asterisk()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
        while not peer.received:
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(self.built), 1)
        self.assertIsNotNone(self.built[0])
        self.assertEqual(factory.refused_connections, 0)
        peer.transport.loseConnection()
        yield peer.lost
