"""Config-driven fusion classifiers over cached speech and text features.

Every model takes ``inputs``: a dict from input name (``speech:<level>``, ``text:<level>``) to
``(features (B, T, D), mask (B, T) True = real row)`` and returns a :class:`ModelOutput`.
Padded rows never change the output: attention scores of padded rows are masked to -inf
and cross-attention uses key padding masks.

* ``audio`` / ``text``: one input, attention pooling, MLP.
* ``multigranular``: each speech granularity projected and attention-pooled on its own; the
  pooled vectors are concatenated (the combination) and classified by one MLP.
* ``coattention`` (Zhao et al.'s early fusion, multi-granular in our reading): for each chosen
  speech level (frame, phone, syllable, word) one co-attention block, where that level's rows
  attend to the text tokens and the tokens attend to those rows (multi-head cross-attention
  both ways, residual + layer norm); each block's two streams are attention-pooled, and all
  pooled vectors are concatenated and classified.
* ``fc`` (Sun et al.'s BERT+Wav2vec2+FC row): each encoder's rows mean-pooled into one
  utterance vector, the two concatenated and classified by a fully connected head.
* ``mha_aux`` (Sun et al., our reading): speech and text rows (with a learned modality
  embedding) form one joint sequence through a K-layer multi-head self-attention encoder;
  each modality's rows are attention-pooled and concatenated for the main head.  Auxiliary
  task 1, audio-text matching: the same fusion runs on pairs whose text is rolled by one
  within the batch (``aux_matching_negatives: any``), or paired with the nearest utterance of
  the batch that has another label (``other_label``: a negative never shares the emotion), and
  a binary head tells matched from mismatched pairs.  Auxiliary task 2, unimodal emotion heads
  on the fused speech and text streams (``aux_unimodal_on: fused``) or on the encoder streams
  before fusion (``encoder``: the heads see each modality unmixed).  Their losses are weighted
  by ``aux_matching`` and ``aux_unimodal`` (0 switches a task off).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mger.core.config import ExperimentSpec, HeadConfig
from mger.models.registry import model_kind, register_model

ModelInputs = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ModelConfig:
    kind: str
    speech_levels: list[str] = field(default_factory=lambda: ["word"])
    text_level: str = "token"
    dims: dict[str, int] = field(default_factory=dict)  # input name → feature dim
    n_classes: int = 4
    head: HeadConfig = field(default_factory=HeadConfig)  # width, heads, K and auxiliary tasks
    dropout: float = 0.2
    probe: str = "both"  # kind probe: speech, text or both
    stacked_layers: dict[str, int] = field(default_factory=dict)  # input name → layers on its extra axis
    layer_weights: str = "off"  # off | mean | learned: how a stacked input's layers are combined

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """The config ``dataclasses.asdict`` wrote (a system folder's JSON): its head rebuilt."""
        return cls(**{**data, "head": HeadConfig(**data.get("head", {}))})

    @property
    def speech_inputs(self) -> list[str]:
        return [f"speech:{lv}" for lv in self.speech_levels]

    @property
    def text_input(self) -> str:
        return f"text:{self.text_level}"


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, n_classes)
    aux_loss: torch.Tensor | None = None


# --- what the registrations below share ------------------------------------------------------------

TEXT_COST = 1.0  # the text tokens' step cost, against a word-level speech input's 1


def _levels(m: dict) -> str:
    return "+".join(m["speech_levels"])


def aux_tasks(m: dict) -> list[str]:
    """The auxiliary tasks a row (metrics dict or spec fields) switches on: matching, unimodal."""
    return [name for name, on in (("matching", m["aux_matching"] > 0), ("unimodal", m["aux_unimodal"] > 0)) if on]


def speech_and_text(cfg: ModelConfig) -> list[str]:
    """The first speech level and the text level: what a two-stream fusion model reads."""
    return [cfg.speech_inputs[0], cfg.text_input]


