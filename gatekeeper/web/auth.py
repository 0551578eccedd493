"""
Who may see visit history, recordings and metrics.

Two kinds of credential, both from the ini (there is no default one):

- a **bearer token** (``Authorization: Bearer <token>``), for Prometheus and
  scripts; it may also be typed into the login form;
- **users** with scrypt password hashes (``gatekeeper-passwd`` makes them),
  for people: the login form (``POST /login``) checks the password once and
  hands out a session cookie (random, ``HttpOnly``, ``SameSite=Strict``).

Secrets are compared with :func:`hmac.compare_digest`; the password hash is
computed on a thread (scrypt is slow on purpose and must not stall calls),
and an unknown user name costs the same hash as a known one, so response
times do not tell which names exist.  A failed login answers only after a
delay.  Neither passwords, tokens nor session ids are ever logged: log
lines name the user and the client address.

Hash format: ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64), or
``pbkdf2_sha256$<iterations>$<salt>$<hash>`` for hashes made elsewhere.
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import define
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

__all__ = [
    "SESSION_COOKIE",
    "Authenticator",
    "PasswordHashError",
    "check_password_hash",
    "hash_password",
    "main",
    "verify_password",
]

_T = TypeVar("_T")

SESSION_COOKIE = b"gk_session"

# scrypt n=2**14, r=8: about 16 MiB and a few tens of milliseconds, the
# interactive-login parameters of the scrypt paper.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_MAX_SESSIONS = 1000


class PasswordHashError(ValueError):
    """A stored password hash gatekeeper cannot read."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise PasswordHashError("the salt or hash is not base64") from None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A scrypt hash of ``password`` in our ``scrypt$n$r$p$salt$hash`` form."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_MAXMEM,
        dklen=32,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[str, tuple[int, ...], bytes, bytes]:
    parts = encoded.split("$")
    if parts[0] == "scrypt" and len(parts) == 6:
        try:
            n, r, p = (int(x) for x in parts[1:4])
        except ValueError:
            raise PasswordHashError("scrypt n, r and p must be integers") from None
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
            raise PasswordHashError("scrypt parameters out of range")
        if 128 * r * n * 2 > _MAXMEM:
            raise PasswordHashError("scrypt parameters need too much memory")
        return "scrypt", (n, r, p), _unb64(parts[4]), _unb64(parts[5])
    if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
        try:
            iterations = int(parts[1])
        except ValueError:
            raise PasswordHashError("pbkdf2 iterations must be an integer") from None
        if not 100_000 <= iterations <= 10_000_000:
            raise PasswordHashError("pbkdf2 iterations must be 100000..10000000")
        return "pbkdf2_sha256", (iterations,), _unb64(parts[2]), _unb64(parts[3])
    raise PasswordHashError(
        "not a password hash (expected scrypt$n$r$p$salt$hash or "
        "pbkdf2_sha256$iterations$salt$hash, from gatekeeper-passwd)"
    )


def check_password_hash(encoded: str) -> None:
    """Raise :class:`PasswordHashError` unless ``encoded`` can be verified."""
    _, _, salt, digest = _parse(encoded)
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("the salt or hash is too short")


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; slow on purpose, run on a thread."""
    kind, params, salt, digest = _parse(encoded)
    secret = password.encode("utf-8")
    if kind == "scrypt":
        n, r, p = params
        computed = hashlib.scrypt(
            secret, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(digest)
        )
    else:
        computed = hashlib.pbkdf2_hmac(
            "sha256", secret, salt, params[0], dklen=len(digest)
        )
    return hmac.compare_digest(computed, digest)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user name is unknown, so that costs the same (lazily)."""
    return hash_password("not a password", salt=b"gatekeeper-dummy")


def _in_thread(f: Callable[[], _T]) -> Deferred[_T]:
    from twisted.internet import threads

    return threads.deferToThread(f)


@define
class _Session:
    principal: str
    expires: float


