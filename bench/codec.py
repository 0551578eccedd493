"""
Throughput of the AudioSocket codec on one core.

Prints frames/s and MB/s for decoding 320-byte slin frames (fed in 64 KiB
reads, as the reactor delivers them, and one frame per read, as Asterisk
writes them), for a stream fed one byte at a time, and for encoding.

    python -m bench.codec [--seconds 2]

Goal (issue 2): at least 1,000,000 decoded 320-byte frames per second.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from gatekeeper.audiosocket.wire import FrameDecoder, Kind, encode_audio

FRAME = encode_audio(Kind.SLIN, bytes(range(256)) + bytes(64))
PAYLOAD = FRAME[3:]


def rate(work: Callable[[], int], seconds: float) -> tuple[float, float]:
    """Frames per second and bytes per second of ``work`` over ``seconds``."""
    frames = 0
    start = time.process_time()
    deadline = start + seconds
    while (now := time.process_time()) < deadline:
        frames += work()
    elapsed = now - start
    return frames / elapsed, frames * len(FRAME) / elapsed


def decode_reads(read_size: int) -> Callable[[], int]:
    stream = FRAME * ((1 << 20) // len(FRAME))
    reads = [stream[i : i + read_size] for i in range(0, len(stream), read_size)]

    def work() -> int:
        decoder = FrameDecoder()
        feed = decoder.feed
        return sum(len(feed(r)) for r in reads)

    return work


def decode_bytewise() -> Callable[[], int]:
    stream = FRAME * 200
    reads = [stream[i : i + 1] for i in range(len(stream))]

    def work() -> int:
        feed = FrameDecoder().feed
        return sum(len(feed(r)) for r in reads)

    return work


def encode_frames() -> Callable[[], int]:
    def work() -> int:
        for _ in range(10000):
            encode_audio(Kind.SLIN, PAYLOAD)
        return 10000

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        print(f"CPU affinity: {cpus} (pin with taskset -c 0 for a one-core figure)")
    cases = [
        ("decode, 64 KiB reads", decode_reads(65536)),
        ("decode, one frame per read", decode_reads(len(FRAME))),
        ("decode, one byte per read", decode_bytewise()),
        ("encode_audio", encode_frames()),
    ]
    print(f"{'case':<30} {'frames/s':>12} {'MB/s':>9}")
    for name, work in cases:
        frames_per_s, bytes_per_s = rate(work, args.seconds)
        print(f"{name:<30} {frames_per_s:>12,.0f} {bytes_per_s / 1e6:>9.1f}")


if __name__ == "__main__":
    main()
