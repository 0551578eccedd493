"""
Helpers for the web tests: requests rendered in memory, fake call legs and
the pieces of a gatekeeper the web service reads.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.web.auth import Authenticator, hash_password

TOKEN = "t0ken-for-the-tests-0123456789"
PASSWORD = "correct horse battery"
# One hash for the whole run: scrypt is slow on purpose.
PASSWORD_HASH = hash_password(PASSWORD)


def new_uuid(n: int = 1) -> str:
    """A canonical UUID that differs per ``n``."""
    return str(uuid.UUID(int=0x5EED_0000_0000_4000_8000_0000_0000_0000 + n))


def inline(f: Any) -> Deferred[Any]:
    """Runs a 'blocking' function at once (instead of on a thread)."""
    return succeed(f())


def make_auth(clock: Clock | None = None, **kw: Any) -> Authenticator:
    """An authenticator with the test token and one user, ``ana``."""
    kw.setdefault("run_blocking", inline)
    return Authenticator(
        kw.pop("token", TOKEN),
        kw.pop("users", {"ana": PASSWORD_HASH}),
        clock or Clock(),
        **kw,
    )


class Request(DummyRequest):
    """A DummyRequest with headers, cookies and a method, for a path."""

    def __init__(
        self,
        path: str,
        *,
        method: bytes = b"GET",
        args: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        cookies: dict[bytes, bytes] | None = None,
        token: str | None = None,
    ) -> None:
        path, _, query = path.partition("?")
        super().__init__([p.encode() for p in path.lstrip("/").split("/")])
        self.method = method
        self.uri = path.encode()
        self.path = path.encode()
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            self.args.setdefault(key.encode(), []).append(value.encode())
        for key, values in (args or {}).items():
            self.args[key.encode()] = [v.encode() for v in values]
        for name, value in (headers or {}).items():
            self.requestHeaders.addRawHeader(name.encode(), value.encode())
        if token is not None:
            self.requestHeaders.addRawHeader(
                b"authorization", f"Bearer {token}".encode()
            )
        self.received_cookies = dict(cookies or {})
        self.cookies: list[tuple[bytes, bytes, dict[str, Any]]] = []

    def getCookie(self, key: bytes) -> bytes | None:
        return self.received_cookies.get(key)

    def addCookie(self, k: bytes, v: bytes, **kw: Any) -> None:
        self.cookies.append((k, v, kw))

    def isSecure(self) -> bool:
        return False

    @property
    def body(self) -> bytes:
        return b"".join(self.written)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.responseHeaders.getRawHeaders(name.encode())
        return values[-1].decode() if values else None

    @property
    def code(self) -> int:
        return self.responseCode or 200


def render(root: Resource, request: Request) -> Deferred[Request]:
    """Render ``request`` under ``root``; fires with it once finished."""
    resource = getChildForRequest(root, request)
    result = resource.render(request)
    if result is NOT_DONE_YET:
        if request.finished:
            return succeed(request)
        return request.notifyFinish().addCallback(lambda _: request)
    request.write(result)
    request.finish()
    return succeed(request)


@implementer(IAudioSocketLeg)
class FakeConnection:
    """Asterisk's end of one AudioSocket connection, closed when told."""

    _ports = iter(range(41000, 1 << 30))

    def __init__(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        self.peer = f"127.0.0.1:{next(self._ports)}"
        self.connected = True
        self.receiver: Any = None

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        return self.connected

    def hang_up(self) -> None:
        self.close()

    def close(self, reason: Failure | None = None) -> None:
        """The connection closes (a drop unless we hung up first)."""
        from twisted.internet.error import ConnectionLost

        if self.connected:
            self.connected = False
            self.receiver.connection_lost(reason or Failure(ConnectionLost()))


def connect(registry: Any, call_uuid: str) -> FakeConnection:
    """A new connection for ``call_uuid``, bound (or refused) by ``registry``."""
    connection = FakeConnection(call_uuid)
    connection.receiver = registry.bind(call_uuid, connection)
    return connection


class FakeListener:
    """What /healthz and /metrics read of the AudioSocket listener."""

    def __init__(self, listening: bool = True) -> None:
        self.running = listening
        self.port: object | None = object() if listening else None
        self.factory = _Factory()


class _Factory:
    def __init__(self) -> None:
        self.connections: set[object] = set()
        self.refused_connections = 0
        self.protocol_errors = 0


class FakeDialer:
    """What /healthz and /metrics read of the AMI dialer."""

    def __init__(self, connected: bool = True, reconnects: int = 0) -> None:
        self.connected = connected
        self.reconnects = reconnects
