"""
Building a door opener from the ``[door]`` section of ``etc/gatekeeper.ini``.

Keys (all optional; ``mode = none`` when the section is absent)::

    mode         none | http | dtmf | command
    timeout      seconds per attempt (default 5)
    # http
    url          relay URL; may use {apartment}, {call_uuid}, {gate}
    method       GET (default) or POST
    body         POST body (default none)
    content_type POST body type (default application/x-www-form-urlencoded)
    username     basic auth user (default none)
    password     basic auth password; GATEKEEPER_DOOR_PASSWORD wins when set
    retry_delay  seconds before the one retry (default 0.5)
    # dtmf
    digits       the door code; GATEKEEPER_DOOR_DIGITS wins when set
    # command
    command      program and leading arguments, split like a shell would
                 (apartment and call UUID are appended)

Secrets may live in the environment so the file can be world-readable.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from typing import Any

from twisted.web.client import Agent, HTTPConnectionPool

from gatekeeper.door.command import CommandDoorOpener
from gatekeeper.door.dtmf import DTMFDoorOpener
from gatekeeper.door.http import HTTPDoorOpener
from gatekeeper.door.interfaces import IDoorOpener, IDTMFPlayer
from gatekeeper.door.none import NoDoorOpener

__all__ = [
    "DIGITS_ENV",
    "MODES",
    "PASSWORD_ENV",
    "DoorSettingsError",
    "door_opener_from_section",
]

MODES = ("none", "http", "dtmf", "command")
PASSWORD_ENV = "GATEKEEPER_DOOR_PASSWORD"
DIGITS_ENV = "GATEKEEPER_DOOR_DIGITS"
_KEYS = {
    "none": {"mode"},
    "http": {
        "mode",
        "timeout",
        "url",
        "method",
        "body",
        "content_type",
        "username",
        "password",
        "retry_delay",
    },
    "dtmf": {"mode", "timeout", "digits"},
    "command": {"mode", "timeout", "command"},
}


class DoorSettingsError(ValueError):
    """The door settings cannot work; the message names the key."""


def _number(section: Mapping[str, str], key: str, default: float, name: str) -> float:
    text = section.get(key, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DoorSettingsError(f"[{name}] {key} = {text!r} is not a number") from None
    if not value > 0 and not (key == "retry_delay" and value == 0):
        raise DoorSettingsError(f"[{name}] {key} must be above 0, not {value:g}")
    return value


def door_opener_from_section(
    section: Mapping[str, str],
    *,
    reactor: Any,
    dtmf_player: IDTMFPlayer | None = None,
    environ: Mapping[str, str] | None = None,
    name: str = "door",
) -> IDoorOpener:
    """
    The opener ``section`` describes; :class:`DoorSettingsError` if it cannot work.

    ``reactor`` provides time, TCP and processes; ``dtmf_player`` is the AMI
    dialer (needed for ``mode = dtmf``); ``name`` is the section's name in
    messages (``door.north`` for a gate's own section).
    """
    env = os.environ if environ is None else environ
    mode = section.get("mode", "none").strip().lower() or "none"
    if mode not in MODES:
        raise DoorSettingsError(
            f"[{name}] mode = {mode!r} is not one of {', '.join(MODES)}"
        )
    unknown = sorted(set(section) - _KEYS[mode])
    if unknown:
        raise DoorSettingsError(
            f"[{name}] {', '.join(unknown)}: not used with mode = {mode}"
        )
    timeout = _number(section, "timeout", 5.0, name)
    try:
        if mode == "http":
            url = section.get("url", "").strip()
            if not url:
                raise DoorSettingsError(f"[{name}] url is required with mode = http")
            username = section.get("username", "").strip() or None
            password = env.get(PASSWORD_ENV) or section.get("password") or None
            if username is None:
                password = None
            elif password is None:
                raise DoorSettingsError(
                    f"[{name}] username is set but no password (set password or"
                    f" {PASSWORD_ENV})"
                )
            body = section.get("body")
            agent = Agent(
                reactor,
                connectTimeout=timeout,
                pool=HTTPConnectionPool(reactor, persistent=False),
            )
            return HTTPDoorOpener(
                agent,
                url,
                clock=reactor,
                method=section.get("method", "GET").strip().upper(),
                body=None if body is None else body.encode("utf-8"),
                content_type=section.get(
                    "content_type", "application/x-www-form-urlencoded"
                ).strip(),
                username=username,
                password=password,
                timeout=timeout,
                retry_delay=_number(section, "retry_delay", 0.5, name),
            )
        if mode == "dtmf":
            if dtmf_player is None:
                raise DoorSettingsError(
                    f"[{name}] mode = dtmf needs the AMI dialer, which is not"
                    " configured"
                )
            digits = env.get(DIGITS_ENV) or section.get("digits", "").strip()
            if not digits:
                raise DoorSettingsError(
                    f"[{name}] digits (or {DIGITS_ENV}) is required with mode = dtmf"
                )
            return DTMFDoorOpener(dtmf_player, digits, clock=reactor, timeout=timeout)
        if mode == "command":
            argv = shlex.split(section.get("command", ""))
            if not argv:
                raise DoorSettingsError(
                    f"[{name}] command is required with mode = command"
                )
            if shutil.which(argv[0]) is None:
                raise DoorSettingsError(
                    f"[{name}] command: {argv[0]!r} is not an executable program"
                )
            return CommandDoorOpener(
                argv, reactor=reactor, clock=reactor, timeout=timeout
            )
    except DoorSettingsError:
        raise
    except ValueError as e:
        raise DoorSettingsError(f"[{name}] {e}") from None
    return NoDoorOpener()
