"""The ``align`` stage: manifest → TextGrids, the HDF5 segment table and the alignment report.

Utterances are aligned in parallel with joblib (``align.n_jobs`` worker processes, each
building its backend once).  A failed utterance is recorded with its reason and, with
``align.on_failure: uniform``, replaced by the uniform fallback (marked as such); with
``drop`` it is left out of the table.  An alignment whose times are unsound
(:func:`mger.alignment.table.alignment_problem`) or that is no alignment of speech (a silent or
noise-only wav, words placed over silence: :func:`mger.alignment.pauses.silence_problem`) is
a failure too.  Nothing is silent: every affected utterance is in ``reports/alignment.json``
(``silence_or_noise`` counts the latter) and counted in the closing line.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from mger.alignment import iemocap_backend, mfa_backend, pocketsphinx_backend  # noqa: F401  (register backends)
from mger.alignment.base import BACKENDS, Aligner, Alignment, AlignmentFailure, AlignResult
from mger.alignment.pauses import SILENCE_REASONS, silence_problem
from mger.alignment.syllables import add_syllables
from mger.alignment.table import alignment_problem, write_table
from mger.alignment.textgrids import write_textgrid
from mger.alignment.uniform import uniform_alignment
from mger.core.audio import read_audio
from mger.core.config import AlignConfig
from mger.core.manifest import Utterance, read_manifest, repeated_ids
from mger.core.processes import map_chunks
from mger.core.reporting import StageError, write_json

_WORKER_ALIGNERS: dict[str, Aligner] = {}


def make_aligner(cfg: AlignConfig) -> Aligner:
    """The configured backend, built from its settings."""
    if cfg.backend not in BACKENDS:
        raise StageError(f"align.backend: unknown backend {cfg.backend!r} (known: {', '.join(sorted(BACKENDS))})")
    settings = {"pocketsphinx": cfg.pocketsphinx, "mfa": cfg.mfa}.get(cfg.backend)
    return BACKENDS[cfg.backend](settings) if settings is not None else BACKENDS[cfg.backend]()


def _worker_aligner(cfg: AlignConfig) -> Aligner:
    key = repr(cfg)
    if key not in _WORKER_ALIGNERS:
        _WORKER_ALIGNERS[key] = make_aligner(cfg)
    return _WORKER_ALIGNERS[key]


def align_one(aligner: Aligner, utt: Utterance, on_failure: str) -> tuple[AlignResult, AlignmentFailure | None]:
    """Align one utterance under the failure policy: (result, the failure if there was one)."""
    try:
        result = aligner.align(utt)
        if isinstance(result, Alignment):
            problem = alignment_problem(result) or silence_problem(read_audio(utt.wav), result.words)
            if problem:
                result = AlignmentFailure(utt.utt_id, problem, result.unknown_words)
    except Exception as err:  # a bad file must not stop the run: record it instead
        result = AlignmentFailure(utt.utt_id, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    if isinstance(result, Alignment):
        result.syllables, fallbacks = add_syllables(result.words, result.phones)
        if fallbacks and result.phones:
            result.notes.append(f"{fallbacks} word(s) without phones: pyphen syllables")
        return result, None
    if on_failure == "uniform":
        try:
            fallback = uniform_alignment(utt.utt_id, utt.text, read_audio(utt.wav), result.reason)
        except Exception as err:
            fallback = None
            result = AlignmentFailure(
                utt.utt_id, f"{result.reason}; uniform fallback failed: {err}", result.unknown_words
            )
        if fallback is not None:
            fallback.syllables, _ = add_syllables(fallback.words, [])
            fallback.unknown_words = dict(result.unknown_words)
            return fallback, result
    return result, result


def _align_chunk(cfg: AlignConfig, chunk: Sequence[Utterance]) -> list[tuple[AlignResult, AlignmentFailure | None]]:
    aligner = _worker_aligner(cfg)
    return [align_one(aligner, utt, cfg.on_failure) for utt in chunk]


def align_utterances(
    utts: Sequence[Utterance], cfg: AlignConfig, chunk_size: int = 4
) -> list[tuple[AlignResult, AlignmentFailure | None]]:
    """Align all utterances (manifest order kept), in parallel, with a progress bar."""
    prepare = getattr(make_aligner(cfg), "prepare", None)
    if prepare is not None:  # batch backends (mfa) run once over everything first
        prepare(utts)
    return map_chunks(_align_chunk, cfg, list(utts), chunk_size, cfg.n_jobs, "align")


def run_align(manifest: str | Path, cfg: AlignConfig) -> dict:
    """The whole stage; returns the report it wrote."""
    t0 = time.perf_counter()
    utts = read_manifest(manifest)
    if not utts:
        raise StageError(f"{manifest}: the manifest is empty")
    twice = sorted(repeated_ids(utts))
    if twice:
        raise StageError(
            f"{manifest}: utterance id {twice[0]} appears more than once ({len(twice)} ids do); re-run `mger prepare`"
        )
    results = align_utterances(utts, cfg)
    wall = time.perf_counter() - t0
    aligned = [r for r, _ in results if isinstance(r, Alignment)]
    aligned_ids = {a.utt_id for a in aligned}
    failures = [f for _, f in results if f is not None]
    dropped = [f for f in failures if f.utt_id not in aligned_ids]
    by_id = {u.utt_id: u for u in utts}
    for f in failures:
        verdict = "uniform fallback" if f.utt_id in aligned_ids else "dropped"
        print(f"warning: {by_id[f.utt_id].wav}: alignment failed: {f.reason} ({f.utt_id}, {verdict})", file=sys.stderr)
    if not aligned:
        raise StageError(f"no utterance of {manifest} could be aligned ({len(failures)} failures)")
    out = Path(cfg.out)
    for a in aligned:
        write_textgrid(out / "textgrid" / f"{a.utt_id}.TextGrid", a)
    for stale in (out / "textgrid").glob("*.TextGrid"):  # of utterances this run dropped or no longer has
        if stale.stem not in aligned_ids:
            stale.unlink()
    write_table(out / "segments.h5", aligned, cfg.backend)
    audio_seconds = sum(by_id[a.utt_id].duration for a in aligned if a.method == "aligned")
    unknown: dict[str, str] = {}
    for r, _ in results:
        unknown.update(r.unknown_words)
    methods = Counter(a.method for a in aligned)
    report = {
        "backend": cfg.backend,
        "on_failure": cfg.on_failure,
        "n_utterances": len(utts),
        "aligned": methods.get("aligned", 0),
        "uniform_fallback": methods.get("uniform", 0),
        "dropped": len(dropped),
        "silence_or_noise": sum(f.reason.startswith(SILENCE_REASONS) for f in failures),
        "failed": [asdict(f) | {"fallback": "dropped" if f in dropped else "uniform"} for f in failures],
        "fallbacks_applied": [{"utt_id": a.utt_id, "notes": a.notes} for a in aligned if a.notes],
        "retried": sum(any("retry" in n for n in a.notes) for a in aligned),
        "unknown_words": dict(sorted(unknown.items())),
        "audio_seconds_aligned": round(audio_seconds, 2),
        "wall_seconds": round(wall, 2),
        "audio_seconds_per_wall_second": round(audio_seconds / wall, 2) if wall else None,
        "n_jobs": cfg.n_jobs,
    }
    write_json(cfg.report, report)
    print(
        f"align: {len(utts)} utterances: {report['aligned']} aligned, {report['uniform_fallback']} uniform "
        f"fallback, {report['dropped']} dropped ({report['silence_or_noise']} failed as silence or noise), "
        f"{report['retried']} after retries, {len(unknown)} unknown "
        f"words; {audio_seconds / 60:.1f} min of audio in {wall:.1f}s "
        f"({report['audio_seconds_per_wall_second']}x real time, n_jobs={cfg.n_jobs}) → {out}"
    )
    return report


def run_align_eval(truth_path: str | Path, table_path: str | Path, report_path: str | Path) -> dict:
    """Compare the segment table's words with the ground truth; write and return the metrics."""
    from mger.alignment.evaluate import evaluate, read_rates, read_truth, read_voices
    from mger.alignment.table import SegmentTable

    truth = read_truth(truth_path)
    table = SegmentTable.read(table_path)
    aligned = {u: table.segments("word", u) for u, m in zip(table.utt_ids, table.method) if m == "aligned"}
    metrics = evaluate(truth, aligned, table.backend, read_voices(truth_path), read_rates(truth_path))
    write_json(report_path, metrics)
    if metrics["n_words"]:
        _print_eval(metrics, report_path)
    else:
        print(f"align-eval: no aligned utterance has ground truth in {truth_path} (real corpus?) → {report_path}")
    return metrics


