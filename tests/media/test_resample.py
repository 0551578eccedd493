"""Tests for gatekeeper.media.resample: frequency response and streaming."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media.resample import (
    AUDIOSOCKET_RATES,
    StreamResampler,
    pcm_to_samples,
    resample,
    resample_pcm,
    samples_to_pcm,
)


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 10000.0):
    return amplitude * np.sin(
        2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate
    )


def amplitude_at(samples: np.ndarray, frequency: float, rate: int) -> float:
    """Amplitude of one frequency in the middle half of ``samples`` (no edges)."""
    middle = np.asarray(samples, dtype=np.float64)[
        samples.size // 4 : -samples.size // 4
    ]
    times = np.arange(middle.size) / rate
    window = np.hanning(middle.size)
    term = np.dot(middle * window, np.exp(-2j * np.pi * frequency * times))
    return float(2 * abs(term) / window.sum())


def assert_close(
    case: SynchronousTestCase, actual: float, expected: float, delta: float, msg=""
) -> None:
    """trial's assertAlmostEqual has no ``delta``; this is the same check."""
    if abs(actual - expected) > delta:
        case.fail(f"{actual!r} is not within {delta} of {expected!r} {msg}")


class ResampleResponseTests(SynchronousTestCase):
    def test_passband_tone_survives_downsampling(self) -> None:
        """A 3.5 kHz tone goes from 16 kHz to 8 kHz at its full level."""
        out = resample(sine(3500, 16000, 1.0), 16000, 8000)
        self.assertEqual(out.size, 8000)
        assert_close(self, amplitude_at(out, 3500, 8000), 10000, delta=100)

    def test_above_nyquist_does_not_alias(self) -> None:
        """A 6 kHz tone at 16 kHz leaves nothing at its 2 kHz alias in 8 kHz output."""
        out = resample(sine(6000, 16000, 1.0), 16000, 8000)
        self.assertLess(amplitude_at(out, 2000, 8000), 10000 * 10 ** (-70 / 20))
        self.assertLess(np.abs(out.astype(float)[200:-200]).max(), 10)

    def test_every_rate_pair_keeps_the_telephone_band(self) -> None:
        """Between any two AudioSocket rates, 300 Hz and 3.4 kHz keep their level."""
        for source in AUDIOSOCKET_RATES:
            for target in AUDIOSOCKET_RATES:
                signal = sine(300, source, 0.2) + sine(3400, source, 0.2)
                out = resample(signal, source, target)
                for frequency in (300, 3400):
                    assert_close(
                        self,
                        amplitude_at(out, frequency, target),
                        10000,
                        delta=150,
                        msg=f"{source} -> {target} at {frequency} Hz",
                    )

    def test_upsampling_adds_no_images(self) -> None:
        """8 kHz -> 48 kHz puts no image of a 1 kHz tone at 7 or 9 kHz."""
        out = resample(sine(1000, 8000, 0.5), 8000, 48000)
        assert_close(self, amplitude_at(out, 1000, 48000), 10000, delta=100)
        for image in (7000, 9000, 15000):
            self.assertLess(amplitude_at(out, image, 48000), 3)

    def test_output_aligned_with_input(self) -> None:
        """The one-shot converter removes the filter's delay: a click stays put."""
        click = np.zeros(800)
        click[400] = 20000
        out = resample(click, 8000, 16000).astype(float)
        self.assertEqual(int(np.argmax(out)), 800)

    def test_saturates_instead_of_wrapping(self) -> None:
        """Filter overshoot on a full-scale square wave is clipped, not wrapped."""
        square = np.where(np.arange(1600) % 20 < 10, 32767, -32768)
        out = resample(square, 8000, 16000)
        self.assertEqual(out.dtype, np.int16)
        self.assertEqual(int(out.max()), 32767)
        self.assertEqual(int(out.min()), -32768)

    def test_same_rate_is_a_copy(self) -> None:
        """Equal rates return the samples unchanged."""
        signal = np.arange(-5, 5, dtype=np.int16)
        self.assertEqual(resample(signal, 8000, 8000).tolist(), signal.tolist())
        pcm = samples_to_pcm(signal)
        self.assertEqual(resample_pcm(pcm, 16000, 16000), pcm)

    def test_length(self) -> None:
        """The output has ceil(n * to / from) samples; empty in, empty out."""
        self.assertEqual(resample(np.ones(7), 8000, 44100).size, 39)
        self.assertEqual(resample(np.ones(7), 44100, 8000).size, 2)
        self.assertEqual(resample(np.zeros(0), 8000, 16000).size, 0)

    def test_refuses_unreasonable_ratio(self) -> None:
        """A rate pair needing a gigantic filter is a ValueError, not a stall."""
        self.assertRaises(ValueError, resample, np.ones(10), 8000, 8001)
        self.assertRaises(ValueError, resample, np.ones(10), 0, 8000)
        self.assertRaises(ValueError, resample, np.ones((2, 10)), 8000, 16000)

    def test_pcm_conversions(self) -> None:
        """PCM bytes are little-endian int16; odd lengths are refused."""
        self.assertEqual(pcm_to_samples(b"\x01\x00\xff\xff").tolist(), [1, -1])
        self.assertEqual(
            samples_to_pcm(np.array([1.4, -1.6, 40000.0])), b"\x01\x00\xfe\xff\xff\x7f"
        )
        self.assertRaises(ValueError, pcm_to_samples, b"\x00")
        self.assertEqual(len(resample_pcm(bytes(320), 8000, 16000)), 640)


