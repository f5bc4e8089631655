"""The ``transcribe`` stage: manifest → ASR transcripts, the ASR manifest and the transcribe report.

Writes ``transcribe.out`` (one :class:`mger.core.transcripts.Transcript` per manifest
utterance), ``transcribe.manifest`` (the manifest with the ASR text, and its ``.source.json``
naming backend, model and the prepared manifest) and ``transcribe.report``: the WER and CER
against the gold text (:func:`mger.models.wer.wer_table`, overall and per speaker, emotion and
session), the utterances that got an empty transcript and why, and the speed.  Pocketsphinx runs
in ``transcribe.n_jobs`` worker processes (one decoder each; the transcripts do not depend on
the number); Whisper in this process, batched.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from mger.core.config_transcribe import TranscribeConfig
from mger.core.manifest import Utterance, read_manifest, write_manifest
from mger.core.processes import map_chunks
from mger.core.reporting import StageError, write_json
from mger.core.transcripts import Transcript, asr_utterances, source_identity, write_source, write_transcripts
from mger.features.asr import Recognizer, make_recognizer, transcribe_files
from mger.models.wer import wer_table

_WORKER: dict[str, Recognizer] = {}


def _recognizer(cfg: TranscribeConfig) -> Recognizer:
    key = repr(cfg)
    if key not in _WORKER:
        _WORKER[key] = make_recognizer(cfg)
    return _WORKER[key]


def transcribe_utterances(rec: Recognizer, utts: Sequence[Utterance]) -> list[Transcript]:
    """One transcript per utterance; unreadable, empty or silent audio: empty text with a note
    (:func:`mger.features.asr.transcribe_files`)."""
    pairs = transcribe_files(rec, [u.wav for u in utts])
    return [
        Transcript(u.utt_id, text, rec.backend, rec.model, rec.model_id, note) for u, (text, note) in zip(utts, pairs)
    ]


def _chunk(cfg: TranscribeConfig, chunk: Sequence[Utterance]) -> list[Transcript]:
    return transcribe_utterances(_recognizer(cfg), chunk)


def run_recognizer(utts: Sequence[Utterance], cfg: TranscribeConfig, chunk_size: int = 8) -> list[Transcript]:
    """All utterances, manifest order kept: pocketsphinx in ``n_jobs`` processes, Whisper here."""
    if cfg.backend == "whisper" or cfg.n_jobs == 1:
        rec = _recognizer(cfg)
        step = max(chunk_size, cfg.whisper.batch_size)
        out: list[Transcript] = []
        with tqdm(total=len(utts), desc="transcribe", unit="utt", file=sys.stderr) as bar:
            for s in range(0, len(utts), step):
                out += transcribe_utterances(rec, utts[s : s + step])
                bar.update(min(step, len(utts) - s))
        return out
    return map_chunks(_chunk, cfg, utts, chunk_size, cfg.n_jobs, "transcribe")


def run_transcribe(manifest: str | Path, cfg: TranscribeConfig) -> dict:
    """The whole stage; returns the report it wrote."""
    t0 = time.perf_counter()
    utts = read_manifest(manifest)
    if not utts:
        raise StageError(f"{manifest}: the manifest is empty")
    rows = run_recognizer(utts, cfg)
    wall = time.perf_counter() - t0
    first = rows[0]
    write_transcripts(cfg.out, rows)
    by_id = {r.utt_id: r for r in rows}
    write_manifest(cfg.manifest, asr_utterances(utts, by_id, cfg.out))
    write_source(cfg.manifest, source_identity(first.backend, first.model, first.model_id, manifest))
    gold = any(u.text.strip() for u in utts)
    scored = [
        {
            "ref": u.text,
            "hyp": by_id[u.utt_id].text,
            "corpus": u.corpus,
            "speaker": u.speaker,
            "emotion": u.label,
            "group": u.group,
            "partition": u.partition,
        }
        for u in utts
    ]
    empty = [{"utt_id": r.utt_id, "note": r.note} for r in rows if not r.text]
    audio = sum(u.duration for u in utts)
    report = {
        "backend": first.backend,
        "model": first.model,
        "model_id": first.model_id,
        "n_utterances": len(utts),
        "n_empty": len(empty),
        "empty": empty,
        "wer": wer_table(scored) if gold else None,
        "audio_seconds": round(audio, 2),
        "wall_seconds": round(wall, 2),
        "real_time_factor": round(wall / audio, 4) if audio else None,
        "n_jobs": cfg.n_jobs if cfg.backend == "pocketsphinx" else 1,
    }
    write_json(cfg.report, report)
    wer = report["wer"]["overall"] if gold else None
    scored_line = (
        f"WER {100 * wer['wer']:.1f}% (95% CI {100 * wer['wer_ci95'][0]:.1f}-{100 * wer['wer_ci95'][1]:.1f}), "
        f"CER {100 * wer['cer']:.1f}% against the gold text"
        if wer and wer["wer"] is not None
        else "no gold text to score"
    )
    print(
        f"transcribe ({first.backend}, {first.model}): {len(utts)} utterances, {len(empty)} empty; {scored_line}; "
        f"{audio / 60:.1f} min of audio in {wall:.1f}s (RTF {report['real_time_factor']}) → {cfg.out}"
    )
    return report