class AttentionPool(nn.Module):
    """Masked additive attention pooling. (B, T, H), (B, T) → (B, H)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).masked_fill(~mask, 0.0)
        return torch.einsum("bt,bth->bh", weights, x.masked_fill(~mask[..., None], 0.0))


def _project(in_dim: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU())


def _head(in_dim: int, hidden: int, n_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )


class PooledClassifier(nn.Module):
    """``audio``, ``text`` and ``multigranular``: pool each input, concatenate, classify."""

    def __init__(self, cfg: ModelConfig, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.proj = nn.ModuleDict(
            {n.replace(":", "_"): _project(cfg.dims[n], cfg.head.hidden, cfg.dropout) for n in names}
        )
        self.pool = nn.ModuleDict({n.replace(":", "_"): AttentionPool(cfg.head.hidden) for n in names})
        self.head = _head(cfg.head.hidden * len(names), cfg.head.hidden, cfg.n_classes, cfg.dropout)

    def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput:
        pooled = []
        for n in self.names:
            x, mask = inputs[n]
            key = n.replace(":", "_")
            pooled.append(self.pool[key](self.proj[key](x), mask))
        return ModelOutput(self.head(torch.cat(pooled, -1)))


class CoAttentionBlock(nn.Module):
    """One speech level and the text tokens: cross-attention both ways, residual + layer norm,
    each stream attention-pooled. (B, S, H), (B, T, H) with masks → (B, 2H)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.s_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.t_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.s_norm, self.t_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.s_pool, self.t_pool = AttentionPool(hidden), AttentionPool(hidden)

    def forward(self, s: torch.Tensor, s_mask: torch.Tensor, t: torch.Tensor, t_mask: torch.Tensor) -> torch.Tensor:
        s2 = self.s_norm(s + self.s_attn(s, t, t, key_padding_mask=~t_mask, need_weights=False)[0])
        t2 = self.t_norm(t + self.t_attn(t, s, s, key_padding_mask=~s_mask, need_weights=False)[0])
        return torch.cat([self.s_pool(s2, s_mask), self.t_pool(t2, t_mask)], -1)


@register_model(
    "coattention",
    inputs=lambda cfg: [*cfg.speech_inputs, cfg.text_input],
    cost=lambda spec, speech, layers: sum(s + TEXT_COST for s in speech),  # one block per level against the tokens
    label=lambda m: f"coattention ({_levels(m)} + text)",
    order=5,
    fusion=True,
)
class CoAttention(nn.Module):
    """Zhao et al.'s early fusion over one or more speech levels (one block each), concatenated."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.s_names, self.t_name = cfg.speech_inputs, cfg.text_input
        h = cfg.head.hidden
        self.s_proj = nn.ModuleDict({n.replace(":", "_"): _project(cfg.dims[n], h, cfg.dropout) for n in self.s_names})
        self.t_proj = _project(cfg.dims[self.t_name], h, cfg.dropout)
        self.blocks = nn.ModuleDict({n.replace(":", "_"): CoAttentionBlock(h, cfg.head.heads) for n in self.s_names})
        self.head = _head(2 * h * len(self.s_names), h, cfg.n_classes, cfg.dropout)

    def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput:
        t, t_mask = inputs[self.t_name]
        t = self.t_proj(t)
        pooled = []
        for name in self.s_names:
            s, s_mask = inputs[name]
            key = name.replace(":", "_")
            pooled.append(self.blocks[key](self.s_proj[key](s), s_mask, t, t_mask))
        return ModelOutput(self.head(torch.cat(pooled, -1)))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) bool → (B, D): the mean over each row's real positions."""
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