class StreamResamplerTests(SynchronousTestCase):
    def test_one_frame_out_per_frame_in(self) -> None:
        """Each 20 ms frame in yields one 20 ms frame out, for every rate pair."""
        for source in AUDIOSOCKET_RATES:
            for target in AUDIOSOCKET_RATES:
                stream = StreamResampler(source, target)
                for _ in range(3):
                    out = stream.feed(np.zeros(source // 50))
                    self.assertEqual(out.size, target // 50, f"{source} -> {target}")

    def test_stream_matches_one_shot(self) -> None:
        """Streamed output is the one-shot output delayed by the filter: no seams."""
        rng = np.random.default_rng(5)
        signal = rng.normal(0, 3000, 8000)
        stream = StreamResampler(8000, 16000)
        streamed = np.concatenate(
            [stream.feed(signal[i : i + 160]) for i in range(0, 8000, 160)]
        )
        whole = resample(signal, 8000, 16000)
        delay = round(stream.delay * 16000)
        difference = streamed[delay:].astype(int) - whole[: whole.size - delay].astype(
            int
        )
        self.assertLessEqual(int(np.abs(difference).max()), 1)

    def test_no_click_at_frame_edges(self) -> None:
        """A sine streamed 8k -> 16k in 20 ms frames stays a clean sine across edges."""
        stream = StreamResampler(8000, 16000)
        tone = sine(1000, 8000, 1.0)
        out = np.concatenate(
            [stream.feed(tone[i : i + 160]) for i in range(0, 8000, 160)]
        )
        steady = out[400:].astype(float)
        # The second difference of a clean 1 kHz sine at 16 kHz is bounded by
        # (2*pi*1000/16000)^2 times its amplitude; a click would exceed it.
        bound = (2 * np.pi * 1000 / 16000) ** 2 * 10000 * 1.02 + 2
        self.assertLess(np.abs(np.diff(steady, 2)).max(), bound)

    @settings(
        deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(
        st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=12),
        st.sampled_from(
            [(8000, 16000), (16000, 8000), (8000, 44100), (48000, 8000), (12000, 32000)]
        ),
    )
    def test_chunking_does_not_matter(
        self, sizes: list[int], rates: tuple[int, int]
    ) -> None:
        """However the input is cut into chunks, the output samples are the same."""
        rng = np.random.default_rng(11)
        signal = rng.normal(0, 5000, sum(sizes))
        whole = StreamResampler(*rates).feed(signal)
        stream = StreamResampler(*rates)
        pieces, start = [], 0
        for size in sizes:
            pieces.append(stream.feed(signal[start : start + size]))
            start += size
        chunked = np.concatenate(pieces)
        self.assertEqual(chunked.size, whole.size)
        self.assertLessEqual(
            int(np.abs(chunked.astype(int) - whole.astype(int)).max(initial=0)), 1
        )

    def test_long_stream_counters_wrap(self) -> None:
        """Hours of audio keep producing exact frame sizes after the counters shift."""
        stream = StreamResampler(44100, 8000)
        stream._consumed = 441 * 1_000_001 + 100  # as if a long call had passed
        stream._produced = -(-stream._consumed * 80 // 441)
        for _ in range(3):
            self.assertEqual(stream.feed(np.zeros(882)).size, 160)
        self.assertLess(stream._consumed, 441 * 10)

    def test_reset_and_passthrough(self) -> None:
        """reset() forgets history; equal rates pass samples through with no delay."""
        stream = StreamResampler(8000, 16000)
        first = stream.feed(sine(500, 8000, 0.02))
        stream.reset()
        self.assertEqual(stream.feed(sine(500, 8000, 0.02)).tolist(), first.tolist())
        same = StreamResampler(8000, 8000)
        self.assertEqual(same.delay, 0.0)
        self.assertEqual(same.feed_pcm(b"\x05\x00"), b"\x05\x00")
