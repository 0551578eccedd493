"""
Tests for :mod:`gatekeeper.accesslog`.

The SQLite tests run a real adbapi pool on a temporary file: durability and
migrations are properties of the file, which a fake could not show.  The same
contract runs against PostgreSQL when ``GATEKEEPER_TEST_POSTGRES_DSN`` names a
reachable server, each test in a schema of its own.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import threading
import uuid
from typing import Any

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from gatekeeper.accesslog import (
    MAX_QUERY_LIMIT,
    MIGRATIONS,
    SCHEMA_VERSION,
    AccessLog,
    AccessLogNotReadyError,
    SchemaTooNewError,
    VisitRecord,
)
from gatekeeper.session.uuids import InvalidCallUUID

T0 = 1_800_000_000.0
UUID_A = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"


def visit(n: int = 0, **changes: Any) -> VisitRecord:
    """A plausible finished visit; ``n`` varies its UUID and start time."""
    values: dict[str, Any] = {
        "call_uuid": str(uuid.UUID(int=0xABC000 + n)),
        "outcome": "allowed",
        "phases": {"started": T0 + n, "apartment": T0 + n + 4, "ended": T0 + n + 30},
        "apartment": "101",
        "gate": "north",
        "extensions_tried": ("1011", "1012"),
        "recording_path": f"var/recordings/{n}.wav",
        "door_result": "opened",
        "door_detail": "HTTP 200",
    }
    values.update(changes)
    return VisitRecord(**values)


class VisitRecordTests(SynchronousTestCase):
    """The record type refuses what the database should never hold."""

    def test_uuid_canonicalised(self) -> None:
        """An uppercase UUID is stored in the one lowercase form."""
        record = visit(call_uuid=UUID_A.upper())
        self.assertEqual(record.call_uuid, UUID_A)

    def test_uuid_invalid(self) -> None:
        """A UUID Asterisk would refuse is refused here too."""
        self.assertRaises(InvalidCallUUID, visit, call_uuid="not-a-uuid")

    def test_started_required(self) -> None:
        """Visits are ordered and purged by start time, so it is required."""
        self.assertRaises(ValueError, visit, phases={"ended": T0})

    def test_phase_time_finite(self) -> None:
        """A NaN timestamp would break ordering; it is refused."""
        self.assertRaises(ValueError, visit, phases={"started": float("nan")})

    def test_phase_name_slug(self) -> None:
        """Phase names are slugs, so they stay usable as JSON keys and labels."""
        self.assertRaises(ValueError, visit, phases={"started": T0, "Ended!": T0})

    def test_outcome_slug(self) -> None:
        """A free-text outcome is refused; outcomes are filterable slugs."""
        self.assertRaises(ValueError, visit, outcome="Door opened")

    def test_phases_read_only(self) -> None:
        """A record handed to the database thread cannot be changed under it."""
        phases = {"started": T0}
        record = visit(phases=phases)
        phases["ended"] = T0 + 1
        self.assertNotIn("ended", record.phases)
        self.assertRaises(TypeError, operator.setitem, record.phases, "ended", 1.0)

    def test_extensions_not_text(self) -> None:
        """A bare string would be read as one extension per character."""
        self.assertRaises(TypeError, visit, extensions_tried="1011")


class AccessLogContract:
    """What every backend must do; mixed into a backend's TestCase."""

    clock: Clock

    def make_log(self) -> AccessLog:
        raise NotImplementedError

    def started_log(self) -> Deferred[AccessLog]:
        log = self.make_log()
        log.startService()
        self.addCleanup(log.stopService)  # type: ignore[attr-defined]
        return log.when_ready().addCallback(lambda _: log)

    @inlineCallbacks
    def test_round_trip(self) -> Any:
        """A recorded visit reads back equal, field for field."""
        log = yield self.started_log()
        record = visit(1, apartment=None, recording_path=None, extensions_tried=())
        yield log.record(record)
        got = yield log.get(record.call_uuid)
        self.assertEqual(got, record)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_get_unknown(self) -> Any:
        """An unknown UUID reads as None, not an error."""
        log = yield self.started_log()
        got = yield log.get(UUID_A)
        self.assertIsNone(got)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_record_again_updates(self) -> Any:
        """Recording a UUID twice leaves one row holding the second record."""
        log = yield self.started_log()
        first = visit(2, outcome="no_answer", door_result="not_attempted")
        second = evolve(first, outcome="allowed", door_result="failed")
        yield log.record(first)
        yield log.record(second)
        rows = yield log.query()
        self.assertEqual(rows, [second])  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_query_filters(self) -> Any:
        """Apartment, outcome and time filters each select the right visits."""
        log = yield self.started_log()
        records = [
            visit(0, apartment="101", outcome="allowed"),
            visit(10, apartment="102", outcome="denied"),
            visit(20, apartment="101", outcome="denied"),
            visit(30, apartment="201", outcome="no_answer"),
        ]
        yield gatherResults([log.record(r) for r in records])
        by_apartment = yield log.query(apartment="101")
        by_outcome = yield log.query(outcome="denied")
        by_time = yield log.query(since=T0 + 10, until=T0 + 30)
        both = yield log.query(apartment="101", outcome="denied")
        check = self.assertEqual  # type: ignore[attr-defined]
        check(by_apartment, [records[2], records[0]])
        check(by_outcome, [records[2], records[1]])
        check(by_time, [records[2], records[1]])
        check(both, [records[2]])

    @inlineCallbacks
    def test_query_pages(self) -> Any:
        """limit and offset walk the history newest first without overlap."""
        log = yield self.started_log()
        records = [visit(n) for n in range(7)]
        yield gatherResults([log.record(r) for r in records])
        pages = []
        for offset in (0, 3, 6, 9):
            page = yield log.query(limit=3, offset=offset)
            pages.append([r.started - T0 for r in page])
        self.assertEqual(  # type: ignore[attr-defined]
            pages, [[6, 5, 4], [3, 2, 1], [0], []]
        )

    @inlineCallbacks
    def test_purge_counts(self) -> Any:
        """Purging removes exactly the visits started before the cutoff."""
        log = yield self.started_log()
        yield gatherResults([log.record(visit(n * 100)) for n in range(5)])
        self.clock.advance(T0 + 1000 - self.clock.seconds())
        purged = yield log.purge_older_than(750)  # cutoff T0 + 250: 0, 100, 200
        left = yield log.query()
        self.assertEqual(purged, 3)  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            [r.started - T0 for r in left], [400, 300]
        )

    @inlineCallbacks
    def test_writable(self) -> Any:
        """A running log reports itself writable; a stopped one does not."""
        log = yield self.started_log()
        ok = yield log.writable()
        yield log.stopService()
        after = yield log.writable()
        self.assertEqual((ok, after), (True, False))  # type: ignore[attr-defined]


