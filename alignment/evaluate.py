"""Word-boundary accuracy against the synthetic corpus's ground truth.

Truth entries are eSpeak WORD events, some of which cover several transcript words ("in
the").  Each entry's tokens are normalised like the aligner's transcript; the entry's onset
is compared with the aligned onset of its first word and its offset with the aligned offset
of its last word.  Aligned and truth word sequences are matched with difflib, so a word the
two disagree on costs only itself.

Errors are *signed* (aligned minus truth: positive means the aligner is late), because a
one-sided bias is a fixable cause while a spread is not.  Beside the overall figures the
metrics hold the same figures per voice (the truth row's ``voice``, else the speaker
``Ses01_F`` read from the utterance id), per word class (:mod:`mger.alignment.word_classes`), per
speaking rate where the truth rows carry one, and the 20 worst words with their utterance and times, to open in Praat.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mger.alignment.base import Segment
from mger.alignment.normalize import normalize_token
from mger.alignment.word_classes import CLASSES, group_class

N_WORST = 20
_SPEAKER = re.compile(r"^Ses(\d+)[FM]_.*_([FM])\d+$")


@dataclass(frozen=True)
class WordError:
    """One truth entry matched to the alignment; errors in seconds, aligned minus truth."""

    utt_id: str
    word: str
    word_class: str
    truth_start: float
    truth_end: float
    onset: float | None
    offset: float | None


def read_truth(path: str | Path) -> dict[str, list[dict]]:
    """utt id → truth word entries ({word, start, end}); a time that is not a finite number, or
    an end before its start, is a ValueError naming the file and utterance."""
    truth = {r["utt_id"]: r["words"] for r in _rows(path)}
    for utt_id, words in truth.items():
        for w in words:
            start, end = w.get("start"), w.get("end")
            if not all(isinstance(t, (int, float)) and np.isfinite(t) for t in (start, end)) or start > end:
                raise ValueError(
                    f"{path}: {utt_id}: word {w.get('word')!r} has times {start!r}-{end!r} (not finite and "
                    "ordered); rewrite the ground truth (`mger synth`)"
                )
    return truth


def read_voices(path: str | Path) -> dict[str, str]:
    """utt id → voice: the truth row's ``voice``, else the speaker of the id (``Ses01_F``), else ``?``."""
    out = {}
    for r in _rows(path):
        m = _SPEAKER.match(r["utt_id"])
        out[r["utt_id"]] = r.get("voice") or (f"Ses{int(m.group(1)):02d}_{m.group(2)}" if m else "?")
    return out


def read_rates(path: str | Path) -> dict[str, int]:
    """utt id → speaking rate (words/min) where the truth rows carry one (the held-out set)."""
    return {r["utt_id"]: int(r["rate"]) for r in _rows(path) if "rate" in r}


