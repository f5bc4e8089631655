"""The model-kind registry (mger.models.registry): every kind registered once is what training,
the cost order and the report read; a new fusion model is one class and one registration, here
in this file alone, trained and reported end to end on small real stores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mger.core.config import AUX_FIELDS, ConfigError, ExperimentSpec, load_params, params_from_dict
from mger.models.experiment import expected_cost, members, run_experiment
from mger.models.modules import AttentionPool, ModelConfig, ModelOutput, build_model, input_names, speech_and_text
from mger.models.registry import check_model_kinds, model_kinds, register_model, unregister_model
from mger.models.report import Experiment, ablation_pairs, load_experiments, row_spec, write_report
from tests.test_report import _corpus

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "classifiers.md"


def _inputs(cfg: ModelConfig, n: int = 3, t: int = 4) -> dict:
    return {name: (torch.randn(n, t, cfg.dims[name]), torch.ones(n, t, dtype=torch.bool)) for name in input_names(cfg)}


def test_every_registered_kind_builds_or_names_its_members_and_is_documented() -> None:
    kinds = model_kinds()
    assert list(kinds)[:9] == [
        "probe",
        "text",
        "audio",
        "multigranular",
        "fc",
        "coattention",
        "late",
        "combined",
        "mha_aux",
    ]
    documented = set(re.findall(r"`([a-z_]+)`", DOCS.read_text(encoding="utf-8")))
    for name, kind in kinds.items():
        assert name in documented, f"docs/classifiers.md does not document model kind {name!r}"
        levels = ["phone", "word"] if name in ("multigranular", "coattention", "late", "combined") else ["word"]
        cfg = ModelConfig(kind=name, speech_levels=levels, dims={"speech:phone": 5, "speech:word": 5, "text:token": 6})
        cfg.head.hidden, cfg.head.heads = 8, 2
        if kind.build is None:  # the probe and the ensembles are trained member by member
            spec = ExperimentSpec(model=name, speech_levels=levels)
            assert [m.model for m in members(spec)] == (
                [name]
                if name == "probe"
                else (["coattention"] if name == "combined" else []) + ["audio"] * 2 + ["text"]
            )
            with pytest.raises(ValueError, match="not one module"):
                build_model(cfg)
            continue
        out = build_model(cfg).eval()(_inputs(cfg))
        assert out.logits.shape == (3, cfg.n_classes)


def test_an_unknown_kind_is_one_line_naming_the_key(tmp_path: Path) -> None:
    params = params_from_dict({"train": {"experiments": {"bad": {"model": "gru"}}}})
    with pytest.raises(ConfigError) as err:
        run_experiment("bad", params.train.experiments["bad"], params.train, params.features, tmp_path / "m.jsonl")
    assert str(err.value).startswith("train.experiments.bad.model: 'gru' is not a model kind (known: probe, text")
    assert "\n" not in str(err.value)


class GatedFusion(nn.Module):
    """A test's own fusion model: pooled speech and text, mixed by a learned gate, classified."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.s_name, self.t_name = speech_and_text(cfg)
        h = cfg.head.hidden
        self.s_proj, self.t_proj = nn.Linear(cfg.dims[self.s_name], h), nn.Linear(cfg.dims[self.t_name], h)
        self.s_pool, self.t_pool = AttentionPool(h), AttentionPool(h)
        self.gate = nn.Linear(2 * h, h)
        self.head = nn.Linear(h, cfg.n_classes)

    def forward(self, inputs: dict, labels: torch.Tensor | None = None) -> ModelOutput:
        (s, s_mask), (t, t_mask) = inputs[self.s_name], inputs[self.t_name]
        ps, pt = self.s_pool(self.s_proj(s), s_mask), self.t_pool(self.t_proj(t), t_mask)
        g = torch.sigmoid(self.gate(torch.cat([ps, pt], -1)))
        return ModelOutput(self.head(g * ps + (1 - g) * pt))


@pytest.fixture
def gated():
    register_model(
        "gated",
        inputs=speech_and_text,
        cost=lambda spec, speech, layers: sum(speech) + 1.0,
        label=lambda m: f"gated fusion ({'+'.join(m['speech_levels'])} + text)",
        order=7.5,  # after combined, before mha_aux
        fusion=True,
    )(GatedFusion)
    yield
    unregister_model("gated")


