"""Long recordings cut at pauses into utterance-length segments (``mger predict``).

:func:`split_at_pauses` uses Silero VAD (the ``silero-vad`` wheel's packaged TorchScript model,
loaded with ``torch.jit.load``: the wheel's loader imports torchaudio, which does not load
beside our torch, so install it with ``pip install --no-deps silero-vad``) and, where that
wheel is missing, an energy splitter: frames more than :data:`SPEECH_DB` above the recording's
noise floor (:func:`mger.alignment.pauses.frame_db`) are speech, runs closer than
:data:`MIN_PAUSE_S` are joined.  Either way a segment longer than ``max_seconds`` is cut at its
quietest frame (recursively), so every segment fits the encoder's window.
"""

from __future__ import annotations

import warnings

import numpy as np

from mger.alignment.pauses import HOP, floor_db, frame_db, runs

RATE = 16000
SPEECH_DB = 15.0  # energy splitter: dB above the floor that count as speech
MIN_PAUSE_S = 0.3  # shorter pauses do not end a segment
PAD_S = 0.1  # silence kept at each side of a segment
MIN_SEGMENT_S = 0.25  # shorter speech runs are dropped (clicks)

_SILERO = {}


def _silero():
    """Silero VAD's TorchScript model, or None where the ``silero-vad`` wheel is not installed."""
    if "model" not in _SILERO:
        try:
            import importlib.resources

            import torch

            path = importlib.resources.files("silero_vad.data") / "silero_vad.jit"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the wheel's format
                model = torch.jit.load(str(path), map_location="cpu")
            model.eval()
            _SILERO["model"] = model
        except (ImportError, ModuleNotFoundError, OSError, RuntimeError):
            _SILERO["model"] = None
    return _SILERO["model"]


def _silero_spans(wave: np.ndarray, max_seconds: float) -> list[tuple[float, float]]:
    import torch
    from silero_vad.utils_vad import get_speech_timestamps

    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
        _silero(),
        sampling_rate=RATE,
        min_silence_duration_ms=int(MIN_PAUSE_S * 1000),
        min_speech_duration_ms=int(MIN_SEGMENT_S * 1000),
        max_speech_duration_s=max_seconds,
        speech_pad_ms=int(PAD_S * 1000),
    )
    return [(s["start"] / RATE, s["end"] / RATE) for s in stamps]


def energy_spans(wave: np.ndarray) -> list[tuple[float, float]]:
    """Speech runs by frame energy (seconds), pauses under :data:`MIN_PAUSE_S` joined, padded."""
    db = frame_db(wave)
    if not len(db):
        return []
    frame = HOP / RATE
    speech = runs(db > floor_db(db) + SPEECH_DB)
    joined: list[list[int]] = []
    for a, b in speech:
        if joined and (a - joined[-1][1]) * frame < MIN_PAUSE_S:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    total = len(wave) / RATE
    return [
        (max(0.0, a * frame - PAD_S), min(total, b * frame + PAD_S))
        for a, b in joined
        if (b - a) * frame >= MIN_SEGMENT_S
    ]


def _cap(wave: np.ndarray, span: tuple[float, float], max_seconds: float) -> list[tuple[float, float]]:
    """``span`` cut at its quietest frame (middle half) until every piece fits ``max_seconds``."""
    a, b = span
    if b - a <= max_seconds:
        return [span]
    lo, hi = int((a + (b - a) / 4) * RATE) // HOP, int((b - (b - a) / 4) * RATE) // HOP
    db = frame_db(wave[lo * HOP : hi * HOP + HOP])
    cut = (lo + int(np.argmin(db))) * HOP / RATE if len(db) else (a + b) / 2
    return _cap(wave, (a, cut), max_seconds) + _cap(wave, (cut, b), max_seconds)


def split_at_pauses(wave: np.ndarray, max_seconds: float) -> tuple[list[tuple[float, float]], str]:
    """(start, end) seconds of the speech segments of ``wave`` (16 kHz mono), each at most
    ``max_seconds``, and the method used (``silero-vad`` or ``energy``)."""
    if _silero() is not None:
        spans, how = _silero_spans(wave, max_seconds), "silero-vad"
    else:
        spans, how = energy_spans(wave), "energy"
    return [piece for span in spans for piece in _cap(wave, span, max_seconds)], how
