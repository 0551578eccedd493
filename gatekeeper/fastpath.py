"""
Two bypasses of Twisted's generic paths, for per-frame speed.

A thousand calls are 100,000 small frames a second through one process, and
the cost is per frame.  Profiling Twisted under that load shows two generic
paths that do nothing for us (see the project's performance notes):

1. ``transport.write()`` never sends: it buffers, registers the socket for
   writing (one ``epoll_ctl``), and a later reactor iteration sends and
   unregisters it (another).  :func:`direct_writer` sends a whole frame
   straight on the socket when the transport has nothing buffered, and hands
   anything the kernel did not take to ``transport.write()`` as usual.

2. The epoll reactor wraps every ready socket in ``log.callWithLogger`` (a
   log-context copy and about nine Python calls per event), for the benefit
   of legacy ``twisted.python.log`` messages.  Our events carry their own
   fields.  :func:`install_fast_poll` replaces that one loop on one reactor
   instance with the same loop minus the wrapper, keeping the error handling.

Both touch private Twisted attributes.  Each checks, before it acts, that
what it relies on is there, and otherwise leaves Twisted's own path in place
and says so; ``tests/test_fastpath.py`` fails loudly when Twisted changes.
"""

from __future__ import annotations

import errno
import inspect
from collections.abc import Callable
from types import MethodType
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import ITransport
from twisted.logger import Logger
from twisted.python import log

__all__ = ["direct_writer", "fast_poll_supported", "install_fast_poll"]

_log = Logger()

# What twisted.internet.abstract.FileDescriptor keeps its unsent bytes in.
_BUFFER_ATTRIBUTES = ("dataBuffer", "offset", "_tempDataBuffer", "_writeDisconnected")


def direct_writer(transport: ITransport) -> Callable[[bytes], None]:
    """
    A ``write`` for ``transport`` that skips the reactor when it can.

    Order is kept: the socket is written directly only while Twisted holds
    no unsent bytes for it, so nothing can overtake what is queued.
    """
    if not isinstance(transport, tcp.Connection) or not all(
        hasattr(transport, name) for name in _BUFFER_ATTRIBUTES
    ):
        return transport.write
    buffered_write = transport.write
    send = transport.socket.send

    def write(data: bytes) -> None:
        if (
            transport._tempDataBuffer
            or transport.offset != len(transport.dataBuffer)
            or not transport.connected
            or transport.disconnecting
            or transport._writeDisconnected
        ):
            buffered_write(data)
            return
        try:
            sent = send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let Twisted's own write path find the error and close cleanly.
            buffered_write(data)
            return
        if sent < len(data):
            buffered_write(data[sent:])

    return write


def fast_poll_supported(reactor: Any) -> bool:
    """True when ``reactor`` is an epoll reactor whose loop we know."""
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover - not Linux
        return False
    if not isinstance(reactor, EPollReactor):
        return False
    source = inspect.getsource(EPollReactor.doPoll)
    return (
        all(hasattr(reactor, a) for a in ("_poller", "_selectables", "_doReadOrWrite"))
        and "log.callWithLogger(selectable, _drdw, selectable, fd, event)" in source
    )


def _do_poll(self: Any, timeout: float | None) -> None:
    """EPollReactor.doPoll without the per-event logging context."""
    if timeout is None:
        timeout = -1
    try:
        events = self._poller.poll(timeout, len(self._selectables))
    except OSError as e:
        if e.errno == errno.EINTR:
            return
        raise
    selectables = self._selectables
    do_read_or_write = self._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        try:
            do_read_or_write(selectable, fd, event)
        except KeyboardInterrupt:
            raise
        except BaseException:
            # What callWithLogger would have done: log and go on.
            log.err(None, f"error handling an event on fd {fd}")


def install_fast_poll(reactor: Any) -> bool:
    """Use the lean poll loop on this reactor instance, if it is safe to."""
    if not fast_poll_supported(reactor):
        _log.info(
            "keeping Twisted's poll loop: {reactor} is not the epoll reactor "
            "this was written against",
            reactor=type(reactor).__name__,
        )
        return False
    reactor.doIteration = MethodType(_do_poll, reactor)
    return True


def uninstall_fast_poll(reactor: Any) -> None:
    """Back to the class's own loop (tests)."""
    reactor.__dict__.pop("doIteration", None)
