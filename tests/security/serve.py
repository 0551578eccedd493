"""
Run gatekeeper from a configuration file, for tests that attack it from
another process: ``python -m tests.security.serve CONFIG LOG [--stats S [--collect]]``.

It is ``makeService`` on the real reactor, as ``twist gatekeeper`` runs it,
with its log written to the file ``LOG`` (not kept in memory, which would
count against the server's RSS), and it prints ``PORT <n>`` once listening
so the test can use port 0.  SIGTERM stops it cleanly.

With ``--stats S`` it also prints ``STATS <rss KiB> <heap blocks>`` every S
seconds, for the soak; the heap is Python's allocated blocks.  With
``--collect`` they are counted right after a full collection, so garbage not
yet collected does not hide a short trend, but RSS is then lower than a
server that collects on its own schedule would have.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogBeginner, textFileLogObserver

from gatekeeper.config import parse_config
from gatekeeper.service import makeService
from gatekeeper.testing.harness import rss_kb


def _print_stats(collect: bool) -> None:
    if collect:
        gc.collect()
    print(f"STATS {rss_kb(os.getpid())} {sys.getallocatedblocks()}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.serve")
    parser.add_argument("config")
    parser.add_argument("log")
    parser.add_argument("--stats", type=float, metavar="SECONDS")
    parser.add_argument("--collect", action="store_true")
    options = parser.parse_args(argv[1:])
    log = open(options.log, "a")  # noqa: SIM115 - open for the process's life
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(log)], redirectStandardIO=False
    )
    config = parse_config(Path(options.config).read_text(), options.config)
    top = makeService(config, reactor)
    listener = top.getServiceNamed("audiosocket")
    listener.when_listening().addCallback(  # type: ignore[attr-defined]
        lambda port: print(f"PORT {port.getHost().port}", flush=True)
    )
    if options.stats:
        LoopingCall(_print_stats, options.collect).start(options.stats, now=False)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
