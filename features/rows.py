"""A part's rows: speech frames pooled into every level of the store, text tokens and words,
and the commit of a part (refusing NaN/inf) — what :func:`mger.features.extract.compute_parts`
runs for each part."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from mger.alignment.table import SegmentTable
from mger.core.config import FeaturesConfig
from mger.core.manifest import Utterance
from mger.core.ragged_h5 import AUDIO_LEVELS, SEGMENT_LEVELS
from mger.features.cache import CacheError, write_store
from mger.features.fingerprint import AlignedInputs
from mger.features.pipelining import BatchReader, LoadedBatch, PhaseClock, mark, speech_batches
from mger.features.pooling import pool_segments
from mger.features.registry import SpeechEncoding, TextEncoding
from mger.features.text import aligned_word_spans


def _segments(table: SegmentTable, level: str, utt_id: str) -> list[tuple[float, float]]:
    """(start, end) of the utterance's segments at ``level``; an utterance without phones (a
    uniform alignment fallback) uses its syllables, which always exist."""
    if level == "utterance":
        return [(0.0, float("inf"))]
    finest_first = SEGMENT_LEVELS[::-1]
    for name in finest_first[finest_first.index(level) :]:
        segs = table.segments(name, utt_id)
        if segs:
            return [(s.start, s.end) for s in segs]
    return [(0.0, float("inf"))]


def borrowed_levels(table: SegmentTable, utt_ids: Sequence[str], levels: Sequence[str]) -> dict[str, int]:
    """Per segment level of ``levels``: how many of ``utt_ids`` have no segment of it, so that
    :func:`_segments` gives them a coarser level's (phones from syllables: the ``iemocap`` backend
    without ``.phseg`` files, a uniform fallback).  Levels none borrows are left out."""
    out = {}
    for level in (lv for lv in levels if lv in SEGMENT_LEVELS):
        n = sum(not table.segments(level, u) for u in utt_ids)
        if n:
            out[level] = n
    return out


def speech_part(
    encoder: SpeechEncoding,
    cfg: FeaturesConfig,
    inputs: AlignedInputs,
    utts: Sequence[Utterance],
    batches: Iterator[LoadedBatch] | None = None,
    clock: PhaseClock | None = None,
) -> dict[str, list[np.ndarray]]:
    """Rows per level for ``utts`` (one part), float16 as stored: the encoder runs batch by
    batch while a reader thread reads and prepares (normalises, pads, pins) the next batches
    (``batches``: this part's, from a :class:`BatchReader` shared by several parts; else a
    reader of its own), then every segment of every level of the part is pooled in one
    vectorised call on the encoder's device.  ``clock`` marks the phases (:data:`mger.features.pipelining.PHASES`)."""
    if batches is None:
        with BatchReader(encoder, cfg, [utts]) as reader:
            return speech_part(encoder, cfg, inputs, utts, reader.part(0), clock)
    frames: list[torch.Tensor] = [torch.empty(0)] * len(utts)
    functionals: list[np.ndarray] = [np.empty(0)] * len(utts)
    framed = any(lv not in AUDIO_LEVELS for lv in cfg.speech.levels)  # else the alignment-free file: no frames
    for batch in speech_batches(encoder, cfg, utts):
        mark(clock, "read")
        loaded = next(batches)
        mark(clock, "encode")
        for i, feats in zip(batch, encoder.encode_batch(loaded.batch) if framed else []):
            frames[i] = feats
        if loaded.waves is not None:  # openSMILE only (the config says so)
            for i, row in zip(batch, encoder.functionals(loaded.waves)):
                functionals[i] = row.half().numpy()
    if not framed:
        return {"functionals": functionals}
    return _speech_levels(encoder, cfg, inputs, utts, frames, functionals, clock)


