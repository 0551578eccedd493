"""
Durable visit records: who rang which apartment, what happened, and whether
the door opened.

One row per call UUID.  The visit flow calls :meth:`AccessLog.record` once the
outcome is known and tells the visitor only after its Deferred fires, so the
row must already be on disk by then: SQLite runs with ``synchronous=FULL``
and PostgreSQL commits are synchronous by default.  Recording the same UUID
again replaces the row (``INSERT ... ON CONFLICT DO UPDATE``), so a flow that
writes a provisional record and then a final one never leaves two rows.

Storage goes through :class:`twisted.enterprise.adbapi.ConnectionPool`, so
the blocking DB-API driver runs on pool threads and callers get Deferreds.
SQLite (one file under ``var/``) is the default; PostgreSQL, with the same
schema, serves many buildings from one database.  The schema carries a version
table; :data:`MIGRATIONS` are applied in order when the service starts, inside
one transaction that also holds a lock, so two processes starting at once do
not race.  A database written by a newer gatekeeper is refused with
:class:`SchemaTooNewError` rather than half-understood.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from attrs import define, field, frozen
from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from gatekeeper.session.callpair import Outcome
from gatekeeper.session.uuids import canonical_uuid

__all__ = [
    "MAX_QUERY_LIMIT",
    "MIGRATIONS",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "AccessLog",
    "AccessLogError",
    "AccessLogNotReadyError",
    "SchemaTooNewError",
    "VisitRecord",
]

_T = TypeVar("_T")

#: The outcomes the visit flow is expected to record.  The log itself accepts
#: any slug (a new outcome must not lose a visit record); this list is what
#: the web API offers as filters.
OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)

#: Largest page :meth:`AccessLog.query` returns: bounds the work one web
#: request can ask of the database thread.
MAX_QUERY_LIMIT = 500
_MAX_OFFSET = 10_000_000
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,63}")


class AccessLogError(Exception):
    """The access log cannot do what was asked."""


class AccessLogNotReadyError(AccessLogError):
    """The service is not running, or its database could not be opened."""


class SchemaTooNewError(AccessLogError):
    """The database was written by a newer gatekeeper than this one."""


def _check_slug(what: str) -> Callable[[Any, Any, str], None]:
    def check(instance: Any, attribute: Any, value: str) -> None:
        if not isinstance(value, str) or _SLUG.fullmatch(value) is None:
            raise ValueError(f"{what} must be a lowercase slug, not {value!r}")

    return check


def _freeze_phases(phases: Mapping[str, float]) -> Mapping[str, float]:
    """A read-only copy, so a record handed to a thread cannot change."""
    frozen_phases: dict[str, float] = {}
    for name, when in dict(phases).items():
        if not isinstance(name, str) or _SLUG.fullmatch(name) is None:
            raise ValueError(f"phase name must be a lowercase slug, not {name!r}")
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise ValueError(f"phase {name!r} time must be epoch seconds: {when!r}")
        if not math.isfinite(when):
            raise ValueError(f"phase {name!r} time is not finite: {when!r}")
        frozen_phases[name] = float(when)
    if "started" not in frozen_phases:
        raise ValueError("phases must include 'started' (visits are indexed by it)")
    return MappingProxyType(frozen_phases)


def _optional_text(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text or None, not {value!r}")
    return value


def _text_tuple(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError("extensions_tried must be a sequence of extensions, not text")
    result = tuple(values)
    for value in result:
        if not isinstance(value, str) or not value:
            raise ValueError(f"extension must be non-empty text, not {value!r}")
    return result


@frozen
class VisitRecord:
    """
    Everything worth keeping about one visit.

    ``phases`` maps phase names (``started``, ``apartment``, ``recorded``,
    ``ringing``, ``answered``, ``decided``, ``ended``, ...) to epoch seconds;
    only ``started`` is required, since history is ordered and purged by it.
    ``door_result`` is ``not_attempted`` unless an opener ran, then the
    opener's status (``opened``, ``failed``, ``not_configured``), with its
    human-readable ``door_detail``.
    """

    call_uuid: str = field(converter=canonical_uuid)
    outcome: str = field(validator=_check_slug("outcome"))
    phases: Mapping[str, float] = field(converter=_freeze_phases, hash=False)
    apartment: str | None = field(default=None, converter=_optional_text)
    gate: str | None = field(default=None, converter=_optional_text)
    extensions_tried: tuple[str, ...] = field(default=(), converter=_text_tuple)
    recording_path: str | None = field(default=None, converter=_optional_text)
    door_result: str = field(
        default="not_attempted", validator=_check_slug("door_result")
    )
    door_detail: str = ""

    @property
    def started(self) -> float:
        """When the visitor's call arrived."""
        return self.phases["started"]


