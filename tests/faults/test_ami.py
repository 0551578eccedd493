"""
AMI faults: the visit still ends in a defined outcome, recorded, with the
registry empty and the pacer idle.

The simulated Asterisk's AMI is broken once gatekeeper is up (``start_building``
waits for the first login): the AMI port down, the login refused on
reconnect, the connection dropped right after an ``Originate``, or the
``OriginateResponse`` never sent.  The dialer's own reconnect timer is
expected to stay (it is how AMI comes back); it stops with the service.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gatekeeper.testing.harness import Building
from gatekeeper.testing.pbx import SimulatedAsterisk
from gatekeeper.testing.script import Phone
from tests.faults import test_matrix as matrix
from tests.faults.test_matrix import (
    FLOW,
    VISITOR,
    _gatekeeper_timers,
    _pacer,
)

AMI_FLOW = {**FLOW, "ring_timeout": 0.5, "answer_timeout": 0.5}


def _drop_sessions(pbx: SimulatedAsterisk) -> None:
    for session in list(pbx.factory.sessions):
        if not session.closed and session.transport is not None:
            session.transport.loseConnection()


class AMIFaultTests(TestCase):
    """One visit per AMI fault."""

    timeout = 30
    setUp = matrix.FaultMatrixTests.setUp
    building = matrix.FaultMatrixTests.building
    flow = AMI_FLOW

    async def visit(self, building: Building, expected: str) -> None:
        channel = building.pbx.visit(VISITOR)
        uuid = channel.call_uuid
        registry = building.registry
        for _ in range(300):
            if registry.get(uuid) is not None:
                break
            await deferLater(reactor, 0.01, lambda: None)
        ended = registry.when_ended(uuid)
        ended.addTimeout(20, reactor)
        outcome = (await ended).value
        record = None
        leftovers: list[str] = []
        for _ in range(100):
            record = await building.record(uuid)
            leftovers = [t for t in _gatekeeper_timers() if ".dialer." not in t]
            if record is not None and len(registry) == 0 and not leftovers:
                break
            await deferLater(reactor, 0.03, lambda: None)
        if os.environ.get("GK_FAULTS_SHOW"):
            print(f"\n{self.id()}: {outcome} {_gatekeeper_timers()}")
        self.assertEqual(outcome, expected)
        self.assertIsNotNone(record, "no access-log row")
        assert record is not None
        self.assertEqual(record.outcome, outcome)
        self.assertEqual(len(registry), 0)
        pacer = _pacer(building)
        self.assertEqual((len(pacer), pacer._call), (0, None))
        self.assertEqual(leftovers, [])

    async def test_ami_down(self) -> None:
        """AMI is down (port closed) when the visitor calls: nobody can be rung."""
        building = await self.building()
        pbx = building.pbx
        port, pbx.port = pbx.port, None
        assert port is not None
        await port.stopListening()
        _drop_sessions(pbx)
        await self.visit(building, "resident_unreachable")

    async def test_login_refused(self) -> None:
        """AMI drops and refuses the dialer's login when it comes back."""
        building = await self.building()
        building.pbx.secret = "changed"
        _drop_sessions(building.pbx)
        await self.visit(building, "resident_unreachable")

    async def test_dropped_mid_originate(self) -> None:
        """AMI drops right after queuing an Originate: no response ever comes."""
        building = await self.building()
        pbx = building.pbx
        original = pbx._action_originate

        def originate(session: Any, message: Any) -> None:
            original(session, message)
            session.transport.loseConnection()

        pbx._action_originate = originate  # type: ignore[method-assign]
        await self.visit(building, "no_answer")

    async def test_originate_response_never_arrives(self) -> None:
        """Asterisk never sends OriginateResponse: the ring timeout ends each try."""
        building = await self.building({"1011": Phone(answer_after=None)})
        building.pbx._originate_response = (  # type: ignore[method-assign]
            lambda *args: None
        )
        await self.visit(building, "no_answer")
