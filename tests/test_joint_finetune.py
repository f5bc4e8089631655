"""Joint fine-tuning with the fusion head (``finetune.objective: fusion``), on tiny random models."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mger.models.finetune as finetune_module
import mger.models.joint as joint_module
from mger.core.config import ConfigError, FusionHeadConfig, load_params, params_from_dict
from mger.core.manifest import read_manifest
from mger.features.cache import FeatureStore
from mger.features.extract import extract, finetuned_setup
from mger.models.finetune import build_encoders, finetune_split, settings_key
from mger.models.finetune_stage import run_finetune
from mger.models.predictions import read_predictions
from tests.test_finetune import FOLDS, _features, _finetune, _kill_after_epoch, _mger, _params_file

SMALL_HEAD = FusionHeadConfig(layers=1, hidden=16, heads=2)


def _joint(out: Path, **kw):
    return _finetune(out, objective="fusion", fusion=kw.pop("fusion", SMALL_HEAD), **kw)


def _same(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_fusion_objective_reads_the_test_session_only_after_training(
    tiny_models, aligned, tmp_path, monkeypatch
) -> None:
    """Every waveform read is recorded, and the moment testing starts: before it only fold 2's
    training and validation utterances are read, after it only session 2's, for one evaluation."""
    events: list[str] = []
    real_read, real_test = finetune_module.read_audio, joint_module.evaluate_test

    def recording_read(path, *args, **kwargs):
        events.append(str(path))
        return real_read(path, *args, **kwargs)

    def recording_test(*args, **kwargs):
        events.append("<test>")
        return real_test(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "read_audio", recording_read)
    monkeypatch.setattr(joint_module, "evaluate_test", recording_test)
    cfg = _joint(
        tmp_path, epochs=2, fusion=FusionHeadConfig(layers=1, hidden=16, heads=2, aux_matching=0.5, aux_unimodal=0.5)
    )
    fold_dir = run_finetune(2, cfg, _features(tiny_models, tmp_path / "f"), aligned["manifest"], aligned["segments"])
    utts = {u.wav: u for u in read_manifest(aligned["manifest"])}
    record = json.loads((fold_dir / "finetune.json").read_text())
    assert events.count("<test>") == 1
    cut = events.index("<test>")
    training, testing = events[:cut], events[cut + 1 :]
    assert training and all(utts[p].extra("session") != 2 for p in training)
    assert {utts[p].utt_id for p in training} == set(record["train_ids"]) | set(record["val_ids"])
    session_2 = {u.utt_id for u in utts.values() if u.extra("session") == 2}
    assert sorted(utts[p].utt_id for p in testing) == sorted(session_2)

    assert record["objective"] == "fusion" and record["modalities"] == ["speech"]
    assert (
        record["test"]["n_test"] == len(session_2)
        and record["test"]["best_epoch"] == record["results"]["speech"]["best_epoch"]
    )
    assert not (fold_dir / "state-fusion").exists() and not (fold_dir / "text").exists()
    assert (fold_dir / "speech" / "model.safetensors").is_file()
    assert not (fold_dir / "speech" / "head.safetensors").exists()
    assert (fold_dir / "fusion" / "head.safetensors").is_file()
    report = json.loads((Path(cfg.reports) / "fold-2.json").read_text())
    assert report["objective"] == "fusion" and report["test"]["ua"] == record["test"]["ua"]
    pred = read_predictions(report["test"]["predictions"])
    assert Path(report["test"]["predictions"]) == Path(cfg.reports) / "joint-fold-2.csv"
    assert set(pred.utt_ids) == session_2 and set(pred.fold) == {2} and set(pred.seed) == {cfg.seed}
    assert float((pred.pred == pred.label).mean()) == pytest.approx(record["test"]["wa"])
    log = (Path(cfg.reports) / "fold-2.csv").read_text().splitlines()
    assert log[0] == "modality,epoch,train_loss,val_ua,lr" and [r.split(",")[0] for r in log[1:]] == ["fusion"] * 2


