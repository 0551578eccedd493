"""
Run gatekeeper from a configuration file, for tests that attack it from
another process: ``python -m tests.security.serve CONFIG LOG``.

It is ``makeService`` on the real reactor, as ``twist gatekeeper`` runs it,
with its log written to the file ``LOG`` (not kept in memory, which would
count against the server's RSS), and it prints ``PORT <n>`` once listening
so the test can use port 0.  SIGTERM stops it cleanly.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from gatekeeper.config import parse_config
from gatekeeper.service import makeService


def main(argv: list[str]) -> int:
    config_path, log_path = argv[1], argv[2]
    log = open(log_path, "a")  # noqa: SIM115 - open for the process's life
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(log)], redirectStandardIO=False
    )
    config = parse_config(Path(config_path).read_text(), config_path)
    top = makeService(config, reactor)
    listener = top.getServiceNamed("audiosocket")
    listener.when_listening().addCallback(  # type: ignore[attr-defined]
        lambda port: print(f"PORT {port.getHost().port}", flush=True)
    )
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
