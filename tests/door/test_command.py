"""Tests for the ``command`` door opener, running tiny Python scripts."""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from gatekeeper.door import CommandDoorOpener, DoorContext, IDoorOpener
from gatekeeper.door.result import FAILED, OPENED

UUID = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"

CHECK_ARGS = f"""
import os, sys
ok = sys.argv[-2:] == ["101", "{UUID}"] and os.environ["GK_GATE"] == "north"
sys.exit(0 if ok else 3)
"""


class CommandTests(TestCase):
    """Exit status decides; a hung program is stopped at the timeout."""

    def opener(self, script: str, **kw: Any) -> CommandDoorOpener:
        kw.setdefault("clock", reactor)
        return CommandDoorOpener([sys.executable, "-c", script], reactor=reactor, **kw)

    def test_provides_interface(self) -> None:
        """The opener provides IDoorOpener."""
        self.assertTrue(verifyObject(IDoorOpener, self.opener("pass")))

    @inlineCallbacks
    def test_exit_zero_opens(self) -> Any:
        """Exit 0, given the apartment and UUID as arguments, opens the door."""
        with capturedLogs() as events:
            result = yield self.opener(CHECK_ARGS).open(
                UUID, "101", DoorContext(gate="north")
            )
        self.assertEqual((result.status, result.method), (OPENED, "command"))
        self.assertEqual([e["call_uuid"] for e in events], [UUID])

    @inlineCallbacks
    def test_wrong_arguments_fail(self) -> Any:
        """The same script fails for another apartment: arguments really arrive."""
        with capturedLogs():
            result = yield self.opener(CHECK_ARGS).open(
                UUID, "102", DoorContext(gate="north")
            )
        self.assertEqual((result.status, result.detail[-8:]), (FAILED, "exited 3"))

    @inlineCallbacks
    def test_nonzero_exit_with_stderr(self) -> Any:
        """A failing program's result ends with the tail of its stderr."""
        script = (
            "import sys; sys.stderr.write('x' * 1000 + 'relay 2 jammed\\n');"
            " sys.exit(2)"
        )
        with capturedLogs():
            result = yield self.opener(script).open(UUID, "101", DoorContext())
        self.assertEqual(result.status, FAILED)
        self.assertTrue(
            result.detail.endswith("exited 2: " + "x" * 186 + "relay 2 jammed"),
            result.detail,
        )

    @inlineCallbacks
    def test_timeout_stops_program(self) -> Any:
        """A program still running at the timeout is terminated and fails the door."""
        clock = Clock()
        opener = self.opener("import time; time.sleep(30)", clock=clock, timeout=3)
        with capturedLogs() as events:
            d = opener.open(UUID, "101", DoorContext())
            clock.advance(2.9)
            self.assertNoResult(d)
            clock.advance(0.1)
            result = yield d
        self.assertEqual(
            (result.status, result.detail),
            (FAILED, f"{sys.executable} timed out after 3 s"),
        )
        self.assertEqual({e["call_uuid"] for e in events}, {UUID})

    @inlineCallbacks
    def test_missing_program(self) -> Any:
        """A program that cannot be run fails the door instead of raising."""
        opener = CommandDoorOpener(
            ["/nonexistent/open-door"], reactor=reactor, clock=reactor
        )
        with capturedLogs():
            result = yield opener.open(UUID, "101", DoorContext())
        self.assertEqual(
            (result.status, result.detail),
            (
                FAILED,
                "/nonexistent/open-door could not be started:"
                " No such file or directory",
            ),
        )


class CommandSetupTests(SynchronousTestCase):
    """Setup mistakes are refused before any visit."""

    def test_empty_command(self) -> None:
        """A command naming no program is refused."""
        self.assertRaises(
            ValueError, CommandDoorOpener, [], reactor=reactor, clock=Clock()
        )
