"""A tiny random Whisper recogniser built in code, shared by the transcribe and predict tests."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_whisper_asr(folder: Path, seed: int) -> str:
    """A tiny random ``WhisperForConditionalGeneration`` with its processor, saved: a character
    vocabulary written here (vocab.json, an empty merges.txt) makes the tokenizer offline."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    vocab = {t: i for i, t in enumerate([*"abcdefghijklmnopqrstuvwxyz'", "Ġ", *special])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = transformers.WhisperTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
        additional_special_tokens=special[1:],
    )
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    transformers.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        num_mel_bins=80,
        vocab_size=len(vocab),
        pad_token_id=vocab[end],
        bos_token_id=vocab[end],
        eos_token_id=vocab[end],
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        max_target_positions=24,
    )
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config.begin_suppress_tokens = None  # the released ids lie outside this vocabulary
    model.save_pretrained(folder)
    return str(folder)
