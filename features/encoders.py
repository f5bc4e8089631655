"""Frozen encoders: any wav2vec2-family speech model and any BERT-family text model.

Both implement the protocols extraction (:mod:`mger.features.extract`) calls,
:class:`mger.features.registry.SpeechEncoding` and :class:`~mger.features.registry.TextEncoding`,
and are registered there as the default families (hub ids and local folders); openSMILE's
(:class:`mger.features.acoustic.OpenSmileEncoder`) is a registered family like them.
Fine-tuning (:mod:`mger.models.finetune`) uses more of them (``model``, ``forward_waves``,
``save_pretrained``).

Both load with ``from_pretrained(hub id or local path, revision=...)``, run in ``eval()``
under ``torch.inference_mode()``, and are never trained here: fine-tuning
(:mod:`mger.models.finetune`) takes their ``model`` and input preparation and trains a copy.

Speech layer choice (``features.speech.layer``): ``last``; an index into the hidden states
(0 = transformer input, i = output of layer i, negative from the end); a list of indices
(stacked, stored as one extra axis); or ``mean`` (mean of all layer outputs 1..L).  When the
requested layers stop below the top, the layers above the deepest one are removed from the
model before running it (for stable-layer-norm models the final layer norm goes too, since
it only applies after the last layer), so no compute is wasted.

Padded batches give each utterance the frames it gets alone.  The transformer always gets the
frame-level attention mask (padded frames are zeroed before the positional convolution and
masked in attention), and in group-norm models (wav2vec2-base, HuBERT-base: the first conv
layer normalises each channel over time) the first layer's statistics are taken over each
utterance's own frames (:class:`PaddedGroupNorm`).  Without both, a short utterance batched
with long ones got other features than alone, and a GPU store differed from a CPU store.

Utterances longer than ``max_seconds`` are encoded in chunks of ``max_seconds`` that overlap
by ``overlap_seconds`` (planned by the pure functions :func:`chunk_spans` and
:func:`frame_owners`, stitched by :func:`stitch_chunks`). Chunk starts are multiples of the
model's total conv stride, so the chunks' frame grids coincide with the whole utterance's;
every global frame is taken from the chunk in which it lies farthest from a chunk edge
(utterance ends count as no edge), so each kept frame saw at least ``overlap_seconds / 2``
of context on both sides and frames are neither duplicated nor missing: the stitched length
equals the model's conv-length formula for the whole utterance.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import math
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import numpy as np
import torch

from mger.features.registry import Encoder, ModelUnavailable, register_encoder
from mger.features.text import Span, encoder_text, token_word_matrix, token_words, word_rows

if TYPE_CHECKING:
    from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig

LayerSpec = Union[str, int, list]


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def resolve_model_path(name: str) -> str:
    """``package:<module>`` → that module's ``get_model_path()`` (models shipped in wheels); else as is."""
    if name.startswith("package:"):
        return str(importlib.import_module(name.split(":", 1)[1]).get_model_path())
    return name


def hub_source(name: str, path: str, revision: str | None, key: str) -> dict[str, Any]:
    """The ``from_pretrained`` keyword arguments for the model ``path`` (``name`` as params say
    it, ``key`` the param): none for a local folder or a reachable hub; ``local_files_only``
    for a hub id whose files are cached while the hub is out of reach (no retries, no HEAD
    warnings); :class:`ModelUnavailable` naming ``key`` when neither (``from_pretrained`` would
    retry for half a minute, print a HEAD line per retry, then fail)."""
    if Path(path).exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) or _hub_reachable():
        return {}
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, "config.json", revision=revision), str):
        return {"local_files_only": True}
    raise ModelUnavailable(
        f"{key}: cannot load {name!r}: no such local folder, and as a hub id it is not in the Hugging "
        f"Face cache while the hub cannot be reached (offline); set {key} to a local save_pretrained "
        "folder (saved where the hub is reachable), or run where it is"
    )


@functools.cache
def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (once per process); ``HF_HUB_OFFLINE``
    says no, a proxy setting yes (the hub client goes through it; let it try)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout).close()
    except OSError:
        return False
    return True


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def load_tokenizer(path: str, revision: str | None, source: dict[str, Any]):
    """``AutoTokenizer.from_pretrained``; a local folder without tokenizer files is a
    ``ValueError`` naming it (transformers raises a TypeError for some models, and for others
    builds an empty vocabulary that reads every word as [UNK])."""
    from transformers import AutoTokenizer

    if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        raise ValueError(
            f"{path}: no tokenizer here (none of {', '.join(_TOKENIZER_FILES[:3])}, ...); a text model "
            "folder needs its tokenizer: save it with tokenizer.save_pretrained(folder)"
        )
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, **source)
    except TypeError as err:
        raise ValueError(f"{path}: the tokenizer cannot be loaded ({err}); is this a text model?") from err


