"""The one typed loader for ``params.yaml``: :class:`Params` and the functions that read it.

Each top-level section of params.yaml is a dataclass, grouped by the stages that read it:
``synth``, ``prepare``, ``split`` in :mod:`mger.core.config_corpus`; ``align``, ``align_eval``,
``align_eval_corpus`` in :mod:`mger.core.align_settings`; ``features``, ``demo_model`` in
:mod:`mger.core.config_features`; ``finetune``, ``train``, ``report`` in
:mod:`mger.core.config_train`; ``train_dispatch`` here.  They are re-exported,
so ``from mger.core.config import FeaturesConfig`` works.

:func:`load_params` builds them from the YAML mapping with the generic loader
(:mod:`mger.core.config_loader`) and checks every value against its type hint, every number
against its row of :data:`RANGES` (the one range table), then the cross-field rules.  Unknown
keys and values of the wrong type or outside their allowed set raise :class:`ConfigError`
naming the dotted key (``align.on_failure: 'skip' is not one of 'drop', 'uniform'``).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from mger.core.align_settings import (
    AlignConfig as AlignConfig,
    AlignEvalConfig as AlignEvalConfig,
    AlignEvalCorpusConfig as AlignEvalCorpusConfig,
    MfaSettings as MfaSettings,
    PocketsphinxSettings as PocketsphinxSettings,
)
from mger.core.config_corpus import (
    PrepareConfig as PrepareConfig,
    SplitConfig as SplitConfig,
    SynthConfig as SynthConfig,
)
from mger.core.config_features import (
    DemoModelConfig as DemoModelConfig,
    FeaturesConfig as FeaturesConfig,
    SpeechFeaturesConfig as SpeechFeaturesConfig,
    SpeechLevel as SpeechLevel,
    TextFeaturesConfig as TextFeaturesConfig,
)
from mger.core.config_loader import (
    ANY,
    NAME_PATTERN as NAME_PATTERN,
    ConfigError as ConfigError,
    Range,
    _build,
    _convert,
    _read_yaml_tree,
    check_name as check_name,
    check_number,
    numeric_params as numeric_params,
)
from mger.core.config_train import (
    AUX_FIELDS as AUX_FIELDS,
    SHARED_FINETUNE as SHARED_FINETUNE,
    ExperimentSpec as ExperimentSpec,
    FinetuneConfig as FinetuneConfig,
    FusionHeadConfig as FusionHeadConfig,
    HeadConfig as HeadConfig,
    ReportConfig as ReportConfig,
    TrainConfig as TrainConfig,
)
from mger.core.config_transcribe import TranscribeConfig as TranscribeConfig

DEFAULT_PARAMS = "params.yaml"


@dataclass
class TrainDispatchConfig:
    """How ``mger train --n-jobs`` (experiments) and ``mger finetune --n-jobs`` (folds) spread their
    jobs: local joblib processes, or a Dask cluster at ``scheduler`` (a local one when null).
    Extraction has its own (``features.backend``, ``features.scheduler``).  Each job computes
    what a serial run computes, so this is no DVC param of the train or finetune stage."""

    backend: Literal["joblib", "dask"] = "joblib"
    scheduler: Optional[str] = None  # dask scheduler address, e.g. tcp://10.0.0.1:8786


@dataclass
class Params:
    """All of params.yaml."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    align_eval: AlignEvalConfig = field(default_factory=AlignEvalConfig)
    align_eval_corpus: AlignEvalCorpusConfig = field(default_factory=AlignEvalCorpusConfig)
    demo_model: DemoModelConfig = field(default_factory=DemoModelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    train_dispatch: TrainDispatchConfig = field(default_factory=TrainDispatchConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)


def params_from_dict(data: dict[str, Any] | None) -> Params:
    """Build :class:`Params` from an already parsed mapping (missing keys take defaults)."""
    params = _build(Params, data or {}, "")
    check_ranges(params)
    return params


def with_overrides(params: Params, overrides: dict[str, Any]) -> Params:
    """A new, validated :class:`Params`: ``params`` with ``{"align.n_jobs": 4, ...}`` set.

    ``None`` values are skipped; ``params`` itself is left as it was (``dataclasses.replace`` down
    the dotted path).  Each value is checked against its field's type as a params file's is, and
    the sections' own checks, the ranges and the cross-field rules run again on the result.
    """
    for key, value in overrides.items():
        if value is not None:
            params = _replace_at(params, key.split("."), value, key)
    check_ranges(params)
    return params


def _replace_at(obj: Any, names: list[str], value: Any, key: str) -> Any:
    name, rest = names[0], names[1:]
    hints = typing.get_type_hints(type(obj))
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise ConfigError(f"{key}: unknown key")
    new = _replace_at(getattr(obj, name), rest, value, key) if rest else _convert(value, hints[name], key)
    return dataclasses.replace(obj, **{name: new})


def read_params(path: str | Path | None = None) -> Params:
    """``path`` if given (a missing file is an error); else the working folder's ``params.yaml``,
    or, where there is none, the built-in defaults (the dataclasses above)."""
    if path is None:
        if not Path(DEFAULT_PARAMS).is_file():
            return params_from_dict(None)
        path = DEFAULT_PARAMS
    return load_params(path)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params file; errors name the file and the key.

    A file may start from another: ``extends: <path relative to this file>`` reads that one
    first, then this file's mappings are merged into it key by key (other values replace), e.g.
    ``params/demo-full.yaml`` adds experiments to ``params.yaml``."""
    data = _read_yaml_tree(Path(path), ())
    try:
        return params_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


# Upper bounds where a huge value is an allocator error, thousands of processes or a seed torch
# and numpy refuse, not a result: (most, why).
SEED = (2**32 - 1, "numpy's legacy seeding takes 32 bits")
JOBS = (1024, "parallel processes")
WIDTH = (16384, "a layer width")
DEPTH = (256, "layers or attention heads")
BATCH = (65536, "items in a batch")

# The one range table: every numeric param of every section has a row, keyed by its dotted name
# ("*" stands for any name of a mapping, e.g. an experiment's; "[]" for any list item), with its
# lower bound or interval and, where one applies, its maximum (Range).  tests/test_config.py fails
# for a numeric param without a row, so a new param needs its range stated.
RANGES: dict[str, Range] = {
    "synth.seed": Range("nonnegative", *SEED),
    "synth.sessions": Range("positive"),
    "synth.dialogs_per_session": Range("positive"),
    "synth.turns_per_dialog": Range("positive"),
    "synth.max_sentences_per_turn": Range("positive"),
    "align.n_jobs": Range("positive", *JOBS),
    "align.pocketsphinx.ladder[][]": Range("probability"),
    "align.pocketsphinx.silprob": Range("positive"),
    "align.pocketsphinx.duration_weight": Range("nonnegative"),
    "align.mfa.jobs": Range("positive", *JOBS),
    "align.mfa.beam": Range("positive"),
    "align.mfa.retry_beam": Range("positive"),
    "demo_model.seed": Range("nonnegative", *SEED),
    "demo_model.hidden_size": Range("positive", *WIDTH),
    "demo_model.num_hidden_layers": Range("positive", *DEPTH),
    "demo_model.num_attention_heads": Range("positive", *DEPTH),
    "demo_model.intermediate_size": Range("positive", *WIDTH),
    "demo_model.conv_dim": Range("positive", *WIDTH),
    "features.batch_seconds": Range("positive"),
    "features.shard_size": Range("positive", *BATCH),
    "features.n_jobs": Range("positive", *JOBS),
    "features.speech.layer": Range("any"),
    "features.speech.layer[]": Range("any"),
    "features.speech.max_seconds": Range("positive"),
    "features.speech.overlap_seconds": Range("nonnegative"),
    "features.text.layer": Range("any"),
    "features.text.max_length": Range("positive"),
    "features.extra_speech.*.layer": Range("any"),
    "features.extra_speech.*.layer[]": Range("any"),
    "features.extra_speech.*.max_seconds": Range("positive"),
    "features.extra_speech.*.overlap_seconds": Range("nonnegative"),
    "finetune.folds[]": Range("positive"),
    "finetune.epochs": Range("positive"),
    "finetune.batch_size": Range("positive", *BATCH),
    "finetune.grad_accum": Range("positive"),
    "finetune.lr": Range("positive"),
    "finetune.text_lr": Range("positive"),
    "finetune.head_lr": Range("positive"),
    "finetune.warmup": Range("fraction"),
    "finetune.weight_decay": Range("nonnegative"),
    "finetune.dropout": Range("fraction"),
    "finetune.max_train_seconds": Range("positive"),
    "finetune.patience": Range("positive"),
    "finetune.seed": Range("nonnegative", 3999999, "fine-tuning reseeds numpy with seed * 1000 + epoch"),
    "finetune.fusion.layers": Range("positive", *DEPTH),
    "finetune.fusion.hidden": Range("positive", *WIDTH),
    "finetune.fusion.heads": Range("positive", *DEPTH),
    "finetune.fusion.aux_matching": Range("nonnegative"),
    "finetune.fusion.aux_unimodal": Range("nonnegative"),
    "train.epochs": Range("positive"),
    "train.batch_size": Range("positive", *BATCH),
    "train.lr": Range("positive"),
    "train.weight_decay": Range("nonnegative"),
    "train.patience": Range("positive"),
    "train.seeds[]": Range("nonnegative", *SEED),
    "train.hidden": Range("positive", *WIDTH),
    "train.heads": Range("positive", *DEPTH),
    "train.n_jobs": Range("positive", *JOBS),
    "transcribe.n_jobs": Range("positive", *JOBS),
    "transcribe.whisper.batch_size": Range("positive", *BATCH),
    "transcribe.whisper.chunk_seconds": Range("positive", 30, "Whisper's input window"),
    "transcribe.whisper.max_new_tokens": Range("positive", 448, "Whisper's decoder positions"),
    "transcribe.whisper.num_beams": Range("positive", 64, "beams"),
    "train.layers": Range("positive", *DEPTH),
    "train.dropout": Range("fraction"),
    "train.experiments.*.aux_matching": Range("nonnegative"),
    "train.experiments.*.aux_unimodal": Range("nonnegative"),
    "train.finetuned_experiments.*.aux_matching": Range("nonnegative"),
    "train.finetuned_experiments.*.aux_unimodal": Range("nonnegative"),
    "train.experiments.*.layers": Range("positive", *DEPTH),
    "train.finetuned_experiments.*.layers": Range("positive", *DEPTH),
    "split.seed": Range("nonnegative", *SEED),
    "split.n_folds": Range("positive", 1000, "folds"),
}


def check_ranges(params: Params) -> None:
    """Every number finite and within its row of :data:`RANGES`, and the cross-field rules."""
    variants = [(f"finetune.variants.{n}.", params.finetune.variant(n)) for n in params.finetune.variants]
    for where, obj in [("", params), *variants]:  # a variant's settings have finetune's ranges
        for key, rule_key, value in numeric_params(obj, "finetune" if where else "", skip=("variants",)):
            key = f"{where}{key.removeprefix('finetune.')}" if where else key
            check_number(key, value, RANGES.get(rule_key, ANY))
    demo = params.demo_model
    fusion = params.finetune.fusion
    for section, hidden, heads in (
        ("train", params.train.hidden, params.train.heads),
        ("finetune.fusion", fusion.hidden, fusion.heads),
        ("demo_model", demo.hidden_size, demo.num_attention_heads),
    ):
        if hidden % heads:
            raise ConfigError(
                f"{section}: hidden size {hidden} is not divisible by {heads} attention heads; change one of them"
            )
    _check_speech_stores(params)
    _check_finetune_variants(params)
    for key, device in (("features.device", params.features.device), ("train.device", params.train.device)):
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
            raise ConfigError(f"{key}: {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    speech = params.features.speech
    if speech.overlap_seconds >= speech.max_seconds:
        raise ConfigError(
            f"features.speech.overlap_seconds: {speech.overlap_seconds!r} must be less than "
            f"features.speech.max_seconds ({speech.max_seconds!r})"
        )


def _check_speech_stores(params: Params) -> None:
    """Experiments name existing speech stores; fine-tuned ones read the main store only."""
    stores = params.features.speech_stores
    for section in ("experiments", "finetuned_experiments"):
        for name, spec in getattr(params.train, section).items():
            if spec.speech_store not in stores:
                raise ConfigError(
                    f"train.{section}.{name}.speech_store: {spec.speech_store!r} is not a speech store "
                    f"(known: {', '.join(stores)}); add it under features.extra_speech"
                )
            if section == "finetuned_experiments" and spec.speech_store != "speech":
                raise ConfigError(
                    f"train.{section}.{name}.speech_store: fine-tuned features exist for features.speech only"
                )


def _check_finetune_variants(params: Params) -> None:
    """Fine-tuned experiments name an existing variant (one of several must be named); under the
    fusion objective the run whose encoders are kept (``finetune.seed``) is one of ``train.seeds``."""
    finetune, seeds = params.finetune, params.train.seeds
    known = ", ".join(finetune.variants) or "none is declared"
    for section in ("experiments", "finetuned_experiments"):
        for name, spec in getattr(params.train, section).items():
            key = f"train.{section}.{name}.finetune"
            if section == "experiments" and spec.finetune is not None:
                raise ConfigError(f"{key}: only experiments of train.finetuned_experiments read fine-tuned encoders")
            if section == "finetuned_experiments" and spec.finetune is None and len(finetune.variants) > 1:
                raise ConfigError(f"{key}: name the fine-tuning variant it reads (one of {known})")
            if spec.finetune is not None and spec.finetune not in finetune.variants:
                raise ConfigError(f"{key}: {spec.finetune!r} is not a variant of finetune.variants ({known})")
    for name in finetune.variant_names:
        cfg = finetune.variant(name)
        if cfg.objective == "fusion" and cfg.seed not in seeds:
            where = f"finetune.variants.{name}" if name else "finetune"
            raise ConfigError(
                f"{where}.seed: {cfg.seed} is not one of train.seeds {seeds}: the fusion objective trains one "
                "end-to-end run per training seed and keeps the encoders of finetune.seed's run"
            )
        _, most, why = RANGES["finetune.seed"]
        if cfg.objective == "fusion" and max(seeds) > most:  # each training seed seeds a fine-tuning run
            raise ConfigError(f"train.seeds: {max(seeds)} is over {most} under the fusion objective ({why})")
