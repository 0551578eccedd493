"""
``/metrics`` after simulated calls: the registry driven by fake connections
on a Clock, as ``tests/session/test_registry.py`` does, read back through the
Prometheus text format.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gatekeeper.audiosocket.interfaces import CallRefused
from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import DoorResult
from gatekeeper.media.pacer import LatenessHistogram
from gatekeeper.session.callpair import Outcome
from gatekeeper.session.registry import SessionRegistry
from gatekeeper.web.metrics import CountingDoorOpener, DoorCounts
from gatekeeper.web.service import make_root

from .support import (
    TOKEN,
    FakeDialer,
    FakeListener,
    Request,
    connect,
    make_auth,
    new_uuid,
    render,
)


class FakePacer:
    def __init__(self) -> None:
        self.lateness = LatenessHistogram()


class FakeOpener:
    name = "http"

    def __init__(self, status: str) -> None:
        self.status = status

    def open(self, call_uuid: str, apartment: str, context: Any) -> Any:
        return succeed(DoorResult(self.status, "relay", "http"))


class MetricsTests(SynchronousTestCase):
    """The numbers a scrape shows match what happened."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = SessionRegistry(self.clock, grace_period=10.0)
        self.registry.startService()
        self.listener = FakeListener()
        self.dialer = FakeDialer(reconnects=2)
        self.pacer = FakePacer()
        self.doors = DoorCounts()
        self.root = make_root(
            make_auth(self.clock),
            self.clock,
            registry=self.registry,
            access_log=None,
            listener=self.listener,
            dialer=self.dialer,
            pacer=self.pacer,
            doors=self.doors,
            recordings=".",
        )

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        request = self.successResultOf(
            render(self.root, Request("/metrics", token=TOKEN))
        )
        self.assertEqual(request.code, 200)
        self.assertTrue(request.header("content-type").startswith("text/plain"))
        samples = {}
        for family in text_string_to_metric_families(request.body.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = (
                    sample.value
                )
        return samples

    def test_auth_required(self) -> None:
        """Metrics need the token too (they show call volumes)."""
        request = self.successResultOf(render(self.root, Request("/metrics")))
        self.assertEqual(request.code, 401)

    def test_idle(self) -> None:
        """Before any call every series exists, at zero."""
        m = self.scrape()
        self.assertEqual(m[("gatekeeper_calls_started_total", ())], 0)
        self.assertEqual(
            m[("gatekeeper_calls_ended_total", (("outcome", "allowed"),))], 0
        )
        self.assertEqual(
            m[("gatekeeper_refusals_total", (("reason", "third_leg"),))], 0
        )
        self.assertEqual(
            m[("gatekeeper_active_calls", (("phase", "new"), ("state", "visitor")))], 0
        )
        self.assertEqual(m[("gatekeeper_ami_connected", ())], 1)
        self.assertEqual(m[("gatekeeper_ami_reconnects_total", ())], 2)
        self.assertEqual(m[("gatekeeper_audiosocket_listening", ())], 1)
        self.assertEqual(m[("gatekeeper_door_open_failures_total", ())], 0)
        self.assertIn(("process_cpu_seconds_total", ()), m)

    def test_after_calls(self) -> None:
        """Calls started, ended, dropped, re-attached and refused are counted."""
        a, b, c = new_uuid(1), new_uuid(2), new_uuid(3)
        visitor_a = connect(self.registry, a)
        self.registry.get(a).context.enter_phase("apartment", self.clock.seconds())
        connect(self.registry, b)
        self.registry.expect_resident(b, 30.0, target="1011")
        connect(self.registry, b)  # the resident
        self.assertRaises(CallRefused, connect, self.registry, b)  # a third leg
        self.assertRaises(CallRefused, connect, self.registry, "not-a-uuid")
        m = self.scrape()
        self.assertEqual(m[("gatekeeper_calls_started_total", ())], 2)
        self.assertEqual(
            m[
                (
                    "gatekeeper_active_calls",
                    (("phase", "apartment"), ("state", "visitor")),
                )
            ],
            1,
        )
        self.assertEqual(
            m[("gatekeeper_active_calls", (("phase", "new"), ("state", "connected")))],
            1,
        )
        self.assertEqual(
            m[("gatekeeper_refusals_total", (("reason", "third_leg"),))], 1
        )
        self.assertEqual(
            m[("gatekeeper_refusals_total", (("reason", "malformed_uuid"),))], 1
        )
        # The visitor of a drops and comes back; later it drops for good.
        visitor_a.close()
        self.clock.advance(3)
        visitor_a = connect(self.registry, a)
        visitor_a.close()
        self.clock.advance(11)
        self.registry.end(b, Outcome.ALLOWED)
        connect(self.registry, c)
        self.registry.end(c, Outcome.DENIED)
        m = self.scrape()
        self.assertEqual(m[("gatekeeper_calls_started_total", ())], 3)
        self.assertEqual(
            m[
                (
                    "gatekeeper_leg_drops_total",
                    (("phase", "apartment"), ("role", "visitor"), ("state", "visitor")),
                )
            ],
            2,
        )
        self.assertEqual(
            m[("gatekeeper_reattachments_total", (("role", "visitor"),))], 1
        )
        for outcome, n in (("allowed", 1), ("denied", 1), ("visitor_lost", 1)):
            self.assertEqual(
                m[("gatekeeper_calls_ended_total", (("outcome", outcome),))], n
            )
        self.assertEqual(
            sum(v for (name, _), v in m.items() if name == "gatekeeper_active_calls"), 0
        )

    def test_lateness_histogram(self) -> None:
        """The pacer's per-bucket counts are published cumulative, with +Inf."""
        lateness = self.pacer.lateness
        lateness.observe(0.0001, frames=3)
        lateness.observe(0.003)
        lateness.observe(10.0)
        m = self.scrape()
        name = "gatekeeper_outbound_frame_lateness_seconds"
        first = repr(float(lateness.bounds[0]))
        self.assertEqual(m[(f"{name}_bucket", (("le", first),))], 3)
        self.assertEqual(m[(f"{name}_bucket", (("le", "+Inf"),))], 5)
        self.assertEqual(m[(f"{name}_count", ())], 5)
        self.assertAlmostEqual(m[(f"{name}_sum", ())], 10.0033)
        buckets = [v for (n, _), v in m.items() if n == f"{name}_bucket"]
        self.assertEqual(buckets, sorted(buckets))

    def test_ami_and_listener_down(self) -> None:
        """A lost AMI login and a closed listener read 0."""
        self.dialer.connected = False
        self.listener.port = None
        self.listener.factory.refused_connections = 4
        m = self.scrape()
        self.assertEqual(m[("gatekeeper_ami_connected", ())], 0)
        self.assertEqual(m[("gatekeeper_audiosocket_listening", ())], 0)
        self.assertEqual(m[("gatekeeper_audiosocket_refused_connections_total", ())], 4)

    def test_door_results(self) -> None:
        """Results through the counting opener show by result, failures alone."""
        opened = CountingDoorOpener(FakeOpener("opened"), self.doors)
        failing = CountingDoorOpener(FakeOpener("failed"), self.doors)
        verifyObject(IDoorOpener, opened)
        self.assertEqual(opened.name, "http")
        for door in (opened, failing, failing):
            result = self.successResultOf(door.open(new_uuid(), "101", None))
            self.assertIsInstance(result, DoorResult)
        m = self.scrape()
        self.assertEqual(
            m[("gatekeeper_door_results_total", (("result", "opened"),))], 1
        )
        self.assertEqual(
            m[("gatekeeper_door_results_total", (("result", "failed"),))], 2
        )
        self.assertEqual(m[("gatekeeper_door_open_failures_total", ())], 2)
