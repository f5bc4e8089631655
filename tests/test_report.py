"""Experiments end to end on small real stores: validation-only selection, predictions,
statistics, provenance and the report (mger.models.experiment, mger.models.stats, mger.models.report)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mger.alignment.base import Alignment, Segment
from mger.alignment.table import write_table
from mger.core.config import ExperimentSpec, FeaturesConfig, Params, params_from_dict
from mger.core.manifest import read_manifest, write_manifest
from mger.core.reporting import StageError
from mger.features.cache import CacheError, Ragged, write_store
from mger.models.experiment import run_experiment
from mger.models.metrics import all_metrics
from mger.models.predictions import Predictions, read_predictions, write_predictions
from mger.models.probe import C_GRID, LinearProbe, item_means
from mger.models.report import Experiment, load_experiments, validation_lines, write_report
from mger.models.stats import bootstrap_ci, paired_test, summarize
from tests.builders import iemocap_row

CLASSES = ["ang", "hap", "neu", "sad"]
EXPERIMENTS = {
    "probe_speech": {"model": "probe", "probe": "speech", "speech_levels": ["word"]},
    "probe_text": {"model": "probe", "probe": "text"},
    "probe_both": {"model": "probe", "probe": "both", "speech_levels": ["word"]},
    "text": {"model": "text", "text_level": "token"},
    "audio_word": {"model": "audio", "speech_levels": ["word"]},
    "audio_phone": {"model": "audio", "speech_levels": ["phone"]},
    "multigranular": {"model": "multigranular", "speech_levels": ["phone", "word"]},
    "late": {"model": "late", "speech_levels": ["word"]},
    "mha": {"model": "mha_aux", "speech_levels": ["word"]},
    "mha_matching": {"model": "mha_aux", "speech_levels": ["word"], "aux_matching": 0.5},
    "fc": {"model": "fc", "speech_levels": ["word"]},
    "mha_both_k1": {
        "model": "mha_aux",
        "speech_levels": ["word"],
        "aux_matching": 0.5,
        "aux_unimodal": 0.5,
        "layers": 1,
    },
    "probe_eg": {"model": "probe", "probe": "speech", "speech_levels": ["functionals"], "speech_store": "eg"},
    "eg_word": {"model": "audio", "speech_levels": ["word"], "speech_store": "eg"},
    "eg_late": {"model": "late", "speech_levels": ["functionals"], "speech_store": "eg"},
}
EG_MODEL = "opensmile:eGeMAPSv02"  # the fingerprint's model name; the store itself is built here


def _corpus(root: Path) -> tuple[Path, FeaturesConfig]:
    """3 sessions x 2 speakers x 12 utterances; text rows carry the label, speech rows a little."""
    rng = np.random.default_rng(0)
    utts = []
    for s in (1, 2, 3):
        for g in "FM":
            for k in range(12):
                uid = f"Ses0{s}{'F' if k < 6 else 'M'}_{'impro' if k % 2 else 'script'}01_{g}{k:03d}"
                label = CLASSES[(k + s) % 4]
                utts.append(
                    iemocap_row(
                        uid,
                        s,
                        uid[:14],
                        f"Ses0{s}_{g}",
                        g,
                        k % 2 == 1,
                        "/none.wav",
                        1.0,
                        "hi",
                        label,
                        label,
                        3.0,
                        3.0,
                        3.0,
                    )
                )
    write_manifest(root / "manifest.jsonl", utts)

    def rows(label: str, n: int, signal: float) -> np.ndarray:
        x = rng.standard_normal((n, 8)).astype(np.float32)
        x[:, CLASSES.index(label)] += signal
        return x

    ids = [u.utt_id for u in utts]
    feats = root / "features"
    defaults = FeaturesConfig()
    speech_fp = {"model": defaults.speech.model, "layer": "last", "pooling": "mean"}
    text_fp = {"model": defaults.text.model, "layer": "last", "markers": "drop"}
    write_store(
        feats / "speech.h5",
        ids,
        {lv: [rows(u.label, n, 0.8) for u in utts] for lv, n in (("word", 3), ("phone", 6))},
        {"fingerprint_sha256": "speech-v1", "kind": "speech", "fingerprint": json.dumps(speech_fp)},
    )
    write_store(
        feats / "text.h5",
        ids,
        {"token": [rows(u.label, 4, 2.0) for u in utts]},
        {"fingerprint_sha256": "text-v1", "kind": "text", "fingerprint": json.dumps(text_fp)},
    )
    eg_fp = {"model": EG_MODEL, "pooling": "mean"}  # a second speech store on another scale (Hz-like)
    features = FeaturesConfig(out=str(feats))
    for folder, level, n in ((feats, "word", 3), (Path(features.audio_out), "functionals", 1)):  # its two files
        write_store(
            folder / "speech-eg.h5",
            ids,
            {level: [100 * rows(u.label, n, 1.5) + 1000 for u in utts]},
            {"fingerprint_sha256": f"eg-{level}-v1", "kind": "speech", "fingerprint": json.dumps(eg_fp)},
        )
    return root / "manifest.jsonl", features


def _params(root: Path, manifest: Path, features: FeaturesConfig, experiments: dict) -> Params:
    """The report tests' params over ``_corpus``'s stores (benchmarks/golden_models.py trains with them too)."""
    return params_from_dict(
        {
            "prepare": {"manifest": str(manifest), "root": str(root / "corpus")},
            "features": {
                "out": features.out,
                "extra_speech": {"eg": {"model": EG_MODEL, "levels": ["word", "functionals"]}},
            },
            "train": {
                "epochs": 3,
                "patience": 3,
                "hidden": 16,
                "heads": 2,
                "layers": 1,
                "seeds": [0, 1],
                "metrics_dir": str(root / "metrics"),
                "epochs_dir": str(root / "epochs"),
                "predictions_dir": str(root / "predictions"),
                "experiments": experiments,
            },
            "report": {
                "out": str(root / "results.md"),
                "figures": str(root / "figures"),
                "metrics": str(root / "metrics.json"),
            },
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    manifest, features = _corpus(root)
    params = _params(root, manifest, features, EXPERIMENTS)
    results = {
        name: run_experiment(name, spec, params.train, params.features, manifest, split=params.split)
        for name, spec in params.train.experiments.items()
    }
    return {"params": params, "results": results, "root": root, "manifest": manifest}


def test_metrics_hold_validation_speakers_and_provenance(trained) -> None:
    for name, result in trained["results"].items():
        saved = json.loads((trained["root"] / "metrics" / f"{name}.json").read_text())
        assert set(saved["validation"]) == {"wa", "ua", "f1"} and 0 <= saved["validation"]["ua"]["mean"] <= 1
        for fold, entry in saved["folds"].items():
            # one woman and one man of the two training sessions (core.splits)
            assert [v[-1] for v in entry["val_speakers"]] == ["F", "M"] and entry["speaker_disjoint"]
            assert {v[:5] for v in entry["val_speakers"]} == {f"Ses0{s}" for s in (1, 2, 3) if s != int(fold)}
            assert entry["validation"].startswith("one speaker per gender") and entry["split_warning"] is None
            assert sorted(entry["seeds"]) == ["0", "1"] and set(entry["seeds"]["1"]) == {
                "wa",
                "ua",
                "f1",
                "val_wa",
                "val_ua",
                "val_f1",
            }
            assert entry["val_ua"] == pytest.approx(np.mean([v["val_ua"] for v in entry["seeds"].values()]))
        val_folds = [entry["val_ua"] for entry in saved["folds"].values()]
        assert saved["validation"]["ua"]["std"] == pytest.approx(np.std(val_folds, ddof=1), abs=1e-12)  # ddof=1
        stores = saved["provenance"]["stores"]["1"]  # the file of each input's role: functionals their own
        spec = EXPERIMENTS[name]
        assert ("audio" in stores) == ("functionals" in spec.get("speech_levels", []))
        for role, entry in stores.items():
            version = {"audio": "eg-functionals-v1", "speech": "eg-word-v1", "text": "text-v1"}[role]
            if spec.get("speech_store") != "eg" and role == "speech":
                version = "speech-v1"
            assert entry["fingerprint_sha256"] == version, (name, role)
        assert saved["speech_store"] == EXPERIMENTS[name].get("speech_store", "speech")
        crossed = (
            "cross-fitted (2 halves by speaker)" if EXPERIMENTS[name]["model"] in ("late", "combined") else "direct"
        )
        assert saved["validation_scoring"].startswith(crossed)
        assert saved["provenance"]["train"]["seeds"] == [0, 1] and saved["provenance"]["split_seed"] == 0
    # the split does not move with the training seeds: every experiment validates on the same speakers
    speakers = {name: {f: e["val_speakers"] for f, e in r["folds"].items()} for name, r in trained["results"].items()}
    assert len({json.dumps(v, sort_keys=True) for v in speakers.values()}) == 1


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_predictions_reproduce_the_metrics(trained, name: str) -> None:
    saved = json.loads((trained["root"] / "metrics" / f"{name}.json").read_text())
    pred = read_predictions(trained["root"] / "predictions" / f"{name}.csv")
    assert len(pred) == 2 * 72 and pred.classes == CLASSES  # every test utterance, two seeds
    per = {}
    for fold in (1, 2, 3):
        cells = [
            all_metrics(
                pred.label[(pred.fold == fold) & (pred.seed == s)], pred.pred[(pred.fold == fold) & (pred.seed == s)], 4
            )
            for s in (0, 1)
        ]
        per[fold] = {m: np.mean([c[m] for c in cells]) for m in ("wa", "ua")}
    for m in ("wa", "ua"):
        assert saved[m]["mean"] == pytest.approx(np.mean([per[f][m] for f in per]), abs=1e-12)
        assert saved[m]["std"] == pytest.approx(np.std([per[f][m] for f in per], ddof=1), abs=1e-12)
        for key in ("ci95", "ci95_clustered", "ci95_folds"):  # utterances, dialogues, t over folds
            assert saved[m][key][0] <= saved[m]["mean"] <= saved[m][key][1], key
    assert saved["clustered_by"] == "dialogue"
    assert np.allclose(pred.probs.sum(1), 1, atol=1e-5) and np.array_equal(pred.probs.argmax(1), pred.pred)
    assert saved["by_improvised"]["improvised"]["n"] + saved["by_improvised"]["scripted"]["n"] == 72


def test_predictions_round_trip(tmp_path) -> None:
    p = Predictions(
        CLASSES,
        np.array(["a", "b"]),
        np.array([1, 2]),
        np.array([0, 0]),
        np.array([0, 3]),
        np.array([1, 3]),
        np.array([[0.25, 0.5, 0.125, 0.125], [0.0, 0.0, 0.0, 1.0]]),
    )
    write_predictions(tmp_path / "p.csv", p)
    q = read_predictions(tmp_path / "p.csv")
    assert q.key() == p.key() and np.array_equal(q.pred, p.pred) and np.allclose(q.probs, p.probs)
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "a,1,0,ang,hap,0.250000,0.500000,0.125000,0.125000"


def _preds(correct: np.ndarray, n_folds: int = 2) -> Predictions:
    n = len(correct)
    labels = np.arange(n) % 4
    pred = np.where(correct, labels, (labels + 1) % 4)
    return Predictions(
        CLASSES,
        np.array([f"u{i:04d}" for i in range(n)]),
        np.arange(n) % n_folds,
        np.zeros(n, int),
        labels,
        pred,
        np.eye(4)[pred],
    )


def test_paired_test_separates_real_differences_from_noise() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(400) < 0.6
    same = paired_test(_preds(truth), _preds(truth))
    assert same["ua"]["delta"] == 0 and same["ua"]["p"] == 1.0
    better = truth | (rng.random(400) < 0.5)
    test = paired_test(_preds(better), _preds(truth))
    assert test["ua"]["delta"] > 0.1 and test["ua"]["p"] < 0.01
    flip = truth.copy()
    flip[:4] = ~flip[:4]  # four utterances differ: no evidence
    assert paired_test(_preds(flip), _preds(truth))["ua"]["p"] > 0.2


def test_bootstrap_ci_narrows_with_more_utterances() -> None:
    rng = np.random.default_rng(2)
    small, large = _preds(rng.random(80) < 0.7), _preds(rng.random(2000) < 0.7)
    w_small = np.diff(bootstrap_ci(small)["ua"])[0]
    w_large = np.diff(bootstrap_ci(large)["ua"])[0]
    assert 0 < w_large < w_small / 3
    assert bootstrap_ci(small) == bootstrap_ci(small)  # a fixed generator: the same table twice
    stats = summarize(large)
    assert stats["ua"]["ci95"][0] < stats["ua"]["mean"] < stats["ua"]["ci95"][1]
    assert stats["ua"]["ci95"][0] < 0.7 < stats["ua"]["ci95"][1]  # the rate the predictions were drawn with


def test_report_selects_by_validation_and_shows_statistics(trained) -> None:
    truth = Path(trained["params"].prepare.root) / "truth" / "words.jsonl"
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text("")  # what `mger synth` leaves beside its corpus
    out = write_report(trained["params"])
    text = out.read_text()
    assert "This is the synthetic demo corpus" in text and "not comparable to any published result" in text
    results = trained["results"]
    best = max(results, key=lambda n: (results[n]["validation"]["ua"]["mean"], n))
    assert f"Best system by **validation** UA (the test folds choose nothing): {best} " in text
    assert "| text vs fusion | text | late |" in text and "| text vs fusion | text | mha |" in text
    assert "| mha without vs with auxiliary tasks | mha | mha_matching |" in text
    assert "| single vs multi-granularity | audio_phone | multigranular |" in text
    assert "| single vs multi-granularity | audio_word | multigranular |" in text
    assert "UA 95% CI" in text and "recall ang" in text and "improvised WA / UA (n)" in text
    # what the numbers are about: corpus, protocol, class map, counts per partition and class (the manifest's)
    assert "Corpus: iemocap. Protocol: leave one group out (`split.protocol: loso`). Class map: 4class" in text
    assert (
        "| corpus | partition | ang | hap | neu | sad | all |" in text
        and "| iemocap | – | 18 | 18 | 18 | 18 | 72 |" in text
    )
    main = text[text.index("| experiment | system") : text.index("Δ UA vs its probe: the paired")]
    rows = {line.split(" | ")[0][2:]: line for line in main.splitlines() if line.startswith("| ")}
    assert rows["probe_both"].endswith("| reference |")
    for name, ref in (
        ("audio_word", "probe_speech"),
        ("multigranular", "probe_speech"),
        ("text", "probe_text"),
        ("late", "probe_both"),
        ("mha", "probe_both"),
        ("eg_word", "probe_eg"),
    ):
        p = r"(?:\d\.\d{3}|< 0\.001)"
        assert re.search(rf"\| [+-]\d+\.\d\d \(p {p}, Holm {p}; {ref}\) \|$", rows[name]), rows[name]
    assert rows["eg_late"].endswith("| – |") and "| eg |" in rows["eg_word"]  # no both-probe on eg: no reference
    refs = text[text.index("## The best models against") : text.index("## Ablation steps")]
    for features, group, ref in (
        ("eg", "audio only", "probe_eg"),
        ("frozen", "audio only", "probe_speech"),
        ("frozen", "fusion", "probe_both"),  # a fusion row against the bimodal probe on its store
    ):
        p = r"(?:\d\.\d{3}|< 0\.001)"
        assert re.search(rf"\| {features} \| {group} \| \w+ \| {ref} \| [+-]\d+\.\d\d \| {p} \| {p} \|", refs), refs
    assert "| eg | audio only | eg_word | probe_eg |" in refs  # the only eg audio model
    assert "| eg | fusion | eg_late | no bimodal (speech + text) probe on these inputs |" in refs
    assert not re.search(r"\| fusion \| \w+ \| probe_(speech|text|eg) \|", refs)  # never a unimodal probe
    assert "| text vs fusion | text | eg_late |" in text
    assert "Training seeds: [0, 1] (fewer than the 3 seeds" in text and "Leave-one-session-out over 3 folds." in text
    w2v = f"speech store: {FeaturesConfig().speech.model}, frozen"
    assert f"| wav2vec 2.0, word level | audio_word | {w2v} |" in text and f"| BERT+Wav2vec2+FC | fc | {w2v} |" in text
    assert "| co-attention, multi-granularity | not run |" in text and f"| late fusion | late | {w2v} |" in text
    assert f"| +CA+Aux1&2, K=1 | mha_both_k1 | {w2v} |" in text and "| +CA+Aux1 (matching) | mha_matching |" in text
    # an eGeMAPS row is named by its encoder, never as a wav2vec 2.0 level
    assert (
        f"| {EG_MODEL}, word level (in the paper's wav2vec 2.0 row) | eg_word | eg store: {EG_MODEL}, frozen |" in text
    )
    assert not re.search(r"\| wav2vec 2\.0[^|]*\| eg_", text) and "| late fusion | eg_late | eg store:" in text
    published = text[text.index("## Published IEMOCAP results (for orientation only; not comparable to the tables") :]
    assert "**This report's corpus is synthetic**" in published and "neither abstract states it" in published
    assert "abstracts state them" not in text
    table = text[text.index("| experiment | system") : text.index("## Published")]
    assert re.search(
        r"Validation speakers \(carved from each fold's training data by fold and `split.seed`; one speaker "
        r"per gender \(F, M\) from different training groups\):",
        text,
    )
    for fold, pair in ((1, "Ses0[23]"), (2, "Ses0[13]"), (3, "Ses0[12]")):
        assert re.search(rf"- fold {fold}: validation {pair}_F, {pair}_M\n", text), fold
    assert "Validation UA of eg_late, late is cross-fitted" in text and "**Warning**" not in text
    assert "78.42" not in table  # published numbers never sit beside these rows
    _check_statistics(text, trained)
    for png in ("confusion_best.png", "ua_by_granularity.png", "ua_by_fusion.png"):
        assert (trained["root"] / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    assert write_report(trained["params"]).read_text() == text  # the same table twice


def _check_statistics(text: str, trained: dict) -> None:
    """Holm beside every p, no "0.000", claims only where Holm p < 0.05, the widest interval in the
    main table, every "±" with its ddof, each fold's validation speakers."""
    assert "0.000" not in text.replace("100.00", "") and "< 0.001" in text
    assert "mean ± SD over folds (ddof=1)" in text and "Holm" in text
    ablation = text[text.index("## Ablation steps") : text.index("## Intervals of test UA")]
    claims = ablation[ablation.index("Differences in UA") :].split("\n")[0]
    seen = set()
    for line in ablation.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and re.fullmatch(r"[+-]\d+\.\d\d", cells[3]):
            claimed = f"{cells[2]} vs {cells[1]} (" in claims
            adjusted = 0.0 if cells[5] == "< 0.001" else float(cells[5])
            assert claimed == (adjusted < 0.05), (line, claims)
            seen.add(claimed)
            assert cells[5] == "< 0.001" or float(cells[5]) >= float(cells[4].replace("< ", "")), line
    assert seen == {True, False}  # the fixture has steps on both sides of the line
    intervals = text[text.index("## Intervals of test UA") : text.index("## Zhao")]
    main = text[text.index("| experiment | system") : text.index("Δ UA vs its probe: the paired")]
    for name in trained["results"]:
        row = next(line for line in intervals.splitlines() if line.startswith(f"| {name} |"))
        spans = [tuple(map(float, ci)) for ci in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", row)]
        assert len(spans) == 3 and all(0 <= lo <= hi <= 100 for lo, hi in spans), row
        widest = max(spans, key=lambda s: s[1] - s[0])
        shown = next(line for line in main.splitlines() if line.startswith(f"| {name} |"))
        assert f"[{widest[0]:.2f}, {widest[1]:.2f}] {row.split(' | ')[-1].rstrip(' |')}" in shown, (row, shown)
    saved = trained["results"]["text"]["folds"]
    for fold, entry in saved.items():
        assert f"- fold {fold}: validation {', '.join(entry['val_speakers'])}" in text


def test_report_covers_params_only_and_refuses_stale_or_missing(trained, tmp_path) -> None:
    params: Params = trained["params"]
    stray = Path(params.train.metrics_dir) / "old_experiment.json"
    stray.write_text("{}")  # not in params: ignored, not read
    write_report(params)
    stray.unlink()
    only = params_from_dict(
        {
            "prepare": {"root": params.prepare.root},
            "train": {"metrics_dir": params.train.metrics_dir, "experiments": {"missing": {"model": "text"}}},
        }
    )
    with pytest.raises(StageError, match=r"missing\.json: missing; run `mger train --experiment missing`"):
        write_report(only)
    saved = Path(params.train.metrics_dir) / "text.json"
    original = saved.read_text()
    saved.write_text(original[:200])  # cut mid-file
    try:
        with pytest.raises(StageError, match=r"text\.json: not valid JSON .*re-run `mger train --experiment text`"):
            write_report(params)
    finally:
        saved.write_text(original)
    changed = json.loads(original)
    changed["provenance"]["stores"]["2"]["text"]["fingerprint_sha256"] = "text-v0"
    saved.write_text(json.dumps(changed))
    try:
        with pytest.raises(StageError, match=r"text\.json: the text store .*text\.h5 \(fold 2\) has changed"):
            write_report(params)
    finally:
        saved.write_text(original)


def _damaged(trained, tmp_path: Path, damage: str) -> tuple[FeaturesConfig, ExperimentSpec, Path | None]:
    src = Path(trained["params"].features.out)
    feats = tmp_path / "features"
    shutil.copytree(src, feats)
    features, segments = FeaturesConfig(out=str(feats)), None
    spec = ExperimentSpec(model="audio", speech_levels=["word"])
    if damage == "nan":
        with h5py.File(feats / "speech.h5", "r+") as f:
            f["word"]["data"][7] = np.nan
    elif damage == "bytes":  # finite values changed on disk: only the checksum tells
        with h5py.File(feats / "speech.h5", "r+") as f:
            f["word"]["data"][7] = f["word"]["data"][7] + np.float16(0.5)
    elif damage == "level":
        spec = ExperimentSpec(model="audio", speech_levels=["syllable"])
    elif damage == "pooling":
        features.speech.pooling = "max"
    elif damage == "coverage":
        ids = [u.utt_id for u in read_manifest(trained["manifest"])]
        segments = tmp_path / "segments.h5"
        write_table(segments, [Alignment(u, 1.0, [Segment(0.0, 1.0, "hi")]) for u in ids], "iemocap")
        with h5py.File(feats / "speech.h5", "r") as f:
            levels = {
                lv: [f[lv]["data"][f[lv]["offsets"][i] : f[lv]["offsets"][i + 1]] for i in range(len(ids) - 5)]
                for lv in ("word", "phone")
            }
            attrs = dict(f.attrs)
        write_store(feats / "speech.h5", ids[:-5], levels, attrs)  # 5 aligned utterances without features
    return features, spec, segments


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan", r"speech\.h5: level 'word' of Ses01\S+ holds NaN or inf"),
        ("bytes", r"speech\.h5: level 'word' does not match its checksum \(changed on disk"),
        ("level", r"speech\.h5: no level 'syllable' \(it has phone, word\)"),
        ("pooling", r"speech\.h5: built with pooling 'mean' but params say features\.speech\.pooling = 'max'"),
        ("coverage", r"speech\.h5: 5 aligned manifest utterance\(s\) have no features"),
    ],
)
def test_training_refuses_a_damaged_or_mismatched_store(trained, tmp_path, damage: str, message: str) -> None:
    features, spec, segments = _damaged(trained, tmp_path, damage)
    train = dataclasses.replace(trained["params"].train, metrics_dir=str(tmp_path / "m"), epochs=1)
    with pytest.raises((StageError, CacheError), match=message):
        run_experiment("x", spec, train, features, trained["manifest"], segments=segments)
    assert not (tmp_path / "m" / "x.json").exists()


