"""What a store is computed from and its fingerprint.

:func:`load_aligned` reads the manifest's aligned utterances with the segment table;
:func:`fingerprint` is everything that changes a store's values (the encoder's own entries,
:meth:`mger.features.registry.Encoder.fingerprint_entries`, the levels, the content hashes of
the segment table, the utterances, their transcripts and every wav); :func:`store_attrs` the
attributes a merged store carries.  :func:`check_store_inputs` refuses, for training and the
report, a store built from other inputs than the current files."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from mger import __version__
from mger.alignment.table import SegmentTable
from mger.core.config import FeaturesConfig
from mger.core.manifest import Utterance, read_manifest, repeated_ids
from mger.core.ragged_h5 import TEXT_LEVELS
from mger.features.cache import CacheError, file_sha256, fingerprint_sha256, ids_sha256, read_fingerprint
from mger.features.registry import Encoder, SpeechEncoding


@dataclass(frozen=True)
class AlignedInputs:
    """What a store is computed from: the aligned utterances (manifest order), their segment
    table and its file's sha256; for an alignment-free store (``table`` None) every manifest
    utterance and no table."""

    utts: list[Utterance]
    table: SegmentTable | None
    segments_sha256: str


def load_aligned(manifest: str | Path, segments: str | Path | None) -> tuple[AlignedInputs, list[str]]:
    """Manifest utterances that have an alignment (and the ids of those that do not); with
    ``segments`` None, every manifest utterance (an alignment-free store's inputs)."""
    utts = read_manifest(manifest)
    _refuse_repeated_ids(manifest, utts)
    if segments is None:
        return AlignedInputs(utts, None, ""), []
    table = SegmentTable.read(segments)
    aligned = set(table.utt_ids)
    kept = [u for u in utts if u.utt_id in aligned]
    return AlignedInputs(kept, table, file_sha256(segments)), [u.utt_id for u in utts if u.utt_id not in aligned]


def _refuse_repeated_ids(manifest: str | Path, utts: Sequence[Utterance]) -> None:
    twice = repeated_ids(utts)
    if twice:
        raise CacheError(
            f"{manifest}: utterance id {twice[0]} appears more than once; one id would get "
            "two utterances' features: fix the manifest or rerun `mger prepare`"
        )


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
        inputs, _ = load_aligned(manifest, segments)
        _INPUT_SUMS[key] = {
            "segments_sha256": inputs.segments_sha256,
            "utt_ids_sha256": ids_sha256([u.utt_id for u in inputs.utts]),
            "manifest_sha256": manifest_sha256(inputs.utts),
        }
    return _INPUT_SUMS[key]


def check_store_inputs(store: str | Path, manifest: str | Path, segments: str | Path | None) -> None:
    """Refuse (:class:`CacheError`, one line naming the store and the fix) a store built from
    another segment table, other utterances or other transcripts than ``manifest`` and
    ``segments`` hold now: `mger extract` would rebuild it.  An alignment-free store is checked
    against the manifest's ids alone; ``segments`` None checks nothing else."""
    fp = read_fingerprint(store) or {}
    if fp.get("alignment_free"):
        _check_alignment_free_inputs(store, fp, manifest)
        return
    if segments is None:
        return
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


def _check_alignment_free_inputs(store: str | Path, fp: dict, manifest: str | Path) -> None:
    """An alignment-free store (``mger extract --audio``) holds every utterance of the manifest:
    refused when the manifest's ids have changed since (its transcripts and the alignment do not
    matter to it; the ASR manifest has the prepared one's ids)."""
    if fp.get("utt_ids_sha256") != ids_sha256([u.utt_id for u in read_manifest(manifest)]):
        raise CacheError(
            f"{store}: stale: built from other utterances than {manifest} holds now; "
            "run `mger extract --audio` (or `dvc repro`) first"
        )


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


def fingerprint(
    kind: str, encoder: Encoder | SpeechEncoding, cfg: FeaturesConfig, inputs: AlignedInputs, fold: dict | None = None
) -> dict:
    """Everything that changes the stored values; a store is reused only if this matches: the
    inputs' hashes, the store's levels (and, for speech, pooling, frame stride and the audio's
    hash) and the encoder's own entries (:meth:`~mger.features.registry.Encoder.fingerprint_entries`).

    ``fold``: for fine-tuned encoders, the fold, its fine-tuning sessions and record hash.  An
    alignment-free store (``inputs.table`` None) records neither the segment table, nor the
    transcripts, nor the pooling: only the audio, the utterances and the encoder."""
    if inputs.table is None:
        return _alignment_free_fingerprint(kind, encoder, cfg, inputs)
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
        return common | {"levels": list(TEXT_LEVELS)} | encoder.fingerprint_entries()
    speech = common | {
        "pooling": cfg.speech.pooling,
        "levels": list(cfg.speech.levels),
        "frame_stride": encoder.frame_stride_s,
        "audio_sha256": audio_sha256(inputs.utts),
    }
    return speech | encoder.fingerprint_entries()


def _alignment_free_fingerprint(kind: str, encoder: SpeechEncoding, cfg: FeaturesConfig, inputs: AlignedInputs) -> dict:
    """The fingerprint of a store of the levels that need no alignment (``mger extract --audio``)."""
    return {
        "kind": kind,
        "alignment_free": True,
        "model": encoder.name,
        "revision": encoder.revision,
        "weights_sha256": encoder.weights_sha256,
        "utt_ids_sha256": ids_sha256([u.utt_id for u in inputs.utts]),
        "levels": list(cfg.speech.levels),
        "audio_sha256": audio_sha256(inputs.utts),
        "format": 2,
    } | encoder.fingerprint_entries()


def store_attrs(kind: str, fp: dict, encoder: Encoder) -> dict:
    """The attributes of a merged store: its fingerprint, the fields read without parsing it, the encoder's dim."""
    return {
        "fingerprint": json.dumps(fp, sort_keys=True),
        "fingerprint_sha256": fingerprint_sha256(fp),
        "model": fp["model"],
        "revision": fp["revision"] or "",
        "weights_sha256": fp["weights_sha256"],
        "layer": json.dumps(fp.get("layer")),
        "frame_stride": fp.get("frame_stride", 0.0),
        "pooling": fp.get("pooling", "mean-of-subtokens" if kind == "text" else ""),
        "segments_sha256": fp.get("segments_sha256", ""),
        "levels": json.dumps(fp["levels"]),
        "kind": kind,
        "dim": encoder.dim,
        "mger_version": __version__,
        "fold": fp.get("fold", -1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
