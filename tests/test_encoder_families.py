"""Speech encoder families through the one Encoder interface: HuBERT, WavLM, data2vec-audio
(raw waveform) and Whisper's encoder (log-mel), each a tiny random model built and saved here."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mger.alignment.table import SegmentTable
from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, FinetuneConfig, SpeechFeaturesConfig, TextFeaturesConfig
from mger.core.manifest import read_manifest
from mger.features.cache import FeatureStore
from mger.features.encoders import SpeechEncoder, WhisperSpeechEncoder, speech_encoder
from mger.features.extract import extract
from mger.features.fingerprint import fingerprint, load_aligned
from mger.models.finetune_stage import run_finetune
from tests.builders import tiny_speech_model

FAMILIES = ["hubert", "wavlm", "data2vec-audio", "whisper"]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("families")
    return {f: tiny_speech_model(f, root / f) for f in FAMILIES + ["wav2vec2"]}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_frames_batching_and_chunks(family_models, family: str) -> None:
    """One encoder interface: 20 ms frames, the family's frame count, a padded batch giving
    each utterance its frames alone, and a long utterance chunked to exactly its frame count."""
    enc = speech_encoder(family_models[family], device="cpu", dtype="fp32")
    assert isinstance(enc, WhisperSpeechEncoder if family == "whisper" else SpeechEncoder)
    assert enc.frame_stride_s == pytest.approx(0.02) and enc.dim == 32 and enc.n_layers == 2
    rng = np.random.default_rng(3)
    sizes = (20000, 9000, 3000)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in sizes]
    batched = enc.encode(waves)
    if family == "whisper":  # frames whose centres (20t ms) lie in the audio; the 30 s window's rest dropped
        assert [enc.n_frames(n) for n in sizes] == [math.ceil(n / 320) for n in sizes] == [63, 29, 10]
        assert enc.frame_centre0_s == 0.0 and enc.window_samples == 30 * 16000
    else:  # the conv-length formula
        assert [enc.n_frames(n) for n in sizes] == [(n - 400) // 320 + 1 for n in sizes]
    assert [o.shape for o in batched] == [(enc.n_frames(n), 32) for n in sizes]
    for wave, frames in zip(waves, batched):
        torch.testing.assert_close(frames, enc.encode([wave])[0], atol=1e-5, rtol=1e-4)
    chunked = speech_encoder(family_models[family], device="cpu", dtype="fp32", max_seconds=0.5, overlap_seconds=0.1)
    (long,) = chunked.encode([waves[0]])
    assert long.shape == (enc.n_frames(sizes[0]), 32) and torch.isfinite(long).all()
    layers = speech_encoder(family_models[family], layer=[0, 1, 2], device="cpu", dtype="fp32").encode(waves[1:2])
    assert layers[0].shape == (enc.n_frames(sizes[1]), 3, 32)
    torch.testing.assert_close(layers[0][:, 2], batched[1], atol=1e-5, rtol=1e-4)  # the last layer is layer L
    one = speech_encoder(family_models[family], layer=1, device="cpu", dtype="fp32")
    assert one.layers_run == 1  # the layer above is not run
    torch.testing.assert_close(one.encode(waves[1:2])[0], layers[0][:, 1], atol=1e-5, rtol=1e-4)


def _features(model: str, text_model: str, out: Path) -> FeaturesConfig:
    return FeaturesConfig(
        out=str(out),
        shard_size=8,
        device="cpu",
        speech=SpeechFeaturesConfig(model=model, levels=["frame", "word", "utterance"]),
        text=TextFeaturesConfig(model=text_model),
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_store_pools_frames_by_their_centres(family_models, tiny_models, aligned, tmp_path, family) -> None:
    """The store's frames are the encoder's, and each word row is the mean of the frames whose
    centres (centre0 + 20 ms t: 12.5 ms for the conv families, 0 for Whisper) fall in the word."""
    cfg = _features(family_models[family], tiny_models["text"], tmp_path)
    store = FeatureStore(extract("speech", cfg, aligned["manifest"], aligned["segments"]))
    fp = json.loads(store.attrs["fingerprint"])
    assert store.attrs["frame_stride"] == pytest.approx(0.02) and fp["model"] == family_models[family]
    assert ("input" in fp) == (family == "whisper")
    enc = speech_encoder(family_models[family], device="cpu", dtype="fp32")
    table = SegmentTable.read(aligned["segments"])
    utts = {u.utt_id: u for u in read_manifest(aligned["manifest"])}
    for uid in store.utt_ids[:3]:
        direct = enc.encode([read_audio(utts[uid].wav)])[0].numpy()
        frames = store.rows("frame", uid).astype(np.float32)
        np.testing.assert_allclose(frames, direct, atol=2e-2, rtol=1e-2)  # fp16 storage
        centres = enc.frame_centre0_s + enc.frame_stride_s * np.arange(len(direct))
        words = store.rows("word", uid).astype(np.float32)
        segs = table.segments("word", uid)
        assert len(words) == len(segs)
        for row, seg in zip(words, segs):
            inside = (centres >= seg.start - 1e-9) & (centres < seg.end - 1e-9)
            if inside.any():  # (a word shorter than a frame takes its nearest frame; not hand-checked here)
                np.testing.assert_allclose(row, direct[inside].mean(0), atol=2e-2, rtol=1e-2)
        np.testing.assert_allclose(store.rows("utterance", uid)[0].astype(np.float32), direct.mean(0), atol=2e-2)


def test_fingerprints_differ_across_families_and_models(family_models, tiny_models, aligned, tmp_path) -> None:
    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    models = dict(family_models) | {"wav2vec2-seed1": tiny_speech_model("wav2vec2", tmp_path / "w1", seed=1)}
    prints = {}
    for name, path in models.items():
        cfg = _features(path, tiny_models["text"], tmp_path)
        enc = speech_encoder(path, device="cpu", dtype="fp32")
        prints[name] = fingerprint("speech", enc, cfg, inputs)
    assert len({p["weights_sha256"] for p in prints.values()}) == len(prints)
    assert len({json.dumps(p, sort_keys=True) for p in prints.values()}) == len(prints)
    assert prints["whisper"]["normalize"] is False and prints["whisper"]["n_layers"] == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_family_finetunes_through_the_same_interface(family_models, tiny_models, aligned, tmp_path, family) -> None:
    """One epoch of per-fold fine-tuning (conv front end frozen): the saved encoder loads back
    through the same factory as the same family, with new transformer weights and the same convs."""
    cfg = FinetuneConfig(
        out=str(tmp_path / "ft"),
        features_out=str(tmp_path / "ftf"),
        reports=str(tmp_path / "rep"),
        folds=[1, 2, 3],
        epochs=1,
        batch_size=4,
        lr=1e-3,
        head_lr=1e-2,
        max_train_seconds=1.0,
    )
    features = dataclasses.replace(_features(family_models[family], tiny_models["text"], tmp_path / "f"))
    fold_dir = run_finetune(2, cfg, features, aligned["manifest"], aligned["segments"])
    record = json.loads((fold_dir / "finetune.json").read_text())
    assert record["train_folds"] == [1, 3]
    base = speech_encoder(family_models[family], device="cpu", dtype="fp32")
    tuned = speech_encoder(str(fold_dir / "speech"), device="cpu", dtype="fp32")
    assert type(tuned) is type(base) and tuned.weights_sha256 != base.weights_sha256
    for a, b in zip(base.feature_encoder.parameters(), tuned.feature_encoder.parameters()):
        assert torch.equal(a, b)  # frozen
    wave = np.random.default_rng(0).normal(0, 0.1, 12000).astype(np.float32)
    assert tuned.encode([wave])[0].shape == (base.n_frames(12000), 32)
