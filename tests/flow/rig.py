"""
An in-memory building for testing whole visits: registry, pacer, flow, with
fakes for Asterisk's legs and AMI, the door and the access log, on a Clock.

Prompts are synthetic: each is a run of one constant sample value, so what a
leg heard can be read back as a list of prompt names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.accesslog import VisitRecord
from gatekeeper.audiosocket.interfaces import IAudioSocketLeg, ICallReceiver
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.dialer.interfaces import (
    DialerUnavailable,
    OriginateResult,
    Outcome,
    VisitorChannel,
)
from gatekeeper.directory import DirectoryService
from gatekeeper.door import DoorResult
from gatekeeper.flow.conversation import ConversationFactory, VisitServices
from gatekeeper.flow.machine import FlowSettings
from gatekeeper.media.pacer import Pacer
from gatekeeper.media.prompts import Prompt, PromptLibrary
from gatekeeper.media.wavfile import WavAudio
from gatekeeper.session.registry import SessionRegistry

CALL = "e69439e9-1489-4bba-b55d-37612b5dffaf"
PROMPT_VALUES = {str(p): 1000 + 100 * i for i, p in enumerate(Prompt)}
NAMES_BY_VALUE = {v: k for k, v in PROMPT_VALUES.items()}

DIRECTORY = """\
apartment,name,extensions
101,Ana Souza,1011|1012
202,Bruno,2021
concierge,Front desk,9000
"""


def synthetic_prompts(seconds: float = 0.1) -> PromptLibrary:
    return PromptLibrary(
        {
            name: WavAudio(np.full(int(8000 * seconds), value, np.int16), 8000)
            for name, value in PROMPT_VALUES.items()
        }
    )


def heard(pcm: bytes) -> list[str]:
    """The prompts in ``pcm`` in order; '~' for anything else that is not silence."""
    samples = np.frombuffer(pcm, dtype="<i2")
    labels: list[str] = []
    i, n = 0, len(samples)
    while i < n:
        j = i
        while j < n and samples[j] == samples[i]:
            j += 1
        value = int(samples[i])
        if value != 0:
            label = NAMES_BY_VALUE.get(value) if j - i >= 40 else None
            label = label or "~"
            if not labels or labels[-1] != label:
                labels.append(label)
        i = j
    return labels


@implementer(IAudioSocketLeg)
class FakeConnection:
    """Asterisk's end of one AudioSocket connection."""

    def __init__(self, clock: Clock, call_uuid: str, peer: str) -> None:
        self.clock = clock
        self.call_uuid = call_uuid
        self.peer = peer
        self.connected = True
        self.frames: list[tuple[Kind, bytes]] = []
        self.hung_up = False
        self.receiver: ICallReceiver | None = None

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        if not self.connected:
            return False
        self.frames.append((kind, payload))
        return True

    def send_frame(self, frame: bytes) -> bool:
        return self.send_audio(Kind(frame[0]), bytes(frame[3:]))

    def hang_up(self) -> None:
        self.hung_up = True
        self.clock.callLater(0, self.close)

    def close(self) -> None:
        if self.connected:
            self.connected = False
            assert self.receiver is not None
            self.receiver.connection_lost(Failure(ConnectionDone()))

    def press(self, digits: str) -> None:
        assert self.receiver is not None
        for digit in digits:
            self.receiver.dtmf_received(digit)

    def send(self, pcm: bytes, kind: Kind = Kind.SLIN) -> None:
        assert self.receiver is not None
        self.receiver.audio_received(kind, pcm)

    @property
    def audio(self) -> bytes:
        return b"".join(p for _, p in self.frames)

    def heard(self) -> list[str]:
        return heard(self.audio)


