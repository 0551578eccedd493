"""
The seed corpus: real Asterisk streams cut into pieces, and edge cases.

``python -m tests.fuzz.seeds`` (re)writes ``tests/fuzz/corpus/``.  The
pieces are small on purpose (a few frames each: the fuzzer mutates short
inputs faster and libFuzzer's ``-max_len`` stays low) and always cut at frame
boundaries of the transcripts' own tables, so a piece is what Asterisk
really sends from some point of a call on.  The edge cases are the faults
the wire format names (``audiosocket.md``), each one frame away from a valid
stream, and the registry's ways in (impersonating a live call, the expected
resident, a leg that drops and comes back, the keys the fuzz flows obey).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from gatekeeper.audiosocket.wire import Kind, encode
from tests.fuzz.harness import FRESH, SEPARATOR, FuzzCase
from tests.transcripts import transcript, transcript_names

__all__ = ["CORPUS", "build_seeds", "corpus_inputs"]

CORPUS = Path(__file__).parent / "corpus"

PIECE_FRAMES = 5
PIECES_PER_TRANSCRIPT = 3

_FRESH = encode(Kind.UUID, uuid.UUID(FRESH).bytes)
_AUDIO = encode(Kind.SLIN, bytes(range(160)) * 2)


def _dtmf(digits: str) -> bytes:
    return b"".join(encode(Kind.DTMF, d.encode()) for d in digits)


def _transcript_pieces() -> dict[str, bytes]:
    """A few frames from the start, the middle and the end of each transcript."""
    seeds: dict[str, bytes] = {}
    for name in transcript_names():
        t = transcript(name)
        if not t.data:
            continue
        offsets = [f.offset for f in t.frames] + [len(t.data)]
        count = len(t.frames)
        starts = sorted({0, max(0, count // 2 - 2), max(0, count - PIECE_FRAMES)})[
            :PIECES_PER_TRANSCRIPT
        ]
        # Where the interesting frames are (DTMF, a kind change), take them too.
        for i, frame in enumerate(t.frames):
            if frame.kind == Kind.DTMF:
                starts.append(max(0, i - 1))
                break
        for n, start in enumerate(dict.fromkeys(starts)):
            stop = min(start + PIECE_FRAMES, count)
            piece = t.data[offsets[start] : offsets[stop]]
            # A piece from mid-call gets a UUID frame first (lead 3), so it is
            # read as a call's frames rather than refused at once.
            lead = 0 if start == 0 else 3
            flags = (n * 5) % 4 << 6  # vary the cutting across pieces
            seeds[f"transcript-{name}-{n}"] = FuzzCase(
                lead=lead, chunking=flags >> 6, seed=37 * n + 3, stream=piece
            ).encode()
    return seeds


def _edge_cases() -> dict[str, bytes]:
    f = _FRESH
    cases: dict[str, FuzzCase] = {
        "empty": FuzzCase(),
        "handshake-timeout": FuzzCase(time_passes=True, seed=7),
        "uuid-only-idle-timeout": FuzzCase(stream=f, time_passes=True, seed=9),
        "uuid-partial-header": FuzzCase(stream=f + b"\x10\x01"),
        "uuid-partial-payload": FuzzCase(stream=f + _AUDIO[:100], chunking=2),
        "hangup-frame": FuzzCase(stream=f + _AUDIO + encode(Kind.HANGUP)),
        "hangup-frame-with-length": FuzzCase(stream=f + b"\x00\x00\x04abcd" + _AUDIO),
        "error-frame": FuzzCase(stream=f + encode(Kind.ERROR, b"\x01")),
        "error-frame-long": FuzzCase(stream=f + encode(Kind.ERROR, b"\x01\x02")),
        "second-uuid": FuzzCase(stream=f + _AUDIO + f),
        "audio-before-uuid": FuzzCase(stream=_AUDIO + f),
        "dtmf-before-uuid": FuzzCase(stream=_dtmf("1") + f),
        "unknown-kind": FuzzCase(stream=f + b"\x02\x00\x01x"),
        "zero-length-audio": FuzzCase(stream=f + b"\x10\x00\x00" + _AUDIO),
        "zero-length-slin16": FuzzCase(stream=f + b"\x12\x00\x00"),
        "oversize-header": FuzzCase(stream=f + b"\x10\xff\xff" + b"\x00" * 64),
        "bound-exact": FuzzCase(stream=f + encode(Kind.SLIN, b"\x01" * 1024)),
        "bound-plus-one": FuzzCase(stream=f + encode(Kind.SLIN, b"\x01" * 1025)),
        "bound-split": FuzzCase(
            stream=f + encode(Kind.SLIN, b"\x02" * 1024) * 2, chunking=1, seed=254
        ),
        "uuid-short": FuzzCase(stream=b"\x01\x00\x0f" + bytes(15)),
        "uuid-long": FuzzCase(stream=b"\x01\x00\x11" + bytes(17)),
        "dtmf-bad-digit": FuzzCase(stream=f + b"\x03\x00\x01x"),
        "dtmf-two-bytes": FuzzCase(stream=f + b"\x03\x00\x0212"),
        "dtmf-all-digits": FuzzCase(stream=f + _dtmf("0123456789#abcd*"), chunking=2),
        "kind-changes": FuzzCase(
            stream=f + b"".join(encode(k, b"\x00\x01" * 8) for k in Kind if k.is_audio)
        ),
        "impersonate-healthy": FuzzCase(lead=1, stream=_AUDIO + _dtmf("A*")),
        "expected-resident": FuzzCase(lead=2, stream=_AUDIO + _dtmf("123")),
        "expected-resident-ends-pair": FuzzCase(lead=2, stream=_dtmf("A") + _AUDIO),
        "expected-resident-released": FuzzCase(lead=2, stream=_dtmf("CB") + _AUDIO),
        "expected-resident-hangs-up": FuzzCase(lead=2, stream=_dtmf("*") + _AUDIO),
        "visitor-expects-resident": FuzzCase(
            lead=3, stream=_dtmf("B") + SEPARATOR + f + _AUDIO + _dtmf("D")
        ),
        "drop-and-reattach": FuzzCase(
            sequential=True,
            time_passes=True,
            seed=2,
            stream=f + _AUDIO + SEPARATOR + f + _AUDIO + SEPARATOR + f,
        ),
        "reset-and-reattach": FuzzCase(
            sequential=True, reset=True, stream=f + _AUDIO + SEPARATOR + f + _AUDIO
        ),
        "two-visitors-interleaved": FuzzCase(
            stream=f + _AUDIO + SEPARATOR + f + _AUDIO, chunking=3, seed=11
        ),
        "four-connections": FuzzCase(
            lead=2,
            stream=_AUDIO + SEPARATOR + f + SEPARATOR + f + SEPARATOR + _dtmf("1"),
        ),
        "withdraw-then-late-resident": FuzzCase(
            lead=3,
            sequential=True,
            stream=_dtmf("BD") + _AUDIO + SEPARATOR + f + _AUDIO,
        ),
    }
    return {f"edge-{name}": case.encode() for name, case in cases.items()}


def build_seeds() -> dict[str, bytes]:
    """Every seed by file name."""
    return {**_transcript_pieces(), **_edge_cases()}


def corpus_inputs(directory: Path = CORPUS) -> list[tuple[str, bytes]]:
    """The committed corpus, in name order."""
    return sorted((p.name, p.read_bytes()) for p in directory.iterdir() if p.is_file())


def main(argv: list[str]) -> int:
    directory = Path(argv[1]) if len(argv) > 1 else CORPUS
    directory.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds()
    for name, data in seeds.items():
        (directory / name).write_bytes(data)
    total = sum(map(len, seeds.values()))
    print(f"{len(seeds)} seeds, {total} bytes, in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
