"""
Wiring: configuration in, the ``MultiService`` tree out.

Building each object and attaching it are kept apart, so tests can build the
pieces alone (with a ``Clock`` and a memory reactor) or the whole tree (with
the real reactor, on 127.0.0.1).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

from gatekeeper.accesslog import AccessLog
from gatekeeper.audiosocket.interfaces import ICallBinder
from gatekeeper.audiosocket.protocol import AudioSocketFactory, ListenerPolicy
from gatekeeper.config import Config, ConfigError
from gatekeeper.dialer.dialer import AMIDialer
from gatekeeper.dialer.settings import AMISettingsError
from gatekeeper.directory import DirectoryError, DirectoryService
from gatekeeper.door import (
    DoorSettingsError,
    GateDoorOpener,
    IDoorOpener,
    door_opener_from_section,
)
from gatekeeper.echo import EchoApplication
from gatekeeper.fastpath import install_fast_poll
from gatekeeper.flow.conversation import ConversationFactory, VisitServices
from gatekeeper.listening import ListeningService
from gatekeeper.media.pacer import Pacer
from gatekeeper.media.prompts import PromptError, PromptLibrary
from gatekeeper.media.vad import VadSettings
from gatekeeper.session.registry import SessionRegistry
from gatekeeper.web.metrics import CountingDoorOpener, DoorCounts
from gatekeeper.web.retention import make_recordings_retention
from gatekeeper.web.service import make_web_service
from gatekeeper.web.settings import WebSettingsError

__all__ = ["AudioSocketService", "makeService", "make_pacer", "make_policy"]

_log = Logger()


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
        lead=config.pacer.lead_ms / 1000,
    )


class AudioSocketService(ListeningService):
    """The listener; on stop it also hangs up every call it still carries."""

    def __init__(self, reactor: IReactorCore, config: Config, binder: ICallBinder):
        self.factory = AudioSocketFactory(
            binder,
            reactor,  # type: ignore[arg-type]
            make_policy(config),
            direct_send=config.performance.direct_send,
        )
        self.shutdown_timeout = config.audiosocket.shutdown_timeout
        super().__init__(
            reactor, config.audiosocket.listen, self.factory, "AudioSocket"
        )

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
    if config.audiosocket.app == "echo":
        binder: ICallBinder = EchoApplication(pacer)
        listener = AudioSocketService(reactor, config, binder)
        listener.setName("audiosocket")
        listener.setServiceParent(top)
    else:
        _visit_tree(top, config, reactor, pacer)
    _PacerStopper(pacer).setServiceParent(top)
    return top


def _visit_tree(
    top: MultiService, config: Config, reactor: IReactorCore, pacer: Pacer
) -> None:
    """
    The doorman: access log, AMI dialer, listener, session registry.

    Children start in this order and are stopped in the reverse: the registry
    first (it ends each live visit as ``shutdown``, which writes its record),
    then the listener, the dialer, and last the access log, which waits for
    the records still being written.
    """
    access_log = make_access_log(config, reactor)
    access_log.setName("accesslog")
    access_log.setServiceParent(top)
    if config.accesslog.retention_days > 0:
        access_log.retention_service(
            config.accesslog.retention_days * 86400
        ).setServiceParent(top)
    dialer = make_dialer(config, reactor)
    if dialer is not None:
        dialer.setName("ami")
        dialer.setServiceParent(top)
    doors = DoorCounts()
    door = CountingDoorOpener(make_door(config, reactor, dialer), doors)
    if config.accesslog.retention_days > 0:
        # Recordings follow the visits' retention, whether the web is on or not.
        make_recordings_retention(
            config.recording.directory,
            config.accesslog.retention_days * 86400,
            reactor,
        ).setServiceParent(top)
    registry = SessionRegistry(
        reactor,  # type: ignore[arg-type]
        grace_period=config.session.grace_period,
        stop_timeout=config.session.stop_timeout,
        remember_ended=config.session.remember_ended,
    )
    services = VisitServices(
        clock=reactor,  # type: ignore[arg-type]
        pacer=pacer,
        prompts=make_prompts(config),
        directory=make_directory(config),
        access_log=access_log,
        door=door,
        dialer=dialer,
        registry=registry,
        recordings=Path(config.recording.directory),
        flow=config.flow,
        inband_dtmf=config.dtmf.inband,
        vad=VadSettings(
            trailing_silence=config.recording.trailing_silence,
            no_speech_timeout=config.recording.no_speech_timeout,
            max_length=config.recording.max_length,
        ),
    )
    registry.listener_factory = ConversationFactory(services)
    listener = AudioSocketService(reactor, config, registry)
    listener.setName("audiosocket")
    listener.setServiceParent(top)
    registry.setName("registry")
    registry.setServiceParent(top)
    _ReloadOnHangup(services.directory).setServiceParent(top)
    try:
        web = make_web_service(
            config.web,
            reactor=reactor,
            registry=registry,
            access_log=access_log,
            recordings=Path(config.recording.directory),
            listener=listener,
            dialer=dialer,
            pacer=pacer,
            doors=doors,
        )
    except WebSettingsError as e:
        raise ConfigError(f"{config.path}: {e}") from None
    if web is not None:
        web.setName("web")
        web.setServiceParent(top)


def make_access_log(config: Config, reactor: IReactorCore) -> AccessLog:
    section = config.accesslog
    if section.dsn:
        return AccessLog.postgres(
            section.dsn,
            pool_size=section.pool_size,
            reactor=reactor,  # type: ignore[arg-type]
        )
    Path(section.database).parent.mkdir(parents=True, exist_ok=True)
    return AccessLog.sqlite(section.database, reactor=reactor)  # type: ignore[arg-type]


def make_dialer(config: Config, reactor: IReactorCore) -> AMIDialer | None:
    try:
        settings = config.ami_settings()
    except AMISettingsError as e:
        raise ConfigError(f"{config.path}: {e}") from None
    if settings is None:
        _log.warn(
            "AMI is off ([ami] secret not set): visitors will be answered and "
            "told that residents cannot be reached"
        )
        return None
    return AMIDialer.from_settings(reactor, settings)  # type: ignore[arg-type]


def make_prompts(config: Config) -> PromptLibrary:
    try:
        if config.prompts.directory:
            return PromptLibrary.load(config.prompts.directory)
        return PromptLibrary.load()
    except PromptError as e:
        raise ConfigError(f"{config.path}: [prompts] {e}") from None


def make_directory(config: Config) -> DirectoryService:
    try:
        return DirectoryService(config.directory.file, dict(config.directory_gates))
    except DirectoryError as e:
        where = config.path or "the configuration file (--config)"
        raise ConfigError(
            f"residents directory {e} (set [directory] file in {where})"
        ) from None


def make_door(
    config: Config, reactor: IReactorCore, dialer: AMIDialer | None
) -> IDoorOpener:
    def opener(items: tuple[tuple[str, str], ...], name: str) -> IDoorOpener:
        try:
            return door_opener_from_section(
                dict(items), reactor=reactor, dtmf_player=dialer, name=name
            )
        except DoorSettingsError as e:
            raise ConfigError(f"{config.path}: {e}") from None

    default = opener(config.door, "door")
    if not config.door_gates:
        return default
    return GateDoorOpener(
        default,
        {gate: opener(items, f"door.{gate}") for gate, items in config.door_gates},
    )


class _PacerStopper(Service):
    """Stops the pacer's timer with the server, so nothing outlives it."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def stopService(self) -> None:
        super().stopService()
        self.pacer.stop()


class _ReloadOnHangup(Service):
    """SIGHUP reloads the residents directory; live calls keep what they had."""

    def __init__(self, directory: DirectoryService) -> None:
        self.directory = directory
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        if hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> None:
        super().stopService()
        if hasattr(signal, "SIGHUP") and self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)

    def _hangup(self, signum: int, frame: object) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self._reload)  # type: ignore[attr-defined]

    def _reload(self) -> None:
        errors = self.directory.reload()
        _log.info(
            "residents directory reloaded ({errors} file(s) kept their old version)",
            errors=len(errors),
        )
