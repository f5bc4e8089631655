"""What extraction needs of an encoder (the protocols), and the registry that finds the class
for a store's ``model`` setting.

A store's ``features.speech.model`` (or an ``extra_speech`` store's, or ``features.text.model``)
names an encoder *family*: a registered prefix (``opensmile:<feature set>``) picks that family;
anything else (a hub id, a local ``save_pretrained`` folder, ``package:<module>``) is the
modality's default family, the transformers encoders (speech: :func:`mger.features.encoders.speech_encoder`
picks Whisper's encoder or the wav2vec2 family from the checkpoint's config; text: the
BERT-family :class:`mger.features.encoders.TextEncoder`).

A new encoder family is one class that implements :class:`SpeechEncoding` (or
:class:`TextEncoding`) and has ``from_config(settings, features)``, and one registration::

    @register_encoder("rms", "speech", prefix="rms:")
    class RmsEncoder: ...

Extraction (:mod:`mger.features.extract`) then builds it for ``model: rms:<anything>`` and
calls only the protocol's members.  (Fine-tuning, :mod:`mger.models.finetune`, needs more of
the transformers encoders — their ``model``, ``forward_waves``, ``save_pretrained`` — and
refuses the other families.)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from mger.core.config import FeaturesConfig

MODALITIES = ("speech", "text")
_BUILTINS = ("mger.features.encoders", "mger.features.acoustic")  # the modules that register the built-in families


class Encoder(Protocol):
    """Every encoder, whatever its modality: its identity, as the store's fingerprint records it."""

    name: str  # the model as configured (hub id, path, package:, opensmile:, a registered prefix)
    revision: str | None
    weights_sha256: str  # identity of the weights (or of what stands for them)
    dim: int  # features per row
    device: torch.device  # where its outputs are (pooling runs there)

    def fingerprint_entries(self) -> dict[str, Any]:
        """Everything of this encoder's own settings that changes its outputs (layers, dtype,
        chunking, ...): joined to the store's fingerprint (JSON values)."""


class SpeechEncoding(Encoder, Protocol):
    """A speech encoder as extraction runs it: frames per utterance, in two steps so that a
    reader thread prepares batch b+1 on the host while the device encodes batch b."""

    frame_stride_s: float  # seconds between frames
    frame_centre0_s: float  # the centre of frame 0, seconds (pooling assigns frames by centre)

    def prepare_batch(self, waves: Sequence[np.ndarray]) -> Any:
        """Host side: raw waves (T_i,) float32, 16 kHz, as the encoder reads them (no device work)."""

    def encode_batch(self, batch: Any) -> list[torch.Tensor]:
        """Device side: frames per utterance of a :meth:`prepare_batch` result, (T_i, D) or
        (T_i, n_layers, D) float32."""

    def functionals(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The ``functionals`` level per utterance, (1, D_f) float32, from the raw waves; called
        only when the store asks for that level (the config allows it for openSMILE only)."""


class TextEncoding(Encoder, Protocol):
    """A text encoder as extraction runs it: token rows, token→word index and word rows."""

    def prepare(self, transcript: str) -> str:
        """A transcript as the encoder reads it (character positions do not move)."""

    def encode_batch(
        self, items: Sequence[tuple[str, Sequence[tuple[int, int] | None]]]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per (prepared transcript, aligned words' character spans): token rows (T, D),
        token→word index (T,) (-1: no word), word rows (W, D)."""


@dataclass(frozen=True)
class EncoderFamily:
    """One registered family: ``build(settings, features)`` → the encoder, where ``settings``
    is the store's ``SpeechFeaturesConfig`` (or ``TextFeaturesConfig``) and ``features`` the
    whole ``FeaturesConfig`` (device, dtype)."""

    name: str
    modality: str
    prefix: str | None  # model strings starting with it; None: the modality's default (hub ids, folders)
    build: Callable[[Any, "FeaturesConfig"], Encoder]


ENCODERS: dict[str, EncoderFamily] = {}


class ModelUnavailable(OSError):
    """A model that is neither a local folder nor a hub id reachable or cached here; the message
    names the param."""


T = TypeVar("T")


def register_encoder(name: str, modality: str, prefix: str | None = None) -> Callable[[T], T]:
    """Register the decorated class (built by its ``from_config(settings, features)``) or
    function ``(settings, features) -> encoder`` as the family ``name`` of ``modality``;
    ``prefix``: the model strings it reads (None: the modality's default family).  Registering
    a name or prefix again replaces that family (a test's stand-in, a reload)."""
    if modality not in MODALITIES:
        raise ValueError(f"encoder family {name!r}: modality {modality!r} is not one of {MODALITIES}")

    def register(obj: T) -> T:
        build = getattr(obj, "from_config", obj)
        for other in [f for f in ENCODERS.values() if f.modality == modality and f.prefix == prefix]:
            del ENCODERS[other.name]
        ENCODERS[name] = EncoderFamily(name, modality, prefix, build)
        return obj

    return register


def encoder_family(modality: str, model: str) -> EncoderFamily:
    """The family that reads ``model``: the longest registered prefix it starts with, else the
    modality's default."""
    for module in _BUILTINS:
        importlib.import_module(module)
    families = [f for f in ENCODERS.values() if f.modality == modality]
    matched = [f for f in families if f.prefix is not None and model.startswith(f.prefix)]
    if matched:
        return max(matched, key=lambda f: len(f.prefix or ""))
    default = [f for f in families if f.prefix is None]
    if not default:
        raise ValueError(f"{model!r}: no {modality} encoder family reads it (registered: {sorted(ENCODERS)})")
    return default[0]


def build_encoder(kind: str, cfg: "FeaturesConfig") -> Encoder:
    """The encoder of the store ``kind`` (``speech`` or ``text``; an extra speech store's
    settings stand in ``cfg.speech``, :func:`mger.features.store_paths.store_config`), of the
    family its model names (:func:`encoder_family`); a model that cannot be loaded is a
    :class:`~mger.features.cache.CacheError` naming the param."""
    from mger.features.cache import CacheError

    settings = cfg.speech if kind == "speech" else cfg.text
    try:
        return encoder_family(kind, settings.model).build(settings, cfg)
    except ModelUnavailable as err:  # names the param already
        raise CacheError(str(err)) from None
    except (OSError, ImportError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CacheError(
            f"features.{kind}.model: cannot load {settings.model!r} ({reason}); set it to a local "
            "save_pretrained folder, a hub id, or package:<an installed module>"
        ) from err
