"""The ``uniform`` failure policy: words spread over the voiced span in proportion to letters."""

from __future__ import annotations

import numpy as np

from mger.alignment.base import Alignment, Segment
from mger.alignment.normalize import normalize_transcript
from mger.core.audio import SAMPLE_RATE


def voiced_span(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, floor_db: float = -35.0) -> tuple[float, float]:
    """(start, end) seconds of the frames within ``floor_db`` of the loudest 25 ms frame (10 ms hop)."""
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    if len(audio) < win:
        return 0.0, len(audio) / sample_rate
    frames = np.lib.stride_tricks.sliding_window_view(audio, win)[::hop]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-12
    loud = np.nonzero(20 * np.log10(rms / rms.max()) >= floor_db)[0]
    return loud[0] * hop / sample_rate, min(len(audio), loud[-1] * hop + win) / sample_rate


MIN_SECONDS_PER_WORD = 0.05  # below this much audio per word a uniform spread times nothing real


def uniform_alignment(utt_id: str, text: str, audio: np.ndarray, reason: str) -> Alignment | None:
    """Words over the voiced span, durations proportional to letters; None without words, or
    with less than :data:`MIN_SECONDS_PER_WORD` of audio per word (a truncated wav: dropped)."""
    words = normalize_transcript(text)
    if not words or len(audio) < MIN_SECONDS_PER_WORD * SAMPLE_RATE * len(words):
        return None
    start, end = voiced_span(audio)
    letters = np.array([max(1, len(w)) for w in words], float)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(letters) / letters.sum()])
    segs = [Segment(float(edges[i]), float(edges[i + 1]), w) for i, w in enumerate(words)]
    return Alignment(
        utt_id, len(audio) / SAMPLE_RATE, segs, [], method="uniform", notes=[f"uniform fallback: {reason}"]
    )