def test_a_single_training_speaker_fallback_is_warned_recorded_and_reported(trained, tmp_path, capsys) -> None:
    """Two sessions of one speaker each: validation falls back to every fifth training utterance;
    the stage says so in one line per fold, the metrics and the report carry it, and the late
    fusion's validation is cross-fitted on halves by utterance-id hash (one validation speaker)."""
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(
        manifest, [u for u in read_manifest(trained["manifest"]) if u.extra("session") < 3 and u.gender == "F"]
    )
    train = dataclasses.replace(
        trained["params"].train, metrics_dir=str(tmp_path / "m"), predictions_dir=str(tmp_path / "p"), epochs=1
    )
    spec = ExperimentSpec(model="late", speech_levels=["word"])
    result = run_experiment("tiny_late", spec, train, trained["params"].features, manifest)
    err = capsys.readouterr().err
    for fold, other in ((1, 2), (2, 1)):
        warning = (
            f"fold {fold}: validation is every fifth training utterance (the training data holds one speaker, "
            f"Ses0{other}_F): not speaker-disjoint from training"
        )
        assert f"warning: train tiny_late: {warning}\n" in err
        entry = result["folds"][str(fold)]
        assert entry["speaker_disjoint"] is False and entry["split_warning"] == warning
    assert result["validation_scoring"].startswith("cross-fitted (2 halves by utterance-id hash)")
    lines = validation_lines([Experiment(result, read_predictions(tmp_path / "p" / "tiny_late.csv"))])
    assert f"**Warning**: {warning}." in lines
    # four training utterances: one validates, too few to halve: scored in sample, and said so
    few = [u for u in read_manifest(manifest) if int(u.utt_id[-3:]) < 4]
    write_manifest(manifest, few)
    result = run_experiment("tiny_late", spec, train, trained["params"].features, manifest)
    assert (
        "fold 1: 1 validation utterance(s) cannot be cross-fitted in two halves; its validation is scored in sample"
        in (capsys.readouterr().err)
    )
    assert "fold 1 in sample: too few validation utterances to halve" in result["validation_scoring"]


