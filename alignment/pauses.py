"""Energy checks on a forced alignment: speech labelled as silence, and the pause-free second pass.

On voices the US-English acoustic model fits poorly (held-out ``en-029+Alicia``,
``en-gb-x-gbcwmd+boris``) and on slow speech, the optional inter-word silence scores better
than the phones on stretches of loud speech, so a word starts hundreds of milliseconds late
and the error cascades.  No decoder setting stops that: lower ``silprob`` or ``wip`` only
move the cost, and wider beams make it worse (they find the higher-scoring wrong path).
Frame energy does tell speech from pause, on synthetic and studio speech alike, so:

* :func:`disagreement` counts loud frames labelled silence and quiet frames labelled speech;
* :func:`kept_frames` cuts the long quiet runs (pauses) out of the audio, so a second pass can
  align it *without* optional silences (``fsgusefiller`` off): with no silence model to win,
  the phones must take the loud frames, and with the pauses gone no word has to swallow one;
* :func:`map_back` returns that pass's times to the original audio (a cut pause becomes the
  gap between two words), and :func:`trim_edges` takes the few quiet frames kept at each cut
  off the word edges.

The backend (:mod:`mger.alignment.pocketsphinx_backend`) keeps the first alignment unless it labels
at least :data:`TRIGGER_FRAMES` loud frames as silence and the second one disagrees with the
energy less.  Thresholds are relative to the utterance's own noise floor, so the gain does not
matter.  Every threshold here was chosen on the demo corpus and the held-out set at once.

:func:`silence_problem` says when an alignment is not one: the wav has no speech energy (fewer
than :data:`MIN_SPEECH_FRAMES` frames :data:`SPEECH_DB` above its floor: digital silence,
stationary noise), or most of the words' frames are quiet (the words were placed over
silence).  The stage treats either as a failed alignment (``align.on_failure``).  On the
646 demo utterances the fewest such frames is 84 and the largest quiet share of word time 10%.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mger.alignment.base import Segment

HOP = 160  # samples per 10 ms frame at 16 kHz, pocketsphinx's frame rate
WINDOW = 410  # samples in pocketsphinx's 25.6 ms analysis window
LOUD_DB = 20.0  # a frame this far above the floor is speech, whatever the model says
QUIET_DB = 6.0  # a frame this close to the floor is no speech (pause, or padding)
MIN_PAUSE_FRAMES = 8  # quiet runs this long are cut before the second pass (stop closures are shorter)
KEEP_FRAMES = 2  # quiet frames kept at each side of a cut, so the words around it do not touch
TRIGGER_FRAMES = 5  # loud frames labelled silence before the second pass is tried


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Energy (dB) of each pocketsphinx frame: ``WINDOW`` samples every ``HOP``."""
    n = len(audio) // HOP
    padded = np.concatenate([np.asarray(audio, np.float64), np.zeros(WINDOW)])
    frames = padded[np.arange(n)[:, None] * HOP + np.arange(WINDOW)[None, :]]
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def floor_db(db: np.ndarray) -> float:
    """The utterance's noise floor: the 5th percentile of its frame energies."""
    return float(np.percentile(db, 5)) if len(db) else 0.0


def quiet_mask(db: np.ndarray) -> np.ndarray:
    """Frames within :data:`QUIET_DB` of the floor."""
    return db < floor_db(db) + QUIET_DB


def loud_mask(db: np.ndarray) -> np.ndarray:
    """Frames more than :data:`LOUD_DB` above the floor: speech, whatever the model says."""
    return db > floor_db(db) + LOUD_DB


SPEECH_DB = 15.0  # a frame this far above the floor has speech energy (stationary noise stays within a few dB)
MIN_SPEECH_FRAMES = 10  # fewer such frames (0.1 s) than this: no speech in the wav
MAX_QUIET_SHARE = 0.5  # a larger share of the words' frames within QUIET_DB of the floor: words over silence
SILENCE_REASONS = ("no speech energy", "words placed over silence")  # how silence_problem's reasons start


