"""A new encoder family is one class and one registration (features/registry.py): this file
registers a small deterministic one (framed RMS and log energy) and runs it through extraction
to a real store, which FeatureStore reads and a probe trains on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import pytest
import torch

from mger.core.audio import read_audio
from mger.core.config import ExperimentSpec, FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig, TrainConfig
from mger.core.manifest import read_manifest
from mger.features.cache import FeatureStore
from mger.features.extract import extract
from mger.features.registry import ENCODERS, build_encoder, encoder_family, register_encoder


@register_encoder("framed-rms", "speech", prefix="rms:")
class FramedRms:
    """``model: rms:<hop ms>``: per frame of ``hop`` ms (no overlap), its RMS and log energy."""

    def __init__(self, model: str) -> None:
        self.name, self.revision = model, None
        self.hop_ms = int(model.split(":", 1)[1])
        self.weights_sha256 = hashlib.sha256(model.encode()).hexdigest()  # no weights: the setting is the identity
        self.dim, self.device = 2, torch.device("cpu")
        self.frame_stride_s = self.hop_ms / 1000
        self.frame_centre0_s = self.frame_stride_s / 2

    @classmethod
    def from_config(cls, settings: SpeechFeaturesConfig, features: FeaturesConfig) -> "FramedRms":
        return cls(settings.model)

    def fingerprint_entries(self) -> dict[str, Any]:
        return {"hop_ms": self.hop_ms}

    def prepare_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        hop = self.hop_ms * 16
        return [np.asarray(w, np.float32)[: max(1, len(w) // hop) * hop] for w in waves]

    def encode_batch(self, batch: list[np.ndarray]) -> list[torch.Tensor]:
        out = []
        for wave in batch:
            frames = torch.from_numpy(wave).reshape(-1, min(len(wave), self.hop_ms * 16))
            power = frames.pow(2).mean(1)
            out.append(torch.stack([power.sqrt(), torch.log(power + 1e-8)], 1))
        return out

    def functionals(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        raise ValueError("no functionals")


def _cfg(out: Path, text_model: str, shard_size: int = 5) -> FeaturesConfig:
    return FeaturesConfig(
        out=str(out),
        shard_size=shard_size,
        device="cpu",
        speech=SpeechFeaturesConfig(model="rms:20", levels=["frame", "word", "utterance"]),
        text=TextFeaturesConfig(model=text_model),
    )


def test_the_registry_finds_the_family_by_its_prefix(tiny_models) -> None:
    assert encoder_family("speech", "rms:20") is ENCODERS["framed-rms"]
    assert encoder_family("speech", tiny_models["speech"]).name == "transformers-speech"
    assert encoder_family("speech", "opensmile:eGeMAPSv02").name == "opensmile"
    assert encoder_family("text", "rms:20").name == "transformers-text"  # a speech prefix: not text's
    assert isinstance(build_encoder("speech", _cfg(Path("."), tiny_models["text"])), FramedRms)


def test_a_registered_family_extracts_to_a_store_that_reads_back_and_trains(tiny_models, aligned, tmp_path) -> None:
    """The store holds the class's frames (float16), word and utterance rows pooled from them,
    its fingerprint entries; a rerun reuses it; a sharded run gives the same bytes; a probe trains."""
    cfg = _cfg(tmp_path / "features", tiny_models["text"])
    path = extract("speech", cfg, aligned["manifest"], aligned["segments"])
    store = FeatureStore(path)
    fp = json.loads(store.attrs["fingerprint"])
    assert fp["model"] == "rms:20" and fp["hop_ms"] == 20 and fp["frame_stride"] == 0.02
    assert store.attrs["dim"] == 2 and store.level_shape("frame")[-1] == 2
    enc = FramedRms("rms:20")
    utts = {u.utt_id: u for u in read_manifest(aligned["manifest"])}
    for uid in store.utt_ids[:4]:
        wave = read_audio(utts[uid].wav)
        direct = enc.encode_batch(enc.prepare_batch([wave]))[0].numpy()
        assert len(direct) == len(wave) // 320
        np.testing.assert_array_equal(store.rows("frame", uid), direct.astype(np.float16))
        np.testing.assert_allclose(store.rows("utterance", uid)[0], direct.mean(0), rtol=2e-3, atol=2e-3)
    assert np.abs(store.rows("frame", store.utt_ids[0])[:, 0]).max() > 0  # not silence
    mtime = path.stat().st_mtime_ns
    assert extract("speech", cfg, aligned["manifest"], aligned["segments"]) == path
    assert path.stat().st_mtime_ns == mtime  # up to date: reused

    sharded = tmp_path / "sharded.h5"
    for i in range(2):
        extract("speech", cfg, aligned["manifest"], aligned["segments"], shard=(i, 2), store=sharded)
    with h5py.File(path) as whole, h5py.File(sharded) as shards:
        for level in ("frame", "word", "utterance"):
            assert np.array_equal(whole[level]["data"][()], shards[level]["data"][()])

    from mger.models.experiment import run_experiment

    train = TrainConfig(
        seeds=[0],
        epochs=2,
        metrics_dir=str(tmp_path / "metrics"),
        epochs_dir=str(tmp_path / "epochs"),
        predictions_dir=str(tmp_path / "predictions"),
    )
    spec = ExperimentSpec(model="probe", probe="speech", speech_levels=["utterance"])
    metrics = run_experiment("rms_probe", spec, train, cfg, aligned["manifest"], segments=aligned["segments"])
    assert 0.0 <= metrics["ua"]["mean"] <= 1.0, sorted(metrics)


def test_registering_a_prefix_again_replaces_that_family() -> None:
    before = dict(ENCODERS)
    try:

        @register_encoder("framed-rms-2", "speech", prefix="rms:")
        def other(settings, features):  # a function registers too
            return FramedRms(settings.model)

        assert "framed-rms" not in ENCODERS and encoder_family("speech", "rms:10").name == "framed-rms-2"
        with pytest.raises(ValueError, match="modality 'video'"):
            register_encoder("x", "video")
    finally:
        ENCODERS.clear()
        ENCODERS.update(before)
