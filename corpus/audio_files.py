"""The checks every reader runs on one audio file before it becomes a manifest row.

One place for "missing, unreadable, empty, too short, NaN": each failure is recorded in the
:class:`~mger.core.reporting.ProblemLog` (dropped) and None returned.  The sample rate and
channel count are not problems (``read_audio`` converts to 16 kHz mono when it reads); a
reader counts them in its report (:func:`format_counts`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mger.core.audio import AudioInfo, audio_info, nonfinite_audio
from mger.core.reporting import ProblemLog

MIN_SECONDS = 0.1  # shorter audio is no utterance (IEMOCAP's reader: MIN_WAV_SECONDS)


def checked_audio(item: str, path: Path, log: ProblemLog) -> AudioInfo | None:
    """The header of ``path``, or None (recorded against ``item``) when the file is missing,
    unreadable, empty, shorter than :data:`MIN_SECONDS` or holds NaN/inf samples."""
    if not path.is_file():
        log.add(item, path, "audio file missing")
        return None
    try:
        info = audio_info(path)
    except Exception as err:  # soundfile raises several types for corrupt headers
        first = (str(err).splitlines() or [""])[0]
        log.add(item, path, f"audio unreadable ({type(err).__name__}: {first})")
        return None
    if info.frames == 0:
        log.add(item, path, "audio empty (a header and no samples)")
        return None
    if info.duration < MIN_SECONDS:
        log.add(item, path, f"audio too short: {info.duration:.4f} s (< {MIN_SECONDS} s)")
        return None
    if nonfinite_audio(path):
        log.add(item, path, "audio holds NaN or inf samples")
        return None
    return info


def format_counts(infos: list[AudioInfo]) -> dict[str, int]:
    """``{"48000 Hz, 1 ch": n, ...}``: the formats of the kept files (converted when read)."""
    return dict(sorted(Counter(f"{i.sample_rate} Hz, {i.channels} ch" for i in infos).items()))
