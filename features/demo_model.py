"""A randomly initialised wav2vec2 for the offline demo, saved with ``save_pretrained``.

No package ships wav2vec 2.0 weights and the demo machine cannot reach the hub, so the demo
encodes with random weights.  Its features still carry loudness, rate and spectral shape (its
input is not normalised, so loudness survives), not the phonetic knowledge of pretrained
ones.  The extraction code is the same ``from_pretrained`` path a real checkpoint takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mger.core.config import DemoModelConfig


def make_demo_model(cfg: DemoModelConfig) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(cfg.seed)
    config = Wav2Vec2Config(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        conv_dim=(cfg.conv_dim,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=min(16, cfg.hidden_size),
    )
    out = Path(cfg.out)
    Wav2Vec2Model(config).save_pretrained(out)
    # No per-utterance normalisation: with random weights, loudness is one of the few cues the
    # features can carry, and normalising the waveform would remove it.
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(out)
    print(
        f"demo-model: random-init wav2vec2 ({cfg.num_hidden_layers} layers, {cfg.hidden_size} dims, "
        f"seed {cfg.seed}) → {out}"
    )
    return out
