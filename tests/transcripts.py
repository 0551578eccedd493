"""
Reading the Asterisk transcripts in ``tests/fixtures/asterisk``.

Each ``NAME.bin`` is the byte stream a real Asterisk wrote; ``NAME.txt`` is
its sidecar, whose per-frame table says what a decoder must find in it.
"""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

FIXTURES = Path(__file__).parent / "fixtures"
ASTERISK = FIXTURES / "asterisk"


@frozen
class ExpectedFrame:
    offset: int
    kind: int
    length: int
    detail: str


@frozen
class Transcript:
    name: str
    data: bytes
    frames: tuple[ExpectedFrame, ...]

    @property
    def uuid(self) -> str | None:
        for frame in self.frames:
            if frame.kind == 0x01:
                return frame.detail.split()[0].removeprefix("uuid=")
        return None

    @property
    def digits(self) -> str:
        return "".join(f.detail.split("'")[1] for f in self.frames if f.kind == 0x03)


def transcript(name: str) -> Transcript:
    data = (ASTERISK / f"{name}.bin").read_bytes()
    frames = []
    in_table = False
    for line in (ASTERISK / f"{name}.txt").read_text().splitlines():
        if line.startswith("idx\toffset"):
            in_table = True
            continue
        if in_table:
            if not line.strip() or line.startswith("#"):
                break
            _idx, offset, _t, _dt, kind, _name, length, detail = line.split("\t", 7)
            frames.append(
                ExpectedFrame(int(offset), int(kind, 16), int(length), detail)
            )
    return Transcript(name, data, tuple(frames))


def transcript_names() -> list[str]:
    return sorted(p.stem for p in ASTERISK.glob("*.bin"))
