"""
The web service as twistd runs it: built from ``[web]``, listening on
127.0.0.1, answering real HTTP.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from gatekeeper.session.registry import SessionRegistry
from gatekeeper.web.service import WebService, make_web_service
from gatekeeper.web.settings import TOKEN_ENV, WebConfig, WebSettingsError

from .support import PASSWORD, PASSWORD_HASH, TOKEN, FakeDialer, FakeListener


class AlwaysWritable:
    def writable(self, timeout: float = 5.0) -> Any:
        from twisted.internet.defer import succeed

        return succeed(True)


class MakeWebServiceTests(SynchronousTestCase):
    """make_web_service: off, refused, or built."""

    def make(self, section: WebConfig, environ: dict[str, str] | None = None) -> Any:
        return make_web_service(
            section,
            reactor=Clock(),
            registry=None,
            access_log=None,
            recordings=".",
            environ=environ or {},
        )

    def test_off_by_default(self) -> None:
        """With [web] not enabled there is no service (and no port)."""
        self.assertIsNone(self.make(WebConfig(token=TOKEN)))

    def test_refuses_without_credentials(self) -> None:
        """Enabled without a token or users: the server does not start."""
        self.assertRaises(WebSettingsError, self.make, WebConfig(enabled=True))

    def test_built(self) -> None:
        """Enabled with a credential: a service named 'web' on its endpoint."""
        service = self.make(WebConfig(enabled=True, users=(f"ana:{PASSWORD_HASH}",)))
        self.assertIsInstance(service, WebService)
        self.assertEqual(service.name, "web")
        self.assertEqual(service.listen, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(service.site.displayTracebacks)

    def test_token_from_environment(self) -> None:
        """$GATEKEEPER_WEB_TOKEN alone is enough."""
        service = self.make(WebConfig(enabled=True), {TOKEN_ENV: TOKEN})
        self.assertIsInstance(service, WebService)


class RunningServiceTests(TestCase):
    """Real HTTP against the service in a MultiService, on 127.0.0.1."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.registry = SessionRegistry(reactor, grace_period=1.0)
        section = WebConfig(
            enabled=True,
            listen="tcp:0:interface=127.0.0.1",
            token=TOKEN,
            users=(f"ana:{PASSWORD_HASH}",),
        )
        service = make_web_service(
            section,
            reactor=reactor,
            registry=self.registry,
            access_log=AlwaysWritable(),
            listener=FakeListener(),
            dialer=FakeDialer(),
            recordings=self.mktemp(),
            environ={},
        )
        assert service is not None
        top = MultiService()
        service.setServiceParent(top)
        top.startService()
        self.addCleanup(top.stopService)
        port = yield service.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.agent = Agent(reactor)

    @inlineCallbacks
    def request(
        self,
        method: bytes,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        response = yield self.agent.request(
            method,
            (self.base + path).encode(),
            Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()}),
            producer,
        )
        content = yield readBody(response)
        return response, content

    @inlineCallbacks
    def test_healthz_public(self) -> Any:
        """/healthz answers without a login."""
        response, body = yield self.request(b"GET", "/healthz")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["status"], "ok")

    @inlineCallbacks
    def test_token_over_http(self) -> Any:
        """The bearer token opens /api/calls; none gives 401."""
        response, _ = yield self.request(b"GET", "/api/calls")
        self.assertEqual(response.code, 401)
        response, body = yield self.request(
            b"GET", "/api/calls", {"Authorization": f"Bearer {TOKEN}"}
        )
        self.assertEqual((response.code, json.loads(body)["count"]), (200, 0))

    @inlineCallbacks
    def test_login_over_http(self) -> Any:
        """The login form's POST sets a cookie that opens the page."""
        response, _ = yield self.request(b"GET", "/")
        self.assertEqual(response.code, 303)
        response, _ = yield self.request(
            b"POST",
            "/login",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"username=ana&password=" + PASSWORD.replace(" ", "+").encode(),
        )
        self.assertEqual(response.code, 303)
        (cookie,) = response.headers.getRawHeaders(b"set-cookie")
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"SameSite=strict", cookie)
        session = cookie.split(b";")[0].decode()
        response, body = yield self.request(b"GET", "/", {"Cookie": session})
        self.assertEqual(response.code, 200)
        self.assertIn(b'id="live-calls"', body)
        response, body = yield self.request(
            b"GET", "/static/app.js", {"Cookie": session}
        )
        self.assertEqual(response.code, 200)
        response, _ = yield self.request(b"GET", "/static/", {"Cookie": session})
        self.assertEqual(response.code, 404)