@register_model(
    "fc",
    inputs=speech_and_text,
    cost=lambda spec, speech, layers: sum(speech),
    label=lambda m: f"FC fusion (mean-pooled {_levels(m)} + text)",
    order=4,
    fusion=True,
)
class FcFusion(nn.Module):
    """Sun et al.'s FC baseline: mean-pooled speech and text utterance vectors, concatenated, MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.s_name, self.t_name = cfg.speech_inputs[0], cfg.text_input
        dim = cfg.dims[self.s_name] + cfg.dims[self.t_name]
        self.norm = nn.LayerNorm(dim)
        self.head = _head(dim, cfg.head.hidden, cfg.n_classes, cfg.dropout)

    def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput:
        pooled = [masked_mean(*inputs[n]) for n in (self.s_name, self.t_name)]
        return ModelOutput(self.head(self.norm(torch.cat(pooled, -1))))


def other_label_partner(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each item, the nearest earlier item (cyclically) with another label, and whether one
    exists. (B,) → index (B,), found (B,) bool."""
    b = len(labels)
    shifts = torch.arange(1, b)
    partner = (torch.arange(b)[:, None] - shifts[None]) % b  # (B, B-1): i-1, i-2, ...
    differs = labels[partner] != labels[:, None]
    found = differs.any(1)
    first = differs.to(torch.int8).argmax(1)
    return partner[torch.arange(b), first] if b > 1 else torch.zeros(b, dtype=torch.long), found


def _mha_label(m: dict) -> str:
    variants = [
        v
        for v, on in (
            (
                f"unimodal heads on the {m.get('aux_unimodal_on')} streams",
                m["aux_unimodal"] > 0 and m.get("aux_unimodal_on") == "encoder",
            ),
            (
                "negatives of another label",
                m["aux_matching"] > 0 and m.get("aux_matching_negatives") == "other_label",
            ),
        )
        if on
    ]
    return f"mha fusion K={m.get('layers')} ({_levels(m)}), auxiliary: {' + '.join(aux_tasks(m)) or 'none'}" + "".join(
        f"; {v}" for v in variants
    )


