"""
Recordings older than the retention are deleted, and the deletion is logged.

A visitor's recorded name is personal data kept for as long as the visit's
row (``[accesslog] retention_days``, 90 days by default); the access log
purges its rows itself (:meth:`AccessLog.retention_service`), and this
service does the same for ``<call_uuid>.wav`` files in the recordings
directory, by their modification time, once a day.  Only files named by a
canonical call UUID are touched, never through a symbolic link, so a
misconfigured directory cannot lose anything else.

It runs whether or not the web service is enabled: the law does not care
whether anyone looks at the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from attrs import frozen
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["PurgeResult", "make_recordings_retention", "purge_recordings"]

_log = Logger()
_NAME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.wav")


@frozen
class PurgeResult:
    deleted: int
    kept: int
    failed: int
    freed_bytes: int


def purge_recordings(directory: Path | str, cutoff: float) -> PurgeResult:
    """Delete recordings last modified before ``cutoff`` (epoch seconds)."""
    deleted = kept = failed = freed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return PurgeResult(0, 0, 0, 0)
    for entry in entries:
        if _NAME.fullmatch(entry.name) is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime >= cutoff:
                kept += 1
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as e:
            failed += 1
            _log.warn(
                "cannot delete old recording {name}: {why}",
                name=entry.name,
                why=e.strerror,
            )
            continue
        deleted += 1
        freed += info.st_size
    return PurgeResult(deleted, kept, failed, freed)


def _in_thread(f: Callable[[], PurgeResult]) -> Deferred[PurgeResult]:
    from twisted.internet import threads

    return threads.deferToThread(f)


def make_recordings_retention(
    directory: Path | str,
    max_age: float,
    clock: IReactorTime,
    *,
    interval: float = 86400.0,
    run_blocking: Callable[
        [Callable[[], PurgeResult]], Deferred[PurgeResult]
    ] = _in_thread,
) -> TimerService:
    """
    A service purging recordings older than ``max_age`` seconds every
    ``interval`` (and once at start), each run logged with its counts.

    The directory scan runs on a thread; a failed run is logged and the next
    one happens on time (a TimerService whose call fails stops for good).
    """
    if not max_age > 0 or not interval > 0:
        raise ValueError("max_age and interval must be above 0")

    def purge() -> Deferred[None]:
        cutoff = clock.seconds() - max_age
        d = maybeDeferred(run_blocking, lambda: purge_recordings(directory, cutoff))

        def done(result: PurgeResult) -> None:
            _log.info(
                "purged {deleted} recordings older than {days:g} days from "
                "{directory} ({freed_bytes} bytes freed, {kept} kept, "
                "{failed} could not be deleted)",
                deleted=result.deleted,
                kept=result.kept,
                failed=result.failed,
                freed_bytes=result.freed_bytes,
                days=max_age / 86400,
                directory=str(directory),
            )

        def failed(failure: Failure) -> None:
            _log.failure(
                "purging recordings from {directory} failed",
                failure,
                directory=str(directory),
            )

        return d.addCallbacks(done, failed)

    timer = TimerService(interval, purge)
    timer.clock = clock
    timer.setName("recordings-retention")
    return timer