class SQLiteAccessLogTests(AccessLogContract, TestCase):
    """The default backend, on a real file."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.path = os.path.join(self.mktemp(), "var", "gatekeeper.sqlite3")

    def make_log(self) -> AccessLog:
        return AccessLog.sqlite(self.path, clock=self.clock)

    def fresh(self) -> sqlite3.Connection:
        """A connection of our own, as another process would open."""
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        return connection

    @inlineCallbacks
    def test_durable_when_fired(self) -> Any:
        """When record() fires, another connection already sees the row."""
        log = yield self.started_log()
        record = visit(3)
        seen = []
        yield log.record(record).addCallback(
            lambda _: seen.extend(
                self.fresh().execute("SELECT call_uuid, outcome, phases FROM visits")
            )
        )
        self.assertEqual(
            seen, [(record.call_uuid, "allowed", json.dumps(dict(record.phases)))]
        )

    @inlineCallbacks
    def test_wal_and_full_sync(self) -> Any:
        """The file is in WAL mode and the pool's connection syncs FULL."""
        log = yield self.started_log()
        pool = log._pool
        assert pool is not None
        sync = yield pool.runQuery("PRAGMA synchronous")
        mode = self.fresh().execute("PRAGMA journal_mode").fetchone()
        self.assertEqual((mode[0], sync[0][0]), ("wal", 2))

    @inlineCallbacks
    def test_fresh_database_migrated(self) -> Any:
        """A new file gets every migration, each noted in schema_version."""
        yield self.started_log()
        versions = self.fresh().execute(
            "SELECT version, applied_at FROM schema_version ORDER BY version"
        )
        self.assertEqual(list(versions), [(v, T0) for v in range(1, 3)])
        self.assertEqual(SCHEMA_VERSION, 2)

    @inlineCallbacks
    def test_old_schema_upgraded(self) -> Any:
        """A version-1 file keeps its visits and gains the gate column."""
        os.makedirs(os.path.dirname(self.path))
        old = sqlite3.connect(self.path)
        old.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
        for statement in MIGRATIONS[0]:
            old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (1, 1.0)")
        old.execute(
            "INSERT INTO visits VALUES (?, '102', '[\"1021\"]', ?, ?, 'denied',"
            " NULL, 'not_attempted', '')",
            (UUID_A, json.dumps({"started": T0}), T0),
        )
        old.commit()
        old.close()
        log = yield self.started_log()
        got = yield log.get(UUID_A)
        self.assertEqual(
            got,
            VisitRecord(
                call_uuid=UUID_A,
                outcome="denied",
                phases={"started": T0},
                apartment="102",
                extensions_tried=("1021",),
                door_result="not_attempted",
            ),
        )
        versions = self.fresh().execute("SELECT version FROM schema_version")
        self.assertEqual(sorted(v for (v,) in versions), [1, 2])

    @inlineCallbacks
    def test_newer_schema_refused(self) -> Any:
        """A file from a newer gatekeeper is refused, loudly, and left as is."""
        os.makedirs(os.path.dirname(self.path))
        newer = sqlite3.connect(self.path)
        newer.execute("CREATE TABLE schema_version (version INTEGER, applied_at REAL)")
        newer.execute("INSERT INTO schema_version VALUES (99, 1.0)")
        newer.commit()
        newer.close()
        log = self.make_log()
        with capturedLogs() as events:
            log.startService()
            self.addCleanup(log.stopService)
            yield self.assertFailure(log.when_ready(), AccessLogNotReadyError)
        self.flushLoggedErrors(SchemaTooNewError)
        messages = [e["reason"] for e in events if "reason" in e]
        self.assertEqual(len(messages), 1)
        self.assertIn("schema version 99", messages[0])
        self.assertIn("knows versions up to 2", messages[0])
        yield self.assertFailure(log.record(visit()), AccessLogNotReadyError)
        healthy = yield log.writable()
        self.assertFalse(healthy)
        tables = self.fresh().execute("SELECT name FROM sqlite_master")
        self.assertEqual([t for (t,) in tables], ["schema_version"])

    @inlineCallbacks
    def test_survives_restart(self) -> Any:
        """Visits recorded before a restart are there after it."""
        first = self.make_log()
        first.startService()
        yield first.record(visit(5))
        yield first.stopService()
        log = yield self.started_log()
        got = yield log.query()
        self.assertEqual(got, [visit(5)])

    @inlineCallbacks
    def test_stop_waits_for_writes(self) -> Any:
        """stopService fires only after a record() in flight has committed."""
        log = self.make_log()
        log.startService()
        written = log.record(visit(6))
        yield log.stopService()
        self.assertIsNone(self.successResultOf(written))
        rows = self.fresh().execute("SELECT COUNT(*) FROM visits").fetchone()
        self.assertEqual(rows[0], 1)

    def test_not_started(self) -> None:
        """Before startService, calls fail at once with a clear reason."""
        log = self.make_log()
        failure = self.failureResultOf(log.record(visit()), AccessLogNotReadyError)
        self.assertIn("not running", failure.getErrorMessage())

    @inlineCallbacks
    def test_retention_service(self) -> Any:
        """The retention timer purges at start and then every interval."""
        log = yield self.started_log()
        yield log.record(visit(0))
        timer = log.retention_service(max_age=100, interval=60)
        with capturedLogs() as events:
            timer.startService()  # purges now: the visit is only just old
            self.addCleanup(timer.stopService)
            # One pool thread: a query queued after a purge ends after it.
            yield log.query()
            self.clock.advance(60)  # T0 + 60: not yet
            yield log.query()
            self.clock.advance(60)  # T0 + 120: older than 100 s
            remaining = yield log.query()
        self.assertEqual(remaining, [])
        self.assertEqual([e["count"] for e in events if "count" in e], [0, 0, 1])

    @inlineCallbacks
    def test_memory_database(self) -> Any:
        """``:memory:`` keeps its data across calls (one pooled connection)."""
        log = AccessLog.sqlite(":memory:", clock=self.clock)
        log.startService()
        self.addCleanup(log.stopService)
        yield log.record(visit(7))
        got = yield log.get(visit(7).call_uuid)
        self.assertEqual(got, visit(7))

    @inlineCallbacks
    def test_writable_times_out(self) -> Any:
        """A database thread stuck past the timeout reads as not writable."""
        log = yield self.started_log()
        pool = log._pool
        assert pool is not None
        release = threading.Event()
        self.addCleanup(release.set)
        stuck = pool.runInteraction(lambda txn: release.wait(10))
        with capturedLogs():
            health = log.writable(timeout=2.0)
            self.assertNoResult(health)
            self.clock.advance(2.0)
            self.assertFalse(self.successResultOf(health))
        release.set()
        yield stuck


