"""
A whole building on 127.0.0.1: gatekeeper's service tree and the simulated
Asterisk, wired to each other, for the end-to-end tests and the demo.

:func:`start_building` writes a residents file and a configuration into a
folder of its own (the SQLite file and the recordings go there too), starts
the simulated AMI server, builds gatekeeper with
:func:`gatekeeper.service.makeService` exactly as ``twist gatekeeper`` would,
and waits until gatekeeper's dialer has logged in to the simulated AMI.
:meth:`Building.stop` stops both and leaves no port, connection or timer
behind.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import define
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from gatekeeper.accesslog import AccessLog, VisitRecord
from gatekeeper.config import Config, parse_config
from gatekeeper.media.prompts import PromptLibrary
from gatekeeper.service import makeService
from gatekeeper.session.registry import SessionRegistry
from gatekeeper.testing.audio import prompt_sounds, write_synthetic_prompts
from gatekeeper.testing.pbx import SimulatedAsterisk
from gatekeeper.testing.script import Phone

__all__ = ["RESIDENTS", "Building", "free_port", "rss_kb", "start_building"]

#: A small building: two extensions for 101, one for 202, and a concierge.
RESIDENTS = """\
apartment,name,extensions
101,Ana Souza,1011|1012
202,Bruno Lima,2021
concierge,Front desk,9000
"""

_SECRET = "simulated-secret"


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on 127.0.0.1.

    gatekeeper must know its own address before it starts listening (it is
    ``[ami] target``, which Asterisk dials back), so the port is chosen first.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (Linux), -1 if unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


@define
class Building:
    """gatekeeper and its simulated Asterisk, both running."""

    service: MultiService
    pbx: SimulatedAsterisk
    base: Path
    port: int

    @property
    def access_log(self) -> AccessLog:
        return self.service.getServiceNamed("accesslog")  # type: ignore[return-value]

    @property
    def registry(self) -> SessionRegistry:
        return self.service.getServiceNamed("registry")  # type: ignore[return-value]

    def record(self, call_uuid: str) -> Deferred[VisitRecord | None]:
        return self.access_log.get(call_uuid)

    async def stop(self) -> None:
        await self.pbx.stop()
        await self.service.stopService()


async def start_building(
    base: Path,
    reactor: Any,
    *,
    phones: Mapping[str, Phone],
    prompts: Path | None = None,
    residents: str = RESIDENTS,
    flow: Mapping[str, object] | None = None,
    session: Mapping[str, object] | None = None,
    recording: Mapping[str, object] | None = None,
    extra: str = "",
    door: Mapping[str, str] | None = None,
    login_delay: float = 1.0,
    dialplan_retries: int = 0,
) -> Building:
    """Start gatekeeper and the simulated Asterisk; see the module docstring.

    ``prompts`` is a prompt folder; None writes a synthetic one (0.2 s per
    prompt).  ``flow``, ``session`` and ``recording`` are keys of those
    sections of ``etc/gatekeeper.ini``; ``extra`` is more of the file.

    ``door`` is the ``[door]`` section.  It is put in after parsing, because
    ``parse_config`` refuses ``mode = dtmf`` even with ``[ami]`` configured
    (its start-up check builds the opener without a dialer); ``makeService``
    builds it with the real one.
    """
    base.mkdir(parents=True, exist_ok=True)
    if prompts is None:
        prompts = write_synthetic_prompts(base / "prompts")
    (base / "residents.csv").write_text(residents, encoding="utf-8")
    port = free_port()
    pbx = SimulatedAsterisk(
        reactor,
        ("127.0.0.1", port),
        phones=phones,
        sounds=prompt_sounds(PromptLibrary.load(prompts)),
        secret=_SECRET,
        login_delay=login_delay,
        dialplan_retries=dialplan_retries,
    )
    ami_port = await pbx.listen()
    try:
        config = _config(base, port, ami_port, prompts, flow, session, recording, extra)
        if door is not None:
            config = attrs.evolve(config, door=tuple(door.items()))
        service = makeService(config, reactor)
    except BaseException:
        await pbx.stop()
        raise
    service.startService()
    building = Building(service, pbx, base, port)
    try:
        await service.getServiceNamed("audiosocket").when_listening()  # type: ignore[attr-defined]
        await pbx.when_logged_in()
        await building.access_log.when_ready()
    except BaseException:
        await building.stop()
        raise
    return building


def _config(
    base: Path,
    port: int,
    ami_port: int,
    prompts: Path,
    flow: Mapping[str, object] | None,
    session: Mapping[str, object] | None,
    recording: Mapping[str, object] | None,
    extra: str,
) -> Config:
    def section(name: str, values: Mapping[str, object] | None) -> str:
        lines = "".join(f"{k} = {v}\n" for k, v in (values or {}).items())
        return f"[{name}]\n{lines}"

    return parse_config(
        f"""\
[audiosocket]
listen = tcp:{port}:interface=127.0.0.1
[performance]
lean_poll = no
{section("session", session)}
{section("flow", flow)}
{section("recording", {"directory": base / "recordings", **(recording or {})})}
[prompts]
directory = {prompts}
[accesslog]
database = {base / "visits.sqlite3"}
[directory]
file = {base / "residents.csv"}
[ami]
endpoint = tcp:127.0.0.1:{ami_port}
username = gatekeeper
secret = {_SECRET}
channel_template = PJSIP/{{extension}}
resident_context = gatekeeper-resident
target = 127.0.0.1:{port}
{extra}""",
        str(base / "gatekeeper.ini"),
    )
