"""Recordings older than the retention are deleted, and the purge logged."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.web.retention import (
    PurgeResult,
    make_recordings_retention,
    purge_recordings,
)

from .support import inline, new_uuid

DAY = 86400.0
NOW = 1_800_000_000.0


class PurgeTests(SynchronousTestCase):
    """What purge_recordings deletes, and what it never touches."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def file(self, name: str, age_days: float, size: int = 10) -> Path:
        path = self.directory / name
        path.write_bytes(b"x" * size)
        when = NOW - age_days * DAY
        os.utime(path, (when, when))
        return path

    def test_old_deleted_new_kept(self) -> None:
        """Recordings past the cutoff go; newer ones stay."""
        old = self.file(f"{new_uuid(1)}.wav", 100, size=7)
        new = self.file(f"{new_uuid(2)}.wav", 10)
        result = purge_recordings(self.directory, NOW - 90 * DAY)
        self.assertEqual(
            result, PurgeResult(deleted=1, kept=1, failed=0, freed_bytes=7)
        )
        self.assertFalse(old.exists())
        self.assertTrue(new.exists())

    def test_only_uuid_files(self) -> None:
        """Files not named <uuid>.wav, and symbolic links, are left alone."""
        other = self.file("notes.wav", 400)
        upper = self.file(f"{new_uuid(3).upper()}.wav", 400)
        target = self.file("target.txt", 400)
        link = self.directory / f"{new_uuid(4)}.wav"
        link.symlink_to(target)
        result = purge_recordings(self.directory, NOW)
        self.assertEqual(result.deleted, 0)
        for path in (other, upper, target, link):
            self.assertTrue(os.path.lexists(path), path)

    def test_missing_directory(self) -> None:
        """No recordings directory yet: nothing to do."""
        self.assertEqual(
            purge_recordings(self.directory / "nope", NOW), PurgeResult(0, 0, 0, 0)
        )


class RetentionServiceTests(SynchronousTestCase):
    """The daily purge, on a Clock."""

    def test_runs_daily_and_logs_counts(self) -> None:
        """At start and every day after, with the counts in the log."""
        directory = Path(self.mktemp())
        directory.mkdir()
        clock = Clock()
        clock.advance(NOW)
        service = make_recordings_retention(
            directory, 90 * DAY, clock, run_blocking=inline
        )
        for n in range(3):
            path = directory / f"{new_uuid(n)}.wav"
            path.write_bytes(b"abc")
            os.utime(path, (NOW - 95 * DAY, NOW - 95 * DAY))
        with capturedLogs() as events:
            service.startService()
            self.addCleanup(service.stopService)
        (event,) = [e for e in events if "purged" in e["log_format"]]
        self.assertEqual((event["deleted"], event["freed_bytes"]), (3, 9))
        self.assertEqual(list(directory.iterdir()), [])
        path = directory / f"{new_uuid(9)}.wav"
        path.write_bytes(b"abc")
        os.utime(path, (NOW - 89.5 * DAY, NOW - 89.5 * DAY))
        with capturedLogs() as events:
            clock.advance(DAY)
        self.assertEqual([e["deleted"] for e in events], [1])

    def test_failure_logged_loop_goes_on(self) -> None:
        """A failing run is logged; the next day's run still happens."""
        clock = Clock()
        calls = []

        def broken(f: object) -> object:
            calls.append(1)
            raise OSError("disk gone")

        service = make_recordings_retention("x", DAY, clock, run_blocking=broken)
        with capturedLogs() as events:
            service.startService()
            clock.advance(DAY)
        service.stopService()
        self.assertEqual(len(calls), 2)
        self.assertEqual(len([e for e in events if "log_failure" in e]), 2)
        self.flushLoggedErrors(OSError)
