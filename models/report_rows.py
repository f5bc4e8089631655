"""The report's rows (:mod:`mger.models.report`): each experiment's metrics and predictions,
loaded with their provenance checks (stores, inputs, predictions, labels), the end-to-end rows of
joint fine-tuning, and what a row is: its spec rebuilt from its metrics, its kind's label, the
features it reads."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mger.core.config import AUX_FIELDS, ExperimentSpec, FinetuneConfig, Params
from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.models.modules import aux_tasks
from mger.models.predictions import Predictions, read_predictions
from mger.models.registry import check_model_kinds, model_kind
from mger.models.stats import by_improvised, clusters_of, sd, summarize


@dataclass
class Experiment:
    """One row: its metrics JSON and its predictions."""

    metrics: dict
    predictions: Predictions

    @property
    def name(self) -> str:
        return self.metrics["experiment"]


def row_label(m: dict) -> str:
    """The system cell of a row: its kind's registered label (the end-to-end row its own)."""
    if m.get("end_to_end"):
        return (
            f"end to end: encoders fine-tuned jointly with the mha fusion head K={m.get('layers')} (frames + "
            f"tokens), auxiliary: {' + '.join(aux_tasks(m)) or 'none'}"
        )
    return model_kind(m["model"]).label(m)


def is_fusion(m: dict) -> bool:
    """A fusion row (its kind registered ``fusion``)."""
    return model_kind(m["model"]).fusion


def is_audio_only(m: dict) -> bool:
    """A trained audio-only row (not the probe): its kind reads speech alone."""
    return m["model"] != "probe" and model_kind(m["model"]).reads == "speech"


def features_state(m: dict) -> str:
    base = "fine-tuned" if m.get("features") == "finetuned" else "frozen"
    named = {"asr": " (ASR text)", "gold": " (gold text)"}  # a row reading a named transcript's own store
    return base + named.get(m.get("text_store", ""), "")  # the run's text: no mark (never paired as another's)


def speech_store(m: dict) -> str:
    """The speech store a row reads (``speech``, or a ``features.extra_speech`` name)."""
    return m.get("speech_store", "speech")


def variant_of(m: dict) -> str:
    """The fine-tuning variant a row read (``finetune.variants``; '' for one fine-tuning or none)."""
    return m.get("finetune_variant") or ""


def encoder_cell(m: dict) -> str:
    """The table's speech-encoder cell: frozen / fine-tuned for the main store, else the store's
    name; with several fine-tuning variants, the one the row read (``fine-tuned (noaux)``)."""
    cell = features_state(m) if speech_store(m) == "speech" else speech_store(m)
    return f"{cell} ({variant_of(m)})" if variant_of(m) else cell


def inputs_read(m: dict) -> tuple:
    """Which features a row reads: the encoders' state (and fine-tuning variant), and the speech
    store unless it reads text only."""
    reads = m.get("probe") if m["model"] == "probe" else model_kind(m["model"]).reads
    reads_speech = reads != "text"
    return (
        features_state(m) + (f" ({variant_of(m)})" if variant_of(m) else ""),
        speech_store(m) if reads_speech else None,
    )


def row_spec(m: dict) -> ExperimentSpec:
    """The experiment spec a row was trained with, rebuilt from its metrics (``provenance.spec``),
    its K resolved as trained (``layers``: the spec's, else ``train.layers``)."""
    return dataclasses.replace(ExperimentSpec.from_record(m["provenance"]["spec"]), layers=m.get("layers"))


def same_model(m: dict) -> str:
    """Everything that makes a row's model, except the encoders' features: its whole spec (as
    a hashable key) with the features and the fine-tuning variant left out."""
    spec = dataclasses.replace(row_spec(m), features="frozen", finetune=None)
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


# --- loading, with provenance checks -------------------------------------------------------------


def _store_fingerprint(path: str) -> str | None:
    from mger.features.cache import FeatureStore

    try:
        return str(FeatureStore(path).attrs.get("fingerprint_sha256"))
    except (OSError, KeyError, RuntimeError):
        return None


def check_provenance(path: Path, metrics: dict) -> None:
    """Refuse a metrics file whose stores are not the ones on disk now (one line naming it)."""
    prov = metrics.get("provenance")
    if not prov or "stores" not in prov:
        raise StageError(
            f"{path}: no provenance (written by an older mger); re-run `mger train --experiment {path.stem}`"
        )
    for fold, stores in sorted(prov["stores"].items()):
        for kind, entry in sorted(stores.items()):
            now = _store_fingerprint(entry["path"])
            if now != entry["fingerprint_sha256"]:
                state = "is missing" if now is None else "has changed since training"
                raise StageError(
                    f"{path}: the {kind} store {entry['path']} (fold {fold}) {state}; re-run "
                    f"`mger train --experiment {metrics['experiment']}`"
                )


