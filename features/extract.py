"""The ``extract`` stage: encoders over the aligned manifest into fingerprinted HDF5 stores.

Work is split into *parts* of ``features.shard_size`` utterances (contiguous in manifest
order).  Each finished part is committed atomically as its own small store under
``<store>.parts/``; a run killed at any moment and restarted redoes only unfinished parts,
then merges them into ``<store>`` (a copy, atomic rename).  Within a run, reading and
preparing audio, encoding, and committing parts overlap in three threads
(:func:`compute_parts`); the stores are the serial loop's, byte for byte.  ``--shard i/N``
computes the parts ``p`` with ``p % N == i``, so N processes or machines can share the work;
the run that finds every part present merges.  ``features.n_jobs`` > 1 runs N shards under joblib
locally, ``features.backend: dask`` runs them on a Dask cluster (``features.scheduler``).

Store state (the store, ``<store>.parts`` and its ``fingerprint.json``) is only read or changed
under the store's lock (:class:`mger.features.cache.StoreLock`), so runs of other settings are
refused, never mixed.  A store is reused only if its fingerprint matches (every input that
changes the values, the content hash of every wav included) and it verifies sound
(checksums, levels, NaN/inf); otherwise it is rebuilt.

A store records the sha256 of the segment table, of its utterances' ids and of their
transcripts (``manifest_sha256``) in its fingerprint; training and the report refuse a store
whose record no longer matches the current files (:func:`check_store_inputs`, hashed once per
process and version of each file), so a re-alignment or a new manifest is never trained on
through a store built before it.

``--fold k`` extracts with fold k's fine-tuned encoders (``mger finetune --fold k``) into
``<finetune.features_out>/fold-<k>/``; the fold, the sessions the encoders were fine-tuned
on and the hash of their ``finetune.json`` join the fingerprint, which is what lets
:class:`mger.features.cache.FeatureStore` refuse the store for any other fold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from mger import __version__
from mger.alignment.table import SegmentTable
from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, FinetuneConfig
from mger.core.manifest import Utterance, read_manifest
from mger.core.processes import dispatch
from mger.core.ragged_h5 import SEGMENT_LEVELS, TEXT_LEVELS
from mger.core.reporting import write_text_atomic
from mger.core.transcripts import fingerprint_entries  # asr (#33)
from mger.features.acoustic import OpenSmileEncoder, is_opensmile
from mger.features.cache import (
    CacheError,
    StoreLock,
    exclusive_lock,
    file_sha256,
    fingerprint_diff,
    fingerprint_sha256,
    ids_sha256,
    merge_stores,
    read_fingerprint,
    verify_store,
    write_store,
)
from mger.features.encoders import Encoder, ModelUnavailable, SpeechEncoder, TextEncoder, speech_encoder
from mger.features.pooling import pool_segments
from mger.features.text import aligned_word_spans

KINDS = ("speech", "text")


@dataclass(frozen=True)
class Inputs:
    """What a part is computed from."""

    utts: list[Utterance]
    table: SegmentTable
    segments_sha256: str


def load_inputs(manifest: str | Path, segments: str | Path) -> tuple[Inputs, list[str]]:
    """Manifest utterances that have an alignment (and the ids of those that do not)."""
    table = SegmentTable.read(segments)
    aligned = set(table.utt_ids)
    utts = read_manifest(manifest)
    seen: set[str] = set()
    for u in utts:
        if u.utt_id in seen:
            raise CacheError(
                f"{manifest}: utterance id {u.utt_id} appears more than once; one id would get "
                "two utterances' features: fix the manifest or rerun `mger prepare`"
            )
        seen.add(u.utt_id)
    kept = [u for u in utts if u.utt_id in aligned]
    return Inputs(kept, table, file_sha256(segments)), [u.utt_id for u in utts if u.utt_id not in aligned]


def manifest_sha256(utts: Sequence[Utterance]) -> str:
    """What of the manifest a store's values depend on besides the wavs' bytes: each utterance's
    id and transcript, in order (the fingerprint's ``manifest_sha256``)."""
    return hashlib.sha256("".join(f"{u.utt_id}\t{u.text}\n" for u in utts).encode("utf-8")).hexdigest()


_INPUT_SUMS: dict[tuple, dict[str, str]] = {}  # (manifest, segments) versions → their fingerprint entries


def input_sums(manifest: str | Path, segments: str | Path) -> dict[str, str]:
    """The fingerprint entries the current ``manifest`` and segment table give a store
    (``segments_sha256``, ``utt_ids_sha256``, ``manifest_sha256``), computed once per process
    and version (path, mtime, size) of the two files."""
    key = tuple((str(Path(p).resolve()), os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (manifest, segments))
    if key not in _INPUT_SUMS:
        inputs, _ = load_inputs(manifest, segments)
        _INPUT_SUMS[key] = {
            "segments_sha256": inputs.segments_sha256,
            "utt_ids_sha256": ids_sha256([u.utt_id for u in inputs.utts]),
            "manifest_sha256": manifest_sha256(inputs.utts),
        }
    return _INPUT_SUMS[key]


def check_store_inputs(store: str | Path, manifest: str | Path, segments: str | Path) -> None:
    """Refuse (:class:`CacheError`, one line naming the store and the fix) a store built from
    another segment table, other utterances or other transcripts than ``manifest`` and
    ``segments`` hold now: `mger extract` would rebuild it."""
    fp = read_fingerprint(store) or {}
    now = input_sums(manifest, segments)
    fold = fp.get("fold")
    fix = f"`mger extract --fold {fold}`" if fold is not None else "`mger extract`"
    for key, what in (
        ("segments_sha256", f"another segment table than {segments} (aligned again since)"),
        ("utt_ids_sha256", f"other utterances than {manifest} and {segments} give now"),
        ("manifest_sha256", f"other transcripts than {manifest} holds now"),
    ):
        if key not in fp:
            raise CacheError(f"{store}: no {key} recorded (built by an older mger); run {fix} (or `dvc repro`) first")
        if fp[key] != now[key]:
            raise CacheError(f"{store}: stale: built from {what}; run {fix} (or `dvc repro`) first")


def batch_seconds(cfg: FeaturesConfig, device: torch.device) -> float:
    """``auto``: one utterance per batch on CPU (padded batches are slower there:
    ``benchmarks/bench_extract.py`` measures it),
    200 s of audio per batch on GPU."""
    if cfg.batch_seconds != "auto":
        return float(cfg.batch_seconds)
    return 200.0 if device.type == "cuda" else 0.0


def make_batches(durations: Sequence[float], max_seconds: float) -> list[list[int]]:
    """Indices sorted by duration, grouped while (count x longest) stays within ``max_seconds``."""
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * durations[i] <= max_seconds:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def build_encoder(kind: str, cfg: FeaturesConfig) -> Encoder:
    """The ``kind`` encoder; a model that cannot be loaded is a :class:`CacheError` naming the param."""
    model = cfg.speech.model if kind == "speech" else cfg.text.model
    try:
        if kind == "speech" and is_opensmile(cfg.speech.model):
            return OpenSmileEncoder(cfg.speech.model)
        if kind == "speech":
            s = cfg.speech
            return speech_encoder(s.model, s.revision, s.layer, cfg.device, cfg.dtype, s.max_seconds, s.overlap_seconds)
        t = cfg.text
        return TextEncoder(t.model, t.revision, t.layer, cfg.device, t.max_length, t.markers)
    except ModelUnavailable as err:  # names the param already
        raise CacheError(str(err)) from None
    except (OSError, ImportError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CacheError(
            f"features.{kind}.model: cannot load {model!r} ({reason}); set it to a local "
            "save_pretrained folder, a hub id, or package:<an installed module>"
        ) from err


def audio_sha256(utts: Sequence[Utterance]) -> str:
    """The audio's identity: sha256 over each utterance's id and the sha256 of its wav's bytes
    (the whole file, read by 4 threads), in manifest order.  A content hash, not size and
    mtime: a wav rewritten with the same length changes it, a copy or checkout with new
    mtimes does not."""

    def digest(utt: Utterance) -> str:
        try:
            return file_sha256(utt.wav)
        except OSError as err:
            raise CacheError(
                f"{utt.wav}: cannot read the wav of {utt.utt_id} ({err.strerror or err}); "
                "restore it or rerun `mger prepare`"
            ) from None

    with ThreadPoolExecutor(4) as pool:
        digests = list(pool.map(digest, utts))
    h = hashlib.sha256()
    for utt, d in zip(utts, digests):
        h.update(f"{utt.utt_id} {d}\n".encode())
    return h.hexdigest()


def fingerprint(kind: str, encoder: Encoder, cfg: FeaturesConfig, inputs: Inputs, fold: dict | None = None) -> dict:
    """Everything that changes the stored values; a store is reused only if this matches.

    ``fold``: for fine-tuned encoders, the fold, its fine-tuning sessions and record hash."""
    common = {
        "kind": kind,
        "model": encoder.name,
        "revision": encoder.revision,
        "weights_sha256": encoder.weights_sha256,
        "segments_sha256": inputs.segments_sha256,
        "utt_ids_sha256": ids_sha256([u.utt_id for u in inputs.utts]),
        "manifest_sha256": manifest_sha256(inputs.utts),
        "format": 2,
    } | (fold or {})
    if kind == "text":
        return common | {
            "layer": encoder.layer_key,
            "n_layers": encoder.n_layers,
            "levels": list(TEXT_LEVELS),
            "max_length": cfg.text.max_length,
            "input": "transcript as written",
            "markers": cfg.text.markers,
        }
    speech = common | {
        "pooling": cfg.speech.pooling,
        "levels": list(cfg.speech.levels),
        "frame_stride": encoder.frame_stride_s,
        "audio_sha256": audio_sha256(inputs.utts),
    }
    if hasattr(encoder, "input_kind"):  # Whisper: log-mel input (wav2vec2-family fingerprints are as before)
        speech["input"] = encoder.input_kind
    if isinstance(encoder, OpenSmileEncoder):
        return speech | encoder.settings() | {"frame_centre0": encoder.frame_centre0_s}
    return speech | {
        "layer": encoder.layer_key,
        "n_layers": encoder.n_layers,
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "max_seconds": cfg.speech.max_seconds,
        "overlap_seconds": cfg.speech.overlap_seconds,
        "normalize": encoder.normalize,
        "batching": "exact",
    }


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


READ_AHEAD = 2  # batches read and prepared ahead of the encoder (bounded host memory; pinned on GPU)


class PhaseClock:
    """Where an extraction run's time goes: :meth:`enter` marks the start of a phase (and the
    end of the one before); :meth:`seconds` sums each phase's spans up to the last mark.

    ``stamp`` and ``elapsed``: the host clock by default.  With CUDA events (recorded on the
    stream, never synchronising) the spans are of the device's timeline, so a phase's share is
    the device time spent in it or idle waiting for the host to get through it
    (``benchmarks/bench_extract.py``).  Phases: :data:`PHASES`."""

    def __init__(
        self,
        stamp: Callable[[], Any] = time.perf_counter,
        elapsed: Callable[[Any, Any], float] = lambda start, end: end - start,
    ) -> None:
        self.marks: list[tuple[str, Any]] = []
        self._stamp, self._elapsed = stamp, elapsed

    def enter(self, phase: str) -> None:
        self.marks.append((phase, self._stamp()))

    def seconds(self) -> dict[str, float]:
        """Seconds per phase, in the order phases were first entered (the last mark only ends)."""
        out: dict[str, float] = {}
        for (phase, start), (_, end) in zip(self.marks, self.marks[1:]):
            out[phase] = out.get(phase, 0.0) + self._elapsed(start, end)
        return out


PHASES = {
    "read": "waiting for audio + preprocessing (reader thread)",
    "encode": "encoding (host→device copy + forward)",  # text parts: all of text_part
    "pool": "pooling",
    "to_host": "device→host copies",
    "write": "waiting for the writer thread",
}


def _enter(clock: PhaseClock | None, phase: str) -> None:
    if clock is not None:
        clock.enter(phase)


class Prefetch:
    """``fn(item)`` for each of ``items`` in order, computed by one background thread that starts
    at once and stays at most ``depth`` items ahead of the consumer (bounded memory).  An
    error of ``fn`` is raised where its item is taken.  A context manager: leaving it cancels
    what was not started and waits for the running call."""

    def __init__(self, fn: Callable[[Any], Any], items: Iterable[Any], depth: int = READ_AHEAD) -> None:
        self._fn, self._items = fn, iter(items)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mger-read")
        self._pending: deque[Future] = deque()
        for _ in range(depth):
            self._submit_next()

    def _submit_next(self) -> None:
        for item in islice(self._items, 1):
            self._pending.append(self._pool.submit(self._fn, item))

    def __iter__(self) -> "Prefetch":
        return self

    def __next__(self) -> Any:
        if not self._pending:
            raise StopIteration
        future = self._pending.popleft()
        self._submit_next()
        return future.result()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class LoadedBatch:
    """One batch's audio read and prepared on the host: ``batch`` (the encoder's
    ``prepare_batch``: for wav2vec2 a :class:`mger.features.encoders.SpeechBatch`), and the raw
    waves (T_i,) float32 where the functionals level needs them (openSMILE), else None."""

    batch: Any
    waves: list[np.ndarray] | None


def speech_batches(encoder: Encoder, cfg: FeaturesConfig, utts: Sequence[Utterance]) -> list[list[int]]:
    """The batches (indices into ``utts``) a part is encoded in (:func:`make_batches`)."""
    return make_batches([u.duration for u in utts], batch_seconds(cfg, encoder.device))


def _load(encoder: Encoder, utts: Sequence[Utterance], keep_waves: bool) -> LoadedBatch:
    """Runs in the reader thread: read ``utts``' audio, prepare and pad it (no device work)."""
    waves = [read_audio(u.wav) for u in utts]
    return LoadedBatch(encoder.prepare_batch(waves), waves if keep_waves else None)


class BatchReader:
    """The batches of one or more parts (:func:`speech_batches`), read and prepared in order
    by a :class:`Prefetch` thread, at most :data:`READ_AHEAD` batches ahead of the encoder and
    across the end of a part, so the next part's first batches are ready when it starts."""

    def __init__(self, encoder: Encoder, cfg: FeaturesConfig, parts: Sequence[Sequence[Utterance]]) -> None:
        keep = "functionals" in cfg.speech.levels
        self.plans = [speech_batches(encoder, cfg, utts) for utts in parts]
        jobs = [[utts[i] for i in b] for utts, plan in zip(parts, self.plans) for b in plan]
        self._prefetch = Prefetch(lambda job: _load(encoder, job, keep), jobs)

    def part(self, k: int) -> Iterator[LoadedBatch]:
        """Part ``k``'s loaded batches; the parts are to be taken in order, each once."""
        return islice(self._prefetch, len(self.plans[k]))

    def __enter__(self) -> "BatchReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._prefetch.__exit__(*exc)


def speech_part(
    encoder: SpeechEncoder,
    cfg: FeaturesConfig,
    inputs: Inputs,
    utts: Sequence[Utterance],
    batches: Iterator[LoadedBatch] | None = None,
    clock: PhaseClock | None = None,
) -> dict[str, list[np.ndarray]]:
    """Rows per level for ``utts`` (one part), float16 as stored: the encoder runs batch by
    batch while a reader thread reads and prepares (normalises, pads, pins) the next batches
    (``batches``: this part's, from a :class:`BatchReader` shared by several parts; else a
    reader of its own), then every segment of every level of the part is pooled in one
    vectorised call on the encoder's device.  ``clock`` marks the phases (:data:`PHASES`)."""
    if batches is None:
        with BatchReader(encoder, cfg, [utts]) as reader:
            return speech_part(encoder, cfg, inputs, utts, reader.part(0), clock)
    frames: list[torch.Tensor] = [torch.empty(0)] * len(utts)
    functionals: list[np.ndarray] = [np.empty(0)] * len(utts)
    for batch in speech_batches(encoder, cfg, utts):
        _enter(clock, "read")
        loaded = next(batches)
        _enter(clock, "encode")
        for i, feats in zip(batch, encoder.encode_batch(loaded.batch)):
            frames[i] = feats
        if loaded.waves is not None:  # openSMILE only (the config says so)
            for i, row in zip(batch, encoder.functionals(loaded.waves)):
                functionals[i] = row.half().numpy()
    return _speech_levels(encoder, cfg, inputs, utts, frames, functionals, clock)


def _speech_levels(
    encoder: SpeechEncoder,
    cfg: FeaturesConfig,
    inputs: Inputs,
    utts: Sequence[Utterance],
    frames: list[torch.Tensor],
    functionals: list[np.ndarray],
    clock: PhaseClock | None,
) -> dict[str, list[np.ndarray]]:
    """The part's levels from its utterances' frames (T_i, ...) on the device: frame rows and
    the pooled levels' rows copied to the host once each (:func:`_to_host`)."""
    _enter(clock, "to_host")
    flat = torch.cat(frames)
    levels = {"frame": _to_host(flat, [len(f) for f in frames])} if "frame" in cfg.speech.levels else {}
    if "functionals" in cfg.speech.levels:
        levels["functionals"] = functionals
    pooled_levels = [lv for lv in cfg.speech.levels if lv not in ("frame", "functionals")]
    if not pooled_levels:
        return levels
    _enter(clock, "pool")
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
    _enter(clock, "to_host")
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
    encoder: TextEncoder, cfg: FeaturesConfig, inputs: Inputs, utts: Sequence[Utterance], batch_size: int = 32
) -> tuple[dict[str, list[np.ndarray]], dict[str, dict[str, list[np.ndarray]]]]:
    """Token rows (with their word index) and word rows for ``utts`` (float16 as stored): the
    encoder reads each transcript as written (:meth:`TextEncoder.prepare`); word rows
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
        for tok, wid, wemb in encoder.encode_part(items):
            tokens.append(tok.half().cpu().numpy())
            token_word.append(wid.cpu().numpy())
            words.append(wemb.half().cpu().numpy())
    return {"token": tokens, "word": words}, {"token": {"word": token_word}}


def _part_paths(store: Path, n_parts: int) -> list[Path]:
    return [Path(f"{store}.parts") / f"part-{p:05d}.h5" for p in range(n_parts)]


def _parts(utts: Sequence[Utterance], size: int) -> list[list[Utterance]]:
    return [list(utts[s : s + size]) for s in range(0, len(utts), size)] or [[]]


def compute_parts(
    kind: str,
    cfg: FeaturesConfig,
    inputs: Inputs,
    store: Path,
    shard: tuple[int, int],
    encoder=None,
    clock: PhaseClock | None = None,
) -> int:
    """Compute and commit this shard's missing parts; returns how many were computed.

    Three threads overlap: a reader reads and prepares speech batches ahead
    (:class:`BatchReader`), this one runs the encoder and pools, and a writer commits part p
    (:func:`commit_part`) while part p+1 is computed (:class:`PartWriter`).  Parts are
    committed in order, each atomically, so a killed run resumes from the parts present.
    ``clock`` marks the phases (:data:`PHASES`)."""
    i, n = shard
    parts = _parts(inputs.utts, cfg.shard_size)
    paths = _part_paths(store, len(parts))
    todo = [p for p in range(len(parts)) if p % n == i and not paths[p].exists()]
    if not todo:
        return 0
    encoder = encoder or build_encoder(kind, cfg)
    with (
        exclusive_lock(Path(f"{store}.parts") / f"shard-{i}-of-{n}"),
        BatchReader(encoder, cfg, [parts[p] for p in todo]) if kind == "speech" else nullcontext() as reader,
        PartWriter(kind) as writer,
    ):
        for k, p in enumerate(tqdm(todo, desc=f"extract {kind} {i}/{n}", unit="part", file=sys.stderr)):
            utts = parts[p]
            if kind == "speech":
                levels, extra = speech_part(encoder, cfg, inputs, utts, reader.part(k), clock), None
            else:
                _enter(clock, "encode")
                levels, extra = text_part(encoder, cfg, inputs, utts)
            _enter(clock, "write")
            writer.submit(p, paths[p], partial(commit_part, kind, cfg, p, paths[p], utts, levels, extra))
        _enter(clock, "write")
        writer.wait()
    _enter(clock, "end")
    return len(todo)


class PartWriter:
    """Commits parts (:func:`commit_part`) in one background thread while the next part is
    computed; at most one part in flight (:meth:`submit` first waits for the one before), so
    at most two parts' rows are held.  A failed commit is raised in the caller's thread by
    the next :meth:`submit` or :meth:`wait`, naming the part (:func:`_part_error`); on
    leaving after an error elsewhere, the part in flight is still committed (whole)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mger-write")
        self._pending: tuple[int, Path, Future] | None = None

    def submit(self, p: int, path: Path, commit: Callable[[], None]) -> None:
        """Run ``commit`` (part ``p``'s :func:`commit_part` call, writing ``path``) in the writer thread."""
        self.wait()
        self._pending = (p, path, self._pool.submit(commit))

    def wait(self) -> None:
        """Until the part in flight is committed; its error, if any, raised here."""
        if self._pending is None:
            return
        p, path, future = self._pending
        self._pending = None
        err = future.exception()
        if err is not None:
            raise _part_error(self.kind, p, path, err)

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)


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


def _part_error(kind: str, p: int, path: Path, err: BaseException) -> BaseException:
    """The writer's error as the caller raises it: a :class:`CacheError` as it is (it names
    the utterances), an ``OSError`` naming the part's file (the CLI prints it in one line),
    anything else a :class:`CacheError` naming the part; each noting the part."""
    err.add_note(f"while committing part {p} of the {kind} store ({path})")
    if isinstance(err, CacheError):
        return err
    if isinstance(err, OSError):
        err.filename = err.filename or str(path)
        return err
    if not isinstance(err, Exception):
        return err  # KeyboardInterrupt, SystemExit: as they are
    wrapped = CacheError(
        f"{path}: part {p} of the {kind} store was not written ({type(err).__name__}: {err}); "
        "nothing of it was stored: rerun `mger extract` to compute it again"
    )
    wrapped.__cause__ = err
    return wrapped


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


def _attrs(kind: str, fp: dict, encoder: Encoder) -> dict:
    return {
        "fingerprint": json.dumps(fp, sort_keys=True),
        "fingerprint_sha256": fingerprint_sha256(fp),
        "model": fp["model"],
        "revision": fp["revision"] or "",
        "weights_sha256": fp["weights_sha256"],
        "layer": json.dumps(fp.get("layer")),
        "frame_stride": fp.get("frame_stride", 0.0),
        "pooling": fp.get("pooling", "mean-of-subtokens"),
        "segments_sha256": fp["segments_sha256"],
        "levels": json.dumps(fp["levels"]),
        "kind": kind,
        "dim": encoder.dim,
        "mger_version": __version__,
        "fold": fp.get("fold", -1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def store_path(out: str | Path, kind: str) -> Path:
    """The ``kind`` store in the folder ``out``: ``speech.h5``, ``text.h5``, or
    ``speech-<name>.h5`` for the speech store ``name`` of ``features.extra_speech``."""
    return Path(out) / (f"{kind}.h5" if kind in KINDS else f"speech-{kind}.h5")


def store_config(cfg: FeaturesConfig, name: str) -> FeaturesConfig:
    """The features settings that build the store ``name`` (``speech``, ``text`` or an extra
    speech store, whose settings take the place of ``features.speech``)."""
    if name in KINDS:
        return cfg
    return dataclasses.replace(cfg, speech=cfg.extra_speech[name])


def _run_shard(kind: str, cfg: FeaturesConfig, manifest: str, segments: str, store: str, i: int, n: int) -> int:
    """One shard in a worker process (:func:`mger.core.processes.dispatch`)."""
    inputs, _ = load_inputs(manifest, segments)
    return compute_parts(kind, cfg, inputs, Path(store), (i, n))


def finetuned_setup(
    cfg: FeaturesConfig, finetune: FinetuneConfig, fold: int, checkpoint: str | Path | None = None
) -> tuple[FeaturesConfig, dict, list[str]]:
    """Features settings for fold ``fold``'s fine-tuned encoders (in ``checkpoint``, default
    ``finetune.fold_dir(fold)``, a variant's settings given one): the config, the fingerprint's
    fold entries, the kinds to extract."""
    folder = Path(checkpoint) if checkpoint else finetune.fold_dir(fold)
    record_path = folder / "finetune.json"
    if not record_path.is_file():
        raise CacheError(f"{folder}: no finetune.json (finished fine-tuning); run `mger finetune --fold {fold}` first")
    record = json.loads(record_path.read_text())
    if record["fold"] != fold or fold in record["train_sessions"]:
        raise CacheError(
            f"{folder}: fine-tuned for fold {record['fold']} on sessions {record['train_sessions']}; "
            f"using it for fold {fold} would leak the test session"
        )
    kinds = list(record["modalities"])
    speech = dataclasses.replace(cfg.speech, model=str(folder / "speech"), revision=None)
    text = dataclasses.replace(cfg.text, model=str(folder / "text"), revision=None) if "text" in kinds else cfg.text
    out = dataclasses.replace(cfg, out=str(finetune.features_dir(fold)), speech=speech, text=text)
    entries = {
        "fold": fold,
        "finetune_train_sessions": record["train_sessions"],
        "finetune_sha256": file_sha256(record_path),
    }
    if "objective" in record:  # fusion (records of the utterance objective have no entry, as before it existed)
        entries["finetune_objective"] = record["objective"]
    if "variant" in record:  # one of several fine-tuning variants (finetune.variants)
        entries["finetune_variant"] = record["variant"]
    return out, entries, kinds


def extract(
    kind: str,
    cfg: FeaturesConfig,
    manifest: str | Path,
    segments: str | Path,
    shard: tuple[int, int] | None = None,
    no_rebuild: bool = False,
    store: Path | None = None,
    fold: dict | None = None,
) -> Path:
    """Build (or reuse) the ``kind`` store; returns its path. See the module docstring.

    The store's lock is taken before anything of the store is read or changed: exclusively for
    the whole run, or (``shard``) exclusively to set up the parts folder, then shared while
    adding parts, so that runs of other settings are refused instead of mixing parts.

    ``fold``: the fingerprint entries of fine-tuned encoders (:func:`finetuned_setup`)."""
    t0 = time.perf_counter()
    inputs, unaligned = load_inputs(manifest, segments)
    if unaligned:
        print(
            f"warning: {len(unaligned)} manifest utterances have no alignment and get no features "
            f"(e.g. {unaligned[0]}; see the alignment report)",
            file=sys.stderr,
        )
    if not inputs.utts:
        raise CacheError(f"no aligned utterance in {manifest}")
    store = store or store_path(cfg.out, kind)
    encoder = build_encoder(kind, cfg)
    fp = fingerprint(kind, encoder, cfg, inputs, fold) | fingerprint_entries(manifest)  # asr (#33): ASR text's identity
    lock = _claim(kind, store, fp, no_rebuild, shard, len(inputs.utts))
    if lock is None:
        return store
    try:
        if shard is None:
            _compute_all(kind, cfg, inputs, store, encoder, str(manifest), str(segments))
        else:
            compute_parts(kind, cfg, inputs, store, shard, encoder)
            lock.release()
            lock = _lock_for_merge(kind, store, fp, len(_parts(inputs.utts, cfg.shard_size)), shard)
            if lock is None:
                return store
        merge_stores(_part_paths(store, len(_parts(inputs.utts, cfg.shard_size))), store, _attrs(kind, fp, encoder))
        shutil.rmtree(Path(f"{store}.parts"))
    finally:
        if lock is not None:
            lock.release()
    audio = sum(u.duration for u in inputs.utts)
    wall = time.perf_counter() - t0
    work = f"{audio / 60:.1f} min of audio ({audio / wall:.1f}x real time)" if kind == "speech" else "transcripts"
    print(
        f"extract {kind}: {len(inputs.utts)} utterances, levels {', '.join(fp['levels'])}; {work} "
        f"in {wall:.1f}s → {store}"
    )
    ids = [u.utt_id for u in inputs.utts]
    for level, n in borrowed_levels(inputs.table, ids, fp["levels"] if kind != "text" else []).items():
        print(
            f"extract {kind}: note: {n} of {len(ids)} utterances have no {level} in {segments}: their {level} "
            "rows are a coarser level's (docs/features.md)",
            file=sys.stderr,
        )
    return store


def _claim(
    kind: str, store: Path, fp: dict, no_rebuild: bool, shard: tuple[int, int] | None, n_utts: int
) -> StoreLock | None:
    """Lock ``store`` and make its parts folder hold parts of ``fp`` only; None (lock released)
    when the store is up to date.  A whole run keeps the exclusive lock and is refused at once
    if another run holds it; a shard run sets up exclusively, then holds the lock shared (other
    shard runs of the same settings may join, nothing else), waiting up to
    :data:`SETUP_WAIT_S` for another run's set-up or merge."""
    lock = StoreLock(store)
    deadline = time.monotonic() + (SETUP_WAIT_S if shard is not None else 0.0)
    while True:
        if lock.acquire():
            if _set_up(kind, store, fp, no_rebuild, n_utts, lock):
                return None
            if shard is None:
                return lock
            lock.release()
        elif shard is None:
            raise lock.busy()
        if lock.acquire(shared=True):
            problem = _parts_problem(store, fp)
            if problem is None:
                return lock
            lock.release()
            if not lock.acquire():  # shard runs of other settings hold the store
                raise CacheError(
                    f"{store}: other shard runs are computing {problem}; wait for them to "
                    "finish, or stop them, before extracting with these settings"
                )
            lock.release()  # nobody holds it any more: set it up again
            if time.monotonic() >= deadline:
                raise lock.busy()
        elif time.monotonic() >= deadline:
            raise lock.busy()
        else:
            time.sleep(0.2)


def _set_up(kind: str, store: Path, fp: dict, no_rebuild: bool, n_utts: int, lock: StoreLock) -> bool:
    """Under the exclusive ``lock``: True (lock released) if the store is up to date, else the
    parts folder is made ready for ``fp``."""
    try:
        if _up_to_date(kind, store, fp, no_rebuild, n_utts):
            if Path(f"{store}.parts").exists() and _parts_problem(store, fp) is None:
                shutil.rmtree(Path(f"{store}.parts"))  # left by a run killed after its merge
            lock.release()
            return True
        _reset_parts(store, fp)
        return False
    except BaseException:
        lock.release()
        raise


SETUP_WAIT_S = 60.0  # how long a shard run waits out another run's exclusive set-up or merge


def _up_to_date(kind: str, store: Path, fp: dict, no_rebuild: bool, n_utts: int) -> bool:
    """True if ``store`` was built from ``fp`` and verifies sound; else says why it is rebuilt
    (or raises, with ``no_rebuild``)."""
    if not store.exists():
        return False
    old = read_fingerprint(store)
    if old == fp:
        t0 = time.perf_counter()
        problems = verify_store(store)
        if not problems:
            print(
                f"extract {kind}: {store} is up to date ({n_utts} utterances; verified in "
                f"{time.perf_counter() - t0:.1f}s)"
            )
            return True
        diff = [
            f"the store fails verification: {problems[0]}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
        ]
    else:
        diff = fingerprint_diff(old, fp) if old else ["no readable fingerprint"]
    if no_rebuild:
        raise CacheError(
            f"{store} was built from something else or is damaged ({'; '.join(diff)}); "
            "rerun without --no-rebuild to rebuild it"
        )
    print(f"extract {kind}: rebuilding {store} ({'; '.join(diff)})", file=sys.stderr)
    return False


def _parts_problem(store: Path, fp: dict) -> str | None:
    """Why the parts folder is not parts of ``fp`` (None: it is)."""
    fp_file = Path(f"{store}.parts") / "fingerprint.json"
    try:
        old = json.loads(fp_file.read_text())
    except (OSError, ValueError):
        return "parts without a readable fingerprint.json"
    return None if old == fp else f"parts of other settings ({'; '.join(fingerprint_diff(old, fp))})"


def _reset_parts(store: Path, fp: dict) -> None:
    """Under the exclusive lock: drop parts of other settings; record ``fp`` for the parts."""
    parts_dir = Path(f"{store}.parts")
    if parts_dir.exists() and _parts_problem(store, fp):
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(parts_dir / "fingerprint.json", json.dumps(fp, sort_keys=True))


def _lock_for_merge(kind: str, store: Path, fp: dict, n_parts: int, shard: tuple[int, int]) -> StoreLock | None:
    """After a shard run: the exclusive lock if every part of ``fp`` is present to merge, else
    None with a line saying what is left."""
    paths = _part_paths(store, n_parts)
    present = sum(p.exists() for p in paths)
    lock = StoreLock(store)
    if present == n_parts and lock.acquire():
        if _parts_problem(store, fp) is None and all(p.exists() for p in paths):
            return lock
        lock.release()
    left = "another run holds the store now" if present == n_parts else "run the remaining shards"
    print(
        f"extract {kind}: shard {shard[0]}/{shard[1]} done; {present} of {n_parts} parts present — "
        f"{left}, then `mger extract` merges"
    )
    return None


def _compute_all(
    kind: str, cfg: FeaturesConfig, inputs: Inputs, store: Path, encoder, manifest: str, segments: str
) -> None:
    if cfg.n_jobs == 1 and cfg.backend == "joblib":
        compute_parts(kind, cfg, inputs, store, (0, 1), encoder)
        return
    n = cfg.n_jobs
    dispatch(
        _run_shard,
        [(kind, cfg, manifest, segments, str(store), i, n) for i in range(n)],
        n,
        cfg.backend,
        cfg.scheduler,
        what=f"extract {kind} shards",
        share_cores=True,
    )