@register_model(
    "mha_aux",
    inputs=speech_and_text,
    cost=lambda spec, speech, layers: (sum(speech) + TEXT_COST) * (1 + layers),
    label=_mha_label,
    order=8,
    fusion=True,
)
class MhaAux(nn.Module):
    """Sun et al.: K-layer multi-head attention fusion with two auxiliary tasks (module docstring)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.s_name, self.t_name = cfg.speech_inputs[0], cfg.text_input
        h = cfg.head.hidden
        self.s_proj = _project(cfg.dims[self.s_name], h, cfg.dropout)
        self.t_proj = _project(cfg.dims[self.t_name], h, cfg.dropout)
        self.modality = nn.Embedding(2, h)
        # Dropout only at the input projections and heads: CPU dropout masks cost more than these
        # small attention layers themselves (measured: about 1 ms per mask of 100k elements).
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(h, cfg.head.heads, 2 * h, 0.0, batch_first=True, norm_first=True)
                for _ in range(cfg.head.layers)
            ]
        )
        self.s_pool, self.t_pool = AttentionPool(h), AttentionPool(h)
        self.head = _head(2 * h, h, cfg.n_classes, cfg.dropout)
        self.match_head = _head(2 * h, h, 1, cfg.dropout)
        self.s_head = nn.Linear(h, cfg.n_classes)
        self.t_head = nn.Linear(h, cfg.n_classes)
        if cfg.head.aux_unimodal_on == "encoder":  # unimodal heads read each modality before fusion
            self.s_enc_pool, self.t_enc_pool = AttentionPool(h), AttentionPool(h)

    def fuse(
        self, s: torch.Tensor, s_mask: torch.Tensor, t: torch.Tensor, t_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled fused speech and text vectors, each (B, H)."""
        n_s = s.shape[1]
        x = torch.cat([s + self.modality.weight[0], t + self.modality.weight[1]], 1)
        mask = torch.cat([s_mask, t_mask], 1)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        x = x.masked_fill(~mask[..., None], 0.0)
        return self.s_pool(x[:, :n_s], s_mask), self.t_pool(x[:, n_s:], t_mask)

    def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput:
        s, s_mask = inputs[self.s_name]
        t, t_mask = inputs[self.t_name]
        s, t = self.s_proj(s), self.t_proj(t)
        ps, pt = self.fuse(s, s_mask, t, t_mask)
        logits = self.head(torch.cat([ps, pt], -1))
        if labels is None or not self.training:
            return ModelOutput(logits)
        aux = logits.new_zeros(())
        if self.cfg.head.aux_matching > 0 and s.shape[0] > 1:
            aux = aux + self.cfg.head.aux_matching * self._matching_loss(s, s_mask, t, t_mask, ps, pt, labels)
        if self.cfg.head.aux_unimodal > 0:
            us, ut = (
                (self.s_enc_pool(s, s_mask), self.t_enc_pool(t, t_mask))
                if self.cfg.head.aux_unimodal_on == "encoder"
                else (ps, pt)
            )
            uni = F.cross_entropy(self.s_head(us), labels) + F.cross_entropy(self.t_head(ut), labels)
            aux = aux + self.cfg.head.aux_unimodal * uni / 2
        return ModelOutput(logits, aux)

    def _matching_loss(
        self,
        s: torch.Tensor,
        s_mask: torch.Tensor,
        t: torch.Tensor,
        t_mask: torch.Tensor,
        ps: torch.Tensor,
        pt: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Matched pairs vs speech paired with another utterance's text (the next one in the
        batch, or with ``other_label`` the nearest one of another emotion)."""
        if self.cfg.head.aux_matching_negatives == "other_label":
            partner, keep = other_label_partner(labels)
        else:
            partner, keep = torch.arange(-1, s.shape[0] - 1) % s.shape[0], torch.ones(s.shape[0], dtype=torch.bool)
        if not bool(keep.any()):
            return ps.new_zeros(())
        partner = partner.to(t.device)
        ns, nt = self.fuse(s[keep], s_mask[keep], t[partner][keep], t_mask[partner][keep])
        pair = self.match_head(torch.cat([torch.cat([ps, pt], -1), torch.cat([ns, nt], -1)], 0)).squeeze(-1)
        target = torch.cat([torch.ones(len(ps)), torch.zeros(len(ns))]).to(pair)
        return F.binary_cross_entropy_with_logits(pair, target)


class LayerWeighted(nn.Module):
    """SUPERB's weighted sum of encoder layers before any classifier: each stacked input
    (B, T, L, D) becomes sum_l softmax(w)_l x[:, :, l] (B, T, D), one weight vector shared by
    every stacked input of the model (its speech levels are poolings of the same layers), then
    ``model`` runs.  ``learned``: w starts at zero (equal weights) and trains with the model;
    ``mean``: w stays zero (the plain mean of the layers)."""

    def __init__(self, model: nn.Module, n_layers: int, names: list[str], learned: bool) -> None:
        super().__init__()
        self.model, self.names = model, list(names)
        self.layer_logits = nn.Parameter(torch.zeros(n_layers), requires_grad=learned)

    def weights(self) -> torch.Tensor:
        """(L,) softmax of the layer logits."""
        return torch.softmax(self.layer_logits.float(), 0)

    def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput:
        w = self.weights()
        mixed = dict(inputs)
        for name in self.names:
            x, mask = inputs[name]
            mixed[name] = (torch.einsum("btld,l->btd", x.float(), w), mask)
        return self.model(mixed, labels)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The module its kind registers for ``cfg.kind`` (:mod:`mger.models.registry`; ``late`` and
    ``combined`` are ensembles of these); with
    stacked inputs and ``layer_weights`` mean or learned, wrapped in :class:`LayerWeighted`."""
    stacked = {n: k for n, k in cfg.stacked_layers.items() if n in input_names(cfg)}
    if stacked:
        if cfg.layer_weights == "off" or len(set(stacked.values())) != 1:
            raise ValueError(
                f"inputs {sorted(stacked)} hold {sorted(set(stacked.values()))} layers each: "
                "train.layer_weights (mean | learned) combines one store's layers"
            )
        inner = build_model(dataclasses.replace(cfg, stacked_layers={}))
        return LayerWeighted(inner, next(iter(stacked.values())), sorted(stacked), cfg.layer_weights == "learned")
    kind = model_kind(cfg.kind)
    if kind.build is None:
        raise ValueError(f"model kind {cfg.kind!r} is not one module (a linear probe or an ensemble of members)")
    return kind.build(cfg)


