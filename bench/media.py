"""
CPU cost of the media engine per 20 ms frame, and the DTMF detector's figures.

Run from the repository root::

    python bench/media.py [--presses 2000] [--talk-minutes 20]

Prints the CPU time (``time.process_time``) one 20 ms frame costs in the VAD
recorder, the Goertzel DTMF detector and the streaming resampler, at several
rates; then the share of key presses detected at 10 dB SNR (50 ms tones,
worst-case twist and frequency error) and the false digits per minute of
speech-like talk.  The signals come from ``tests/media/signals.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.media.dtmf import DtmfDetector, dtmf_sequence
from gatekeeper.media.resample import StreamResampler, samples_to_pcm
from gatekeeper.media.vad import Recorder, VadSettings
from tests.media.signals import speech_like, white_noise
from tests.media.test_dtmf import detection_rate, false_digits


def per_frame(
    make: Callable[[], Callable[[bytes], object]], rate: int, seconds: float
) -> float:
    """Microseconds of CPU per 20 ms frame, feeding speech-like audio."""
    rng = np.random.default_rng(1)
    signal = speech_like(rng, seconds, rate, -20) + white_noise(rng, seconds, rate, -50)
    pcm = samples_to_pcm(signal)
    size = rate // 50 * 2
    chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    feed = make()
    start = time.process_time()
    for chunk in chunks:
        feed(chunk)
    return (time.process_time() - start) / len(chunks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--presses", type=int, default=2000)
    parser.add_argument("--talk-minutes", type=float, default=20.0)
    options = parser.parse_args()

    print("CPU time per 20 ms frame (µs)")
    never_done = VadSettings(
        no_speech_timeout=1e9, max_length=1e9, trailing_silence=1e9
    )
    for rate in (8000, 16000, 48000):
        vad = per_frame(lambda r=rate: Recorder(r, never_done).feed, rate, 60)
        dtmf = per_frame(lambda r=rate: DtmfDetector(r).feed_pcm, rate, 60)
        print(f"  {rate:>6} Hz   VAD recorder {vad:6.1f}   Goertzel DTMF {dtmf:6.1f}")
    for source, target in (
        (8000, 16000),
        (16000, 8000),
        (8000, 48000),
        (48000, 8000),
        (44100, 8000),
    ):
        cost = per_frame(
            lambda s=source, t=target: StreamResampler(s, t).feed_pcm, source, 20
        )
        print(f"  resample {source:>6} -> {target:>6} Hz   {cost:6.1f}")

    rng = np.random.default_rng(2024)
    rate, wrong = detection_rate(rng, options.presses, 10.0)
    print(
        f"DTMF at 10 dB SNR: {rate:.2%} of {options.presses} key presses detected "
        f"(50 ms tones, twist ±3 dB, frequency error ±1.5 %), {wrong} wrong digits"
    )
    minutes = max(1, round(options.talk_minutes))
    false = sum(
        len(false_digits(np.random.default_rng(100 + m), 60.0)) for m in range(minutes)
    )
    print(
        f"DTMF in speech-like talk: {false} false digits in {minutes} min "
        f"({false / minutes:.2f} per minute)"
    )
    clean = DtmfDetector(8000).feed(dtmf_sequence("0123456789*#ABCD", 8000))
    print(f"DTMF sanity: {''.join(clean)}")


if __name__ == "__main__":
    main()