def test_jointly_fine_tuned_encoders_extract_into_fold_stores(tiny_models, aligned, tmp_path) -> None:
    """With ``finetune.text`` both encoders train with the head and are saved as today, so
    ``mger extract --fold k`` reads them; the store's fingerprint names the objective."""
    features = _features(tiny_models, tmp_path / "frozen")
    cfg = _joint(tmp_path, epochs=1, text=True)
    fold_dir = run_finetune(1, cfg, features, aligned["manifest"], aligned["segments"])
    assert not _same(fold_dir / "text" / "model.safetensors", Path(tiny_models["text"]) / "model.safetensors")
    setup, entries, kinds = finetuned_setup(features, cfg, 1)
    assert kinds == ["speech", "text"] and entries["finetune_objective"] == "fusion"
    store = FeatureStore(extract("speech", setup, aligned["manifest"], aligned["segments"], fold=entries), fold=1)
    assert store.fingerprint["finetune_objective"] == "fusion" and store.fingerprint["fold"] == 1


def test_utterance_objective_is_unchanged_by_the_fusion_settings(tiny_models, aligned, tmp_path) -> None:
    """The utterance objective's settings key ignores ``objective``-only settings (the key of
    runs before they existed), and an utterance run after a fusion run leaves none of its files."""
    features = _features(tiny_models, tmp_path / "f")
    split = finetune_split(read_manifest(aligned["manifest"]), 3, 0)
    plain, other_head = _finetune(tmp_path), _finetune(tmp_path, fusion=FusionHeadConfig(layers=3, aux_matching=1.0))
    encoders = build_encoders(plain, features)
    assert list(encoders) == ["speech"]
    key = settings_key(plain, split, encoders, "drop")
    assert settings_key(other_head, split, encoders, "drop") == key
    joint = _joint(tmp_path)
    assert settings_key(joint, split, build_encoders(joint, features), "drop") != key
    for variants in ({"only": {}}, {"only": {}, "other": {"epochs": 1}}):  # a variant's name is not a setting
        named = dataclasses.replace(plain, variants=variants).variant("only")
        assert settings_key(named, split, encoders, "drop") == key
        assert (named.fold_dir(3) == plain.fold_dir(3)) == (len(variants) == 1)

    run_finetune(3, _joint(tmp_path, epochs=1), features, aligned["manifest"], aligned["segments"], seeds=[0, 1])
    assert (tmp_path / "ft" / "fold-3" / "seed-1" / "result.json").is_file()
    fold_dir = run_finetune(3, _finetune(tmp_path, epochs=1), features, aligned["manifest"], aligned["segments"])
    record = json.loads((fold_dir / "finetune.json").read_text())
    assert "objective" not in record and "test" not in record and "seeds" not in record
    assert not (fold_dir / "fusion").exists() and (fold_dir / "speech" / "head.safetensors").is_file()
    assert not (fold_dir / "seed-1").exists() and not (fold_dir / "joint-test-predictions.csv").exists()
    assert not (Path(tmp_path / "reports") / "joint-fold-3.csv").exists()
    assert "test" not in json.loads((tmp_path / "reports" / "fold-3.json").read_text())
    assert "finetune_objective" not in finetuned_setup(features, _finetune(tmp_path), 3)[1]


@pytest.mark.parametrize(
    "aux",
    [
        {"aux_matching": 0.5},
        {"aux_matching": 0.5, "aux_matching_negatives": "other_label"},
        {"aux_unimodal": 0.5},
        {"aux_unimodal": 0.5, "aux_unimodal_on": "encoder"},
    ],
    ids=["matching", "matching-other-label", "unimodal-fused", "unimodal-encoder"],
)
def test_auxiliary_losses_change_the_joint_training(tiny_models, aligned, tmp_path, aux: dict) -> None:
    """Each auxiliary task adds to the training loss and reaches the speech encoder's weights."""
    features = _features(tiny_models, tmp_path / "f")
    runs = {}
    for name, head in (("off", SMALL_HEAD), ("on", FusionHeadConfig(layers=1, hidden=16, heads=2, **aux))):
        cfg = _joint(tmp_path / name, epochs=1, fusion=head)
        fold_dir = run_finetune(3, cfg, features, aligned["manifest"], aligned["segments"])
        runs[name] = (
            json.loads((fold_dir / "finetune.json").read_text())["history"][0]["train_loss"],
            fold_dir / "speech" / "model.safetensors",
        )
    assert runs["on"][0] > runs["off"][0]
    assert not _same(runs["on"][1], runs["off"][1])


