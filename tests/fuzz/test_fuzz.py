"""
The short fuzz run of the normal suite, and the fuzzer's own regressions.

The committed corpus and the whole Asterisk transcripts go through both
targets, then a bounded number of mutated inputs (hypothesis, derandomized,
so the run is the same every time).  The harness is also checked against
deliberately broken code, so a green run means the invariants were really
looked at.  The long, coverage-guided run is ``python -m tests.fuzz.run``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket import wire
from gatekeeper.audiosocket.protocol import AudioSocketFactory
from gatekeeper.audiosocket.wire import Kind, encode
from gatekeeper.session import registry as registry_module
from gatekeeper.session.registry import SessionRegistry
from tests.fakes import registry_connection
from tests.fuzz.harness import (
    FRESH,
    HEALTHY,
    FuzzCase,
    InvariantViolation,
    check_decoder,
    check_protocol,
    log_capture,
    reference_decode,
)
from tests.fuzz.mutations import mutated_inputs
from tests.fuzz.seeds import CORPUS, build_seeds, corpus_inputs
from tests.transcripts import transcript, transcript_names

CORPUS_INPUTS = corpus_inputs()
SETTINGS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class CorpusTests(SynchronousTestCase):
    """The seed corpus and the transcripts keep every invariant."""

    def test_corpus_is_current(self) -> None:
        """Every seed tests.fuzz.seeds makes is committed, byte for byte."""
        committed = dict(CORPUS_INPUTS)
        for name, data in build_seeds().items():
            self.assertEqual(committed.get(name), data, f"{CORPUS / name} is stale")

    def test_corpus_decoder(self) -> None:
        """Each corpus input decodes as the reference decoder says."""
        for _name, data in CORPUS_INPUTS:
            check_decoder(data)

    def test_corpus_protocol(self) -> None:
        """Each corpus input leaves the healthy call alone and nothing behind."""
        with log_capture() as events:
            for _name, data in CORPUS_INPUTS:
                check_protocol(data, events)

    def test_whole_transcripts(self) -> None:
        """Each real Asterisk stream, cut every way, through both targets."""
        with log_capture() as events:
            for name in transcript_names():
                data = transcript(name).data
                for chunking, seed in ((0, 0), (1, 99), (3, 5)):
                    case = FuzzCase(chunking=chunking, seed=seed, stream=data).encode()
                    check_decoder(case)
                    check_protocol(case, events)

    def test_reference_agrees_with_sidecars(self) -> None:
        """The reference decoder finds the frames each transcript's table lists."""
        for name in transcript_names():
            t = transcript(name)
            found = reference_decode(t.data, wire.MAX_WIRE_PAYLOAD)
            self.assertIsNone(found.error_at, name)
            self.assertEqual(
                [(kind, len(payload)) for kind, payload in found.frames],
                [(f.kind, f.length) for f in t.frames],
                name,
            )


class GeneratedTests(SynchronousTestCase):
    """A bounded number of mutated inputs per run."""

    @settings(SETTINGS, max_examples=400)
    @given(mutated_inputs([data for _, data in CORPUS_INPUTS]))
    def test_decoder_mutations(self, data: bytes) -> None:
        """Mutated inputs decode as the reference decoder says."""
        check_decoder(data)

    @settings(SETTINGS, max_examples=250)
    @given(mutated_inputs([data for _, data in CORPUS_INPUTS]))
    def test_protocol_mutations(self, data: bytes) -> None:
        """Mutated inputs leave the healthy call alone and nothing behind."""
        with log_capture() as events:
            check_protocol(data, events)


