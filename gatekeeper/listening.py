"""
A server endpoint service that says where it listens and when.

twistd's ``StreamServerEndpointService`` keeps its port to itself; tests,
the demo and the load benchmark listen on port 0 and need to learn the port
it got.  Both of gatekeeper's listeners (AudioSocket, web) are this.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger

__all__ = ["ListeningService"]


class ListeningService(StreamServerEndpointService):
    """Listens on an endpoint string; fails at start if the port is taken."""

    _log = Logger()

    def __init__(self, reactor: Any, listen: str, factory: Factory, what: str) -> None:
        super().__init__(serverFromString(reactor, listen), factory)
        self.listen = listen
        self.what = what
        # Fail twistd at start when the port cannot be had, not later.
        self._raiseSynchronously = True
        self.port: IListeningPort | None = None
        self._listen_waiters: list[Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._log.info(
            "{what} listening on {address}", what=self.what, address=port.getHost()
        )
        waiters, self._listen_waiters = self._listen_waiters, []
        for waiter in waiters:
            waiter.callback(port)
        return port

    def when_listening(self) -> Deferred[IListeningPort]:
        """Each caller's own Deferred of the listening port (tests, demos)."""
        if self.port is not None:
            return succeed(self.port)
        waiter: Deferred[IListeningPort] = Deferred()
        self._listen_waiters.append(waiter)
        return waiter
