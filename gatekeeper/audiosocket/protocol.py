"""
The Twisted adapter for AudioSocket: bytes in, frames out, nothing decided.

One :class:`AudioSocketProtocol` per TCP connection.  It waits for the UUID
frame (anything else first is a protocol error), asks the factory's
:class:`~gatekeeper.audiosocket.interfaces.ICallBinder` what the connection
is, and from then on hands audio and DTMF frames to the receiver the binder
returned.  Outbound it offers exactly what Asterisk accepts from a server:
audio frames, each written as one piece, and the hang-up frame.

Hostile input is bounded here: a maximum payload size (so at most one frame
is ever buffered), a handshake timeout for the UUID frame, an idle timeout,
a connection limit and a peer allowlist in the factory.  Garbage on one
connection logs one line and closes that connection only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from attrs import field, frozen, validators
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import (
    CallRefused,
    IAudioSocketLeg,
    ICallBinder,
    ICallReceiver,
)
from gatekeeper.audiosocket.wire import (
    AUDIO_KINDS,
    MAX_WIRE_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameError,
    Kind,
    audio_kind_of,
    encode_audio,
    encode_hangup,
)
from gatekeeper.fastpath import direct_writer

__all__ = ["AudioSocketFactory", "AudioSocketProtocol", "ListenerPolicy"]

_CONNECTION_DONE = Failure(ConnectionDone())
_READ_SIZE = 16384

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def _networks(value: Iterable[str | Network]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in value)


@frozen
class ListenerPolicy:
    """What the AudioSocket listener tolerates from its peers."""

    # 20 ms at 192 kHz is 7,680 bytes; twice that leaves room for 40 ms
    # packetisation without letting a peer make us buffer 64 KiB per call.
    max_payload: int = field(
        default=16384,
        validator=[validators.instance_of(int), validators.ge(1)],
    )
    # Asterisk sends the UUID frame in the same write as the connect; a peer
    # that has not done so in a few seconds is not Asterisk.
    handshake_timeout: float = field(default=5.0, validator=validators.gt(0))
    # Generous: a phone that suppresses silence sends nothing while its user
    # is quiet, and that is no reason to drop the call.
    idle_timeout: float = field(default=60.0, validator=validators.gt(0))
    max_connections: int = field(default=4096, validator=validators.ge(1))
    allow: tuple[Network, ...] = field(default=LOOPBACK, converter=_networks)

    def __attrs_post_init__(self) -> None:
        if self.max_payload > MAX_WIRE_PAYLOAD:
            raise ValueError(f"max_payload cannot exceed {MAX_WIRE_PAYLOAD}")

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)


def _describe(address: IAddress | None) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(IAudioSocketLeg, IPushProducer)
class AudioSocketProtocol(Protocol):
    """One AudioSocket connection; see the module docstring."""

    _log = Logger()

    factory: AudioSocketFactory
    call_uuid: str = ""
    peer: str = ""
    connected: bool = False

    def __init__(self) -> None:
        self._decoder: FrameDecoder | None = None
        self._receiver: ICallReceiver | None = None
        self._writable = True
        self._closing = False
        self._closed_waiters: list[Deferred[None]] = []
        self.frames_dropped = 0
        # Idle detection: one timer per connection that checks, when it fires,
        # how long ago the last bytes came, so a read costs one clock reading
        # rather than a timer reset.
        self._limit = 0.0
        self._last_heard = 0.0
        self._idle_check: IDelayedCall | None = None

    def when_closed(self) -> Deferred[None]:
        """A Deferred of its own for each caller, fired when the connection is gone."""
        if not self.connected and self.transport is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closed_waiters.append(waiter)
        return waiter

    # -- connection life -------------------------------------------------

    def connectionMade(self) -> None:
        policy = self.factory.policy
        self._clock = self.factory.clock
        self._now = self._clock.seconds
        self.peer = _describe(self.transport.getPeer())
        self.connected = True
        self._write = (
            direct_writer(self.transport)
            if self.factory.direct_send
            else self.transport.write
        )
        self._decoder = FrameDecoder(policy.max_payload)
        # Twisted reads up to 64 KiB at a time: a 64 KiB buffer allocated per
        # 323-byte frame.  16 KiB still holds two frames at 192 kHz, and also
        # bounds what we buffer for a peer that stops reading.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = _READ_SIZE
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        # Told when the peer stops reading, so audio is dropped rather than
        # piling up in our buffer (Asterisk hangs up on a late payload anyway).
        self.transport.registerProducer(self, True)
        self._set_limit(policy.handshake_timeout)
        self.factory.connection_opened(self)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        self.connected = False
        self._set_limit(None)
        self.factory.connection_closed(self)
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.connection_lost(reason)
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _set_limit(self, seconds: float | None) -> None:
        """Hang up after ``seconds`` with nothing heard (None: never)."""
        check, self._idle_check = self._idle_check, None
        if check is not None and check.active():
            check.cancel()
        if seconds is None:
            return
        self._limit = seconds
        self._last_heard = self._now()
        self._idle_check = self._clock.callLater(seconds, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_check = None
        quiet = self._now() - self._last_heard
        if quiet < self._limit:
            self._idle_check = self._clock.callLater(
                self._limit - quiet, self._check_idle
            )
            return
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        if self._receiver is None:
            self._log.warn(
                "no UUID frame from {peer} within {timeout}s; closing",
                peer=self.peer,
                timeout=self.factory.policy.handshake_timeout,
            )
        else:
            self._log.info(
                "call {call_uuid}: no frame from {peer} for {timeout}s; hanging up",
                call_uuid=self.call_uuid,
                peer=self.peer,
                timeout=self.factory.policy.idle_timeout,
            )
        self.hang_up()

    # -- inbound ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        decoder = self._decoder
        assert decoder is not None
        receiver = self._receiver
        if receiver is not None and not decoder.buffered:
            # The usual read: exactly one audio frame, as Asterisk writes them.
            kind = audio_kind_of(data, decoder.max_payload)
            if kind is not None:
                self._last_heard = self._now()
                receiver.audio_received(kind, data[3:])
                return
        try:
            frames = decoder.feed(data)
        except FrameError as e:
            # The frames before the fault were whole: act on them, then close.
            for frame in e.frames:
                if self._closing:
                    return
                self._frame_received(frame)
            self._protocol_error(str(e))
            return
        self._last_heard = self._now()
        for frame in frames:
            if self._closing:
                return
            self._frame_received(frame)

    def _frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        receiver = self._receiver
        if receiver is None:
            if kind is not Kind.UUID:
                self._protocol_error(f"first frame is {kind.name}, not the call UUID")
            else:
                self._bind(frame.uuid)
        elif kind in AUDIO_KINDS:
            receiver.audio_received(kind, frame.payload)
        elif kind is Kind.DTMF:
            receiver.dtmf_received(frame.digit)
        elif kind is Kind.UUID:
            self._protocol_error("a second UUID frame")
        elif kind is Kind.HANGUP:
            self._log.info(
                "call {call_uuid}: hang-up frame from {peer}",
                call_uuid=self.call_uuid,
                peer=self.peer,
            )
            self._close()
        else:  # Kind.ERROR
            self._log.warn(
                "call {call_uuid}: error frame 0x{flags:02x} from {peer}",
                call_uuid=self.call_uuid,
                peer=self.peer,
                flags=frame.payload[0],
            )
            self._close()

    def _bind(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        try:
            self._receiver = self.factory.binder.bind(call_uuid, self)
        except CallRefused as refusal:
            self._log.warn(
                "call {call_uuid}: refused connection from {peer}: {refusal}",
                call_uuid=call_uuid,
                peer=self.peer,
                refusal=str(refusal),
                reason=refusal.reason,
            )
            self.hang_up()
            return
        self._set_limit(self.factory.policy.idle_timeout)

    def _protocol_error(self, problem: str) -> None:
        if self._closing:
            # Already hanging up or refused: what follows is not worth a line.
            return
        self._log.warn(
            "call {call_uuid}: protocol error from {peer}: {problem}; closing",
            call_uuid=self.call_uuid or None,
            peer=self.peer,
            problem=problem,
        )
        self.factory.protocol_errors += 1
        self._close()

    # -- outbound (IAudioSocketLeg) -------------------------------------

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        return self.send_frame(encode_audio(kind, payload))

    def send_frame(self, frame: bytes) -> bool:
        if self._closing or not self._writable:
            self.frames_dropped += 1
            return False
        self._write(frame)
        return True

    def hang_up(self) -> None:
        if self._closing:
            return
        if self.connected:
            self._write(encode_hangup())
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._set_limit(None)
        self.transport.loseConnection()

    # -- IPushProducer: the transport tells us when the peer stops reading --

    def pauseProducing(self) -> None:
        self._writable = False

    def resumeProducing(self) -> None:
        self._writable = True

    def stopProducing(self) -> None:
        self._writable = False


class AudioSocketFactory(Factory):
    """Builds one protocol per allowed connection, up to the limit."""

    protocol = AudioSocketProtocol
    noisy = False
    _log = Logger()

    def __init__(
        self,
        binder: ICallBinder,
        clock: IReactorTime,
        policy: ListenerPolicy | None = None,
        direct_send: bool = True,
    ) -> None:
        self.binder = binder
        self.direct_send = direct_send
        self.clock = clock
        self.policy = policy if policy is not None else ListenerPolicy()
        self.connections: set[AudioSocketProtocol] = set()
        self.refused_connections = 0
        self.protocol_errors = 0

    def buildProtocol(self, addr: IAddress) -> AudioSocketProtocol | None:
        host = getattr(addr, "host", "")
        if not self.policy.allows(host):
            self.refused_connections += 1
            self._log.warn(
                "refused AudioSocket connection from {peer}: not in the allowlist",
                peer=_describe(addr),
            )
            return None
        if len(self.connections) >= self.policy.max_connections:
            self.refused_connections += 1
            self._log.warn(
                "refused AudioSocket connection from {peer}: {limit} connections open",
                peer=_describe(addr),
                limit=self.policy.max_connections,
            )
            return None
        return super().buildProtocol(addr)  # type: ignore[return-value]

    def connection_opened(self, connection: AudioSocketProtocol) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: AudioSocketProtocol) -> None:
        self.connections.discard(connection)

    def hang_up_all(self, timeout: float) -> Deferred[None]:
        """
        Hang up every connection; fire when all are closed or ``timeout`` passed.

        A service's ``stopService`` returns this so twistd waits for Asterisk
        to be told, rather than leave channels talking to a dead socket.
        """
        pending = [c for c in self.connections if c.connected]
        if not pending:
            return succeed(None)
        closed = DeferredList([c.when_closed() for c in pending], consumeErrors=True)
        for connection in pending:
            connection.hang_up()
        closed.addTimeout(timeout, self.clock)
        closed.addErrback(lambda failure: failure.trap(TimeoutError))
        return closed.addCallback(lambda _: None)
