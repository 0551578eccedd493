"""
``gatekeeper trace <uuid> [logfile ...]``: one call's timeline from the log.

To answer "why did this call drop?", run gatekeeper with JSON logs
(``twist`` writes them whenever its output is not a terminal, or with
``twist --log-format=json``), then::

    gatekeeper trace 3f2b...-...  /var/log/gatekeeper/gatekeeper.log
    journalctl -u gatekeeper -o cat | gatekeeper trace 3f2b...

Both legs of a visit share its UUID, and every per-call event gatekeeper
logs carries it as the ``call_uuid`` field (with ``leg`` saying which leg,
where there is one); ``tests/test_trace.py`` holds the flow, the registry and
the access log to that.  The trace also picks up events that name the call
another way: the dialer's ``uuid``, a resident ``channel_id`` (the UUID plus
an attempt number), or the UUID in the message text.

Input is read line by line: each line holding a JSON log event (after any
prefix, such as the record separator twist writes or a journal's
timestamp) counts; anything else is skipped.  Files ending in ``.gz`` are
read compressed; ``-`` (or no file, when standard input is not a terminal)
reads standard input.

The timeline prints one line per event (local time, or UTC with
``--utc``), time since the call's first event, level, leg, the module, and
the message; tracebacks are indented beneath.  A summary ends it: how long
the call lasted, its legs and their peers, drops, re-attachments and how the
call ended.  ``--json`` prints the matching events as JSON lines instead.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, TextIO

from twisted.logger import eventAsJSON, eventFromJSON, formatEvent

from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid

__all__ = ["events_for_call", "format_timeline", "main", "read_events"]

LogEvent = dict[str, Any]


def read_events(lines: Iterable[str]) -> Iterator[LogEvent]:
    """Every JSON log event in ``lines``; other lines are skipped."""
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        text = line[start:].strip().rstrip("\x1e")
        try:
            event = eventFromJSON(text)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if isinstance(event, dict) and "log_time" in event:
            yield event


def _names_call(event: LogEvent, call_uuid: str) -> bool:
    for key in ("call_uuid", "uuid"):
        value = event.get(key)
        if isinstance(value, str) and value.lower() == call_uuid:
            return True
    for key in ("channel_id", "channel_ids"):
        value = event.get(key)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and item.lower().startswith(call_uuid):
                return True
    return call_uuid in _message(event).lower()


def events_for_call(events: Iterable[LogEvent], call_uuid: str) -> list[LogEvent]:
    """The events of ``call_uuid``, in time order (stable for equal times)."""
    call_uuid = canonical_uuid(call_uuid)
    found = [e for e in events if _names_call(e, call_uuid)]
    found.sort(key=lambda e: float(e.get("log_time") or 0.0))
    return found


def _message(event: LogEvent) -> str:
    # twist's JSON keeps each field's value and a "flattened" string of it;
    # the flattened one has lost the format spec ({waited:.1f} comes back
    # as 0.4200000000000004), so format from the values when they are there.
    raw = {k: v for k, v in event.items() if k != "log_flattened"}
    for candidate in (raw, event):
        try:
            text = formatEvent(candidate)
        except Exception:
            continue
        if text and not text.startswith("Unable to format event"):
            return text
    return str(event.get("log_format") or "")


def _level(event: LogEvent) -> str:
    level = event.get("log_level")
    return getattr(level, "name", str(level or "-"))


def _stamp(when: float, utc: bool) -> str:
    tz = datetime.UTC if utc else None
    moment = datetime.datetime.fromtimestamp(when, tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _source(event: LogEvent) -> str:
    namespace = str(event.get("log_namespace") or "-")
    namespace = namespace.removeprefix("gatekeeper.")
    return namespace.rsplit(".", 1)[-1] if "." in namespace else namespace


def _traceback(event: LogEvent) -> list[str]:
    failure = event.get("log_failure")
    if failure is None:
        return []
    try:
        text = failure.getTraceback()
    except Exception:
        return ["(a traceback was logged but cannot be read)"]
    return text.rstrip().splitlines()


def format_timeline(call_uuid: str, events: list[LogEvent], utc: bool = False) -> str:
    """The human-readable timeline of ``events`` (all of one call)."""
    call_uuid = canonical_uuid(call_uuid)
    if not events:
        return f"call {call_uuid}: no events found\n"
    t0 = float(events[0]["log_time"])
    t1 = float(events[-1]["log_time"])
    out = [
        f"call {call_uuid}: {len(events)} events, "
        f"{_stamp(t0, utc)} to {_stamp(t1, utc)} ({t1 - t0:.1f} s)"
        f"{' UTC' if utc else ''}",
        "",
    ]
    for event in events:
        when = float(event["log_time"])
        leg = event.get("leg")
        out.append(
            f"{_stamp(when, utc)}  +{when - t0:8.3f}s  {_level(event):<8} "
            f"{(leg if isinstance(leg, str) else '-'):<9} {_source(event):<15} "
            f"{_message(event)}"
        )
        out.extend(f"{'':>40}{line}" for line in _traceback(event))
    out.append("")
    out.extend(_summary(events))
    return "\n".join(out) + "\n"


def _summary(events: list[LogEvent]) -> list[str]:
    peers: dict[str, list[str]] = {}
    drops = reattached = refused = 0
    outcome: str | None = None
    problems = 0
    for event in events:
        leg, peer = event.get("leg"), event.get("peer")
        if isinstance(leg, str) and leg in ("visitor", "resident") and peer:
            seen = peers.setdefault(leg, [])
            if str(peer) not in seen:
                seen.append(str(peer))
        text = str(event.get("log_format") or "")
        if "dropped" in text and event.get("leg") in ("visitor", "resident"):
            drops += 1
        if "re-attached" in text:
            reattached += 1
        if text.startswith("refused connection"):
            refused += 1
        if isinstance(event.get("outcome"), str) and " ended" in text:
            outcome = event["outcome"]
        if _level(event) in ("warn", "error", "critical"):
            problems += 1
    legs = "; ".join(f"{leg} from {', '.join(p)}" for leg, p in peers.items())
    return [
        f"legs: {legs or 'none seen'}",
        f"drops: {drops}, re-attachments: {reattached}, refused connections: "
        f"{refused}, warnings and errors: {problems}",
        f"ended: {outcome or 'not in this log (still live, or the log is cut)'}",
    ]


def _open(name: str, stdin: TextIO) -> IO[str]:
    if name == "-":
        return stdin
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(name, "rb"), "utf-8", errors="replace")
    return open(name, encoding="utf-8", errors="replace")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="gatekeeper's operator commands",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    trace = commands.add_parser(
        "trace",
        help="print one call's timeline from gatekeeper's JSON log",
        description="Print one call's timeline, across both legs, from "
        "gatekeeper's JSON log (twist --log-format=json).",
    )
    trace.add_argument("uuid", help="the call UUID (as Asterisk's GKCALL)")
    trace.add_argument(
        "logfile",
        nargs="*",
        help="JSON log files, oldest first (.gz too; '-' or none: standard input)",
    )
    trace.add_argument("--utc", action="store_true", help="print times in UTC")
    trace.add_argument(
        "--json", action="store_true", help="print the call's events as JSON lines"
    )
    return parser


def main(
    argv: list[str] | None = None,
    stdout: TextIO | None = None,
    stdin: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The ``gatekeeper`` console script; returns the exit status."""
    stdout = sys.stdout if stdout is None else stdout
    stdin = sys.stdin if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        call_uuid = canonical_uuid(args.uuid)
    except InvalidCallUUID as e:
        parser.error(str(e))
    names = args.logfile or ["-"]
    if names == ["-"] and stdin.isatty():
        parser.error("give a log file, or pipe the log in")
    events: list[LogEvent] = []
    for name in names:
        try:
            with _open(name, stdin) as lines:
                events.extend(read_events(lines))
        except OSError as e:
            print(f"gatekeeper trace: {name}: {e.strerror}", file=stderr)
            return 2
    found = events_for_call(events, call_uuid)
    if args.json:
        for event in found:
            stdout.write(json.dumps(json.loads(eventAsJSON(event))) + "\n")
    else:
        stdout.write(format_timeline(call_uuid, found, utc=args.utc))
    if not found:
        print(
            f"gatekeeper trace: no events of {call_uuid} in {len(events)} "
            f"log events read",
            file=stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
