"""
Soak: mixed visits at a steady concurrency for ``--minutes``, against
gatekeeper in a child process (``python -m tests.security.serve``) and the
simulated Asterisk in this one.

Each of ``--concurrency`` slots owns one apartment and runs visits back to
back, picked at random: allow, deny, no answer, the visitor leaves while it
rings, the visitor's connection drops and comes back, the resident's
connection drops and comes back.  Every few seconds the server's RSS is
sampled.  Passes when

- RSS has no growth trend: the least-squares slope over the second half of
  the run is below ``--max-slope`` KiB/min (default 256 KiB/min, about 1% of
  a ~40 MiB server per minute: a leak of even 1 KiB per visit at the rates
  here, ~2,000 visits/min at concurrency 20, would be several times that);
- no resident heard another visitor's voice (zero context mismatches);
- every visit that finished has its row in the access log (zero lost).

    python -m bench.soak                 # 30 minutes
    python -m bench.soak --minutes 2     # the CI version
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from twisted.internet.defer import Deferred
from twisted.internet.task import react

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.durability.support import (  # noqa: E402
    LEAVES,
    NEVER,
    Site,
    mismatches,
    presses,
    rows,
    rss_kb,
    sleep,
    visitor,
)

KINDS = (
    "allow",
    "deny",
    "no_answer",
    "visitor_leaves",
    "visitor_drops",
    "resident_drops",
)
EXPECTED = {
    "allow": {"allowed"},
    "deny": {"denied"},
    "no_answer": {"no_answer"},
    "visitor_leaves": {"visitor_left"},
}


def _setup(kind: str, slot: int, number: int) -> tuple[Any, Any]:
    """The resident's phone and the visitor's script for one visit."""
    if kind == "allow":
        return presses("1"), visitor(slot, number)
    if kind == "deny":
        return presses("2"), visitor(slot, number)
    if kind == "no_answer":
        return NEVER, visitor(slot, number)
    if kind == "visitor_leaves":
        return NEVER, visitor(slot, number, *LEAVES)
    if kind == "visitor_drops":
        return presses("1"), visitor(slot, number, drop=True)
    return presses("2", drop=True), visitor(slot, number)


async def soak(reactor: Any, options: argparse.Namespace) -> int:
    rng = random.Random(options.seed)
    base = Path(tempfile.mkdtemp(prefix="gk-soak-"))
    site = Site(reactor, base, apartments=options.concurrency)
    pbx, server = await site.start()
    assert server.pid is not None
    started = reactor.seconds()
    end = started + options.minutes * 60
    finished: list[tuple[str, str]] = []  # (call_uuid, kind)
    counts = dict.fromkeys(KINDS, 0)
    samples: list[tuple[float, int]] = []
    numbers = iter(range(1, 1 << 30))
    bad_context = 0

    async def slot(apartment: int) -> None:
        while reactor.seconds() < end and server.running:
            kind = rng.choice(KINDS)
            phone, script = _setup(kind, apartment, next(numbers) % 60000 + 1)
            site.phones[f"{apartment}1"] = phone
            pbx.phones[f"{apartment}1"] = phone
            channel = pbx.visit(script)
            await channel.when_gone()
            finished.append((channel.call_uuid, kind))
            counts[kind] += 1
            nonlocal bad_context
            bad_context += mismatches(pbx, channel)
            # Forget finished channels, or the generator is what grows.
            pbx.channels = [c for c in pbx.channels if c.state != "gone"]

    async def sampler() -> None:
        while reactor.seconds() < end and server.running:
            samples.append((reactor.seconds() - started, rss_kb(server.pid)))
            await sleep(reactor, options.sample)

    runs = [Deferred.fromCoroutine(slot(a)) for a in range(1, options.concurrency + 1)]
    runs.append(Deferred.fromCoroutine(sampler()))
    for run in runs:
        await run
    await sleep(reactor, 1.0)  # the last rows
    recorded = rows(site.database)
    alive = server.running
    await site.stop()
    site.cleanup()

    lost = [u for u, _ in finished if u not in recorded]
    wrong = [
        (u, k, recorded[u])
        for u, k in finished
        if u in recorded and k in EXPECTED and recorded[u] not in EXPECTED[k]
    ]
    t = np.array([s[0] for s in samples]) / 60
    rss = np.array([s[1] for s in samples], dtype=float)
    half = t >= t[-1] / 2 if len(t) else t
    slope = float(np.polyfit(t[half], rss[half], 1)[0]) if half.sum() >= 3 else 0.0
    minutes = (reactor.seconds() - started) / 60
    print(f"soak: {minutes:.1f} min, concurrency {options.concurrency}")
    print(
        f"visits finished: {len(finished)} ({len(finished) / max(minutes, 1e-9):.0f}/min) "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    if len(rss):
        print(
            f"server RSS: start {rss[0] / 1024:.1f} MiB, max {rss.max() / 1024:.1f} "
            f"MiB, end {rss[-1] / 1024:.1f} MiB; second-half slope {slope:.1f} "
            f"KiB/min (bound {options.max_slope:g}), {len(rss)} samples"
        )
    print(f"context mismatches: {bad_context}")
    print(
        f"records lost: {len(lost)} of {len(finished)}; unexpected outcomes: {len(wrong)}"
    )
    for item in wrong[:10]:
        print("  unexpected:", *item)
    failures = []
    if not alive:
        failures.append("the server died")
    if slope >= options.max_slope:
        failures.append("RSS grows")
    if bad_context:
        failures.append("context mismatches")
    if lost:
        failures.append("lost records")
    print("FAIL: " + ", ".join(failures) if failures else "PASS")
    if failures:
        print(f"(server log kept in {site.log})")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--sample", type=float, default=5.0, help="RSS every N s")
    parser.add_argument("--max-slope", type=float, default=256.0, help="KiB/min")
    parser.add_argument("--seed", type=int, default=8)
    options = parser.parse_args()

    async def run(reactor: Any) -> None:
        code = await soak(reactor, options)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
