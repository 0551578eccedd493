"""
The seam between an AudioSocket connection and whatever owns the call.

The protocol turns bytes into frames and nothing more.  When the UUID frame
arrives it asks an :class:`ICallBinder` (the echo application, or the session
registry) what this connection is; the binder answers with an
:class:`ICallReceiver` for the frames that follow, or refuses with
:class:`CallRefused`.  The receiver talks back through the
:class:`IAudioSocketLeg` it was given: send audio, hang up.
"""

from __future__ import annotations

from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from gatekeeper.audiosocket.wire import Kind

__all__ = ["CallRefused", "IAudioSocketLeg", "ICallBinder", "ICallReceiver"]


class CallRefused(Exception):
    """A binder will not take this connection; ``reason`` is a short slug."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class IAudioSocketLeg(Interface):
    """One live AudioSocket connection, as the call's owner sees it."""

    call_uuid: str = Attribute("The canonical UUID this connection announced.")
    peer: str = Attribute("The remote address, for log lines.")
    connected: bool = Attribute("False once the connection is gone.")

    def send_audio(kind: Kind, payload: bytes) -> bool:
        """
        Send one audio frame now, header and payload in a single write.

        Returns False when the frame was dropped because the connection is
        gone or the peer stopped reading (its send buffer is full).
        """

    def send_frame(frame: bytes) -> bool:
        """
        Send one whole, already encoded audio frame, as one write.

        The pacer's path: it builds each frame from a header made once by
        :func:`~gatekeeper.audiosocket.wire.encode_audio`, so the frame is
        valid by construction and is not checked again per frame.  Returns
        False when the frame was dropped, as ``send_audio`` does.
        """

    def hang_up() -> None:
        """Send a hang-up frame and close; Asterisk's dialplan continues."""


class ICallReceiver(Interface):
    """Receives the frames of one connection after its UUID frame."""

    def audio_received(kind: Kind, payload: bytes) -> None:
        """An audio frame arrived."""

    def dtmf_received(digit: str) -> None:
        """A DTMF digit was released."""

    def connection_lost(reason: Failure) -> None:
        """The connection is gone (Asterisk hangs up by closing it)."""


class ICallBinder(Interface):
    """Decides what a new connection's UUID means."""

    def bind(call_uuid: str, leg: IAudioSocketLeg) -> ICallReceiver:
        """
        Take the connection that announced ``call_uuid``.

        Raises :class:`CallRefused` to have the protocol hang up, close and
        log the refusal; nothing else about the call is touched.
        """