def test_sigkilled_joint_finetuning_resumes_to_the_uninterrupted_weights(tiny_models, aligned, tmp_path) -> None:
    """The existing kill test's pattern (tests/test_finetune.py), with the fusion objective:
    head, optimizer and encoder state resume after the last finished epoch."""
    epochs = 6

    def params(name: str) -> Path:
        path = _params_file(tiny_models, aligned, tmp_path / name, epochs)
        data = yaml.safe_load(path.read_text())
        data["finetune"] |= {
            "objective": "fusion",
            "fusion": {"layers": 1, "hidden": 16, "heads": 2, "aux_matching": 0.5, "aux_unimodal": 0.5},
        }
        data["train"] = {"seeds": [0]}  # one end-to-end run (every seed: test_variants_and_seeds_end_to_end)
        path.write_text(yaml.safe_dump(data))
        return path

    ref, run = params("ref"), params("run")
    subprocess.run(_mger("finetune", "--params", str(ref), "--fold", "1"), check=True, capture_output=True)
    _kill_after_epoch(run, tmp_path / "run" / "ft" / "fold-1" / "state-fusion" / "state.json")
    fold, ref_fold = tmp_path / "run" / "ft" / "fold-1", tmp_path / "ref" / "ft" / "fold-1"
    assert not (fold / "finetune.json").exists(), "the kill came too late to test resuming"
    resumed = subprocess.run(
        _mger("finetune", "--params", str(run), "--fold", "1"), check=True, capture_output=True, text=True
    )
    assert "finetune fusion: resuming fold-1 after epoch" in resumed.stderr
    for name in ("speech/model.safetensors", "fusion/head.safetensors"):
        assert _same(fold / name, ref_fold / name), name
    assert (fold / "fusion" / "test-predictions.csv").read_bytes() == (
        ref_fold / "fusion" / "test-predictions.csv"
    ).read_bytes()
    record, ref_record = (json.loads((f / "finetune.json").read_text()) for f in (fold, ref_fold))
    assert record["test"] == ref_record["test"] and record["history"] == ref_record["history"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"finetune": {"objective": "joint"}}, "finetune.objective: 'joint' is not one of 'utterance', 'fusion'"),
        ({"finetune": {"fusion": {"hidden": 30, "heads": 4}}}, "finetune.fusion: hidden size 30 is not divisible by 4"),
        ({"finetune": {"fusion": {"aux_matching": -1}}}, "finetune.fusion.aux_matching: must be >= 0"),
        ({"finetune": {"fusion": {"layers": 0}}}, "finetune.fusion.layers: must be positive"),
        (
            {"finetune": {"fusion": {"aux_unimodal_on": "pooled"}}},
            "finetune.fusion.aux_unimodal_on: 'pooled' is not one",
        ),
        ({"finetune": {"fusion": {"granularity": "word"}}}, "finetune.fusion.granularity: unknown key"),
    ],
)
def test_fusion_settings_are_validated(data: dict, message: str) -> None:
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(data)


def test_default_objective_is_utterance() -> None:
    assert params_from_dict({}).finetune.objective == "utterance"


def test_a_seed_tested_with_the_same_settings_is_not_redone(tiny_models, aligned, tmp_path) -> None:
    """Each training seed's end-to-end run is found again by its settings key: another seed list
    reruns the fold's own seed (its encoders are the fold's) and reuses the other seeds' results."""
    features = _features(tiny_models, tmp_path / "f")
    cfg = _joint(tmp_path, epochs=1)
    fold_dir = run_finetune(1, cfg, features, aligned["manifest"], aligned["segments"], seeds=[0, 1])
    done = fold_dir / "seed-1" / "result.json"
    first, stamp = read_predictions(fold_dir / "joint-test-predictions.csv"), done.stat().st_mtime_ns
    assert sorted(set(first.seed.tolist())) == [0, 1] and not (fold_dir / "seed-1" / "speech").exists()
    run_finetune(1, cfg, features, aligned["manifest"], aligned["segments"], seeds=[1, 0])
    again = read_predictions(fold_dir / "joint-test-predictions.csv")
    assert done.stat().st_mtime_ns == stamp and list(again.seed[:3]) == [1, 1, 1]
    assert sorted(again.key()) == sorted(first.key()) and json.loads((fold_dir / "finetune.json").read_text())[
        "seeds"
    ] == [1, 0]
    assert run_finetune(1, cfg, features, aligned["manifest"], aligned["segments"], seeds=[0]) == fold_dir
    assert set(read_predictions(fold_dir / "joint-test-predictions.csv").seed.tolist()) == {0}


