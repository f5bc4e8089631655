"""The command line: help texts, overrides, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mger.pipeline.cli import build_parser, main

SUBCOMMANDS = ["synth", "prepare", "summary"]


def test_top_level_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize(
    "name, options",
    [
        ("synth", ["--out", "--layout", "--seed", "--sessions", "--dialogs", "--turns", "--params"]),
        ("prepare", ["--root", "--out", "--report", "--class-map", "--params"]),
        ("align-eval-corpus", ["--manifest", "--segments", "--out", "--params"]),
    ],
)
def test_subcommand_help_describes_options(name: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    assert all(opt in out for opt in options)


def test_prepare_wrong_root_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mger.pipeline.cli",
            "prepare",
            "--root",
            str(tmp_path / "nope"),
            "--params",
            str(tmp_path / "none.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "params file not found" in proc.stderr
    (tmp_path / "p.yaml").write_text("{}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mger.pipeline.cli",
            "prepare",
            "--root",
            str(tmp_path / "nope"),
            "--params",
            str(tmp_path / "p.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("mger prepare: error:")
    assert "corpus root does not exist" in proc.stderr


def test_cli_overrides_params(tiny_corpus: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("prepare:\n  class_map: 6class\n")
    rc = main(
        [
            "prepare",
            "--params",
            str(params),
            "--root",
            str(tiny_corpus),
            "--out",
            str(tmp_path / "m.jsonl"),
            "--report",
            str(tmp_path / "q.json"),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "q.json").read_text())
    assert "fru" in report["class_map"] and report["kept"] == len((tmp_path / "m.jsonl").read_text().splitlines())
    assert build_parser().parse_args(["synth", "--seed", "0"]).seed == 0


# --- the error boundary: one line naming the file or key, exit 1; --debug shows the traceback ---


def _write_params(tmp_path: Path, aligned: dict[str, Path], tiny_models: dict[str, str], **sections: dict) -> Path:
    import yaml

    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"out": str(aligned["segments"].parent)},
        "features": {
            "out": str(tmp_path / "features"),
            "speech": {"model": tiny_models["speech"]},
            "text": {"model": tiny_models["text"]},
        },
        "train": {
            "epochs": 1,
            "metrics_dir": str(tmp_path / "metrics"),
            "epochs_dir": str(tmp_path / "ep"),
            "experiments": {"audio_phone": {"model": "audio", "speech_levels": ["phone"]}},
        },
        "report": {
            "out": str(tmp_path / "results.md"),
            "figures": str(tmp_path / "fig"),
            "metrics": str(tmp_path / "metrics.json"),
        },
    }
    for name, values in sections.items():
        params[name] = {**params.get(name, {}), **values}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _manifest_variant(aligned: dict[str, Path], tmp_path: Path, edit) -> Path:
    lines = aligned["manifest"].read_text().splitlines()
    out = tmp_path / "bad.jsonl"
    out.write_text("\n".join(edit(lines)) + "\n")
    return out


def _duration_as_string(lines: list[str]) -> list[str]:
    row = json.loads(lines[2])
    row["duration"] = str(row["duration"])
    return lines[:2] + [json.dumps(row)] + lines[3:]


def _one_group(lines: list[str]) -> list[str]:
    return [line for line in lines if json.loads(line)["group"] == "Ses01"]


CASES = {
    "bad model path": (
        ["extract", "--kind", "speech"],
        {"features": {"speech": {"model": "/nonexistent/w2v"}}},
        None,
        r"features\.speech\.model: cannot load '/nonexistent/w2v'",
    ),
    "no such package": (
        ["extract", "--kind", "text"],
        {"features": {"text": {"model": "package:no_such_pkg"}}},
        None,
        r"features\.text\.model: cannot load 'package:no_such_pkg' \(No module named",
    ),
    "hidden vs heads": (
        ["train", "--experiment", "all"],
        {"train": {"hidden": 130, "heads": 4}},
        None,
        r"p\.yaml: train: hidden size 130 is not divisible by 4 attention heads",
    ),
    "one group": (
        ["train", "--experiment", "all"],
        {},
        _one_group,
        r"bad\.jsonl: 1 group\(s\) \['Ses01'\]; leave-one-group-out needs at least two",
    ),
    "duration as string": (
        ["extract", "--kind", "text"],
        {},
        _duration_as_string,
        r"bad\.jsonl:3: duration is '[\d.]+', expected float",
    ),
    "truncated line": (
        ["extract", "--kind", "text"],
        {},
        lambda lines: lines[:4] + [lines[4][:40]],
        r"bad\.jsonl:5: not a complete JSON object",
    ),
    "no experiments": (
        ["train", "--experiment", "all"],
        {"train": {"experiments": {}}},
        None,
        r"p\.yaml: train\.experiments and train\.finetuned_experiments are empty",
    ),
    "unknown experiment": (
        ["train", "--experiment", "nope"],
        {},
        None,
        r"train\.experiments and train\.finetuned_experiments have no 'nope'",
    ),
    "negative lr": (
        ["train", "--experiment", "all"],
        {"train": {"lr": -1}},
        None,
        r"p\.yaml: train\.lr: must be positive, got -1\.0",
    ),
    "missing manifest": (
        ["extract", "--kind", "text"],
        {"prepare": {"manifest": "/nonexistent/m.jsonl"}},
        None,
        r"/nonexistent/m\.jsonl: no such file",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line(
    case: str, aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    argv, sections, manifest_edit, message = CASES[case]
    if manifest_edit is not None:
        sections = {**sections, "prepare": {"manifest": str(_manifest_variant(aligned, tmp_path, manifest_edit))}}
    params = _write_params(tmp_path, aligned, tiny_models, **sections)
    rc = main([*argv, "--params", str(params)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith(f"mger {argv[0]}: error: ") and re.search(message, err[-1]), err[-1]
    assert not any("Traceback" in line for line in err)


def test_unknown_level_in_the_store_is_one_line(
    reference_store, aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An experiment asks for a level the store lacks: one line naming the store and the level."""
    import shutil

    import h5py

    (tmp_path / "features").mkdir()
    for kind in ("speech", "text"):
        shutil.copy(reference_store[kind], tmp_path / "features" / f"{kind}.h5")
    with h5py.File(tmp_path / "features" / "speech.h5", "a") as f:
        del f["phone"]
    params = _write_params(tmp_path, aligned, tiny_models)
    assert main(["train", "--experiment", "audio_phone", "--params", str(params)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("mger train: error: ") and "speech.h5" in line and "'phone'" in line, line


def test_diverging_training_is_one_line_and_writes_nothing(
    reference_store, aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning rate that makes the loss NaN stops training with one line naming the
    experiment, fold, seed and epoch; no metrics, predictions or history are written."""
    import shutil

    (tmp_path / "features").mkdir()
    for kind in ("speech", "text"):
        shutil.copy(reference_store[kind], tmp_path / "features" / f"{kind}.h5")
    params = _write_params(
        tmp_path, aligned, tiny_models, train={"lr": 1e10, "seeds": [4], "predictions_dir": str(tmp_path / "pred")}
    )
    assert main(["train", "--experiment", "audio_phone", "--params", str(params)]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith(
        "mger train: error: experiment audio_phone: fold 1, seed 4, epoch 1: validation loss is nan (not finite)"
    ), err
    written = [p.name for d in ("metrics", "pred", "ep") for p in (tmp_path / d).glob("*")]
    assert written in ([], ["audio_phone.json.lock"]), written  # the run's lock (docs/classifiers.md), nothing else


@pytest.mark.parametrize("model", ["speech model", "bert without tokenizer"])
def test_a_text_model_without_a_tokenizer_is_one_line_naming_it(
    model: str, aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """transformers raises a TypeError for some (a wav2vec2 folder) and builds an empty
    vocabulary for others (every word [UNK]): both refused naming the folder."""
    from transformers import BertConfig, BertModel

    folder = tiny_models["speech"]
    if model == "bert without tokenizer":
        folder = str(tmp_path / "bert")
        BertModel(BertConfig(vocab_size=99, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
            folder
        )
    params = _write_params(tmp_path, aligned, tiny_models, features={"text": {"model": folder}})
    assert main(["extract", "--kind", "text", "--params", str(params)]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith(
        f"mger extract: error: features.text.model: cannot load {folder!r} ({folder}: no tokenizer here"
    ), err


def test_a_hub_id_offline_is_one_line_without_hub_requests(aligned, tiny_models, tmp_path: Path) -> None:
    """A hub id (a preset's) where the hub cannot be reached and nothing is cached: one line
    naming the param and suggesting a local folder, at once, with no HEAD request lines."""
    import os
    import time

    params = _write_params(tmp_path, aligned, tiny_models, features={"speech": {"model": "facebook/wav2vec2-base"}})
    env = os.environ | {
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: unreachable, deterministically
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache
    }
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [sys.executable, "-m", "mger.pipeline.cli", "extract", "--kind", "speech", "--params", str(params)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and time.perf_counter() - t0 < 20
    assert proc.stderr.strip().splitlines() == [
        "mger extract: error: features.speech.model: cannot load 'facebook/wav2vec2-base': no such local folder, "
        "and as a hub id it is not in the Hugging Face cache while the hub cannot be reached (offline); set "
        "features.speech.model to a local save_pretrained folder (saved where the hub is reachable), or run where it is"
    ]


def test_disk_full_is_one_line_and_leaves_no_temp(
    tiny_corpus: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "q.json").write_text('{"old": true}\n')

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    (tmp_path / "p.yaml").write_text("{}\n")
    rc = main(
        [
            "prepare",
            "--root",
            str(tiny_corpus),
            "--out",
            str(tmp_path / "m.jsonl"),
            "--report",
            str(tmp_path / "reports" / "q.json"),
            "--params",
            str(tmp_path / "p.yaml"),
        ]
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and line.startswith("mger prepare: error: ") and "disk full; free some space" in line, line
    assert f"{tmp_path / 'reports' / 'q.json'}: disk full" in line
    assert (tmp_path / "reports" / "q.json").read_text() == '{"old": true}\n'
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["q.json"]


@pytest.mark.parametrize("how", ["--debug", "MGER_DEBUG=1"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    (tmp_path / "p.yaml").write_text("train:\n  hidden: 130\n  heads: 4\n")
    cmd = [
        sys.executable,
        "-m",
        "mger.pipeline.cli",
        "train",
        "--experiment",
        "all",
        "--params",
        str(tmp_path / "p.yaml"),
    ]
    env = dict(__import__("os").environ)
    if how == "--debug":
        cmd.append("--debug")
    else:
        env["MGER_DEBUG"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mger train: error: ")
    quiet = subprocess.run(
        cmd[:-1] if how == "--debug" else cmd,
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "MGER_DEBUG"},
    )
    assert quiet.returncode == 1 and quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr


@pytest.mark.parametrize("argv", [["--debug", "report"], ["report", "--debug"], ["report"]])
def test_debug_before_or_after_the_command(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mger --debug report` works as `mger report --debug` does; without it, one line only."""
    monkeypatch.delenv("MGER_DEBUG", raising=False)
    (tmp_path / "p.yaml").write_text("{}\n")
    assert main([*argv, "--params", str(tmp_path / "p.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "mger report: error: train.experiments and train.finetuned_experiments are empty: nothing to report"
    )
    assert ("Traceback (most recent call last)" in err) == ("--debug" in argv)


@pytest.mark.parametrize(
    "err, line",
    [
        (KeyError("speech_levels"), "KeyError: speech_levels (unexpected; rerun with --debug for the traceback)"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero (unexpected; rerun with --debug"),
        (KeyError("store.h5: no level 'x' (levels: word)"), "store.h5: no level 'x' (levels: word)"),
        (PermissionError(13, "Permission denied", "/r/results.md"), "/r/results.md: Permission denied"),
        (ValueError("m.jsonl:3: session is '1'\nexpected int"), "m.jsonl:3: session is '1' expected int"),
    ],
)
def test_error_line_is_one_line(err: BaseException, line: str) -> None:
    from mger.pipeline.cli import error_line

    assert error_line(err).startswith(line) and "\n" not in error_line(err)


def test_without_params_yaml_commands_run_on_the_built_in_defaults(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mger.core.config import Params, read_params

    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert read_params() == Params()
    assert main(["prepare", "--root", str(tiny_corpus), "--out", "m.jsonl", "--report", "q.json"]) == 0
    assert (tmp_path / "m.jsonl").stat().st_size > 0
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mger.pipeline.cli",
            "synth",
            "--out",
            "corpus",
            "--sessions",
            "1",
            "--dialogs",
            "1",
            "--turns",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "corpus").is_dir()
    # an explicitly named params file that is missing is still an error
    proc = subprocess.run(
        [sys.executable, "-m", "mger.pipeline.cli", "synth", "--out", "c2", "--params", "none.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "none.yaml: params file not found" in proc.stderr


def test_overrides_build_a_new_validated_params_object() -> None:
    from mger.core.config import ConfigError, Params, with_overrides

    params = Params()
    new = with_overrides(params, {"align.n_jobs": 3, "align.backend": "iemocap", "features.n_jobs": None})
    assert (new.align.n_jobs, new.align.backend) == (3, "iemocap")
    assert params == Params() and new.features is params.features  # the loaded object is left as it was
    with pytest.raises(ConfigError, match="align.n_jobs: must be positive"):
        with_overrides(params, {"align.n_jobs": -2})
    with pytest.raises(ConfigError, match="align.backend: 'nope' is not one of"):
        with_overrides(params, {"align.backend": "nope"})
    with pytest.raises(ConfigError, match="align.bogus: unknown key"):
        with_overrides(params, {"align.bogus": 1})
    assert main(["align", "--params", "/dev/null", "--n-jobs", "-2"]) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["synth", "--sessions", "0"], "synth.sessions: must be positive, got 0"),
        (["synth", "--sessions", "10"], "synth.sessions: at most 9 sessions"),
        (["synth", "--turns", "-1"], "synth.turns_per_dialog: must be positive, got -1"),
        (["align", "--n-jobs", "0"], "align.n_jobs: must be positive, got 0"),
    ],
)
def test_command_line_numbers_are_checked_as_params_are(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 is refused, not taken as "not given" (it used to fall back to the params value)."""
    assert main([*argv, "--params", "/dev/null"]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["extract", "finetune"])
@pytest.mark.parametrize("fold", ["-1", "0"])
def test_a_fold_below_one_is_refused_by_the_parser(command: str, fold: str, capsys) -> None:
    """`--fold -1` used to become the folder fold--1 and advice to fine-tune it."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--fold", fold])
    assert exit_.value.code == 2
    assert f"--fold '{fold}': a fold is numbered 1 or more (IEMOCAP: its test session)" in capsys.readouterr().err


def test_auto_device_is_resolved_once_for_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every extraction of the stage gets the one concrete device decided before it starts."""
    import torch

    import mger.features.extract as extract_module

    seen = []
    monkeypatch.setattr(extract_module, "extract", lambda kind, cfg, *a, **k: seen.append(cfg.device))
    assert main(["extract", "--params", "/dev/null"]) == 0
    assert seen and set(seen) == {"cuda" if torch.cuda.is_available() else "cpu"}


@pytest.mark.parametrize("command, what", [(["train", "--experiment", "all"], "experiments"), (["finetune"], "folds")])
@pytest.mark.parametrize("dispatch_to", [{}, {"backend": "dask", "scheduler": "tcp://training:2"}])
def test_training_is_spread_by_train_dispatch_not_features_backend(
    command: list[str], what: str, dispatch_to: dict, aligned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mger train --n-jobs` and `mger finetune --n-jobs` spread their jobs as train_dispatch says;
    features.backend (a Dask cluster here) is extraction's alone."""
    import yaml

    import mger.pipeline.cli as cli

    seen = []
    monkeypatch.setattr(
        cli, "dispatch", lambda fn, jobs, n, backend, scheduler, what: seen.append((what, n, backend, scheduler))
    )
    params = tmp_path / "p.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "prepare": {"manifest": str(aligned["manifest"])},
                "features": {"backend": "dask", "scheduler": "tcp://extraction:1"},
                "train": {"experiments": {"t": {"model": "text"}}},
                "finetune": {"folds": [1, 2, 3]},  # the tiny corpus's 3 sessions (mger finetune refuses fold 4)
                "train_dispatch": dispatch_to,
            }
        )
    )
    assert main([*command, "--params", str(params), "--n-jobs", "2"]) == 0
    assert seen == [(what, 2, dispatch_to.get("backend", "joblib"), dispatch_to.get("scheduler"))]


def test_summary_lists_every_store_and_goes_on_past_a_damaged_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from mger.core.config import params_from_dict
    from mger.features.cache import write_store
    from mger.pipeline.summary import print_summary

    rows = {"word": [np.zeros((2, 4), np.float16)], "utterance": [np.zeros((1, 4), np.float16)]}
    write_store(tmp_path / "speech-egemaps.h5", ["Ses01F_impro01_F000"], rows, {"model": "opensmile:eGeMAPSv02"})
    (tmp_path / "text.h5").write_bytes(b"not an HDF5 file")
    quality = {"root": "corpus", "kept": 1, "dropped": 0, "per_class": {"neu": 1}, "per_group": {"Ses01": 1}}
    (tmp_path / "q.json").write_text(json.dumps(quality))
    params = params_from_dict(
        {
            "features": {"out": str(tmp_path), "extra_speech": {"egemaps": {"model": "opensmile:eGeMAPSv02"}}},
            "prepare": {"report": str(tmp_path / "q.json")},
            "align": {"report": str(tmp_path / "none.json")},
            "align_eval": {"report": str(tmp_path / "none.json")},
            "report": {"out": str(tmp_path / "none.md")},
        }
    )
    print_summary(params)
    out = capsys.readouterr().out
    assert f"features {tmp_path / 'text.h5'}: unreadable (" in out
    assert f"features {tmp_path / 'speech-egemaps.h5'}: 1 utterances, model opensmile:eGeMAPSv02" in out
