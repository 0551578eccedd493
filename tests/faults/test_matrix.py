"""
The fault matrix: every phase of a visit, by each leg that exists in it, by each
way a connection can break, over real TCP with the simulated Asterisk.

Each cell runs one visit that would end ``allowed`` (the resident presses 3 to
talk, then 1), breaks one leg as soon as gatekeeper's pair enters the phase,
and checks: the visit ends in the cell's defined outcome, its access-log row
exists, the registry is empty, and no timer of gatekeeper's (registry, pacer,
flow, dialer's per-call timers) is left on the reactor.

Faults act on the AudioSocket connection only (see :mod:`.faults`): on
``close`` and ``reset`` Asterisk says nothing on AMI, so gatekeeper waits the
grace period; on ``garbage`` and ``silence`` gatekeeper closes the connection
itself, ``AudioSocket()`` returns and the simulated dialplan hangs the channel
up, which AMI reports; ``split`` is a valid frame and must change nothing.

``GK_FAULTS_SHOW=1`` prints each cell's observed outcome.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gatekeeper.testing import harness
from gatekeeper.testing.audio import BEEP, write_synthetic_prompts
from gatekeeper.testing.harness import Building, start_building
from gatekeeper.testing.pbx import resident_channel
from gatekeeper.testing.script import Phone, Press, Speak, Visitor, Wait, WaitFor
from tests.faults.faults import FAULTS, apply_fault

GRACE = 0.5
IDLE = 0.6
STALL = 0.25
FLOW = {
    "first_digit_timeout": 2,
    "inter_digit_timeout": 1,
    "ring_timeout": 1,
    "answer_timeout": 1,
    "decision_timeout": 3,
    "talk_limit": 5,
}
RECORDING = {"trailing_silence": 0.3, "no_speech_timeout": 2, "max_length": 3}
DOOR = {"mode": "command", "command": "true"}
PHASES = ("apartment", "recording", "calling", "deciding", "talking")
RESIDENT_PHASES = ("deciding", "talking")

VISITOR = Visitor(
    (
        WaitFor("ask_apartment"),
        Wait(0.15),
        Press("101#", gap=0.05),
        WaitFor(BEEP, after=0.15),
        Speak(0.4, quiet_before=0.1, quiet_after=0.4),
        WaitFor("never", timeout=30),
    ),
    number=7,
)
RESIDENT = Phone(
    answer_after=0.3,
    steps=(WaitFor("resident_choice"), Wait(0.3), Press("3"), Wait(0.6), Press("1")),
    voice=42,
)

# The defined outcome of each cell, from the flow's rules
# (gatekeeper/flow/machine.py, _dropped/_gone) and the registry's grace
# period (gatekeeper/session/registry.py, _grace_expired):
LOST = {"visitor": "visitor_lost", "resident": "resident_lost"}
EXPECTED: dict[tuple[str, str, str], str] = {}
for _phase in PHASES:
    for _leg in ("visitor", "resident"):
        if _leg == "resident" and _phase not in RESIDENT_PHASES:
            continue
        for _fault in FAULTS:
            if _fault == "split":
                outcome = "allowed"  # a valid frame: the visit goes on
            elif _leg == "visitor" and _fault in ("close", "reset"):
                # A drop with no AMI Hangup: nobody comes back in the grace.
                outcome = "visitor_lost"
            elif _leg == "visitor":
                # gatekeeper closed it; the dialplan hangs up: visitor left.
                outcome = "visitor_left"
            elif _phase == "talking":
                # "Hanging up during talk is a no; a blip gets no second chance."
                outcome = "denied"
            elif _fault in ("close", "reset"):
                outcome = "resident_lost"
            else:
                # Hung up before deciding: the next extension (1012, then the
                # concierge) is rung and nobody else answers.
                outcome = "no_answer"
            EXPECTED[(_phase, _leg, _fault)] = outcome


def _gatekeeper_timers() -> list[str]:
    """Delayed calls on the reactor whose function belongs to gatekeeper."""
    found = []
    for call in reactor.getDelayedCalls():
        func: Any = call.func
        owner = getattr(func, "__self__", None)
        module = (
            type(owner).__module__
            if owner is not None
            else getattr(func, "__module__", "")
        )
        if module.startswith("gatekeeper.") and not module.startswith(
            "gatekeeper.testing"
        ):
            found.append(f"{module}.{getattr(func, '__qualname__', func)!s}")
    return found


class FaultMatrixTests(TestCase):
    """One visit per (phase, leg, fault) cell; see the module docstring."""

    timeout = 30
    passed: set[str] = set()

    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.prompts = write_synthetic_prompts(self.base / "prompts", 0.06)
        self.recordings = Path(tempfile.mkdtemp(prefix="gk-f-"))
        self.addCleanup(shutil.rmtree, self.recordings, ignore_errors=True)
        parse = harness.parse_config

        def with_idle(text: str, *args: Any) -> Any:
            text = text.replace(
                "[audiosocket]\n", f"[audiosocket]\nidle_timeout = {IDLE}\n", 1
            )
            return parse(text, *args)

        self.patch(harness, "parse_config", with_idle)

    #: The ``[flow]`` timeouts; the AMI faults ring for less.
    flow = FLOW

    async def building(self, phones: dict[str, Phone] | None = None) -> Building:
        building = await start_building(
            self.base / "building",
            reactor,
            phones={"1011": RESIDENT} if phones is None else phones,
            prompts=self.prompts,
            flow=self.flow,
            recording={**RECORDING, "directory": self.recordings},
            session={"grace_period": GRACE},
            door=DOOR,
            login_delay=0.05,
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(building.stop()))
        return building

    async def run_cell(self, phase: str, leg: str, fault: str) -> None:
        building = await self.building()
        channel = building.pbx.visit(VISITOR)
        uuid = channel.call_uuid
        registry = building.registry
        seen = False
        for _ in range(500):
            pair = registry.get(uuid)
            if pair is not None and pair.context.phase == phase:
                break
            if pair is None and seen:
                break  # it ended before the phase
            seen = pair is not None
            await deferLater(reactor, 0.01, lambda: None)
        pair = registry.get(uuid)
        self.assertIsNotNone(pair, f"the visit ended before {phase}")
        assert pair is not None
        self.assertEqual(pair.context.phase, phase)
        target = channel if leg == "visitor" else resident_channel(building.pbx, "1011")
        assert target is not None and target.leg is not None, f"no {leg} leg"
        self.assertTrue(target.leg.connected, f"{leg} leg not connected")
        ended = registry.when_ended(uuid)
        apply_fault(fault, target.leg, reactor, STALL)
        ended.addTimeout(15, reactor)
        outcome = (await ended).value
        record = None
        leftovers: list[str] = []
        for _ in range(100):
            record = await building.record(uuid)
            leftovers = _gatekeeper_timers()
            if record is not None and len(registry) == 0 and not leftovers:
                break
            await deferLater(reactor, 0.03, lambda: None)
        if os.environ.get("GK_FAULTS_SHOW"):
            print(f"\n{phase}/{leg}/{fault}: {outcome}")
        self.assertEqual(outcome, EXPECTED[(phase, leg, fault)])
        self.assertIsNotNone(record, "no access-log row")
        assert record is not None
        self.assertEqual(record.outcome, outcome)
        self.assertEqual(len(registry), 0)
        self.assertEqual(registry._stop_timer, None)
        pacer = _pacer(building)
        self.assertEqual((len(pacer), pacer._call), (0, None))
        self.assertEqual(leftovers, [])
        FaultMatrixTests.passed.add(self.id())


def _pacer(building: Building) -> Any:
    for service in building.service:
        pacer = getattr(service, "pacer", None)
        if pacer is not None:
            return pacer
    raise AssertionError("no pacer")


def _cell(phase: str, leg: str, fault: str) -> Any:
    async def test(self: FaultMatrixTests) -> None:
        await self.run_cell(phase, leg, fault)

    test.__name__ = f"test_{phase}_{leg}_{fault}"
    test.__doc__ = (
        f"{fault} on the {leg} leg while {phase}: {EXPECTED[(phase, leg, fault)]}."
    )
    return test


for (_phase, _leg, _fault), _outcome in EXPECTED.items():
    _test = _cell(_phase, _leg, _fault)
    setattr(FaultMatrixTests, _test.__name__, _test)

CELLS = len(EXPECTED)


@atexit.register
def _count() -> None:
    """The matrix's score, whichever runner ran it (and however many cells)."""
    if FaultMatrixTests.passed:
        print(
            f"fault matrix: {len(FaultMatrixTests.passed)} cells passed out of {CELLS}"
        )
