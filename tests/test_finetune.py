"""Per-fold fine-tuning, fold-specific stores and the leakage guard, on tiny random models."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import mger.models.finetune as finetune_module
from mger.core.config import (
    ExperimentSpec,
    FeaturesConfig,
    FinetuneConfig,
    SpeechFeaturesConfig,
    TextFeaturesConfig,
    TrainConfig,
)
from mger.core.manifest import read_manifest
from mger.core.splits import fold_split
from mger.features.cache import CacheError, FeatureStore, LeakageError
from mger.features.extract import extract, finetuned_setup
from mger.models.experiment import run_experiment
from mger.models.finetune import finetune_split, lr_factor, masked_mean
from mger.models.finetune_stage import run_finetune

FOLDS = [1, 2, 3]


def _features(tiny_models: dict[str, str], out: Path) -> FeaturesConfig:
    return FeaturesConfig(
        out=str(out),
        shard_size=8,
        speech=SpeechFeaturesConfig(model=tiny_models["speech"]),
        text=TextFeaturesConfig(model=tiny_models["text"]),
    )


def _finetune(out: Path, **kw) -> FinetuneConfig:
    settings = dict(
        out=str(out / "ft"),
        features_out=str(out / "ft-features"),
        reports=str(out / "reports"),
        folds=FOLDS,
        epochs=3,
        batch_size=4,
        lr=1e-3,
        head_lr=1e-2,
        max_train_seconds=1.5,
        patience=3,
    )
    return FinetuneConfig(**(settings | kw))


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    factors = [lr_factor(s, 10, 0.2) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2:] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_masked_mean_ignores_padding() -> None:
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [-5.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_mean(x, mask).squeeze(1).tolist() == pytest.approx([2.0, 4 / 3])


@pytest.mark.parametrize("fold", FOLDS)
def test_fold_split_keeps_test_session_and_validation_speaker_apart(aligned, fold: int) -> None:
    utts = read_manifest(aligned["manifest"])
    split = finetune_split(utts, fold, 0)
    assert split.train and split.val
    assert all(u.extra("session") != fold for u in split.train + split.val)
    assert fold not in split.train_folds
    assert not {u.speaker for u in split.train} & {u.speaker for u in split.val}
    assert len(split.train) + len(split.val) == sum(u.extra("session") != fold for u in utts)
    # the one split of core.splits: a woman and a man of two training sessions, as every classifier sees
    assert {u.gender for u in split.val} == {"F", "M"} and len({u.extra("session") for u in split.val}) == 2
    assert split.describe()["val_speakers"] == fold_split(utts, fold, 0).val_speakers
    assert split.validation == "one speaker per gender (F, M) from different training groups"


@pytest.mark.parametrize("frozen_conv", [True, False], ids=["conv-frozen", "conv-trained"])
def test_no_test_session_audio_reaches_finetuning(tiny_models, aligned, tmp_path, monkeypatch, frozen_conv) -> None:
    """Every waveform fine-tuning reads is recorded; none may come from the test session."""
    read: list[str] = []
    real_read = finetune_module.read_audio

    def recording_read(path, *args, **kwargs):
        read.append(str(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "read_audio", recording_read)
    cfg = _finetune(tmp_path, epochs=2, freeze_feature_encoder=frozen_conv)
    fold_dir = run_finetune(2, cfg, _features(tiny_models, tmp_path / "f"), aligned["manifest"], aligned["segments"])
    utts = {u.wav: u for u in read_manifest(aligned["manifest"])}
    record = json.loads((fold_dir / "finetune.json").read_text())
    assert read and all(utts[p].extra("session") != 2 for p in read)
    assert {utts[p].utt_id for p in read} == set(record["train_ids"]) | set(record["val_ids"])
    assert record["train_folds"] == [1, 3] and record["test_fold"] == 2
    assert all((fold_dir / "speech" / f).is_file() for f in ("model.safetensors", "head.safetensors", "config.json"))
    assert not (fold_dir / "state-speech").exists()
    conv_changed = any(
        k.startswith("feature_extractor") and not torch.equal(v, _base(tiny_models)[k])
        for k, v in load_file(fold_dir / "speech" / "model.safetensors").items()
    )
    assert conv_changed is not frozen_conv
    log = (Path(cfg.reports) / "fold-2.csv").read_text().splitlines()
    assert log[0] == "modality,epoch,train_loss,val_ua,lr" and len(log) == 3


def _base(tiny_models: dict[str, str]) -> dict[str, torch.Tensor]:
    return load_file(Path(tiny_models["speech"]) / "model.safetensors")


def _params_file(tiny_models, aligned, out: Path, epochs: int) -> Path:
    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"out": str(aligned["segments"].parent)},
        "features": {"out": str(out / "f"), "speech": {"model": tiny_models["speech"]}},
        "finetune": {
            "out": str(out / "ft"),
            "features_out": str(out / "ftf"),
            "reports": str(out / "rep"),
            "folds": FOLDS,
            "epochs": epochs,
            "patience": epochs,
            "batch_size": 2,
            "lr": 1e-3,
            "max_train_seconds": 1.0,
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _mger(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from mger.pipeline.cli import main; sys.exit(main())", *args]


def _kill_after_epoch(params: Path, state: Path, epoch: int = 2) -> None:
    """Start ``mger finetune --fold 1`` with ``params`` and SIGKILL it once ``state`` records
    ``epoch`` finished epochs (or after 120 s)."""
    proc = subprocess.Popen(
        _mger("finetune", "--params", str(params), "--fold", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["epoch"] >= epoch):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkilled_finetuning_resumes_to_the_uninterrupted_weights(tiny_models, aligned, tmp_path) -> None:
    epochs = 12
    ref = _params_file(tiny_models, aligned, tmp_path / "ref", epochs)
    subprocess.run(_mger("finetune", "--params", str(ref), "--fold", "1"), check=True, capture_output=True)
    run = _params_file(tiny_models, aligned, tmp_path / "run", epochs)
    _kill_after_epoch(run, tmp_path / "run" / "ft" / "fold-1" / "state-speech" / "state.json")
    fold = tmp_path / "run" / "ft" / "fold-1"
    assert not (fold / "finetune.json").exists(), "the kill came too late to test resuming"
    resumed = subprocess.run(
        _mger("finetune", "--params", str(run), "--fold", "1"), check=True, capture_output=True, text=True
    )
    assert "resuming fold-1 after epoch" in resumed.stderr
    for name in ("model.safetensors", "head.safetensors"):
        a = load_file(fold / "speech" / name)
        b = load_file(tmp_path / "ref" / "ft" / "fold-1" / "speech" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    (tmp_path / "run" / "rep" / "fold-1.json").unlink()  # as DVC does before re-running a stage
    again = subprocess.run(
        _mger("finetune", "--params", str(run), "--fold", "1"), check=True, capture_output=True, text=True
    )
    assert "up to date" in again.stdout
    assert json.loads((tmp_path / "run" / "rep" / "fold-1.json").read_text())["test_fold"] == 1


@pytest.fixture(scope="module")
def finetuned(tiny_models, aligned, tmp_path_factory) -> dict:
    """All three folds fine-tuned (speech and text) and extracted into fold-specific stores."""
    out = tmp_path_factory.mktemp("finetuned")
    features = _features(tiny_models, out / "frozen")
    ft = _finetune(out, text=True, epochs=2)
    for kind in ("speech", "text"):
        extract(kind, features, aligned["manifest"], aligned["segments"])
    for fold in FOLDS:
        run_finetune(fold, ft, features, aligned["manifest"], aligned["segments"])
        cfg, entries, kinds = finetuned_setup(features, ft, fold)
        assert kinds == ["speech", "text"]
        for kind in kinds:
            extract(kind, cfg, aligned["manifest"], aligned["segments"], fold=entries)
    return {"features": features, "finetune": ft, "out": out}


@pytest.mark.parametrize("kind", ["speech", "text"])
def test_fold_store_opens_only_for_its_fold(finetuned, kind: str) -> None:
    root = Path(finetuned["finetune"].features_out)
    store = FeatureStore(root / "fold-1" / f"{kind}.h5", fold=1)
    assert store.fold == 1 and store.attrs["fold"] == 1
    assert store.fingerprint["finetune_train_folds"] == [2, 3]
    assert (
        store.attrs["weights_sha256"]
        != FeatureStore(Path(finetuned["features"].out) / f"{kind}.h5").attrs["weights_sha256"]
    )
    for other in (2, 3):
        with pytest.raises(LeakageError, match="fine-tuned for fold 1"):
            FeatureStore(root / "fold-1" / f"{kind}.h5", fold=other)


def test_checkpoint_of_one_fold_cannot_extract_another(finetuned) -> None:
    ft = finetuned["finetune"]
    with pytest.raises(CacheError, match="fine-tuned for fold 1"):
        finetuned_setup(finetuned["features"], ft, 2, Path(ft.out) / "fold-1")


def test_finetuned_experiment_reads_each_folds_own_store(finetuned, aligned, tmp_path) -> None:
    """Three training seeds, one split: no classifier validation speaker of any fold is among the
    utterances its fold's encoders were fine-tuned on."""
    train = TrainConfig(
        epochs=2,
        patience=2,
        hidden=16,
        heads=2,
        layers=1,
        seeds=[0, 1, 2],
        metrics_dir=str(tmp_path / "m"),
        epochs_dir=str(tmp_path / "e"),
        predictions_dir=str(tmp_path / "p"),
    )
    spec = ExperimentSpec(model="late", speech_levels=["word"], features="finetuned")
    result = run_experiment("ft_late", spec, train, finetuned["features"], aligned["manifest"], finetuned["finetune"])
    assert result["features"] == "finetuned" and sorted(result["folds"]) == ["1", "2", "3"]
    saved = json.loads((tmp_path / "m" / "ft_late.json").read_text())
    assert saved["ua"]["mean"] == pytest.approx(np.mean([f["ua"] for f in saved["folds"].values()]))
    speaker = {u.utt_id: u.speaker for u in read_manifest(aligned["manifest"])}
    for fold, entry in saved["folds"].items():
        record = json.loads((Path(finetuned["finetune"].out) / f"fold-{fold}" / "finetune.json").read_text())
        assert entry["val_speakers"] and entry["val_speakers"] == record["val_speakers"]
        assert not set(entry["val_speakers"]) & {speaker[u] for u in record["train_ids"]}
        assert set(saved["provenance"]["stores"][fold]) == {"speech", "text"}
        assert f"fold-{fold}" in saved["provenance"]["stores"][fold]["speech"]["path"]


