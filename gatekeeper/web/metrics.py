"""
``/metrics``: the server's counters in Prometheus' text format.

The registry, listener, dialer and pacer already count what happens; this
module does not count again.  :class:`GatekeeperCollector` is a
``prometheus_client`` custom collector that reads those counters when
Prometheus scrapes, so nothing on the call path pays for metrics.  The one
figure nobody else keeps, door results, comes from
:class:`CountingDoorOpener`, a wrapper around the configured opener.

Every label value that can occur is published from the start (at zero), so
``rate()`` and alerts work before the first such event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import DoorResult
from gatekeeper.flow.machine import Phase
from gatekeeper.session.callpair import Outcome, PairState, Role
from gatekeeper.session.registry import REFUSAL_REASONS, SessionRegistry

__all__ = [
    "CountingDoorOpener",
    "DoorCounts",
    "GatekeeperCollector",
    "MetricsResource",
    "make_registry",
]


class DoorCounts:
    """Door results by status (``opened``, ``failed``, ``not_configured``)."""

    def __init__(self) -> None:
        self.results: Counter[str] = Counter()

    @property
    def failures(self) -> int:
        return self.results["failed"]


@implementer(IDoorOpener)
class CountingDoorOpener:
    """The configured door opener, its results counted for ``/metrics``."""

    def __init__(self, opener: IDoorOpener, counts: DoorCounts) -> None:
        self.opener = opener
        self.counts = counts

    @property
    def name(self) -> str:
        return self.opener.name  # type: ignore[no-any-return]

    def open(self, call_uuid: str, apartment: str, context: Any) -> Deferred[Any]:
        def count(result: Any) -> Any:
            if isinstance(result, DoorResult):
                self.counts.results[result.status] += 1
            return result

        d: Deferred[Any] = self.opener.open(call_uuid, apartment, context)
        return d.addCallback(count)

    def __getattr__(self, name: str) -> Any:
        # Anything else a flow or a gate opener asks of the door is the door's.
        return getattr(self.opener, name)


class GatekeeperCollector:
    """
    Reads gatekeeper's own counters at scrape time.

    Each source may be None (AMI off, the echo app, no door counting); its
    metrics are then left out, except ``gatekeeper_ami_connected`` which
    reads 0 with ``gatekeeper_ami_enabled`` 0.
    """

    def __init__(
        self,
        registry: SessionRegistry | None = None,
        listener: Any = None,
        dialer: Any = None,
        pacer: Any = None,
        doors: DoorCounts | None = None,
        ami_enabled: bool | None = None,
    ) -> None:
        self.registry = registry
        self.listener = listener
        self.dialer = dialer
        self.pacer = pacer
        self.doors = doors
        self.ami_enabled = dialer is not None if ami_enabled is None else ami_enabled

    def describe(self) -> list[Metric]:
        # Tell prometheus_client not to call collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        if self.registry is not None:
            yield from self._calls(self.registry)
        if self.listener is not None:
            yield from self._listener(self.listener)
        yield from self._ami()
        if self.pacer is not None:
            yield self._lateness(self.pacer.lateness)
        if self.doors is not None:
            yield from self._doors(self.doors)

    def _calls(self, registry: SessionRegistry) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "gatekeeper_active_calls",
            "Live call pairs, by the visit flow's phase and the pair's state.",
            labels=["phase", "state"],
        )
        by_phase: Counter[tuple[str, str]] = Counter()
        for phase in Phase:
            if phase is not Phase.DONE:
                by_phase[(phase.value, PairState.VISITOR.value)] += 0
        for pair in registry.live_pairs():
            by_phase[(pair.context.phase, pair.state.value)] += 1
        for (phase, state), n in sorted(by_phase.items()):
            active.add_metric([phase, state], n)
        yield active

        counters = registry.counters
        started = CounterMetricFamily(
            "gatekeeper_calls_started",
            "Call pairs started (a visitor's first connection).",
        )
        started.add_metric([], counters.pairs_started)
        yield started

        ended = CounterMetricFamily(
            "gatekeeper_calls_ended",
            "Call pairs ended, by outcome.",
            labels=["outcome"],
        )
        outcomes = Counter({o.value: 0 for o in Outcome})
        outcomes.update(counters.pairs_ended)
        for outcome, n in sorted(outcomes.items()):
            ended.add_metric([outcome], n)
        yield ended

        refusals = CounterMetricFamily(
            "gatekeeper_refusals",
            "AudioSocket connections the registry refused, by reason.",
            labels=["reason"],
        )
        reasons = Counter(dict.fromkeys(REFUSAL_REASONS, 0))
        reasons.update(counters.refusals)
        for reason, n in sorted(reasons.items()):
            refusals.add_metric([reason], n)
        yield refusals

        drops = CounterMetricFamily(
            "gatekeeper_leg_drops",
            "Legs whose connection dropped without a hang-up, by role, pair "
            "state and flow phase at that moment.",
            labels=["role", "state", "phase"],
        )
        for (role, state, phase), n in sorted(counters.drops.items()):
            drops.add_metric([role, state, phase], n)
        yield drops

        back = CounterMetricFamily(
            "gatekeeper_reattachments",
            "Dropped legs that came back within the grace period, by role.",
            labels=["role"],
        )
        roles = Counter({r.value: 0 for r in Role})
        roles.update(counters.reattachments)
        for role, n in sorted(roles.items()):
            back.add_metric([role], n)
        yield back

        for name, value, text in (
            (
                "gatekeeper_residents_expected",
                counters.residents_expected,
                "Resident legs the dialer announced (one per ring).",
            ),
            (
                "gatekeeper_residents_attached",
                counters.residents_attached,
                "Resident legs that arrived.",
            ),
            (
                "gatekeeper_ambiguous_binds",
                counters.ambiguous_binds,
                "Connections whose role the registry had to guess.",
            ),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], value)
            yield family

    def _listener(self, listener: Any) -> Iterator[Metric]:
        factory = getattr(listener, "factory", None)
        up = GaugeMetricFamily(
            "gatekeeper_audiosocket_listening",
            "1 while the AudioSocket listener holds its port.",
        )
        up.add_metric([], 1 if getattr(listener, "port", None) is not None else 0)
        yield up
        if factory is None:
            return
        open_ = GaugeMetricFamily(
            "gatekeeper_audiosocket_connections", "Open AudioSocket connections."
        )
        open_.add_metric([], len(factory.connections))
        yield open_
        refused = CounterMetricFamily(
            "gatekeeper_audiosocket_refused_connections",
            "Connections refused before any frame (allowlist, connection limit).",
        )
        refused.add_metric([], factory.refused_connections)
        yield refused
        errors = CounterMetricFamily(
            "gatekeeper_audiosocket_protocol_errors",
            "Connections closed for breaking the AudioSocket wire format.",
        )
        errors.add_metric([], factory.protocol_errors)
        yield errors

    def _ami(self) -> Iterator[Metric]:
        enabled = GaugeMetricFamily(
            "gatekeeper_ami_enabled", "1 if an AMI login is configured."
        )
        enabled.add_metric([], 1 if self.ami_enabled else 0)
        yield enabled
        connected = GaugeMetricFamily(
            "gatekeeper_ami_connected", "1 while logged in to Asterisk's manager."
        )
        dialer = self.dialer
        connected.add_metric([], 1 if dialer is not None and dialer.connected else 0)
        yield connected
        if dialer is not None:
            reconnects = CounterMetricFamily(
                "gatekeeper_ami_reconnects",
                "Logins to AMI after the first (each one a lost connection).",
            )
            reconnects.add_metric([], dialer.reconnects)
            yield reconnects

    def _lateness(self, histogram: Any) -> Metric:
        family = HistogramMetricFamily(
            "gatekeeper_outbound_frame_lateness_seconds",
            "How late outbound 20 ms frames left, against the shared pacer clock.",
        )
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        buckets.append(("+Inf", histogram.total))
        family.add_metric([], buckets, sum_value=histogram.sum)
        return family

    def _doors(self, doors: DoorCounts) -> Iterator[Metric]:
        results = CounterMetricFamily(
            "gatekeeper_door_results",
            "Attempts to open the door, by result.",
            labels=["result"],
        )
        counts = Counter(dict.fromkeys(DoorResult.STATUSES, 0))
        counts.update(doors.results)
        for result, n in sorted(counts.items()):
            results.add_metric([result], n)
        yield results
        failures = CounterMetricFamily(
            "gatekeeper_door_open_failures",
            "Attempts to open the door that failed (alert on its rate).",
        )
        failures.add_metric([], doors.failures)
        yield failures


def _bound(value: float) -> str:
    return repr(float(value))


def make_registry(collector: GatekeeperCollector) -> CollectorRegistry:
    """A registry of our own (not the global one), with the process metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)  # type: ignore[arg-type]
    ProcessCollector(namespace="", registry=registry)
    return registry


class MetricsResource(Resource):
    """Serves one registry in the text exposition format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self.registry)
