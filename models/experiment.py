"""Leave-one-session-out experiments on the cached features (``mger train --experiment NAME``).

Fold k tests session k.  Its validation split is every utterance of one speaker of the
training sessions (speaker ``sorted(train speakers)[(k + seed) % n]``), so train, validation and
test are session- and speaker-disjoint and the test session never chooses an epoch.  (A
corpus whose training sessions have a single speaker falls back to every fifth training
utterance for validation.)  All inputs are loaded once for the whole corpus and indexed per fold.  Metrics per fold, then
mean ± std over the folds (each fold averaged over ``train.seeds``) and over the seeds (each
seed averaged over the folds), go to ``reports/metrics/<experiment>.json``; the per-epoch
history to ``reports/epochs/<experiment>.csv``.

``features: finetuned`` experiments read fold k's speech features (and text, with
``finetune.text``) from fold k's own store (:func:`store_path`), opened with ``fold=k`` so
that a store of encoders fine-tuned for another fold raises :class:`features.cache.LeakageError`.

``late`` combines the class probabilities of unimodal models (one audio model per chosen
granularity, and the text model): their mean, or weights fitted on the validation split.
``combined`` (Zhao et al.'s full system) adds the co-attention model to that ensemble.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from features.cache import FeatureStore
from features.extract import store_path as extracted_store
from models.metrics import all_metrics
from models.modules import ModelConfig, input_names
from models.train import TensorSet, fit, fit_weights, predict_proba
from pipeline.config import ExperimentSpec, FeaturesConfig, FinetuneConfig, TrainConfig
from pipeline.manifest import Utterance, read_manifest, sessions
from pipeline.reporting import StageError, write_json


def fold_ids(utts: Sequence[Utterance], fold: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, test) indices into ``utts`` for ``fold`` (the test session)."""
    test = [i for i, u in enumerate(utts) if u.session == fold]
    rest = [i for i, u in enumerate(utts) if u.session != fold]
    speakers = sorted({utts[i].speaker for i in rest})
    val_speaker = speakers[(fold + seed) % len(speakers)]
    val = [i for i in rest if utts[i].speaker == val_speaker]
    train = [i for i in rest if utts[i].speaker != val_speaker]
    if not train or not val:  # tiny corpora (one training speaker): every 5th training utterance
        val, train = rest[::5], [i for k, i in enumerate(rest) if k % 5]
    if not train or not val or not test:
        raise StageError(f"fold {fold}: too few utterances for train/validation/test ({len(rest)} outside session "
                         f"{fold}, {len(test)} in it)")
    return train, val, test


def members(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """The single models an experiment trains (one for most, several for ``late``/``combined``)."""
    if spec.model not in ("late", "combined"):
        return [spec]
    audio = [ExperimentSpec(model="audio", speech_levels=[lv]) for lv in spec.speech_levels]
    text = [ExperimentSpec(model="text", text_level=spec.text_level)]
    co = [ExperimentSpec(model="coattention", speech_levels=spec.speech_levels[:1], text_level=spec.text_level)]
    return (co if spec.model == "combined" else []) + audio + text


def model_config(spec: ExperimentSpec, train: TrainConfig, dims: dict[str, int], n_classes: int) -> ModelConfig:
    return ModelConfig(kind=spec.model, speech_levels=list(spec.speech_levels), text_level=spec.text_level,
                       dims=dims, n_classes=n_classes, hidden=train.hidden, heads=train.heads, layers=train.layers,
                       dropout=train.dropout, aux_matching=spec.aux_matching, aux_unimodal=spec.aux_unimodal)


def store_path(kind: str, spec: ExperimentSpec, features: FeaturesConfig, finetune: FinetuneConfig,
               fold: int) -> Path:
    """Where fold ``fold`` of ``spec`` reads its ``kind`` features: the frozen store, or fold
    ``fold``'s own fine-tuned store (text stays frozen unless ``finetune.text``)."""
    if spec.features == "frozen" or (kind == "text" and not finetune.text):
        return extracted_store(features.out, kind)
    path = extracted_store(finetune.features_dir(fold), kind)
    if not path.is_file():
        raise StageError(f"{path}: no fine-tuned {kind} features for fold {fold}; run `mger finetune --fold {fold}` "
                         f"and `mger extract --fold {fold}` (or `dvc repro`)")
    return path


def load_inputs(names: Sequence[str], paths: dict[str, Path], ids: Sequence[str], fold: int) -> dict:
    """Each input's rows (``kind:level``) as stored, unpadded; each store is checked against ``fold``."""
    stores = {kind: FeatureStore(paths[kind], fold=fold) for kind in {n.split(":")[0] for n in names}}
    return {n: stores[n.split(":")[0]].ragged(n.split(":")[1], ids) for n in names}


def _summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std())}