def _print_eval(metrics: dict, report_path: str | Path) -> None:
    """The closing lines of align-eval: overall, signed bias, per word class, the worst word."""
    m = metrics
    print(
        f"align-eval ({m['backend']}): {m['n_words']} words in {m['n_utterances']} utterances; "
        f"onset median {m['onset_median_ms']} ms, within 20 ms {m['onset_within_20ms']:.1%}, "
        f"within 50 ms {m['onset_within_50ms']:.1%}; offset median {m['offset_median_ms']} ms → {report_path}"
    )
    print(
        f"align-eval: signed (aligned - truth) onset median {m['onset_signed_median_ms']} ms, mean "
        f"{m['onset_signed_mean_ms']} ms; offset median {m['offset_signed_median_ms']} ms, mean "
        f"{m['offset_signed_mean_ms']} ms"
    )
    for name, g in m["by_class"].items():
        if g["n_words"]:
            print(
                f"align-eval: {name} words: {g['n_words']}, onset median {g['onset_median_ms']} ms, within 50 ms "
                f"{g['onset_within_50ms']:.1%}, signed median {g['onset_signed_median_ms']} ms"
            )
    if m["worst"]:
        w = m["worst"][0]
        print(
            f"align-eval: worst word {w['word']!r} in {w['utt_id']} (truth onset {w['truth_start']:.3f} s): "
            f"onset off by {w['onset_ms']} ms; {len(m['worst'])} worst words in the report"
        )
