"""
The JSON API behind the operator page (authentication is the root's job).

``GET /api/calls``
    Live call pairs, oldest first: ``{"now", "count", "calls": [...]}``,
    each with its UUID, state, flow phase, legs and resident attempts.

``GET /api/visits``
    The access log, newest first, one page at a time.  Query parameters,
    all optional: ``apartment``; ``since`` and ``until`` (epoch seconds, or
    ISO 8601; ``since`` inclusive, ``until`` exclusive; a date or a time
    without an offset is the server's local time); ``outcome`` (one of
    :data:`VISIT_OUTCOMES`); ``limit`` (1..:data:`MAX_PAGE`, default 50) and
    ``offset``.  The answer: ``{"visits": [...], "limit", "offset",
    "next_offset"}``, ``next_offset`` null on the last page.  A bad or
    unknown parameter is a 400 whose ``message`` says which and why.

``GET /api/visits/<uuid>``
    One visit, or 404.

``GET /recordings/<uuid>.wav``
    The visitor's recorded name.  The file name is built from the UUID once
    :func:`~gatekeeper.session.uuids.canonical_uuid` accepted it, never from
    the request's path, so no request can name another file.

Visits carry ``recording_url`` instead of the file's path: where recordings
live on the server is nobody's business.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import static
from twisted.web.resource import Resource

from gatekeeper.accesslog import OUTCOMES, AccessLogNotReadyError, VisitRecord
from gatekeeper.session.callpair import CallPair, Outcome
from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid
from gatekeeper.web._json import error, json_body, respond_later

__all__ = [
    "MAX_PAGE",
    "VISIT_OUTCOMES",
    "CallsResource",
    "RecordingsResource",
    "VisitsResource",
    "call_json",
    "parse_visit_filters",
    "visit_json",
]

#: Largest page of visits one request may ask for.
MAX_PAGE = 200
#: Outcomes the history may be filtered by: what the flow records.
VISIT_OUTCOMES: tuple[str, ...] = tuple(
    dict.fromkeys([*OUTCOMES, *(o.value for o in Outcome)])
)
_PARAMS = ("apartment", "since", "until", "outcome", "limit", "offset")


class BadRequest(ValueError):
    """A request parameter that cannot be used; the message is for the client."""


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def call_json(pair: CallPair, now: float) -> dict[str, object]:
    """What the live-calls list shows of one pair."""
    context = pair.context
    legs = []
    for leg in pair.legs:
        legs.append(
            {
                "role": leg.role.value,
                "state": leg.state.value,
                "attached_at": _seconds(leg.attached_at),
                "dropped_at": _seconds(leg.dropped_at),
                "attachments": leg.attachments,
                "peer": getattr(leg.connection, "peer", None),
            }
        )
    attempts = [
        {
            "number": a.number,
            "target": a.target,
            "expected_at": _seconds(a.expected_at),
            "result": a.result.value if a.result is not None else None,
        }
        for a in context.resident_attempts
    ]
    return {
        "call_uuid": pair.call_uuid,
        "state": pair.state.value,
        "phase": context.phase,
        "started_at": _seconds(pair.started_at),
        "duration": round(max(now - pair.started_at, 0.0), 1),
        "gate": context.gate,
        "apartment": context.apartment,
        "has_recording": context.recording is not None,
        "recording_url": (
            f"/recordings/{pair.call_uuid}.wav" if context.recording else None
        ),
        "phases": [{"phase": name, "at": _seconds(at)} for name, at in context.phases],
        "legs": legs,
        "resident_attempts": attempts,
    }


def visit_json(visit: VisitRecord) -> dict[str, object]:
    """One access-log row for the API: no server paths."""
    return {
        "call_uuid": visit.call_uuid,
        "started_at": _seconds(visit.started),
        "apartment": visit.apartment,
        "gate": visit.gate,
        "outcome": visit.outcome,
        "phases": {k: _seconds(v) for k, v in visit.phases.items()},
        "extensions_tried": list(visit.extensions_tried),
        "door_result": visit.door_result,
        "door_detail": visit.door_detail,
        "recording_url": (
            f"/recordings/{visit.call_uuid}.wav" if visit.recording_path else None
        ),
    }


def _time(name: str, text: str) -> float:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise BadRequest(f"{name} must be epoch seconds or ISO 8601: {text!r}")
        return value
    try:
        if len(text) == 10:
            when = datetime.datetime.combine(
                datetime.date.fromisoformat(text), datetime.time()
            )
        else:
            when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name} must be epoch seconds or ISO 8601 (2026-05-01, "
            f"2026-05-01T08:00:00-03:00): {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # the server's local time
    return when.timestamp()


def _integer(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer: {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be {low}..{high}, not {value}")
    return value


def parse_visit_filters(args: dict[bytes, list[bytes]]) -> dict[str, Any]:
    """``request.args`` as :meth:`AccessLog.query` arguments, or BadRequest."""
    values: dict[str, str] = {}
    for raw_key, raw_values in args.items():
        key = raw_key.decode("utf-8", "replace")
        if key not in _PARAMS:
            raise BadRequest(f"unknown parameter {key!r} (known: {', '.join(_PARAMS)})")
        if len(raw_values) != 1:
            raise BadRequest(f"give {key} once")
        try:
            values[key] = raw_values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{key} is not UTF-8") from None
    query: dict[str, Any] = {"limit": 50, "offset": 0}
    apartment = values.get("apartment", "").strip()
    if apartment:
        if len(apartment) > 32 or not apartment.isprintable():
            raise BadRequest(f"apartment is not an apartment: {apartment[:40]!r}")
        query["apartment"] = apartment
    for name in ("since", "until"):
        if values.get(name, "").strip():
            query[name] = _time(name, values[name])
    if "since" in query and "until" in query and query["since"] > query["until"]:
        raise BadRequest("since is after until")
    outcome = values.get("outcome", "").strip()
    if outcome:
        if outcome not in VISIT_OUTCOMES:
            raise BadRequest(
                f"outcome must be one of {', '.join(VISIT_OUTCOMES)}: {outcome[:40]!r}"
            )
        query["outcome"] = outcome
    if "limit" in values:
        query["limit"] = _integer("limit", values["limit"], 1, MAX_PAGE)
    if "offset" in values:
        query["offset"] = _integer("offset", values["offset"], 0, 1_000_000)
    return query


class CallsResource(Resource):
    """``/api/calls``: the registry's live pairs."""

    isLeaf = True

    def __init__(self, registry: Any, clock: IReactorTime) -> None:
        super().__init__()
        self.registry = registry
        self.clock = clock

    def render_GET(self, request: Any) -> bytes:
        now = self.clock.seconds()
        calls = [call_json(p, now) for p in self.registry.live_pairs()]
        return json_body(
            request, {"now": round(now, 3), "count": len(calls), "calls": calls}
        )


