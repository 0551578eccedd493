"""
Wiring: configuration in, the ``MultiService`` tree out.

Building each object and attaching it are kept apart, so tests can build the
pieces alone (with a ``Clock`` and a memory reactor) or the whole tree (with
the real reactor, on 127.0.0.1).
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger

from gatekeeper.audiosocket.interfaces import ICallBinder
from gatekeeper.audiosocket.protocol import AudioSocketFactory, ListenerPolicy
from gatekeeper.config import Config
from gatekeeper.echo import EchoApplication
from gatekeeper.fastpath import install_fast_poll
from gatekeeper.media.pacer import Pacer

__all__ = ["AudioSocketService", "makeService", "make_pacer", "make_policy"]


def make_policy(config: Config) -> ListenerPolicy:
    section = config.audiosocket
    return ListenerPolicy(
        max_payload=section.max_payload,
        handshake_timeout=section.handshake_timeout,
        idle_timeout=section.idle_timeout,
        max_connections=section.max_connections,
        allow=section.allow,
    )


def make_pacer(config: Config, clock: IReactorTime) -> Pacer:
    return Pacer(
        clock,
        slots=config.pacer.slots,
        max_catchup=config.pacer.max_catchup,
        max_queued_seconds=config.pacer.echo_queue_seconds,
    )


class AudioSocketService(StreamServerEndpointService):
    """The listener; on stop it also hangs up every call it still carries."""

    _log = Logger()

    def __init__(self, reactor: IReactorCore, config: Config, binder: ICallBinder):
        self.factory = AudioSocketFactory(
            binder,
            reactor,  # type: ignore[arg-type]
            make_policy(config),
            direct_send=config.performance.direct_send,
        )
        self.shutdown_timeout = config.audiosocket.shutdown_timeout
        super().__init__(
            serverFromString(reactor, config.audiosocket.listen), self.factory
        )
        # Fail twistd at start when the port cannot be had, not later.
        self._raiseSynchronously = True
        self.port: IListeningPort | None = None
        self._listen_waiters: list[Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._log.info("AudioSocket listening on {address}", address=port.getHost())
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

    def stopService(self) -> Deferred[None]:
        stopped = super().stopService()
        hung_up = self.factory.hang_up_all(self.shutdown_timeout)
        return stopped.addCallback(lambda _: hung_up)


def makeService(config: Config, reactor: IReactorCore | None = None) -> MultiService:
    """The whole server for ``config``: the tree twistd runs."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor  # type: ignore[assignment]
    assert reactor is not None
    top = MultiService()
    if config.performance.lean_poll:
        install_fast_poll(reactor)
    pacer = make_pacer(config, reactor)  # type: ignore[arg-type]
    binder: ICallBinder = EchoApplication(pacer)
    listener = AudioSocketService(reactor, config, binder)
    listener.setName("audiosocket")
    listener.setServiceParent(top)
    _PacerStopper(pacer).setServiceParent(top)
    return top


class _PacerStopper(Service):
    """Stops the pacer's timer with the server, so nothing outlives it."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def stopService(self) -> None:
        super().stopService()
        self.pacer.stop()
