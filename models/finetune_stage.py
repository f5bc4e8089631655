"""The ``mger finetune`` stage: one fold's fine-tuning under either objective.

:func:`run_finetune` splits fold k (:func:`mger.models.finetune.finetune_split`), skips a fold
whose ``finetune.json`` matches the settings, and trains: the utterance objective each encoder
alone (:func:`mger.models.finetune.train_modality`), the fusion objective both with the fusion
head, once per training seed (:func:`mger.models.joint.run_joint_seeds`); once per fine-tuning
variant of ``finetune.variants`` (each in its own folders, :meth:`FinetuneConfig.variant`).  It
sits above both modules, so that :mod:`mger.models.joint` builds on :mod:`mger.models.finetune`
without an import cycle.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from mger.alignment.table import SegmentTable
from mger.core.config import FeaturesConfig, FinetuneConfig, SplitConfig
from mger.core.manifest import read_manifest
from mger.core.reporting import StageError, write_csv_atomic, write_json
from mger.core.splits import fold_split
from mger.features.acoustic import is_opensmile
from mger.models.finetune import (
    MODALITIES,
    FinetuneSplit,
    build_encoders,
    encoder_inputs,
    finetune_split,
    joint_predictions_path,
    settings_key,
    train_modality,
    trained_modalities,
)
from mger.models.joint import ALL_SEEDS, run_joint_seeds


def run_finetune(
    fold: int,
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    manifest: str | Path,
    segments: str | Path,
    split_cfg: SplitConfig | None = None,
    seeds: Sequence[int] | None = None,
) -> Path:
    """Fine-tune fold ``fold``'s encoders once per variant of ``cfg`` (or find them up to date);
    returns the fold folder.  ``seeds`` (``train.seeds``): the fusion objective's end-to-end runs
    (default: ``finetune.seed`` alone)."""
    if is_opensmile(features.speech.model):
        raise StageError(
            f"features.speech.model {features.speech.model!r}: openSMILE descriptors have no weights to "
            "fine-tune; fine-tuning needs a wav2vec2-family model"
        )
    table = SegmentTable.read(segments)
    aligned = set(table.utt_ids)
    utts = [u for u in read_manifest(manifest) if u.utt_id in aligned]
    split_cfg = split_cfg or SplitConfig()  # protocol and seed, shared with every classifier
    summaries = {
        name: _run_variant(fold, cfg.variant(name), features, utts, split_cfg, seeds) for name in cfg.variant_names
    }
    if len(summaries) > 1:  # the fold's reports of every variant, for DVC (each variant's own are in <reports>/<name>/)
        rows = [{"variant": name} | row for name in summaries for row in summaries[name].pop("history")]
        write_json(Path(cfg.reports) / f"fold-{fold}.json", {"fold": fold, "variants": summaries})
        write_csv_atomic(Path(cfg.reports) / f"fold-{fold}.csv", ["variant", *HISTORY_FIELDS], rows)
    return cfg.fold_dir(fold)


def _run_variant(
    fold: int,
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    utts: list,
    split_cfg: SplitConfig,
    seeds: Sequence[int] | None,
) -> dict:
    """One variant's fine-tuning of fold ``fold``; returns its report (with its epoch log)."""
    t0 = time.perf_counter()
    split = finetune_split(utts, fold, split_cfg)
    fold_dir = cfg.fold_dir(fold)
    fold_dir.mkdir(parents=True, exist_ok=True)
    encoders = build_encoders(cfg, features)
    trained = trained_modalities(cfg)
    key = settings_key(cfg, split, encoders, features.text.markers)
    seeds = list(seeds) if seeds is not None and cfg.objective == "fusion" else [cfg.seed]
    seed_entry = {"seeds": seeds} if cfg.objective == "fusion" else {}
    done = fold_dir / "finetune.json"
    name = f" ({cfg.tag})" if cfg.tag else ""
    if done.exists():
        record = json.loads(done.read_text())
        if _up_to_date(record, key, trained, seed_entry.get("seeds")):
            summary = _write_reports(Path(cfg.reports), fold, record, fold_dir)  # DVC removed them before calling us
            print(f"finetune fold {fold}{name}: {fold_dir} is up to date")
            return summary
        done.unlink()
    for modality in MODALITIES:
        if modality not in trained:
            shutil.rmtree(fold_dir / modality, ignore_errors=True)
    if cfg.objective == "fusion":
        test = [utts[i] for i in fold_split(utts, fold, split_cfg).test]  # read after training only
        results, history, scores = run_joint_seeds(split, test, encoders, cfg, features, fold_dir, key, seeds)
        objective, test_entry = {"objective": "fusion"} | seed_entry, {"test": scores}
    else:
        _remove_fusion_runs(fold_dir)
        results, history = _run_utterance(split, encoders, trained, cfg, features, fold_dir, key)
        objective, test_entry = {}, {}  # records of the utterance objective are those of runs before it
    record = (
        split.describe()
        | {"key": key}
        | objective
        | {"modalities": trained, "results": results}
        | test_entry
        | {"seconds": round(time.perf_counter() - t0, 1), "history": history}
    )
    if cfg.tag:
        record["variant"] = cfg.tag
    write_json(done, record)
    for state in (*MODALITIES, "fusion"):
        shutil.rmtree(fold_dir / f"state-{state}", ignore_errors=True)
    summary = _write_reports(Path(cfg.reports), fold, record, fold_dir)
    print(f"finetune fold {fold}{name}: {_done_line(split, record, cfg.seed, seeds)} → {fold_dir}")
    return summary


