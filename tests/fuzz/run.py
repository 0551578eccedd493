"""
The long fuzz run: ``python -m tests.fuzz.run`` (what ``make fuzz`` runs).

Every input goes through both targets of :mod:`tests.fuzz.harness` (the
frame decoder against the reference decoder, then the protocol with its
registry and a healthy call), coverage-guided by atheris (libFuzzer), with
the ``gatekeeper`` package instrumented.  Without atheris
(``pip install atheris``, the ``fuzz`` extra) it falls back on random
mutation of the corpus, which finds less.

A broken invariant is counted, its first input saved under
``WORK/crashes/`` with its message, and the run goes on, so one run reports
every family of fault it met; ``--stop-on-crash`` hands the first one to
libFuzzer instead (crash artifact, minimisation).  New interesting inputs
go to ``WORK/corpus/`` (``tests/fuzz/corpus/`` is only read).  At the end
it prints the inputs executed, exec/s and the violations by kind, and exits
1 if there was any.

Each worker is a child process, because libFuzzer ends its process with
``exit()`` and Python's own exit hooks never run: the child writes its
figures to ``WORK/stats-N.json`` as it goes, and the parent sums them.

    nice -n 19 python -m tests.fuzz.run --runs 1000000 [--jobs 2] [--max-time 3600]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "corpus"
STATS_EVERY = 2.0  # seconds between a child's stats files


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs in all")
    parser.add_argument("--max-time", type=int, default=0, help="seconds, 0: no limit")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "fuzz")
    parser.add_argument(
        "--engine", choices=("auto", "atheris", "random"), default="auto"
    )
    parser.add_argument("--stop-on-crash", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="random engine only")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "random"
    return "atheris"


# -- the child: one fuzzing process -------------------------------------------


class Stats:
    """A child's figures, written to its stats file every few seconds."""

    def __init__(self, path: Path, crashes: Path, engine: str) -> None:
        self.path = path
        self.crashes = crashes
        self.engine = engine
        self.inputs = 0
        self.started = time.monotonic()
        self.written = self.started
        self.by_kind: dict[str, int] = {}
        self.signatures: dict[str, str] = {}

    def record(self, kind: str, message: str, data: bytes) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        first_line = message.splitlines()[0] if message else kind
        signature = hashlib.sha1(f"{kind}:{first_line}".encode()).hexdigest()[:12]
        if signature not in self.signatures:
            self.signatures[signature] = first_line
            self.crashes.mkdir(parents=True, exist_ok=True)
            stem = self.crashes / f"{kind}-{signature}"
            stem.with_suffix(".bin").write_bytes(data)
            stem.with_suffix(".txt").write_text(message + "\n")
            self.write()

    def tick(self, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.written >= STATS_EVERY:
            self.written = now
            self.write()

    def write(self) -> None:
        figures = {
            "engine": self.engine,
            "inputs": self.inputs,
            "seconds": time.monotonic() - self.started,
            "violations": self.by_kind,
            "signatures": self.signatures,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures, indent=1))
        tmp.replace(self.path)


