"""
Tests for the ``http`` door opener: against a real twisted.web server on
loopback for what goes over the wire, and a fake agent with a
:class:`~twisted.internet.task.Clock` for timeouts.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from gatekeeper.door import DoorContext, HTTPDoorOpener, IDoorOpener
from gatekeeper.door.result import FAILED, OPENED

UUID = "0b5e3a2c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"
CONTEXT = DoorContext(gate="north", visitor_channel="PJSIP/gate-00000001")


class Relay(Resource):
    """A relay that answers with the next scripted status code."""

    isLeaf = True

    def __init__(self, codes: list[int]) -> None:
        super().__init__()
        self.codes = codes
        self.requests: list[tuple[bytes, bytes, bytes | None, bytes]] = []

    def render(self, request: Any) -> bytes:
        self.requests.append(
            (
                request.method,
                request.uri,
                request.getHeader(b"authorization"),
                request.content.read(),
            )
        )
        code = self.codes.pop(0) if self.codes else 500
        request.setResponseCode(code)
        return b"OK" if code == 200 else b"relay says no"


class LoopbackTests(TestCase):
    """The opener against a real HTTP server on 127.0.0.1."""

    def serve(self, codes: list[int]) -> Relay:
        relay = Relay(codes)
        self.port = reactor.listenTCP(0, Site(relay), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        return relay

    def opener(self, path: str = "/relay", **kw: Any) -> HTTPDoorOpener:
        port = self.port.getHost().port
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        kw.setdefault("retry_delay", 0)
        return HTTPDoorOpener(
            agent, f"http://127.0.0.1:{port}{path}", clock=reactor, **kw
        )

    @inlineCallbacks
    def test_get_opens(self) -> Any:
        """A 200 is an opened door, after one GET to the filled-in URL."""
        relay = self.serve([200])
        opener = self.opener("/open?door={gate}&apt={apartment}")
        with capturedLogs():
            result = yield opener.open(UUID, "101", CONTEXT)
        self.assertEqual(
            (result.status, result.detail, result.attempts), (OPENED, "HTTP 200: OK", 1)
        )
        self.assertEqual(
            relay.requests, [(b"GET", b"/open?door=north&apt=101", None, b"")]
        )

    @inlineCallbacks
    def test_post_basic_auth_not_logged(self) -> Any:
        """POST sends body and basic auth; neither password nor token is logged."""
        relay = self.serve([200])
        opener = self.opener(
            "/api?pw=query-secret",
            method="POST",
            body=b"switch=1",
            username="admin",
            password="s3cret-pw",
        )
        with capturedLogs() as events:
            result = yield opener.open(UUID, "101", CONTEXT)
        token = b"Basic " + base64.b64encode(b"admin:s3cret-pw")
        self.assertEqual(
            relay.requests, [(b"POST", b"/api?pw=query-secret", token, b"switch=1")]
        )
        self.assertTrue(result.opened)
        ours = [e for e in events if e["log_namespace"].startswith("gatekeeper")]
        logged = repr(ours) + repr(opener) + repr(result)
        for secret in ("s3cret-pw", token.decode(), "query-secret"):
            self.assertNotIn(secret, logged)
        self.assertEqual([e["call_uuid"] for e in ours], [UUID])

    @inlineCallbacks
    def test_retry_after_5xx(self) -> Any:
        """A 503 is retried once, and the second answer decides."""
        relay = self.serve([503, 200])
        with capturedLogs():
            result = yield self.opener().open(UUID, "101", CONTEXT)
        self.assertEqual((result.status, result.attempts), (OPENED, 2))
        self.assertEqual(len(relay.requests), 2)

    @inlineCallbacks
    def test_exactly_one_retry(self) -> Any:
        """Two 5xx answers fail the door after exactly two requests."""
        relay = self.serve([500, 502, 200])
        with capturedLogs():
            result = yield self.opener().open(UUID, "101", CONTEXT)
        self.assertEqual(
            (result.status, result.attempts, result.detail),
            (FAILED, 2, "HTTP 502: relay says no"),
        )
        self.assertEqual(len(relay.requests), 2)

    @inlineCallbacks
    def test_4xx_not_retried(self) -> Any:
        """A 401 (wrong credentials) fails at once: a retry would repeat it."""
        relay = self.serve([401, 200])
        with capturedLogs():
            result = yield self.opener().open(UUID, "101", CONTEXT)
        self.assertEqual((result.status, result.attempts), (FAILED, 1))
        self.assertEqual(len(relay.requests), 1)

    @inlineCallbacks
    def test_connection_refused(self) -> Any:
        """A relay that is down fails after the retry, saying why."""
        self.serve([])
        opener = self.opener()
        yield self.port.stopListening()
        with capturedLogs():
            result = yield opener.open(UUID, "101", CONTEXT)
        self.assertEqual((result.status, result.attempts), (FAILED, 2))
        self.assertIn("refused", result.detail.lower())


class AbortableTransport:
    """readBody wants a transport it could abort."""

    def abortConnection(self) -> None:
        pass


class FakeResponse:
    """Just enough of IResponse for readBody."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.phrase = b"X"
        self.length = len(body)
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(AbortableTransport())
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class FakeAgent:
    """Hands out the scripted Deferreds and notes cancellations."""

    def __init__(self, answers: list[Deferred[Any] | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.cancelled = 0

    def request(
        self, method: bytes, uri: bytes, headers: Any = None, body: Any = None
    ) -> Deferred[Any]:
        self.requests.append(uri)
        answer = self.answers.pop(0)
        if answer is not None:
            return answer

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1

        return Deferred(cancel)


class TimeoutTests(SynchronousTestCase):
    """Timeouts and the retry pause run on the clock they are given."""

    def setUp(self) -> None:
        self.clock = Clock()

    def opener(self, agent: FakeAgent) -> HTTPDoorOpener:
        return HTTPDoorOpener(
            agent, "http://relay.test/open", clock=self.clock, timeout=5, retry_delay=1
        )

    def test_provides_interface(self) -> None:
        """The opener provides IDoorOpener."""
        self.assertTrue(verifyObject(IDoorOpener, self.opener(FakeAgent([]))))

    def test_timeout_twice(self) -> None:
        """A silent relay is cancelled at each timeout and fails after two tries."""
        agent = FakeAgent([None, None])
        with capturedLogs():
            d = self.opener(agent).open(UUID, "101", CONTEXT)
            self.clock.advance(4.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
            self.assertEqual((len(agent.requests), agent.cancelled), (1, 1))
            self.clock.advance(1)
            self.assertEqual(len(agent.requests), 2)
            self.clock.advance(5)
        result = self.successResultOf(d)
        self.assertEqual(
            (result.status, result.attempts, result.detail, agent.cancelled),
            (FAILED, 2, "no answer within 5 s", 2),
        )

    def test_timeout_then_open(self) -> None:
        """A relay that times out once and then answers 200 opened the door."""
        agent = FakeAgent([None, succeed(FakeResponse(204, b""))])
        with capturedLogs():
            d = self.opener(agent).open(UUID, "101", CONTEXT)
            self.clock.advance(5)
            self.clock.advance(1)
        result = self.successResultOf(d)
        self.assertEqual(
            (result.status, result.attempts, result.detail), (OPENED, 2, "HTTP 204")
        )

    def test_url_with_credentials_refused(self) -> None:
        """user:password@ in the URL is refused: URLs reach logs."""
        self.assertRaises(
            ValueError,
            HTTPDoorOpener,
            FakeAgent([]),
            "http://u:p@relay/",
            clock=self.clock,
        )

    def test_unknown_placeholder_refused(self) -> None:
        """Only {apartment}, {call_uuid} and {gate} may appear in the URL."""
        self.assertRaises(
            ValueError,
            HTTPDoorOpener,
            FakeAgent([]),
            "http://relay/{secret}",
            clock=self.clock,
        )

    def test_placeholders_quoted(self) -> None:
        """Values put into the URL are quoted, so they cannot add parameters."""
        agent = FakeAgent([succeed(FakeResponse(200, b""))])
        opener = HTTPDoorOpener(agent, "http://relay/o?g={gate}", clock=self.clock)
        with capturedLogs():
            self.successResultOf(opener.open(UUID, "1", DoorContext(gate="a&b=c")))
        self.assertEqual(agent.requests, [b"http://relay/o?g=a%26b%3Dc"])
