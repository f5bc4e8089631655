"""``mger report``: reports/results.md and PNG figures, from the experiments listed in params.

Only experiments named in ``train.experiments`` / ``train.finetuned_experiments`` are read
(``mger report --experiment a,b``: only those).  A metrics file is refused (one line naming
it) when it is missing, was written without provenance, names a feature store whose
fingerprint is no longer the one on disk or that was built from another segment table or
manifest than the current ones, or names predictions other than the ones on disk (the
``predictions_sha256`` written with it): a table never mixes results of different features or
runs.  Everything is computed from the saved
per-utterance predictions (:mod:`mger.models.stats`): CIs, pooled and per-class figures, the
improvised/scripted breakdown and the paired tests of each ablation step, Holm-adjusted within each
table; a sentence claims a difference only where the adjusted p < 0.05.

Nothing here looks at test results to choose: the "best system" is the one with the highest
*validation* UA; test figures are only displayed.  Published IEMOCAP numbers sit in their own
block, never beside the rows of another corpus; with the synthetic corpus the block says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mger.core.config import FinetuneConfig, Params
from mger.core.manifest import read_manifest
from mger.core.reporting import StageError, save_figure_atomic, write_json, write_text_atomic
from mger.models.predictions import Predictions, read_predictions
from mger.models.stats import ALPHA, METHOD, breakdown, clusters_of, format_p, holm, paired_test, sd, summarize
from mger.models.wer import transcript_lines  # asr (#33)

# Published IEMOCAP figures, for orientation only: pretrained encoders on real IEMOCAP speech, not
# the synthetic demo corpus or random-init encoders.  We read the abstracts only: the full texts
# (arXiv 2207.04697, 2302.13661) are public but were not obtainable here.
PUBLISHED = [
    (
        "Sun, He & Han, ICASSP 2023",
        "wav2vec 2.0 + BERT, K-layer multi-head attention fusion with two auxiliary tasks, both encoders fine-tuned",
        "WA 78.42, UA 79.71",
    ),
    (
        "Zhao, Wang & Wang, Interspeech 2022",
        "wav2vec 2.0 + BERT, multi-granularity co-attention early fusion + late fusion",
        "not quoted here (we could not check the figures)",
    ),
]
ORDER = ("probe", "text", "audio", "multigranular", "fc", "coattention", "late", "combined", "mha_aux")
FUSION = ("coattention", "fc", "late", "combined", "mha_aux")


@dataclass
class Experiment:
    """One row: its metrics JSON and its predictions."""

    metrics: dict
    predictions: Predictions

    @property
    def name(self) -> str:
        return self.metrics["experiment"]


def _label(m: dict) -> str:
    levels = "+".join(m["speech_levels"])
    if m["model"] == "probe":
        inputs = {
            "speech": f"speech {levels}",
            "text": f"text {m['text_level']}",
            "both": f"speech {levels} + text {m['text_level']}",
        }[m["probe"]]
        return f"linear probe ({inputs}, utterance means)"
    if m["model"] == "text":
        return f"text only ({m['text_level']})"
    if m["model"] == "audio":
        return f"audio only, {levels}"
    if m["model"] == "multigranular":
        return f"audio only, multi-granularity {levels}"
    if m.get("end_to_end"):
        return (
            f"end to end: encoders fine-tuned jointly with the mha fusion head K={m.get('layers')} (frames + "
            f"tokens), auxiliary: {' + '.join(_aux(m)) or 'none'}"
        )
    if m["model"] == "mha_aux":
        variants = [
            v
            for v, on in (
                (
                    f"unimodal heads on the {m.get('aux_unimodal_on')} streams",
                    m["aux_unimodal"] > 0 and m.get("aux_unimodal_on") == "encoder",
                ),
                (
                    "negatives of another label",
                    m["aux_matching"] > 0 and m.get("aux_matching_negatives") == "other_label",
                ),
            )
            if on
        ]
        return f"mha fusion K={m.get('layers')} ({levels}), auxiliary: {' + '.join(_aux(m)) or 'none'}" + "".join(
            f"; {v}" for v in variants
        )
    if m["model"] == "fc":
        return f"FC fusion (mean-pooled {levels} + text)"
    return f"{m['model']} ({levels} + text)"


def _aux(m: dict) -> list[str]:
    return [name for name, on in (("matching", m["aux_matching"] > 0), ("unimodal", m["aux_unimodal"] > 0)) if on]


def _features(m: dict) -> str:
    base = "fine-tuned" if m.get("features") == "finetuned" else "frozen"
    return base + (" (ASR text)" if m.get("text_store") == "asr" else "")  # asr (#33): never paired as gold


def _store(m: dict) -> str:
    """The speech store a row reads (``speech``, or a ``features.extra_speech`` name)."""
    return m.get("speech_store", "speech")


def _variant(m: dict) -> str:
    """The fine-tuning variant a row read (``finetune.variants``; '' for one fine-tuning or none)."""
    return m.get("finetune_variant") or ""


def _encoder(m: dict) -> str:
    """The table's speech-encoder cell: frozen / fine-tuned for the main store, else the store's
    name; with several fine-tuning variants, the one the row read (``fine-tuned (noaux)``)."""
    cell = _features(m) if _store(m) == "speech" else _store(m)
    return f"{cell} ({_variant(m)})" if _variant(m) else cell


def _inputs(m: dict) -> tuple:
    """Which features a row reads: the encoders' state (and fine-tuning variant), and the speech
    store unless it reads text only."""
    reads_speech = m["model"] != "text" and not (m["model"] == "probe" and m.get("probe") == "text")
    return (_features(m) + (f" ({_variant(m)})" if _variant(m) else ""), _store(m) if reads_speech else None)


def _same_model(m: dict) -> tuple:
    """Everything that makes a row's model, except the encoders' features."""
    return (
        m["model"],
        tuple(m["speech_levels"]),
        m["text_level"],
        m["aux_matching"],
        m["aux_unimodal"],
        m.get("aux_unimodal_on"),
        m.get("aux_matching_negatives"),
        m.get("layers"),
        m.get("probe"),
        _store(m),
    )


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _cell(x: dict) -> str:
    return f"{100 * x['mean']:.2f} ± {100 * x['std']:.2f}"


SD_NOTE = "mean ± SD over folds (ddof=1)"
_INTERVALS = ("ci95", "ci95_clustered", "ci95_folds")  # the metrics keys of a row's 95% intervals


def _interval_kind(m: dict, key: str) -> str:
    return {"ci95_clustered": f"{m.get('clustered_by', 'dialogue')}s", "ci95_folds": "folds t"}.get(key, "utterances")


def widest_interval(m: dict, metric: str = "ua") -> tuple[float, float, str]:
    """The widest of a row's 95% intervals of ``metric`` (utterance bootstrap, clustered
    bootstrap, t over folds; those the metrics hold), and which it is."""
    present = [(key, m[metric][key]) for key in _INTERVALS if m[metric].get(key)]
    key, (lo, hi) = max(present, key=lambda kv: kv[1][1] - kv[1][0])
    return lo, hi, _interval_kind(m, key)


def _ci_cell(m: dict) -> str:
    lo, hi, kind = widest_interval(m)
    return f"[{_pct(lo)}, {_pct(hi)}] {kind}"


def _p_cells(p: float, adjusted: float | None) -> str:
    """'raw | Holm' cells of a table."""
    return f"{format_p(p)} | {format_p(adjusted) if adjusted is not None else '–'}"


def _tests(pairs: list[tuple[Experiment, Experiment]]) -> list[dict | str]:
    """The paired test (system, baseline) of each pair, each with Holm-adjusted p-values over the
    family (per metric: ``p_holm``), or the reason it could not run."""
    out: list[dict | str] = []
    for system, base in pairs:
        try:
            out.append(paired_test(system.predictions, base.predictions))
        except ValueError as err:
            out.append(str(err))
    for metric in ("ua", "wa"):
        adjusted = holm([t[metric]["p"] if isinstance(t, dict) else None for t in out])
        for t, adj in zip(out, adjusted):
            if isinstance(t, dict):
                t[metric]["p_holm"] = adj
    return out


def findings(pairs: list[tuple[str, str]], tests: list[dict | str], metric: str = "ua") -> str:
    """The one sentence of a table that claims differences: only those whose Holm-adjusted p < ALPHA."""
    held = [
        f"{system} vs {base} ({100 * t[metric]['delta']:+.2f} {metric.upper()}, Holm p {format_p(t[metric]['p_holm'])})"
        for (system, base), t in zip(pairs, tests)
        if isinstance(t, dict) and t[metric]["p_holm"] < ALPHA
    ]
    head = f"Differences in {metric.upper()} that hold after Holm's correction within this table (adjusted p < {ALPHA})"
    if not held:
        return f"{head}: none; no difference here is distinguishable from noise at this level."
    return f"{head}: {'; '.join(held)}. No other difference here is distinguishable from noise at this level."


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
    head evaluated on each fold's test session once per training seed) as a row, for every
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
    improvised = {u.utt_id: "improvised" if u.improvised else "scripted" for u in manifest}
    groups, unit = clusters_of(manifest)
    stats = summarize(pred, groups=groups, unit=unit)
    for fold, entry in stats["folds"].items():  # each fold's validation speakers, as a metrics JSON holds them
        entry |= folds.get(fold, {})
    metrics = (
        stats
        | {"by_improvised": breakdown(pred, improvised.__getitem__)}
        | {
            "experiment": name,
            "model": "mha_aux",
            "features": "finetuned",
            "speech_store": "speech",
            "speech_levels": ["frame"],
            "text_level": "token",
            "aux_matching": ft.fusion.aux_matching,
            "aux_unimodal": ft.fusion.aux_unimodal,
            "aux_unimodal_on": ft.fusion.aux_unimodal_on,
            "aux_matching_negatives": ft.fusion.aux_matching_negatives,
            "layers": ft.fusion.layers,
            "probe": None,
            "end_to_end": True,
            **({"finetune_variant": ft.tag} if ft.tag else {}),
            "classes": pred.classes,
            "seeds": seeds,
            "n_utterances": len(np.unique(pred.utt_ids)),
            "validation": {"ua": {"mean": float(np.mean(val)), "std": sd(val)}},
        }
    )
    return Experiment(metrics, pred)


def check_inputs(path: Path, metrics: dict, params: Params) -> None:
    """Refuse a metrics file whose stores were built from another segment table or manifest than
    the current ones (:func:`mger.features.extract.check_store_inputs`); where the segment table
    does not exist there is nothing to compare with, and a note says so."""
    from mger.core.transcripts import manifest_of_store  # asr (#33)
    from mger.features.cache import CacheError
    from mger.features.extract import check_store_inputs

    segments = Path(params.align.out) / "segments.h5"
    if not segments.is_file():
        return
    stores = {e["path"] for fold in metrics["provenance"]["stores"].values() for e in fold.values()}
    for store in sorted(stores):
        try:
            check_store_inputs(
                store, manifest_of_store(store, params.prepare.manifest, params.transcribe.manifest), segments
            )
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
            ORDER.index(e.metrics["model"]) if e.metrics["model"] in ORDER else 99,
            _features(e.metrics) != "frozen",
            e.name,
        ),
    )


# --- the ablation steps with paired tests ---------------------------------------------------------


def ablation_pairs(rows: list[Experiment]) -> list[tuple[str, Experiment, Experiment]]:
    """(step, baseline, system) for each step the report tests: text vs each fusion, frozen vs
    fine-tuned, mha without vs with each auxiliary task, single vs multi-granularity."""
    pairs = []

    def by_features(e: Experiment, model: str) -> list[Experiment]:  # same encoders (a text row: any store)
        return [
            x
            for x in rows
            if x.metrics["model"] == model
            and _features(x.metrics) == _features(e.metrics)
            and (model == "text" or _store(x.metrics) == _store(e.metrics))
        ]

    for e in rows:
        m = e.metrics
        if m["model"] in FUSION:
            pairs += [("text vs fusion", t, e) for t in by_features(e, "text")]
        if m["model"] == "mha_aux" and _aux(m):
            pairs += [
                ("mha without vs with auxiliary tasks", b, e)
                for b in by_features(e, "mha_aux")
                if not _aux(b.metrics)
                and b.metrics["speech_levels"] == m["speech_levels"]
                and b.metrics.get("layers") == m.get("layers")
                and bool(b.metrics.get("end_to_end")) == bool(m.get("end_to_end"))  # end to end vs end to end
            ]
        if m["model"] == "multigranular":
            pairs += [
                ("single vs multi-granularity", a, e)
                for a in by_features(e, "audio")
                if len(a.metrics["speech_levels"]) == 1 and a.metrics["speech_levels"][0] in m["speech_levels"]
            ]
    frozen = {_same_model(e.metrics): e for e in rows if _features(e.metrics) == "frozen"}
    pairs += [
        ("frozen vs fine-tuned", frozen[_same_model(e.metrics)], e)
        for e in rows
        if _features(e.metrics) == "fine-tuned" and _same_model(e.metrics) in frozen
    ]
    return pairs


def ablation_lines(rows: list[Experiment]) -> list[str]:
    lines = [
        "## Ablation steps with paired tests",
        "",
        "Δ = system − baseline on the same test utterances, folds and seeds (fold-averaged, points); p: "
        "two-sided approximate randomisation (one swap per utterance shared by every seed); Holm: the p "
        "adjusted by Holm's method over all steps of this table (UA and WA columns each one family). A step "
        "is a claim only where its Holm-adjusted p < 0.05.",
        "",
        "| step | baseline | system | Δ UA | p (UA) | Holm p (UA) | Δ WA | p (WA) | Holm p (WA) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    steps = ablation_pairs(rows)
    tests = _tests([(system, base) for _, base, system in steps])
    for (step, base, system), test in zip(steps, tests):
        if isinstance(test, str):
            lines.append(f"| {step} | {base.name} | {system.name} | not paired: {test} | | | | | |")
            continue
        lines.append(
            f"| {step} | {base.name} | {system.name} | {100 * test['ua']['delta']:+.2f} | "
            f"{_p_cells(test['ua']['p'], test['ua']['p_holm'])} | {100 * test['wa']['delta']:+.2f} | "
            f"{_p_cells(test['wa']['p'], test['wa']['p_holm'])} |"
        )
    names = [(system.name, base.name) for _, base, system in steps]
    return lines + ["", findings(names, tests, "ua"), "", findings(names, tests, "wa"), ""]


# --- the papers' tables, in their row order --------------------------------------------------------

Match = tuple[str, dict]  # (row name, the metrics fields a row must have)
ZHAO_ROWS: list[Match] = [
    *[
        (f"wav2vec 2.0, {lv} level", {"model": "audio", "speech_levels": [lv]})
        for lv in ("frame", "phone", "syllable", "word")
    ],
    ("wav2vec 2.0, multi-granularity", {"model": "multigranular"}),
    ("BERT", {"model": "text"}),
    ("co-attention, one level", {"model": "coattention", "n_levels": 1}),
    ("co-attention, multi-granularity", {"model": "coattention", "n_levels": "many"}),
    ("late fusion", {"model": "late"}),
    ("co-attention + late fusion (full system)", {"model": "combined"}),
]
SUN_ROWS: list[Match] = [
    ("BERT", {"model": "text"}),
    ("Wav2vec2", {"model": "audio", "speech_levels": ["frame"]}),
    ("BERT+Wav2vec2+FC", {"model": "fc"}),
    ("BERT+Wav2vec2+CA", {"model": "mha_aux", "aux": []}),
    ("+CA+Aux1 (matching)", {"model": "mha_aux", "aux": ["matching"]}),
    ("+CA+Aux2 (unimodal)", {"model": "mha_aux", "aux": ["unimodal"]}),
    ("+CA+Aux1&2", {"model": "mha_aux", "aux": ["matching", "unimodal"]}),
    ("end to end (encoders fine-tuned with the fusion head)", {"end_to_end": True}),
]


def _matches(m: dict, want: dict) -> bool:
    if m.get("end_to_end") and "end_to_end" not in want:  # its own row only
        return False
    for key, value in want.items():
        if key == "n_levels":
            n = len(m["speech_levels"])
            if (value == 1) != (n == 1):
                return False
        elif key == "aux":
            if _aux(m) != value:
                return False
        elif m.get(key) != value:
            return False
    return True


def _reads(m: dict, models: dict[str, str]) -> str:
    """Which speech store and encoder a row reads, and in which state (``– (text only)`` for text)."""
    if _inputs(m)[1] is None:
        return "– (text only)"
    return f"{_store(m)} store: {models.get(_store(m), 'encoder not in params')}, {_inputs(m)[0]}"


def _paper_row(label: str, m: dict, models: dict[str, str]) -> str:
    """The paper's row name, or, where the row reads another speech encoder than the paper's
    wav2vec 2.0 (e.g. eGeMAPS), that encoder's name in its place, the paper's name beside it."""
    model = models.get(_store(m), _store(m))
    if _inputs(m)[1] is None or "wav2vec2" in re.sub(r"[^a-z0-9]", "", model.lower()):
        return label
    for paper in ("wav2vec 2.0", "Wav2vec2"):
        if paper in label:
            return f"{label.replace(paper, model)} (in the paper's {paper} row)"
    return label


def paper_table(
    title: str,
    note: str,
    spec: list[Match],
    rows: list[Experiment],
    models: dict[str, str],
    k_sweep: bool = False,
) -> list[str]:
    """One paper's table layout, filled with this run's rows of each kind (frozen and fine-tuned),
    each saying which speech store and encoder it read (``models``: store name → encoder)."""
    lines = [
        f"## {title}",
        "",
        note,
        "",
        f"WA and UA: {SD_NOTE}; UA 95% CI: the widest of the row's three intervals (which one beside it).",
        "",
        "| row (paper) | experiment | reads (speech store: encoder, state) | WA | UA | UA 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for label, want in spec:
        found = [e for e in rows if _matches(e.metrics, want)]
        sweep = k_sweep and want.get("aux") == ["matching", "unimodal"]
        if sweep:
            found.sort(key=lambda e: (e.metrics.get("layers") or 0, _encoder(e.metrics)))
        for e in found or [None]:
            if e is None:
                lines.append(f"| {label} | not run | | | | |")
                continue
            m = e.metrics
            name = _paper_row(label, m, models)
            name = f"{name}, K={m.get('layers')}" if sweep else name
            lines.append(
                f"| {name} | {e.name} | {_reads(m, models)} | {_cell(m['wa'])} | {_cell(m['ua'])} | {_ci_cell(m)} |"
            )
    return lines + [""]


def variants_note(ft: FinetuneConfig) -> str:
    """With several fine-tuning variants: what each one is, for the Sun table ('' otherwise)."""
    if len(ft.variants) < 2:
        return ""
    parts = []
    for name in ft.variants:
        v = ft.variant(name)
        aux = [a for a, w in (("matching", v.fusion.aux_matching), ("unimodal", v.fusion.aux_unimodal)) if w > 0]
        what = (
            f"encoders fine-tuned end to end with the fusion head, auxiliary losses: {' + '.join(aux) or 'none'}"
            if v.objective == "fusion"
            else "each encoder fine-tuned alone (utterance objective)"
        )
        parts.append(f"*{name}*: {what}")
    return (
        " A fine-tuned row's speech-features cell names the fine-tuning variant its encoders come from: "
        + "; ".join(parts)
        + "."
    )


def paper_lines(rows: list[Experiment], models: dict[str, str], finetune: FinetuneConfig | None = None) -> list[str]:
    return [
        *paper_table(
            "Zhao, Wang & Wang (Interspeech 2022): the ablation in the paper's row order",
            "Our reading of the paper's system (docs/papers.md); this run's corpus and encoders, not the paper's. "
            "A row that reads another speech encoder than wav2vec 2.0 is named by that encoder.",
            ZHAO_ROWS,
            rows,
            models,
        ),
        *paper_table(
            "Sun, He & Han (ICASSP 2023): the table in the paper's row order, with the K sweep",
            "CA = the K-layer multi-head attention fusion; Aux1 = audio–text matching, Aux2 = unimodal "
            "heads (our reading, docs/papers.md). The K sweep is the +CA+Aux1&2 row at each K run. A row that "
            "reads another speech encoder than wav2vec 2.0 is named by that encoder."
            + (variants_note(finetune) if finetune else ""),
            SUN_ROWS,
            rows,
            models,
            k_sweep=True,
        ),
    ]


# --- the report -------------------------------------------------------------------------------------


def synthetic_corpus(params: Params) -> bool:
    """Whether prepare.root is the synthetic demo corpus (`mger synth` writes truth/ beside its tree)."""
    return (Path(params.prepare.root) / "truth" / "words.jsonl").is_file()


def _corpus_line(params: Params, m: dict) -> str:
    root = Path(params.prepare.root)
    line = f"Corpus: `{root}`, {m['n_utterances']} utterances, classes {', '.join(m['classes'])}."
    if synthetic_corpus(params):
        line += (
            " This is the synthetic demo corpus (eSpeak NG voices in IEMOCAP's layout): its figures say "
            "whether the pipeline works, not how well the papers' systems recognise human emotion, and are "
            "not comparable to any published IEMOCAP result."
        )
    align = Path(params.align.report)
    if align.is_file():
        a = json.loads(align.read_text(encoding="utf-8"))
        line += (
            f" Alignment ({a['backend']}): {a['aligned']} aligned, {a['uniform_fallback']} by the uniform fallback "
            f"(marked), {a['dropped']} dropped; {a.get('silence_or_noise', 0)} of the failures were silence or "
            f"noise ({align})."
        )
    return line


def _seeds_line(m: dict) -> str:
    n = len(m["seeds"])
    note = " (fewer than the 3 seeds real-data settings default to: a demo setting)" if n < 3 else ""
    return f"Training seeds: {m['seeds']}{note}; the validation speakers of each fold do not depend on them."


def validation_lines(rows: list[Experiment]) -> list[str]:
    """Each fold's validation speakers and how they were chosen (:mod:`mger.core.splits`), one
    line per fold (a row whose folds validated on other speakers, such as an end-to-end row, gets
    its own lines), any split warning, and which rows' validation UA is cross-fitted."""
    by_split: dict[str, list[str]] = {}
    for e in rows:
        folds = {f: entry.get("val_speakers", []) for f, entry in e.metrics["folds"].items()}
        by_split.setdefault(json.dumps(folds, sort_keys=True), []).append(e.name)
    entries = [entry for e in rows for entry in e.metrics["folds"].values()]
    how = sorted({entry["validation"] for entry in entries if entry.get("validation")})
    lines = [
        "Validation speakers (carved from each fold's training sessions by fold and `split.seed`"
        + (f"; {'; '.join(how)}" if how else "")
        + "):",
        "",
    ]
    for i, (folds, names) in enumerate(sorted(by_split.items(), key=lambda kv: -len(kv[1]))):
        if len(by_split) > 1:
            lines.append(f"- {'most experiments' if i == 0 else 'experiments ' + ', '.join(names)}:")
        indent = "  " if len(by_split) > 1 else ""
        split = json.loads(folds)
        lines += [
            f"{indent}- fold {f}: validation {', '.join(split[f]) or 'not recorded'}"
            for f in sorted(split, key=lambda f: (len(f), f))
        ]
    lines.append("")
    for warning in sorted({entry["split_warning"] for entry in entries if entry.get("split_warning")}):
        lines += [f"**Warning**: {warning}.", ""]
    crossed = [e.name for e in rows if e.metrics.get("validation_scoring", "").startswith("cross-fitted")]
    if crossed:
        lines += [
            f"Validation UA of {', '.join(crossed)} is cross-fitted: fusion weights fitted on one half of the "
            "validation utterances score the other half (test predictions use weights fitted on all of them).",
            "",
        ]
    return lines


