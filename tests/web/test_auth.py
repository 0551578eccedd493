"""Passwords, tokens, login sessions and the login/logout resources."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any
from unittest import mock

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.web import auth
from gatekeeper.web.auth import (
    SESSION_COOKIE,
    PasswordHashError,
    check_password_hash,
    hash_password,
    verify_password,
)
from gatekeeper.web.service import make_root

from .support import PASSWORD, PASSWORD_HASH, TOKEN, Request, make_auth, render


class PasswordHashTests(SynchronousTestCase):
    """The stored form of a password, and checking one against it."""

    def test_round_trip(self) -> None:
        """The right password matches its hash; another does not."""
        self.assertTrue(verify_password(PASSWORD, PASSWORD_HASH))
        self.assertFalse(verify_password(PASSWORD + "!", PASSWORD_HASH))

    def test_salted(self) -> None:
        """Two hashes of one password differ (random salt) and both verify."""
        self.assertNotEqual(PASSWORD_HASH, hash_password(PASSWORD))
        self.assertTrue(PASSWORD_HASH.startswith("scrypt$16384$8$1$"))

    def test_pbkdf2(self) -> None:
        """pbkdf2_sha256 hashes made elsewhere are accepted too."""
        salt = b"0123456789abcdef"
        digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 200_000)
        encoded = f"pbkdf2_sha256$200000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
        check_password_hash(encoded)
        self.assertTrue(verify_password("s3cret", encoded))
        self.assertFalse(verify_password("s3cret!", encoded))

    def test_bad_hashes(self) -> None:
        """Plain text, unknown schemes and silly parameters are refused."""
        for encoded in (
            "hunter2",
            "md5$abc$def",
            "scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "scrypt$16384$8$1$not base64$AAAA",
            "scrypt$1048576$64$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "pbkdf2_sha256$10$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "scrypt$16384$8$1$AA==$AA==",
        ):
            self.assertRaises(PasswordHashError, check_password_hash, encoded)


class AuthenticatorTests(SynchronousTestCase):
    """Who a request comes from."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.auth = make_auth(self.clock, session_timeout=60.0, failure_delay=1.0)

    def test_needs_a_credential(self) -> None:
        """An authenticator with nothing to accept cannot be made."""
        self.assertRaises(ValueError, make_auth, token=None, users={})

    def test_bearer(self) -> None:
        """The token as a bearer header; a wrong one or another scheme, nobody."""
        self.assertEqual(self.auth.principal(Request("/", token=TOKEN)), "token")
        self.assertIsNone(self.auth.principal(Request("/", token=TOKEN[:-1])))
        self.assertIsNone(
            self.auth.principal(Request("/", headers={"Authorization": TOKEN}))
        )
        self.assertIsNone(self.auth.principal(Request("/")))

    def test_token_compared_in_constant_time(self) -> None:
        """The token check goes through hmac.compare_digest."""
        with mock.patch.object(
            auth.hmac, "compare_digest", wraps=auth.hmac.compare_digest
        ) as compare:
            self.auth.principal(Request("/", token="guess" * 6))
        compare.assert_called_once()

    def test_login_session(self) -> None:
        """A right password gives a session that names the user until it expires."""
        sid = self.successResultOf(self.auth.login("ana", PASSWORD, "", "1.2.3.4"))
        self.assertIsInstance(sid, str)
        cookie = {SESSION_COOKIE: sid.encode()}
        self.assertEqual(self.auth.principal(Request("/", cookies=cookie)), "ana")
        self.clock.advance(61)
        self.assertIsNone(self.auth.principal(Request("/", cookies=cookie)))
        self.assertEqual(self.auth.sessions, 0)

    def test_login_with_token(self) -> None:
        """The token typed in the form logs in as 'token'."""
        sid = self.successResultOf(self.auth.login("", "", TOKEN, "1.2.3.4"))
        cookie = {SESSION_COOKIE: sid.encode()}
        self.assertEqual(self.auth.principal(Request("/", cookies=cookie)), "token")

    def test_failed_login_delayed(self) -> None:
        """A wrong password or unknown user fires None, only after the delay."""
        for user, password in (("ana", "wrong"), ("bob", PASSWORD), ("", "")):
            d = self.auth.login(user, password, "", "1.2.3.4")
            self.assertNoResult(d)
            self.clock.advance(1)
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.auth.failed_logins, 3)

    def test_unknown_user_costs_a_hash(self) -> None:
        """An unknown name is checked against a dummy hash, like a known one."""
        with mock.patch.object(auth, "verify_password", return_value=True) as v:
            d = self.auth.login("bob", "x", "", "1.2.3.4")
        v.assert_called_once()
        self.clock.advance(1)
        self.assertIsNone(self.successResultOf(d))

    def test_secrets_never_logged(self) -> None:
        """Log lines name the user and client, never what was typed."""
        with capturedLogs() as events:
            self.auth.login("ana", "wrong-password", "", "1.2.3.4")
            self.auth.login("", "", "wrong-token-wrong-token-wrong", "1.2.3.4")
            sid = self.successResultOf(self.auth.login("ana", PASSWORD, "", "1.2.3.4"))
            self.clock.advance(2)
        text = repr(events)
        for secret in ("wrong-password", "wrong-token", PASSWORD, TOKEN, sid):
            self.assertNotIn(secret, text)
        self.assertIn("1.2.3.4", text)

    def test_cookie_attributes(self) -> None:
        """The session cookie is HttpOnly, SameSite=Strict, for the whole site."""
        request = Request("/login", method=b"POST")
        self.auth.set_cookie(request, "abc")
        ((name, value, kw),) = request.cookies
        self.assertEqual((name, value), (SESSION_COOKIE, b"abc"))
        self.assertEqual(
            (kw["httpOnly"], kw["sameSite"], kw["path"], kw["secure"]),
            (True, "strict", b"/", False),
        )
        secure = make_auth(secure_cookies=True)
        request = Request("/login", method=b"POST")
        secure.set_cookie(request, "abc")
        self.assertTrue(request.cookies[0][2]["secure"])