def joint_names(params: Params) -> dict[str, str | None]:
    """The end-to-end rows params define: ``joint_ft`` (or ``joint_ft_<variant>`` with several
    variants) → its fine-tuning variant, for every variant with ``objective: fusion``."""
    ft = params.finetune
    return {
        f"joint_ft_{ft.variant(name).tag}" if ft.variant(name).tag else "joint_ft": name
        for name in ft.variant_names
        if ft.variant(name).objective == "fusion"
    }


def joint_experiments(params: Params, only: Sequence[str] | None = None) -> list[Experiment]:
    """Sun et al.'s end-to-end system (encoders fine-tuned jointly with the mha fusion head, that
    head evaluated on each fold's test data once per training seed) as a row, for every
    fine-tuning variant with ``objective: fusion``: ``joint_ft``, or ``joint_ft_<variant>`` with
    several variants; from ``<reports>/fold-<k>.json`` and its predictions."""
    return [
        _joint_experiment(params, params.finetune.variant(variant), row)
        for row, variant in joint_names(params).items()
        if only is None or row in only
    ]


def _joint_experiment(params: Params, ft: FinetuneConfig, name: str) -> Experiment:
    from mger.models.joint import ALL_SEEDS  # the fold folder's file of every seed's test predictions

    preds, val, folds = [], [], {}
    seeds = list(params.train.seeds)
    for fold in ft.folds:
        path = ft.fold_dir(fold) / "finetune.json"  # inside the finetune stage's declared output folder
        if not path.is_file():
            raise StageError(f"{path}: missing; run `mger finetune --fold {fold}` (or `dvc repro`)")
        record = json.loads(path.read_text(encoding="utf-8"))
        if "test" not in record:
            raise StageError(
                f"{path}: no end-to-end test figures (fine-tuned with another objective); re-run "
                f"`mger finetune --fold {fold}`"
            )
        if sorted(int(s) for s in record["test"].get("seeds", {})) != sorted(seeds):
            raise StageError(
                f"{path}: end-to-end runs of seeds {sorted(int(s) for s in record['test'].get('seeds', {}))}, not "
                f"train.seeds {seeds}; re-run `mger finetune --fold {fold}`"
            )
        preds.append(read_predictions(ft.fold_dir(fold) / ALL_SEEDS))
        val.append(np.mean([record["test"]["seeds"][str(s)]["val_ua"] for s in seeds]))  # per fold, seeds averaged
        folds[str(fold)] = {"val_speakers": record["val_speakers"]}
    pred = Predictions.concat(preds[0].classes, preds)
    manifest = read_manifest(params.prepare.manifest)
    groups, unit = clusters_of(manifest)
    stats = summarize(pred, groups=groups, unit=unit)
    for fold, entry in stats["folds"].items():  # each fold's validation speakers, as a metrics JSON holds them
        entry |= folds.get(fold, {})
    spec = _joint_spec(ft)
    metrics = (
        stats
        | ({"by_improvised": kinds} if (kinds := by_improvised(pred, manifest)) else {})
        | {
            "experiment": name,
            "model": spec.model,
            "features": spec.features,
            "speech_store": spec.speech_store,
            "speech_levels": spec.speech_levels,
            "text_level": spec.text_level,
            **{k: getattr(spec, k) for k in AUX_FIELDS},
            "layers": spec.layers,
            "probe": None,
            "end_to_end": True,
            "provenance": {"spec": spec.record()},
            **({"finetune_variant": ft.tag} if ft.tag else {}),
            "classes": pred.classes,
            "seeds": seeds,
            "n_utterances": len(np.unique(pred.utt_ids)),
            "validation": {"ua": {"mean": float(np.mean(val)), "std": sd(val)}},
        }
    )
    return Experiment(metrics, pred)


def _joint_spec(ft: FinetuneConfig) -> ExperimentSpec:
    """The end-to-end row as an experiment spec: the ``finetune.fusion`` head over frames and tokens."""
    aux = {name: getattr(ft.fusion, name) for name in AUX_FIELDS}
    return ExperimentSpec(
        model="mha_aux", speech_levels=["frame"], layers=ft.fusion.layers, features="finetuned", finetune=ft.tag, **aux
    )


