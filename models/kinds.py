"""The built-in model kinds, one registration each (:mod:`mger.models.registry`): the linear
probe, the unimodal classifiers, the fusion classifiers of :mod:`mger.models.modules` and the two
ensembles (``late``, ``combined``) that :mod:`mger.models.experiment` trains member by member."""

from __future__ import annotations

from torch import nn

from mger.core.config import ExperimentSpec
from mger.models.modules import CoAttention, FcFusion, MhaAux, ModelConfig, PooledClassifier
from mger.models.registry import register_model

TEXT_COST = 1.0  # the text tokens' step cost, against a word-level speech input's 1


def _levels(m: dict) -> str:
    return "+".join(m["speech_levels"])


def aux_tasks(m: dict) -> list[str]:
    """The auxiliary tasks a row (metrics dict or spec fields) switches on: matching, unimodal."""
    return [name for name, on in (("matching", m["aux_matching"] > 0), ("unimodal", m["aux_unimodal"] > 0)) if on]


def speech_and_text(cfg: ModelConfig) -> list[str]:
    """The first speech level and the text level: what a two-stream fusion model reads."""
    return [cfg.speech_inputs[0], cfg.text_input]


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


register_model(
    "fc",
    inputs=speech_and_text,
    cost=lambda spec, speech, layers: sum(speech),
    label=lambda m: f"FC fusion (mean-pooled {_levels(m)} + text)",
    order=4,
    fusion=True,
)(FcFusion)

register_model(
    "coattention",
    inputs=lambda cfg: [*cfg.speech_inputs, cfg.text_input],
    cost=lambda spec, speech, layers: sum(s + TEXT_COST for s in speech),  # one block per level against the tokens
    label=lambda m: f"coattention ({_levels(m)} + text)",
    order=5,
    fusion=True,
)(CoAttention)


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


register_model(
    "mha_aux",
    inputs=speech_and_text,
    cost=lambda spec, speech, layers: (sum(speech) + TEXT_COST) * (1 + layers),
    label=_mha_label,
    order=8,
    fusion=True,
)(MhaAux)