class LoginResourceTests(SynchronousTestCase):
    """POST /login and /logout through the root."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.auth = make_auth(self.clock)
        self.root = make_root(
            self.auth, self.clock, registry=None, access_log=None, recordings="."
        )

    def post(self, path: str, **fields: str) -> Request:
        request = Request(
            path, method=b"POST", args={k: [v] for k, v in fields.items()}
        )
        d = render(self.root, request)
        self.clock.advance(5)
        return self.successResultOf(d)

    def test_form_is_public(self) -> None:
        """The login form and its assets need no login."""
        for path in ("/login", "/login/login.css", "/login/login.js"):
            request = self.successResultOf(render(self.root, Request(path)))
            self.assertEqual(request.code, 200, path)
        form = self.successResultOf(render(self.root, Request("/login")))
        self.assertIn(b'action="/login"', form.body)

    def test_login_then_page(self) -> None:
        """A right password: cookie and redirect; the cookie opens the API."""
        request = self.post("/login", username="ana", password=PASSWORD)
        self.assertEqual((request.code, request.header("location")), (303, "/"))
        ((_, sid, _),) = request.cookies
        me = self.successResultOf(
            render(self.root, Request("/api/me", cookies={SESSION_COOKIE: sid}))
        )
        self.assertEqual(me.json(), {"user": "ana", "live_refresh": 1.0})

    def test_login_refused(self) -> None:
        """A wrong password: back to the form, no cookie."""
        request = self.post("/login", username="ana", password="nope")
        self.assertEqual(
            (request.code, request.header("location")), (303, "/login?failed=1")
        )
        self.assertEqual(request.cookies, [])

    def test_logout(self) -> None:
        """Logging out ends the session and clears the cookie."""
        sid = self.successResultOf(self.auth.login("ana", PASSWORD, "", "x"))
        request = Request(
            "/logout", method=b"POST", cookies={SESSION_COOKIE: sid.encode()}
        )
        self.successResultOf(render(self.root, request))
        self.assertEqual(request.header("location"), "/login")
        self.assertEqual(request.cookies[0][1], b"")
        self.assertEqual(self.auth.sessions, 0)


class PasswdCommandTests(SynchronousTestCase):
    """gatekeeper-passwd prints a [web] users entry."""

    def test_prints_entry(self) -> None:
        """Name and a verifiable hash, from a password typed twice."""
        out = io.StringIO()
        with (
            mock.patch.object(auth.getpass, "getpass", return_value="long enough pw"),
            mock.patch("sys.stdout", out),
        ):
            self.assertEqual(auth.main(["ana"]), 0)
        name, _, encoded = out.getvalue().strip().partition(":")
        self.assertEqual(name, "ana")
        self.assertTrue(verify_password("long enough pw", encoded))

    def test_refuses_short(self) -> None:
        """A short password is refused, nothing printed."""
        err: Any = io.StringIO()
        with (
            mock.patch.object(auth.getpass, "getpass", return_value="short"),
            mock.patch("sys.stderr", err),
        ):
            self.assertEqual(auth.main(["ana"]), 2)