def _up_to_date(record: dict, key: str, trained: list[str], seeds: list[int] | None) -> bool:
    """A fold's ``finetune.json`` written by a finished run of these settings, encoders and seeds."""
    return (
        record.get("key") == key
        and record.get("modalities") == trained
        and record.get("seeds") == seeds
        and "history" in record
    )


def _remove_fusion_runs(fold_dir: Path) -> None:
    """What a fusion-objective run left in the fold folder (its head, other seeds, test predictions)."""
    shutil.rmtree(fold_dir / "fusion", ignore_errors=True)
    for stale in fold_dir.glob("seed-*"):  # a fusion run's other seeds
        shutil.rmtree(stale, ignore_errors=True)
    (fold_dir / ALL_SEEDS).unlink(missing_ok=True)


def _done_line(split: FinetuneSplit, record: dict, seed: int, seeds: list[int]) -> str:
    """The fold's closing line: its split, each encoder's validation UA, the joint test UA."""
    scores = ", ".join(f"{m} val UA {r['val_ua']:.3f} (epoch {r['best_epoch']})" for m, r in record["results"].items())
    tested = ""
    if "test" in record:
        mean = np.mean([s["ua"] for s in record["test"]["seeds"].values()])
        tested = f"; joint test UA {record['test']['ua']:.3f} (seed {seed}), {mean:.3f} over seeds {seeds}"
    return (
        f"{len(split.train)} train / {len(split.val)} validation utterances"
        f"{f' from the folds {split.train_folds}' if split.train_folds else ''}; "  # loso only (IEMOCAP's)
        f"{scores}{tested}; {record['seconds']:.1f}s"
    )


def _run_utterance(
    split: FinetuneSplit,
    encoders: dict,
    trained: list[str],
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    fold_dir: Path,
    key: str,
) -> tuple[dict, list[dict]]:
    """The utterance objective: each trained encoder alone under its mean-pool head."""
    labels = {
        name: np.array([split.classes.index(u.label) for u in part])
        for name, part in (("train", split.train), ("val", split.val))
    }
    results, history = {}, []
    for modality in trained:
        encoder = encoders[modality]
        train = encoder_inputs(modality, encoder, split.train, cfg)
        val = encoder_inputs(modality, encoder, split.val, cfg)
        progress = train_modality(
            modality, encoder, train, val, labels["train"], labels["val"], cfg, fold_dir, key, split.classes
        )
        results[modality] = {
            "best_epoch": progress.best_epoch,
            "val_ua": progress.best,
            "epochs_run": progress.epoch,
            "base_model": encoder.name,
            "base_weights_sha256": encoder.weights_sha256,
        }
        history += progress.history
    return results, history


HISTORY_FIELDS = ["modality", "epoch", "train_loss", "val_ua", "lr"]


def _write_reports(folder: Path, fold: int, record: dict, fold_dir: Path) -> dict:
    """``fold-<k>.json`` and ``fold-<k>.csv`` in ``folder`` (and the end-to-end predictions);
    returns the JSON's content with the epoch log under ``history``."""
    summary = {
        k: record[k] for k in ("fold", "test_fold", "train_folds", "val_speakers", "validation", "results", "seconds")
    }
    joint = joint_predictions_path(folder, fold)
    extra = {}
    if "test" in record:  # objective fusion: the end-to-end system's test figures and predictions
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fold_dir / ALL_SEEDS, joint)
        extra = {"objective": record["objective"], "test": record["test"] | {"predictions": str(joint)}}
    else:
        joint.unlink(missing_ok=True)  # a stale fusion run's predictions would pass for this run's
    report = summary | {"n_train": len(record["train_ids"]), "n_val": len(record["val_ids"])} | extra
    write_json(folder / f"fold-{fold}.json", report)
    write_csv_atomic(folder / f"fold-{fold}.csv", HISTORY_FIELDS, record["history"])
    return report | {"history": record["history"]}