def resolve_device(device: str, key: str = "features.device") -> torch.device:
    """``auto``: CUDA when present, else the CPU; a CUDA device asked for where torch sees none
    is a ``ValueError`` naming the param ``key``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{key}: {device!r} asked for, but torch sees no CUDA device here; set it to auto or cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 (or fp16) autocast on GPU, fp32 on CPU.  ``int8`` (CPU only): dynamic
    int8 quantisation of the Linear layers (:func:`quantize_linear`)."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype == "int8" and device.type != "cpu":
        raise ValueError(f"features.dtype int8 is CPU-only dynamic quantisation; device is {device}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.qint8}[dtype]


def quantize_linear(model: torch.nn.Module, prefix: str = "encoder.") -> torch.nn.Module:
    """Dynamic int8 quantisation of the transformer's ``nn.Linear`` layers (``prefix*``):
    weights int8 per output channel, activations quantised per batch at run time (fbgemm uses
    AVX-512 VNNI where the CPU has it).  The conv feature encoder and the feature projection
    stay fp32 (the projection feeds every layer; keeping it fp32 lowers the deviation)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith(prefix)
    }
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def state_dict_sha256(model: torch.nn.Module) -> str:
    """Hash of all parameters and buffers (names, shapes, bytes): identifies the weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def layer_indices(layer: LayerSpec, n_layers: int) -> list[int]:
    """Hidden-state indices (0..n_layers) for a layer spec (``all``: every one, 0..n_layers)."""
    if layer == "last":
        return [n_layers]
    if layer == "all":
        return list(range(n_layers + 1))
    if layer == "mean":
        return list(range(1, n_layers + 1))
    items = layer if isinstance(layer, list) else [layer]
    out = []
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValueError(f"layer {layer!r}: expected 'last', 'mean', 'all', an int or a list of ints")
        idx = item + n_layers + 1 if item < 0 else item
        if not 0 <= idx <= n_layers:
            raise ValueError(f"layer {item} out of range for a model with {n_layers} layers")
        out.append(idx)
    return out


def resolved_layer(layer: LayerSpec, n_layers: int) -> int | list[int] | str:
    """The layer setting as hidden-state indices, as the fingerprint stores it: one index, a list
    of them (stacked), or ``"mean"`` (of every layer); ``last``, ``-1`` and ``n_layers`` agree,
    and so do ``all`` and the list ``[0, ..., n_layers]``."""
    if layer == "mean":
        return "mean"
    indices = layer_indices(layer, n_layers)
    return indices if stacks_layers(layer) else indices[0]


def stacks_layers(layer: LayerSpec) -> bool:
    """Whether ``layer`` stores several layers on an extra axis (a list, or ``all``)."""
    return isinstance(layer, list) or layer == "all"


def autocast_context(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device``; disabled for fp32 and int8 (which run as they are)."""
    if dtype in (torch.float32, torch.qint8):
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def pad_items(items: Sequence[torch.Tensor], pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad along the first axis on the host. Items (T_i, ...) → (B, T_max, ...) and a
    (B, T_max) bool mask, True on real positions; the padded items in pinned memory with
    ``pin`` (an asynchronous copy to a GPU follows)."""
    lengths = torch.tensor([len(x) for x in items])
    shape = (len(items), int(lengths.max())) + tuple(items[0].shape[1:])
    out = torch.zeros(shape, dtype=items[0].dtype, pin_memory=pin)
    for k, x in enumerate(items):
        out[k, : len(x)] = x
    mask = torch.arange(out.shape[1])[None] < lengths[:, None]
    return out, mask


def pad_batch(items: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pad_items`, both tensors on ``device``."""
    out, mask = pad_items(items)
    return out.to(device), mask.to(device)


class PaddedGroupNorm(torch.nn.GroupNorm):
    """wav2vec2's first-layer GroupNorm (statistics over time) applied to each item of a
    zero-padded batch over its own first ``lengths[b]`` time steps, as if it were alone,
    while :meth:`SpeechEncoder.padding` sets ``lengths``; plain ``GroupNorm`` otherwise.
    Same parameters, so weights load and save unchanged."""

    lengths: list[int] | None = None

    @classmethod
    def replacing(cls, norm: torch.nn.GroupNorm) -> "PaddedGroupNorm":
        new = cls(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
        new.load_state_dict(norm.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T) → (B, C, T); time steps past an item's length are left zero."""
        if self.lengths is None:
            return super().forward(x)
        rows = [super(PaddedGroupNorm, self).forward(x[b : b + 1, :, :n]) for b, n in enumerate(self.lengths)]
        out = rows[0].new_zeros(x.shape)
        for b, row in enumerate(rows):
            out[b : b + 1, :, : row.shape[-1]] = row
        return out


@dataclass(frozen=True)
class ConvGeometry:
    """Samples per frame (stride) and samples seen by one frame (receptive field)."""

    stride: int
    receptive_field: int

    @classmethod
    def of(cls, config) -> "ConvGeometry":
        stride, rf = 1, 1
        for k, s in zip(config.conv_kernel, config.conv_stride):
            rf += (k - 1) * stride
            stride *= s
        return cls(stride, rf)


def chunk_spans(n_samples: int, max_samples: int, overlap_samples: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) samples of the chunks a long utterance is encoded in: ``max_samples`` long,
    overlapping by ``overlap_samples``, starting on multiples of ``stride`` (the two sizes are
    multiples of it), the last one ending at the utterance's end."""
    hop = max_samples - overlap_samples
    starts = list(range(0, max(1, n_samples - max_samples + hop), hop))
    spans = [(s, min(n_samples, s + max_samples)) for s in starts]
    if spans[-1][1] < n_samples:
        spans.append((max(0, n_samples - max_samples) // stride * stride, n_samples))
    return spans


def frame_owners(
    spans: Sequence[tuple[int, int]], part_frames: Sequence[int], n_samples: int, total_frames: int, stride: int
) -> torch.Tensor:
    """(total_frames,) index of the chunk each frame of the whole utterance is taken from: the
    one in which it lies farthest from a chunk edge (the utterance's ends are no edge)."""
    best = torch.full((total_frames,), -1.0)
    owner = torch.zeros(total_frames, dtype=torch.long)
    for k, ((s, e), n) in enumerate(zip(spans, part_frames)):
        g0 = s // stride
        t = torch.arange(n, dtype=torch.float32)
        left = t if s > 0 else torch.full_like(t, math.inf)
        right = (n - 1 - t) if e < n_samples else torch.full_like(t, math.inf)
        score = torch.minimum(left, right)
        idx = torch.arange(g0, min(total_frames, g0 + n))
        better = score[: len(idx)] > best[idx]
        best[idx[better]] = score[: len(idx)][better]
        owner[idx[better]] = k
    return owner


def stitch_chunks(
    parts: Sequence[torch.Tensor], spans: Sequence[tuple[int, int]], n_samples: int, total_frames: int, stride: int
) -> torch.Tensor:
    """The whole utterance's (total_frames, ...) frames from its chunks' frames (:func:`frame_owners`)."""
    owner = frame_owners(spans, [p.shape[0] for p in parts], n_samples, total_frames, stride)
    out = torch.empty((total_frames,) + parts[0].shape[1:], dtype=parts[0].dtype, device=parts[0].device)
    for k, ((s, _), part) in enumerate(zip(spans, parts)):
        idx = torch.nonzero(owner == k).squeeze(1)
        out[idx] = part[idx - s // stride]
    return out


@dataclass
class SpeechBatch:
    """One batch of utterances prepared on the host (:meth:`SpeechEncoder.prepare_batch`).

    ``short``: the batch positions of the utterances padded into ``padded`` (len(short),
    T_max) float32 with ``mask`` (same shape, int64; None when nothing is padded), their
    sample counts ``lengths`` and frame counts ``frames``; ``long``: (position, prepared
    wave) of those longer than ``max_seconds``, encoded in chunks."""

    size: int
    short: list[int]
    padded: torch.Tensor | None
    mask: torch.Tensor | None
    lengths: list[int]
    frames: list[int]
    long: list[tuple[int, np.ndarray]]


class _SpeechEncoderBase:
    """What both speech encoders set up alike: the checkpoint's config, the layers read, the device."""

    def _load_config(self, model: str, revision: str | None) -> tuple[str, dict[str, Any]]:
        """Identity and config of checkpoint ``model``; returns its local path and hub source."""
        from transformers import AutoConfig

        _quiet_transformers()
        path = resolve_model_path(model)
        self.name, self.revision = model, revision
        source = hub_source(model, path, revision, "features.speech.model")
        self.config = AutoConfig.from_pretrained(path, revision=revision, **source)
        return path, source

    def _select_layers(self, layer: LayerSpec, n_layers: int) -> int:
        """Record the layers read (``layer_key`` is what the fingerprint stores); returns the deepest."""
        self.n_layers = n_layers
        self.layer = layer
        self.indices = layer_indices(layer, n_layers)
        self.layer_key = resolved_layer(layer, n_layers)
        self.layers_run = max(self.indices)
        return self.layers_run

    def _place(self, net: torch.nn.Module, device: str, dtype: str, prefix: str) -> None:
        """``net`` frozen on the resolved device (int8: its linear layers under ``prefix`` quantised)."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = net.to(self.device).eval().requires_grad_(False)
        if self.dtype == torch.qint8:
            self.model = quantize_linear(self.model, prefix=prefix)


class SpeechEncoder(_SpeechEncoderBase):
    """A frozen wav2vec2-family encoder returning frame features per utterance (an :class:`Encoder`)."""

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        layer: LayerSpec = "last",
        device: str = "auto",
        dtype: str = "auto",
        max_seconds: float = 30.0,
        overlap_seconds: float = 2.0,
        sample_rate: int = 16000,
    ) -> None:
        from transformers import AutoModel

        path, source = self._load_config(model, revision)
        net = AutoModel.from_pretrained(path, revision=revision, **source)
        self.weights_sha256 = state_dict_sha256(net)
        deepest = self._select_layers(layer, int(self.config.num_hidden_layers))
        if deepest < self.n_layers:  # drop the unused top of the transformer
            net.encoder.layers = net.encoder.layers[:deepest]
            if getattr(self.config, "do_stable_layer_norm", False):
                net.encoder.layer_norm = torch.nn.Identity()
        self._swap_group_norm(net)
        self._place(net, device, dtype, prefix="encoder.")
        self.geometry = ConvGeometry.of(self.config)
        self.sample_rate = sample_rate
        self.frame_stride_s = self.geometry.stride / sample_rate
        self.frame_centre0_s = self.geometry.receptive_field / 2 / sample_rate
        self.use_attention_mask = getattr(self.config, "feat_extract_norm", "layer") == "layer"  # data2vec: layer
        # data2vec-audio's positional embedding is a stack of convolutions with no mask between
        # them: padded frames leak into an utterance's last frames, so a padded batch runs item by item
        self.pads_exactly = self.config.model_type != "data2vec-audio"
        self.normalize = self._reads_normalize(path, revision, source)
        self.max_seconds, self.overlap_seconds = max_seconds, overlap_seconds  # as configured (the fingerprint's)
        self.max_samples = self._multiple(max_seconds * sample_rate)
        self.overlap_samples = self._multiple(overlap_seconds * sample_rate)
        if self.max_samples <= 2 * self.overlap_samples:
            raise ValueError("features.speech.max_seconds must exceed twice overlap_seconds")

    caches_conv = True  # fine-tuning with a frozen conv stack computes its output once per utterance

    @property
    def feature_encoder(self) -> torch.nn.Module:
        """The convolutional front end (what ``finetune.freeze_feature_encoder`` freezes)."""
        return self.model.feature_extractor

    def forward_waves(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared waves (T_i,) through the whole model, with gradients when the model trains:
        last-layer frames (B, T_max, D) and their (B, T_max) bool mask (fine-tuning)."""
        padded, _ = pad_batch(waves, self.device)
        with self.padding([len(x) for x in waves]) as kwargs:
            hidden = self.model(padded, **kwargs).last_hidden_state
        lengths = torch.tensor([self.n_frames(len(x)) for x in waves], device=hidden.device)
        return hidden, torch.arange(hidden.shape[1], device=hidden.device)[None] < lengths[:, None]

    @staticmethod
    def _swap_group_norm(net: torch.nn.Module) -> None:
        """A per-channel first-layer GroupNorm becomes a :class:`PaddedGroupNorm`."""
        first = net.feature_extractor.conv_layers[0]
        norm = getattr(first, "layer_norm", None)
        if isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == norm.num_channels:
            first.layer_norm = PaddedGroupNorm.replacing(norm)

    @contextmanager
    def padding(self, n_samples: Sequence[int], mask: torch.Tensor | None = None) -> Iterator[dict]:
        """For a zero-padded batch of waveforms with ``n_samples`` real samples each: the
        model's keyword arguments (the attention mask) while the first-layer GroupNorm, if
        any, normalises each item over its own frames.  ``mask``: the (B, T_max) mask
        (see :meth:`pad_host`) already on the device, else it is made here."""
        n_samples = list(n_samples)
        if min(n_samples) == max(n_samples):  # nothing padded
            yield {}
            return
        if mask is None:
            lengths = torch.tensor(n_samples, device=self.device)
            mask = (torch.arange(max(n_samples), device=self.device)[None] < lengths[:, None]).long()
        first = self.model.feature_extractor.conv_layers[0]
        norm = getattr(first, "layer_norm", None)
        norm = norm if isinstance(norm, PaddedGroupNorm) else None
        if norm is not None:  # the first conv's output lengths (no padding in wav2vec2's convs)
            norm.lengths = [(n - first.conv.kernel_size[0]) // first.conv.stride[0] + 1 for n in n_samples]
        try:
            yield {"attention_mask": mask}
        finally:
            if norm is not None:
                norm.lengths = None

    @staticmethod
    def _reads_normalize(path: str, revision: str | None, source: dict[str, Any]) -> bool:
        try:
            from transformers import AutoFeatureExtractor

            extractor = AutoFeatureExtractor.from_pretrained(path, revision=revision, **source)
            return bool(getattr(extractor, "do_normalize", True))
        except (OSError, ValueError):
            return True  # wav2vec2's default

    def _multiple(self, samples: float) -> int:
        return int(samples) // self.geometry.stride * self.geometry.stride

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    def n_frames(self, n_samples: int) -> int:
        """The model's own conv-length formula."""
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(n_samples)))

    def _select(self, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        picked = [hidden[i] for i in self.indices]
        if self.layer == "mean":
            return torch.stack(picked, 0).mean(0)
        if stacks_layers(self.layer):
            return torch.stack(picked, 2)  # (B, T, n_layers, D)
        return picked[0]

    def _forward(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """One padded batch of prepared waves; returns each item's exact-length frames (float32, on device)."""
        return self._forward_padded(*self.pad_host(waves))

    def _forward_padded(
        self,
        batch: torch.Tensor,
        mask: torch.Tensor | None,
        lengths: Sequence[int],
        frames: Sequence[int] | None = None,
    ) -> list[torch.Tensor]:
        """The model on a batch padded on the host (:meth:`pad_host`): batch (B, T_max) float32
        and mask (B, T_max) int64 or None are copied to the device (asynchronously from pinned
        memory); returns item b's first ``frames[b]`` frames, (frames[b], D) or
        (frames[b], n_layers, D) float32, on the device."""
        frames = frames if frames is not None else [self.n_frames(n) for n in lengths]
        if mask is not None and not self.pads_exactly:  # each item alone (see pads_exactly)
            return [
                self._forward_padded(batch[b : b + 1, :n], None, [n], [f])[0]
                for b, (n, f) in enumerate(zip(lengths, frames))
            ]
        batch = batch.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True) if mask is not None else None
        # One layer: after truncation it is the last one run, so the hidden-state tuple is not needed.
        single = not stacks_layers(self.layer) and self.layer != "mean"
        with torch.inference_mode(), autocast_context(self.device, self.dtype), self.padding(lengths, mask) as kwargs:
            out = self.model(batch, output_hidden_states=not single, **kwargs)
        feats = (out.last_hidden_state if single else self._select(out.hidden_states)).float()
        return [feats[i, :n] for i, n in enumerate(frames)]

    def pad_host(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
        """Prepared waves zero-padded into one host tensor: (B, T_max) float32, the (B, T_max)
        int64 attention mask (None when nothing is padded) and the lengths; in pinned memory
        when the device is a GPU, so that the copy to it is asynchronous."""
        lengths = [len(w) for w in waves]
        pin = self.device.type == "cuda"
        batch, mask = pad_items([torch.from_numpy(np.asarray(w, dtype=np.float32)) for w in waves], pin)
        if min(lengths) == max(lengths):
            return batch, None, lengths
        return batch, (mask.long().pin_memory() if pin else mask.long()), lengths

    def prepare_batch(self, waves: Sequence[np.ndarray]) -> "SpeechBatch":
        """The host side of :meth:`encode` for raw waves (float32, 16 kHz): :meth:`prepare`,
        then the ones up to ``max_samples`` padded into one batch (:meth:`pad_host`) with
        their frame counts; longer ones are kept whole for chunking.  Touches no device, so a
        reader thread runs it while the device encodes the batch before."""
        waves = [self.prepare(w) for w in waves]
        short = [i for i, w in enumerate(waves) if len(w) <= self.max_samples]
        long = [(i, w) for i, w in enumerate(waves) if len(w) > self.max_samples]
        if not short:
            return SpeechBatch(len(waves), short, None, None, [], [], long)
        batch, mask, lengths = self.pad_host([waves[i] for i in short])
        return SpeechBatch(len(waves), short, batch, mask, lengths, [self.n_frames(n) for n in lengths], long)

    def encode_batch(self, batch: "SpeechBatch") -> list[torch.Tensor]:
        """The device side of :meth:`encode`: frame features per utterance of a
        :meth:`prepare_batch` result, (T_i, D) or (T_i, n_layers, D) float32 on the device."""
        out: list[torch.Tensor | None] = [None] * batch.size
        if batch.short:
            feats = self._forward_padded(batch.padded, batch.mask, batch.lengths, batch.frames)
            for i, f in zip(batch.short, feats):
                out[i] = f
        for i, w in batch.long:
            spans = chunk_spans(len(w), self.max_samples, self.overlap_samples, self.geometry.stride)
            parts = [self._forward([w[s:e]])[0] for s, e in spans]
            out[i] = stitch_chunks(parts, spans, len(w), self.n_frames(len(w)), self.geometry.stride)
        return out  # type: ignore[return-value]

    def fingerprint_entries(self) -> dict[str, Any]:
        """The store fingerprint's entries of this encoder: layers, precision, chunking, normalisation."""
        return {
            "layer": self.layer_key,
            "n_layers": self.n_layers,
            "dtype": str(self.dtype).replace("torch.", ""),
            "max_seconds": self.max_seconds,
            "overlap_seconds": self.overlap_seconds,
            "normalize": self.normalize,
            "batching": "exact",
        }

    def functionals(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Refused: a neural encoder has no ``functionals`` level (the config refuses it first)."""
        raise ValueError(f"{self.name}: the functionals level exists for openSMILE encoders only")

    def encode(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Frame features per utterance: (T_i, D), or (T_i, n_layers, D) for a layer list.

        All ``waves`` (raw float32, 16 kHz; :meth:`prepare` runs here) run as one padded batch;
        longer ones than ``max_seconds`` are chunked and stitched (module docstring).  The same
        as :meth:`encode_batch` of :meth:`prepare_batch`, which extraction runs apart.
        """
        return self.encode_batch(self.prepare_batch(waves))

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """A raw waveform as the model reads it: float32, at least one receptive field long
        (padded with silence), normalised when the model's feature extractor says so; what
        extraction runs and fine-tuning trains on."""
        wave = np.asarray(wave, dtype=np.float32)
        if len(wave) < self.geometry.receptive_field:  # too short for one frame: pad with silence
            wave = np.pad(wave, (0, self.geometry.receptive_field - len(wave)))
        if self.normalize:
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        return wave

    def save_pretrained(self, folder: str | Path) -> None:
        """The model and a feature extractor with its preprocessing (normalisation, attention mask)."""
        from transformers import Wav2Vec2FeatureExtractor

        self.model.save_pretrained(folder)
        Wav2Vec2FeatureExtractor(
            do_normalize=self.normalize, return_attention_mask=self.use_attention_mask
        ).save_pretrained(folder)


WHISPER_HOP = 160  # log-mel hop (samples); the encoder's second conv halves the rate: 320 samples, 20 ms per frame


class WhisperSpeechEncoder(_SpeechEncoderBase):
    """Whisper's encoder (``WhisperModel.get_encoder()``) as a frozen speech encoder (an :class:`Encoder`).

    Input: each utterance's log-mel spectrogram from the checkpoint's ``WhisperFeatureExtractor``
    (80 or 128 bins, 10 ms hop), computed on the utterance alone padded with silence to the
    encoder's window (``max_source_positions`` x 2 hops: 30 s for every released checkpoint), as
    Whisper was trained; the encoder has no attention mask, so batching changes nothing.  Output
    frame t (20 ms stride) is centred at 20t ms (the centred STFT's mel frame 2t); an utterance
    keeps the frames whose centres lie within it, ``ceil(samples / 320)``, the rest of the window
    (padding) is dropped.  Longer utterances than the window (or ``max_seconds``) are chunked and
    stitched as for wav2vec2 (:func:`chunk_spans`).  Layers: as :class:`SpeechEncoder` (hidden
    state 0 = the conv+position embeddings, L = the final layer-normed output; layers above the
    deepest one asked for are removed, with the final layer norm)."""

    caches_conv = False  # fine-tuning runs the (cheap, two-layer) conv front end every step
    input_kind = "log-mel (WhisperFeatureExtractor), one padded window per utterance or chunk, frames trimmed"

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        layer: LayerSpec = "last",
        device: str = "auto",
        dtype: str = "auto",
        max_seconds: float = 30.0,
        overlap_seconds: float = 2.0,
        sample_rate: int = 16000,
    ) -> None:
        from transformers import WhisperFeatureExtractor, WhisperModel

        path, source = self._load_config(model, revision)
        self.full = WhisperModel.from_pretrained(path, revision=revision, **source)
        net = self.full.get_encoder()
        self.weights_sha256 = state_dict_sha256(net)  # the decoder never changes a feature
        try:
            self.extractor = WhisperFeatureExtractor.from_pretrained(path, revision=revision, **source)
        except OSError:  # a checkpoint saved without its preprocessor: the config's mel bins
            self.extractor = WhisperFeatureExtractor(feature_size=int(self.config.num_mel_bins))
        deepest = self._select_layers(layer, int(self.config.encoder_layers))
        if deepest < self.n_layers:
            net.layers = net.layers[:deepest]
            net.layer_norm = torch.nn.Identity()
        self._place(net, device, dtype, prefix="layers.")
        self.sample_rate = sample_rate
        self.mel_frames = int(self.config.max_source_positions) * 2  # the window, in 10 ms mel frames
        self.window_samples = self.mel_frames * WHISPER_HOP
        self.geometry = ConvGeometry(2 * WHISPER_HOP, 2 * WHISPER_HOP)
        self.frame_stride_s = self.geometry.stride / sample_rate
        self.frame_centre0_s = 0.0
        self.normalize = False  # the log-mel is Whisper's own normalisation
        self.max_seconds, self.overlap_seconds = max_seconds, overlap_seconds  # as configured (the fingerprint's)
        self.max_samples = min(self.window_samples, int(max_seconds * sample_rate)) // 320 * 320
        self.overlap_samples = int(overlap_seconds * sample_rate) // 320 * 320
        if self.max_samples <= 2 * self.overlap_samples:
            raise ValueError("features.speech.max_seconds must exceed twice overlap_seconds")

    @property
    def dim(self) -> int:
        return int(self.config.d_model)

    @property
    def feature_encoder(self) -> torch.nn.Module:
        """The two convolutions before the transformer (what ``freeze_feature_encoder`` freezes)."""
        return torch.nn.ModuleList([self.model.conv1, self.model.conv2])

    def n_frames(self, n_samples: int) -> int:
        """Frames whose centres (20t ms) lie within ``n_samples``: ``ceil(n / 320)``, at least 1."""
        return max(1, -(-int(n_samples) // self.geometry.stride))

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """A raw waveform (float32, 16 kHz) as read, at least one frame long (silence padded)."""
        wave = np.asarray(wave, dtype=np.float32)
        return np.pad(wave, (0, max(0, self.geometry.stride - len(wave))))

    def log_mel(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, n_mels, window) log-mel spectrograms, each utterance alone, padded to the window."""
        mels = [
            self.extractor(w, sampling_rate=self.sample_rate, return_tensors="np")["input_features"][0] for w in waves
        ]
        return torch.from_numpy(np.stack(mels)).float()

    def _forward_mels(self, mels: torch.Tensor, frames: Sequence[int]) -> list[torch.Tensor]:
        """The encoder on (B, n_mels, window) log-mels; item b's first ``frames[b]`` frames (float32)."""
        single = not stacks_layers(self.layer) and self.layer != "mean"
        with torch.inference_mode(), autocast_context(self.device, self.dtype):
            out = self.model(mels.to(self.device, non_blocking=True), output_hidden_states=not single)
        if single:
            feats = out.last_hidden_state
        else:
            picked = [out.hidden_states[i] for i in self.indices]
            feats = torch.stack(picked, 0).mean(0) if self.layer == "mean" else torch.stack(picked, 2)
        return [feats.float()[i, :n] for i, n in enumerate(frames)]

    def prepare_batch(self, waves: Sequence[np.ndarray]) -> SpeechBatch:
        """Host side: log-mels of the utterances that fit one window; longer ones kept for chunking."""
        waves = [self.prepare(w) for w in waves]
        short = [i for i, w in enumerate(waves) if len(w) <= self.max_samples]
        long = [(i, w) for i, w in enumerate(waves) if len(w) > self.max_samples]
        mels = self.log_mel([waves[i] for i in short]) if short else None
        lengths = [len(waves[i]) for i in short]
        return SpeechBatch(len(waves), short, mels, None, lengths, [self.n_frames(n) for n in lengths], long)

    def encode_batch(self, batch: SpeechBatch) -> list[torch.Tensor]:
        """Device side: (T_i, D) or (T_i, n_layers, D) float32 frames per utterance."""
        out: list[torch.Tensor | None] = [None] * batch.size
        if batch.short:
            for i, f in zip(batch.short, self._forward_mels(batch.padded, batch.frames)):
                out[i] = f
        for i, w in batch.long:
            spans = chunk_spans(len(w), self.max_samples, self.overlap_samples, self.geometry.stride)
            parts = [self._forward_mels(self.log_mel([w[s:e]]), [self.n_frames(e - s)])[0] for s, e in spans]
            out[i] = stitch_chunks(parts, spans, len(w), self.n_frames(len(w)), self.geometry.stride)
        return out  # type: ignore[return-value]

    def encode(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Frame features per utterance (raw float32 waves, 16 kHz): :meth:`encode_batch` of :meth:`prepare_batch`."""
        return self.encode_batch(self.prepare_batch(waves))

    def fingerprint_entries(self) -> dict[str, Any]:
        """:meth:`SpeechEncoder.fingerprint_entries` and the input (log-mel, not the waveform)."""
        return SpeechEncoder.fingerprint_entries(self) | {"input": self.input_kind}  # type: ignore[arg-type]

    def functionals(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Refused: a neural encoder has no ``functionals`` level (the config refuses it first)."""
        raise ValueError(f"{self.name}: the functionals level exists for openSMILE encoders only")

    def forward_waves(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared waves (T_i,), with gradients when the model trains: last-layer frames
        (B, T_max, D) trimmed to the longest item and their (B, T_max) mask.  A wave longer
        than the window is read up to the window's end (fine-tuning's training windows are
        shorter; our reading for evaluation, which reads whole utterances)."""
        frames = [min(self.n_frames(len(w)), self.mel_frames // 2) for w in waves]
        mels = self.log_mel([np.asarray(w.detach().cpu(), dtype=np.float32) for w in waves]).to(self.device)
        hidden = self.model(mels).last_hidden_state[:, : max(frames)]
        lengths = torch.tensor(frames, device=hidden.device)
        return hidden, torch.arange(hidden.shape[1], device=hidden.device)[None] < lengths[:, None]

    def save_pretrained(self, folder: str | Path) -> None:
        """The whole ``WhisperModel`` (encoder as trained, decoder as loaded) and its feature extractor."""
        self.full.save_pretrained(folder)
        self.extractor.save_pretrained(folder)


def is_whisper(model: str, revision: str | None = None) -> bool:
    """Whether ``model`` (hub id or path) is a Whisper checkpoint (its config's ``model_type``)."""
    from transformers import AutoConfig

    _quiet_transformers()
    path = resolve_model_path(model)
    source = hub_source(model, path, revision, "features.speech.model")
    return AutoConfig.from_pretrained(path, revision=revision, **source).model_type == "whisper"


def speech_encoder(
    model: str,
    revision: str | None = None,
    layer: LayerSpec = "last",
    device: str = "auto",
    dtype: str = "auto",
    max_seconds: float = 30.0,
    overlap_seconds: float = 2.0,
) -> "SpeechEncoder | WhisperSpeechEncoder":
    """The neural speech encoder for ``model``: Whisper's encoder (log-mel input) for a Whisper
    checkpoint, else :class:`SpeechEncoder` (raw waveform: wav2vec 2.0, HuBERT, WavLM,
    data2vec-audio).  The one place extraction and fine-tuning choose between them."""
    cls = WhisperSpeechEncoder if is_whisper(model, revision) else SpeechEncoder
    return cls(model, revision, layer, device, dtype, max_seconds, overlap_seconds)


@register_encoder("transformers-speech", "speech")
def hub_speech_encoder(settings: "SpeechFeaturesConfig", features: "FeaturesConfig") -> Encoder:
    """The default speech family (a hub id, a local folder, ``package:``): :func:`speech_encoder`."""
    s, f = settings, features
    return speech_encoder(s.model, s.revision, s.layer, f.device, f.dtype, s.max_seconds, s.overlap_seconds)


@register_encoder("transformers-text", "text")
class TextEncoder:
    """A frozen BERT-family encoder: token embeddings, token→word map, word embeddings (an
    :class:`Encoder`).  ``markers``: IEMOCAP's markers dropped or kept (:meth:`prepare`)."""

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        layer: int | str = "last",
        device: str = "auto",
        max_length: int = 512,
        markers: str = "drop",
    ) -> None:
        from transformers import AutoModel

        _quiet_transformers()
        path = resolve_model_path(model)
        self.name, self.revision, self.layer = model, revision, layer
        source = hub_source(model, path, revision, "features.text.model")
        self.tokenizer = load_tokenizer(path, revision, source)
        net = AutoModel.from_pretrained(path, revision=revision, **source)
        self.weights_sha256 = state_dict_sha256(net)
        self.n_layers = int(net.config.num_hidden_layers)
        (self.index,) = layer_indices(layer, self.n_layers) if layer != "mean" else [None]
        self.layer_key = resolved_layer(layer, self.n_layers)  # what the fingerprint stores
        self.device = resolve_device(device)
        self.model = net.to(self.device).eval().requires_grad_(False)
        self.max_length = max_length
        self.markers = markers
        self.dim = int(net.config.hidden_size)

    @classmethod
    def from_config(cls, settings: "TextFeaturesConfig", features: "FeaturesConfig") -> "TextEncoder":
        """The encoder of ``features.text`` (``settings``) on ``features.device``."""
        t = settings
        return cls(t.model, t.revision, t.layer, features.device, t.max_length, t.markers)

    def fingerprint_entries(self) -> dict[str, Any]:
        """The store fingerprint's entries of this encoder: layer, truncation, input, markers."""
        return {
            "layer": self.layer_key,
            "n_layers": self.n_layers,
            "max_length": self.max_length,
            "input": "transcript as written",
            "markers": self.markers,
        }

    def prepare(self, transcript: str) -> str:
        """A transcript as the encoder reads it: as written, markers per ``markers``
        (:func:`mger.features.text.encoder_text`; character positions do not move)."""
        return encoder_text(transcript, self.markers)

    def save_pretrained(self, folder: str | Path) -> None:
        """The model and its tokenizer."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def tokenize(self, texts: Sequence[str], offsets: bool = False):
        """The one tokenizer call (extraction and fine-tuning): padded, truncated to ``max_length``."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=offsets,
            return_tensors="pt",
        )

    def encode_batch(
        self, items: Sequence[tuple[str, Sequence[Span | None]]]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per item, a prepared transcript (:meth:`prepare`) and its aligned words' character
        spans: (token embeddings (T, D) incl. special tokens, token→word index (T,) with -1 for
        tokens of no word, word embeddings (W, D) = mean of the sub-tokens overlapping each
        word; see :mod:`features.text`)."""
        texts, spans = [t for t, _ in items], [s for _, s in items]
        enc = self.tokenize(texts, offsets=True)
        offsets = enc.pop("offset_mapping")
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in enc.items()}, output_hidden_states=True)
        hidden = out.hidden_states
        feats = (torch.stack(hidden[1:], 0).mean(0) if self.index is None else hidden[self.index]).float()
        results = []
        for i, word_spans in enumerate(spans):
            n_tok = int(enc["attention_mask"][i].sum())
            tokens = feats[i, :n_tok]
            matrix = token_word_matrix(offsets[i, :n_tok], word_spans).to(tokens.device)
            results.append((tokens, token_words(matrix).cpu(), word_rows(tokens, matrix)))
        return results
