"""SUPERB-style learned layer weights over a store of several encoder layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mger.core.config import (
    ExperimentSpec,
    FeaturesConfig,
    HeadConfig,
    SpeechFeaturesConfig,
    TextFeaturesConfig,
    TrainConfig,
)
from mger.core.reporting import StageError
from mger.features.cache import FeatureStore, Ragged
from mger.features.extract import extract
from mger.models.experiment import run_experiment
from mger.models.modules import LayerWeighted, ModelConfig, build_model
from mger.models.report import Experiment, layer_weight_lines
from mger.models.train import TensorSet, fit, standardize

N_LAYERS, DIM, CLASSES, INFORMATIVE = 4, 8, 4, 2


def _layered_set(n: int, seed: int) -> TensorSet:
    """n utterances of 3 word rows (L=4 layers, D=8): only layer 2 carries the label."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    rows = torch.randn(n * 3, N_LAYERS, DIM, generator=gen)
    signal = torch.nn.functional.one_hot(labels.repeat_interleave(3), DIM).float() * 1.5
    rows[:, INFORMATIVE] += signal
    starts, lengths = torch.arange(n) * 3, torch.full((n,), 3)
    return TensorSet({"speech:word": Ragged(rows.half(), starts, lengths)}, labels)


def _cfg(mode: str) -> ModelConfig:
    return ModelConfig(
        kind="audio",
        speech_levels=["word"],
        dims={"speech:word": DIM},
        n_classes=CLASSES,
        head=HeadConfig(hidden=16),
        stacked_layers={"speech:word": N_LAYERS},
        layer_weights=mode,
    )


def test_learned_weights_move_to_the_informative_layer() -> None:
    train, val = standardize([_layered_set(240, 0), _layered_set(60, 1)], _layered_set(240, 0))
    settings = TrainConfig(epochs=25, patience=25, lr=1e-2, batch_size=16, seeds=[0])
    model, history = fit(_cfg("learned"), train, val, settings, seed=0)
    weights = model.weights().detach()
    assert isinstance(model, LayerWeighted) and weights.sum().item() == pytest.approx(1.0)
    assert int(weights.argmax()) == INFORMATIVE and float(weights[INFORMATIVE]) > 2 / N_LAYERS, weights
    print("learned weights", [round(float(w), 3) for w in weights])
    assert max(h["val_ua"] for h in history) > 0.7  # chance: 0.25


def test_mean_weights_stay_equal_and_off_refuses_stacked_inputs() -> None:
    train = _layered_set(64, 0)
    model, _ = fit(_cfg("mean"), train, train, TrainConfig(epochs=2, patience=2, seeds=[0]), seed=0)
    torch.testing.assert_close(model.weights(), torch.full((N_LAYERS,), 1 / N_LAYERS))
    with pytest.raises(ValueError, match="train.layer_weights"):
        build_model(_cfg("off"))
    plain = build_model(ModelConfig(kind="audio", speech_levels=["word"], dims={"speech:word": DIM}))
    assert not isinstance(plain, LayerWeighted)  # one-layer stores: today's models, unchanged


def test_all_layers_store_trains_a_row_with_weights_per_fold(tiny_models, aligned, tmp_path: Path) -> None:
    """layer: all stores hidden states 0..L; a row with layer_weights learned records each fold's
    weights in its metrics JSON and the report plots them; without layer_weights it is refused."""
    features = FeaturesConfig(
        out=str(tmp_path / "f"),
        shard_size=8,
        speech=SpeechFeaturesConfig(model=tiny_models["speech"], layer="all", levels=["word", "utterance"]),
        text=TextFeaturesConfig(model=tiny_models["text"]),
    )
    store = FeatureStore(extract("speech", features, aligned["manifest"], aligned["segments"]))
    assert store.fingerprint["layer"] == [0, 1, 2, 3] and store.rows("word", store.utt_ids[0]).shape[1:] == (4, 32)
    train = TrainConfig(
        epochs=2,
        patience=2,
        seeds=[0],
        metrics_dir=str(tmp_path / "m"),
        epochs_dir=str(tmp_path / "e"),
        predictions_dir=str(tmp_path / "p"),
    )
    with pytest.raises(StageError, match="layer_weights"):
        run_experiment("plain", ExperimentSpec(model="audio"), train, features, aligned["manifest"])
    spec = ExperimentSpec(model="audio", layer_weights="learned")
    result = run_experiment("weighted", spec, train, features, aligned["manifest"])
    lw = json.loads((tmp_path / "m" / "weighted.json").read_text())["layer_weights"]
    assert lw == result["layer_weights"] and lw["mode"] == "learned" and lw["layers"] == [0, 1, 2, 3]
    assert sorted(r["fold"] for r in lw["per_fold"]) == [1, 2, 3]
    for r in lw["per_fold"]:
        assert len(r["weights"]) == 4 and sum(r["weights"]) == pytest.approx(1.0, abs=1e-5)
        assert r["weights"] != [0.25] * 4  # they trained
    assert np.allclose(lw["mean"], np.mean([r["weights"] for r in lw["per_fold"]], 0), atol=1e-5)
    lines = layer_weight_lines([Experiment(result, None)], tmp_path / "fig")
    assert (tmp_path / "fig" / "layer_weights.png").stat().st_size > 1000
    assert any(line.startswith("| weighted | 0: ") for line in lines)


def test_summary_gives_the_size_per_level_and_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Storing all layers multiplies the store: ``mger summary`` says by how much, level by level."""
    from mger.core.config import params_from_dict
    from mger.features.cache import write_store
    from mger.pipeline.summary import print_summary

    rows = {"word": [np.zeros((1024, 4, 256), np.float16)], "utterance": [np.zeros((1, 4, 256), np.float16)]}
    write_store(tmp_path / "speech.h5", ["Ses01F_impro01_F000"], rows, {"model": "m"})
    quality = {"root": "corpus", "kept": 1, "dropped": 0, "per_class": {"neu": 1}, "per_group": {"Ses01": 1}}
    (tmp_path / "q.json").write_text(json.dumps(quality))
    params = params_from_dict(
        {
            "features": {"out": str(tmp_path)},
            "prepare": {"report": str(tmp_path / "q.json")},
            "align": {"report": str(tmp_path / "none.json")},
            "align_eval": {"report": str(tmp_path / "none.json")},
            "report": {"out": str(tmp_path / "none.md")},
        }
    )
    print_summary(params)
    out = capsys.readouterr().out
    assert (
        "  size: 4 layers x 256 dims per row; utterance 0.00 MiB (0.00 per layer), word 2.00 MiB (0.50 per layer)"
        in out
    )