def silence_problem(audio: np.ndarray, words: Sequence[Segment]) -> str | None:
    """Why an alignment of ``audio`` (float, 16 kHz) with these ``words`` is no alignment (None:
    it is): no speech energy in the wav, or words placed over its quiet frames; the reason
    starts with one of :data:`SILENCE_REASONS`."""
    db = frame_db(audio)
    n_speech = int(np.sum(db > floor_db(db) + SPEECH_DB))
    if n_speech < MIN_SPEECH_FRAMES:
        return (
            f"no speech energy ({n_speech} frames of 10 ms more than {SPEECH_DB:g} dB above the noise floor, "
            f"{MIN_SPEECH_FRAMES} needed): silence or noise"
        )
    speech = speech_mask(words, len(db))
    share = float(quiet_mask(db)[speech].mean()) if speech.any() else 0.0
    if share > MAX_QUIET_SHARE:
        return f"words placed over silence ({share:.0%} of the words' time within {QUIET_DB:g} dB of the noise floor)"
    return None


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, end)`` frame runs where ``mask`` is true."""
    step = np.diff(np.concatenate([[0], np.asarray(mask, int), [0]]))
    return list(zip(np.flatnonzero(step == 1).tolist(), np.flatnonzero(step == -1).tolist()))


def speech_mask(words: Sequence[Segment], n: int, frame: float = 0.01) -> np.ndarray:
    """Frames inside some word (the rest is silence to the aligner)."""
    mask = np.zeros(n, bool)
    for w in words:
        mask[int(round(w.start / frame)) : int(round(w.end / frame))] = True
    return mask


def disagreement(db: np.ndarray, words: Sequence[Segment]) -> tuple[int, int]:
    """(loud frames labelled silence, quiet frames labelled speech) of one alignment."""
    speech = speech_mask(words, len(db))
    return int(np.sum(loud_mask(db) & ~speech)), int(np.sum(quiet_mask(db) & speech))


def kept_frames(db: np.ndarray) -> np.ndarray:
    """Indices of the frames left once every pause (quiet run of at least :data:`MIN_PAUSE_FRAMES`)
    is cut, keeping :data:`KEEP_FRAMES` at each side that borders speech."""
    drop = np.zeros(len(db), bool)
    for a, b in runs(quiet_mask(db)):
        if b - a >= MIN_PAUSE_FRAMES:
            drop[a + (KEEP_FRAMES if a > 0 else 0) : b - (KEEP_FRAMES if b < len(db) else 0)] = True
    return np.flatnonzero(~drop)


def cut_audio(audio: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The samples of the kept frames, in order."""
    if len(kept) == 0:
        return audio[:0]
    return np.asarray(audio).reshape(-1)[(kept[:, None] * HOP + np.arange(HOP)[None, :]).reshape(-1)]


def map_back(segments: Sequence[Segment], kept: np.ndarray, offset: float, frame: float = 0.01) -> list[Segment]:
    """Segments timed on the cut audio, retimed on the original (``offset``: boundary offset in s)."""

    def frame_of(t: float) -> int:
        return int(round((t - offset) / frame)) if t > 0 else 0

    def start(t: float) -> float:
        f = int(kept[min(frame_of(t), len(kept) - 1)])
        return f * frame + offset if f > 0 else 0.0

    def end(t: float) -> float:
        return (int(kept[max(min(frame_of(t), len(kept)) - 1, 0)]) + 1) * frame + offset

    return [dataclasses.replace(s, start=start(s.start), end=end(s.end)) for s in segments]


def trim_edges(
    words: list[Segment], phones: list[Segment], db: np.ndarray, frame: float = 0.01
) -> tuple[list[Segment], list[Segment]]:
    """Quiet frames taken off each word's start and end, never past its first or last phone
    (only that phone shrinks, by whole frames, and keeps at least one)."""
    quiet = quiet_mask(db)
    out_words, out_phones = [], list(phones)
    for i, w in enumerate(words):
        own = [k for k, p in enumerate(phones) if p.word == i]
        a, b = int(round(w.start / frame)), int(round(w.end / frame))
        first_end = int(round(phones[own[0]].end / frame)) if own else b
        last_start = int(round(phones[own[-1]].start / frame)) if own else a
        na, nb = a, b
        while na < min(first_end, b) - 1 and na < len(quiet) and quiet[na]:
            na += 1
        while nb > max(last_start, na) + 1 and nb <= len(quiet) and quiet[nb - 1]:
            nb -= 1
        new_start = w.start + (na - a) * frame
        new_end = w.end - (b - nb) * frame
        out_words.append(dataclasses.replace(w, start=new_start, end=new_end))
        if own:
            out_phones[own[0]] = dataclasses.replace(out_phones[own[0]], start=new_start)
            out_phones[own[-1]] = dataclasses.replace(out_phones[own[-1]], end=new_end)
    return out_words, out_phones