def test_linear_probe_chooses_c_on_validation_and_pools_item_means() -> None:
    rows = Ragged(
        torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [5.0, 5.0]]).half(),
        torch.tensor([0, 2, 3]),
        torch.tensor([2, 1, 1]),
    )
    assert item_means(rows).tolist() == [[2.0, 3.0], [10.0, 0.0], [5.0, 5.0]]
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    x = rng.standard_normal((200, 30))
    x[np.arange(200), y] += 3.0  # one informative column per class among noise
    probe = LinearProbe(4).fit(x[:120], y[:120], x[120:], y[120:])
    assert probe.c_ in C_GRID and probe.val_ua == max(probe.val_ua_.values()) > 0.9
    assert probe.predict_proba(x[120:]).shape == (80, 4)
    only_three = LinearProbe(4).fit(x[y < 3], y[y < 3], x[:40], y[:40])  # a class missing from training
    assert np.all(only_three.predict_proba(x[:5])[:, 3] == 0)


def _whole_or_absent(path: Path) -> None:
    """A file a killed run left behind is complete and readable, or it does not exist."""
    if not path.exists():
        return
    data = path.read_bytes()
    if path.suffix == ".json":
        json.loads(data)
    elif path.suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND", path
    elif path.suffix == ".md":
        assert data.rstrip().endswith(b"(figures/ua_by_fusion.png)"), path
    elif path.parent.name == "predictions":
        read_predictions(path)


