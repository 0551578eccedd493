"""The service tree makeService builds, over real TCP on 127.0.0.1."""

from __future__ import annotations

import itertools
import statistics
import uuid
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from gatekeeper.audiosocket.wire import Frame, FrameDecoder, Kind, encode
from gatekeeper.config import parse_config
from gatekeeper.fastpath import uninstall_fast_poll
from gatekeeper.service import makeService

from .transcripts import transcript

RESIDENTS = Path(__file__).parent.parent / "etc" / "residents.csv"


class AsteriskLike(Protocol):
    """Plays a recorded stream one frame per 20 ms and records what comes back."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.received: list[tuple[float, Frame]] = []
        self.decoder = FrameDecoder()
        self.closed: Deferred[None] = Deferred()
        self._next = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        self._send(0)

    def _send(self, i: int) -> None:
        if i < len(self.frames) and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.write(self.frames[i])
            # The UUID frame and the first audio frame go together, as Asterisk does.
            self._next = reactor.callLater(0 if i == 0 else 0.02, self._send, i + 1)

    def dataReceived(self, data: bytes) -> None:
        now = reactor.seconds()
        for frame in self.decoder.feed(data):
            self.received.append((now, frame))

    def connectionLost(self, reason: Failure) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self.closed.callback(None)


class EchoServiceTests(TestCase):
    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        config = parse_config(
            "[audiosocket]\nlisten = tcp:0:interface=127.0.0.1\napp = echo\n"
            "[performance]\nlean_poll = yes\ndirect_send = yes\n"
        )
        self.service = makeService(config, reactor)
        self.addCleanup(uninstall_fast_poll, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        port = yield self.service.getServiceNamed("audiosocket").when_listening()
        self.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)

    @inlineCallbacks
    def test_transcript_echoed_paced(self):  # type: ignore[no-untyped-def]
        """A recorded Asterisk stream comes back whole, in order, one frame per 20 ms."""
        t = transcript("visitor-dtmf-hangup")
        offsets = [*[f.offset for f in t.frames][:40], t.frames[40].offset]
        frames = [t.data[a:b] for a, b in itertools.pairwise(offsets)]
        good = AsteriskLike(frames)
        bad = AsteriskLike([encode(Kind.SLIN, bytes(320))])  # audio before any UUID
        yield connectProtocol(self.endpoint, good)
        yield connectProtocol(self.endpoint, bad)
        yield bad.closed  # the malformed call is closed...
        yield deferLater(reactor, 1.2, lambda: None)
        self.assertTrue(good.transport.connected)  # ...and the good one carries on
        sent_audio = [f[3:] for f in frames if f[0] == Kind.SLIN]
        echoed = [f.payload for _, f in good.received if any(f.payload)]
        self.assertEqual(echoed, sent_audio)
        times = [t for t, f in good.received if f.kind is Kind.SLIN]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        self.assertLess(abs(statistics.median(gaps) - 0.02), 0.004, gaps)
        self.assertLess(max(gaps), 0.1)
        good.transport.loseConnection()
        yield good.closed

    @inlineCallbacks
    def test_stop_hangs_up(self):  # type: ignore[no-untyped-def]
        """Stopping the service sends each live call a hang-up frame and closes it."""
        t = transcript("idle-timeout")
        client = AsteriskLike([t.data])
        yield connectProtocol(self.endpoint, client)
        yield deferLater(reactor, 0.1, lambda: None)
        yield self.service.stopService()
        yield client.closed
        kinds = [f.kind for _, f in client.received]
        self.assertEqual(kinds[-1], Kind.HANGUP)
        self.assertIn(Kind.SLIN, kinds)  # silence kept the call alive meanwhile


class VisitServiceTests(TestCase):
    """The doorman's tree, with AMI off, over real TCP and a real SQLite file."""

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        base = Path(self.mktemp())
        base.mkdir()
        (base / "residents.csv").write_text("apartment,name,extensions\n101,Ana,1011\n")
        self.database = base / "visits.sqlite3"
        config = parse_config(
            "[audiosocket]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"[directory]\nfile = {base / 'residents.csv'}\n"
            f"[accesslog]\ndatabase = {self.database}\n"
            f"[recording]\ndirectory = {base / 'rec'}\n"
            "[performance]\nlean_poll = no\n"
        )
        self.service = makeService(config, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        port = yield self.service.getServiceNamed("audiosocket").when_listening()
        self.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)

    @inlineCallbacks
    def test_visit_without_ami(self):  # type: ignore[no-untyped-def]
        """A visitor with AMI down is greeted, asked, told residents are unreachable,
        and the visit is on record in SQLite before the call ends."""
        call = uuid.uuid4()
        frames = [encode(Kind.UUID, call.bytes)]
        frames += [encode(Kind.DTMF, d.encode()) for d in "101#"]
        frames += [encode(Kind.SLIN, bytes(320))] * 400  # 8 s of a silent caller
        visitor = AsteriskLike(frames)
        yield connectProtocol(self.endpoint, visitor)
        yield visitor.closed
        kinds = [f.kind for _, f in visitor.received]
        self.assertEqual(kinds[-1], Kind.HANGUP)
        log = self.service.getServiceNamed("accesslog")
        record = yield log.get(str(call))
        self.assertEqual(record.outcome, "resident_unreachable")
        self.assertEqual(record.apartment, "101")
        audio = b"".join(f.payload for _, f in visitor.received if f.kind is Kind.SLIN)
        # Greeting, question, "say your name", beep, "calling", "cannot reach", goodbye.
        self.assertGreater(len(audio), 8000 * 2 * 5)


class SettingsTests(TestCase):
    def test_session_settings_reach_the_registry(self) -> None:
        """[session] values are the registry's, not its defaults."""
        config = parse_config(
            "[session]\ngrace_period = 4\nstop_timeout = 2\nremember_ended = 42\n"
            f"[accesslog]\ndatabase = {self.mktemp()}\n"
            f"[directory]\nfile = {RESIDENTS}\n"
        )
        registry = makeService(config, reactor).getServiceNamed("registry")
        self.assertEqual(
            (registry.grace_period, registry.stop_timeout, registry.remember_ended),
            (4.0, 2.0, 42.0),
        )


class ReloadTests(TestCase):
    @inlineCallbacks
    def test_sighup_reloads_directory(self):  # type: ignore[no-untyped-def]
        """SIGHUP reloads the residents directory without restarting anything."""
        import os
        import signal

        from gatekeeper.directory import DirectoryService
        from gatekeeper.service import _ReloadOnHangup

        path = Path(self.mktemp())
        path.write_text("apartment,name,extensions\n101,Ana,1011\n")
        directory = DirectoryService(str(path))
        service = _ReloadOnHangup(directory)
        service.startService()
        self.addCleanup(service.stopService)
        path.write_text("apartment,name,extensions\n101,Ana,1011\n202,Bia,2021\n")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            if directory.for_gate(None).lookup("202") is not None:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertIsNotNone(directory.for_gate(None).lookup("202"))
