"""
Load benchmark: how many calls (echo) and visits (full) one core carries.

The server runs in its own process pinned to CPU 0 (``taskset -c 0``), a
``makeService`` tree with the lean epoll loop and direct sends, and answers
``reset``/``stats`` on stdin with its pacer's lateness histogram (how late
each outbound frame left against its 20 ms deadline), frames skipped, CPU and
RSS.  The load generator is this process, pinned to CPU 1.  Each N gets a
fresh server; N ramps until the server's p99 outbound lateness passes 5 ms
or a frame is lost (or, in full mode, a visit's name reaches the wrong
resident), and the table says the largest N that held.

echo  N concurrent ``--app echo`` calls.  ``--generator python``: the
      simulated Asterisk's legs, each frame tagged (leg, sequence) so every
      echoed frame is accounted for; ``--generator asload``: the independent C
      generator (``--asload PATH``), as a cross-check (its lateness is measured
      on kernel receive timestamps).
full  N concurrent visits against the simulated AMI: every visitor dials its
      own apartment and says its name in its own signature voice, every
      resident answers, hears the announcement and presses 1.  Legs behave
      as phones with silence suppression (they send audio only while their
      user speaks), so the Python generator can carry 2N legs; gatekeeper
      still sends every leg a frame every 20 ms.  Prompts are synthetic with
      the real prompts' lengths (``--prompt-scale`` shortens them).  Reported
      besides lateness and loss: context integrity (each resident must hear
      only its own visitor's signature), setup latency (visitor's UUID frame
      to the first greeting frame), and issue 5's two latencies: resident's
      UUID frame to the first frame of the announcement, resident's DTMF to
      the first frame of the visitor's outcome prompt (goal: p99 <= 20 ms).

    python -m bench.load --quick                      # < 1 min, both modes
    python -m bench.load --mode echo --generator asload --n 500 750 1000 1250 1500 1750
    python -m bench.load --mode echo --n 250 500 750 1000
    python -m bench.load --mode full --n 100 250 500 750 --seconds 20

Client-side lateness is measured on the generator's reactor clock, so it
includes the generator's own read delay: read it with the generator's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from gatekeeper.audiosocket.wire import Kind, encode  # noqa: E402
from gatekeeper.media.prompts import PromptLibrary  # noqa: E402
from gatekeeper.testing.audio import (  # noqa: E402
    ConstantSpotter,
    write_synthetic_prompts,
)
from gatekeeper.testing.harness import free_port, rss_kb  # noqa: E402
from gatekeeper.testing.legs import AsteriskLeg, FrameClock  # noqa: E402
from gatekeeper.testing.pbx import SimulatedAsterisk, format_timeline  # noqa: E402
from gatekeeper.testing.script import (  # noqa: E402
    Phone,
    Press,
    Speak,
    Visitor,
    Wait,
    WaitFor,
)

ROOT = Path(__file__).resolve().parent.parent
LATE_LIMIT = 0.005
# The visitor's outcome prompt after a 1: the bench has no door ([door] mode
# none), so gatekeeper says the door could not be opened.
_OUTCOMES = ("access_granted", "door_failed")
_HEADER = struct.Struct("!BH")


# -- the server process -------------------------------------------------------


def serve(options: argparse.Namespace) -> None:
    """Run gatekeeper and answer ``reset``/``stats`` lines on stdin."""
    from twisted.internet.stdio import StandardIO
    from twisted.protocols.basic import LineReceiver

    from gatekeeper.config import parse_config
    from gatekeeper.service import makeService

    text = Path(options.serve).read_text()
    service = makeService(parse_config(text, options.serve), reactor)
    pacer = next(s.pacer for s in service if hasattr(s, "pacer"))

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            if line == b"reset":
                pacer.lateness.reset()
                self.base = (pacer.frames_sent, pacer.frames_skipped)
                self.sendLine(b"{}")
            elif line == b"stats":
                sent, skipped = getattr(self, "base", (0, 0))
                h = pacer.lateness
                stats = {
                    "p50": h.quantile(0.5),
                    "p99": h.quantile(0.99),
                    "max": h.max,
                    "frames": pacer.frames_sent - sent,
                    "skipped": pacer.frames_skipped - skipped,
                    "rss_kb": rss_kb(os.getpid()),
                }
                self.sendLine(json.dumps(stats).encode())

        def connectionLost(self, reason: object = None) -> None:
            if reactor.running:
                reactor.stop()

    service.startService()
    port = service.getServiceNamed("audiosocket")

    def ready(_: object) -> None:
        StandardIO(Control())
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    port.when_listening().addCallback(ready)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """The server subprocess, pinned to CPU 0."""

    def __init__(self, config: str, workdir: Path) -> None:
        path = workdir / "gatekeeper.ini"
        path.write_text(config)
        self.process = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "bench.load",
                "--serve",
                str(path),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"server did not start: {line!r}")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- generator legs ---------------------------------------------------------


class BenchLeg(AsteriskLeg):
    """A leg that keeps only arrival times and what its spotter says.

    Parsing is inlined (no Frame objects): the generator handles every frame
    gatekeeper sends to a thousand legs on one core.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []
        self.sequences: set[int] = set()
        self._buffer = b""
        self.leg_id = 0
        self.sequence = 0
        self.pattern = False

    def dataReceived(self, data: bytes) -> None:
        now = self.frames.clock.seconds()
        buffer = self._buffer + data if self._buffer else data
        offset, end = 0, len(buffer)
        arrivals = self.arrivals
        spotter = self.spotter
        while end - offset >= 3:
            kind, length = _HEADER.unpack_from(buffer, offset)
            stop = offset + 3 + length
            if stop > end:
                break
            if kind == Kind.SLIN:
                if self.first_audio_at is None:
                    self.first_audio_at = now
                arrivals.append(now)
                payload = buffer[offset + 3 : stop]
                if self.pattern and payload[:2] != b"\0\0":
                    self.sequences.add(int.from_bytes(payload[2:4], "little"))
                if spotter is not None:
                    for heard in spotter.feed(payload, now):
                        self._heard(heard)
            elif kind == Kind.HANGUP:
                self.hangup_frame_at = now
            offset = stop
        self._buffer = buffer[offset:] if offset < end else b""

    def _tick(self) -> None:
        if self.pattern and self.connected:
            self.sequence += 1
            word = struct.pack("<HH", self.leg_id or 0xFFFF, self.sequence & 0xFFFF)
            self.transport.write(encode(Kind.SLIN, word * 80))
            self.frames_sent += 1
            return
        super()._tick()


