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
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen, validators
from twisted.internet.endpoints import serverFromString

__all__ = [
    "AudioSocketConfig",
    "Config",
    "ConfigError",
    "PacerConfig",
    "PerformanceConfig",
    "load_config",
    "parse_config",
]

APPS = ("echo",)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says where."""


def _endpoint(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        # Parsing builds an endpoint object but does not listen.
        serverFromString(None, value)  # type: ignore[arg-type]
    except Exception as e:  # any parse failure means the same to the user
        raise ValueError(f"not a server endpoint description ({e})") from None


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
    app: str = field(default="echo", validator=validators.in_(APPS))
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


@frozen
class PerformanceConfig:
    """``[performance]``: bypasses of Twisted's generic paths (gatekeeper.fastpath)."""

    direct_send: bool = True
    lean_poll: bool = True


@frozen
class Config:
    path: str | None = None
    audiosocket: AudioSocketConfig = AudioSocketConfig()
    pacer: PacerConfig = PacerConfig()
    performance: PerformanceConfig = PerformanceConfig()


_SECTIONS: Mapping[str, type] = {
    "audiosocket": AudioSocketConfig,
    "pacer": PacerConfig,
    "performance": PerformanceConfig,
}


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
    for name in parser.sections():
        if name not in _SECTIONS:
            known = ", ".join(sorted(_SECTIONS))
            raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
        sections[name] = _section(_SECTIONS[name], name, parser[name], source)
    return Config(path=source, **sections)


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