class QueryBoundsTests(SynchronousTestCase):
    """query() refuses bad bounds before touching the database."""

    def setUp(self) -> None:
        self.log = AccessLog.sqlite(":memory:", clock=Clock())

    def test_limit_too_large(self) -> None:
        """A page larger than MAX_QUERY_LIMIT is refused."""
        self.assertRaises(ValueError, self.log.query, limit=MAX_QUERY_LIMIT + 1)

    def test_limit_zero(self) -> None:
        """An empty page is a caller's mistake, not a query."""
        self.assertRaises(ValueError, self.log.query, limit=0)

    def test_offset_negative(self) -> None:
        """A negative offset is refused."""
        self.assertRaises(ValueError, self.log.query, offset=-1)

    def test_limit_not_int(self) -> None:
        """A limit given as text (an unparsed query string) is refused."""
        self.assertRaises(ValueError, self.log.query, limit="10")

    def test_since_after_until(self) -> None:
        """An inverted time window is refused rather than silently empty."""
        self.assertRaises(ValueError, self.log.query, since=T0 + 1, until=T0)

    def test_since_not_finite(self) -> None:
        """An infinite bound is refused."""
        self.assertRaises(ValueError, self.log.query, since=float("inf"))

    def test_outcome_not_slug(self) -> None:
        """An outcome filter must look like an outcome."""
        self.assertRaises(ValueError, self.log.query, outcome="x' OR 1=1 --")

    def test_purge_needs_positive_age(self) -> None:
        """Purging everything by passing 0 or a negative age is refused."""
        self.assertRaises(ValueError, self.log.purge_older_than, 0)


