"""``/healthz``: which part failed, with no login and a bounded cost."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.web.service import make_root

from .support import FakeDialer, FakeListener, Request, make_auth, render


class FakeAccessLog:
    """writable() as the test says; counts the writes."""

    def __init__(self, writable: bool = True) -> None:
        self.answer = writable
        self.checks = 0
        self.pending: Deferred[bool] | None = None
        self.hold = False

    def writable(self, timeout: float = 5.0) -> Deferred[bool]:
        self.checks += 1
        if self.hold:
            self.pending = Deferred()
            return self.pending
        return succeed(self.answer)


class HealthTests(SynchronousTestCase):
    """Each part's failure shows by name; all well is 200."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = FakeListener()
        self.dialer: Any = FakeDialer()
        self.log = FakeAccessLog()

    def check(self) -> Request:
        root = make_root(
            make_auth(self.clock),
            self.clock,
            registry=None,
            access_log=self.log,
            listener=self.listener,
            dialer=self.dialer,
            recordings=".",
        )
        return self.successResultOf(render(root, Request("/healthz")))

    def test_healthy(self) -> None:
        """All three parts well: 200, status ok, no login needed."""
        request = self.check()
        self.assertEqual(request.code, 200)
        self.assertEqual(
            request.json(),
            {
                "status": "ok",
                "failed": [],
                "checks": {
                    "listener": {"ok": True, "detail": "listening"},
                    "ami": {"ok": True, "detail": "connected"},
                    "database": {"ok": True, "detail": "writable"},
                },
            },
        )

    def test_listener_down(self) -> None:
        """No port held: 503 naming the listener."""
        self.listener.port = None
        request = self.check()
        self.assertEqual((request.code, request.json()["failed"]), (503, ["listener"]))

    def test_ami_down(self) -> None:
        """AMI configured but not logged in: 503 naming ami."""
        self.dialer.connected = False
        request = self.check()
        self.assertEqual((request.code, request.json()["failed"]), (503, ["ami"]))

    def test_ami_off_is_healthy(self) -> None:
        """No AMI login configured is a choice, not a failure."""
        self.dialer = None
        request = self.check()
        self.assertEqual(request.code, 200)
        self.assertEqual(
            request.json()["checks"]["ami"]["detail"], "off (no [ami] login)"
        )

    def test_database_not_writable(self) -> None:
        """A database that refuses the heartbeat write: 503 naming it."""
        self.log.answer = False
        request = self.check()
        self.assertEqual((request.code, request.json()["failed"]), (503, ["database"]))

    def test_everything_down(self) -> None:
        """Every failed part is listed, sorted."""
        self.listener.running = False
        self.dialer.connected = False
        self.log.answer = False
        request = self.check()
        self.assertEqual(request.json()["failed"], ["ami", "database", "listener"])
        self.assertEqual(request.json()["status"], "fail")

    def test_database_write_shared(self) -> None:
        """Probes at once share one write; a result is reused for 5 s."""
        self.log.hold = True
        root = make_root(
            make_auth(self.clock),
            self.clock,
            registry=None,
            access_log=self.log,
            listener=self.listener,
            dialer=self.dialer,
            recordings=".",
        )
        first = render(root, Request("/healthz"))
        second = render(root, Request("/healthz"))
        self.assertNoResult(first)
        assert self.log.pending is not None
        self.log.pending.callback(True)
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertEqual(self.successResultOf(second).code, 200)
        self.log.hold = False
        self.clock.advance(4)
        render(root, Request("/healthz"))
        self.assertEqual(self.log.checks, 1)
        self.clock.advance(2)
        render(root, Request("/healthz"))
        self.assertEqual(self.log.checks, 2)