def _speech_levels(
    encoder: SpeechEncoding,
    cfg: FeaturesConfig,
    inputs: AlignedInputs,
    utts: Sequence[Utterance],
    frames: list[torch.Tensor],
    functionals: list[np.ndarray],
    clock: PhaseClock | None,
) -> dict[str, list[np.ndarray]]:
    """The part's levels from its utterances' frames (T_i, ...) on the device: frame rows and
    the pooled levels' rows copied to the host once each (:func:`_to_host`)."""
    mark(clock, "to_host")
    flat = torch.cat(frames)
    levels = {"frame": _to_host(flat, [len(f) for f in frames])} if "frame" in cfg.speech.levels else {}
    if "functionals" in cfg.speech.levels:
        levels["functionals"] = functionals
    pooled_levels = [lv for lv in cfg.speech.levels if lv not in ("frame", "functionals")]
    if not pooled_levels:
        return levels
    mark(clock, "pool")
    counts = torch.tensor([f.shape[0] for f in frames], device=encoder.device)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=encoder.device), torch.cumsum(counts, 0)])
    segs = [_segments(inputs.table, lv, u.utt_id) for lv in pooled_levels for u in utts]  # level-major
    seg_utt = torch.tensor([k % len(utts) for k, s in enumerate(segs) for _ in s], device=encoder.device)
    bounds = torch.tensor([b for s in segs for b in s], dtype=torch.float64, device=encoder.device)
    pooled = pool_segments(
        flat.flatten(1),
        offsets,
        seg_utt,
        bounds[:, 0],
        bounds[:, 1],
        encoder.frame_stride_s,
        encoder.frame_centre0_s,
        cfg.speech.pooling,
    )
    mark(clock, "to_host")
    rows = _to_host(pooled.reshape((-1,) + tuple(frames[0].shape[1:])), [len(s) for s in segs])
    for j, lv in enumerate(pooled_levels):
        levels[lv] = rows[j * len(utts) : (j + 1) * len(utts)]
    return {lv: levels[lv] for lv in cfg.speech.levels}


def _to_host(rows: torch.Tensor, counts: Sequence[int]) -> list[np.ndarray]:
    """``rows`` (N, ...) cast to float16 where they are, copied to the host at once and split
    into ``counts`` consecutive blocks (views)."""
    host = rows.half().cpu().numpy()
    return np.split(host, np.cumsum(counts)[:-1])


def text_part(
    encoder: TextEncoding, cfg: FeaturesConfig, inputs: AlignedInputs, utts: Sequence[Utterance], batch_size: int = 32
) -> tuple[dict[str, list[np.ndarray]], dict[str, dict[str, list[np.ndarray]]]]:
    """Token rows (with their word index) and word rows for ``utts`` (float16 as stored): the
    encoder reads each transcript as written (:meth:`~mger.features.registry.TextEncoding.prepare`); word rows
    pool the sub-tokens of the alignment's words (:func:`features.text.aligned_word_spans`)."""
    tokens, words, token_word = [], [], []
    for s in range(0, len(utts), batch_size):
        chunk = utts[s : s + batch_size]
        items = [
            (
                encoder.prepare(u.text),
                aligned_word_spans(u.text, [w.label for w in inputs.table.segments("word", u.utt_id)]),
            )
            for u in chunk
        ]
        for tok, wid, wemb in encoder.encode_batch(items):
            tokens.append(tok.half().cpu().numpy())
            token_word.append(wid.cpu().numpy())
            words.append(wemb.half().cpu().numpy())
    return {"token": tokens, "word": words}, {"token": {"word": token_word}}


def commit_part(
    kind: str,
    cfg: FeaturesConfig,
    p: int,
    path: Path,
    utts: Sequence[Utterance],
    levels: dict[str, list[np.ndarray]],
    extra: dict[str, dict[str, list[np.ndarray]]] | None,
) -> None:
    """Runs in the writer thread: refuse NaN/inf, then write part ``p`` atomically (whole or not at all)."""
    _refuse_nonfinite(kind, cfg, utts, levels)
    write_store(path, [u.utt_id for u in utts], levels, {"part": p}, extra)


def _refuse_nonfinite(
    kind: str, cfg: FeaturesConfig, utts: Sequence[Utterance], levels: dict[str, list[np.ndarray]]
) -> None:
    """NaN or inf from the encoder never reaches a store: the part is not written, and the
    error names the utterance (a rerun would only compute the same values)."""
    for level, rows in levels.items():
        bad = [u.utt_id for u, r in zip(utts, rows) if not np.isfinite(r).all()]
        if bad:
            hint = "try features.dtype: fp32" if kind == "speech" and cfg.dtype != "fp32" else "check that utterance"
            raise CacheError(
                f"extract {kind}: the encoder gave NaN or inf for {len(bad)} utterances at level "
                f"{level} (e.g. {bad[0]}); nothing of that part was stored: {hint}"
            )