def test_sun_preset_fine_tunes_inside_its_fusion_row() -> None:
    """params/sun2023.yaml fine-tunes with the head settings of its own ``mha_both`` row."""
    params = load_params(Path(__file__).resolve().parents[1] / "params" / "sun2023.yaml")
    ft, row = params.finetune, params.train.experiments["mha_both"]
    assert ft.objective == "fusion" and ft.text
    assert (ft.fusion.layers, ft.fusion.hidden, ft.fusion.heads) == (
        row.layers or params.train.layers,
        params.train.hidden,
        params.train.heads,
    )
    assert (
        ft.fusion.aux_matching,
        ft.fusion.aux_unimodal,
        ft.fusion.aux_unimodal_on,
        ft.fusion.aux_matching_negatives,
    ) == (row.aux_matching, row.aux_unimodal, row.aux_unimodal_on, row.aux_matching_negatives)


def test_testing_reads_back_the_weights_that_were_validated(tiny_models, aligned, tmp_path) -> None:
    """One epoch (best = last): the encoders and head evaluate_test reads back from their
    save_pretrained folders and ``fusion/`` give the trained model's validation probabilities."""
    features = _features(tiny_models, tmp_path / "f")
    cfg = _joint(tmp_path, epochs=1, text=True)
    split = finetune_split(read_manifest(aligned["manifest"]), 1, 0)
    encoders = build_encoders(cfg, features)
    fold_dir = cfg.fold_dir(1)
    fold_dir.mkdir(parents=True)
    joint_module.train_joint(split, encoders, cfg, fold_dir, "k")
    head = joint_module.MhaAux(
        joint_module.head_config(cfg, encoders["speech"].dim, encoders["text"].dim, len(split.classes))
    )
    state = load_file(fold_dir / "state-fusion" / "model.safetensors")  # the trained weights, as trained
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    speech = finetune_module.SpeechInputs(encoders["speech"], split.val, True, cfg.max_train_seconds)
    text = joint_module._text_inputs(encoders["text"], split.val, True, cfg.batch_size)
    memory = joint_module.head_proba(head, speech, text, torch.device("cpu"), torch.float32, cfg.batch_size)
    joint_module.evaluate_test(split.val, 1, split.classes, None, cfg, features, fold_dir)
    disk = read_predictions(fold_dir / "fusion" / "test-predictions.csv")
    assert list(disk.utt_ids) == [u.utt_id for u in split.val]
    assert disk.probs == pytest.approx(memory, abs=1e-6)