class HarnessTests(SynchronousTestCase):
    """The invariants catch broken code (so a green run means something)."""

    def violations(self, *names: str) -> dict[str, int]:
        """Kinds of violation the named corpus inputs raise, counted."""
        kinds: dict[str, int] = {}
        inputs = dict(CORPUS_INPUTS)
        with log_capture() as events:
            for name in names:
                for target in (check_decoder, lambda d: check_protocol(d, events)):
                    try:
                        target(inputs[name])
                    except InvariantViolation as e:
                        kinds[e.kind] = kinds.get(e.kind, 0) + 1
        return kinds

    def test_unbounded_decoder_caught(self) -> None:
        """A decoder that ignores its payload bound breaks the decoder invariant."""
        feed = wire.FrameDecoder.feed

        def unbounded(decoder: wire.FrameDecoder, data: bytes) -> list[wire.Frame]:
            bound, decoder.max_payload = decoder.max_payload, wire.MAX_WIRE_PAYLOAD
            try:
                return feed(decoder, data)
            finally:
                decoder.max_payload = bound

        self.patch(wire.FrameDecoder, "feed", unbounded)
        self.assertIn("decoder", self.violations("edge-oversize-header"))

    def test_leaked_timer_caught(self) -> None:
        """A registry that leaves a long timer behind is a leak."""
        lost = SessionRegistry._connection_lost

        def leaky(registry: SessionRegistry, leg: Any, reason: Any) -> None:
            lost(registry, leg, reason)
            registry.clock.callLater(3600, lambda: None)

        self.patch(registry_module.SessionRegistry, "_connection_lost", leaky)
        self.assertEqual(self.violations("edge-hangup-frame"), {"leak": 1})

    def test_disturbed_healthy_call_caught(self) -> None:
        """A registry that lets a second connection take the healthy leg is caught."""
        join = SessionRegistry._join

        def trusting(
            registry: SessionRegistry, pair: Any, conn: Any, now: float
        ) -> Any:
            if pair.call_uuid == HEALTHY:
                return registry._reattach(pair, pair.visitor, conn, now)
            return join(registry, pair, conn, now)

        self.patch(registry_module.SessionRegistry, "_join", trusting)
        self.assertIn("healthy", self.violations("edge-impersonate-healthy"))


class RegressionTests(SynchronousTestCase):
    """
    Inputs the fuzzer found, kept as plain tests.

    Found by ``tests.fuzz.run``: when a fault ends a chunk whose last whole
    frame already closed the connection (a hang-up or error frame, a refused
    UUID, a first frame that is not the UUID), ``dataReceived`` still called
    ``_protocol_error``: a second log line for one close, and a protocol
    error counted that did not cause it (fixed in c0b0a1e: ``_protocol_error``
    returns early once the connection is closing).
    """

    def connect(self) -> tuple[Any, StringTransport, AudioSocketFactory]:
        protocol, transport, factory, self.registry = registry_connection(4000)
        return protocol, transport, factory

    def lines(self, data: bytes) -> tuple[list[str], int]:
        """Feed ``data`` in one piece: the protocol's log lines, its error count."""
        protocol, transport, factory = self.connect()
        with capturedLogs() as events:
            protocol.dataReceived(data)
        self.assertTrue(transport.disconnecting)
        namespace = type(protocol)._log.namespace
        mine = [e["log_format"] for e in events if e["log_namespace"] == namespace]
        return mine, factory.protocol_errors

    def test_hangup_frame_then_garbage(self) -> None:
        """A hang-up frame then garbage in one read: one line, no protocol error."""
        uuid_frame = encode(Kind.UUID, bytes.fromhex(FRESH.replace("-", "")))
        lines, errors = self.lines(uuid_frame + encode(Kind.HANGUP) + b"\xfe\x00\x00")
        self.assertEqual(lines, ["call {call_uuid}: hang-up frame from {peer}"])
        self.assertEqual(errors, 0)

    def test_audio_first_then_garbage(self) -> None:
        """A first frame that is not the UUID, then garbage: one protocol error."""
        lines, errors = self.lines(encode(Kind.SLIN, b"\x00\x01") + b"\xfe\x00\x00")
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(errors, 1)

    def test_refused_then_garbage(self) -> None:
        """A refused UUID then garbage in one read: only the refusal is logged."""
        protocol, transport, factory = self.connect()
        self.registry.stopService()
        uuid_frame = encode(Kind.UUID, bytes.fromhex(FRESH.replace("-", "")))
        with capturedLogs() as events:
            protocol.dataReceived(uuid_frame + b"\xfe\x00\x00")
        namespace = type(protocol)._log.namespace
        mine = [e["log_format"] for e in events if e["log_namespace"] == namespace]
        self.assertEqual(transport.value(), wire.encode_hangup())
        self.assertEqual(
            mine, ["call {call_uuid}: refused connection from {peer}: {refusal}"]
        )
        self.assertEqual(factory.protocol_errors, 0)