def test_a_kind_registered_in_a_test_trains_and_reports(gated, tmp_path: Path) -> None:
    manifest, features = _corpus(tmp_path)
    experiments = {
        "text": {"model": "text"},
        "gated": {"model": "gated", "speech_levels": ["word"]},
        "mha": {"model": "mha_aux", "speech_levels": ["word"]},
    }
    params = params_from_dict(
        {
            "prepare": {"manifest": str(manifest)},
            "features": {"out": features.out},
            "train": {
                "epochs": 2,
                "hidden": 8,
                "heads": 2,
                "layers": 1,
                "seeds": [0],
                "metrics_dir": str(tmp_path / "metrics"),
                "epochs_dir": str(tmp_path / "epochs"),
                "predictions_dir": str(tmp_path / "predictions"),
                "experiments": experiments,
            },
            "report": {"out": str(tmp_path / "results.md"), "figures": str(tmp_path / "fig")},
        }
    )
    spec = params.train.experiments["gated"]
    assert expected_cost(spec, params.train) == 2.0
    result = run_experiment("gated", spec, params.train, params.features, manifest, split=params.split)
    assert result["model"] == "gated" and 0 <= result["ua"]["mean"] <= 1
    assert (tmp_path / "predictions" / "gated.csv").is_file()
    for name in ("text", "mha"):
        run_experiment(
            name, params.train.experiments[name], params.train, params.features, manifest, split=params.split
        )
    assert [e.name for e in load_experiments(params)] == ["text", "gated", "mha"]  # its registered order
    text = write_report(params).read_text(encoding="utf-8")
    assert "| gated | gated fusion (word + text) |" in text
    assert "| text vs fusion | text | gated |" in text  # registered as a fusion model: its ablation step
    assert "gated" in json.loads((tmp_path / "metrics" / "gated.json").read_text())["provenance"]["spec"]["model"]


def _row(name: str, features: str, **spec: object) -> Experiment:
    """A row's metrics as run_experiment writes their model fields (no predictions: not read here)."""
    s = ExperimentSpec(model="late", speech_levels=["word"], features=features, **spec)
    metrics = {"experiment": name, "model": s.model, "features": s.features, "speech_store": s.speech_store}
    metrics |= {"speech_levels": s.speech_levels, "text_level": s.text_level, "layers": 1, "probe": None}
    metrics |= {k: getattr(s, k) for k in AUX_FIELDS} | {"provenance": {"spec": s.record()}}
    return Experiment(metrics, None)


def test_two_late_rows_differing_only_in_late_weights_stay_two_rows() -> None:
    rows = [
        _row("late_fitted", "frozen", late_weights="fitted"),
        _row("late_mean", "frozen", late_weights="mean"),
        _row("late_ft", "finetuned", late_weights="fitted"),
    ]
    assert row_spec(rows[0].metrics) != row_spec(rows[1].metrics)
    assert row_spec(rows[0].metrics) == ExperimentSpec(model="late", speech_levels=["word"], layers=1)
    steps = [(step, a.name, b.name) for step, a, b in ablation_pairs(rows) if step == "frozen vs fine-tuned"]
    assert steps == [("frozen vs fine-tuned", "late_fitted", "late_ft")]  # not the mean-weighted row
    rows[2] = _row("late_ft", "finetuned", late_weights="mean")
    steps = [(step, a.name, b.name) for step, a, b in ablation_pairs(rows) if step == "frozen vs fine-tuned"]
    assert steps == [("frozen vs fine-tuned", "late_mean", "late_ft")]


@pytest.mark.parametrize(
    "path", ["params.yaml", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "params").glob("*.yaml"))]
)
def test_every_params_file_names_registered_kinds(path: str) -> None:
    """The model kinds the shipped params files use are the registry's (the config accepts any string)."""
    params = load_params(ROOT / path)
    check_model_kinds(params.train.all_experiments)
    assert {s.model for s in params.train.all_experiments.values()} <= set(model_kinds())