def input_names(cfg: ModelConfig) -> list[str]:
    """The cached inputs a model reads (its kind's registration)."""
    return model_kind(cfg.kind).inputs(cfg)


# --- the built-in kinds without a class of their own ------------------------------------------------


def _probe_inputs(cfg: ModelConfig) -> list[str]:
    return (cfg.speech_inputs if cfg.probe != "text" else []) + ([cfg.text_input] if cfg.probe != "speech" else [])


def _probe_label(m: dict) -> str:
    inputs = {
        "speech": f"speech {_levels(m)}",
        "text": f"text {m['text_level']}",
        "both": f"speech {_levels(m)} + text {m['text_level']}",
    }[m["probe"]]
    return f"linear probe ({inputs}, utterance means)"


register_model("probe", inputs=_probe_inputs, cost=lambda spec, speech, layers: 0.2, label=_probe_label, order=0)(None)


@register_model(
    "text",
    inputs=lambda cfg: [cfg.text_input],
    cost=lambda spec, speech, layers: sum(speech) + TEXT_COST,
    label=lambda m: f"text only ({m['text_level']})",
    order=1,
    reads="text",
)
def _text(cfg: ModelConfig) -> nn.Module:
    return PooledClassifier(cfg, [cfg.text_input])


@register_model(
    "audio",
    inputs=lambda cfg: cfg.speech_inputs,
    cost=lambda spec, speech, layers: sum(speech),
    label=lambda m: f"audio only, {_levels(m)}",
    order=2,
    reads="speech",
)
def _audio(cfg: ModelConfig) -> nn.Module:
    if len(cfg.speech_levels) != 1:
        raise ValueError(f"audio model takes one speech level, got {cfg.speech_levels}")
    return PooledClassifier(cfg, cfg.speech_inputs)


@register_model(
    "multigranular",
    inputs=lambda cfg: cfg.speech_inputs,
    cost=lambda spec, speech, layers: sum(speech),
    label=lambda m: f"audio only, multi-granularity {_levels(m)}",
    order=3,
    reads="speech",
)
def _multigranular(cfg: ModelConfig) -> nn.Module:
    if len(cfg.speech_levels) < 2:
        raise ValueError("multigranular needs two or more speech levels")
    return PooledClassifier(cfg, cfg.speech_inputs)


def late_members(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """``late``: one audio model per speech level, and the text model."""
    audio = [
        ExperimentSpec(model="audio", speech_levels=[lv], speech_store=spec.speech_store) for lv in spec.speech_levels
    ]
    return [*audio, ExperimentSpec(model="text", text_level=spec.text_level)]


def combined_members(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """``combined`` (Zhao et al.'s full system, our reading): the co-attention model over all the
    speech levels, then ``late``'s members."""
    co = ExperimentSpec(
        model="coattention",
        speech_levels=list(spec.speech_levels),
        text_level=spec.text_level,
        speech_store=spec.speech_store,
    )
    return [co, *late_members(spec)]


for _name, _order, _members in (("late", 6, late_members), ("combined", 7, combined_members)):
    register_model(
        _name,
        inputs=speech_and_text,
        cost=lambda spec, speech, layers: 0.0,  # an ensemble costs its members' (expected_cost)
        label=lambda m: f"{m['model']} ({_levels(m)} + text)",
        order=_order,
        fusion=True,
        members=_members,
    )(None)
