"""
Settings of the AMI dialer: the ``[ami]`` section of ``etc/gatekeeper.ini``.

The manager secret may live in the file or, better, in the environment
(``GATEKEEPER_AMI_SECRET`` wins when set), and is held in a :class:`Secret`
whose ``repr`` and ``str`` never show it, so a settings object can be logged
or shown in a traceback without leaking it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

__all__ = ["SECRET_ENV", "AMISettings", "AMISettingsError", "Secret"]

SECRET_ENV = "GATEKEEPER_AMI_SECRET"


class AMISettingsError(ValueError):
    """The ``[ami]`` settings cannot work; the message says which key and why."""


@frozen(repr=False)
class Secret:
    """A credential that prints as asterisks; ``reveal()`` is the only way in."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})")
_NAME = re.compile(r"[A-Za-z0-9_\-.+]+")


def _no_newlines(inst: object, attribute: Any, value: str) -> None:
    if not isinstance(value, str):
        raise AMISettingsError(f"[ami] {attribute.name} must be text")
    if "\r" in value or "\n" in value:
        raise AMISettingsError(f"[ami] {attribute.name} may not contain line breaks")


def _nonempty(inst: object, attribute: Any, value: str) -> None:
    _no_newlines(inst, attribute, value)
    if not value.strip():
        raise AMISettingsError(f"[ami] {attribute.name} may not be empty")


def _dialplan_name(inst: object, attribute: Any, value: str) -> None:
    _nonempty(inst, attribute, value)
    if _NAME.fullmatch(value) is None:
        raise AMISettingsError(
            f"[ami] {attribute.name} = {value!r} is not a dialplan name "
            f"(letters, digits, '_', '-', '.', '+')"
        )


def _positive(inst: object, attribute: Any, value: float) -> None:
    if not value > 0:
        raise AMISettingsError(f"[ami] {attribute.name} must be above 0, not {value}")


def _check_template(inst: object, attribute: Any, value: str) -> None:
    _nonempty(inst, attribute, value)
    try:
        sample = value.format(extension="101")
    except (KeyError, IndexError, ValueError) as e:
        raise AMISettingsError(
            f"[ami] channel_template = {value!r} may use only {{extension}}: {e}"
        ) from None
    if "{extension}" not in value or "/" not in sample:
        raise AMISettingsError(
            f"[ami] channel_template = {value!r} must look like TECH/...{{extension}}"
            f" (PJSIP/{{extension}}, Local/{{extension}}@context/n)"
        )


def _check_target(inst: object, attribute: Any, value: str) -> None:
    _nonempty(inst, attribute, value)
    match = _HOST_PORT.fullmatch(value)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise AMISettingsError(
            f"[ami] target = {value!r} must be host:port, the address Asterisk "
            f"connects to for AudioSocket (the GK_TARGET variable)"
        )


def _check_secret(inst: object, attribute: Any, value: Secret) -> None:
    if not isinstance(value, Secret) or not value:
        raise AMISettingsError(
            f"[ami] secret is not set: put it in the config file or in ${SECRET_ENV}"
        )
    _no_newlines(inst, attribute, value.reveal())


@frozen(kw_only=True)
class AMISettings:
    """How to reach Asterisk's manager and what to ask it to dial."""

    secret: Secret = field(validator=_check_secret)
    endpoint: str = field(default="tcp:127.0.0.1:5038", validator=_nonempty)
    username: str = field(default="gatekeeper", validator=_nonempty)
    events: str = field(default="on", validator=_nonempty)
    channel_template: str = field(
        default="PJSIP/{extension}", validator=_check_template
    )
    resident_context: str = field(
        default="gatekeeper-resident", validator=_dialplan_name
    )
    resident_exten: str = field(default="s", validator=_dialplan_name)
    resident_priority: int = field(default=1, validator=_positive)
    target: str = field(default="127.0.0.1:9092", validator=_check_target)
    """``host:port`` of our AudioSocket listener as Asterisk must dial it."""
    caller_id: str | None = field(default=None)
    action_timeout: float = field(default=10.0, validator=_positive)
    originate_grace: float = field(default=15.0, validator=_positive)
    """How long past the ring timeout to wait for ``OriginateResponse``."""
    backoff_initial: float = field(default=1.0, validator=_positive)
    backoff_max: float = field(default=60.0, validator=_positive)
    backoff_factor: float = field(default=2.0, validator=_positive)
    visitor_ttl: float = field(default=3600.0, validator=_positive)
    """How long a GatekeeperVisit announcement is remembered."""
    visitor_max: int = field(default=10000, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if ":" not in self.endpoint:
            raise AMISettingsError(
                f"[ami] endpoint = {self.endpoint!r} is not an endpoint string "
                f"(like tcp:127.0.0.1:5038)"
            )
        if self.backoff_max < self.backoff_initial:
            raise AMISettingsError("[ami] backoff_max must be >= backoff_initial")
        if self.backoff_factor < 1:
            raise AMISettingsError("[ami] backoff_factor must be >= 1")
        if self.caller_id is not None:
            _no_newlines(self, _Named("caller_id"), self.caller_id)

    def channel_for(self, extension: str) -> str:
        """The Originate ``Channel`` that rings ``extension``."""
        return self.channel_template.format(extension=extension)

    @classmethod
    def from_config(
        cls, section: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> AMISettings:
        """Settings from the ``[ami]`` section's strings and the environment;
        unknown keys are refused so a typo does not silently fall back."""
        environ = os.environ if environ is None else environ
        known = {a.name for a in cls.__attrs_attrs__}  # type: ignore[attr-defined]
        unknown = sorted(set(section) - known)
        if unknown:
            raise AMISettingsError(
                f"[ami] unknown key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        kwargs: dict[str, Any] = {}
        for a in cls.__attrs_attrs__:  # type: ignore[attr-defined]
            if a.name == "secret" or a.name not in section:
                continue
            text = section[a.name].strip()
            if a.type in ("float", float):
                kwargs[a.name] = _number(a.name, text, float)
            elif a.type in ("int", int):
                kwargs[a.name] = _number(a.name, text, int)
            elif a.name == "caller_id":
                kwargs[a.name] = text or None
            else:
                kwargs[a.name] = text
        secret = environ.get(SECRET_ENV) or section.get("secret", "")
        kwargs["secret"] = Secret(secret)
        return cls(**kwargs)


@frozen
class _Named:
    name: str


def _number(name: str, text: str, kind: type[float] | type[int]) -> Any:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise AMISettingsError(f"[ami] {name} = {text!r} is not {noun}") from None
