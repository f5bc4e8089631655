"""Leave-one-session-out experiments on the cached features (``mger train --experiment NAME``).

Fold k tests session k; its validation speakers come from :mod:`mger.core.splits` (the fold and
``split.seed``, shared with fine-tuning), so train, validation and test are session- and
speaker-disjoint and the test session never chooses anything: epochs, late-fusion weights and
(in the report) the best system are chosen on validation.  Training seeds change
initialisation and data order only.  All inputs are loaded once for the whole corpus and
indexed per fold.

Outputs: ``reports/metrics/<experiment>.json`` (test statistics of :mod:`mger.models.stats`,
validation WA/UA/F1, per-fold validation speakers, improvised/scripted breakdown,
provenance), ``reports/predictions/<experiment>.csv`` (every test utterance, fold and seed,
with class probabilities) and the per-epoch history ``reports/epochs/<experiment>.csv``.
Each is written whole (atomic rename); the metrics JSON last, with the sha256 of the
predictions and epochs files just written (``predictions_sha256``, ``epochs_sha256``), so it
commits the run: the report refuses predictions that are not the ones its metrics name (a
train stopped between its writes).  One run of an experiment at a time: the run holds
:func:`mger.features.cache.exclusive_lock` on its metrics file (``<metrics>.json.lock``), and
a second run of the same experiment stops at once in one line naming the holder's pid.

``features: finetuned`` experiments read fold k's speech features (and text, with
``finetune.text``) from fold k's own store (:func:`store_path`), opened with ``fold=k`` so
that a store of encoders fine-tuned for another fold raises :class:`mger.features.cache.LeakageError`.

``late`` combines the class probabilities of unimodal models (one audio model per chosen
granularity, and the text model): their mean, or weights fitted on the validation split.
Fitted weights are scored on validation out of sample: weights fitted on one half of the
validation utterances (:func:`mger.core.splits.validation_halves`) score the other half and vice
versa (``validation_scoring`` in the metrics); the test predictions use the weights fitted on all
of validation.
``combined`` (Zhao et al.'s full system, our reading) adds the co-attention model to that ensemble.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from mger import __version__
from mger.core.config import ExperimentSpec, FeaturesConfig, FinetuneConfig, SplitConfig, TrainConfig
from mger.core.manifest import Utterance, read_manifest
from mger.core.reporting import StageError, write_csv_atomic, write_json
from mger.core.splits import FoldSplit, SplitError, all_folds, validation_halves
from mger.core.transcripts import asr_text_store, manifest_of_store, read_source  # asr (#33)
from mger.features.cache import FeatureStore, Ragged, check_level_checksum, exclusive_lock, file_sha256
from mger.features.encoders import resolve_device, resolved_layer
from mger.features.extract import check_store_inputs, store_config, store_path as extracted_store
from mger.models.loop import NonFiniteLoss
from mger.models.metrics import all_metrics
from mger.models.modules import LayerWeighted, ModelConfig, input_names
from mger.models.predictions import Predictions, write_predictions
from mger.models.probe import LinearProbe, probe_inputs
from mger.models.stats import METHOD, breakdown, clusters_of, sd, summarize
from mger.models.train import TensorSet, combine_probs, cross_fitted_proba, fit, fit_weights, predict_proba, standardize


def check_text_source(name: str, spec: ExperimentSpec, asr_manifest: str | Path | None) -> None:
    """asr (#33): ``text_source: asr`` reads the ASR transcripts' token rows only (their words are
    not the alignment's), from the frozen text store, given the ASR manifest."""
    if spec.text_source != "asr":
        return
    if spec.text_level != "token" or spec.features != "frozen":
        raise StageError(f"train.experiments.{name}: text_source asr needs text_level token and frozen features")
    if asr_manifest is None:
        raise StageError(f"train.experiments.{name}: text_source asr needs the ASR manifest (transcribe.manifest)")


def members(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """The single models an experiment trains (one for most, several for ``late``/``combined``)."""
    if spec.model not in ("late", "combined"):
        return [spec]
    audio = [
        ExperimentSpec(model="audio", speech_levels=[lv], speech_store=spec.speech_store) for lv in spec.speech_levels
    ]
    text = [ExperimentSpec(model="text", text_level=spec.text_level)]
    co = [
        ExperimentSpec(
            model="coattention",
            speech_levels=list(spec.speech_levels),
            text_level=spec.text_level,
            speech_store=spec.speech_store,
        )
    ]
    return (co if spec.model == "combined" else []) + audio + text


# Rough training cost of one step per input level (word level = 1), measured on the demo.
_LEVEL_COST = {"frame": 6.0, "phone": 1.5, "utterance": 0.3, "functionals": 0.3}


def expected_cost(spec: ExperimentSpec, train: TrainConfig) -> float:
    """Relative training time of ``spec``: ``mger train`` starts the longest experiments first,
    so that experiments run at once (``train.n_jobs``) finish together; results do not depend
    on the order."""

    def member_cost(part: ExperimentSpec) -> float:
        if part.model == "probe":
            return 0.2
        speech = [_LEVEL_COST.get(level, 1.0) for level in part.speech_levels]
        text = 1.0 if part.model in ("text", "coattention", "mha_aux") else 0.0
        if part.model == "coattention":  # one block per speech level against the tokens
            return sum(s + text for s in speech)
        if part.model == "mha_aux":
            return (sum(speech) + text) * (1 + (part.layers or train.layers))
        return sum(speech) + text

    return sum(member_cost(part) for part in members(spec))


def model_config(
    spec: ExperimentSpec,
    train: TrainConfig,
    dims: dict[str, int],
    n_classes: int,
    stacked: dict[str, int] | None = None,
) -> ModelConfig:
    """``stacked``: input name → layers of an input stored with a layer axis (its rows (R, L, D))."""
    return ModelConfig(
        kind=spec.model,
        speech_levels=list(spec.speech_levels),
        text_level=spec.text_level,
        dims=dims,
        n_classes=n_classes,
        hidden=train.hidden,
        heads=train.heads,
        layers=spec.layers or train.layers,
        dropout=train.dropout,
        aux_matching=spec.aux_matching,
        aux_unimodal=spec.aux_unimodal,
        aux_unimodal_on=spec.aux_unimodal_on,
        aux_matching_negatives=spec.aux_matching_negatives,
        probe=spec.probe,
        stacked_layers=dict(stacked or {}),
        layer_weights=spec.layer_weights or train.layer_weights,
    )


def store_path(kind: str, spec: ExperimentSpec, features: FeaturesConfig, finetune: FinetuneConfig, fold: int) -> Path:
    """Where fold ``fold`` of ``spec`` reads its ``kind`` features: the frozen store, or fold
    ``fold``'s own fine-tuned store of the variant it names (text stays frozen unless that
    variant's ``text``)."""
    if kind == "text" and spec.text_source == "asr":  # asr (#33): the ASR transcripts' frozen text store
        return asr_text_store(features.out)
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


def load_inputs(names: Sequence[str], paths: dict[str, Path], ids: Sequence[str], fold: int) -> dict:
    """Each input's rows (``kind:level``) as stored, unpadded; each store is checked against
    ``fold`` (:class:`mger.features.cache.LeakageError`), and a missing level or a non-finite row is
    refused in one line naming the store."""
    stores = {kind: FeatureStore(paths[kind], fold=fold) for kind in {n.split(":")[0] for n in names}}
    out = {}
    for name in names:
        kind, level = name.split(":")
        store = stores[kind]
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
    ``features``: the settings of that store (:func:`mger.features.extract.store_config`)."""
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


def fit_member(
    cfg: ModelConfig,
    train_set: TensorSet,
    val_set: TensorSet,
    test_set: TensorSet,
    train_cfg: TrainConfig,
    seed: int,
    scaled: Sequence[TensorSet] | None = None,
    record: dict | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], list[dict]]:
    """Train one model (early-stopped on validation) or fit the linear probe (C chosen on
    validation); returns its (validation, test) class probabilities and its history rows.

    ``scaled``: the three sets already standardised (:func:`fold_scaled`), so a fold's rows are
    scaled once for all members of an experiment (late, combined); computed here when not given."""
    if cfg.kind == "probe":
        names = input_names(cfg)
        probe = LinearProbe(cfg.n_classes).fit(
            probe_inputs(train_set.inputs, names),
            train_set.labels.cpu().numpy(),
            probe_inputs(val_set.inputs, names),
            val_set.labels.cpu().numpy(),
        )
        history = [
            {"epoch": i, "train_loss": float("nan"), "val_ua": ua, "val_loss": float("nan")}  # i-th C
            for i, ua in enumerate(probe.val_ua_.values(), 1)
        ]
        return (
            probe.predict_proba(probe_inputs(val_set.inputs, names)),
            probe.predict_proba(probe_inputs(test_set.inputs, names)),
        ), history
    if train_cfg.standardize:
        train_set, val_set, test_set = scaled or fold_scaled(train_set, val_set, test_set)
    model, history = fit(cfg, train_set, val_set, train_cfg, seed)
    if record is not None and isinstance(model, LayerWeighted):  # the best epoch's layer weights
        record["layer_weights"] = [round(float(w), 6) for w in model.weights().detach().cpu()]
    return (predict_proba(model, val_set), predict_proba(model, test_set)), history


def fold_scaled(train_set: TensorSet, val_set: TensorSet, test_set: TensorSet) -> list[TensorSet]:
    """The three sets standardised by the training rows' statistics (:func:`models.train.standardize`)."""
    return standardize([train_set, val_set, test_set], train_set)


def store_provenance(paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    """kind → {path, fingerprint_sha256} of the stores a fold read."""
    return {
        kind: {"path": str(path), "fingerprint_sha256": str(FeatureStore(path).attrs["fingerprint_sha256"])}
        for kind, path in sorted(paths.items())
    }


def experiment_utterances(
    manifest: str | Path, features: FeaturesConfig, segments: str | Path | None, speech_store: str = "speech"
) -> list[Utterance]:
    """The manifest's utterances the experiment runs on: those of the frozen speech store it
    reads, which must hold every aligned utterance (``segments`` given): a store missing some
    is refused."""
    store = extracted_store(features.out, speech_store)
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
    kept = [u for u in utts if u.utt_id in store_ids]
    if not kept:
        raise StageError(f"no manifest utterance has cached features in {features.out}")
    return kept


def run_experiment(
    name: str,
    spec: ExperimentSpec,
    train_cfg: TrainConfig,
    features: FeaturesConfig,
    manifest: str | Path,
    finetune: FinetuneConfig | None = None,
    split: SplitConfig | None = None,
    segments: str | Path | None = None,
    asr_manifest: str | Path | None = None,
) -> dict:
    """Train and evaluate ``spec`` on every fold and seed; writes metrics, predictions and history.

    CPU work runs on one torch thread whatever the machine or the number of experiments run at
    once (``train.n_jobs``), so results do not depend on either; these small models gained
    nothing from a second thread here (``benchmarks/bench_train.py``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with exclusive_lock(metrics_path(train_cfg, name)):  # one run of an experiment at a time
            return _run_experiment(name, spec, train_cfg, features, manifest, finetune, split, segments, asr_manifest)
    finally:
        torch.set_num_threads(threads)


def _run_experiment(
    name: str,
    spec: ExperimentSpec,
    train_cfg: TrainConfig,
    features: FeaturesConfig,
    manifest: str | Path,
    finetune: FinetuneConfig | None,
    split: SplitConfig | None,
    segments: str | Path | None,
    asr_manifest: str | Path | None = None,
) -> dict:
    t0 = time.perf_counter()
    check_text_source(name, spec, asr_manifest)  # asr (#33)
    finetune, split = finetune or FinetuneConfig(), split or SplitConfig()
    utts = experiment_utterances(manifest, features, segments, spec.speech_store)
    classes = sorted({u.label for u in utts})
    labels = np.array([classes.index(u.label) for u in utts])
    parts = members(spec)
    names = sorted({n for part in parts for n in input_names(model_config(part, train_cfg, {}, len(classes)))})
    ids = [u.utt_id for u in utts]
    loaded: dict[tuple, TensorSet] = {}
    provenance: dict[str, dict] = {}
    device = resolve_device(train_cfg.device, "train.device")  # the fold's rows go there once

    def fold_data(fold: int) -> TensorSet:
        """Loaded once per distinct set of stores: once for frozen features, per fold for fine-tuned."""
        paths = {
            kind: store_path(kind, spec, features, finetune, fold) for kind in sorted({n.split(":")[0] for n in names})
        }
        provenance[str(fold)] = store_provenance(paths)
        key = tuple(sorted(paths.items()))
        if key not in loaded:
            for kind, path in paths.items():
                if segments is not None:  # nothing built before the current alignment or manifest
                    check_store_inputs(path, manifest_of_store(path, manifest, asr_manifest or ""), segments)
                store = spec.speech_store if kind == "speech" else kind
                check_store_settings(
                    path,
                    kind,
                    store_config(features, store),
                    finetuned=path not in (extracted_store(features.out, store), asr_text_store(features.out)),
                )
            loaded.clear()
            loaded[key] = TensorSet(load_inputs(names, paths, ids, fold), torch.as_tensor(labels)).to(device)
        return loaded[key]

    splits = all_folds(utts, split.seed)
    for one in splits.values():
        if one.warning:
            print(f"warning: train {name}: {one.warning}", file=sys.stderr)
    cross_fit = spec.late_weights == "fitted" and len(parts) > 1
    scoring: set[str] = set()
    val_scores: dict[tuple[int, int], dict] = {}
    history_rows: list[dict] = []
    predictions: list[Predictions] = []
    jobs = [(seed, fold) for seed in train_cfg.seeds for fold in splits]
    probes: dict[tuple[int, int], tuple] = {}
    layer_rows: list[dict] = []  # learned layer weights per fold, seed and member (layer_weights: learned)
    scaled: dict[int, list[TensorSet]] = {}  # the current fold's standardised sets, shared by its members
    for seed, fold in tqdm(jobs, desc=f"train {name}", unit="fold", file=sys.stderr):
        tr, va, te = splits[fold].train, splits[fold].val, splits[fold].test
        data = fold_data(fold)
        dims = {n: int(b.data.shape[-1]) for n, b in data.inputs.items()}
        stacked = {n: int(b.data.shape[1]) for n, b in data.inputs.items() if b.data.dim() == 3}
        train_set, val_set, test_set = (data.subset(np.array(idx)) for idx in (tr, va, te))
        val_probs, test_probs = [], []
        for k, part in enumerate(parts):
            cfg = model_config(part, train_cfg, dims, len(classes), stacked)
            _check_layer_weights(name, cfg, spec, features)
            if cfg.kind == "probe" and (fold, k) in probes:  # deterministic: every seed gives the same probe
                probs, history = probes[(fold, k)]
            else:
                if cfg.kind != "probe" and train_cfg.standardize and fold not in scaled:
                    scaled = {fold: fold_scaled(train_set, val_set, test_set)}  # one fold's copy held at a time
                record: dict = {}
                try:
                    probs, history = fit_member(
                        cfg, train_set, val_set, test_set, train_cfg, seed, scaled.get(fold), record
                    )
                except NonFiniteLoss as err:  # one line naming the run; no metrics or predictions written
                    member = f" ({member_label(part)})" if len(parts) > 1 else ""
                    raise StageError(f"experiment {name}{member}: fold {fold}, seed {seed}, {err}") from None
                if "layer_weights" in record:
                    layer_rows.append(
                        {"fold": fold, "seed": seed, "member": member_label(part), "weights": record["layer_weights"]}
                    )
                if cfg.kind == "probe":
                    probes[(fold, k)] = probs, history
            history_rows += [{"fold": fold, "seed": seed, "member": member_label(part), **h} for h in history]
            val_probs.append(probs[0])
            test_probs.append(probs[1])
        weights = (
            fit_weights(val_probs, labels[va], len(classes))
            if spec.late_weights == "fitted"
            else np.full(len(parts), 1 / len(parts))
        )
        val_combined = combine_probs(weights, val_probs)
        if cross_fit:  # the weights were fitted on validation: score it out of sample where it can be halved
            crossed = _cross_fitted(name, splits[fold], utts, val_probs, labels[va], len(classes), scoring)
            val_combined = val_combined if crossed is None else crossed
        val_scores[(fold, seed)] = all_metrics(labels[va], val_combined.argmax(1), len(classes))
        probs = combine_probs(weights, test_probs)
        predictions.append(
            Predictions(
                classes,
                np.array([ids[i] for i in te]),
                np.full(len(te), fold),
                np.full(len(te), seed),
                labels[te],
                probs.argmax(1),
                probs,
            )
        )
    pred = Predictions.concat(classes, predictions)
    improvised = {u.utt_id: "improvised" if u.improvised else "scripted" for u in utts}
    groups, unit = clusters_of(utts)
    stats = summarize(pred, groups=groups, unit=unit)
    result = {
        "experiment": name,
        "model": spec.model,
        "features": spec.features,
        "speech_store": spec.speech_store,
        "speech_levels": list(spec.speech_levels),
        "text_level": spec.text_level,
        "text_source": "asr" if spec.text_source == "asr" or read_source(manifest) else "gold",  # asr (#33)
        **({"text_store": "asr"} if spec.text_source == "asr" else {}),  # asr (#33): the ASR text store
        "aux_matching": spec.aux_matching,
        "aux_unimodal": spec.aux_unimodal,
        "aux_unimodal_on": spec.aux_unimodal_on,
        "aux_matching_negatives": spec.aux_matching_negatives,
        "layers": spec.layers or train_cfg.layers,
        "probe": spec.probe if spec.model == "probe" else None,
        **(
            {"finetune_variant": spec.finetune}
            if spec.features == "finetuned" and finetune.variant(spec.finetune).tag
            else {}
        ),
        "classes": classes,
        "seeds": list(train_cfg.seeds),
        "n_utterances": len(utts),
        **{k: stats[k] for k in ("wa", "ua", "f1", "pooled", "per_class_recall", "clustered_by")},
        "validation_scoring": (
            f"cross-fitted ({'; '.join(sorted(scoring))}): late-fusion weights fitted on one half of the "
            "validation utterances score the other; test uses weights fitted on all of them"
            if cross_fit
            else "direct (no weights fitted on validation; epochs and the probe's C are chosen on it, as in every row)"
        ),
        "validation": {
            m: _summary(np.array([[val_scores[(f, s)][m] for f in splits] for s in train_cfg.seeds]))
            for m in ("wa", "ua", "f1")
        },
        "by_improvised": breakdown(pred, improvised.__getitem__),
        "folds": {
            str(f): _fold_entry(stats["folds"][str(f)], {s: val_scores[(f, s)] for s in train_cfg.seeds}, splits[f])
            for f in splits
        },
        "confusion": stats["confusion"],
        "statistics": METHOD,
        "predictions": str(prediction_path(train_cfg, name)),
        "provenance": {
            "mger_version": __version__,
            "split_seed": split.seed,
            "stores": provenance,
            "spec": {
                k: v
                for k, v in dataclasses.asdict(spec).items()
                if not (k in ("finetune", "layer_weights") and v is None)
            },
            "train": train_params(train_cfg),
        },
    }
    epochs = Path(train_cfg.epochs_dir) / f"{name}.csv"
    if layer_rows:
        result["layer_weights"] = layer_weight_summary(
            spec.layer_weights or train_cfg.layer_weights, layer_rows, provenance
        )
    write_predictions(prediction_path(train_cfg, name), pred)
    write_csv_atomic(epochs, HISTORY_FIELDS, history_rows)
    result["predictions_sha256"] = file_sha256(prediction_path(train_cfg, name))
    result["epochs_sha256"] = file_sha256(epochs)
    write_json(metrics_path(train_cfg, name), result)  # last: the commit of the run's outputs
    print(
        f"train {name}: test WA {result['wa']['mean']:.3f} ± {result['wa']['std']:.3f}, "
        f"UA {result['ua']['mean']:.3f} ± {result['ua']['std']:.3f}; validation UA "
        f"{result['validation']['ua']['mean']:.3f}; over {len(splits)} folds x {len(train_cfg.seeds)} seeds in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    return result


def _check_layer_weights(name: str, cfg: ModelConfig, spec: ExperimentSpec, features: FeaturesConfig) -> None:
    """A classifier on a store of several layers needs ``layer_weights`` mean or learned: one line naming it."""
    stacked = {n: k for n, k in cfg.stacked_layers.items() if n in input_names(cfg)}
    if stacked and cfg.kind != "probe" and cfg.layer_weights == "off":
        layer = store_config(features, spec.speech_store).speech.layer
        raise StageError(
            f"train {name}: its speech store {spec.speech_store!r} holds {next(iter(stacked.values()))} layers "
            f"(features.speech.layer {layer!r}); set train.layer_weights (or the experiment's layer_weights) "
            "to learned or mean, or extract one layer"
        )


def layer_weight_summary(mode: str, rows: list[dict], provenance: dict) -> dict:
    """The metrics JSON's ``layer_weights``: the hidden-state index of each stored layer, every
    fold's, seed's and member's softmax weights (the best epoch's), and their mean."""
    first = next(iter(provenance.values()), {}).get("speech", {})
    layers = None
    if first.get("path"):
        layers = FeatureStore(first["path"]).fingerprint.get("layer")
    weights = np.array([r["weights"] for r in rows], float)
    return {
        "mode": mode,
        "layers": layers if isinstance(layers, list) else list(range(weights.shape[1])),
        "per_fold": rows,
        "mean": [round(float(w), 6) for w in weights.mean(0)],
    }


def _cross_fitted(
    name: str,
    split: FoldSplit,
    utts: Sequence[Utterance],
    val_probs: list[np.ndarray],
    val_labels: np.ndarray,
    n_classes: int,
    scoring: set[str],
) -> np.ndarray | None:
    """Fold ``split``'s cross-fitted validation probabilities (N, C) (:func:`cross_fitted_proba`),
    or None for a validation set too small to halve (scored in sample then: one warning line per
    fold); ``scoring`` collects how each fold was scored, for the metrics."""
    try:
        first, second, how = validation_halves(utts, split)
    except SplitError as err:
        note = f"fold {split.fold} in sample: too few validation utterances to halve"
        if note not in scoring:
            print(f"warning: train {name}: {err}; its validation is scored in sample", file=sys.stderr)
        scoring.add(note)
        return None
    scoring.add(how)
    return cross_fitted_proba(val_probs, val_labels, n_classes, (first, second))


def _fold_entry(test: dict, val: dict[int, dict], split: FoldSplit) -> dict:
    """A fold's test figures with its validation figures beside them, per seed and averaged, and
    how its validation set was chosen (:class:`mger.core.splits.FoldSplit`)."""
    entry = test | {f"val_{m}": float(np.mean([v[m] for v in val.values()])) for m in ("wa", "ua", "f1")}
    for seed, v in val.items():
        entry["seeds"][str(seed)] |= {f"val_{m}": float(v[m]) for m in ("wa", "ua", "f1")}
    return entry | {
        "val_speakers": split.val_speakers,
        "validation": split.validation,
        "speaker_disjoint": split.speaker_disjoint,
        "split_warning": split.warning,
    }


def _summary(grid: np.ndarray) -> dict:
    """(seeds, folds) → mean and SD (ddof=1) over folds of the per-fold mean over seeds."""
    per_fold = grid.mean(0)
    return {"mean": float(per_fold.mean()), "std": sd(per_fold)}


def member_label(part: ExperimentSpec) -> str:
    """``model:levels`` of one trained member in the epochs CSV: the text level for a text-only
    model (``text:token``), the speech levels otherwise (``audio:word``, ``mha_aux:word``)."""
    return f"text:{part.text_level}" if part.model == "text" else part.model + ":" + "+".join(part.speech_levels)


HISTORY_FIELDS = ("fold", "seed", "member", "epoch", "train_loss", "val_ua", "val_loss")


def metrics_path(train_cfg: TrainConfig, name: str) -> Path:
    return Path(train_cfg.metrics_dir) / f"{name}.json"


def prediction_path(train_cfg: TrainConfig, name: str) -> Path:
    return Path(train_cfg.predictions_dir) / f"{name}.csv"


def train_params(train_cfg: TrainConfig) -> dict:
    """The training settings that change a result (everything but output folders and experiment lists)."""
    skip = {"metrics_dir", "epochs_dir", "predictions_dir", "experiments", "finetuned_experiments", "n_jobs"}
    settings = {k: v for k, v in dataclasses.asdict(train_cfg).items() if k not in skip}
    if settings.get("layer_weights") == "off":  # the default: rows written before it existed read the same
        del settings["layer_weights"]
    return settings
