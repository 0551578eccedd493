"""
``[web]``: where the operations web service listens and who may use it.

The section is checked when the configuration is loaded, like every other:
a malformed password hash or a token too short to be a secret stops the
server at start, naming the key.  Whether any credential is configured at
all is checked when the service is built (:meth:`WebConfig.credentials`),
because the token may also come from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import field, frozen, validators
from twisted.internet.endpoints import serverFromString

from gatekeeper.web.auth import PasswordHashError, check_password_hash

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "Credentials",
    "WebConfig",
    "WebSettingsError",
]

#: The bearer token may come from here instead of the file (systemd's
#: ``EnvironmentFile=``, a secrets manager), like the AMI secret.
TOKEN_ENV = "GATEKEEPER_WEB_TOKEN"

#: A token shorter than this is a password, not a secret: refused.
MIN_TOKEN_LENGTH = 24


class WebSettingsError(ValueError):
    """The web service cannot start with these settings; the message says why."""


def _endpoint(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        serverFromString(None, value)  # type: ignore[arg-type]
    except Exception as e:
        raise ValueError(f"not a server endpoint description ({e})") from None


def _token(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value and len(value) < MIN_TOKEN_LENGTH:
        # Never echo the value: it is (an attempt at) a secret.
        raise ValueError(
            f"the token must be at least {MIN_TOKEN_LENGTH} characters "
            f"(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if any(c.isspace() for c in value):
        raise ValueError("the token may not contain spaces")


def parse_users(entries: tuple[str, ...]) -> dict[str, str]:
    """``name:hash`` entries as a dict; ValueError naming the bad entry's user."""
    users: dict[str, str] = {}
    for entry in entries:
        name, colon, encoded = entry.partition(":")
        name = name.strip()
        if not colon or not name:
            raise ValueError(
                "each user is name:hash (make the hash with gatekeeper-passwd)"
            )
        if not name.isprintable() or any(c.isspace() for c in name) or len(name) > 64:
            raise ValueError(f"user name {name!r} is not acceptable")
        if name in users:
            raise ValueError(f"user {name!r} is listed twice")
        try:
            check_password_hash(encoded.strip())
        except PasswordHashError as e:
            raise ValueError(f"user {name!r}: {e}") from None
        users[name] = encoded.strip()
    return users


def _users(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    parse_users(value)


@frozen
class Credentials:
    """Who may use the web service: a bearer token, users, or both."""

    token: str | None
    users: Mapping[str, str]

    def __bool__(self) -> bool:
        return bool(self.token) or bool(self.users)


@frozen(repr=False)
class WebConfig:
    """``[web]``: the operations web service (off unless enabled)."""

    enabled: bool = False
    listen: str = field(default="tcp:8080:interface=127.0.0.1", validator=_endpoint)
    # Plain text in the file (or $GATEKEEPER_WEB_TOKEN); compared in constant time.
    token: str = field(default="", validator=_token)
    # name:scrypt$... entries from gatekeeper-passwd; never plain passwords.
    users: tuple[str, ...] = field(default=(), validator=_users)
    session_timeout: float = field(
        default=43200.0, validator=[validators.gt(0), validators.le(30 * 86400)]
    )
    # Send the session cookie only over HTTPS even when the request came
    # in plain (TLS ended by a reverse proxy in front of us).
    secure_cookies: bool = False
    live_refresh: float = field(
        default=1.0, validator=[validators.ge(0.2), validators.le(60)]
    )

    def __repr__(self) -> str:
        # The token and the hashes must not end up in a log line or traceback.
        return (
            f"WebConfig(enabled={self.enabled!r}, listen={self.listen!r}, "
            f"token={'<set>' if self.token else '<unset>'}, "
            f"users={len(self.users)}, session_timeout={self.session_timeout!r}, "
            f"secure_cookies={self.secure_cookies!r}, "
            f"live_refresh={self.live_refresh!r})"
        )

    def credentials(self, environ: Mapping[str, str] | None = None) -> Credentials:
        """
        The credentials to accept; :class:`WebSettingsError` if there are none.

        There is no default credential: visit history and recordings are
        personal data, so a web service nobody configured a login for must
        not start.
        """
        environ = os.environ if environ is None else environ
        token = self.token or environ.get(TOKEN_ENV, "").strip() or None
        if token is not None and self.token == "":
            try:
                _token(None, None, token)  # type: ignore[arg-type]
            except ValueError as e:
                raise WebSettingsError(f"${TOKEN_ENV}: {e}") from None
        credentials = Credentials(token=token, users=parse_users(self.users))
        if not credentials:
            raise WebSettingsError(
                "[web] is enabled but no credential is configured: set [web] "
                f"token (or ${TOKEN_ENV}) and/or [web] users (hashes from "
                "gatekeeper-passwd); there is no default login"
            )
        return credentials