def check_inputs(path: Path, metrics: dict, params: Params) -> None:
    """Refuse a metrics file whose stores were built from another segment table or manifest than
    the current ones (:func:`mger.features.fingerprint.check_store_inputs`); where the segment table
    does not exist there is nothing to compare with, and a note says so."""
    from mger.core.transcripts import manifest_of_store
    from mger.features.cache import CacheError
    from mger.features.fingerprint import check_store_inputs

    segments = Path(params.align.out) / "segments.h5"
    if not segments.is_file():
        return
    stores = {e["path"] for fold in metrics["provenance"]["stores"].values() for e in fold.values()}
    for store in sorted(stores):
        try:
            manifest = manifest_of_store(store, params.prepare.manifest, params.transcribe.manifest)
            check_store_inputs(store, manifest, segments)
        except CacheError as err:
            raise StageError(f"{path}: trained on a stale store: {err}") from None


def check_predictions(path: Path, metrics: dict) -> None:
    """Refuse predictions that are not the ones written with ``metrics`` (the sha256 it holds)."""
    from mger.features.cache import file_sha256

    pred = Path(metrics["predictions"])
    if "predictions_sha256" not in metrics:
        raise StageError(
            f"{path}: no predictions_sha256 (written by an older mger); re-run `mger train --experiment "
            f"{metrics['experiment']}`"
        )
    if file_sha256(pred) != metrics["predictions_sha256"]:
        raise StageError(
            f"{pred}: not the predictions written with {path} (another run's: a `mger train` stopped between "
            f"its writes, or a copied file); re-run `mger train --experiment {metrics['experiment']}`"
        )


def check_labels(experiments: Sequence[Experiment], manifest: Path) -> None:
    """Refuse a row whose predictions hold a label (or an utterance) the current manifest does
    not: trained before `mger prepare` ran again (a new class map, corrected labels), its scores
    would be paired with rows scored against other truth.  No manifest: nothing to compare."""
    if not manifest.is_file():
        return
    current = {u.utt_id: u.label for u in read_manifest(manifest)}
    for e in experiments:
        pred = e.predictions
        labels = np.asarray(pred.classes, dtype=object)[pred.label]
        for uid, label in zip(pred.utt_ids, labels):
            if current.get(str(uid)) != label:
                now = f"labelled {current[str(uid)]}" if str(uid) in current else "absent"
                raise StageError(
                    f"{e.metrics.get('predictions', e.name)}: {uid} is labelled {label} there but {now} in "
                    f"{manifest} (prepared again since); re-run `mger train --experiment {e.name}`"
                )


def report_names(params: Params, only: Sequence[str] | None = None, where: str = "--experiment") -> list[str]:
    """The experiments a report covers: every one of params, or ``only`` (each must be in params;
    ``where`` names what listed them in an error)."""
    names = list(params.train.all_experiments)
    if only is None:
        return names
    unknown = [n for n in only if n not in names and n not in joint_names(params)]
    if unknown:
        raise StageError(
            f"{where} {unknown[0]}: not an experiment of train.experiments or train.finetuned_experiments "
            f"(known: {', '.join(names + list(joint_names(params))) or 'none'})"
        )
    return [n for n in names if n in only]


def load_experiments(params: Params, only: Sequence[str] | None = None) -> list[Experiment]:
    """The experiments of params (or ``only`` those: ``mger report --experiment``, by default
    ``report.experiments``; :func:`report_names`), in table order; refuses missing, stale or
    malformed files."""
    where = "--experiment" if only is not None else "report.experiments:"
    only = params.report.experiments if only is None else only
    out, names = [], report_names(params, only, where)
    check_model_kinds({name: params.train.all_experiments[name] for name in names})
    segments = Path(params.align.out) / "segments.h5"
    if not segments.is_file():
        print(f"note: no segment table at {segments}: the stores' inputs were not checked against it")
    for name in names:
        path = Path(params.train.metrics_dir) / f"{name}.json"
        if not path.is_file():
            raise StageError(f"{path}: missing; run `mger train --experiment {name}` (or `dvc repro`)")
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise StageError(f"{path}: not valid JSON ({err}); re-run `mger train --experiment {name}`") from None
        check_provenance(path, metrics)
        check_inputs(path, metrics, params)
        check_predictions(path, metrics)
        out.append(Experiment(metrics, read_predictions(metrics["predictions"])))
    out += joint_experiments(params, only)
    check_labels(out, Path(params.prepare.manifest))
    return sorted(
        out,
        key=lambda e: (
            model_kind(e.metrics["model"]).order,
            features_state(e.metrics) != "frozen",
            e.name,
        ),
    )
