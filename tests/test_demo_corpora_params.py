"""params/corpora/*.yaml (make demo-corpora): each loads, writes its own layout, and keeps every
output under data/corpora/<name> or reports/corpora/<name>, so no two runs (nor `make demo`)
share a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mger.core.config import load_params

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("msp_podcast", "meld", "crema_d", "ravdess", "csv", "cross")


def _outputs(name: str) -> list[str]:
    p = load_params(ROOT / "params" / "corpora" / f"{name}.yaml")
    return [
        p.prepare.manifest,
        p.prepare.report,
        p.align.out,
        p.align.report,
        p.features.out,
        p.train.metrics_dir,
        p.train.epochs_dir,
        p.train.predictions_dir,
        p.report.out,
        p.report.figures,
        p.report.metrics,
        *([p.synth.out] if name != "cross" else []),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_each_corpus_writes_its_own_folders(name: str) -> None:
    p = load_params(ROOT / "params" / "corpora" / f"{name}.yaml")
    for out in _outputs(name):
        assert out.startswith((f"data/corpora/{name}/", f"reports/corpora/{name}/")), out
    if name == "cross":
        assert p.split.protocol == "cross_corpus" and set(p.prepare.corpora) == {p.split.train_corpus, "ravdess"}
    else:
        assert p.synth.layout == p.prepare.corpus == name
    assert all(spec.text_source != "asr" for spec in p.train.experiments.values())  # no transcribe stage here


def test_no_two_runs_share_an_output() -> None:
    outs = [o for name in NAMES for o in _outputs(name)]
    assert len(outs) == len(set(outs))
