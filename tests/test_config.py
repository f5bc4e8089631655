"""The typed params loader: defaults, the repo's params.yaml, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, Params, load_params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.prepare.class_map == "4class" and params.synth.sessions == 5


def test_experiment_sections_set_the_features() -> None:
    train = params_from_dict({"train": {"experiments": {"a": {"model": "text"}},
                                        "finetuned_experiments": {"b": {"model": "audio"}}}}).train
    assert train.all_experiments["a"].features == "frozen" and train.all_experiments["b"].features == "finetuned"


def test_defaults_fill_missing_sections() -> None:
    params = params_from_dict({"synth": {"seed": 3}})
    assert params.synth.seed == 3 and params.synth.sessions == 5 and params.prepare.manifest == "data/manifest.jsonl"


@pytest.mark.parametrize("data, message", [
    ({"synth": {"sead": 3}}, "synth.sead: unknown key"),
    ({"sinth": {}}, "sinth: unknown key"),
    ({"synth": {"seed": "three"}}, "synth.seed: expected int, got 'three'"),
    ({"synth": {"seed": True}}, "synth.seed: expected int"),
    ({"synth": {"sessions": 0}}, "synth.sessions: must be positive"),
    ({"synth": {"sessions": 12}}, "synth.sessions: at most 9"),
    ({"prepare": {"class_map": 4}}, "prepare.class_map: 4 fits none of"),
    ({"prepare": {"class_map": {"ang": 1}}}, "prepare.class_map"),
    ({"prepare": []}, "prepare: expected a mapping"),
    ({"finetune": {"warmup": 1.5}}, "finetune.warmup: a fraction"),
    ({"finetune": {"folds": []}}, "finetune.folds: needs at least one fold"),
    ({"train": {"experiments": {"a": {"model": "text"}}, "finetuned_experiments": {"a": {"model": "audio"}}}},
     "train.finetuned_experiments.a: name already used"),
])
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        params_from_dict(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("synth:\n  seed: [1\n")
    with pytest.raises(ConfigError, match="p.yaml: not valid YAML"):
        load_params(bad)
    bad.write_text("synth:\n  out: 5\n")
    with pytest.raises(ConfigError, match=r"p.yaml: synth.out: expected str, got 5"):
        load_params(bad)
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
