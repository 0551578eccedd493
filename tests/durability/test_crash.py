"""
Crash durability: ``kill -9`` gatekeeper in the middle of a load of visits.

The flow writes a visit's row (and SQLite commits it, WAL) before the visitor
hears the first frame of its outcome prompt, so every visitor who had started
hearing ``access_granted``/``access_denied``/... when the server died must
find its row in the database afterwards.  Then a new server on the same file
must open it (migrations, WAL recovery) and serve a visit at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.durability.support import (
    Site,
    integrity_check,
    presses,
    rows,
    sleep,
    told,
    visitor,
)

VISITS = 30
SPACING = 0.1  # seconds between two visitors arriving


class CrashTests(TestCase):
    """A running gatekeeper killed with SIGKILL, then restarted."""

    timeout = 60

    async def test_kill_9_loses_no_told_visit(self) -> None:
        """Every visit told its outcome before the kill has its row; the
        restarted server serves a new visit at once."""
        started = time.monotonic()
        site = Site(reactor, Path(self.mktemp()), apartments=VISITS + 1)
        self.addCleanup(site.cleanup)
        for i in range(1, VISITS + 1):
            site.phones[f"{i}1"] = presses("1" if i % 2 else "2")
        pbx, server = await site.start()
        self.addCleanup(site.stop)

        channels = []
        for i in range(1, VISITS + 1):
            channels.append(pbx.visit(visitor(i, number=i)))
            await sleep(reactor, SPACING)
        # Kill once about a third have been told and the rest are in flight.
        deadline = reactor.seconds() + 20
        while sum(map(told, channels)) < VISITS // 3:
            self.assertLess(reactor.seconds(), deadline, "no visit got an outcome")
            await sleep(reactor, 0.02)
        await server.kill()
        # Let whatever the kernel still held for the legs arrive, then stop.
        await sleep(reactor, 0.3)
        await site.stop()
        told_uuids = [c.call_uuid for c in channels if told(c)]
        unfinished = VISITS - len(told_uuids)

        # Restart on the same database: opens cleanly, serves a visit at once.
        site.phones[f"{VISITS + 1}1"] = presses("1")
        restart = time.monotonic()
        pbx, server = await site.start()
        ready = time.monotonic() - restart
        channel = pbx.visit(visitor(VISITS + 1, number=VISITS + 1))
        await channel.when_gone()
        served = time.monotonic() - restart
        found = {}
        for _ in range(40):
            found = rows(site.database, [*told_uuids, channel.call_uuid])
            if channel.call_uuid in found:
                break
            await sleep(reactor, 0.05)
        everything = rows(site.database)
        await site.stop()
        integrity = integrity_check(site.database)

        lost = [u for u in told_uuids if u not in found]
        print(
            f"\ncrash: {VISITS} visits, {len(told_uuids)} told their outcome "
            f"before kill -9 ({unfinished} in flight); rows found for told "
            f"visits: {len(told_uuids) - len(lost)}; lost: {len(lost)} (rows in the "
            f"database: {len(everything)}, integrity {integrity}); restart "
            f"ready in {ready:.2f} s, new visit served in {served:.2f} s "
            f"({found.get(channel.call_uuid)}); total {time.monotonic() - started:.1f} s"
        )
        self.assertEqual(lost, [])
        self.assertEqual(integrity, "ok")
        self.assertGreater(unfinished, 0, "the kill came after every visit ended")
        self.assertIn("access_granted", channel.heard_names())
        self.assertEqual(found.get(channel.call_uuid), "allowed")
