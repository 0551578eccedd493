"""
Configuration: ``etc/gatekeeper.ini`` into frozen attrs classes.

Each ``[section]`` of the file maps onto one frozen class below; each key onto
one field, converted by the field's type and checked by its validators.  A
bad value stops the server at start with a message that names the file, the
section, the key and the value, so nobody finds a typo in the middle of a
call.  Unknown sections and keys are refused for the same reason.  Every key
has a default, so the server also runs with no file at all.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen, validators
from twisted.internet.endpoints import serverFromString
from zope.interface import implementer

from gatekeeper.dialer.settings import SECRET_ENV, AMISettings, AMISettingsError
from gatekeeper.door.interfaces import IDTMFPlayer
from gatekeeper.door.settings import DoorSettingsError, door_opener_from_section
from gatekeeper.flow.machine import FlowSettings
from gatekeeper.web.settings import WebConfig

__all__ = [
    "AudioSocketConfig",
    "Config",
    "ConfigError",
    "PacerConfig",
    "PerformanceConfig",
    "load_config",
    "parse_config",
]

APPS = ("visit", "echo")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says where."""


def _endpoint(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        # Parsing builds an endpoint object but does not listen.
        serverFromString(None, value)  # type: ignore[arg-type]
    except Exception as e:  # any parse failure means the same to the user
        raise ValueError(f"not a server endpoint description ({e})") from None


def _nonempty(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ValueError("may not be empty")


def _network_list(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None


@frozen
class AudioSocketConfig:
    """``[audiosocket]``: the listener Asterisk connects to."""

    listen: str = field(default="tcp:9092:interface=127.0.0.1", validator=_endpoint)
    app: str = field(default="visit", validator=validators.in_(APPS))
    max_payload: int = field(
        default=16384, validator=[validators.ge(320), validators.le(65535)]
    )
    handshake_timeout: float = field(default=5.0, validator=validators.gt(0))
    idle_timeout: float = field(default=60.0, validator=validators.gt(0))
    max_connections: int = field(default=4096, validator=validators.ge(1))
    allow: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1"), validator=_network_list
    )
    shutdown_timeout: float = field(default=5.0, validator=validators.ge(0))


@frozen
class PacerConfig:
    """``[pacer]``: the shared 20 ms clock for outbound audio."""

    slots: int = field(default=20, validator=[validators.ge(1), validators.le(1000)])
    max_catchup: int = field(default=2, validator=[validators.ge(1), validators.le(50)])
    echo_queue_seconds: float = field(default=1.0, validator=validators.gt(0))
    # Milliseconds a slot may be served early: the reactor's timers wake in
    # whole milliseconds, so this keeps frames centred on their deadlines.
    lead_ms: float = field(default=0.5, validator=[validators.ge(0), validators.lt(1)])


@frozen
class SessionConfig:
    """``[session]``: how long a dropped leg may take to come back, and how
    long a finished call's UUID stays refused."""

    grace_period: float = field(default=10.0, validator=validators.ge(0))
    stop_timeout: float = field(default=5.0, validator=validators.ge(0))
    remember_ended: float = field(default=300.0, validator=validators.ge(0))


@frozen
class RecordingConfig:
    """``[recording]``: the visitor's recorded name."""

    directory: str = field(default="var/recordings", validator=_nonempty)
    trailing_silence: float = field(default=0.8, validator=validators.gt(0))
    no_speech_timeout: float = field(default=5.0, validator=validators.gt(0))
    max_length: float = field(default=5.0, validator=validators.gt(0))


@frozen
class DtmfConfig:
    """``[dtmf]``: digits sent as tones inside the audio, not as DTMF frames."""

    inband: bool = False


@frozen
class PromptsConfig:
    """``[prompts]``: the folder of WAV prompts (empty: the built-in pt-BR set)."""

    directory: str = ""


@frozen
class AccessLogConfig:
    """``[accesslog]``: where visit records go."""

    database: str = field(default="var/gatekeeper.sqlite3", validator=_nonempty)
    dsn: str = ""
    pool_size: int = field(default=3, validator=[validators.ge(1), validators.le(64)])
    retention_days: float = field(default=90.0, validator=validators.ge(0))


@frozen
class DirectoryConfig:
    """``[directory]``: the residents directory (``[directory.gates]`` for more)."""

    file: str = field(default="etc/residents.csv", validator=_nonempty)


@frozen
class PerformanceConfig:
    """``[performance]``: bypasses of Twisted's generic paths (gatekeeper.fastpath)."""

    direct_send: bool = True
    lean_poll: bool = True


Pairs = tuple[tuple[str, str], ...]


@frozen
class Config:
    path: str | None = None
    audiosocket: AudioSocketConfig = field(factory=AudioSocketConfig)
    pacer: PacerConfig = field(factory=PacerConfig)
    performance: PerformanceConfig = field(factory=PerformanceConfig)
    session: SessionConfig = field(factory=SessionConfig)
    flow: FlowSettings = field(factory=FlowSettings)
    recording: RecordingConfig = field(factory=RecordingConfig)
    dtmf: DtmfConfig = field(factory=DtmfConfig)
    prompts: PromptsConfig = field(factory=PromptsConfig)
    accesslog: AccessLogConfig = field(factory=AccessLogConfig)
    directory: DirectoryConfig = field(factory=DirectoryConfig)
    web: WebConfig = field(factory=WebConfig)
    # Sections parsed by their owners (gate names to files, the AMI login,
    # the door opener), kept as the file's strings and checked at load.
    directory_gates: Pairs = ()
    ami: Pairs | None = None
    door: Pairs = ()
    door_gates: tuple[tuple[str, Pairs], ...] = ()

    def ami_settings(
        self, environ: Mapping[str, str] | None = None
    ) -> AMISettings | None:
        """The AMI login, or None when no secret is configured (AMI off)."""
        section = dict(self.ami or ())
        environ = os.environ if environ is None else environ
        if not (section.get("secret") or environ.get(SECRET_ENV)):
            return None
        return AMISettings.from_config(section, environ)


_SECTIONS: Mapping[str, type] = {
    "audiosocket": AudioSocketConfig,
    "pacer": PacerConfig,
    "performance": PerformanceConfig,
    "session": SessionConfig,
    "flow": FlowSettings,
    "recording": RecordingConfig,
    "dtmf": DtmfConfig,
    "prompts": PromptsConfig,
    "accesslog": AccessLogConfig,
    "directory": DirectoryConfig,
    "web": WebConfig,
}
# Sections whose keys their owners check: kept as strings.
_RAW_SECTIONS = ("ami", "door", "directory.gates")


def _convert(kind: Any, raw: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise ValueError("expected yes or no")
    if kind is int:
        return int(raw.strip())
    if kind is float:
        return float(raw.strip())
    if kind is str:
        return raw.strip()
    if typing.get_origin(kind) is tuple:
        return tuple(
            item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()
        )
    if isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind):
        if not raw.strip():
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(inner[0], raw)
    raise TypeError(f"no converter for {kind!r}")  # pragma: no cover - our bug


def _section(cls: type, name: str, items: Mapping[str, str], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in items.items():
        where = f"{source}: [{name}] {key} = {raw!r}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key (known keys: {known})")
        try:
            value = _convert(hints[key], raw)
            if fields[key].validator is not None:
                fields[key].validator(None, fields[key], value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: {_reason(e)}") from None
        values[key] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: [{name}]: {_reason(e)}") from None


def _reason(error: Exception) -> str:
    """attrs' validators put a tuple in args; say it in words."""
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def parse_config(text: str, source: str = "<string>") -> Config:
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#", ";"), default_section="\0"
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise ConfigError(f"{source}: {e}") from None
    sections: dict[str, Any] = {}
    door_gates: list[tuple[str, Pairs]] = []
    for name in parser.sections():
        items = tuple((key, value) for key, value in parser[name].items())
        if name == "ami":
            sections["ami"] = items or None
        elif name == "door":
            sections["door"] = items
        elif name == "directory.gates":
            sections["directory_gates"] = items
        elif name.startswith("door."):
            door_gates.append((name.removeprefix("door."), items))
        elif name in _SECTIONS:
            sections[name] = _section(_SECTIONS[name], name, parser[name], source)
        else:
            known = ", ".join(sorted([*_SECTIONS, *_RAW_SECTIONS, "door.<gate>"]))
            raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
    config = Config(path=source, door_gates=tuple(door_gates), **sections)
    _check_owned_sections(config, source)
    return config


def _check_owned_sections(config: Config, source: str) -> None:
    """Let each owner refuse its section now, at start, not on the first call."""
    try:
        if config.ami is not None:
            section = dict(config.ami)
            # Checked with a stand-in secret: it may come from the environment.
            section["secret"] = section.get("secret") or "checked-at-start"
            AMISettings.from_config(section, {})
    except AMISettingsError as e:
        raise ConfigError(f"{source}: {e}") from None
    # The AMI dialer plays a DTMF door's code; stand in for it while checking.
    player = _NoDTMFPlayer() if config.ami is not None else None
    for gate, items in (("", config.door), *config.door_gates):
        name = f"door.{gate}" if gate else "door"
        try:
            door_opener_from_section(
                dict(items), reactor=_NO_REACTOR, dtmf_player=player, name=name
            )
        except DoorSettingsError as e:
            raise ConfigError(f"{source}: {e}") from None
        except Exception:
            pass


class _NoReactor:
    """Stands in for the reactor while a door section is only being checked."""


@implementer(IDTMFPlayer)
class _NoDTMFPlayer:
    """Stands in for the AMI dialer while a ``dtmf`` door section is checked."""

    def play_dtmf(self, channel: str, digits: str) -> Any:  # pragma: no cover
        raise NotImplementedError("only checked at start, never played")


_NO_REACTOR = _NoReactor()


def load_config(path: str | Path | None) -> Config:
    """The file's configuration; embedded defaults when ``path`` is None."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration ({e.strerror})") from None
    return parse_config(text, str(path))