def run_experiment(name: str, spec: ExperimentSpec, train_cfg: TrainConfig, features: FeaturesConfig,
                   manifest: str | Path, finetune: FinetuneConfig | None = None) -> dict:
    t0 = time.perf_counter()
    finetune = finetune or FinetuneConfig()
    store_ids = set(FeatureStore(extracted_store(features.out, "speech")).utt_ids)
    utts = [u for u in read_manifest(manifest) if u.utt_id in store_ids]
    if not utts:
        raise StageError(f"no manifest utterance has cached features in {features.out}")
    classes = sorted({u.label for u in utts})
    labels = np.array([classes.index(u.label) for u in utts])
    parts = members(spec)
    names = sorted({n for part in parts for n in input_names(model_config(part, train_cfg, {}, len(classes)))})
    ids = [u.utt_id for u in utts]
    loaded: dict[tuple, TensorSet] = {}

    def fold_data(fold: int) -> TensorSet:
        """Loaded once per distinct set of stores: once for frozen features, per fold for fine-tuned."""
        paths = {kind: store_path(kind, spec, features, finetune, fold) for kind in ("speech", "text")}
        key = tuple(sorted(paths.items()))
        if key not in loaded:
            loaded.clear()
            loaded[key] = TensorSet(load_inputs(names, paths, ids, fold), torch.as_tensor(labels))
        return loaded[key]

    folds = sessions(utts)
    per = {m: np.zeros((len(train_cfg.seeds), len(folds))) for m in ("wa", "ua", "f1")}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    history_rows: list[dict] = []
    jobs = [(si, seed, fi, fold) for si, seed in enumerate(train_cfg.seeds) for fi, fold in enumerate(folds)]
    for si, seed, fi, fold in tqdm(jobs, desc=f"train {name}", unit="fold", file=sys.stderr):
        tr, va, te = fold_ids(utts, fold, seed)
        data = fold_data(fold)
        dims = {n: int(b.data.shape[-1]) for n, b in data.inputs.items()}
        train_set, val_set, test_set = (data.subset(np.array(idx)) for idx in (tr, va, te))
        val_probs, test_probs = [], []
        for part in parts:
            cfg = model_config(part, train_cfg, dims, len(classes))
            model, history = fit(cfg, train_set, val_set, train_cfg, seed)
            history_rows += [{"fold": fold, "seed": seed, "member": part.model + ":" + "+".join(part.speech_levels),
                              **h} for h in history]
            val_probs.append(predict_proba(model, val_set))
            test_probs.append(predict_proba(model, test_set))
        weights = (fit_weights(val_probs, labels[va], len(classes)) if spec.late_weights == "fitted"
                   else np.full(len(parts), 1 / len(parts)))
        pred = sum(w * p for w, p in zip(weights, test_probs)).argmax(1)
        m = all_metrics(labels[te], pred, len(classes))
        for key in per:
            per[key][si, fi] = m[key]
        confusion += np.array(m["confusion"])
    result = {
        "experiment": name, "model": spec.model, "features": spec.features, "speech_levels": list(spec.speech_levels),
        "text_level": spec.text_level, "aux_matching": spec.aux_matching, "aux_unimodal": spec.aux_unimodal,
        "classes": classes, "seeds": list(train_cfg.seeds), "n_utterances": len(utts),
        **{k: _summary(v.mean(0)) | {"seed_std": float(v.mean(1).std())} for k, v in per.items()},
        "folds": {str(f): {k: float(per[k][:, i].mean()) for k in per} for i, f in enumerate(folds)},
        "confusion": confusion.tolist(),
    }
    write_json(Path(train_cfg.metrics_dir) / f"{name}.json", result)
    _write_history(Path(train_cfg.epochs_dir) / f"{name}.csv", history_rows)
    print(f"train {name}: WA {result['wa']['mean']:.3f} ± {result['wa']['std']:.3f}, UA {result['ua']['mean']:.3f} "
          f"± {result['ua']['std']:.3f}, F1 {result['f1']['mean']:.3f} over {len(folds)} folds x "
          f"{len(train_cfg.seeds)} seeds in {time.perf_counter() - t0:.1f}s")
    return result


def _write_history(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["fold", "seed", "member", "epoch", "train_loss", "val_ua"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
