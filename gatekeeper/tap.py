"""
``twistd gatekeeper`` / ``twist gatekeeper``: options in, service tree out.

This module only parses the command line and loads the configuration; all
wiring lives in :mod:`gatekeeper.service`.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.application.service import IService
from twisted.python import usage

from gatekeeper import service
from gatekeeper.config import APPS, Config, ConfigError, load_config, parse_config

__all__ = ["Options", "makeService"]

DEFAULT_CONFIG = "etc/gatekeeper.ini"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run gatekeeper, the virtual doorman: an Asterisk AudioSocket server. "
        f"Without --config it reads {DEFAULT_CONFIG} when that file exists and "
        "runs on embedded defaults otherwise."
    )
    optParameters = [
        ["listen", None, None, "AudioSocket endpoint, e.g. tcp:9092:interface=127.0.0.1 "
         "(overrides [audiosocket] listen)."],
        ["config", "c", None, f"Configuration file (default: {DEFAULT_CONFIG} if present)."],
        ["app", None, None, f"What each call runs: {', '.join(APPS)} (overrides "
         "[audiosocket] app)."],
    ]  # fmt: skip

    def postOptions(self) -> None:
        try:
            self["gatekeeper_config"] = self._load()
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _load(self) -> Config:
        path = self["config"]
        if path is None and Path(DEFAULT_CONFIG).is_file():
            path = DEFAULT_CONFIG
        config = load_config(path)
        overrides = {
            key: self[key] for key in ("listen", "app") if self[key] is not None
        }
        if overrides:
            # Re-validate through the same path a file takes.
            text = "[audiosocket]\n" + "".join(
                f"{key} = {value}\n" for key, value in overrides.items()
            )
            section = parse_config(text, "command line").audiosocket
            config = attrs.evolve(
                config,
                audiosocket=attrs.evolve(
                    config.audiosocket,
                    **{key: getattr(section, key) for key in overrides},
                ),
            )
        return config


def makeService(options: Options) -> IService:
    try:
        return service.makeService(options["gatekeeper_config"])
    except ConfigError as e:
        # A clean one-line refusal, not a traceback, and a failing exit code.
        raise SystemExit(f"gatekeeper: cannot start: {e}") from None
