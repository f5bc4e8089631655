"""The paper presets (params/zhao2022.yaml, params/sun2023.yaml) load, and every model they
list builds and takes an optimisation step on tiny inputs; their encoder settings load tiny
local models in place of the hub ids (no download)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mger.core.config import load_params
from mger.features.cache import Ragged
from mger.features.registry import build_encoder
from mger.models.experiment import fit_member, members, model_config
from mger.models.modules import input_names
from mger.models.train import TensorSet

PRESETS = [Path(__file__).resolve().parents[1] / "params" / f"{name}.yaml" for name in ("sun2023", "zhao2022")]
LENGTHS = {"frame": 20, "phone": 8, "syllable": 5, "word": 4, "utterance": 1, "token": 6}


def _data(names: list[str], n: int = 24, dim: int = 8) -> TensorSet:
    rng = np.random.default_rng(0)
    inputs = {}
    for name in names:
        lengths = torch.as_tensor(rng.integers(1, LENGTHS[name.split(":")[1]] + 1, n))
        rows = torch.as_tensor(rng.standard_normal((int(lengths.sum()), dim)), dtype=torch.float16)
        inputs[name] = Ragged(rows, torch.cumsum(lengths, 0) - lengths, lengths)
    return TensorSet(inputs, torch.as_tensor(np.arange(n) % 4))


def test_both_presets_exist() -> None:
    assert all(p.is_file() for p in PRESETS)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_models_take_a_step(preset: Path) -> None:
    params = load_params(preset)
    assert params.features.speech.model == "facebook/wav2vec2-base" and params.train.seeds == [0, 1, 2]
    train = dataclasses.replace(params.train, epochs=1, hidden=16, heads=2)
    specs = params.train.all_experiments
    built = 0
    for name, spec in specs.items():
        for part in members(spec):
            cfg = model_config(part, train, {}, 4)
            data = _data(input_names(cfg))
            cfg = model_config(part, train, {n: 8 for n in data.inputs}, 4)
            (val, test), history = fit_member(
                cfg,
                data.subset(np.arange(16)),
                data.subset(np.arange(16, 20)),
                data.subset(np.arange(20, 24)),
                train,
                seed=0,
            )
            assert val.shape == (4, 4) and test.shape == (4, 4) and history, name
            built += 1
    assert built >= len(specs)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_encoders_load_from_local_models(preset: Path, tiny_models: dict[str, str]) -> None:
    features = load_params(preset).features
    local = dataclasses.replace(
        features,
        device="cpu",
        speech=dataclasses.replace(features.speech, model=tiny_models["speech"]),
        text=dataclasses.replace(features.text, model=tiny_models["text"]),
    )
    speech, text = build_encoder("speech", local), build_encoder("text", local)
    assert speech.encode([np.zeros(16000, np.float32)])[0].shape[1] == speech.dim
    ((tokens, _, words),) = text.encode_batch([("Hello there!", [(0, 5), (6, 12)])])
    assert words.shape == (2, text.dim)


def test_sun_preset_fine_tunes_two_named_variants() -> None:
    """params/sun2023.yaml: one fine-tuning with both auxiliary losses (aux), one without (noaux),
    both end to end; the rows without auxiliary tasks read noaux, the rows with them aux, and
    each variant has its linear-probe references."""
    params = load_params(PRESETS[0])
    ft = params.finetune
    assert ft.variant_names == ["aux", "noaux"]
    aux, noaux = ft.variant("aux"), ft.variant("noaux")
    assert aux.objective == noaux.objective == "fusion" and aux.text and noaux.text
    assert (aux.fusion.aux_matching, aux.fusion.aux_unimodal) == (0.5, 0.5)
    assert (noaux.fusion.aux_matching, noaux.fusion.aux_unimodal) == (0.0, 0.0)
    assert dataclasses.replace(noaux.fusion, aux_matching=0.5, aux_unimodal=0.5) == aux.fusion  # nothing else differs
    assert aux.seed in params.train.seeds and noaux.fold_dir(1) != aux.fold_dir(1)
    rows = params.train.finetuned_experiments
    for name, spec in rows.items():
        if spec.aux_matching or spec.aux_unimodal:
            assert spec.finetune == "aux", name
        elif spec.model != "probe":
            assert spec.finetune == "noaux", name
    for variant in ("aux", "noaux"):
        assert {s.probe for s in rows.values() if s.model == "probe" and s.finetune == variant} == {"speech", "both"}


BEYOND = {
    "sun2023-wavlm": ("microsoft/wavlm-base-plus", "wavlm"),
    "sun2023-whisper": ("openai/whisper-base", "whisper"),
}


@pytest.mark.parametrize("name", sorted(BEYOND))
def test_beyond_paper_presets_are_sun_with_another_speech_encoder(name: str, tmp_path: Path) -> None:
    """params/sun2023-wavlm.yaml and -whisper.yaml: the Sun preset but for the speech model, whose
    settings load a tiny local model of that family through the same encoder factory."""
    from tests.builders import tiny_speech_model

    params = load_params(PRESETS[0].parent / f"{name}.yaml")
    sun = load_params(PRESETS[0])
    hub_id, family = BEYOND[name]
    assert params.features.speech.model == hub_id
    assert dataclasses.replace(params.features.speech, model=sun.features.speech.model) == sun.features.speech
    assert params.train == sun.train and params.finetune == sun.finetune and params.features.text == sun.features.text
    local = dataclasses.replace(
        params.features,
        device="cpu",
        speech=dataclasses.replace(params.features.speech, model=tiny_speech_model(family, tmp_path / family)),
    )
    speech = build_encoder("speech", local)
    assert speech.frame_stride_s == pytest.approx(0.02)
    assert speech.encode([np.zeros(16000, np.float32)])[0].shape == (speech.n_frames(16000), speech.dim)


def test_demo_layers_adds_an_all_layer_store_and_a_learned_row(tmp_path: Path) -> None:
    """params/demo-layers.yaml: params.yaml's stores and rows unchanged, plus the layer: all store,
    the learned-weights row and a report of four named rows (an unknown name is refused)."""
    from mger.core.config import params_from_dict
    from mger.core.reporting import StageError
    from mger.models.report import load_experiments

    root = PRESETS[0].parents[1]
    layers, demo = load_params(root / "params" / "demo-layers.yaml"), load_params(root / "params.yaml")
    assert layers.features.speech == demo.features.speech and layers.features.extra_speech["layers"].layer == "all"
    assert {k: v for k, v in layers.train.experiments.items() if k in demo.train.experiments} == demo.train.experiments
    assert layers.train.experiments["audio_word_layers"].layer_weights == "learned"
    assert layers.train.metrics_dir != demo.train.metrics_dir and demo.report.experiments is None
    assert layers.report.metrics != demo.report.metrics  # the demo's DVC metric is never overwritten
    assert layers.report.experiments == ["probe_speech", "audio_word", "probe_layers", "audio_word_layers"]
    bad = params_from_dict({"report": {"experiments": ["nope"]}, "train": {"metrics_dir": str(tmp_path)}})
    with pytest.raises(StageError, match="report.experiments: nope: not an experiment of train.experiments"):
        load_experiments(bad)


@pytest.mark.parametrize("name", ["sun2023", "zhao2022"])
def test_a_preset_copied_to_params_yaml_resolves_every_dvc_variable(name: str) -> None:
    """The README's `cp params/<preset>.yaml params.yaml; dvc repro`: every ``${section.key}`` of
    dvc.yaml is in the preset itself (DVC reads params.yaml as plain YAML, without ``extends``)."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    preset = yaml.safe_load((root / "params" / f"{name}.yaml").read_text())
    used = set(re.findall(r"\$\{([a-z_]+(?:\.[a-z_]+)+)\}", (root / "dvc.yaml").read_text()))
    missing = []
    for dotted in sorted(used):
        node = preset
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        missing += [dotted] if node is None else []
    assert used and missing == []
