"""A real `dvc repro` of the pipeline's stages in a scratch git repo, on a tiny corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "250"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture()
def scratch_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in (
        "mger",
        "core",
        "corpus",
        "pipeline",
        "alignment",
        "features",
        "models",
        ".dvc",
        "dvc.yaml",
        ".dvcignore",
        ".gitignore",  # reports/ and data/ are not in git, as in a clone: an uncached metric is then `!`
        "setup.cfg",  # marks the copy as a checkout: `python -m mger...` stages then run its code
    ):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy(src, repo / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"].update(sessions=2, dialogs_per_session=1, turns_per_dialog=6)
    params["train"].update(
        epochs=2,
        patience=2,
        experiments={
            "text": {"model": "text"},
            "audio_word": {"model": "audio", "speech_levels": ["word"]},
            "late": {"model": "late", "speech_levels": ["word"]},
        },
        finetuned_experiments={"ft_audio_word": {"model": "audio", "speech_levels": ["word"]}},
    )
    params["finetune"].update(folds=[1, 2], epochs=1, batch_size=4, max_train_seconds=1.0)
    params["demo_model"].update(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=16
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], repo)
    return repo


def _experiment_metrics(shown: object) -> dict[float, dict]:
    """train.lr → the headline figures (reports/metrics.json) of every run in `dvc exp show --json`."""
    out: dict[float, dict] = {}
    if isinstance(shown, dict):
        data = shown.get("data") or {}
        params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        metrics = (data.get("metrics") or {}).get("reports/metrics.json", {}).get("data")
        if "train" in params and metrics is not None:
            out[params["train"]["lr"]] = metrics
        for value in shown.values():
            out |= _experiment_metrics(value)
    elif isinstance(shown, list):
        for value in shown:
            out |= _experiment_metrics(value)
    return out


def _compare_two_experiments(repo: Path) -> None:
    """`dvc exp run -S train.lr=...` twice: re-runs train and report only, and `dvc exp show`
    has each run's headline figures (a small cached metrics file), none missing."""
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "baseline"], repo)
    for lr in ("0.003", "0.004"):
        out = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"train.lr={lr}"], repo)
        assert "Running stage 'train'" in out and "Stage 'extract' didn't change" in out
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    runs = _experiment_metrics(json.loads(shown.stdout))
    assert {0.003, 0.004} <= set(runs), runs
    for lr in (0.003, 0.004):
        for row in ("text", "audio_word", "late", "ft_audio_word"):
            assert all(isinstance(runs[lr][row][k], float) for k in ("test_ua", "test_wa", "val_ua")), (lr, row)
        assert runs[lr]["best_by_validation"]["experiment"] in runs[lr]
    table = _run([sys.executable, "-m", "dvc", "exp", "show", "--only-changed", "--no-pager"], repo)
    print(table)  # the table a person reads, 250 columns wide (pytest -s shows it)
    assert "train.lr" in table and "val_ua" in table  # the columns that changed (test figures may not, here)
    runs_rows = [line for line in table.splitlines() if "──" in line and "[" in line]  # ├── <sha> [name]
    assert len(runs_rows) == 2 and not any(" ! " in f" {line} " for line in runs_rows), table


def test_the_one_dvc_metric_is_the_cached_headline_file() -> None:
    """reports/ is git-ignored, so a `cache: false` metric or plot exists in no experiment: every
    `dvc exp show` row would read `!` for it.  The one metric is report.metrics, cached."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    metrics, uncached = [], []
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # foreach stages
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                metrics += [path] if kind == "metrics" else []
                uncached += [f"{name}: {path}"] if opts.get("cache") is False else []
    assert metrics == ["${report.metrics}"] and uncached == []


@pytest.mark.timeout(900)  # the whole pipeline, fine-tuning included, several times (~4 min here)
def test_dvc_repro_runs_and_then_is_a_no_op(scratch_repo: Path) -> None:
    out = _run([sys.executable, "-m", "dvc", "repro"], scratch_repo)
    for stage in (
        "synth",
        "prepare",
        "align",
        "align_eval",
        "align_eval_corpus",
        "demo_model",
        "extract",
        "extract_audio",
        "finetune@1",
        "finetune@2",
        "extract_ft@1",
        "extract_ft@2",
        "train",
        "report",
    ):
        assert f"Running stage '{stage}'" in out
    for name in ("text", "audio_word", "late", "ft_audio_word"):  # one train stage runs every experiment
        assert (scratch_repo / "reports" / "metrics" / f"{name}.json").is_file()
    assert (scratch_repo / "data" / "features" / "speech.h5").is_file()
    for fold in (1, 2):
        assert (scratch_repo / "data" / "features-ft" / f"fold-{fold}" / "speech.h5").is_file()
    ft = json.loads((scratch_repo / "reports" / "metrics" / "ft_audio_word.json").read_text())
    assert ft["features"] == "finetuned" and sorted(ft["folds"]) == ["1", "2"]
    assert json.loads((scratch_repo / "reports" / "alignment.json").read_text())["aligned"] > 0
    manifest = scratch_repo / "data" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    quality = json.loads((scratch_repo / "reports" / "data_quality.json").read_text())
    assert len(rows) == quality["kept"] > 0 and {r["group"] for r in rows} == {"Ses01", "Ses02"}
    out = _run([sys.executable, "-m", "dvc", "repro"], scratch_repo)
    assert "Data and pipelines are up to date" in out
    results = (scratch_repo / "reports" / "results.md").read_text()
    assert "| late |" in results and "Best system by **validation** UA" in results
    assert (scratch_repo / "reports" / "predictions" / "late.csv").read_text().startswith("utt_id,fold,seed,label")
    _compare_two_experiments(scratch_repo)
    # A changed training param re-runs training (and the report) only: the feature cache is reused.
    params = yaml.safe_load((scratch_repo / "params.yaml").read_text())
    params["train"]["lr"] = 0.002
    (scratch_repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([sys.executable, "-m", "dvc", "repro"], scratch_repo)
    assert "Stage 'extract' didn't change" in out and "Running stage 'train'" in out
    assert "Stage 'finetune@1' didn't change" in out and "train ft_audio_word:" in out
    # A changed feature param re-runs extraction only: alignment is reused.
    params = yaml.safe_load((scratch_repo / "params.yaml").read_text())
    params["features"]["speech"]["pooling"] = "max"
    (scratch_repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([sys.executable, "-m", "dvc", "repro"], scratch_repo)
    assert "Stage 'align' didn't change" in out and "Running stage 'extract'" in out
    assert "Stage 'finetune@1' didn't change" in out and "Running stage 'extract_ft@1'" in out
    assert "rebuilding" in out and "pooling: 'mean' → 'max'" in out