# -- schema ------------------------------------------------------------------

#: Ordered migrations: ``MIGRATIONS[n]`` takes the schema from version ``n`` to
#: ``n + 1``.  Only ever append; a released migration is never edited.  The
#: SQL is the common subset of SQLite and PostgreSQL.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: visits, and a heartbeat row that writable() rewrites.
    (
        """CREATE TABLE visits (
            call_uuid TEXT PRIMARY KEY,
            apartment TEXT,
            extensions_tried TEXT NOT NULL,
            phases TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            outcome TEXT NOT NULL,
            recording_path TEXT,
            door_result TEXT NOT NULL,
            door_detail TEXT NOT NULL
        )""",
        "CREATE INDEX visits_started_at ON visits (started_at)",
        """CREATE TABLE heartbeat (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checked_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    # 2: a concierge company serves several gates: remember which one rang,
    # and index the history views the web service offers.
    (
        "ALTER TABLE visits ADD COLUMN gate TEXT",
        "CREATE INDEX visits_apartment ON visits (apartment, started_at)",
        "CREATE INDEX visits_outcome ON visits (outcome, started_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""

_COLUMNS = (
    "call_uuid",
    "apartment",
    "gate",
    "extensions_tried",
    "phases",
    "started_at",
    "outcome",
    "recording_path",
    "door_result",
    "door_detail",
)
_UPSERT = (
    f"INSERT INTO visits ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (call_uuid) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM visits"


def _row(visit: VisitRecord) -> tuple[object, ...]:
    return (
        visit.call_uuid,
        visit.apartment,
        visit.gate,
        json.dumps(list(visit.extensions_tried)),
        json.dumps(dict(visit.phases)),
        visit.started,
        visit.outcome,
        visit.recording_path,
        visit.door_result,
        visit.door_detail,
    )


def _visit(row: tuple[Any, ...]) -> VisitRecord:
    (uuid, apartment, gate, tried, phases, _started, outcome, path, door, detail) = row
    return VisitRecord(
        call_uuid=uuid,
        apartment=apartment,
        gate=gate,
        extensions_tried=json.loads(tried),
        phases=json.loads(phases),
        outcome=outcome,
        recording_path=path,
        door_result=door,
        door_detail=detail,
    )


# -- database dialects -------------------------------------------------------


@define
class _Dialect:
    """What differs between SQLite and PostgreSQL, kept in one place."""

    name: str
    where: str  # for log lines and errors; never holds a password
    make_pool: Callable[[], adbapi.ConnectionPool]
    placeholder: str
    lock_sql: str  # run first in the migration transaction
    reactor: Any  # the pool's reactor; None for the global one
    prepare: Callable[[], None] = lambda: None

    def sql(self, statement: str) -> str:
        """Our SQL is written with ``?``; psycopg wants ``%s``."""
        if self.placeholder == "?":
            return statement
        return statement.replace("?", self.placeholder)


def _sqlite_open(connection: Any) -> None:
    # WAL lets the web service read history while a visit is being written.
    # synchronous=FULL, not NORMAL: in WAL mode NORMAL skips the fsync at
    # commit, so a power cut can lose the last visits even though record()
    # had fired and the visitor had been told; FULL fsyncs the WAL on every
    # commit.  A visit is one small row, so the cost is one fsync per visit.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    # Another process (a backup, sqlite3 shell) may hold the lock briefly.
    connection.execute("PRAGMA busy_timeout=5000")


# -- the service -------------------------------------------------------------


class AccessLog(Service):
    """
    The visit history, as a service that migrates its schema when started.

    Calls made while migrations run wait for them; calls made when the
    service is stopped, or whose database was refused, fail with
    :class:`AccessLogNotReadyError` (carrying the reason).
    """

    _log = Logger()

    def __init__(
        self,
        dialect: _Dialect,
        *,
        clock: IReactorTime | None = None,
        retry_lost_connection: bool = False,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self._dialect = dialect
        self._clock: IReactorTime = clock  # type: ignore[assignment]
        self._retry_lost = retry_lost_connection
        self._pool: adbapi.ConnectionPool | None = None
        self._state = "stopped"  # stopped, migrating, ready, broken
        self._broken: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        self._pending: set[Deferred[Any]] = set()

    @classmethod
    def sqlite(
        cls,
        path: str,
        *,
        reactor: IReactorThreads | None = None,
        clock: IReactorTime | None = None,
    ) -> AccessLog:
        """An access log in one SQLite file (``:memory:`` for tests)."""

        def make_pool() -> adbapi.ConnectionPool:
            # One thread: SQLite allows one writer, and one connection keeps
            # a ``:memory:`` database alive between calls.
            kw: dict[str, Any] = {}
            if reactor is not None:
                kw["cp_reactor"] = reactor
            return adbapi.ConnectionPool(
                "sqlite3",
                path,
                check_same_thread=False,
                cp_min=1,
                cp_max=1,
                cp_openfun=_sqlite_open,
                **kw,
            )

        def prepare() -> None:
            parent = os.path.dirname(path)
            if path != ":memory:" and parent:
                os.makedirs(parent, exist_ok=True)

        dialect = _Dialect(
            name="sqlite",
            where=f"SQLite {path}",
            make_pool=make_pool,
            placeholder="?",
            # Takes the write lock now, so a second process starting at the
            # same moment waits instead of migrating alongside.
            lock_sql="BEGIN IMMEDIATE",
            reactor=reactor,
            prepare=prepare,
        )
        return cls(dialect, clock=clock)

    @classmethod
    def postgres(
        cls,
        dsn: str,
        *,
        pool_size: int = 3,
        connect_timeout: int = 10,
        reactor: IReactorThreads | None = None,
        clock: IReactorTime | None = None,
    ) -> AccessLog:
        """An access log in PostgreSQL (``psycopg`` 3, the ``postgres`` extra)."""
        try:
            import psycopg  # noqa: F401
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as e:
            raise AccessLogError(
                "a PostgreSQL DSN is configured but psycopg is not installed "
                "(pip install 'gatekeeper[postgres]')"
            ) from e
        try:
            parts = conninfo_to_dict(dsn)
        except Exception:
            # The message may quote the DSN, password included: keep it out.
            raise AccessLogError("the PostgreSQL DSN cannot be parsed") from None
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        where = "PostgreSQL {}/{}".format(
            parts.get("host", "local socket"), parts.get("dbname", "(default db)")
        )
        connect_kw: dict[str, Any] = {}
        if "connect_timeout" not in parts:
            connect_kw["connect_timeout"] = connect_timeout

        def make_pool() -> adbapi.ConnectionPool:
            kw: dict[str, Any] = dict(connect_kw)
            if reactor is not None:
                kw["cp_reactor"] = reactor
            return adbapi.ConnectionPool(
                "psycopg",
                dsn,
                cp_min=1,
                cp_max=pool_size,
                cp_reconnect=True,
                **kw,
            )

        dialect = _Dialect(
            name="postgres",
            where=where,
            make_pool=make_pool,
            placeholder="%s",
            # Serialises migrations across every gatekeeper sharing the
            # database; released at commit.  The key is arbitrary but fixed.
            lock_sql="SELECT pg_advisory_xact_lock(7285146301)",
            reactor=reactor,
        )
        return cls(dialect, clock=clock, retry_lost_connection=True)

    @property
    def where(self) -> str:
        """Which database this is, safe to show (no password)."""
        return self._dialect.where

    # -- lifecycle --

    def startService(self) -> None:
        super().startService()
        self._state = "migrating"
        self._broken = None
        try:
            self._dialect.prepare()
            self._pool = self._dialect.make_pool()
            self._pool.start()
        except Exception:
            self._became_broken(Failure())
            return
        migration = self._pool.runInteraction(self._migrate, self._clock.seconds())
        self._track(migration.addCallbacks(self._migrated, self._became_broken))

    def stopService(self) -> Deferred[None]:
        """Refuse new calls, let those in flight finish, then close the pool."""
        super().stopService()
        in_flight = DeferredList(list(self._pending))

        def close(_: object) -> None:
            pool, self._pool = self._pool, None
            self._state = "stopped"
            self._fail_waiters(
                Failure(AccessLogNotReadyError("the access log was stopped"))
            )
            if pool is not None:
                pool.close()

        def settled(_: None) -> Deferred[None]:
            # One more turn: the last write's own callers get to see its
            # result before whoever waits on shutdown does.
            reactor = self._dialect.reactor
            if reactor is None:
                from twisted.internet import reactor
            return deferLater(reactor, 0, lambda: None)

        return in_flight.addCallback(close).addCallback(settled)

    def _track(self, d: Deferred[_T]) -> Deferred[_T]:
        """
        Note ``d`` as in flight until our callbacks on it have run.

        A private Deferred stands for it in stopService, so shutdown never
        adds callbacks to (or swallows errors from) the caller's chain.
        """
        finished: Deferred[None] = Deferred()
        self._pending.add(finished)

        def done(result: object) -> object:
            self._pending.discard(finished)
            finished.callback(None)
            return result

        d.addBoth(done)
        return d

    def when_ready(self) -> Deferred[None]:
        """Fires once migrations are applied; fails if the database was refused."""
        if self._state == "ready":
            return succeed(None)
        if self._state == "broken" and self._broken is not None:
            return fail(AccessLogNotReadyError(self._broken.getErrorMessage()))
        if self._state == "stopped":
            return fail(AccessLogNotReadyError("the access log is not running"))
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _migrated(self, applied: list[int]) -> None:
        if self._state != "migrating":
            return
        if applied:
            self._log.info(
                "access log {where} migrated to schema version {version}"
                " (applied {applied})",
                where=self.where,
                version=SCHEMA_VERSION,
                applied=applied,
            )
        else:
            self._log.info(
                "access log {where} ready at schema version {version}",
                where=self.where,
                version=SCHEMA_VERSION,
            )
        self._state = "ready"
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _became_broken(self, failure: Failure) -> None:
        if self._state != "migrating":
            return
        self._state = "broken"
        self._broken = failure
        self._log.failure(
            "access log {where} cannot be used: {reason}",
            failure,
            where=self.where,
            reason=failure.getErrorMessage(),
        )
        self._fail_waiters(Failure(AccessLogNotReadyError(failure.getErrorMessage())))

    def _fail_waiters(self, failure: Failure) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)

    def _migrate(self, txn: adbapi.Transaction, now: float) -> list[int]:
        """Runs on the pool thread, in one transaction."""
        txn.execute(self._dialect.lock_sql)
        txn.execute(_VERSION_TABLE)
        txn.execute("SELECT MAX(version) FROM schema_version")
        current = txn.fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"access log {self.where} is at schema version {current}, but "
                f"this gatekeeper knows versions up to {SCHEMA_VERSION}: "
                f"upgrade gatekeeper, or configure another database"
            )
        applied = []
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                txn.execute(statement)
            txn.execute(
                self._dialect.sql(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
                ),
                (version, now),
            )
            applied.append(version)
        return applied

    # -- running interactions --

    def _run(self, interaction: Callable[..., _T], *args: object) -> Deferred[_T]:
        """Run ``interaction`` once the schema is ready; tracked for shutdown."""

        def go(_: None) -> Deferred[_T]:
            if self._pool is None:
                raise AccessLogNotReadyError("the access log was stopped")
            d = self._pool.runInteraction(interaction, *args)
            if self._retry_lost:
                d.addErrback(retry_once)
            return d

        def retry_once(failure: Failure) -> Deferred[_T]:
            # adbapi reconnects after a lost PostgreSQL connection but fails
            # the call that noticed; the transaction was rolled back, so one
            # more try is safe.
            failure.trap(adbapi.ConnectionLost)
            if self._pool is None:
                return failure  # type: ignore[return-value]
            return self._pool.runInteraction(interaction, *args)

        if not self.running:
            return fail(AccessLogNotReadyError("the access log is not running"))
        return self.when_ready().addCallback(go)

    # -- the API --

    def record(self, visit: VisitRecord) -> Deferred[None]:
        """Write (or rewrite) ``visit``; fires once it is committed to disk."""
        if not isinstance(visit, VisitRecord):
            raise TypeError(f"record() takes a VisitRecord, not {visit!r}")
        sql = self._dialect.sql(_UPSERT)
        row = _row(visit)

        def write(txn: adbapi.Transaction) -> None:
            txn.execute(sql, row)

        def recorded(_: None) -> None:
            self._log.info(
                "visit {call_uuid} recorded: {outcome}, apartment {apartment},"
                " door {door_result}",
                call_uuid=visit.call_uuid,
                outcome=visit.outcome,
                apartment=visit.apartment,
                door_result=visit.door_result,
            )

        def failed(failure: Failure) -> Failure:
            if failure.check(AccessLogNotReadyError):
                self._log.error(
                    "visit {call_uuid} not recorded: {reason}",
                    call_uuid=visit.call_uuid,
                    reason=failure.getErrorMessage(),
                )
                return failure
            self._log.failure(
                "visit {call_uuid} could not be recorded in {where}",
                failure,
                call_uuid=visit.call_uuid,
                where=self.where,
            )
            return failure

        return self._track(self._run(write).addCallbacks(recorded, failed))

    def get(self, call_uuid: str) -> Deferred[VisitRecord | None]:
        """The record of one visit, or None."""
        uuid = canonical_uuid(call_uuid)
        sql = self._dialect.sql(f"{_SELECT} WHERE call_uuid = ?")

        def read(txn: adbapi.Transaction) -> VisitRecord | None:
            txn.execute(sql, (uuid,))
            row = txn.fetchone()
            return None if row is None else _visit(row)

        return self._track(self._run(read))

    def query(
        self,
        apartment: str | None = None,
        since: float | None = None,
        until: float | None = None,
        outcome: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Deferred[list[VisitRecord]]:
        """
        Visits newest first, filtered; ``since`` inclusive, ``until`` exclusive.

        Bad arguments raise :class:`ValueError` at once, before any I/O, so
        the web service can answer 400 without a database round trip.
        """
        clauses: list[str] = []
        args: list[object] = []
        if apartment is not None:
            if not isinstance(apartment, str) or not 0 < len(apartment) <= 64:
                raise ValueError(f"apartment must be short text: {apartment!r}")
            clauses.append("apartment = ?")
            args.append(apartment)
        for name, bound, op in (("since", since, ">="), ("until", until, "<")):
            if bound is None:
                continue
            if (
                isinstance(bound, bool)
                or not isinstance(bound, int | float)
                or not math.isfinite(bound)
            ):
                raise ValueError(f"{name} must be epoch seconds: {bound!r}")
            clauses.append(f"started_at {op} ?")
            args.append(float(bound))
        if since is not None and until is not None and since > until:
            raise ValueError(f"since ({since}) is after until ({until})")
        if outcome is not None:
            _check_slug("outcome")(None, None, outcome)
            clauses.append("outcome = ?")
            args.append(outcome)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ValueError(f"limit must be an integer: {limit!r}")
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_QUERY_LIMIT}, not {limit}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise ValueError(f"offset must be an integer: {offset!r}")
        if not 0 <= offset <= _MAX_OFFSET:
            raise ValueError(f"offset must be 0..{_MAX_OFFSET}, not {offset}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = self._dialect.sql(
            f"{_SELECT}{where} ORDER BY started_at DESC, call_uuid DESC"
            " LIMIT ? OFFSET ?"
        )
        args += [limit, offset]

        def read(txn: adbapi.Transaction) -> list[VisitRecord]:
            txn.execute(sql, tuple(args))
            return [_visit(row) for row in txn.fetchall()]

        return self._track(self._run(read))

    def purge_older_than(self, seconds: float) -> Deferred[int]:
        """Delete visits that started more than ``seconds`` ago; fires the count."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ValueError(
                f"retention must be a positive number of seconds: {seconds!r}"
            )
        cutoff = self._clock.seconds() - seconds
        sql = self._dialect.sql("DELETE FROM visits WHERE started_at < ?")

        def purge(txn: adbapi.Transaction) -> int:
            txn.execute(sql, (cutoff,))
            return max(txn.rowcount, 0)

        def purged(count: int) -> int:
            self._log.info(
                "purged {count} visits older than {seconds} s from {where}",
                count=count,
                seconds=seconds,
                where=self.where,
            )
            return count

        return self._track(self._run(purge).addCallback(purged))

    def retention_service(
        self, max_age: float, interval: float = 3600.0
    ) -> TimerService:
        """
        A service that purges visits older than ``max_age`` every ``interval``.

        A failed purge is logged and the loop goes on (a TimerService whose
        call fails would stop for good).  Add it beside this service.
        """
        if not max_age > 0 or not interval > 0:
            raise ValueError("max_age and interval must be above 0")

        def purge() -> Deferred[None]:
            def failed(failure: Failure) -> None:
                self._log.failure(
                    "retention purge of {where} failed", failure, where=self.where
                )

            if not self.running:
                return succeed(None)
            d = self.purge_older_than(max_age)
            return d.addCallbacks(lambda _: None, failed)

        timer = TimerService(interval, purge)
        timer.clock = self._clock
        return timer

    def writable(self, timeout: float = 5.0) -> Deferred[bool]:
        """
        True if a write commits within ``timeout`` seconds; never fails.

        For ``/healthz``: rewrites the heartbeat row, so a full disk, a
        read-only file or an unreachable server all read as False.
        """
        if self._state != "ready" or not self.running:
            return succeed(False)
        now = self._clock.seconds()
        sql = self._dialect.sql(
            "INSERT INTO heartbeat (id, checked_at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
        )

        def beat(txn: adbapi.Transaction) -> bool:
            txn.execute(sql, (now,))
            return True

        def unhealthy(failure: Failure) -> bool:
            # A warning without a traceback: /healthz polls this, and the
            # reason says enough.
            self._log.warn(
                "access log {where} is not writable: {reason}",
                where=self.where,
                reason=failure.getErrorMessage(),
            )
            return False

        d = self._run(beat)
        d.addTimeout(timeout, self._clock)
        return self._track(d.addErrback(unhealthy))