def child(args: argparse.Namespace) -> int:
    engine = _engine(args.engine)
    work: Path = args.work
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["gatekeeper"]):
            import gatekeeper.audiosocket.protocol
            import gatekeeper.audiosocket.wire
            import gatekeeper.session.callpair
            import gatekeeper.session.registry
            import gatekeeper.session.uuids  # noqa: F401
    from twisted.logger import globalLogBeginner

    from tests.fuzz import harness

    # Nothing printed per event: the targets read the events they need.
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
    stats = Stats(work / f"stats-{args.child}.json", work / "crashes", engine)
    runs = max(1, args.runs // args.jobs)
    deadline = time.monotonic() + args.max_time if args.max_time else None

    with harness.log_capture() as events:

        def one(data: bytes) -> None:
            stats.inputs += 1
            try:
                harness.check_decoder(data)
                harness.check_protocol(data, events)
            except harness.InvariantViolation as e:
                stats.record(e.kind, str(e), data)
                if args.stop_on_crash:
                    stats.tick(final=True)
                    raise
            if stats.inputs >= runs:
                stats.tick(final=True)
            elif not stats.inputs & 255:
                stats.tick()

        stats.write()
        if engine == "atheris":
            options = [
                f"-runs={runs}",
                "-max_len=8192",
                "-timeout=20",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ]
            if args.max_time:
                options.append(f"-max_total_time={args.max_time}")
            (work / "corpus").mkdir(parents=True, exist_ok=True)
            atheris.Setup(
                [sys.argv[0], *options, str(work / "corpus"), str(SEEDS)], one
            )
            atheris.Fuzz()  # never returns: libFuzzer exits the process
        rng = random.Random(args.seed * 1000 + args.child)
        from tests.fuzz.mutations import mutate

        corpus = [p.read_bytes() for p in sorted(SEEDS.iterdir()) if p.is_file()]
        for data in corpus:
            one(data)
        while stats.inputs < runs and (deadline is None or time.monotonic() < deadline):
            one(mutate(rng, corpus))
        stats.tick(final=True)
    return 0


# -- the parent: start the children, sum their figures ---------------------------


def parent(args: argparse.Namespace) -> int:
    engine = _engine(args.engine)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("stats-*.json"):
        old.unlink()
    print(
        f"fuzzing with {engine}: {args.runs} inputs over {args.jobs} job(s)"
        + (f", at most {args.max_time}s" if args.max_time else "")
        + f"; work in {work}",
        flush=True,
    )
    if engine == "random":
        print("atheris is not installed: random mutation, no coverage guidance")
    started = time.monotonic()
    children = []
    for index in range(args.jobs):
        log = (work / f"child-{index}.log").open("w")
        command = [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            "--child",
            str(index),
            "--runs",
            str(args.runs),
            "--jobs",
            str(args.jobs),
            "--work",
            str(work),
            "--engine",
            engine,
            "--max-time",
            str(args.max_time),
            "--seed",
            str(args.seed),
        ]
        if args.stop_on_crash:
            command.append("--stop-on-crash")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        children.append(
            (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log, env=env), log)
        )
    codes = []
    for process, log in children:
        codes.append(process.wait())
        log.close()
    elapsed = time.monotonic() - started
    return report(work, args.jobs, codes, elapsed)


def report(work: Path, jobs: int, codes: list[int], elapsed: float) -> int:
    figures: list[dict[str, Any]] = []
    for index in range(jobs):
        path = work / f"stats-{index}.json"
        if path.exists():
            figures.append(json.loads(path.read_text()))
    inputs = sum(f["inputs"] for f in figures)
    busiest = max((f["seconds"] for f in figures), default=elapsed)
    violations: dict[str, int] = {}
    signatures: dict[str, str] = {}
    for f in figures:
        for kind, count in f["violations"].items():
            violations[kind] = violations.get(kind, 0) + count
        signatures.update(f["signatures"])
    print(f"inputs executed: {inputs}")
    print(f"time: {busiest:.0f}s, {inputs / max(busiest, 1e-9):.0f} exec/s")
    print(f"exceptions: {violations.get('exception', 0)}")
    print(f"leaks (sessions or timers): {violations.get('leak', 0)}")
    others = {k: v for k, v in violations.items() if k not in ("exception", "leak")}
    print(f"other violations: {others or 0}")
    for signature, line in sorted(signatures.items()):
        print(f"  {signature}: {line}")
    for index in range(jobs):
        log = work / f"child-{index}.log"
        done = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if " DONE " in line or line.startswith("Done ")
        ]
        if done:
            print(f"job {index}: {' | '.join(done[-2:])}")
    bad = [c for c in codes if c != 0]
    if bad:
        print(f"worker exit codes: {codes} (see {work}/child-*.log)")
    return 1 if violations or bad else 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
