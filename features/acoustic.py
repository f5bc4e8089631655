"""openSMILE as a speech encoder kind: ``features.speech.model: opensmile:<feature set>``.

openSMILE (PyPI ``opensmile``, which ships its binary; audEERING's research licence, so it
is the optional extra ``mger[opensmile]``) computes the field's standard hand-crafted
acoustic descriptors.  Its low-level descriptors (LLDs) play the part of wav2vec 2.0's
frames: they become the ``frame`` level and go through the same pooling into phone,
syllable, word and utterance rows, the same store and fingerprint.  The feature set's
utterance-level *functionals* (e.g. eGeMAPSv02's 88) are one more level, ``functionals``
(one row per utterance).

Frame-to-time mapping: LLD frame ``t`` covers ``[t*hop, t*hop + window)`` seconds, as
openSMILE's own (start, end) index says; its centre, ``t*hop + window/2``, is what
:mod:`mger.features.pooling` compares with segment bounds (eGeMAPSv02: hop 10 ms, window 20 ms,
so frame t is centred at ``10t + 10`` ms; ComParE_2016: window 60 ms, centre ``10t + 30``
ms).  Hop and window are read from openSMILE's output on a probe signal when the encoder is
built, never assumed.  (openSMILE's index reports the last frame of a signal with its span
clipped at the signal's end; pooling treats it as the regular frame it is computed as.)

openSMILE returns no frame (or NaN functionals) for a signal shorter than its longest
window; such an utterance is padded with silence to :data:`MIN_SECONDS` first, as the
wav2vec2 encoder pads to one receptive field.

Not trainable: fine-tuning (``mger finetune``) refuses it in one line.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from mger.features.registry import register_encoder

if TYPE_CHECKING:
    from mger.core.config import FeaturesConfig, SpeechFeaturesConfig

PREFIX = "opensmile:"
FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016", "GeMAPSv01b", "eGeMAPSv01b")
MIN_SECONDS = 0.25
EXTRA = "pip install 'mger[opensmile]'  (audEERING's research licence)"


def is_opensmile(model: str) -> bool:
    """True for ``opensmile:<feature set>`` model names."""
    return model.startswith(PREFIX)


def feature_set_name(model: str) -> str:
    """``opensmile:eGeMAPSv02`` → ``eGeMAPSv02``, checked against :data:`FEATURE_SETS`."""
    name = model[len(PREFIX) :]
    if name not in FEATURE_SETS:
        raise ValueError(f"{model!r}: unknown openSMILE feature set {name!r} (known: {', '.join(FEATURE_SETS)})")
    return name


def _import_opensmile():
    try:
        import opensmile
    except ImportError as err:
        raise ImportError(f"openSMILE is not installed ({err}); {EXTRA}") from None
    return opensmile


@register_encoder("opensmile", "speech", prefix=PREFIX)
class OpenSmileEncoder:
    """openSMILE LLDs as frames (and functionals per utterance), a registered speech family
    (:class:`mger.features.registry.SpeechEncoding`): ``encode(waves)`` → per utterance
    (T_i, D) float32; ``frame_stride_s``, ``frame_centre0_s``, ``dim``, and identity fields
    for the store's fingerprint.

    Members that make no sense here: ``revision`` and ``layer_key`` are None (a feature set has
    no revisions and no layers; the fingerprint takes :meth:`settings` instead),
    ``weights_sha256`` hashes the feature set's config files and the openSMILE version (what
    weights are for a neural encoder), and :meth:`save_pretrained` refuses (nothing is trained).
    """

    layer_key = None

    def __init__(self, model: str, sample_rate: int = 16000) -> None:
        opensmile = _import_opensmile()
        self.name, self.revision = model, None
        self.feature_set = feature_set_name(model)
        fs = getattr(opensmile.FeatureSet, self.feature_set)
        self._lld = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self._func = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)
        self.sample_rate = sample_rate
        self.version = opensmile.__version__
        self.device, self.dtype, self.normalize = torch.device("cpu"), torch.float32, False
        self.dim = len(self._lld.feature_names)
        self.functionals_dim = len(self._func.feature_names)
        self.frame_stride_s, self.frame_centre0_s, self.window_s = self._frame_geometry()
        self.weights_sha256 = self._config_sha256()

    @classmethod
    def from_config(cls, settings: "SpeechFeaturesConfig", features: "FeaturesConfig") -> "OpenSmileEncoder":
        """The encoder of ``model: opensmile:<feature set>`` (always on the CPU)."""
        return cls(settings.model)

    def fingerprint_entries(self) -> dict[str, Any]:
        """The store fingerprint's entries of this encoder: :meth:`settings` and frame 0's centre."""
        return self.settings() | {"frame_centre0": self.frame_centre0_s}

    def _frame_geometry(self) -> tuple[float, float, float]:
        """(hop, centre of frame 0, window) in seconds, from openSMILE's (start, end) index."""
        probe = np.zeros(self.sample_rate, dtype=np.float32)
        index = self._run(self._lld, probe).index
        starts = [s.total_seconds() for s in index.get_level_values("start")[:2]]
        ends = [e.total_seconds() for e in index.get_level_values("end")[:1]]
        window = round(ends[0] - starts[0], 6)
        return round(starts[1] - starts[0], 6), round(starts[0] + window / 2, 6), window

    def _config_sha256(self) -> str:
        """Identity of the features: the feature set's config files and the openSMILE version
        (what weights are for a neural encoder)."""
        h = hashlib.sha256(f"opensmile {self.version} {self.feature_set}\n".encode())
        for smile in (self._lld, self._func):
            root = Path(smile.config_path).parent
            for path in sorted(root.rglob("*.conf*")):
                h.update(path.relative_to(root).as_posix().encode() + b"\n" + path.read_bytes())
        return h.hexdigest()

    def settings(self) -> dict:
        """Fingerprint entries beyond the common ones."""
        return {
            "opensmile_version": self.version,
            "feature_set": self.feature_set,
            "frame_window": self.window_s,
            "min_seconds": MIN_SECONDS,
        }

    def _run(self, smile, wave: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short": handled by padding
            return smile.process_signal(wave, self.sample_rate)

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """A raw waveform as openSMILE reads it: float32, padded with silence to :data:`MIN_SECONDS`."""
        wave = np.asarray(wave, dtype=np.float32)
        shortest = int(round(MIN_SECONDS * self.sample_rate))
        return np.pad(wave, (0, shortest - len(wave))) if len(wave) < shortest else wave

    def encode(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """LLD frames per utterance: (T_i, D) float32, frame t centred at ``frame_centre0_s + t*frame_stride_s``."""
        return [torch.from_numpy(self._run(self._lld, self.prepare(w)).to_numpy(np.float32, copy=True)) for w in waves]

    def prepare_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The host side of a batch: the raw waves as they are (openSMILE runs on the CPU in :meth:`encode_batch`)."""
        return list(waves)

    def encode_batch(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """:meth:`encode` of a :meth:`prepare_batch` result."""
        return self.encode(waves)

    def functionals(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The feature set's functionals per utterance: (1, functionals_dim) float32."""
        return [torch.from_numpy(self._run(self._func, self.prepare(w)).to_numpy(np.float32, copy=True)) for w in waves]

    def save_pretrained(self, folder: str | Path) -> None:
        """Refused: openSMILE has no trainable weights to save (fine-tuning refuses it first)."""
        raise TypeError(f"{self.name}: openSMILE is not a trainable model; nothing to save to {folder}")
