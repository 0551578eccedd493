"""
The JSON API and recordings: shapes, pagination, filters and their 400s,
authentication on every path.  The access log is a real SQLite file (its
query checks are part of the contract); the registry is real, on a Clock,
driven by fake connections.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gatekeeper.accesslog import AccessLog, VisitRecord
from gatekeeper.session.callpair import Outcome
from gatekeeper.session.registry import SessionRegistry
from gatekeeper.web.api import MAX_PAGE, BadRequest, parse_visit_filters
from gatekeeper.web.service import make_root

from .support import TOKEN, Request, connect, make_auth, new_uuid, render

T0 = 1_800_000_000.0
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)


def visit(n: int, **changes: Any) -> VisitRecord:
    values: dict[str, Any] = {
        "call_uuid": new_uuid(n),
        "outcome": "allowed" if n % 2 else "denied",
        "phases": {"started": T0 + 60 * n, "ended": T0 + 60 * n + 30},
        "apartment": "101" if n % 3 else "202",
        "gate": "north",
        "extensions_tried": ("1011",),
        "recording_path": f"/srv/secret/{n}.wav" if n % 2 else None,
        "door_result": "opened" if n % 2 else "not_attempted",
    }
    values.update(changes)
    return VisitRecord(**values)


class APITests(TestCase):
    """Every API path through the root, as the browser and scripts see it."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.clock = Clock()
        self.clock.advance(T0 + 10_000)
        self.registry = SessionRegistry(self.clock, grace_period=10.0)
        self.registry.startService()
        self.recordings = Path(self.mktemp())
        self.recordings.mkdir()
        self.log = AccessLog.sqlite(self.mktemp() + ".sqlite3")
        self.log.startService()
        self.addCleanup(self.log.stopService)
        yield self.log.when_ready()
        for n in range(1, 13):
            yield self.log.record(visit(n))
        self.root = make_root(
            make_auth(self.clock),
            self.clock,
            registry=self.registry,
            access_log=self.log,
            recordings=self.recordings,
        )

    def get(self, path: str, token: str | None = TOKEN, **kw: Any) -> Any:
        return render(self.root, Request(path, token=token, **kw))

    # -- auth --

    @inlineCallbacks
    def test_auth_required_everywhere(self) -> Any:
        """Without credentials every data path is 401 in JSON (pages redirect)."""
        for path in (
            "/api/calls",
            "/api/visits",
            f"/api/visits/{new_uuid(1)}",
            f"/recordings/{new_uuid(1)}.wav",
            "/metrics",
            "/api/me",
        ):
            request = yield self.get(path, token=None)
            self.assertEqual(request.code, 401, path)
            self.assertEqual(request.json()["error"], "unauthorized", path)
            self.assertIn("Bearer", request.header("www-authenticate"))
        for path in ("/", "/index.html", "/static/app.js"):
            request = yield self.get(path, token=None)
            self.assertEqual(
                (request.code, request.header("location")), (303, "/login")
            )

    @inlineCallbacks
    def test_wrong_token_refused(self) -> Any:
        """A wrong bearer token, or another scheme, is refused like none."""
        request = yield self.get("/api/visits", token="x" * 30)
        self.assertEqual(request.code, 401)
        request = yield self.get(
            "/api/visits", token=None, headers={"Authorization": "Basic YW5hOng="}
        )
        self.assertEqual(request.code, 401)

    @inlineCallbacks
    def test_safety_headers(self) -> Any:
        """Answers are not cached, framed or sniffed; scripts come from us only."""
        request = yield self.get("/api/calls")
        self.assertEqual(request.header("cache-control"), "no-store")
        self.assertEqual(request.header("x-frame-options"), "DENY")
        self.assertEqual(request.header("x-content-type-options"), "nosniff")
        self.assertIn("script-src 'self'", request.header("content-security-policy"))

    # -- live calls --

    @inlineCallbacks
    def test_calls_empty(self) -> Any:
        """No live pairs: an empty list, and the server's time."""
        request = yield self.get("/api/calls")
        self.assertEqual(request.code, 200)
        self.assertEqual(
            request.header("content-type"), "application/json; charset=utf-8"
        )
        self.assertEqual(request.json(), {"now": T0 + 10_000, "count": 0, "calls": []})

    @inlineCallbacks
    def test_calls_shape(self) -> Any:
        """A live pair with both legs, as the page lists it."""
        call = new_uuid(99)
        connect(self.registry, call)
        pair = self.registry.get(call)
        pair.context.apartment = "101"
        pair.context.enter_phase("apartment", self.clock.seconds())
        self.clock.advance(3)
        self.registry.expect_resident(call, 30.0, target="1011")
        self.clock.advance(2)
        connect(self.registry, call)
        self.clock.advance(1.5)
        request = yield self.get("/api/calls")
        body = request.json()
        self.assertEqual(body["count"], 1)
        (shown,) = body["calls"]
        self.assertEqual(
            {k: shown[k] for k in ("call_uuid", "state", "phase", "apartment")},
            {
                "call_uuid": call,
                "state": "connected",
                "phase": "apartment",
                "apartment": "101",
            },
        )
        self.assertEqual(shown["duration"], 6.5)
        self.assertEqual(
            [leg["role"] for leg in shown["legs"]], ["visitor", "resident"]
        )
        self.assertEqual(shown["legs"][0]["state"], "live")
        self.assertEqual(shown["resident_attempts"][0]["target"], "1011")
        self.assertEqual(shown["resident_attempts"][0]["result"], "answered")
        self.assertIsNone(shown["recording_url"])
        self.registry.end(call, Outcome.ALLOWED)
        request = yield self.get("/api/calls")
        self.assertEqual(request.json()["count"], 0)

    # -- visits --

    @inlineCallbacks
    def test_visits_newest_first(self) -> Any:
        """The first page, newest first, with no server path in it."""
        request = yield self.get("/api/visits?limit=5")
        body = request.json()
        self.assertEqual(request.code, 200)
        self.assertEqual(
            [v["call_uuid"] for v in body["visits"]],
            [new_uuid(n) for n in (12, 11, 10, 9, 8)],
        )
        self.assertEqual(
            (body["limit"], body["offset"], body["next_offset"]), (5, 0, 5)
        )
        first = body["visits"][1]
        self.assertEqual(
            set(first),
            {
                "call_uuid",
                "started_at",
                "apartment",
                "gate",
                "outcome",
                "phases",
                "extensions_tried",
                "door_result",
                "door_detail",
                "recording_url",
            },
        )
        self.assertEqual(first["recording_url"], f"/recordings/{new_uuid(11)}.wav")
        self.assertNotIn(b"/srv/secret", request.body)

    @inlineCallbacks
    def test_visits_last_page(self) -> Any:
        """Paging to the end: next_offset is null; past it, an empty page."""
        request = yield self.get("/api/visits?limit=5&offset=10")
        body = request.json()
        self.assertEqual(len(body["visits"]), 2)
        self.assertIsNone(body["next_offset"])
        request = yield self.get("/api/visits?limit=5&offset=100")
        self.assertEqual(request.json()["visits"], [])
        request = yield self.get("/api/visits?limit=12")
        self.assertIsNone(request.json()["next_offset"])

    @inlineCallbacks
    def test_visits_filters(self) -> Any:
        """Apartment, outcome and a date range narrow the history together."""
        request = yield self.get("/api/visits?apartment=202")
        self.assertEqual({v["apartment"] for v in request.json()["visits"]}, {"202"})
        self.assertEqual(len(request.json()["visits"]), 4)
        request = yield self.get("/api/visits?apartment=202&outcome=denied")
        self.assertEqual(
            [v["call_uuid"] for v in request.json()["visits"]],
            [new_uuid(12), new_uuid(6)],
        )
        since, until = T0 + 60 * 3, T0 + 60 * 6
        request = yield self.get(f"/api/visits?since={since}&until={until}")
        self.assertEqual(
            [v["call_uuid"] for v in request.json()["visits"]],
            [new_uuid(5), new_uuid(4), new_uuid(3)],
        )
        iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
        request = yield self.get(f"/api/visits?since={iso}&until={until}")
        self.assertEqual(len(request.json()["visits"]), 3)

    @inlineCallbacks
    def test_visits_bad_values(self) -> Any:
        """Each bad filter or page value is a 400 saying which and why."""
        cases = {
            "limit=0": "limit must be 1..",
            f"limit={MAX_PAGE + 1}": "limit must be 1..",
            "limit=ten": "limit must be an integer",
            "offset=-1": "offset must be 0..",
            "since=yesterday": "since must be epoch seconds or ISO 8601",
            "until=nan": "until must be epoch seconds",
            "since=200&until=100": "since is after until",
            "outcome=exploded": "outcome must be one of",
            "apartment=" + "9" * 40: "apartment is not an apartment",
            "colour=red": "unknown parameter 'colour'",
            "limit=1&limit=2": "give limit once",
        }
        for query, message in cases.items():
            request = yield self.get(f"/api/visits?{query}")
            self.assertEqual(request.code, 400, query)
            self.assertEqual(request.json()["error"], "bad_request", query)
            self.assertIn(message, request.json()["message"], query)

    @inlineCallbacks
    def test_visits_unavailable(self) -> Any:
        """With the access log stopped the history is 503, not a traceback."""
        yield self.log.stopService()
        request = yield self.get("/api/visits")
        self.assertEqual(request.code, 503)
        self.assertEqual(request.json()["error"], "unavailable")

    @inlineCallbacks
    def test_one_visit(self) -> Any:
        """/api/visits/<uuid>: the row, 404 for an unknown one, 400 for junk."""
        request = yield self.get(f"/api/visits/{new_uuid(3).upper()}")
        self.assertEqual(
            (request.code, request.json()["call_uuid"]), (200, new_uuid(3))
        )
        request = yield self.get(f"/api/visits/{new_uuid(77)}")
        self.assertEqual(request.code, 404)
        request = yield self.get("/api/visits/..%2f..%2fetc")
        self.assertEqual(request.code, 400)

    # -- recordings --

    @inlineCallbacks
    def test_recording_served(self) -> Any:
        """A recording by UUID (any case), as audio/wav."""
        (self.recordings / f"{new_uuid(1)}.wav").write_bytes(WAV)
        request = yield self.get(f"/recordings/{new_uuid(1).upper()}.wav")
        self.assertEqual(request.code, 200)
        self.assertEqual(request.header("content-type"), "audio/wav")
        self.assertEqual(request.body, WAV)

    @inlineCallbacks
    def test_recording_not_found(self) -> Any:
        """No file for a valid UUID: 404."""
        request = yield self.get(f"/recordings/{new_uuid(2)}.wav")
        self.assertEqual((request.code, request.json()["error"]), (404, "not_found"))

    @inlineCallbacks
    def test_recording_names_only_by_uuid(self) -> Any:
        """Nothing but a call UUID names a file: traversal and junk are 400."""
        (self.recordings / "notes.wav").write_bytes(WAV)
        for path in (
            "/recordings/notes.wav",
            "/recordings/..",
            "/recordings/%2e%2e%2fgatekeeper.ini",
            f"/recordings/{new_uuid(1)}x.wav",
        ):
            request = yield self.get(path)
            self.assertEqual(request.code, 400, path)
        request = yield self.get(f"/recordings/{new_uuid(1)}.wav/x")
        self.assertEqual(request.code, 404)


class FilterParsingTests(SynchronousTestCase):
    """parse_visit_filters on its own: what reaches AccessLog.query."""

    def test_defaults(self) -> None:
        """No parameters: the first page of 50."""
        self.assertEqual(parse_visit_filters({}), {"limit": 50, "offset": 0})

    def test_blank_filters_ignored(self) -> None:
        """Empty form fields (the page sends them) filter nothing."""
        args = {b"apartment": [b""], b"outcome": [b""], b"since": [b" "]}
        self.assertEqual(parse_visit_filters(args), {"limit": 50, "offset": 0})

    def test_date_is_local_midnight(self) -> None:
        """A bare date is midnight of the server's time zone."""
        got = parse_visit_filters({b"since": [b"2026-05-01"]})["since"]
        self.assertEqual(got, datetime.datetime(2026, 5, 1).timestamp())

    def test_not_utf8(self) -> None:
        """Bytes that are not text are a 400, not a crash."""
        self.assertRaises(BadRequest, parse_visit_filters, {b"apartment": [b"\xff"]})