def _lost_and_late(
    legs: list[BenchLeg], start: float, end: float
) -> tuple[int, list[float]]:
    """Frames missing from 20 ms cadences, and each frame's lateness, in the window."""
    lost = 0
    lateness: list[float] = []
    for leg in legs:
        times = [t for t in leg.arrivals if start <= t <= end]
        if len(times) < 2:
            continue
        t0 = times[0]
        for k, t in enumerate(times):
            lateness.append(t - (t0 + 0.02 * k))
        span = times[-1] - t0
        lost += max(0, round(span / 0.02) + 1 - len(times))
    return lost, lateness


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _server_config(app: str, port: int, base: Path, ami_port: int = 0) -> str:
    config = f"""\
[audiosocket]
listen = tcp:{port}:interface=127.0.0.1
app = {app}
max_connections = 10000
[performance]
lean_poll = yes
direct_send = yes
[accesslog]
database = {base / "visits.sqlite3"}
[recording]
directory = {base / "rec"}
trailing_silence = 0.5
[prompts]
directory = {base / "prompts"}
[directory]
file = {base / "residents.csv"}
"""
    if ami_port:
        config += f"""\
[flow]
ring_timeout = 30
decision_timeout = 30
[ami]
endpoint = tcp:127.0.0.1:{ami_port}
username = gatekeeper
secret = bench
target = 127.0.0.1:{port}
"""
    return config


# -- one step of the ramp -----------------------------------------------------


async def echo_step(
    n: int, seconds: float, options: argparse.Namespace
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="gk-load-"))
    port = free_port()
    server = Server(_server_config("echo", port, base), base)
    try:
        if options.generator == "asload":
            return _asload_step(n, seconds, port, server, options)
        rss0 = rss_kb(server.pid)
        clock = FrameClock(reactor)
        legs = []
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        connect0 = time.monotonic()
        for i in range(n):
            leg = BenchLeg(str(uuid.uuid4()), clock, record=False)
            leg.pattern, leg.leg_id = True, i + 1
            legs.append(leg)
            await connectProtocol(endpoint, leg)
            if i % 100 == 99:
                await deferLater(reactor, 0.01, lambda: None)
        await deferLater(reactor, 1.0, lambda: None)
        first = {leg: leg.sequence + 1 for leg in legs}
        window = await _window(server, seconds)
        # Every frame sent in the window, but the last 200 ms, must come back.
        last = {leg: leg.sequence - 10 for leg in legs}
        await deferLater(reactor, 0.3, lambda: None)
        for leg in legs:
            leg.hang_up()
        await deferLater(reactor, 0.2, lambda: None)
        _, late = _lost_and_late(legs, window["start"], window["end"])
        lost = sum(
            1
            for leg in legs
            for k in range(first[leg], last[leg])
            if k & 0xFFFF not in leg.sequences
        )
        return {
            **window,
            "n": n,
            "lost": lost,
            "client_p99": _pct(late, 0.99),
            "setup": _pct(
                [(leg.first_audio_at or 0) - (leg.connected_at or 0) for leg in legs],
                0.99,
            ),
            "rss_per_call_kb": (window["rss_kb"] - rss0) / n,
            "connect_s": time.monotonic() - connect0,
        }
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _asload_step(
    n: int, seconds: float, port: int, server: Server, options: argparse.Namespace
) -> dict[str, Any]:
    result = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            options.asload,
            "-n",
            str(n),
            "-d",
            str(seconds),
            "-p",
            str(port),
            "--server-pid",
            str(server.pid),
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    line = (result.stdout.strip().splitlines() or [""])[-1]
    values = dict(item.split("=", 1) for item in line.split() if "=" in item)
    return {
        "n": n,
        "p50": float(values.get("late_p50_ms", "nan")) / 1000,
        "p99": float(values.get("late_p99_ms", "nan")) / 1000,
        "max": float(values.get("late_max_ms", "nan")) / 1000,
        "lost": int(values.get("lost", "-1")),
        "server_cpu": float(values.get("srv_cpu_pct", "nan")),
        "gen_cpu": float(values.get("gen_cpu_pct", "nan")),
        "rss_per_call_kb": float(values.get("srv_rss_kb", "nan")) / n,
        "gen_ok": values.get("gen_ok", "?"),
    }