class PostgresAccessLogTests(AccessLogContract, TestCase):
    """
    The same contract on PostgreSQL, in a throwaway schema.

    Runs when ``GATEKEEPER_TEST_POSTGRES_DSN`` is set; a set DSN whose server
    cannot be reached fails rather than skips, so CI cannot pass by accident.
    """

    def setUp(self) -> Deferred[None]:
        self.clock = Clock()
        self.clock.advance(T0)
        dsn = os.environ.get("GATEKEEPER_TEST_POSTGRES_DSN")
        if not dsn:
            raise SkipTest(
                "PostgreSQL tests skipped: GATEKEEPER_TEST_POSTGRES_DSN is not set"
            )
        try:
            import psycopg
            from psycopg.conninfo import make_conninfo
        except ImportError:
            raise SkipTest(
                "PostgreSQL tests skipped: psycopg is not installed"
                " (pip install 'gatekeeper[postgres]')"
            ) from None
        self.schema = f"gk_test_{uuid.uuid4().hex[:12]}"
        self.dsn = make_conninfo(dsn, options=f"-c search_path={self.schema}")

        def create() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")

        def drop() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")

        from twisted.internet.threads import deferToThread

        def created(_: None) -> None:
            self.addCleanup(deferToThread, drop)

        return deferToThread(create).addCallback(created)

    def make_log(self) -> AccessLog:
        return AccessLog.postgres(self.dsn, clock=self.clock, reactor=reactor)

    @inlineCallbacks
    def test_migrated(self) -> Any:
        """The schema reaches the current version, as on SQLite."""
        log = yield self.started_log()
        pool = log._pool
        assert pool is not None
        rows = yield pool.runQuery("SELECT version FROM schema_version")
        self.assertEqual(sorted(v for (v,) in rows), [1, 2])

    @inlineCallbacks
    def test_durable_when_fired(self) -> Any:
        """When record() fires, a separate connection already sees the row."""
        import psycopg

        log = yield self.started_log()
        record = visit(8)
        seen: list[Any] = []

        def look(_: None) -> None:
            with psycopg.connect(self.dsn) as conn:
                seen.extend(conn.execute("SELECT call_uuid, outcome FROM visits"))

        yield log.record(record).addCallback(look)
        self.assertEqual(seen, [(record.call_uuid, "allowed")])
