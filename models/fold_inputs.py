"""What an experiment reads: the utterances of its speech store, and each fold's stores — the
frozen ones, or fold k's fine-tuned ones (:func:`fold_store_file`; a speech store's alignment-free
levels from its own file, :func:`mger.features.store_paths.store_role`) — checked against the
current inputs, params and the fold (:func:`check_stores`,
:class:`mger.features.cache.LeakageError`), their rows loaded unpadded (:func:`load_store_rows`),
with a one-line error naming the store for a missing level or a non-finite row."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from mger.core.config import ExperimentSpec, FeaturesConfig, FinetuneConfig
from mger.core.manifest import Utterance, read_manifest
from mger.core.ragged_h5 import AUDIO_LEVELS
from mger.core.reporting import StageError
from mger.core.transcripts import TEXT_SOURCES, manifest_of_store, source_text_store
from mger.features.cache import FeatureStore, Ragged, check_level_checksum
from mger.features.encoders import resolved_layer
from mger.features.fingerprint import check_store_inputs
from mger.features.store_paths import AUDIO, stage_config, store_config, store_file as extracted_store, store_role


def fold_store_file(
    kind: str, spec: ExperimentSpec, features: FeaturesConfig, finetune: FinetuneConfig, fold: int
) -> Path:
    """Where fold ``fold`` of ``spec`` reads its ``kind`` features (a role of
    :func:`~mger.features.store_paths.store_role`): the frozen store, or fold ``fold``'s own
    fine-tuned store of the variant it names (text stays frozen unless that variant's ``text``);
    an explicit ``text_source`` (gold, asr) reads that transcript's frozen text store; ``audio``, the
    alignment-free file of the speech store."""
    if kind == AUDIO:
        return _alignment_free_file(spec, features)
    if kind == "text" and spec.text_source is not None:
        return source_text_store(features.out, spec.text_source)
    if spec.features == "finetuned":
        finetune = finetune.variant(spec.finetune)
    if spec.features == "frozen" or (kind == "text" and not finetune.text):
        return extracted_store(features.out, spec.speech_store if kind == "speech" else kind)
    path = extracted_store(finetune.features_dir(fold), kind)
    if not path.is_file():
        raise StageError(
            f"{path}: no fine-tuned {kind} features for fold {fold}; run `mger finetune --fold {fold}` "
            f"and `mger extract --fold {fold}` (or `dvc repro`)"
        )
    return path


def _alignment_free_file(spec: ExperimentSpec, features: FeaturesConfig) -> Path:
    """The file of the spec's frozen speech store holding its alignment-free levels (``mger extract --audio``)."""
    path = extracted_store(features.audio_out, spec.speech_store)
    if spec.features == "finetuned":
        raise StageError(
            f"{', '.join(AUDIO_LEVELS)}: fine-tuned stores have no alignment-free level; read it from a frozen store"
        )
    if not path.is_file():
        listed = stage_config(features, spec.speech_store, audio=True) is not None
        where = "features.speech" if spec.speech_store == "speech" else f"features.extra_speech.{spec.speech_store}"
        fix = "" if listed else f"list the level in {where}.levels and "
        raise StageError(
            f"{path}: no store of the alignment-free levels ({', '.join(AUDIO_LEVELS)}) of {spec.speech_store}; "
            f"{fix}run `mger extract --audio` (or `dvc repro`)"
        )
    return path


def fold_store_files(
    spec: ExperimentSpec, names: Sequence[str], features: FeaturesConfig, finetune: FinetuneConfig, fold: int
) -> dict[str, Path]:
    """The files (role → path, :func:`fold_store_file`) fold ``fold`` of ``spec`` reads for its inputs ``names``."""
    return {role: fold_store_file(role, spec, features, finetune, fold) for role in sorted(map(store_role, names))}


def check_stores(
    paths: dict[str, Path],
    spec: ExperimentSpec,
    features: FeaturesConfig,
    manifests: tuple[str | Path, str | Path],
    segments: str | Path | None,
) -> None:
    """Refuse in one line each file (role → path, :func:`fold_store_files`) of ``spec`` not built
    from the current manifest and segment table (``segments`` given; ``manifests``: the text
    manifest and the ASR one, for the ASR text store) or not with params' settings."""
    frozen = {
        extracted_store(features.out, spec.speech_store),
        extracted_store(features.audio_out, spec.speech_store),
        extracted_store(features.out, "text"),
        *(source_text_store(features.out, source) for source in TEXT_SOURCES),
    }
    for role, path in paths.items():
        if segments is not None or role == AUDIO:  # nothing built before the current alignment or manifest
            check_store_inputs(path, manifest_of_store(path, *manifests), segments)
        kind = "speech" if role == AUDIO else role
        store = spec.speech_store if kind == "speech" else kind
        check_store_settings(path, kind, store_config(features, store), finetuned=path not in frozen)


def load_store_rows(names: Sequence[str], paths: dict[str, Path], ids: Sequence[str], fold: int) -> dict:
    """Each input's rows (``kind:level``) as stored, unpadded, from the file of its role
    (``paths``, :func:`~mger.features.store_paths.store_role`); each store is checked against
    ``fold`` (:class:`mger.features.cache.LeakageError`), and a missing level or a non-finite row is
    refused in one line naming the store."""
    stores = {role: FeatureStore(paths[role], fold=fold) for role in set(map(store_role, names))}
    out = {}
    for name in names:
        level = name.split(":")[1]
        store = stores[store_role(name)]
        if level not in store.levels:
            have = ", ".join(store.levels)
            raise StageError(f"{store.path}: no level {level!r} (it has {have}); {_level_fix(store, level)}")
        rows = store.ragged(level, ids)
        bad = _non_finite_item(rows)
        if bad is not None:
            raise StageError(
                f"{store.path}: level {level!r} of {ids[bad]} holds NaN or inf; run `mger cache verify "
                f"{store.path}` and re-extract"
            )
        check_level_checksum(store.path, level)
        out[name] = rows
    return out


def _level_fix(store: FeatureStore, level: str) -> str:
    """What to do about a level the store lacks: re-extract if the store's settings list it
    (the file lost it), else list it in the settings (or drop it from the experiment)."""
    listed = store.fingerprint.get("levels", []) if "fingerprint" in store.attrs else []
    if level in listed:
        return "the store's settings list it but the file lacks it (damaged or edited): `mger extract` rebuilds it"
    return (
        "add it to the levels of this store's settings (features.speech.levels or features.extra_speech) "
        "and run `mger extract`, or drop it from the experiment"
    )


def _non_finite_item(rows: Ragged) -> int | None:
    """The first item with a NaN or inf row, or None."""
    finite = torch.isfinite(rows.data.reshape(len(rows.data), -1)).all(1)
    if bool(finite.all()):
        return None
    bad = (~finite).nonzero()[:, 0]
    inside = (rows.starts[:, None] <= bad[None]) & (bad[None] < (rows.starts + rows.lengths)[:, None])
    items = inside.any(1).nonzero()[:, 0]
    return int(items[0]) if len(items) else None


def check_store_settings(path: Path, kind: str, features: FeaturesConfig, finetuned: bool) -> None:
    """Refuse a store whose fingerprint disagrees with params (pooling, layer, model, markers);
    ``features``: the settings of that store (:func:`mger.features.store_paths.store_config`)."""
    fp = FeatureStore(path).fingerprint
    section = features.speech if kind == "speech" else features.text
    layer = resolved_layer(section.layer, fp["n_layers"]) if "n_layers" in fp else section.layer
    wanted = {"layer": layer} | (
        {"pooling": features.speech.pooling} if kind == "speech" else {"markers": features.text.markers}
    )
    if not finetuned:
        wanted["model"] = section.model
    for key, value in wanted.items():
        if key in fp and fp[key] != value:
            raise StageError(
                f"{path}: built with {key} {fp[key]!r} but params say features.{kind}.{key} = "
                f"{value!r}; run `mger extract` (or `dvc repro`)"
            )


def store_provenance(paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    """kind → {path, fingerprint_sha256} of the stores a fold read."""
    return {
        kind: {"path": str(path), "fingerprint_sha256": str(FeatureStore(path).attrs["fingerprint_sha256"])}
        for kind, path in sorted(paths.items())
    }


def experiment_utterances(
    manifest: str | Path, features: FeaturesConfig, segments: str | Path | None, speech_store: str = "speech"
) -> list[Utterance]:
    """The manifest's utterances the experiment runs on: the aligned ones (``segments`` given)
    of the frozen speech store it reads (its aligned file, else its alignment-free one), which
    must hold every aligned utterance: a store missing some is refused."""
    aligned_file = stage_config(features, speech_store, audio=False) is not None  # else alignment-free levels only
    store = extracted_store(features.out if aligned_file else features.audio_out, speech_store)
    if not store.is_file():
        raise StageError(f"{store}: no speech store; run `mger extract` (or `dvc repro`)")
    store_ids = set(FeatureStore(store).utt_ids)
    utts = read_manifest(manifest)
    if segments is not None:
        from mger.alignment.table import SegmentTable

        aligned = set(SegmentTable.read(segments).utt_ids)
        missing = [u.utt_id for u in utts if u.utt_id in aligned and u.utt_id not in store_ids]
        if missing:
            raise StageError(
                f"{store}: {len(missing)} aligned manifest utterance(s) have no features (e.g. "
                f"{', '.join(missing[:3])}); run `mger extract` (or `dvc repro`)"
            )
        store_ids &= aligned  # an alignment-free store holds the utterances alignment dropped too
    kept = [u for u in utts if u.utt_id in store_ids]
    if not kept:
        raise StageError(f"no manifest utterance has cached features in {features.out}")
    return kept