def _unavailable(failure: Failure) -> tuple[int, object]:
    failure.trap(AccessLogNotReadyError)
    return 503, {
        "error": "unavailable",
        "message": "the visit history is not available right now",
    }


class VisitsResource(Resource):
    """``/api/visits`` and ``/api/visits/<uuid>``: the access log."""

    def __init__(self, access_log: Any) -> None:
        super().__init__()
        self.access_log = access_log

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return _OneVisit(self.access_log, path)

    def render_GET(self, request: Any) -> object:
        try:
            query = parse_visit_filters(request.args)
        except BadRequest as e:
            return error(request, 400, "bad_request", str(e))
        limit, offset = query["limit"], query["offset"]
        try:
            # One more row than asked tells whether there is a next page.
            d = self.access_log.query(**{**query, "limit": limit + 1})
        except ValueError as e:  # the access log's own checks
            return error(request, 400, "bad_request", str(e))

        def page(visits: list[VisitRecord]) -> tuple[int, object]:
            more = len(visits) > limit
            return 200, {
                "visits": [visit_json(v) for v in visits[:limit]],
                "limit": limit,
                "offset": offset,
                "next_offset": offset + limit if more else None,
            }

        return respond_later(request, d.addCallbacks(page, _unavailable))


class _OneVisit(Resource):
    isLeaf = True

    def __init__(self, access_log: Any, name: bytes) -> None:
        super().__init__()
        self.access_log = access_log
        self.name = name

    def render_GET(self, request: Any) -> object:
        try:
            uuid = canonical_uuid(self.name.decode("ascii"))
        except (UnicodeDecodeError, InvalidCallUUID):
            return error(request, 400, "bad_request", "not a call UUID")
        if request.postpath:
            return error(request, 404, "not_found", "no such resource")

        def found(visit: VisitRecord | None) -> tuple[int, object]:
            if visit is None:
                return 404, {"error": "not_found", "message": f"no visit {uuid}"}
            return 200, visit_json(visit)

        d: Deferred[VisitRecord | None] = maybeDeferred(self.access_log.get, uuid)
        return respond_later(request, d.addCallbacks(found, _unavailable))


class RecordingsResource(Resource):
    """``/recordings/<uuid>.wav`` from the recordings directory."""

    def __init__(self, directory: Path | str) -> None:
        super().__init__()
        self.directory = Path(directory)

    def getChild(self, path: bytes, request: Any) -> Resource:
        name = path.decode("ascii", "replace")
        name = name.removesuffix(".wav")
        try:
            uuid = canonical_uuid(name)
        except InvalidCallUUID:
            return _Error(400, "bad_request", "a recording is named by its call UUID")
        if request.postpath:
            return _Error(404, "not_found", "no such recording")
        # Only now is a file name made, from the canonical UUID alone.
        file = self.directory / f"{uuid}.wav"
        if not file.is_file():
            return _Error(404, "not_found", f"no recording of {uuid}")
        resource = static.File(str(file), defaultType="audio/wav")
        resource.type, resource.encoding = "audio/wav", None
        return resource

    def render_GET(self, request: Any) -> bytes:
        return error(request, 404, "not_found", "ask for /recordings/<uuid>.wav")


class _Error(Resource):
    isLeaf = True

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__()
        self.code, self.kind, self.message = code, kind, message

    def render(self, request: Any) -> bytes:
        return error(request, self.code, self.kind, self.message)