@implementer(IAudioSocketLeg)
class FakeDialer:
    """The AMI dialer, answering as the test says."""

    def __init__(self) -> None:
        self.connected = True
        self.calls: dict[str, Deferred[OriginateResult]] = {}
        self.rung: list[str] = []
        self.gone: dict[str, Deferred[int | None]] = {}
        self.visitor_gone: Deferred[bool] | None = None
        self.done_channels: list[str] = []
        self.hung_up_residents = 0
        self.visitor: VisitorChannel | None = None
        self.forgotten: list[str] = []

    def call_resident(
        self, call_uuid: str, extension: str, ring_timeout: float
    ) -> Deferred[OriginateResult]:
        if not self.connected:
            return fail(DialerUnavailable("AMI is down"))
        self.rung.append(extension)
        d: Deferred[OriginateResult] = Deferred()
        self.calls[extension] = d
        return d

    def answer(self, extension: str, outcome: Outcome = Outcome.ANSWERED) -> None:
        self.calls.pop(extension).callback(
            OriginateResult(CALL, extension, f"{CALL}-{extension}", outcome)
        )

    def when_resident_gone(self, channel_id: str) -> Deferred[int | None]:
        d: Deferred[int | None] = Deferred()
        self.gone[channel_id] = d
        return d

    def resident_hangs_up(self, extension: str) -> None:
        self.gone.pop(f"{CALL}-{extension}").callback(16)

    def hang_up_resident(self, call_uuid: str) -> Deferred[int]:
        self.hung_up_residents += 1
        return succeed(0)

    def visitor_channel(self, call_uuid: str) -> VisitorChannel | None:
        return self.visitor

    def when_visitor_announced(
        self, call_uuid: str, timeout: float | None = None
    ) -> Deferred[VisitorChannel | None]:
        return Deferred()

    def when_visitor_gone(self, call_uuid: str) -> Deferred[bool]:
        self.visitor_gone = Deferred()
        return self.visitor_gone

    def forget(self, call_uuid: str) -> None:
        """As AMIDialer.forget does: the call's resident watches fire with None."""
        self.forgotten.append(call_uuid)
        for channel_id in [c for c in self.gone if c.startswith(call_uuid)]:
            self.gone.pop(channel_id).callback(None)

    def set_done(self, channel: str) -> Deferred[bool]:
        self.done_channels.append(channel)
        return succeed(True)


class FakeAccessLog:
    def __init__(self) -> None:
        self.records: list[VisitRecord] = []
        self.pending: list[Deferred[None]] = []
        self.hold = False
        self.failures = 0

    def record(self, visit: VisitRecord) -> Deferred[None]:
        if self.failures:
            self.failures -= 1
            return fail(OSError("disk full"))
        self.records.append(visit)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.pending.append(d)
            return d
        return succeed(None)


class FakeDoor:
    def __init__(self, opens: bool = True) -> None:
        self.opens = opens
        self.opened: list[tuple[str, str]] = []

    def open(
        self, call_uuid: str, apartment: str, context: Any
    ) -> Deferred[DoorResult]:
        self.opened.append((call_uuid, apartment))
        if self.opens:
            return succeed(DoorResult("opened", "relay answered 200", "http"))
        return succeed(DoorResult("failed", "relay timed out", "http"))


class Rig:
    """One building, one Clock."""

    def __init__(self, directory_path: Path, **flow: Any) -> None:
        directory_path.write_text(DIRECTORY)
        self.clock = Clock()
        self.pacer = Pacer(self.clock)
        self.dialer = FakeDialer()
        self.log = FakeAccessLog()
        self.door = FakeDoor()
        self.registry = SessionRegistry(self.clock, grace_period=10.0)
        self.services = VisitServices(
            clock=self.clock,
            pacer=self.pacer,
            prompts=synthetic_prompts(),
            directory=DirectoryService(str(directory_path)),
            access_log=self.log,  # type: ignore[arg-type]
            door=self.door,  # type: ignore[arg-type]
            dialer=self.dialer,  # type: ignore[arg-type]
            registry=self.registry,
            # Short: a visit context keeps the path, and checks its length.
            recordings=Path(tempfile.mkdtemp(prefix="gk-rec-")),
            flow=FlowSettings(**flow),
        )
        self.conversations = ConversationFactory(self.services)
        self.registry.listener_factory = self.conversations
        self.registry.startService()

    def connect(self, peer: str = "127.0.0.1:1") -> FakeConnection:
        connection = FakeConnection(self.clock, CALL, peer)
        connection.receiver = self.registry.bind(CALL, connection)
        return connection

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            self.clock.advance(0.02)

    def speak(self, visitor: FakeConnection, seconds: float = 1.0) -> None:
        """Quiet, then a voice-like tone, then quiet: what the VAD records."""
        t = np.arange(160) / 8000
        quiet = (np.sin(2 * np.pi * 200 * t) * 20).astype("<i2").tobytes()
        voice = (np.sin(2 * np.pi * 700 * t) * 8000).astype("<i2").tobytes()
        for chunk in [quiet] * 15 + [voice] * round(seconds / 0.02) + [quiet] * 60:
            visitor.send(chunk)
            self.clock.advance(0.02)

    def resident_answers(
        self, extension: str = "1011", peer: str = "127.0.0.1:2"
    ) -> FakeConnection:
        """``extension`` picks up; its leg arrives and hears the announcement."""
        self.dialer.answer(extension)
        resident = self.connect(peer)
        self.run(2.5)
        return resident

    def to_resident(self, apartment: str = "101") -> FakeConnection:
        """A visitor who chose ``apartment`` and said a name; the first extension rings."""
        visitor = self.connect()
        self.run(0.3)
        visitor.press(apartment + "#")
        self.run(0.5)
        self.speak(visitor)
        return visitor
