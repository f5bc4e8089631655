"""Forced alignment over the acoustic model's own scores, with an energy term and phone durations.

Pocketsphinx's alignment search scores each 10 ms frame with the acoustic model alone and has no
notion of how long a phone lasts.  On voices the model fits poorly it lets one word take 0.9 s
and the next 0.2 s, or labels loud speech as silence, and the error cascades (docs/alignment.md).
This module aligns again over the same model's senone scores (pocketsphinx writes them with
``compallsen`` and ``senlogdir``) with a search of our own, a hidden semi-Markov model:

* the phone and state sequence is the one pocketsphinx aligned (its triphones, its pronunciation
  variants); silence may come between any two words and at both ends, whatever pocketsphinx chose.
  A silence is one state and may be a single frame long (pocketsphinx's SIL needs three): a
  short gap costs nothing extra, and the onset refinement decides about stop closures;
* each phone has three states of at least one frame each, and its duration ``d`` (frames) adds a
  log-normal term ``-0.5 * weight * (ln(d / expected) / sigma)**2``.  The expected duration is
  the utterance's sounding frames over its phones (vowels :data:`VOWEL_FACTOR` times longer), so the
  term follows the speaking rate; no phone but a filler's lasts more than :data:`MAX_PHONE_FACTOR`
  times its expected duration;
* frame energy is a second observation: a frame :data:`pauses.LOUD_DB` above the floor costs
  :data:`LOUD_SILENCE` nats as silence, a frame within :data:`pauses.QUIET_DB` of it costs
  :data:`QUIET_PHONE` nats inside a phone.  This does in one search what the energy check does
  with a second, pause-cut alignment.

Apart from :func:`read_senone_log`, every function here is pure compute on arrays; the backend
does the decoding.  The weights and factors were
chosen on the development, demo-style and demo sets and checked on the held-out set
(docs/alignment.md, items 13 and 14).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mger.core.align_settings import DURATION_WEIGHT  # the one definition (the params default too)

SENSCR_SHIFT = 10  # pocketsphinx stores senone scores right-shifted by this many bits
# The en-us model's context-independent silence senones (checked against an alignment in the tests).
SILENCE_SENONES = (96, 97, 98)
LOUD_SILENCE = 20.0  # nats per loud frame labelled silence
QUIET_PHONE = 1.0  # nats per quiet frame inside a phone
DURATION_SIGMA = 0.7  # its spread in ln(frames), before the weight
VOWEL_FACTOR = 1.5  # vowels are expected this much longer than other phones
MAX_PHONE_FRAMES = 150  # no phone is longer (1.5 s at 100 frames/s)
MAX_PHONE_FACTOR = 6.0  # nor longer than this many times its expected duration (fillers excepted)
VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
_NEG = -1e30


@dataclass(frozen=True)
class SenoneScores:
    """A senone log as pocketsphinx stores it: ``costs`` (n_frames, n_senones) int16, 0 for the best
    senone of a frame and larger for worse ones; ``nats`` per cost unit.  Kept as int16 (2 bytes per
    senone and frame); :meth:`loglik` scales only the columns a search needs."""

    costs: np.ndarray
    nats: float

    def __len__(self) -> int:
        return len(self.costs)

    def loglik(self, columns: np.ndarray | Sequence[int]) -> np.ndarray:
        """Log-likelihoods (nats, best senone 0) of ``columns``: shape (n_frames, *columns.shape), float32."""
        return self.costs[:, np.asarray(columns, dtype=np.int64)].astype(np.float32) * np.float32(-self.nats)


def read_senone_log(path: str | Path) -> SenoneScores:
    """The scores of a pocketsphinx senone log (``senlogdir``), every senone of every frame.

    The log must hold every senone of every frame (``compallsen``); raises ValueError naming the
    file otherwise, or if it is not a senone log, is truncated or has an unknown byte order."""
    data = Path(path).read_bytes()
    end = data.find(b"endhdr\n")
    if end < 0:
        raise ValueError(f"{path}: not a senone log (no header)")
    header = dict(re.findall(r"(?m)^(\S+) (.*)$", data[:end].decode("ascii", "replace")))
    try:
        n_sen, logbase = int(header.get("n_sen", 0)), float(header.get("logbase", 0))
    except ValueError:
        raise ValueError(f"{path}: senone log header unreadable") from None
    order = {b"\x44\x33\x22\x11": "<i2", b"\x11\x22\x33\x44": ">i2"}.get(data[end + 7 : end + 11])
    body = data[end + 11 :]
    if order is None:
        raise ValueError(f"{path}: senone log of unknown byte order")
    if n_sen <= 0 or logbase <= 1 or len(body) % (2 * (n_sen + 1)):
        raise ValueError(f"{path}: senone log of unexpected size (n_sen {n_sen}, {len(body)} bytes)")
    frames = np.frombuffer(body, dtype=order).reshape(-1, n_sen + 1)
    if len(frames) and np.any(frames[:, 0] != n_sen):
        raise ValueError(f"{path}: senone log lacks scores of inactive senones (decode with compallsen)")
    return SenoneScores(frames[:, 1:].astype(np.int16), float((1 << SENSCR_SHIFT) * np.log(logbase)))


def duration_prior(expected: float, max_frames: int = MAX_PHONE_FRAMES, weight: float = DURATION_WEIGHT) -> np.ndarray:
    """Log-normal duration term for durations 0..max_frames (index 0 unused): shape (max_frames + 1,)."""
    if weight < 0:
        raise ValueError(f"duration weight must be >= 0, got {weight}")
    d = np.arange(max_frames + 1, dtype=np.float64)
    d[0] = 1.0
    return -0.5 * weight * (np.log(d / max(expected, 1.0)) / DURATION_SIGMA) ** 2


def align_phones(
    states: np.ndarray,
    silence: np.ndarray,
    word_start: np.ndarray,
    expected: np.ndarray,
    loud: np.ndarray,
    quiet: np.ndarray,
    max_frames: np.ndarray | None = None,
    weight: float = DURATION_WEIGHT,
) -> np.ndarray:
    """The best segmentation of the frames into the phone sequence, silences optional between words.

    Args:
        states: (T, P, 3) log-likelihood of each phone's three states in each frame.
        silence: (T,) log-likelihood of silence in each frame.
        word_start: (P,) bool, True where a phone begins a word (a silence may come before it).
        expected: (P,) expected duration of each phone in frames.
        loud, quiet: (T,) bool, frames far above / close to the utterance's energy floor.
        max_frames: (P,) int, the longest each phone may be (default :data:`MAX_PHONE_FRAMES`).
        weight: of the duration term (:func:`duration_prior`).

    Returns:
        (P, 2) int: each phone's [start, end) frames; silences are what lies between them.
    """
    n_frames, n_phones = states.shape[0], states.shape[1]
    if states.shape[2] != 3 or silence.shape != (n_frames,) or len(word_start) != n_phones:
        raise ValueError(f"shapes do not match: states {states.shape}, silence {silence.shape}")
    if n_frames < 3 * n_phones:
        raise ValueError(f"{n_frames} frames cannot hold {n_phones} phones of three states")
    cum_sil = np.concatenate([[0.0], np.cumsum(silence - LOUD_SILENCE * loud, dtype=np.float64)])
    frame_pen = (-QUIET_PHONE * quiet).astype(np.float64)
    frames = np.arange(n_frames + 1)
    if max_frames is None:
        max_frames = np.full(n_phones, MAX_PHONE_FRAMES)
    if len(max_frames) != n_phones or np.any(np.asarray(max_frames) < 3):
        raise ValueError("max_frames: one value of at least 3 (frames) per phone")
    ends = cum_sil.copy()  # score of everything before phone 0, ending at frame a: leading silence
    from_frame = np.zeros(n_frames + 1, dtype=np.int64)  # leading silence starts at 0
    back_dur, back_from = [], []
    for p in range(n_phones):
        if p == 0:
            start, came_from = ends, from_frame
        elif word_start[p]:  # optional silence: best over b <= a of ends[b] + silence frames [b, a)
            gain = ends - cum_sil
            best = np.maximum.accumulate(gain)
            arg = np.maximum.accumulate(np.where(gain >= best, frames, 0))
            start = np.maximum(ends, cum_sil + best)
            came_from = np.where(cum_sil + best > ends, arg, frames)
        else:
            start, came_from = ends, frames
        ends, dur = _phone_ends(
            states[:, p, :] + frame_pen[:, None], start, duration_prior(float(expected[p]), int(max_frames[p]), weight)
        )
        back_dur.append(dur)
        back_from.append(came_from)
    t = int(np.argmax(ends + (cum_sil[-1] - cum_sil)))  # then trailing silence
    spans = np.zeros((n_phones, 2), dtype=np.int64)
    for p in range(n_phones - 1, -1, -1):
        a = t - int(back_dur[p][t])
        spans[p] = (a, t)
        t = int(back_from[p][a])
    return spans


def _phone_ends(x: np.ndarray, start: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best score of a phone ending at each frame t, and its duration.

    ``x``: (T, 3) state log-likelihoods; ``start``: (T + 1,) best score before the phone when it
    starts at frame a; ``prior``: duration term by frames.  Left-to-right states, each at least one
    frame: after k + 1 frames from start a, ``v3[a]`` is the best split of frames [a, a + k] over
    the three states."""
    n = x.shape[0]
    ends = np.full(n + 1, _NEG)
    dur = np.zeros(n + 1, dtype=np.int64)
    v1 = x[:, 0].astype(np.float64) + start[:n]
    v2 = np.full(n, _NEG)
    v3 = np.full(n, _NEG)
    for k in range(1, min(len(prior) - 1, n)):
        m = n - k
        v3 = np.maximum(v3[:m], v2[:m]) + x[k:, 2]
        v2 = np.maximum(v2[:m], v1[:m]) + x[k:, 1]
        v1 = v1[:m] + x[k:, 0]
        if k >= 2:  # duration k + 1, ending at frame a + k + 1
            cand = v3 + prior[k + 1]
            seg = ends[k + 1 :]
            better = cand > seg
            seg[better] = cand[better]
            dur[k + 1 :][better] = k + 1
    return ends, dur


