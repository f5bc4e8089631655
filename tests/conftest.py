"""Shared fixtures: corpora built in code, never checked in."""

from __future__ import annotations

from pathlib import Path

import pytest

from mger.alignment.stage import run_align
from mger.core.config import AlignConfig
from mger.corpus.readers import prepare_corpus
from mger.corpus.synth import synthesize_corpus
from tests.builders import save_tiny_models

TINY = dict(seed=5, sessions=3, dialogs_per_session=1, turns_per_dialog=8)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic corpus of 3 sessions x 1 dialog x 8 turns (shared, treat as read-only)."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_corpus(root, **TINY)
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 3-layer random wav2vec2 and a 2-layer random BERT (MiniLM's tokenizer), save_pretrained."""
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def aligned(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny corpus's manifest and segment table (iemocap backend: fast and exact)."""
    out = tmp_path_factory.mktemp("aligned")
    prepare_corpus("iemocap", tiny_corpus, out / "manifest.jsonl", out / "q.json", "4class", quiet=True)
    run_align(
        out / "manifest.jsonl",
        AlignConfig(backend="iemocap", out=str(out / "align"), report=str(out / "a.json"), n_jobs=1),
    )
    return {"manifest": out / "manifest.jsonl", "segments": out / "align" / "segments.h5"}


@pytest.fixture(scope="session")
def reference_store(
    tiny_models: dict[str, str], aligned: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The tiny corpus's speech and text stores (shard_size 4; treat as read-only)."""
    from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig
    from mger.features.extract import extract

    out = tmp_path_factory.mktemp("features")
    cfg = FeaturesConfig(
        out=str(out),
        shard_size=4,
        speech=SpeechFeaturesConfig(model=tiny_models["speech"]),
        text=TextFeaturesConfig(model=tiny_models["text"]),
    )
    return {kind: extract(kind, cfg, aligned["manifest"], aligned["segments"]) for kind in ("speech", "text")}
