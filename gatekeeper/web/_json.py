"""Small helpers every JSON resource uses: bodies, errors, Deferred results."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

__all__ = ["error", "json_body", "respond_later"]

_log = Logger()


def json_body(request: Any, value: object, code: int = 200) -> bytes:
    """``value`` as the JSON body of ``request`` (no caching: personal data)."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n"


def error(request: Any, code: int, kind: str, message: str) -> bytes:
    """A JSON error: ``{"error": kind, "message": message}``."""
    return json_body(request, {"error": kind, "message": message}, code)


def respond_later(request: Any, d: Deferred[tuple[int, object]]) -> object:
    """
    Finish ``request`` when ``d`` fires ``(code, value)``; NOT_DONE_YET now.

    A client that went away in the meantime is not written to.  An
    unexpected failure is logged and answered 500 without its details.
    """
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def send(result: tuple[int, object]) -> None:
        if gone:
            return
        code, value = result
        request.write(json_body(request, value, code))
        request.finish()

    def failed(failure: Failure) -> None:
        _log.failure("web request {uri} failed", failure, uri=_uri(request))
        if not gone:
            request.write(
                error(request, 500, "internal", "the server could not answer")
            )
            request.finish()

    d.addCallback(send).addErrback(failed)
    return NOT_DONE_YET


def _uri(request: Any) -> str:
    uri = getattr(request, "uri", b"")
    return uri.decode("latin-1") if isinstance(uri, bytes) else str(uri)
