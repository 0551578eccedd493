"""
Mutating corpus inputs: the hypothesis strategy of the in-suite run, and the
plain-random mutator ``run.py`` falls back on when atheris is not installed.

The mutations are libFuzzer's simplest ones (flip, set, insert, delete,
duplicate a span, splice another input in) plus two that know the wire
format: insert a well-formed frame, or rewrite a frame header's length,
which is where a decoder's bounds live.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

from hypothesis import strategies as st

from gatekeeper.audiosocket.wire import Kind, encode

__all__ = ["MAX_LEN", "apply_mutation", "mutate", "mutated_inputs"]

MAX_LEN = 8192

_FRAMES = (
    encode(Kind.SLIN, b"\x00\x01" * 160),
    encode(Kind.SLIN16, b"\x00\x01" * 320),
    encode(Kind.DTMF, b"1"),
    encode(Kind.DTMF, b"A"),
    encode(Kind.DTMF, b"*"),
    encode(Kind.HANGUP),
    encode(Kind.ERROR, b"\x01"),
    b"\xfeGK\xfe",  # the harness's connection separator
)
OPERATIONS = 9


def apply_mutation(
    data: bytes, op: int, position: int, value: int, other: bytes
) -> bytes:
    """One mutation of ``data``; ``position`` and ``value`` are taken modulo."""
    b = bytearray(data)
    n = len(b)
    op %= OPERATIONS
    if op == 0 and n:
        b[position % n] ^= 1 << (value % 8)
    elif op == 1 and n:
        b[position % n] = value & 0xFF
    elif op == 2:
        b[position % (n + 1) : position % (n + 1)] = bytes([value & 0xFF])
    elif op == 3 and n:
        start = position % n
        del b[start : start + 1 + value % 64]
    elif op == 4 and n:
        start = position % n
        chunk = b[start : start + 1 + value % 512]
        b[start:start] = chunk
    elif op == 5 and other:
        start = value % len(other)
        at = position % (n + 1)
        b[at:at] = other[start : start + 1 + value % 1024]
    elif op == 6:
        at = position % (n + 1)
        b[at:at] = _FRAMES[value % len(_FRAMES)]
    elif op == 7 and n >= 3:
        # Rewrite a length field near ``position`` to an edge value.
        at = 2 + position % max(1, n - 2)
        edges = (0, 1, 15, 16, 17, 1023, 1024, 1025, 0x7FFF, 0xFFFF)
        b[at - 1 : at + 1] = struct.pack("!H", edges[value % len(edges)])
    elif op == 8 and n:
        # Truncate: the stream ends mid-frame.
        del b[position % n :]
    return bytes(b[:MAX_LEN])


def mutated_inputs(corpus: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """A corpus input with up to eight mutations, or random bytes."""
    ops = st.lists(
        st.tuples(
            st.integers(0, OPERATIONS - 1),
            st.integers(0, 2**16),
            st.integers(0, 2**16),
            st.sampled_from(list(corpus)),
        ),
        max_size=8,
    )
    mutated = st.builds(_apply_all, st.sampled_from(list(corpus)), ops)
    return st.one_of(mutated, st.binary(max_size=512))


def _apply_all(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    for op, position, value, other in ops:
        data = apply_mutation(data, op, position, value, other)
    return data


def mutate(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """A new input from ``corpus`` (the fallback engine, no coverage)."""
    data = rng.choice(corpus)
    for _ in range(rng.randint(1, 8)):
        data = apply_mutation(
            data,
            rng.randrange(OPERATIONS),
            rng.randrange(2**16),
            rng.randrange(2**16),
            rng.choice(corpus),
        )
    return data