def reference_of(e: Experiment, rows: list[Experiment]) -> Experiment | None:
    """The linear probe on the same inputs (speech, text or both; same encoders and speech store)
    as ``e``: a fusion row's reference is the bimodal probe on its store, never a unimodal one."""
    m = e.metrics
    if m["model"] == "probe":
        return None
    inputs = "speech" if m["model"] in ("audio", "multigranular") else "text" if m["model"] == "text" else "both"
    probes = _probes(rows, inputs, m)
    # the probe on the model's own levels (e.g. openSMILE functionals), else on the utterance level, else any
    for wanted in (m["speech_levels"], ["utterance"]):
        same = [x for x in probes if x.metrics["speech_levels"] == wanted or inputs == "text"]
        if same:
            return same[0]
    return probes[0] if probes else None


def _probes(rows: list[Experiment], inputs: str, like: dict) -> list[Experiment]:
    """Every linear probe on ``inputs`` (speech, text or both) of the features ``like`` reads."""
    want = _inputs({"model": "probe", "probe": inputs, "features": like.get("features"), "speech_store": _store(like)})
    return [
        x for x in rows if x.metrics["model"] == "probe" and x.metrics["probe"] == inputs and _inputs(x.metrics) == want
    ]


def reference_lines(rows: list[Experiment]) -> list[str]:
    """Per speech features: the best audio-only model and the best fusion model, each chosen by
    validation UA, against its linear probe on the same inputs (paired tests on test, Holm-adjusted
    over this table)."""
    lines = [
        "## The best models against their linear-probe references",
        "",
        "Per speech features, the audio-only and the fusion model with the highest **validation** UA, "
        "against the linear probe on the same inputs (an audio model: the speech probe on its store; a "
        "fusion model: the speech + text probe on its store), by paired approximate randomisation on the "
        "test predictions; Δ in UA points; Holm: adjusted over this table.",
        "",
        "| speech features | group | best by validation | reference | Δ UA | p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, dict[str, list[Experiment]]] = {}
    for e in rows:
        group = (
            "audio only"
            if e.metrics["model"] in ("audio", "multigranular")
            else "fusion"
            if e.metrics["model"] in FUSION
            else None
        )
        if group:
            groups.setdefault(_inputs(e.metrics), {}).setdefault(group, []).append(e)
    best: list[tuple[str, Experiment]] = []
    for _, by_group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for group, members in sorted(by_group.items()):
            best.append((group, max(members, key=lambda e: (e.metrics["validation"]["ua"]["mean"], e.name))))
    pairs = [(e, ref) for _, e in best if (ref := reference_of(e, rows)) is not None]
    tested = _tests(pairs)
    tests = iter(tested)
    for group, e in best:
        ref = reference_of(e, rows)
        if ref is None:
            what = "bimodal (speech + text)" if group == "fusion" else "speech"
            lines.append(
                f"| {_encoder(e.metrics)} | {group} | {e.name} | no {what} probe on these inputs | – | – | – |"
            )
            continue
        test = next(tests)
        cells = (
            f"not paired ({test}) | – | –"
            if isinstance(test, str)
            else f"{100 * test['ua']['delta']:+.2f} | {_p_cells(test['ua']['p'], test['ua']['p_holm'])}"
        )
        lines.append(f"| {_encoder(e.metrics)} | {group} | {e.name} | {ref.name} | {cells} |")
    return lines + ["", findings([(e.name, ref.name) for e, ref in pairs], tested), ""]


def main_table(rows: list[Experiment]) -> list[str]:
    """The main table, and the sentence naming the differences to the probes that hold after Holm."""
    pairs = [(e, ref) for e in rows if (ref := reference_of(e, rows)) is not None]
    tests = dict(zip((e.name for e, _ in pairs), zip(pairs, _tests(pairs))))
    lines = [
        "| experiment | system | speech features | WA | UA | UA 95% CI (widest; which) | F1 | validation UA | "
        "Δ UA vs its probe (p, Holm p; probe) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        m = e.metrics
        if e.name not in tests:
            versus = "reference" if m["model"] == "probe" else "–"
        else:
            (_, ref), test = tests[e.name]
            versus = (
                f"not paired ({test})"
                if isinstance(test, str)
                else f"{100 * test['ua']['delta']:+.2f} (p {format_p(test['ua']['p'])}, Holm "
                f"{format_p(test['ua']['p_holm'])}; {ref.name})"
            )
        lines.append(
            f"| {e.name} | {_label(m)} | {_encoder(m)} | {_cell(m['wa'])} | {_cell(m['ua'])} | {_ci_cell(m)} | "
            f"{_cell(m['f1'])} | {_cell(m['validation']['ua'])} | {versus} |"
        )
    found = findings([(e.name, ref.name) for e, ref in pairs], [t for _, t in tests.values()])
    return lines + ["", found]


def detail_lines(rows: list[Experiment]) -> list[str]:
    classes = rows[0].metrics["classes"]
    lines = [
        "## Pooled over folds, per-class recall, improvised vs scripted",
        "",
        "Pooled: all folds' test utterances at once (mean over seeds); recall per class pooled likewise. "
        "Improvised / scripted: pooled WA and UA over the test utterances of each kind (n utterances). "
        "Scripted IEMOCAP sessions repeat the same lines across sessions, which favours text under "
        "leave-one-session-out.",
        "",
        f"| experiment | pooled WA | pooled UA | {' | '.join('recall ' + c for c in classes)} | "
        "improvised WA / UA (n) | scripted WA / UA (n) |",
        "|---|---|---|" + "---|" * len(classes) + "---|---|",
    ]
    for e in rows:
        m = e.metrics
        recall = " | ".join(_pct(m["per_class_recall"][c]) for c in classes)
        kinds = [m["by_improvised"].get(k) for k in ("improvised", "scripted")]
        cells = [f"{_pct(k['wa'])} / {_pct(k['ua'])} ({k['n']})" if k else "–" for k in kinds]
        lines.append(
            f"| {e.name} | {_pct(m['pooled']['wa'])} | {_pct(m['pooled']['ua'])} | {recall} | {cells[0]} | {cells[1]} |"
        )
    return lines + [""]


def interval_lines(rows: list[Experiment]) -> list[str]:
    """Every row's three 95% intervals of fold-averaged UA, and which is the widest."""
    lines = [
        "## Intervals of test UA",
        "",
        "Three 95% intervals of fold-averaged UA (%): (1) bootstrap over test utterances within folds, "
        "**conditional on the trained models** (it ignores training variance and that utterances of one "
        "dialogue or speaker are alike); (2) the bootstrap over whole dialogues within folds (a speaker where "
        "no dialogue is known; the unit is named), the same resample for every seed; (3) a t-interval over "
        "folds, seeds averaged first (n_folds − 1 degrees of freedom), which carries training variance and "
        "the variation between sessions. The main table shows the widest.",
        "",
        "| experiment | UA | utterances (conditional) | clustered (unit) | t over folds | widest |",
        "|---|---|---|---|---|---|",
    ]
    for e in rows:
        m = e.metrics

        def cell(key: str) -> str:
            ci = m["ua"].get(key)
            return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "–"

        unit = f" ({m['clustered_by']}s)" if m["ua"].get("ci95_clustered") else ""
        lines.append(
            f"| {e.name} | {_cell(m['ua'])} | {cell('ci95')} | {cell('ci95_clustered')}{unit} | "
            f"{cell('ci95_folds')} | {widest_interval(m)[2]} |"
        )
    return lines + [""]


def published_lines(synthetic: bool) -> list[str]:
    """The published IEMOCAP figures in their own block; with the synthetic corpus it says that no
    row of this report may be set beside them."""
    lines = [
        "## Published IEMOCAP results (for orientation only; not comparable to the tables above)",
        "",
        *(
            [
                "**This report's corpus is synthetic** (eSpeak NG voices): none of its figures is an IEMOCAP "
                "result, and none may be set beside the figures below.",
                "",
            ]
            if synthetic
            else []
        ),
        "Pretrained encoders on real IEMOCAP speech, the systems as we read the papers' abstracts (the full "
        "texts, arXiv 2207.04697 and 2302.13661, were not obtainable here). The evaluation protocol "
        "(leave-one-session-out) is our reading: neither abstract states it. mger implements these systems "
        "in our reading; it has not reproduced these numbers.",
        "",
        "| paper | system | reported |",
        "|---|---|---|",
    ]
    return lines + [f"| {paper} | {system} | {figure} |" for paper, system, figure in PUBLISHED] + [""]


def write_report(params: Params, only: Sequence[str] | None = None) -> Path:
    """reports/results.md, its figures and the headline figures DVC compares
    (``report.metrics``); ``only``: report these experiments alone."""
    rows = load_experiments(params, only)
    if not rows:
        raise StageError("train.experiments and train.finetuned_experiments are empty: nothing to report")
    figures = Path(params.report.figures)
    first = rows[0].metrics
    best = max(rows, key=lambda e: (e.metrics["validation"]["ua"]["mean"], e.name))
    models = {name: cfg.model for name, cfg in params.features.speech_stores.items()}
    table = main_table(rows)
    lines = [
        "# Results",
        "",
        _corpus_line(params, first),
        "",
        f"Leave-one-session-out over {len(first['folds'])} folds. {_seeds_line(first)} WA = overall accuracy, "
        f"UA = mean per-class recall, F1 = macro-F1, all in %; WA, UA, F1 and validation UA: {SD_NOTE}. "
        f"Statistics: {METHOD}.",
        "",
        *validation_lines(rows),
        *table,
        "",
        "Δ UA vs its probe: the paired difference (points; approximate-randomisation p, and p adjusted by Holm's "
        "method over this column) to the linear probe on the same inputs and encoders (standardised logistic "
        "regression on utterance means, C chosen on validation; models/probe.py). A model that does not beat "
        "its probe has not earned its complexity. UA 95% CI: the widest of the row's three intervals (utterances: "
        "bootstrap conditional on the trained models; dialogues / speakers: clustered bootstrap; folds t: "
        't-interval over folds), see "Intervals of test UA".',
        "",
        *transcript_lines(  # asr (#33): WER beside the table, and the gold-vs-ASR pairs
            params.transcribe.report, params.transcribe.source, [(e.metrics, e.predictions) for e in rows]
        ),
        f"Best system by **validation** UA (the test sessions choose nothing): {best.name} (validation UA "
        f"{_cell(best.metrics['validation']['ua'])}; its test UA {_cell(best.metrics['ua'])}, {SD_NOTE}).",
        "",
        *reference_lines(rows),
        *ablation_lines(rows),
        *interval_lines(rows),
        *paper_lines(rows, models, params.finetune),
        *detail_lines(rows),
        *published_lines(synthetic_corpus(params)),
        *layer_weight_lines(rows, figures),
        "![confusion of the best system by validation UA](figures/confusion_best.png)",
        "![granularity](figures/ua_by_granularity.png)",
        "![fusion](figures/ua_by_fusion.png)",
        "",
    ]
    _plot_confusion(best.metrics, figures / "confusion_best.png")
    audio = [e.metrics for e in rows if e.metrics["model"] in ("audio", "multigranular")]
    _plot_bars(
        audio,
        figures / "ua_by_granularity.png",
        "Test UA by speech granularity (audio only)",
        lambda m: (
            "+".join(m["speech_levels"]) + {"frozen": "", "fine-tuned": " (ft)"}.get(_encoder(m), f" ({_encoder(m)})")
        ),
    )
    fusion = [e.metrics for e in rows if e.metrics["model"] not in ("audio", "multigranular")]
    _plot_bars(fusion, figures / "ua_by_fusion.png", "Test UA by fusion type", lambda m: m["experiment"])
    out = Path(params.report.out)
    write_text_atomic(out, "\n".join(lines))
    write_json(params.report.metrics, headline(rows, best))
    print("\n".join(table))
    print(
        f"report: {len(rows)} experiments → {out}, figures in {figures}, headline figures in "
        f"{params.report.metrics}; best by validation UA: {best.name}"
    )
    return out


def headline(rows: list[Experiment], best: Experiment) -> dict:
    """The figures DVC compares across runs (``report.metrics``, ``dvc exp show``), in %: the
    best row by validation UA, then each row's test UA and WA and validation UA (means over folds)."""

    def figures(m: dict) -> dict:
        test = {"test_ua": round(100 * m["ua"]["mean"], 2), "test_wa": round(100 * m["wa"]["mean"], 2)}
        return test | {"val_ua": round(100 * m["validation"]["ua"]["mean"], 2)}

    return {"best_by_validation": {"experiment": best.name} | figures(best.metrics)} | {
        e.name: figures(e.metrics) for e in rows
    }


def layer_weight_lines(rows: list[Experiment], figures: Path) -> list[str]:
    """Rows that learned a weighted sum of encoder layers (``layer_weights: learned``): their
    mean softmax weight per stored layer, and ``layer_weights.png`` (every fold and seed as a
    point, the mean as a line); nothing when no row did."""
    weighted = [e for e in rows if e.metrics.get("layer_weights", {}).get("mode") == "learned"]
    if not weighted:
        return []
    lines = [
        "## Learned layer weights",
        "",
        "Softmax weights of the encoder layers each classifier learned with its own weights (SUPERB's "
        "weighted sum; hidden state 0 = the transformer's input), at its best validation epoch: the "
        "mean over folds and seeds (every one in the metrics JSON and the figure).",
        "",
        "| experiment | mean weight per layer (hidden state: weight) | heaviest |",
        "|---|---|---:|",
    ]
    for e in weighted:
        lw = e.metrics["layer_weights"]
        cells = ", ".join(f"{i}: {w:.3f}" for i, w in zip(lw["layers"], lw["mean"]))
        lines.append(f"| {e.name} | {cells} | {lw['layers'][int(np.argmax(lw['mean']))]} |")
    lines += ["", "![learned layer weights](figures/layer_weights.png)", ""]
    _plot_layer_weights([e.metrics for e in weighted], figures / "layer_weights.png")
    return lines


# --- figures, each written atomically -------------------------------------------------------------


def _plot_layer_weights(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for k, m in enumerate(rows):
        lw = m["layer_weights"]
        layers = lw["layers"]
        colour = f"C{k % 10}"
        for r in lw["per_fold"]:
            ax.plot(layers, r["weights"], "o", color=colour, alpha=0.35, markersize=4)
        ax.plot(layers, lw["mean"], "-", color=colour, label=m["experiment"])
        ax.set_xticks(layers)
        ax.axhline(1 / len(layers), color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("encoder layer (hidden state; 0 = transformer input)")
    ax.set_ylabel("softmax weight")
    ax.set_title("Learned layer weights: folds and seeds (points), mean (line), equal (dotted)", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        save_figure_atomic(fig, path, dpi=120)
    finally:
        plt.close(fig)


def _plot_confusion(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(m["confusion"], float)
    norm = cm / cm.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(cm)), m["classes"])
    ax.set_yticks(range(len(cm)), m["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m['experiment']} (best by validation UA):\ntest recall per class, all folds and seeds", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _plot_bars(rows: list[dict], path: Path, title: str, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1), 3.5))
    if rows:
        ua = np.array([100 * m["ua"]["mean"] for m in rows])
        ci = 100 * np.array([widest_interval(m)[:2] for m in rows]).T
        ax.bar(range(len(rows)), ua, yerr=np.abs(ci - ua), color="#4c72b0", capsize=3)
        ax.set_xticks(range(len(rows)), [name(m) for m in rows], rotation=30, ha="right")
    ax.set_ylabel("test UA (%), widest 95% CI")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
