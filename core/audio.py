"""The one audio reader of the project.

Every stage reads audio through :func:`read_audio`: soundfile decodes the file, channels
are averaged to mono, and anything not at 16 kHz is resampled with a polyphase FIR filter
(:func:`scipy.signal.resample_poly`, up/down factors reduced by their gcd, Kaiser window
with beta 5.0 — scipy's default), which is exact for integer ratios such as 44.1 kHz →
16 kHz (160/441) and leaves no phase shift.  The result is float32 in [-1, 1].  An ``.mp4``
(MELD's clips) is decoded with PyAV (its first audio stream, as float) and then goes the same way.  A file
holding NaN or inf samples (only a float-coded wav can) is refused in one line naming it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of an audio file; raises ``RuntimeError`` (soundfile's) if unreadable."""
    info = sf.info(str(path))
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal. Shape: (time,) → (ceil(time * new / orig),)."""
    if samples.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {samples.shape}")
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return samples
    g = gcd(orig_rate, new_rate)
    return resample_poly(samples, new_rate // g, orig_rate // g).astype(samples.dtype, copy=False)


def nonfinite_audio(path: str | Path) -> bool:
    """True if ``path`` holds NaN or inf samples; only float-coded files are decoded for it
    (integer PCM cannot hold them)."""
    if sf.info(str(path)).subtype not in ("FLOAT", "DOUBLE"):
        return False
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)  # as read_audio reads it
    return not bool(np.isfinite(data).all())


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``. Shape: (time,).  NaN or inf samples
    are a ``ValueError`` naming the file (the encoders would turn them into NaN features)."""
    if Path(path).suffix.lower() == ".mp4":
        data, rate = _decode_mp4(path)
    else:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if not np.isfinite(data).all():
        raise ValueError(
            f"{path}: the audio holds NaN or inf samples (a float wav); fix or remove the file and "
            "rerun `mger prepare` (it drops such wavs, recorded in the data-quality report)"
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), int(rate), sample_rate)


def _decode_mp4(path: str | Path) -> tuple[np.ndarray, int]:
    """The first audio stream of an mp4 through PyAV, as float32 at its own rate. Shape:
    (frames, channels).  No audio stream is a ``ValueError`` naming the file."""
    import av  # imported here: only mp4 input needs it

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: the mp4 has no audio stream")
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")  # planar float; layout and rate kept
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in to_float.resample(frame)]
        chunks += [out.to_ndarray() for out in to_float.resample(None)]
        rate, channels = int(stream.codec_context.sample_rate), int(stream.codec_context.channels)
    data = np.concatenate(chunks, axis=1).T if chunks else np.zeros((0, channels), dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float32), rate


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM WAV (float input in [-1, 1] or int16).  Encoded in memory first,
    so a refused write (disk full, ``ulimit -f``) is an ``OSError`` naming ``path`` (libsndfile
    only says "System error")."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, subtype="PCM_16", format="WAV")
    try:
        Path(path).write_bytes(buf.getvalue())
    except OSError as err:
        err.filename = err.filename or str(path)
        raise