class Authenticator:
    """
    Checks requests' credentials and keeps login sessions, in memory.

    Sessions do not survive a restart: operators log in again.  ``clock``
    gives session expiry and the failed-login delay; ``run_blocking`` runs a
    password check off the reactor thread (tests pass one that runs inline).
    """

    _log = Logger()

    def __init__(
        self,
        token: str | None,
        users: Mapping[str, str],
        clock: IReactorTime,
        *,
        session_timeout: float = 43200.0,
        failure_delay: float = 1.0,
        secure_cookies: bool = False,
        run_blocking: Callable[[Callable[[], bool]], Deferred[bool]] = _in_thread,
    ) -> None:
        if not token and not users:
            raise ValueError("an Authenticator needs a token or users")
        self._token = token.encode("utf-8") if token else None
        self._users = dict(users)
        self.clock = clock
        self.session_timeout = session_timeout
        self.failure_delay = failure_delay
        self.secure_cookies = secure_cookies
        self._run_blocking = run_blocking
        self._sessions: dict[str, _Session] = {}
        self.failed_logins = 0

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def _token_matches(self, offered: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self._token)

    def principal(self, request: Any) -> str | None:
        """Who made ``request`` (``token`` or a user name), or None."""
        header = request.getHeader(b"authorization")
        if header:
            if isinstance(header, bytes):
                header = header.decode("latin-1")
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and self._token_matches(value.strip()):
                return "token"
            return None
        sid = request.getCookie(SESSION_COOKIE)
        if not sid:
            return None
        session = self._sessions.get(sid.decode("ascii", "replace"))
        if session is None:
            return None
        if session.expires <= self.clock.seconds():
            self._sessions.pop(sid.decode("ascii", "replace"), None)
            return None
        return session.principal

    def login(
        self, username: str, password: str, token: str, client: str
    ) -> Deferred[str | None]:
        """
        A new session id if the user's password (or the token) is right.

        A wrong one fires None, after ``failure_delay``; it is logged with the
        user name and client, never with what was typed.
        """
        if token:
            d: Deferred[bool] = maybeDeferred(self._token_matches, token)
            who = "token"
        elif username:
            encoded = self._users.get(username)
            d = self._run_blocking(
                lambda: (
                    verify_password(password, encoded or _dummy_hash())
                    and encoded is not None
                )
            )
            who = username
        else:
            d = maybeDeferred(lambda: False)
            who = "(nobody)"

        def decided(ok: bool) -> Deferred[str | None] | str:
            if ok:
                self._log.info(
                    "web login by {user} from {client}", user=who, client=client
                )
                return self._new_session(who)
            self.failed_logins += 1
            self._log.warn(
                "failed web login as {user} from {client}",
                user=who[:64],
                client=client,
            )
            return deferLater(self.clock, self.failure_delay, lambda: None)

        return d.addCallback(decided)

    def _new_session(self, principal: str) -> str:
        now = self.clock.seconds()
        for sid, session in list(self._sessions.items()):
            if session.expires <= now:
                del self._sessions[sid]
        while len(self._sessions) >= _MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = _Session(principal, now + self.session_timeout)
        return sid

    def logout(self, request: Any) -> None:
        """Forget the request's session, if it has one."""
        sid = request.getCookie(SESSION_COOKIE)
        if sid:
            self._sessions.pop(sid.decode("ascii", "replace"), None)

    def set_cookie(self, request: Any, sid: str | None) -> None:
        """Give the browser its session cookie (None: clear it)."""
        secure = self.secure_cookies or bool(request.isSecure())
        request.addCookie(
            SESSION_COOKIE,
            (sid or "").encode("ascii"),
            path=b"/",
            max_age=str(int(self.session_timeout) if sid else 0).encode("ascii"),
            httpOnly=True,
            sameSite="strict",
            secure=secure,
        )

    @property
    def sessions(self) -> int:
        return len(self._sessions)


def main(argv: list[str] | None = None) -> int:
    """``gatekeeper-passwd [name]``: print a ``[web] users`` entry."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: gatekeeper-passwd [name]\n\nPrints name:hash for [web] users.")
        return 0
    name = args[0] if args else input("user name: ").strip()
    if not name or ":" in name or any(c.isspace() for c in name):
        print("a user name is one word without ':'", file=sys.stderr)
        return 2
    password = getpass.getpass("password: ")
    if len(password) < 10:
        print("use a password of at least 10 characters", file=sys.stderr)
        return 2
    if getpass.getpass("again: ") != password:
        print("the passwords differ", file=sys.stderr)
        return 2
    print(f"{name}:{hash_password(password)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