def test_swapped_fold_store_is_refused(finetuned, aligned, tmp_path) -> None:
    ft = dataclasses.replace(finetuned["finetune"], features_out=str(tmp_path / "ftf"))
    src = Path(finetuned["finetune"].features_out)
    shutil.copytree(src, tmp_path / "ftf")
    shutil.copy(src / "fold-2" / "speech.h5", tmp_path / "ftf" / "fold-1" / "speech.h5")  # fold 2's as fold 1's
    train = TrainConfig(
        epochs=1,
        patience=1,
        hidden=16,
        heads=2,
        layers=1,
        metrics_dir=str(tmp_path / "m"),
        epochs_dir=str(tmp_path / "e"),
    )
    spec = ExperimentSpec(model="audio", speech_levels=["word"], features="finetuned")
    with pytest.raises(LeakageError, match="cannot be used for fold 1"):
        run_experiment("ft_audio", spec, train, finetuned["features"], aligned["manifest"], ft)
    assert not (tmp_path / "m" / "ft_audio.json").exists()


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_optimizer_steps_follow_grad_accum_and_schedule(tiny_models, aligned, tmp_path, grad_accum: int) -> None:
    cfg = _finetune(tmp_path, epochs=2, batch_size=2, grad_accum=grad_accum, patience=5, warmup=0.25)
    fold_dir = run_finetune(3, cfg, _features(tiny_models, tmp_path / "f"), aligned["manifest"], aligned["segments"])
    n_train = len(json.loads((fold_dir / "finetune.json").read_text())["train_ids"])
    per_epoch = -(-n_train // (2 * grad_accum))
    total = 2 * per_epoch
    rows = (Path(cfg.reports) / "fold-3.csv").read_text().splitlines()[1:]
    logged = [float(r.split(",")[4]) for r in rows]
    expected = [cfg.lr * lr_factor(e * per_epoch - 1, total, 0.25) for e in (1, 2)]
    assert logged == pytest.approx(expected)


def test_folds_dispatched_to_workers_fine_tune_as_serial_runs_do(finetuned, aligned, tmp_path) -> None:
    """`mger finetune --n-jobs 2`: two folds in two worker processes end with the weights and
    records the serial runs of the fixture wrote."""
    from mger.core.processes import dispatch

    ft = dataclasses.replace(finetuned["finetune"], out=str(tmp_path / "ft"), reports=str(tmp_path / "rep"))
    jobs = [(fold, ft, finetuned["features"], aligned["manifest"], aligned["segments"]) for fold in (1, 2)]
    assert [Path(p).name for p in dispatch(run_finetune, jobs, 2, "joblib")] == ["fold-1", "fold-2"]
    for fold in (1, 2):
        ours, serial = Path(ft.out) / f"fold-{fold}", Path(finetuned["finetune"].out) / f"fold-{fold}"
        for name in ("speech/model.safetensors", "speech/head.safetensors", "text/model.safetensors"):
            a, b = load_file(ours / name), load_file(serial / name)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (fold, name)
        record = json.loads((ours / "finetune.json").read_text())
        assert record["key"] == json.loads((serial / "finetune.json").read_text())["key"]


def test_a_diverging_fine_tuning_run_is_one_line_naming_the_fold(tmp_path: Path) -> None:
    """A fine-tuning loss that turns NaN (the loop's one check, as for classifiers) stops the
    run naming the modality, fold, seed and epoch; the last good epoch's state stays."""
    from mger.core.reporting import StageError
    from mger.models.finetune import Task, fit_epochs

    net = torch.nn.Linear(2, 2)
    losses = iter([1.0, 0.5, float("nan")])

    def batch_loss(idx: list[int], gen: torch.Generator) -> torch.Tensor:
        return net.weight.sum() * 0 + next(losses)

    task = Task(
        "speech",
        net,
        [{"params": list(net.parameters()), "lr": 1e-3}],
        4,
        batch_loss,
        lambda: np.zeros(2, int),
        lambda: None,
    )
    cfg = FinetuneConfig(epochs=5, batch_size=4, patience=5, seed=3)
    with pytest.raises(
        StageError, match=r"^finetune speech, fold-2, seed 3, epoch 3: training loss is nan \(not finite\)"
    ):
        fit_epochs(task, np.zeros(2, int), 2, cfg, tmp_path / "fold-2", "k", torch.device("cpu"), torch.float32)
    assert json.loads((tmp_path / "fold-2" / "state-speech" / "state.json").read_text())["epoch"] == 2
