"""
The ``command`` opener: run a local program, for relays driven by GPIO, a
serial line or a vendor tool.

The program gets the apartment and the call UUID as its last two arguments
(and ``GK_APARTMENT``, ``GK_CALL_UUID``, ``GK_GATE`` in its environment).
Exit status 0 means opened; anything else is a failure whose detail carries
the end of its stderr.  A program still running at the timeout gets SIGTERM,
then SIGKILL after a grace period; the result waits for it to exit, so no
stray process outlives its visit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import DoorContext, DoorResult, never_fails

__all__ = ["CommandDoorOpener"]

_TAIL = 400


class _Run(ProcessProtocol):
    """One run of the program: keeps the tail of stderr, reports the exit."""

    def __init__(self, done: Deferred[tuple[int | None, int | None, bytes]]) -> None:
        self._done = done
        self._stderr = b""

    def outReceived(self, data: bytes) -> None:
        pass  # stdout is not ours to judge; reading it keeps the pipe flowing

    def errReceived(self, data: bytes) -> None:
        self._stderr = (self._stderr + data)[-_TAIL:]

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        self._done.callback(
            (
                getattr(value, "exitCode", None),
                getattr(value, "signal", None),
                self._stderr,
            )
        )


@implementer(IDoorOpener)
class CommandDoorOpener:
    """Runs ``argv + [apartment, call_uuid]``; exit 0 means opened."""

    name = "command"
    _log = Logger()

    def __init__(
        self,
        argv: Sequence[str],
        *,
        reactor: IReactorProcess,
        clock: IReactorTime,
        timeout: float = 10.0,
        kill_grace: float = 2.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise ValueError("the door command must name a program")
        if timeout <= 0 or kill_grace <= 0:
            raise ValueError("timeout and kill_grace must be above 0")
        self._argv = tuple(argv)
        self._reactor = reactor
        self._clock = clock
        self._timeout = timeout
        self._kill_grace = kill_grace
        self._environ = dict(os.environ if environ is None else environ)

    def __repr__(self) -> str:
        return f"<CommandDoorOpener {self._argv[0]}>"

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        ended: Deferred[tuple[int | None, int | None, bytes]] = Deferred()
        env = dict(self._environ)
        env.update(
            GK_APARTMENT=apartment, GK_CALL_UUID=call_uuid, GK_GATE=context.gate or ""
        )
        args = [*self._argv, apartment, call_uuid]
        try:
            transport = self._reactor.spawnProcess(
                _Run(ended), self._argv[0], args, env=env
            )
        except OSError as e:
            detail = f"{self._argv[0]} could not be started: {e.strerror or e}"
            self._log.error(
                "door command for {call_uuid}: {detail}",
                call_uuid=call_uuid,
                detail=detail,
            )
            return succeed(DoorResult.failure(self.name, detail))

        timers: list[IDelayedCall] = []
        timed_out = []

        def signal(name: str) -> None:
            try:
                transport.signalProcess(name)
            except ProcessExitedAlready:
                return
            if name == "TERM":
                timers.append(self._clock.callLater(self._kill_grace, signal, "KILL"))

        def expire() -> None:
            timed_out.append(True)
            self._log.warn(
                "door command {program} for {call_uuid} still running after"
                " {timeout} s; stopping it",
                program=self._argv[0],
                call_uuid=call_uuid,
                timeout=self._timeout,
            )
            signal("TERM")

        timers.append(self._clock.callLater(self._timeout, expire))

        def judge(outcome: tuple[int | None, int | None, bytes]) -> DoorResult:
            for timer in timers:
                if timer.active():
                    timer.cancel()
            code, sig, stderr = outcome
            tail = stderr.decode("utf-8", "replace").strip()[-200:]
            if timed_out:
                detail = f"{self._argv[0]} timed out after {self._timeout:g} s"
            elif code == 0:
                detail = f"{self._argv[0]} exited 0"
            elif sig is not None:
                detail = f"{self._argv[0]} was killed by signal {sig}"
            else:
                detail = f"{self._argv[0]} exited {code}"
            if tail and code != 0:
                detail += f": {tail}"
            if code == 0 and not timed_out:
                self._log.info(
                    "door opened by {program} for {call_uuid} ({apartment})",
                    program=self._argv[0],
                    call_uuid=call_uuid,
                    apartment=apartment,
                )
                return DoorResult.success(self.name, detail)
            self._log.error(
                "door command failed for {call_uuid} ({apartment}): {detail}",
                call_uuid=call_uuid,
                apartment=apartment,
                detail=detail,
            )
            return DoorResult.failure(self.name, detail)

        return never_fails(ended.addCallback(judge), self.name, call_uuid, self._log)
