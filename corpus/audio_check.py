"""One check of a corpus audio file for the readers: its duration, or why it is dropped.

Wav and flac are checked from their header (plus a NaN/inf scan of float-coded files);
an ``.mp4`` (MELD's clips) is decoded with :func:`mger.core.audio.read_audio` (PyAV), its
duration is that of the decoded 16 kHz audio.  Every refusal is recorded in the
:class:`~mger.core.reporting.ProblemLog`; nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path

from mger.core.audio import SAMPLE_RATE, audio_info, nonfinite_audio, read_audio
from mger.core.manifest import AUDIO_SUFFIXES
from mger.core.reporting import ProblemLog


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def audio_duration(item: str, path: Path, log: ProblemLog) -> float | None:
    """Seconds of audio in ``path``, or None (recorded in ``log`` against ``item``) when the
    file is missing, not an audio type mger reads, unreadable, empty or holds NaN/inf samples.
    A wav not at 16 kHz mono is kept (converted when read) and noted."""
    if not path.is_file():
        log.add(item, path, "audio file missing")
        return None
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        log.add(item, path, f"not an audio file mger reads ({', '.join(AUDIO_SUFFIXES)})")
        return None
    if path.suffix.lower() == ".mp4":
        return _decoded_duration(item, path, log)
    try:
        info = audio_info(path)
    except Exception as err:  # soundfile raises several types for corrupt headers
        log.add(item, path, f"audio unreadable ({_first_line(err)})")
        return None
    if info.frames == 0:
        log.add(item, path, "audio empty")
        return None
    if nonfinite_audio(path):
        log.add(item, path, "audio holds NaN or inf samples")
        return None
    if info.sample_rate != SAMPLE_RATE or info.channels != 1:
        note = f"{info.sample_rate} Hz, {info.channels} channel(s), not 16 kHz mono (kept; converted when read)"
        log.add(item, path, note, kept=True, echo=False)
    return info.duration


def _decoded_duration(item: str, path: Path, log: ProblemLog) -> float | None:
    try:
        samples = read_audio(path)
    except Exception as err:  # PyAV raises its own error types for a damaged container
        log.add(item, path, f"audio unreadable ({_first_line(err)})")
        return None
    if samples.size == 0:
        log.add(item, path, "audio empty (no decoded samples)")
        return None
    return samples.size / SAMPLE_RATE
