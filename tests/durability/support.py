"""
gatekeeper in a child process against the simulated Asterisk in this one,
for the crash test and the soak (``bench/soak.py``).

:class:`Site` writes a building (residents, synthetic prompts, a
configuration with small ``[flow]`` timeouts) into a folder; :meth:`Site.start`
starts the simulated AMI, then ``python -m tests.security.serve`` on that
configuration, and waits until gatekeeper listens and has logged in to AMI.
The child can be killed with SIGKILL (:meth:`Server.kill`) and a new one
started on the same folder, so on the same SQLite file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from gatekeeper.media.prompts import PromptLibrary
from gatekeeper.testing.audio import BEEP, prompt_sounds, write_synthetic_prompts
from gatekeeper.testing.harness import free_port
from gatekeeper.testing.pbx import SimChannel, SimulatedAsterisk
from gatekeeper.testing.script import (
    Drop,
    HangUp,
    Phone,
    Press,
    Speak,
    Visitor,
    Wait,
    WaitFor,
)

__all__ = [
    "OUTCOME_PROMPTS",
    "Server",
    "Site",
    "integrity_check",
    "mismatches",
    "rows",
    "told",
]

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "durability-secret"

#: What a visitor hears once its visit has an outcome (flow/machine.py); the
#: row is written before the first frame of any of them.
OUTCOME_PROMPTS = frozenset(
    {
        "access_granted",
        "access_denied",
        "door_failed",
        "resident_not_answering",
        "residents_unreachable",
    }
)

FLOW = {
    "first_digit_timeout": 2,
    "inter_digit_timeout": 1,
    "ring_timeout": 1,
    "answer_timeout": 2,
    "decision_timeout": 2,
}
RECORDING = {"trailing_silence": 0.3, "no_speech_timeout": 2, "max_length": 3}


class Server(ProcessProtocol):
    """gatekeeper in a child process; ``port`` fires once it listens."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.output = b""
        self.pid: int | None = None
        self.exit: Failure | None = None
        #: (time received, RSS KiB, heap blocks) from ``serve --stats``.
        self.stats: list[tuple[float, int, int]] = []
        self._partial = b""

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if line.startswith(b"STATS "):
                rss, blocks = line.split()[1:3]
                self.stats.append((self.clock.seconds(), int(rss), int(blocks)))
                continue
            self.output += line + b"\n"
            if line.startswith(b"PORT ") and not self.port.called:
                self.port.callback(int(line.split()[1]))

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.exit = reason
        if not self.port.called:
            self.port.errback(RuntimeError(f"server died: {self.output.decode()}"))
        self.ended.callback(None)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def kill(self) -> Deferred[None]:
        """SIGKILL, as a crash: no shutdown code runs."""
        if self.running and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        return self.ended

    def terminate(self) -> Deferred[None]:
        if self.running and self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
        return self.ended


class Site:
    """A building in ``base``: apartments ``1..apartments``, each with one
    extension ``<n>1``, whose phones the caller fills in."""

    def __init__(
        self,
        reactor: Any,
        base: Path,
        apartments: int,
        prompt_seconds: float = 0.12,
        *,
        remember_ended: float | None = None,
        stats: float | None = None,
        collect: bool = False,
    ) -> None:
        self.reactor = reactor
        #: ``[session] remember_ended`` if not the default.
        self.remember_ended = remember_ended
        #: Seconds between the server's ``STATS`` lines (none if None), and
        #: whether it collects garbage before each (``serve --collect``).
        self.stats = stats
        self.collect = collect
        self.base = base.resolve()
        self.base.mkdir(parents=True, exist_ok=True)
        self.prompts = write_synthetic_prompts(self.base / "prompts", prompt_seconds)
        self.sounds = prompt_sounds(PromptLibrary.load(self.prompts))
        rows = "".join(f"{i},Resident {i},{i}1\n" for i in range(1, apartments + 1))
        (self.base / "residents.csv").write_text("apartment,name,extensions\n" + rows)
        # Short: gatekeeper refuses a recording path over 128 characters.
        self.recordings = Path(tempfile.mkdtemp(prefix="gk-dur-"))
        self.database = self.base / "visits.sqlite3"
        self.log = self.base / "server.log"
        self.phones: dict[str, Phone] = {}
        self.pbx: SimulatedAsterisk | None = None
        self.server: Server | None = None

    def config(self, port: int, ami_port: int) -> Path:
        def section(name: str, values: dict[str, object]) -> str:
            return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())

        text = f"""\
[audiosocket]
listen = tcp:{port}:interface=127.0.0.1
[performance]
lean_poll = no
{section("flow", FLOW)}
{section("recording", {"directory": self.recordings, **RECORDING})}
[session]
grace_period = 3
{"" if self.remember_ended is None else f"remember_ended = {self.remember_ended}"}
[prompts]
directory = {self.prompts}
[accesslog]
database = {self.database}
[directory]
file = {self.base / "residents.csv"}
[door]
mode = command
command = true
[ami]
endpoint = tcp:127.0.0.1:{ami_port}
username = gatekeeper
secret = {SECRET}
channel_template = PJSIP/{{extension}}
resident_context = gatekeeper-resident
target = 127.0.0.1:{port}
"""
        path = self.base / "gatekeeper.ini"
        path.write_text(text)
        return path

    async def start(self) -> tuple[SimulatedAsterisk, Server]:
        """A fresh simulated Asterisk and a gatekeeper child, both ready."""
        port = free_port()
        pbx = SimulatedAsterisk(
            self.reactor,
            ("127.0.0.1", port),
            phones=self.phones,
            sounds=self.sounds,
            secret=SECRET,
            login_delay=0.05,
        )
        ami_port = await pbx.listen()
        config = self.config(port, ami_port)
        server = Server(self.reactor)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [
            sys.executable,
            "-m",
            "tests.security.serve",
            str(config),
            str(self.log),
        ]
        if self.stats:
            argv += ["--stats", str(self.stats)]
            if self.collect:
                argv.append("--collect")
        self.reactor.spawnProcess(
            server,
            sys.executable,
            argv,
            env=env,
            path=str(ROOT),
        )
        self.pbx, self.server = pbx, server
        try:
            await server.port
            await _within(self.reactor, pbx.when_logged_in(), 15, "AMI login")
        except BaseException:
            await self.stop()
            raise
        return pbx, server

    async def stop(self) -> None:
        """Stop the simulated Asterisk and the child (SIGTERM), if running."""
        pbx, self.pbx = self.pbx, None
        if pbx is not None:
            await stop_pbx(self.reactor, pbx)
        server, self.server = self.server, None
        if server is not None:
            await server.terminate()

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.recordings, ignore_errors=True)