def realign(
    scores: SenoneScores,
    senones: np.ndarray,
    word_start: np.ndarray,
    is_vowel: np.ndarray,
    loud: np.ndarray,
    quiet: np.ndarray,
    is_filler: np.ndarray | None = None,
    silence_senones: tuple[int, ...] = SILENCE_SENONES,
    weight: float = DURATION_WEIGHT,
) -> np.ndarray:
    """Phone spans ([start, end) frames, shape (P, 2)) of one utterance.

    ``scores``: from :func:`read_senone_log`; ``senones``: (P, 3) each phone's state
    senones; ``word_start``, ``is_vowel``: (P,) bool; ``loud``, ``quiet``: (T,) frame energy masks
    (:mod:`mger.alignment.pauses`).  The expected phone duration is the sounding (not quiet) frames
    over the phones, vowels :data:`VOWEL_FACTOR` times that; no phone but a filler's (``is_filler``) lasts
    more than :data:`MAX_PHONE_FACTOR` times its expected duration."""
    n = min(len(scores), len(loud), len(quiet))
    senones = np.asarray(senones, dtype=np.int64)
    sounding = float(np.sum(~quiet[:n]))
    mean = max(sounding / max(len(senones), 1), 3.0)
    expected = np.where(np.asarray(is_vowel, bool), mean * VOWEL_FACTOR, mean)
    filler = np.zeros(len(senones), bool) if is_filler is None else np.asarray(is_filler, bool)
    longest = np.where(filler, MAX_PHONE_FRAMES, np.minimum(np.ceil(MAX_PHONE_FACTOR * expected), MAX_PHONE_FRAMES))
    return align_phones(
        scores.loglik(senones)[:n],
        scores.loglik(list(silence_senones))[:n].max(axis=1),
        np.asarray(word_start, bool),
        expected,
        np.asarray(loud[:n], bool),
        np.asarray(quiet[:n], bool),
        longest.astype(np.int64),
        weight,
    )
