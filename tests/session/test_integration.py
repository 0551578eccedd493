"""
The registry behind the real AudioSocket listener, over TCP on 127.0.0.1.

The clients here are what Asterisk is on the wire: they connect, write the
UUID frame, then audio.  Everything else (the reactor, the listening port,
the protocol, the registry) is the production code.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from gatekeeper.audiosocket.protocol import AudioSocketFactory
from gatekeeper.audiosocket.wire import FrameDecoder, Kind, encode, encode_hangup
from gatekeeper.session.callpair import CallPair, Leg, LegState, Outcome, PairState
from gatekeeper.session.interfaces import IPairListener
from gatekeeper.session.registry import SessionRegistry

CALL = uuid.UUID("5b0c5e6e-3f0a-4c8e-9a59-6f7d0e1c2b3a")
TONE = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms at 16 kHz


class FakeAsterisk(Protocol):
    """One AudioSocket leg as Asterisk opens it."""

    def __init__(self, call: uuid.UUID) -> None:
        self.call = call
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self.frames_wanted: list[tuple[int, Deferred[None]]] = []

    def connectionMade(self) -> None:
        self.transport.write(encode(Kind.UUID, self.call.bytes))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for wanted in list(self.frames_wanted):
            if len(self.received) >= wanted[0]:
                self.frames_wanted.remove(wanted)
                wanted[1].callback(None)

    def when_received(self, size: int) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self.frames_wanted.append((size, waiter))
        self.dataReceived(b"")
        return waiter

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)


@implementer(IPairListener)
class Watcher:
    """A listener that lets the test wait for what it expects."""

    def __init__(self, pair: CallPair) -> None:
        self.pair = pair
        self.events: list[tuple[str, Any]] = []
        self.waiters: list[tuple[str, Any, Deferred[None]]] = []

    def _record(self, event: str, detail: Any) -> None:
        self.events.append((event, detail))
        for waiter in list(self.waiters):
            if waiter[:2] == (event, detail):
                self.waiters.remove(waiter)
                waiter[2].callback(None)

    def when(self, event: str, detail: Any) -> Deferred[None]:
        if (event, detail) in self.events:
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        waiter: Deferred[None] = Deferred()
        self.waiters.append((event, detail, waiter))
        return waiter

    def leg_attached(self, leg: Leg) -> None:
        self._record("attached", leg.role.value)

    def leg_dropped(self, leg: Leg) -> None:
        self._record("dropped", leg.role.value)

    def leg_reattached(self, leg: Leg) -> None:
        self._record("reattached", leg.role.value)

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        self._record("audio", (leg.role.value, kind, payload))

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        self._record("dtmf", (leg.role.value, digit))

    def pair_ended(self, pair: CallPair) -> None:
        self._record("ended", pair.outcome)


class RegistryOverTCPTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.watchers: dict[str, Watcher] = {}
        self.pair_started: Deferred[Watcher] = Deferred()
        self.registry = SessionRegistry(reactor, listener_factory=self.watch)
        self.registry.startService()
        factory = AudioSocketFactory(self.registry, reactor)
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.clients: list[FakeAsterisk] = []
        self.addCleanup(self.close_clients)

    def watch(self, pair: CallPair) -> Watcher:
        watcher = Watcher(pair)
        self.watchers[pair.call_uuid] = watcher
        started, self.pair_started = self.pair_started, Deferred()
        reactor.callLater(0, started.callback, watcher)
        return watcher

    async def close_clients(self) -> None:
        await self.registry.stopService()
        for client in self.clients:
            if client.transport is not None and client.transport.connected:
                client.transport.loseConnection()
            await client.closed

    async def dial(self) -> FakeAsterisk:
        client = FakeAsterisk(CALL)
        self.clients.append(client)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        await connectProtocol(endpoint, client)
        return client

    async def test_two_legs_one_pair_third_refused(self) -> None:
        """After expect_resident two connections are one pair; a third is refused."""
        call = str(CALL)
        started = self.pair_started
        visitor = await self.dial()
        watcher = await started
        await watcher.when("attached", "visitor")
        self.registry.expect_resident(call, 30)
        resident = await self.dial()
        await watcher.when("attached", "resident")
        pair = self.registry.get(call)
        assert pair is not None and pair.resident is not None
        self.assertEqual(pair.state, PairState.CONNECTED)
        self.assertEqual(len(self.registry), 1)

        third = await self.dial()
        await third.closed
        self.assertEqual(third.received, encode_hangup())
        self.assertEqual(self.registry.counters.refusals["third_leg"], 1)

        # The pair carries on: audio flows both ways on the same legs.
        visitor.transport.write(encode(Kind.SLIN16, TONE))
        await watcher.when("audio", ("visitor", Kind.SLIN16, TONE))
        self.assertEqual(pair.visitor.kind, Kind.SLIN16)
        self.assertTrue(pair.resident.send_audio(TONE[:320]))
        frame = encode(Kind.SLIN, TONE[:320])
        await resident.when_received(len(frame))
        self.assertEqual(resident.received, frame)
        self.assertEqual(visitor.received, b"")
        self.assertEqual(
            [leg.state for leg in pair.legs], [LegState.LIVE, LegState.LIVE]
        )
        self.assertFalse(visitor.closed.called or resident.closed.called)
        self.assertIs(self.registry.get(call), pair)

        # Ending the visit hangs both legs up.
        ended = self.registry.when_ended(call)
        pair.end(Outcome.ALLOWED)
        self.assertEqual(await ended, Outcome.ALLOWED)
        await visitor.closed
        await resident.closed
        decoded = FrameDecoder().feed(resident.received)
        self.assertEqual([f.kind for f in decoded], [Kind.SLIN, Kind.HANGUP])
        self.assertEqual(visitor.received, encode_hangup())
        self.assertEqual(self.registry.live_pairs(), [])

    async def test_dropped_visitor_reattaches(self) -> None:
        """A visitor whose TCP connection drops comes back on a new one."""
        call = str(CALL)
        started = self.pair_started
        first = await self.dial()
        watcher = await started
        await watcher.when("attached", "visitor")
        first.transport.abortConnection()
        await watcher.when("dropped", "visitor")
        second = await self.dial()
        await watcher.when("reattached", "visitor")
        pair = self.registry.get(call)
        assert pair is not None
        self.assertEqual(pair.visitor.state, LegState.LIVE)
        self.assertEqual(pair.visitor.attachments, 2)
        await self.registry.stopService()
        await second.closed
        self.assertEqual(second.received, encode_hangup())
        self.assertEqual(pair.outcome, Outcome.SHUTDOWN)
