"""Cross-validated experiments on the cached features (``mger train --experiment NAME``).

The folds are ``split.protocol``'s (IEMOCAP: fold k tests session k); their validation speakers
come from :mod:`mger.core.splits` (the fold and ``split.seed``, shared with fine-tuning), so
validation is carved from training data and the test data never choose anything: epochs, late-fusion weights and
(in the report) the best system are chosen on validation.  Training seeds change
initialisation and data order only.  All inputs are loaded once for the whole corpus and
indexed per fold.

Outputs: ``reports/metrics/<experiment>.json`` (test statistics of :mod:`mger.models.stats`,
validation WA/UA/F1, per-fold validation speakers, improvised/scripted breakdown (IEMOCAP rows),
provenance), ``reports/predictions/<experiment>.csv`` (every test utterance, fold and seed,
with class probabilities) and the per-epoch history ``reports/epochs/<experiment>.csv``.
Each is written whole (atomic rename); the metrics JSON last, with the sha256 of the
predictions and epochs files just written (``predictions_sha256``, ``epochs_sha256``), so it
commits the run: the report refuses predictions that are not the ones its metrics name (a
train stopped between its writes).  One run of an experiment at a time: the run holds
:func:`mger.features.cache.exclusive_lock` on its metrics file (``<metrics>.json.lock``), and
a second run of the same experiment stops at once in one line naming the holder's pid.

``features: finetuned`` experiments read fold k's speech features (and text, with
``finetune.text``) from fold k's own store (:func:`mger.models.fold_inputs.fold_store_file`), opened with ``fold=k`` so
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from mger import __version__
from mger.core.config import AUX_FIELDS, ExperimentSpec, FeaturesConfig, FinetuneConfig, SplitConfig, TrainConfig
from mger.core.manifest import Utterance
from mger.core.reporting import StageError, write_csv_atomic, write_json
from mger.core.splits import FoldSplit, SplitError, all_folds, validation_halves
from mger.core.transcripts import read_source
from mger.features.cache import FeatureStore, exclusive_lock, file_sha256
from mger.features.encoders import resolve_device
from mger.features.store_paths import store_config
from mger.models.fold_inputs import (
    check_stores,
    experiment_utterances,
    fold_store_files,
    load_store_rows,
    store_provenance,
)
from mger.models.loop import NonFiniteLoss
from mger.models.metrics import all_metrics
from mger.models.modules import LayerWeighted, ModelConfig, input_names
from mger.models.predictions import Predictions, write_predictions
from mger.models.probe import LinearProbe, probe_inputs
from mger.models.registry import check_model_kinds, model_kind
from mger.models.stats import METHOD, by_improvised, clusters_of, sd, summarize
from mger.models.train import TensorSet, combine_probs, cross_fitted_proba, fit, fit_weights, predict_proba, standardize


def members(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """The single models an experiment trains (one for most, several for an ensemble kind such as
    ``late``/``combined``: its registration's ``members``)."""
    kind = model_kind(spec.model)
    return [spec] if kind.members is None else kind.members(spec)


# Rough training cost of one step per input level (word level = 1), measured on the demo.
_LEVEL_COST = {"frame": 6.0, "phone": 1.5, "utterance": 0.3, "functionals": 0.3}


def expected_cost(spec: ExperimentSpec, train: TrainConfig) -> float:
    """Relative training time of ``spec`` (the sum of its members' registered ``cost``): ``mger
    train`` starts the longest experiments first, so that experiments run at once
    (``train.n_jobs``) finish together; results do not depend on the order."""

    def member_cost(member: ExperimentSpec) -> float:
        speech = [_LEVEL_COST.get(level, 1.0) for level in member.speech_levels]
        return model_kind(member.model).cost(member, speech, member.layers or train.layers)

    return sum(member_cost(member) for member in members(spec))


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
        head=spec.head(train),
        dropout=train.dropout,
        probe=spec.probe,
        stacked_layers=dict(stacked or {}),
        layer_weights=spec.layer_weights or train.layer_weights,
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


def check_text_source(name: str, spec: ExperimentSpec, asr_manifest: str | Path | None) -> None:
    """An explicit ``text_source`` (gold, asr) reads that transcript's token rows only (its words
    need not be the alignment's), from its frozen text store; asr needs the ASR manifest."""
    if spec.text_source is None:
        return
    if spec.text_level != "token" or spec.features != "frozen":
        raise StageError(
            f"train.experiments.{name}: text_source {spec.text_source} needs text_level token and frozen features"
        )
    if spec.text_source == "asr" and asr_manifest is None:
        raise StageError(f"train.experiments.{name}: text_source asr needs the ASR manifest (transcribe.manifest)")


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
    ``asr_manifest``: the ASR transcripts' manifest, for ``text_source: asr`` (docs/transcripts.md).

    CPU work runs on one torch thread whatever the machine or the number of experiments run at
    once (``train.n_jobs``), so results do not depend on either; these small models gained
    nothing from a second thread here (``benchmarks/bench_train.py``)."""
    check_model_kinds({name: spec})  # an unknown kind: one line naming train.experiments.<name>.model
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
    check_text_source(name, spec, asr_manifest)
    finetune, split = finetune or FinetuneConfig(), split or SplitConfig()
    run = ExperimentRun(name, spec, train_cfg, features, manifest, finetune, split, segments, asr_manifest)
    run.start()
    jobs = [(seed, fold) for seed in train_cfg.seeds for fold in run.splits]
    for seed, fold in tqdm(jobs, desc=f"train {name}", unit="fold", file=sys.stderr):
        run.run_fold(seed, fold)
    pred = Predictions.concat(run.classes, run.predictions)
    result = run.result(pred)
    run.write(result, pred)
    print(
        f"train {name}: test WA {result['wa']['mean']:.3f} ± {result['wa']['std']:.3f}, "
        f"UA {result['ua']['mean']:.3f} ± {result['ua']['std']:.3f}; validation UA "
        f"{result['validation']['ua']['mean']:.3f}; over {len(run.splits)} folds x {len(train_cfg.seeds)} seeds in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    return result


@dataclass
class ExperimentRun:
    """One run of an experiment: its settings, the corpus it reads, and what its folds collect
    (validation scores, test predictions, history and layer-weight rows) for the metrics."""

    name: str
    spec: ExperimentSpec
    train_cfg: TrainConfig
    features: FeaturesConfig
    manifest: str | Path
    finetune: FinetuneConfig
    split: SplitConfig
    segments: str | Path | None = None
    asr_manifest: str | Path | None = None  # the ASR transcripts' manifest (text_source: asr)
    # set by start(): the corpus, its classes and folds, the members and the inputs they read
    utts: list[Utterance] = field(init=False)
    classes: list[str] = field(init=False)
    labels: np.ndarray = field(init=False)  # (N,) class indices, in utts' order
    ids: list[str] = field(init=False)
    members: list[ExperimentSpec] = field(init=False)
    names: list[str] = field(init=False)  # the inputs (speech:<level>, text:<level>) the members read
    splits: dict[int, FoldSplit] = field(init=False)
    cross_fit: bool = field(init=False)  # validation scored by cross-fitting (late-fusion weights fitted on it)
    device: torch.device = field(init=False)
    provenance: dict[str, dict] = field(default_factory=dict)  # fold → the stores it read
    scoring: set[str] = field(default_factory=set)  # how each fold's validation was scored (cross-fitting)
    val_scores: dict[tuple[int, int], dict] = field(default_factory=dict)  # (fold, seed) → validation metrics
    history_rows: list[dict] = field(default_factory=list)
    predictions: list[Predictions] = field(default_factory=list)
    layer_rows: list[dict] = field(default_factory=list)  # learned layer weights per fold, seed and member
    _loaded: dict[tuple, TensorSet] = field(default_factory=dict)  # the stores' rows, one set at a time
    _probes: dict[tuple[int, int], tuple] = field(default_factory=dict)  # (fold, member index) → a probe's output
    _scaled: dict[int, list[TensorSet]] = field(default_factory=dict)  # the current fold's standardised sets

    def start(self) -> None:
        """The utterances, classes, members, inputs and folds of the run (warnings for odd folds)."""
        self.utts = experiment_utterances(self.manifest, self.features, self.segments, self.spec.speech_store)
        self.classes = sorted({u.label for u in self.utts})
        self.labels = np.array([self.classes.index(u.label) for u in self.utts])
        self.members = members(self.spec)
        n = len(self.classes)
        self.names = sorted({i for m in self.members for i in input_names(model_config(m, self.train_cfg, {}, n))})
        self.ids = [u.utt_id for u in self.utts]
        self.device = resolve_device(self.train_cfg.device, "train.device")  # the fold's rows go there once
        self.splits = all_folds(self.utts, self.split)  # split.protocol and split.seed
        for one in self.splits.values():
            if one.warning:
                print(f"warning: train {self.name}: {one.warning}", file=sys.stderr)
        self.cross_fit = self.spec.late_weights == "fitted" and len(self.members) > 1

    def fold_data(self, fold: int) -> TensorSet:
        """Loaded once per distinct set of stores: once for frozen features, per fold for fine-tuned."""
        paths = fold_store_files(self.spec, self.names, self.features, self.finetune, fold)
        self.provenance[str(fold)] = store_provenance(paths)
        key = tuple(sorted(paths.items()))
        if key not in self._loaded:
            manifests = (self.manifest, self.asr_manifest or "")
            check_stores(paths, self.spec, self.features, manifests, self.segments)
            self._loaded.clear()
            rows = load_store_rows(self.names, paths, self.ids, fold)
            self._loaded[key] = TensorSet(rows, torch.as_tensor(self.labels)).to(self.device)
        return self._loaded[key]

    def run_fold(self, seed: int, fold: int) -> None:
        """Train every member on fold ``fold`` with ``seed``, combine them, score validation and
        keep the test predictions."""
        va, te = self.splits[fold].val, self.splits[fold].test
        val_probs, test_probs = self.train_members(seed, fold)
        n = len(self.classes)
        weights = (
            fit_weights(val_probs, self.labels[va], n)
            if self.spec.late_weights == "fitted"
            else np.full(len(self.members), 1 / len(self.members))
        )
        val_combined = combine_probs(weights, val_probs)
        if self.cross_fit:  # the weights were fitted on validation: score it out of sample where it can be halved
            crossed = _cross_fitted(
                self.name, self.splits[fold], self.utts, val_probs, self.labels[va], n, self.scoring
            )
            val_combined = val_combined if crossed is None else crossed
        self.val_scores[(fold, seed)] = all_metrics(self.labels[va], val_combined.argmax(1), n)
        probs = combine_probs(weights, test_probs)
        ids = np.array([self.ids[i] for i in te])
        folds, seeds = np.full(len(te), fold), np.full(len(te), seed)
        self.predictions.append(Predictions(self.classes, ids, folds, seeds, self.labels[te], probs.argmax(1), probs))

    def train_members(self, seed: int, fold: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each member's validation and test class probabilities on fold ``fold`` (its history
        and learned layer weights recorded)."""
        split = self.splits[fold]
        data = self.fold_data(fold)
        dims = {n: int(b.data.shape[-1]) for n, b in data.inputs.items()}
        stacked = {n: int(b.data.shape[1]) for n, b in data.inputs.items() if b.data.dim() == 3}
        sets = tuple(data.subset(np.array(idx)) for idx in (split.train, split.val, split.test))
        val_probs, test_probs = [], []
        for k, member in enumerate(self.members):
            cfg = model_config(member, self.train_cfg, dims, len(self.classes), stacked)
            _check_layer_weights(self.name, cfg, self.spec, self.features)
            if cfg.kind == "probe" and (fold, k) in self._probes:  # deterministic: every seed gives the same probe
                probs, history = self._probes[(fold, k)]
            else:
                probs, history = self.fit_one(cfg, member, sets, seed, fold)
                if cfg.kind == "probe":
                    self._probes[(fold, k)] = probs, history
            label = member_label(member)
            self.history_rows += [{"fold": fold, "seed": seed, "member": label, **h} for h in history]
            val_probs.append(probs[0])
            test_probs.append(probs[1])
        return val_probs, test_probs

    def fit_one(
        self, cfg: ModelConfig, member: ExperimentSpec, sets: tuple[TensorSet, ...], seed: int, fold: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], list[dict]]:
        """:func:`fit_member` on the fold's (train, validation, test) ``sets``; a diverging run is
        one line naming it."""
        if cfg.kind != "probe" and self.train_cfg.standardize and fold not in self._scaled:
            self._scaled = {fold: fold_scaled(*sets)}  # one fold's copy held at a time
        record: dict = {}
        try:
            probs, history = fit_member(cfg, *sets, self.train_cfg, seed, self._scaled.get(fold), record)
        except NonFiniteLoss as err:  # one line naming the run; no metrics or predictions written
            which = f" ({member_label(member)})" if len(self.members) > 1 else ""
            raise StageError(f"experiment {self.name}{which}: fold {fold}, seed {seed}, {err}") from None
        if "layer_weights" in record:
            self.layer_rows.append(
                {"fold": fold, "seed": seed, "member": member_label(member), "weights": record["layer_weights"]}
            )
        return probs, history

    def result(self, pred: Predictions) -> dict:
        """The metrics JSON (without the output hashes :meth:`write` adds)."""
        spec, train_cfg, splits = self.spec, self.train_cfg, self.splits
        groups, unit = clusters_of(self.utts)
        stats = summarize(pred, groups=groups, unit=unit)
        seeds = train_cfg.seeds
        return {
            **self.model_fields(),
            "classes": self.classes,
            "seeds": list(seeds),
            "n_utterances": len(self.utts),
            **{k: stats[k] for k in ("wa", "ua", "f1", "pooled", "per_class_recall", "clustered_by")},
            "validation_scoring": self.validation_scoring(),
            "validation": {
                m: _summary(np.array([[self.val_scores[(f, s)][m] for f in splits] for s in seeds]))
                for m in ("wa", "ua", "f1")
            },
            **({"by_improvised": kinds} if (kinds := by_improvised(pred, self.utts)) else {}),
            "folds": {
                str(f): _fold_entry(stats["folds"][str(f)], {s: self.val_scores[(f, s)] for s in seeds}, splits[f])
                for f in splits
            },
            "confusion": stats["confusion"],
            "statistics": METHOD,
            "predictions": str(prediction_path(train_cfg, self.name)),
            "provenance": {
                "mger_version": __version__,
                "split_seed": self.split.seed,
                "split": dataclasses.asdict(self.split),
                "stores": self.provenance,
                "spec": spec.record(),
                "train": train_params(train_cfg),
            },
        }

    def model_fields(self) -> dict:
        """The metrics' first keys: the experiment and its model as trained (layers resolved)."""
        spec = self.spec
        variant = spec.features == "finetuned" and self.finetune.variant(spec.finetune).tag
        return {
            "experiment": self.name,
            "model": spec.model,
            "features": spec.features,
            "speech_store": spec.speech_store,
            "speech_levels": list(spec.speech_levels),
            "text_level": spec.text_level,
            "text_source": spec.text_source or ("asr" if read_source(self.manifest) else "gold"),  # the text read
            **({"text_store": spec.text_source} if spec.text_source else {}),  # that transcript's own text store
            **{k: getattr(spec, k) for k in AUX_FIELDS},
            "layers": spec.layers or self.train_cfg.layers,
            "probe": spec.probe if spec.model == "probe" else None,
            **({"finetune_variant": spec.finetune} if variant else {}),
        }

    def validation_scoring(self) -> str:
        """How the validation figures were scored (in sample, or cross-fitted and how)."""
        if self.cross_fit:
            return (
                f"cross-fitted ({'; '.join(sorted(self.scoring))}): late-fusion weights fitted on one half of the "
                "validation utterances score the other; test uses weights fitted on all of them"
            )
        return "direct (no weights fitted on validation; epochs and the probe's C are chosen on it, as in every row)"

    def write(self, result: dict, pred: Predictions) -> None:
        """Predictions, the epochs CSV, then the metrics JSON with their sha256 (the run's commit)."""
        train_cfg, name = self.train_cfg, self.name
        epochs = Path(train_cfg.epochs_dir) / f"{name}.csv"
        if self.layer_rows:
            mode = self.spec.layer_weights or train_cfg.layer_weights
            result["layer_weights"] = layer_weight_summary(mode, self.layer_rows, self.provenance)
        write_predictions(prediction_path(train_cfg, name), pred)
        write_csv_atomic(epochs, HISTORY_FIELDS, self.history_rows)
        result["predictions_sha256"] = file_sha256(prediction_path(train_cfg, name))
        result["epochs_sha256"] = file_sha256(epochs)
        write_json(metrics_path(train_cfg, name), result)  # last: the commit of the run's outputs


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
        "protocol": split.protocol,  # what the fold tests and what it left unused (mger.core.splits)
        "tested": split.groups,
        "unused": split.unused,
    }


def _summary(grid: np.ndarray) -> dict:
    """(seeds, folds) → mean and SD (ddof=1) over folds of the per-fold mean over seeds."""
    per_fold = grid.mean(0)
    return {"mean": float(per_fold.mean()), "std": sd(per_fold)}


def member_label(member: ExperimentSpec) -> str:
    """``model:levels`` of one trained member in the epochs CSV: the text level for a text-only
    model (``text:token``), the speech levels otherwise (``audio:word``, ``mha_aux:word``)."""
    if member.model == "text":
        return f"text:{member.text_level}"
    return member.model + ":" + "+".join(member.speech_levels)


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
