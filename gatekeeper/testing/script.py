"""
Scripted visitors and residents: what a simulated caller does, step by step.

A script is a tuple of steps run in order on one call: wait, wait until a
sound is heard, press keys, speak, hang up, or drop the connection and come
back with the same UUID (a network blip).  The script stops by itself when
gatekeeper hangs the call up.  :class:`Phone` says how a resident's extension
behaves when gatekeeper rings it: answers after some seconds (then runs its
script), never answers, or fails with an ``OriginateResponse`` reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol as TypingProtocol

from attrs import field, frozen
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from gatekeeper.testing.audio import signature_voice

__all__ = [
    "BUSY",
    "CONGESTION",
    "NO_ANSWER",
    "UNREACHABLE",
    "Drop",
    "HangUp",
    "Phone",
    "Press",
    "Speak",
    "Step",
    "Visitor",
    "Wait",
    "WaitFor",
    "run_script",
]

# OriginateResponse reasons (tests/fixtures/ami/README.md).
UNREACHABLE = 0
NO_ANSWER = 3
BUSY = 5
CONGESTION = 8


@frozen
class Wait:
    seconds: float


@frozen
class WaitFor:
    """Until ``sound`` (a prompt's name, BEEP, RINGBACK) starts, or has
    started since the last ``WaitFor``; then ``after`` seconds more.  After
    ``timeout`` seconds the caller gives up waiting and goes on."""

    sound: str
    after: float = 0.0
    timeout: float = 60.0


@frozen
class Press:
    digits: str
    gap: float = 0.12
    """Seconds between key releases."""


@frozen
class Speak:
    """Talk for ``seconds`` in the caller's signature voice (or say ``pcm``),
    with a little quiet before and after, as a person answering a beep."""

    seconds: float = 1.0
    pcm: bytes | None = None
    quiet_before: float = 0.2
    quiet_after: float = 1.2


@frozen
class HangUp:
    pass


@frozen
class Drop:
    """The connection is lost (no hang-up on AMI); it comes back after ``back_after``."""

    back_after: float = 0.5


Step = Wait | WaitFor | Press | Speak | HangUp | Drop


@frozen
class Visitor:
    """A visitor at the gate: what they do, and their voice's number."""

    steps: tuple[Step, ...] = field(converter=tuple)
    number: int = 0
    gate: str = "main"


@frozen
class Phone:
    """A resident's extension when gatekeeper rings it."""

    answer_after: float | None = 0.3
    """Seconds of ringing before the answer; None never answers."""
    reason: int | None = None
    """Fail with this OriginateResponse reason (BUSY...) after ``answer_after``."""
    steps: tuple[Step, ...] = field(default=(), converter=tuple)
    voice: int = 0
    """The signature number the resident speaks with, when they talk."""


class CallHandle(TypingProtocol):
    """What a script drives: one simulated channel (see :mod:`.pbx`)."""

    label: str
    clock: IReactorTime

    @property
    def up(self) -> bool: ...

    @property
    def number(self) -> int: ...

    def when_heard(self, sound: str, since: int = 0) -> Deferred[int]: ...

    def press(self, digit: str) -> None: ...

    def speak(self, pcm: bytes) -> Deferred[None]: ...

    def hang_up(self) -> None: ...

    def drop(self, back_after: float) -> Deferred[None]: ...

    def note(self, what: str, detail: str = "") -> None: ...


async def run_script(call: CallHandle, steps: Sequence[Step]) -> None:
    """Run ``steps`` on ``call``; stops early once the call is down."""
    clock = call.clock
    cursor = 0  # sounds heard up to the last WaitFor: later ones count
    for step in steps:
        if not call.up:
            return
        if isinstance(step, Wait):
            await deferLater(clock, step.seconds, lambda: None)
        elif isinstance(step, WaitFor):
            heard = call.when_heard(step.sound, cursor)
            heard.addTimeout(step.timeout, clock)
            try:
                cursor = await heard
            except TimeoutError:
                call.note("gave up waiting for", step.sound)
                continue
            if step.after:
                await deferLater(clock, step.after, lambda: None)
        elif isinstance(step, Press):
            for i, digit in enumerate(step.digits):
                if i:
                    await deferLater(clock, step.gap, lambda: None)
                if not call.up:
                    return
                call.press(digit)
        elif isinstance(step, Speak):
            voice = step.pcm
            if voice is None:
                voice = signature_voice(call.number, step.seconds)
            quiet = bytes(round(step.quiet_before * 8000) * 2)
            after = bytes(round(step.quiet_after * 8000) * 2)
            call.note("speaks", f"{len(voice) / 16000:.1f} s")
            await call.speak(quiet + voice + after)
        elif isinstance(step, HangUp):
            call.hang_up()
            return
        elif isinstance(step, Drop):
            await call.drop(step.back_after)