def test_variants_and_seeds_end_to_end(tiny_models, aligned, tmp_path, capsys) -> None:
    """Sun's ablation on tiny models, through the CLI: two fine-tuning variants (with and without
    the auxiliary losses), each fold's end-to-end row trained on both training seeds, stores and
    reports per variant, classifier rows reading the variant they name; the end-to-end rows
    hold both seeds and pair with the other rows."""
    from mger.models.report import load_experiments
    from mger.models.stats import paired_test
    from mger.pipeline.cli import main

    head = {"layers": 1, "hidden": 16, "heads": 2, "aux_matching": 0.5, "aux_unimodal": 0.5}
    probe = {"model": "probe", "probe": "speech", "speech_levels": ["utterance"]}
    params = {
        "prepare": {"manifest": str(aligned["manifest"]), "report": str(aligned["manifest"].parent / "q.json")},
        "align": {"out": str(aligned["segments"].parent)},
        "features": {
            "out": str(tmp_path / "f"),
            "device": "cpu",
            "speech": {"model": tiny_models["speech"], "levels": ["utterance"]},
            "text": {"model": tiny_models["text"]},
        },
        "finetune": {
            "out": str(tmp_path / "ft"),
            "features_out": str(tmp_path / "ftf"),
            "reports": str(tmp_path / "rep"),
            "folds": FOLDS,
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "head_lr": 1e-2,
            "max_train_seconds": 1.0,
            "objective": "fusion",
            "fusion": head,
            "variants": {"aux": {}, "noaux": {"fusion": {"aux_matching": 0.0, "aux_unimodal": 0.0}}},
        },
        "train": {
            "seeds": [0, 1],
            "epochs": 1,
            "metrics_dir": str(tmp_path / "metrics"),
            "epochs_dir": str(tmp_path / "epochs"),
            "predictions_dir": str(tmp_path / "pred"),
            "finetuned_experiments": {
                "ft_probe_noaux": probe | {"finetune": "noaux"},
                "ft_probe_aux": probe | {"finetune": "aux"},
            },
        },
        "report": {"out": str(tmp_path / "results.md"), "figures": str(tmp_path / "figures")},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    args = ["--params", str(path)]
    assert main(["finetune", *args]) == 0
    assert main(["extract", *args, "--kind", "speech"]) == 0
    for fold in FOLDS:
        assert main(["extract", *args, "--fold", str(fold)]) == 0
    assert main(["train", *args, "--experiment", "all"]) == 0
    assert main(["report", *args]) == 0
    capsys.readouterr()
    assert main(["finetune", *args]) == 0 and main(["summary", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("is up to date") == 2 * len(FOLDS)  # every variant of every fold
    assert "fine-tuned speech encoders (noaux) (3 folds" in out and "fine-tuned speech encoders (aux)" in out

    utts = read_manifest(aligned["manifest"])
    for fold in FOLDS:
        runs = {}
        for variant in ("aux", "noaux"):
            fold_dir = tmp_path / "ft" / f"fold-{fold}" / variant
            record = json.loads((fold_dir / "finetune.json").read_text())
            assert (
                record["variant"] == variant
                and record["seeds"] == [0, 1]
                and set(record["test"]["seeds"]) == {"0", "1"}
            )
            assert (fold_dir / "speech" / "model.safetensors").is_file() and not (fold_dir / "seed-0").exists()
            assert not (fold_dir / "seed-1" / "speech").exists() and not (fold_dir / "seed-1" / "state-fusion").exists()
            pred = read_predictions(tmp_path / "rep" / variant / f"joint-fold-{fold}.csv")
            assert sorted(pred.seed.tolist()) == sorted([0, 1] * (len(pred) // 2))
            assert set(pred.utt_ids) == {u.utt_id for u in utts if u.extra("session") == fold}
            store = FeatureStore(tmp_path / "ftf" / f"fold-{fold}" / variant / "speech.h5", fold=fold)
            assert store.fingerprint["finetune_variant"] == variant
            runs[variant] = (record["history"][0]["train_loss"], fold_dir / "speech" / "model.safetensors")
        assert runs["aux"][0] > runs["noaux"][0] and not _same(runs["aux"][1], runs["noaux"][1])
        index = json.loads((tmp_path / "rep" / f"fold-{fold}.json").read_text())
        assert set(index["variants"]) == {"aux", "noaux"} and index["variants"]["noaux"]["test"]["seeds"]
        assert (tmp_path / "rep" / f"fold-{fold}.csv").read_text().startswith("variant,modality,epoch")

    loaded = load_params(path)
    rows = {e.name: e for e in load_experiments(loaded)}
    assert set(rows) == {"ft_probe_noaux", "ft_probe_aux", "joint_ft_aux", "joint_ft_noaux"}
    for name in ("joint_ft_aux", "joint_ft_noaux"):
        assert rows[name].metrics["seeds"] == [0, 1] and set(rows[name].predictions.seed) == {0, 1}
    probe_metrics = json.loads((tmp_path / "metrics" / "ft_probe_noaux.json").read_text())
    assert probe_metrics["finetune_variant"] == "noaux"
    assert all("/noaux/" in s["speech"]["path"] for s in probe_metrics["provenance"]["stores"].values())
    for system, base in (("joint_ft_aux", "ft_probe_aux"), ("joint_ft_aux", "joint_ft_noaux")):
        test = paired_test(rows[system].predictions, rows[base].predictions)
        assert 0 < test["ua"]["p"] <= 1
    report = (tmp_path / "results.md").read_text()
    assert "| mha without vs with auxiliary tasks | joint_ft_noaux | joint_ft_aux | not paired" not in report
    assert "| mha without vs with auxiliary tasks | joint_ft_noaux | joint_ft_aux | " in report
    sun = report[report.index("## Sun, He & Han") :]
    assert ", fine-tuned (noaux) |" in sun.split("| joint_ft_noaux | ")[1].split("\n")[0]
    assert ", fine-tuned (aux) |" in sun.split("| joint_ft_aux | ")[1].split("\n")[0]
    assert "*noaux*: encoders fine-tuned end to end with the fusion head, auxiliary losses: none" in sun