async def _window(server: Server, seconds: float) -> dict[str, Any]:
    """Measure ``seconds`` of steady load: server lateness, CPU both sides."""
    server.ask("reset")
    start = reactor.seconds()
    cpu0 = _cpu_seconds(server.pid)
    gen0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    await deferLater(reactor, seconds, lambda: None)
    wall = time.monotonic() - wall0
    gen1 = resource.getrusage(resource.RUSAGE_SELF)
    stats = server.ask("stats")
    return {
        "start": start,
        "end": reactor.seconds(),
        "p50": stats["p50"],
        "p99": stats["p99"],
        "max": stats["max"],
        "skipped": stats["skipped"],
        "rss_kb": stats["rss_kb"],
        "server_cpu": 100 * (_cpu_seconds(server.pid) - cpu0) / wall,
        "gen_cpu": 100
        * (gen1.ru_utime + gen1.ru_stime - gen0.ru_utime - gen0.ru_stime)
        / wall,
    }


async def full_step(
    n: int, seconds: float, options: argparse.Namespace
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="gk-load-"))
    real = PromptLibrary.load()
    write_synthetic_prompts(
        base / "prompts",
        {name: real.duration(name) * options.prompt_scale for name in real.names},
    )
    rows = "".join(f"{i},Resident {i},e{i}\n" for i in range(1, n + 1))
    (base / "residents.csv").write_text("apartment,name,extensions\n" + rows)
    say_name = real.duration("say_name") * options.prompt_scale
    port = free_port()
    ring = 0.5
    # The resident decides once the measurement window is over, so every
    # visit is in flight during it.
    ramp = n / options.rate
    hold = ramp + seconds + 2.0
    phones = {
        f"e{i}": Phone(
            answer_after=ring,
            steps=(
                WaitFor("resident_choice", timeout=hold + 60),
                Wait(0.2),
                Press("1"),
            ),
        )
        for i in range(1, n + 1)
    }
    pbx = SimulatedAsterisk(
        reactor,
        ("127.0.0.1", port),
        phones=phones,
        secret="bench",
        continuous=False,
        record=False,
        leg_class=BenchLeg,
        spotter_factory=ConstantSpotter,
    )
    ami_port = await pbx.listen()
    server = Server(_server_config("visit", port, base, ami_port), base)
    try:
        await pbx.when_logged_in()
        rss0 = rss_kb(server.pid)
        channels = []
        for i in range(1, n + 1):
            visitor = Visitor(
                (
                    WaitFor("ask_apartment", timeout=hold + 60),
                    Press(f"{i}#", gap=0.1),
                    # ConstantSpotter knows prompts, not tones: wait out the beep.
                    WaitFor("say_name", after=say_name + 0.45, timeout=hold + 60),
                    Speak(0.8, quiet_before=0.2, quiet_after=0.8),
                ),
                number=i,
            )
            channels.append(pbx.visit(visitor))
            await deferLater(reactor, 1 / options.rate, lambda: None)
        await deferLater(reactor, 1.0, lambda: None)
        window = await _window(server, seconds)
        in_flight = sum(1 for c in channels if c.state != "gone")
        deadline = reactor.seconds() + hold + 60
        while any(c.state != "gone" for c in channels) and reactor.seconds() < deadline:
            await deferLater(reactor, 0.5, lambda: None)
        if os.environ.get("GK_BENCH_TIMELINE"):
            print(format_timeline(pbx), file=sys.stderr)
        legs: list[BenchLeg] = [leg for c in pbx.channels for leg in c.legs]  # type: ignore[misc]
        lost, late = _lost_and_late(legs, window["start"], window["end"])
        residents = {
            c.label.removeprefix("resident e"): c
            for c in pbx.channels
            if c.label.startswith("resident")
        }
        mismatches = 0
        announce, outcome, setup = [], [], []
        for c in channels:
            resident = residents.get(str(c.number))
            heard = set()
            if resident is not None:
                for leg in resident.legs:
                    heard |= set(leg.spotter.signatures) if leg.spotter else set()
                first = resident.legs[0]
                intro = next(
                    (h.at for h in resident.heard_log if h.name == "resident_intro"),
                    None,
                )
                if intro is not None and first.connected_at is not None:
                    announce.append(intro - first.connected_at)
                pressed = next(
                    (t for t, what, _ in first.events if what == "dtmf"), None
                )
                told = next((h.at for h in c.heard_log if h.name in _OUTCOMES), None)
                if pressed is not None and told is not None:
                    outcome.append(told - pressed)
            if heard != {c.number}:
                mismatches += 1
            greet = next((h.at for h in c.heard_log if h.name == "greeting"), None)
            if greet is not None and c.legs and c.legs[0].connected_at is not None:
                setup.append(greet - c.legs[0].connected_at)
        return {
            **window,
            "n": n,
            "in_flight": in_flight,
            "lost": lost + window["skipped"],
            "client_p99": _pct(late, 0.99),
            "mismatches": mismatches,
            "setup": _pct(setup, 0.99),
            "announce_p99": _pct(announce, 0.99),
            "outcome_p99": _pct(outcome, 0.99),
            "rss_per_call_kb": (window["rss_kb"] - rss0) / n,
        }
    finally:
        await pbx.stop()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- the ramp and the table ---------------------------------------------------


