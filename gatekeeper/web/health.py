"""
``/healthz``: is this gatekeeper able to take calls right now?

Three checks, each named in the JSON body so the alert says which part
failed: the AudioSocket **listener** holds its port, the **ami** login is up
(when one is configured: with AMI off visitors are still answered, so off is
healthy), and the **database** takes a write.  200 when all pass, 503
otherwise.

This is the one resource without authentication (load balancers and
systemd-style probes call it), so it says nothing personal and bounds its
cost: the database write is shared by concurrent probes and its result kept
for a few seconds.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from gatekeeper.web._json import respond_later

__all__ = ["HealthResource"]


class HealthResource(Resource):
    """See the module docstring."""

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        *,
        listener: Any,
        dialer: Any,
        access_log: Any,
        cache_seconds: float = 5.0,
        write_timeout: float = 3.0,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.listener = listener
        self.dialer = dialer
        self.access_log = access_log
        self.cache_seconds = cache_seconds
        self.write_timeout = write_timeout
        self._db: tuple[float, bool] | None = None
        self._db_waiters: list[Deferred[bool]] | None = None

    def _database_writable(self) -> Deferred[bool]:
        """One write for every probe within ``cache_seconds``."""
        now = self.clock.seconds()
        if self._db is not None and now - self._db[0] < self.cache_seconds:
            return succeed(self._db[1])
        mine: Deferred[bool] = Deferred()
        if self._db_waiters is not None:
            self._db_waiters.append(mine)
            return mine
        self._db_waiters = [mine]

        def done(ok: object) -> None:
            result = ok is True
            self._db = (self.clock.seconds(), result)
            waiters, self._db_waiters = self._db_waiters or [], None
            for waiter in waiters:
                waiter.callback(result)

        self.access_log.writable(self.write_timeout).addBoth(done)
        return mine

    def check(self) -> Deferred[tuple[int, dict[str, object]]]:
        """The status code and body; never fails."""
        listener = self.listener
        listening = (
            listener is not None
            and bool(getattr(listener, "running", False))
            and getattr(listener, "port", None) is not None
        )
        checks: dict[str, dict[str, object]] = {
            "listener": {
                "ok": listening,
                "detail": "listening" if listening else "not listening",
            }
        }
        if self.dialer is None:
            checks["ami"] = {"ok": True, "detail": "off (no [ami] login)"}
        else:
            up = bool(self.dialer.connected)
            checks["ami"] = {"ok": up, "detail": "connected" if up else "disconnected"}

        def finish(writable: bool) -> tuple[int, dict[str, object]]:
            checks["database"] = {
                "ok": writable,
                "detail": "writable" if writable else "not writable",
            }
            failed = sorted(name for name, c in checks.items() if not c["ok"])
            body: dict[str, object] = {
                "status": "fail" if failed else "ok",
                "failed": failed,
                "checks": checks,
            }
            return (503 if failed else 200), body

        if self.access_log is None:
            return succeed(finish(False))
        return self._database_writable().addCallback(finish)

    def render_GET(self, request: Any) -> object:
        return respond_later(request, self.check())