@pytest.mark.parametrize("delay", [1.0, 3.0, 6.0])
def test_sigkilled_train_and_report_leave_whole_outputs_or_none(trained, tmp_path, delay: float) -> None:
    """SIGKILL at several points of `mger train` and `mger report`: every output file is whole
    or absent (a temporary file a kill leaves is hidden, and the next write of that output
    removes it)."""
    params = trained["params"]
    out = tmp_path / "reports"
    config = {
        "prepare": {"manifest": str(trained["manifest"]), "root": params.prepare.root},
        "features": {"out": params.features.out},
        "train": {
            "epochs": 3,
            "patience": 3,
            "hidden": 16,
            "heads": 2,
            "layers": 1,
            "seeds": [0],
            "metrics_dir": str(out / "metrics"),
            "epochs_dir": str(out / "epochs"),
            "predictions_dir": str(out / "predictions"),
            "experiments": {"late": EXPERIMENTS["late"]},
        },
        "report": {"out": str(out / "results.md"), "figures": str(out / "figures"), "metrics": str(out / "m.json")},
    }
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(config))
    for command in (["train", "--experiment", "late"], ["report"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mger.pipeline.cli", *command, "--params", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for file in out.rglob("*"):
            if file.is_file() and not file.name.startswith("."):
                _whole_or_absent(file)


@pytest.mark.parametrize("backend", ["joblib", "dask"])
def test_experiments_dispatched_to_workers_write_what_serial_runs_write(trained, tmp_path, backend: str) -> None:
    """`mger train --experiment all --n-jobs 2`: experiments in two worker processes (joblib) or on
    a real Dask LocalCluster write byte-identical metrics and predictions to one-by-one runs."""
    from distributed import LocalCluster

    from mger.core.processes import dispatch

    params = trained["params"]
    names = ["probe_text", "audio_word", "late"]
    train = dataclasses.replace(
        params.train,
        metrics_dir=str(tmp_path / "m"),
        epochs_dir=str(tmp_path / "e"),
        predictions_dir=str(tmp_path / "p"),
    )
    jobs = [
        (n, params.train.experiments[n], train, params.features, trained["manifest"], None, params.split) for n in names
    ]
    if backend == "dask":
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            dispatch(run_experiment, jobs, 2, "dask", cluster.scheduler_address)
    else:
        dispatch(run_experiment, jobs, 2, "joblib")
    root = trained["root"]
    for name in names:
        ours, serial = (
            json.loads((tmp_path / "m" / f"{name}.json").read_text()),
            json.loads((root / "metrics" / f"{name}.json").read_text()),
        )
        for key in ("wa", "ua", "f1", "validation", "folds"):
            assert ours[key] == serial[key], (name, key)
        assert (tmp_path / "p" / f"{name}.csv").read_bytes() == (root / "predictions" / f"{name}.csv").read_bytes()


def test_report_shows_the_end_to_end_row_of_joint_fine_tuning(trained, tmp_path) -> None:
    """finetune.objective fusion: each fold's jointly trained head's test predictions form one row
    (main table, Sun table), with the trust issue's statistics and its probe difference."""
    params = trained["params"]
    reports = tmp_path / "finetune"
    rng = np.random.default_rng(3)
    manifest = read_manifest(trained["manifest"])
    for fold in (1, 2, 3):
        test = [u for u in manifest if u.extra("session") == fold] * 2  # one end-to-end run per training seed (0, 1)
        labels = np.array([CLASSES.index(u.label) for u in test])
        pred = np.where(rng.random(len(test)) < 0.7, labels, rng.integers(0, 4, len(test)))
        probs = np.eye(4)[pred] * 0.7 + 0.075
        path = reports / f"fold-{fold}" / "joint-test-predictions.csv"  # the finetune stage's fold folder
        path.parent.mkdir(parents=True)
        write_predictions(
            path,
            Predictions(
                CLASSES,
                np.array([u.utt_id for u in test]),
                np.full(len(test), fold),
                np.repeat([0, 1], len(test) // 2),
                labels,
                pred,
                probs,
            ),
        )
        (path.parent / "finetune.json").write_text(
            json.dumps(
                {
                    "fold": fold,
                    "val_speakers": ["x"],
                    "objective": "fusion",
                    "results": {"speech": {"best_epoch": 2, "val_ua": 0.6 + 0.01 * fold}},
                    "test": {
                        "predictions": str(path),
                        "seeds": {str(s): {"val_ua": 0.6 + 0.01 * fold + 0.02 * s} for s in (0, 1)},
                    },
                }
            )
        )
    joint = dataclasses.replace(
        params,
        finetune=dataclasses.replace(params.finetune, objective="fusion", folds=[1, 2, 3], out=str(reports)),
        report=dataclasses.replace(
            params.report, out=str(tmp_path / "r.md"), figures=str(tmp_path / "f"), metrics=str(tmp_path / "m.json")
        ),
    )
    text = write_report(joint).read_text()
    main = text[text.index("| experiment | system") : text.index("Δ UA vs its probe: the paired")]
    row = next(line for line in main.splitlines() if line.startswith("| joint_ft |"))
    assert "end to end: encoders fine-tuned jointly" in row and "| fine-tuned |" in row
    w2v = f"speech store: {FeaturesConfig().speech.model}, fine-tuned"
    assert f"| end to end (encoders fine-tuned with the fusion head) | joint_ft | {w2v} |" in text
    assert "- experiments joint_ft:" in text and "  - fold 2: validation x" in text  # its own validation split
    intervals = text[text.index("## Intervals of test UA") : text.index("## Zhao")]
    assert re.search(r"\| joint_ft \| .*\(dialogues\)", intervals)  # clustered by the manifest's dialogues
    sun = text[text.index("## Sun, He & Han") : text.index("## Pooled over folds")]
    assert sun.count("joint_ft") == 1  # its own row, not also a K-sweep row
    rows = {e.name: e for e in load_experiments(joint)}  # every seed: it pairs with the other rows
    assert rows["joint_ft"].metrics["seeds"] == [0, 1] and all(
        0 < paired_test(rows["joint_ft"].predictions, e.predictions)["ua"]["p"] <= 1 for e in rows.values()
    )
    record_path = reports / "fold-2" / "finetune.json"
    record = json.loads(record_path.read_text())
    del record["test"]["seeds"]["1"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(StageError, match=r"finetune.json: end-to-end runs of seeds \[0\], not train.seeds \[0, 1\]"):
        write_report(joint)
    record_path.unlink()
    with pytest.raises(StageError, match="fold-2/finetune.json: missing"):
        write_report(joint)
