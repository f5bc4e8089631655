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
whose record no longer matches the current files
(:func:`mger.features.fingerprint.check_store_inputs`, hashed once per process and version of
each file), so a re-alignment or a new manifest is never trained on through a store built
before it.

``--fold k`` extracts with fold k's fine-tuned encoders (``mger finetune --fold k``) into
``<finetune.features_out>/fold-<k>/``; the fold, the sessions the encoders were fine-tuned
on and the hash of their ``finetune.json`` join the fingerprint, which is what lets
:class:`mger.features.cache.FeatureStore` refuse the store for any other fold.

This module is the stage's orchestration only; the parts live beside it: the encoder of a
store's ``model`` (:mod:`mger.features.registry`), its inputs and fingerprint
(:mod:`mger.features.fingerprint`), the lock / parts / merge protocol
(:mod:`mger.features.shards`), the reader and writer threads (:mod:`mger.features.pipelining`),
a part's rows (:mod:`mger.features.rows`) and the stores' file names
(:mod:`mger.features.store_paths`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from tqdm import tqdm

from mger.core.config import FeaturesConfig, FinetuneConfig
from mger.core.processes import dispatch
from mger.core.ragged_h5 import AUDIO_LEVELS
from mger.core.transcripts import fingerprint_entries
from mger.features.cache import CacheError, exclusive_lock
from mger.features.fingerprint import AlignedInputs, fingerprint, load_aligned, store_attrs
from mger.features.pipelining import BatchReader, PartWriter, PhaseClock, mark
from mger.features.registry import build_encoder
from mger.features.rows import borrowed_levels, commit_part, speech_part, text_part
from mger.features.shards import claim, lock_for_merge, merge_parts, part_paths, parts_dir, split_parts
from mger.features.store_paths import store_file


def _run_shard(kind: str, cfg: FeaturesConfig, manifest: str, segments: str | None, store: str, i: int, n: int) -> int:
    """One shard in a worker process (:func:`mger.core.processes.dispatch`)."""
    inputs, _ = load_aligned(manifest, segments)
    return compute_parts(kind, cfg, inputs, Path(store), (i, n))


CLOCK_KEYS = ("seconds",)  # a fine-tuning record's wall-clock entries: not part of what it made


def record_sha256(record: dict) -> str:
    """The identity of a fine-tuning record (``finetune.json``) without its wall-clock time, so two
    runs that made the same encoders give fine-tuned stores the same fingerprint."""
    kept = {k: v for k, v in record.items() if k not in CLOCK_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode("utf-8")).hexdigest()


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
    if record["fold"] != fold or fold in record["train_folds"]:
        raise CacheError(
            f"{folder}: fine-tuned for fold {record['fold']} on folds {record['train_folds']}; "
            f"using it for fold {fold} would leak the test fold"
        )
    kinds = list(record["modalities"])
    speech = dataclasses.replace(cfg.speech, model=str(folder / "speech"), revision=None)
    text = dataclasses.replace(cfg.text, model=str(folder / "text"), revision=None) if "text" in kinds else cfg.text
    out = dataclasses.replace(cfg, out=str(finetune.features_dir(fold)), speech=speech, text=text)
    entries = {
        "fold": fold,
        "finetune_train_folds": record["train_folds"],
        "finetune_sha256": record_sha256(record),
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
    segments: str | Path | None,
    shard: tuple[int, int] | None = None,
    no_rebuild: bool = False,
    store: Path | None = None,
    fold: dict | None = None,
) -> Path:
    """Build (or reuse) the ``kind`` store; returns its path. See the module docstring.

    The store's lock is taken before anything of the store is read or changed: exclusively for
    the whole run, or (``shard``) exclusively to set up the parts folder, then shared while
    adding parts, so that runs of other settings are refused instead of mixing parts.

    ``fold``: the fingerprint entries of fine-tuned encoders (:func:`finetuned_setup`).
    ``segments`` None: an alignment-free store (``mger extract --audio``) of every manifest
    utterance, whose fingerprint has neither the segment table nor the transcripts."""
    t0 = time.perf_counter()
    _refuse_mixed_levels(kind, cfg, segments)
    inputs, unaligned = load_aligned(manifest, segments)
    if unaligned:
        print(
            f"warning: {len(unaligned)} manifest utterances have no alignment and get no features "
            f"(e.g. {unaligned[0]}; see the alignment report)",
            file=sys.stderr,
        )
    if not inputs.utts:
        raise CacheError(f"no aligned utterance in {manifest}")
    store = store or store_file(cfg.out, kind)
    encoder = build_encoder(kind, cfg)
    fp = fingerprint(kind, encoder, cfg, inputs, fold)
    if segments is not None:
        fp |= fingerprint_entries(manifest)  # ASR text: its identity
    lock = claim(kind, store, fp, no_rebuild, shard, len(inputs.utts))
    if lock is None:
        return store
    n_parts = len(split_parts(inputs.utts, cfg.shard_size))
    try:
        if shard is None:
            _compute_all(kind, cfg, inputs, store, encoder, str(manifest), None if segments is None else str(segments))
        else:
            compute_parts(kind, cfg, inputs, store, shard, encoder)
            lock.release()
            lock = lock_for_merge(kind, store, fp, n_parts, shard)
            if lock is None:
                return store
        merge_parts(store, n_parts, store_attrs(kind, fp, encoder))
    finally:
        if lock is not None:
            lock.release()
    _summary(kind, inputs, fp, store, segments, time.perf_counter() - t0)
    return store


def _refuse_mixed_levels(kind: str, cfg: FeaturesConfig, segments: str | Path | None) -> None:
    """A speech store's alignment-free levels live in a file of their own (with ``segments``
    None), the others in the aligned one: :func:`mger.features.store_paths.stage_config` gives each
    file's settings."""
    if kind != "speech":
        return
    free = [lv for lv in cfg.speech.levels if lv in AUDIO_LEVELS]
    if segments is not None and free:
        raise CacheError(
            f"levels {', '.join(free)} need no alignment and are stored apart (features.audio_out, "
            "`mger extract --audio`): build each file with store_paths.stage_config"
        )
    if segments is None and len(free) != len(cfg.speech.levels):
        raise CacheError("an alignment-free store (no segment table) holds only the levels " + ", ".join(AUDIO_LEVELS))


def _summary(kind: str, inputs: AlignedInputs, fp: dict, store: Path, segments: str | Path | None, wall: float) -> None:
    """The run's line (utterances, levels, speed) and a note per level some utterances borrow."""
    audio = sum(u.duration for u in inputs.utts)
    work = f"{audio / 60:.1f} min of audio ({audio / wall:.1f}x real time)" if kind == "speech" else "transcripts"
    print(
        f"extract {kind}: {len(inputs.utts)} utterances, levels {', '.join(fp['levels'])}; {work} "
        f"in {wall:.1f}s → {store}"
    )
    if inputs.table is None:
        return
    ids = [u.utt_id for u in inputs.utts]
    for level, n in borrowed_levels(inputs.table, ids, fp["levels"] if kind != "text" else []).items():
        print(
            f"extract {kind}: note: {n} of {len(ids)} utterances have no {level} in {segments}: their {level} "
            "rows are a coarser level's (docs/features.md)",
            file=sys.stderr,
        )


def compute_parts(
    kind: str,
    cfg: FeaturesConfig,
    inputs: AlignedInputs,
    store: Path,
    shard: tuple[int, int],
    encoder=None,
    clock: PhaseClock | None = None,
) -> int:
    """Compute and commit this shard's missing parts; returns how many were computed.

    Three threads overlap: a reader reads and prepares speech batches ahead
    (:class:`~mger.features.pipelining.BatchReader`), this one runs the encoder and pools, and a
    writer commits part p (:func:`~mger.features.rows.commit_part`) while part p+1 is computed
    (:class:`~mger.features.pipelining.PartWriter`).  Parts are
    committed in order, each atomically, so a killed run resumes from the parts present.
    ``clock`` marks the phases (:data:`mger.features.pipelining.PHASES`)."""
    i, n = shard
    parts = split_parts(inputs.utts, cfg.shard_size)
    paths = part_paths(store, len(parts))
    todo = [p for p in range(len(parts)) if p % n == i and not paths[p].exists()]
    if not todo:
        return 0
    encoder = encoder or build_encoder(kind, cfg)
    with (
        exclusive_lock(parts_dir(store) / f"shard-{i}-of-{n}"),
        BatchReader(encoder, cfg, [parts[p] for p in todo]) if kind == "speech" else nullcontext() as reader,
        PartWriter(kind) as writer,
    ):
        for k, p in enumerate(tqdm(todo, desc=f"extract {kind} {i}/{n}", unit="part", file=sys.stderr)):
            utts = parts[p]
            if kind == "speech":
                levels, extra = speech_part(encoder, cfg, inputs, utts, reader.part(k), clock), None
            else:
                mark(clock, "encode")
                levels, extra = text_part(encoder, cfg, inputs, utts)
            mark(clock, "write")
            writer.submit(p, paths[p], partial(commit_part, kind, cfg, p, paths[p], utts, levels, extra))
        mark(clock, "write")
        writer.wait()
    mark(clock, "end")
    return len(todo)


def _compute_all(
    kind: str, cfg: FeaturesConfig, inputs: AlignedInputs, store: Path, encoder, manifest: str, segments: str | None
) -> None:
    """A whole run: every part here (``features.n_jobs`` 1 under joblib), else N shards dispatched."""
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
