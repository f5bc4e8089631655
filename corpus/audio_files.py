"""The checks every reader runs on one audio file before it becomes a manifest row.

One place for "missing, unreadable, empty, too short, NaN": each failure is recorded in the
:class:`~mger.core.reporting.ProblemLog` (dropped) and None returned.  The sample rate and
channel count are not problems (``read_audio`` converts to 16 kHz mono when it reads); a
reader counts them in its report (:func:`format_counts`).  An ``.mp4`` (MELD's clips) has no
header soundfile reads: it is decoded (:func:`mger.core.audio.read_audio`, PyAV) and its info
is that of the decoded 16 kHz mono audio.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mger.core.audio import SAMPLE_RATE, AudioInfo, audio_info, nonfinite_audio, read_audio
from mger.core.reporting import ProblemLog

MIN_SECONDS = 0.1  # shorter audio is no utterance (IEMOCAP's reader: MIN_WAV_SECONDS)


def checked_audio(item: str, path: Path, log: ProblemLog) -> AudioInfo | None:
    """The header of ``path``, or None (recorded against ``item``) when the file is missing,
    unreadable, empty, shorter than :data:`MIN_SECONDS` or holds NaN/inf samples."""
    if not path.is_file():
        log.add(item, path, "audio file missing")
        return None
    try:
        info = _decoded_info(path) if path.suffix.lower() == ".mp4" else audio_info(path)
    except Exception as err:  # soundfile and PyAV raise several types for damaged files
        first = (str(err).splitlines() or [""])[0]
        log.add(item, path, f"audio unreadable ({type(err).__name__}: {first})")
        return None
    if info.frames == 0:
        log.add(item, path, "audio empty (a header and no samples)")
        return None
    if info.duration < MIN_SECONDS:
        log.add(item, path, f"audio too short: {info.duration:.4f} s (< {MIN_SECONDS} s)")
        return None
    if path.suffix.lower() != ".mp4" and nonfinite_audio(path):  # read_audio refused NaN in an mp4
        log.add(item, path, "audio holds NaN or inf samples")
        return None
    return info


def _decoded_info(path: Path) -> AudioInfo:
    """Info of the decoded audio of an mp4 (its samples as ``read_audio`` returns them)."""
    return AudioInfo(sample_rate=SAMPLE_RATE, channels=1, frames=int(read_audio(path).size))


def format_counts(infos: list[AudioInfo]) -> dict[str, int]:
    """``{"48000 Hz, 1 ch": n, ...}``: the formats of the kept files (converted when read)."""
    return dict(sorted(Counter(f"{i.sample_rate} Hz, {i.channels} ch" for i in infos).items()))