def _held(row: dict[str, Any]) -> bool:
    return (
        row["p99"] <= LATE_LIMIT and row["lost"] == 0 and row.get("mismatches", 0) == 0
    )


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.2f}"


def table(mode: str, rows: list[dict[str, Any]]) -> str:
    head = [
        "N",
        "held",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "srv CPU%",
        "RSS/call KiB",
        "gen CPU%",
        "client p99 ms",
        "setup p99 ms",
    ]
    if mode == "full":
        head += [
            "in flight",
            "mismatches",
            "UUID->announce p99 ms",
            "DTMF->outcome p99 ms",
        ]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        cells = [
            str(r["n"]), "yes" if _held(r) else "NO", _ms(r["p50"]), _ms(r["p99"]), _ms(r["max"]),
            str(r["lost"]), f"{r['server_cpu']:.0f}", f"{r['rss_per_call_kb']:.0f}", f"{r['gen_cpu']:.0f}",
            _ms(r.get("client_p99", float("nan"))), _ms(r.get("setup", float("nan"))),
        ]  # fmt: skip
        if mode == "full":
            cells += [
                str(r["in_flight"]),
                str(r["mismatches"]),
                _ms(r["announce_p99"]),
                _ms(r["outcome_p99"]),
            ]
        lines.append(" | ".join(cells))
    held = [r["n"] for r in rows if _held(r)]
    lines.append(f"largest N that held ({mode}): {max(held) if held else 'none'}")
    return "\n".join(lines)


async def run(options: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    from gatekeeper.fastpath import install_fast_poll

    install_fast_poll(reactor)
    modes = ["echo", "full"] if options.mode == "both" else [options.mode]
    for mode in modes:
        ns = options.n or ([25, 50] if options.quick else [100, 250, 500, 750, 1000])
        rows = []
        for n in ns:
            step = echo_step if mode == "echo" else full_step
            row = await step(n, options.seconds, options)
            rows.append(row)
            print(
                f"{mode} N={n}: p99 {_ms(row['p99'])} ms, lost {row['lost']}",
                file=sys.stderr,
                flush=True,
            )
            if not _held(row):
                break
        generator = f", generator {options.generator}" if mode == "echo" else ""
        print(
            f"\n{mode} mode ({options.seconds:g} s windows{generator}):\n{table(mode, rows)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["echo", "full", "both"], default="both")
    parser.add_argument("--n", type=int, nargs="+")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--quick", action="store_true", help="small N, short windows: < 1 min"
    )
    parser.add_argument("--generator", choices=["python", "asload"], default="python")
    parser.add_argument(
        "--asload", default=shutil.which("asload") or "/tmp/tools/loadgen/asload"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="visits started per second"
    )
    parser.add_argument("--prompt-scale", type=float, default=1.0)
    options = parser.parse_args()
    if options.serve:
        serve(options)
        return
    if options.quick:
        options.seconds = min(options.seconds, 4.0)
        options.prompt_scale = min(options.prompt_scale, 0.3)
    from twisted.internet.task import react

    react(lambda r: Deferred.fromCoroutine(run(options)))


if __name__ == "__main__":
    main()
