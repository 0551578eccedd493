"""
Call tracing: the log of a whole visit carries the call's UUID on every
event, and ``gatekeeper trace`` prints that call's timeline from the JSON log
twist writes.

The log is recorded here, from visits run through the in-memory building of
``tests/flow/rig.py`` and written with twisted's own JSON file observer (the
one ``twist`` uses), so the test reads what production writes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path
from typing import Any

from twisted.logger import (
    Logger,
    capturedLogs,
    eventAsJSON,
    eventFromJSON,
    jsonFileLogObserver,
)
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.trace import events_for_call, main, read_events

from .flow.rig import CALL, Rig

OTHER = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"


def resident_drops_then_allows(rig: Rig) -> None:
    """A visit whose resident leg drops and comes back, then opens the door."""
    rig.to_resident()
    rig.dialer.answer("1011")
    resident = rig.connect("127.0.0.1:2")
    rig.run(0.5)
    resident.close()
    rig.run(2)
    again = rig.connect("127.0.0.1:3")
    rig.run(2.5)
    again.press("1")
    rig.run(4)


def visitor_lost(rig: Rig) -> None:
    """A visitor whose connection drops for good while choosing an apartment."""
    visitor = rig.connect()
    rig.run(0.5)
    visitor.close()
    rig.run(15)


def record(test: SynchronousTestCase, scenario: Any) -> list[dict[str, Any]]:
    """The events of ``scenario`` run in a fresh rig."""
    with capturedLogs() as events:
        rig = Rig(Path(test.mktemp() + "-residents.csv"))
        scenario(rig)
    return list(events)


class CallUUIDContractTests(SynchronousTestCase):
    """Every event gatekeeper logs during a visit names the call."""

    def check(self, scenario: Any) -> list[dict[str, Any]]:
        events = [
            e
            for e in record(self, scenario)
            if str(e.get("log_namespace", "")).startswith("gatekeeper.")
        ]
        self.assertGreater(len(events), 5)
        for event in events:
            self.assertEqual(
                event.get("call_uuid"), CALL, f"{event['log_format']!r} lacks call_uuid"
            )
            # And it survives the trip through twist's JSON.
            self.assertEqual(eventFromJSON(eventAsJSON(event))["call_uuid"], CALL)
        return events

    def test_allowed_visit(self) -> None:
        """A visit with a resident who drops, returns and allows."""
        events = self.check(resident_drops_then_allows)
        legs = {e.get("leg") for e in events}
        self.assertTrue({"visitor", "resident"} <= legs)

    def test_visitor_lost(self) -> None:
        """A visit that ends because the visitor's leg never came back."""
        events = self.check(visitor_lost)
        self.assertIn("visitor_lost", [e.get("outcome") for e in events])


class TraceCommandTests(SynchronousTestCase):
    """``gatekeeper trace`` on a recorded log."""

    def setUp(self) -> None:
        self.log = Path(self.mktemp() + ".json")
        noise = Logger(namespace="gatekeeper.session.registry.SessionRegistry")
        with capturedLogs() as extra:
            noise.info(
                "new call {call_uuid}: visitor leg", call_uuid=OTHER, leg="visitor"
            )
            noise.info(
                "resident channel {channel_id} hung up",
                channel_id=f"{CALL}-1",
            )
            try:
                raise ZeroDivisionError("boom")
            except ZeroDivisionError:
                noise.failure("listener of {call_uuid} failed", call_uuid=CALL)
        self.flushLoggedErrors(ZeroDivisionError)
        events = record(self, resident_drops_then_allows) + list(extra)
        with self.log.open("w", encoding="utf-8") as out:
            observer = jsonFileLogObserver(out)
            for event in events:
                observer(event)
            out.write("some line that is not JSON\n")

    def trace(self, *argv: str, stdin: str = "") -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):  # argparse's usage errors
            code = main(
                ["trace", *argv], stdout=out, stdin=io.StringIO(stdin), stderr=err
            )
        return code, out.getvalue()

    def test_timeline(self) -> None:
        """Both legs, the drop and the return, the end, in order; no other call."""
        code, text = self.trace(CALL, str(self.log))
        self.assertEqual(code, 0)
        self.assertNotIn(OTHER, text)
        order = [
            "new call",
            "apartment 101 found",
            "expects its resident (1011)",
            "resident leg of",
            "dropped",
            "re-attached from 127.0.0.1:3",
            "door opened",
            f"call {CALL} ended: allowed",
        ]
        positions = [text.index(marker) for marker in order]
        self.assertEqual(positions, sorted(positions))
        lines = text.splitlines()
        self.assertTrue(lines[0].startswith(f"call {CALL}: "))
        self.assertIn(
            "legs: visitor from 127.0.0.1:1; resident from 127.0.0.1:2, 127.0.0.1:3",
            text,
        )
        self.assertIn("drops: 1, re-attachments: 1", text)
        # Format specs ({waited:.1f}) survive the JSON log.
        self.assertNotIn("0000000", text)
        self.assertEqual(lines[-1], "ended: allowed")

    def test_other_ways_of_naming_the_call(self) -> None:
        """A resident channel id and a traceback of the call are in it too."""
        _, text = self.trace(CALL, str(self.log))
        self.assertIn(f"resident channel {CALL}-1 hung up", text)
        self.assertIn("ZeroDivisionError", text)

    def test_uppercase_uuid_and_stdin(self) -> None:
        """The UUID in any case; the log from standard input."""
        code, text = self.trace(CALL.upper(), stdin=self.log.read_text())
        self.assertEqual(code, 0)
        self.assertIn("re-attached", text)

    def test_gzip_and_utc(self) -> None:
        """A rotated, compressed log reads the same; --utc says so."""
        packed = self.log.with_suffix(".json.gz")
        packed.write_bytes(gzip.compress(self.log.read_bytes()))
        code, text = self.trace("--utc", CALL, str(packed))
        self.assertEqual(code, 0)
        self.assertIn(" UTC", text.splitlines()[0])

    def test_json_output(self) -> None:
        """--json prints the call's events, one JSON object a line."""
        code, text = self.trace("--json", CALL, str(self.log))
        self.assertEqual(code, 0)
        events = [json.loads(line) for line in text.splitlines()]
        self.assertTrue(all(CALL in json.dumps(e) for e in events))
        self.assertGreater(len(events), 10)

    def test_unknown_call(self) -> None:
        """A UUID with no events: exit status 1."""
        code, text = self.trace("11111111-2222-4333-8444-555555555555", str(self.log))
        self.assertEqual(code, 1)
        self.assertIn("no events found", text)

    def test_not_a_uuid(self) -> None:
        """Anything but a UUID is a usage error (status 2)."""
        error = self.assertRaises(SystemExit, self.trace, "12345", str(self.log))
        self.assertEqual(error.code, 2)

    def test_missing_file(self) -> None:
        """An unreadable log file: status 2."""
        self.assertEqual(self.trace(CALL, "/nonexistent/gk.log")[0], 2)

    def test_reader_skips_junk(self) -> None:
        """Prefixed lines (journal, record separator) count; junk does not."""
        event = eventAsJSON({"log_time": 1.0, "log_format": "x", "call_uuid": CALL})
        lines = [
            "not json",
            f"May 09 10:00:00 host gatekeeper[1]: {event}",
            f"\x1e{event}",
            "{broken",
        ]
        found = list(read_events(lines))
        self.assertEqual(len(found), 2)
        self.assertEqual(len(events_for_call(found, CALL)), 2)