def _rows(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def word_errors(utt_id: str, truth: Sequence[dict], words: Sequence[Segment]) -> list[WordError]:
    """Signed errors of one utterance's truth entries (``None`` where the word did not match)."""
    return matched_errors(utt_id, truth, words)[0]


def matched_errors(utt_id: str, truth: Sequence[dict], words: Sequence[Segment]) -> tuple[list[WordError], int]:
    """(:func:`word_errors`, how many of the aligned ``words`` matched a truth token)."""
    flat: list[str] = []
    entry_span: list[tuple[int, int]] = []  # each entry's [first, last] index into flat
    for entry in truth:
        norm = [w for tok in entry["word"].split() for w in normalize_token(tok)]
        entry_span.append((len(flat), len(flat) + len(norm) - 1))
        flat += norm
    matcher = difflib.SequenceMatcher(a=flat, b=[w.label for w in words], autojunk=False)
    to_aligned = {b.a + k: b.b + k for b in matcher.get_matching_blocks() for k in range(b.size)}
    out = []
    for entry, (first, last) in zip(truth, entry_span):
        if last < first:
            continue
        on = words[to_aligned[first]].start - entry["start"] if first in to_aligned else None
        off = words[to_aligned[last]].end - entry["end"] if last in to_aligned else None
        out.append(
            WordError(utt_id, entry["word"], group_class(flat[first : last + 1]), entry["start"], entry["end"], on, off)
        )
    return out, len(to_aligned)


def boundary_errors(truth: Sequence[dict], words: Sequence[Segment]) -> tuple[list[float], list[float]]:
    """Absolute onset and offset errors (seconds) of one utterance's matched truth entries."""
    errs = word_errors("", truth, words)
    return [abs(e.onset) for e in errs if e.onset is not None], [abs(e.offset) for e in errs if e.offset is not None]


def _stat(x: np.ndarray, f) -> float | None:
    return round(float(f(x)), 3) if len(x) else None


def _figures(onset_s: Iterable[float], offset_s: Iterable[float]) -> dict:
    """Absolute and signed figures of onset and offset errors (ms; shares 0-1)."""
    out: dict = {}
    for name, values in (("onset", onset_s), ("offset", offset_s)):
        signed = np.asarray(list(values), float) * 1000
        err = np.abs(signed)
        out |= {
            f"{name}_median_ms": _stat(err, np.median),
            f"{name}_mean_ms": _stat(err, np.mean),
            f"{name}_within_20ms": _stat(err, lambda x: np.mean(x <= 20)),
            f"{name}_within_50ms": _stat(err, lambda x: np.mean(x <= 50)),
            f"{name}_signed_median_ms": _stat(signed, np.median),
            f"{name}_signed_mean_ms": _stat(signed, np.mean),
        }
    return out


def group_figures(errors: Sequence[WordError]) -> dict:
    """``n_words`` (matched onsets) and the figures of :func:`summarize` for one group of errors."""
    on = [e.onset for e in errors if e.onset is not None]
    return {"n_words": len(on)} | _figures(on, [e.offset for e in errors if e.offset is not None])


def summarize(onset: Iterable[float], offset: Iterable[float], n_utterances: int, backend: str) -> dict:
    """The overall align-eval metrics of (possibly signed) onset and offset errors in seconds."""
    on = list(onset)
    return {"backend": backend, "n_utterances": n_utterances, "n_words": len(on)} | _figures(on, offset)


def by_utterance_key(errors: Sequence[WordError], key: Mapping[str, str]) -> dict[str, dict]:
    """:func:`group_figures` per value of ``key[utt_id]`` (``?`` where absent), sorted by value."""
    groups: dict[str, list[WordError]] = {}
    for e in errors:
        groups.setdefault(key.get(e.utt_id, "?"), []).append(e)
    return {k: group_figures(groups[k]) for k in sorted(groups)}


def worst_words(errors: Sequence[WordError], voices: Mapping[str, str]) -> list[dict]:
    """The :data:`N_WORST` matched words with the largest onset errors, with their ``voices`` entry."""
    matched = [e for e in errors if e.onset is not None]
    matched.sort(key=lambda e: (-abs(e.onset), e.utt_id, e.truth_start))
    return [
        asdict(e)
        | {
            "voice": voices.get(e.utt_id, "?"),
            "onset_ms": round(e.onset * 1000, 1),
            "offset_ms": None if e.offset is None else round(e.offset * 1000, 1),
        }
        for e in matched[:N_WORST]
    ]


def evaluate(
    truth: Mapping[str, Sequence[dict]],
    aligned: Mapping[str, Sequence[Segment]],
    backend: str,
    voices: Mapping[str, str] | None = None,
    rates: Mapping[str, int] | None = None,
) -> dict:
    """Metrics over the utterances present in both ``truth`` and ``aligned`` (``by_rate`` only with rates)."""
    voices = voices or {}
    common = [u for u in aligned if u in truth]
    errors = [e for uid in common for e in word_errors(uid, truth[uid], aligned[uid])]
    metrics = summarize(
        [e.onset for e in errors if e.onset is not None],
        [e.offset for e in errors if e.offset is not None],
        len(common),
        backend,
    )
    metrics["by_voice"] = by_utterance_key(errors, voices)
    metrics["by_class"] = {c: group_figures([e for e in errors if e.word_class == c]) for c in CLASSES}
    if rates:
        by_rate: dict[int, list[WordError]] = {}
        for e in errors:
            by_rate.setdefault(rates.get(e.utt_id, 0), []).append(e)
        metrics["by_rate"] = {str(r): group_figures(by_rate[r]) for r in sorted(by_rate)}
    metrics["worst"] = worst_words(errors, voices)
    return metrics
