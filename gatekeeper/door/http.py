"""
The ``http`` opener: a GET or POST to a relay, as 2N and Akuvox intercoms and
network relay boards take (``http://relay/api/switch/ctrl?switch=1&action=on``).

Each attempt has a timeout; a failure that may be passing (no connection, a
timeout, a 5xx answer) is retried exactly once after a short pause, while a
4xx (wrong URL or credentials) is not, as it would fail the same way.  Any
2xx is taken as opened.  Credentials stay out of logs: basic auth goes in a
header we never log, the URL may not carry a user or password, and only its
scheme, host and path are logged, since some relays take a password in the
query string.

The URL may hold ``{apartment}``, ``{call_uuid}`` and ``{gate}``, filled in
URL-quoted, for relays that open a different door per apartment or gate.
"""

from __future__ import annotations

import base64
import string
from io import BytesIO
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from zope.interface import implementer

from gatekeeper.door.interfaces import IDoorOpener
from gatekeeper.door.result import DoorContext, DoorResult, never_fails

__all__ = ["HTTPDoorOpener"]

_FIELDS = frozenset({"apartment", "call_uuid", "gate"})
_MAX_DETAIL = 200
_DONE = Failure(ResponseDone())


class _AttemptError(Exception):
    """One request did not open the door; ``retryable`` if the next may."""

    def __init__(self, reason: str, attempt: int, retryable: bool) -> None:
        super().__init__(reason)
        self.attempt = attempt
        self.retryable = retryable


def _check_template(url: str) -> None:
    for _, name, spec, conversion in string.Formatter().parse(url):
        if name is not None and (name not in _FIELDS or spec or conversion):
            raise ValueError(
                f"the door URL may only use {{apartment}}, {{call_uuid}} and"
                f" {{gate}}, not {{{name}}}"
            )
    parts = urlsplit(url.format(apartment="1", call_uuid="u", gate="g"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the door URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "put the door relay's credentials in username/password, not in the"
            " URL (URLs end up in logs)"
        )


@implementer(IDoorOpener)
class HTTPDoorOpener:
    """Asks a relay over HTTP to open, with a timeout and one retry."""

    name = "http"
    _log = Logger()

    def __init__(
        self,
        agent: IAgent,
        url: str,
        *,
        clock: IReactorTime,
        method: str = "GET",
        body: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        retry_delay: float = 0.5,
    ) -> None:
        _check_template(url)
        if method not in ("GET", "POST"):
            raise ValueError(f"the door method must be GET or POST, not {method!r}")
        if body is not None and method != "POST":
            raise ValueError("a request body needs method POST")
        if timeout <= 0 or retry_delay < 0:
            raise ValueError("timeout must be above 0 and retry_delay not below 0")
        if (username is None) != (password is None):
            raise ValueError("set both username and password, or neither")
        self._agent = agent
        self._url = url
        self._clock = clock
        self._method = method.encode("ascii")
        self._body = body
        self._timeout = timeout
        self._retry_delay = retry_delay
        headers = {b"User-Agent": [b"gatekeeper"]}
        if body is not None:
            headers[b"Content-Type"] = [content_type.encode("latin-1")]
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode())
            headers[b"Authorization"] = [b"Basic " + token]
        self._headers = headers

    def __repr__(self) -> str:
        parts = urlsplit(self._url)
        return (
            f"<HTTPDoorOpener {self._method.decode()} {parts.scheme}://{parts.netloc}>"
        )

    def _target(self, call_uuid: str, apartment: str, context: DoorContext) -> str:
        return self._url.format(
            apartment=quote(apartment, safe=""),
            call_uuid=quote(call_uuid, safe=""),
            gate=quote(context.gate or "", safe=""),
        )

    @staticmethod
    def _loggable(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    def open(
        self, call_uuid: str, apartment: str, context: DoorContext
    ) -> Deferred[DoorResult]:
        target = self._target(call_uuid, apartment, context)
        shown = self._loggable(target)

        def first_failed(failure: Failure) -> Deferred[DoorResult] | Failure:
            failure.trap(_AttemptError)
            if not failure.value.retryable:
                return failure
            self._log.warn(
                "door relay {url} failed for {call_uuid} ({reason}); retrying once",
                url=shown,
                call_uuid=call_uuid,
                reason=failure.getErrorMessage(),
            )
            d = deferLater(self._clock, self._retry_delay, lambda: None)
            d.addCallback(lambda _: self._attempt(target, 2))
            return d

        d = self._attempt(target, 1)
        d.addErrback(first_failed)

        def opened(result: DoorResult) -> DoorResult:
            self._log.info(
                "door opened by {url} for {call_uuid} ({apartment}):"
                " {detail}, {attempts} attempt(s)",
                url=shown,
                call_uuid=call_uuid,
                apartment=apartment,
                detail=result.detail,
                attempts=result.attempts,
            )
            return result

        def gave_up(failure: Failure) -> DoorResult:
            failure.trap(_AttemptError)
            self._log.error(
                "door relay {url} did not open for {call_uuid} ({apartment}): {reason}",
                url=shown,
                call_uuid=call_uuid,
                apartment=apartment,
                reason=failure.getErrorMessage(),
            )
            return DoorResult.failure(
                self.name, failure.getErrorMessage(), attempts=failure.value.attempt
            )

        d.addCallbacks(opened, gave_up)
        return never_fails(d, self.name, call_uuid, self._log)

    def _attempt(self, url: str, attempt: int) -> Deferred[DoorResult]:
        producer = None if self._body is None else FileBodyProducer(BytesIO(self._body))
        d = self._agent.request(
            self._method, url.encode("ascii"), Headers(self._headers), producer
        )

        def got(response: IResponse) -> Deferred[DoorResult]:
            return _read_tail(response).addCallback(judge, response.code)

        def judge(body: bytes, code: int) -> DoorResult:
            text = body.decode("utf-8", "replace").strip()[-_MAX_DETAIL:]
            detail = f"HTTP {code}" + (f": {text}" if text else "")
            if 200 <= code < 300:
                return DoorResult.success(self.name, detail, attempts=attempt)
            # 5xx: the relay is busy or restarting; 3xx/4xx: our request is
            # wrong (URL, method, credentials) and would be wrong again.
            raise _AttemptError(detail, attempt, retryable=code >= 500)

        def classify(failure: Failure) -> Failure:
            if failure.check(_AttemptError):
                return failure
            if failure.check(defer.TimeoutError):
                reason = f"no answer within {self._timeout:g} s"
            else:
                reason = failure.getErrorMessage() or failure.type.__name__
            return Failure(_AttemptError(reason, attempt, retryable=True))

        d.addCallback(got)
        d.addTimeout(self._timeout, self._clock)
        return d.addErrback(classify)


class _Tail(Protocol):
    """The end of a response body: a relay that sends megabytes is not kept."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done
        self._tail = b""

    def dataReceived(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-1024:]

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(self._tail)
        else:
            self._done.errback(reason)


def _read_tail(response: IResponse) -> Deferred[bytes]:
    """Like ``readBody``, bounded; cancelling stops the body (timeouts)."""
    protocol: _Tail

    def cancel(d: Deferred[bytes]) -> None:
        protocol.transport.stopProducing()

    done: Deferred[bytes] = Deferred(cancel)
    protocol = _Tail(done)
    response.deliverBody(protocol)
    return done