async def stop_pbx(reactor: Any, pbx: SimulatedAsterisk) -> None:
    """``pbx.stop()``, bounded: after a kill -9 it can wait forever on a leg
    whose ``when_closed`` never fires (see the report), so give it 5 s."""
    d = pbx.stop()
    d.addTimeout(5, reactor)
    try:
        await d
    except Exception:
        print("simulated Asterisk: stop() did not settle within 5 s", file=sys.stderr)


async def _within(reactor: Any, d: Deferred[Any], seconds: float, what: str) -> Any:
    d.addTimeout(seconds, reactor)
    try:
        return await d
    except Exception as e:
        raise RuntimeError(f"{what} did not happen within {seconds} s") from e


async def sleep(reactor: Any, seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


# -- scripts -------------------------------------------------------------------


def visitor(apartment: int, number: int, *then: object, drop: bool = False) -> Visitor:
    """Presses ``apartment``, says their name after the beep (dropping the
    connection for half a second first if ``drop``), then ``then``."""
    steps: list[object] = [
        WaitFor("ask_apartment", timeout=10),
        Press(f"{apartment}#", gap=0.05),
        WaitFor(BEEP, after=0.15, timeout=10),
    ]
    if drop:
        steps.append(Drop(0.3))
        steps.append(WaitFor(BEEP, after=0.15, timeout=10))
    steps.append(Speak(0.4, quiet_before=0.1, quiet_after=0.45))
    steps.extend(then)
    return Visitor(tuple(steps), number=number)  # type: ignore[arg-type]


def presses(key: str, drop: bool = False) -> Phone:
    """Answers, hears the choice (dropping and coming back first if ``drop``)
    and presses ``key``."""
    steps: list[object] = [WaitFor("resident_choice", timeout=10), Wait(0.05)]
    if drop:
        steps = [WaitFor("resident_intro", timeout=10), Drop(0.3), *steps]
    steps.append(Press(key))
    return Phone(answer_after=0.1, steps=steps)  # type: ignore[arg-type]


NEVER = Phone(answer_after=None)
LEAVES = (WaitFor("calling_resident", timeout=10), Wait(0.2), HangUp())


# -- what happened ---------------------------------------------------------------


def told(channel: SimChannel) -> bool:
    """The visitor had started hearing its outcome prompt."""
    return any(h.name in OUTCOME_PROMPTS for h in channel.heard_log)


def mismatches(pbx: SimulatedAsterisk, visit: SimChannel) -> int:
    """Resident channels of ``visit`` that heard another visitor's voice."""
    own = f"name:{visit.number}"
    bad = 0
    for c in pbx.channels:
        if c is visit or c.call_uuid != visit.call_uuid:
            continue
        if any(h.name.startswith("name:") and h.name != own for h in c.heard_log):
            bad += 1
    return bad


def rows(database: Path, uuids: Iterable[str] | None = None) -> dict[str, str]:
    """call_uuid -> outcome, read straight from the SQLite file."""
    connection = sqlite3.connect(database, timeout=10)
    try:
        found = dict(connection.execute("SELECT call_uuid, outcome FROM visits"))
    finally:
        connection.close()
    if uuids is not None:
        wanted = set(uuids)
        found = {k: v for k, v in found.items() if k in wanted}
    return found


def integrity_check(database: Path) -> str:
    """SQLite's own verdict on the file (``ok`` when sound)."""
    connection = sqlite3.connect(database, timeout=10)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()
