"""
How the session registry's cost grows with the number of live calls.

Fills a registry to 1,000, 10,000 and 100,000 live pairs and, at each level,
times a batch of binds (new visitor pairs), resident attachments, ends (with
their hang-ups) and closes of the hung-up connections: each must cost the
same per operation at every level.  Then it measures the memory one idle pair
(a visitor leg, no flow) costs the registry, with tracemalloc.

Connections are minimal ``IAudioSocketLeg`` stand-ins made before timing;
log events are built as in production and discarded.

    python bench/registry.py
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.session.callpair import Leg, Outcome
from gatekeeper.session.registry import SessionRegistry

LEVELS = (1_000, 10_000, 100_000)
BATCH = 10_000
REPEATS = 3
IDLE_PAIRS = 20_000
CLOSED = Failure(ConnectionDone())


@implementer(IAudioSocketLeg)
class Connection:
    __slots__ = ("call_uuid", "connected", "peer", "receiver")

    def __init__(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        self.peer = "127.0.0.1:4000"
        self.connected = True
        self.receiver: Leg | None = None

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        return True

    def send_frame(self, frame: bytes) -> bool:
        return self.send_audio(Kind(frame[0]), bytes(frame[3:]))

    def hang_up(self) -> None:
        pass


def uuids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def timed(operation: Callable[[str], object], items: list[str]) -> float:
    """Microseconds per call of ``operation`` over ``items``."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for item in items:
            operation(item)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / len(items) / 1000


def batch(registry: SessionRegistry) -> dict[str, float]:
    """Bind, attach residents to, end and close BATCH pairs; µs per operation."""
    calls = uuids(BATCH)
    visitors = {call: Connection(call) for call in calls}
    residents = {call: Connection(call) for call in calls}

    def bind_visitor(call: str) -> None:
        connection = visitors[call]
        connection.receiver = registry.bind(call, connection)  # type: ignore[assignment]

    def attach_resident(call: str) -> None:
        registry.expect_resident(call, 30)
        connection = residents[call]
        connection.receiver = registry.bind(call, connection)  # type: ignore[assignment]

    def end(call: str) -> None:
        registry.end(call, Outcome.ALLOWED)

    def close(call: str) -> None:
        for connection in (visitors[call], residents[call]):
            assert connection.receiver is not None
            connection.receiver.connection_lost(CLOSED)

    return {
        "bind": timed(bind_visitor, calls),
        "resident": timed(attach_resident, calls),
        "end": timed(end, calls),
        "close": timed(close, calls) / 2,
    }


def scaling() -> None:
    clock = Clock()
    registry = SessionRegistry(clock)
    registry.startService()
    live: list[str] = []
    print(f"µs per operation, best of {REPEATS} batches of {BATCH:,}:")
    print(f"{'live pairs':>11} {'bind':>7} {'resident':>9} {'end':>7} {'close':>7}")
    for level in LEVELS:
        extra = uuids(level - len(live))
        for call in extra:
            registry.bind(call, Connection(call))
        live += extra
        assert len(registry) == level
        runs = [batch(registry) for _ in range(REPEATS)]
        best = {key: min(run[key] for run in runs) for key in runs[0]}
        assert len(registry) == level
        print(
            f"{level:>11,} {best['bind']:>7.2f} {best['resident']:>9.2f} "
            f"{best['end']:>7.2f} {best['close']:>7.2f}"
        )
        # Let the remembered endings age out, as minutes would in service.
        clock.advance(registry.remember_ended + 1)
    ending = timed(lambda call: registry.end(call, Outcome.SHUTDOWN), live)
    print(f"ending the last {len(live):,} live pairs: {ending:.2f} µs each")
    assert len(registry) == 0


def memory() -> None:
    clock = Clock()
    registry = SessionRegistry(clock)
    registry.startService()
    calls = uuids(IDLE_PAIRS)
    connections = [Connection(call) for call in calls]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for call, connection in zip(calls, connections, strict=True):
        registry.bind(call, connection)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_pair = (after - before) / IDLE_PAIRS
    print(
        f"memory per idle pair: {per_pair:,.0f} bytes "
        f"({IDLE_PAIRS:,} pairs; the connection and UUID string not counted)"
    )


def main() -> None:
    # Log events are built as in production, then dropped.
    globalLogBeginner.beginLoggingTo(
        [lambda event: None], discardBuffer=True, redirectStandardIO=False
    )
    print(f"Python {sys.version.split()[0]}, {sys.platform}")
    scaling()
    memory()


if __name__ == "__main__":
    main()
