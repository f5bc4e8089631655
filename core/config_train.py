"""The training sections of params.yaml: ``finetune``, ``train`` (with its experiments) and
``report``, and the one head config (:class:`HeadConfig`) that ``finetune.fusion``, each
experiment and every model (:class:`mger.models.modules.ModelConfig`) share.

:mod:`mger.core.config` builds them into :class:`mger.core.config.Params` (and re-exports them);
the generic loader's pieces come from :mod:`mger.core.config_loader`.  An experiment's ``model``
is any string here: the kinds are registered in :mod:`mger.models.registry` (a layer above),
which refuses an unknown one when training or the report reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from mger.core.config_features import SpeechLevel
from mger.core.config_loader import ConfigError, _build, _merged, check_name

AuxOn = Literal["fused", "encoder"]  # where mha_aux's unimodal heads read (MhaAux)
Negatives = Literal["any", "other_label"]  # which pairs mha_aux's matching task takes as negatives


@dataclass
class HeadConfig:
    """One fusion head's shape and auxiliary tasks (:class:`mger.models.modules.MhaAux`): what
    every model reads as ``ModelConfig.head``.  It is ``finetune.fusion`` as written (the ``mha_aux``
    head trained jointly with the encoders when ``finetune.objective: fusion``, Sun et al., our
    reading: its speech rows the speech encoder's last-layer frames, its text rows the text
    encoder's last-layer tokens); for ``train`` it is resolved from an experiment's settings and
    train's (:meth:`ExperimentSpec.head`).  Dropout is its section's (``train.dropout``,
    ``finetune.dropout``)."""

    layers: int = 2  # K attention layers
    hidden: int = 128
    heads: int = 4
    aux_matching: float = 0.0  # weight of task 1 (audio-text matching); 0: off
    aux_unimodal: float = 0.0  # weight of task 2 (unimodal heads); 0: off
    aux_unimodal_on: AuxOn = "fused"
    aux_matching_negatives: Negatives = "any"


FusionHeadConfig = HeadConfig  # finetune.fusion's schema: the head config itself
AUX_FIELDS = tuple(f.name for f in dataclasses.fields(HeadConfig) if f.name.startswith("aux_"))  # the tasks' settings


SHARED_FINETUNE = ("out", "features_out", "reports", "folds", "variants")  # not a variant's to change


@dataclass
class FinetuneConfig:
    """``mger finetune --fold k``: the encoders fine-tuned on fold k's training data only.

    ``lr`` is the encoders' peak learning rate, ``head_lr`` the head's; the schedule warms up
    linearly over ``warmup`` of the steps, then decays linearly to zero.  Training crops
    utterances to ``max_train_seconds`` (a random window per epoch).

    ``objective``: ``utterance`` fine-tunes each encoder alone under a mean-pool head;
    ``fusion`` fine-tunes the speech encoder (and the text encoder with ``text``) jointly with
    the ``fusion`` head and its auxiliary losses, and evaluates that head on the fold's test data
    once, after training (:mod:`mger.models.joint`): one end-to-end run per seed of
    ``train.seeds``, the encoders of ``seed``'s run kept for extraction.

    ``variants``: fine-tunings by name, each these settings with its overrides (e.g.
    ``noaux: {fusion: {aux_matching: 0, aux_unimodal: 0}}``); every fold is fine-tuned once per
    variant, and each experiment of ``train.finetuned_experiments`` names the one it reads
    (``finetune: noaux``).  None declared: one fine-tuning, these settings.
    """

    out: str = "data/finetune"  # fold-<k>/{speech,text}/ save_pretrained folders
    features_out: str = "data/features-ft"  # fold-<k>/{speech,text}.h5 fold-specific stores
    reports: str = "reports/finetune"  # fold-<k>.json and fold-<k>.csv
    folds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    text: bool = False
    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    text_lr: float = 2e-5
    head_lr: float = 1e-3
    warmup: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    freeze_feature_encoder: bool = True
    max_train_seconds: float = 6.0
    patience: int = 3
    seed: int = 0  # initialisation and data order (not the split: split.seed)
    objective: Literal["utterance", "fusion"] = "utterance"
    fusion: HeadConfig = field(default_factory=HeadConfig)  # objective fusion only
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → overrides of the settings above
    # the variant's name in its folders (data/finetune/fold-<k>/<tag>/): set by variant() when there are several
    tag: Optional[str] = field(default=None, init=False, repr=False)

    def fold_dir(self, fold: int) -> Path:
        """Fold ``fold``'s fine-tuned encoders (save_pretrained folders) and ``finetune.json``."""
        return Path(self.out) / f"fold-{fold}" / (self.tag or "")

    def with_seed(self, seed: int) -> "FinetuneConfig":
        """These settings with another ``seed``, the variant's folder name kept (``tag`` is no init field)."""
        out = dataclasses.replace(self, seed=seed)
        out.tag = self.tag
        return out

    def features_dir(self, fold: int) -> Path:
        """Fold ``fold``'s feature stores, extracted with its fine-tuned encoders."""
        return Path(self.features_out) / f"fold-{fold}" / (self.tag or "")

    @property
    def variant_names(self) -> list[Optional[str]]:
        """The declared variants' names; ``[None]`` (the settings as they are) when none is declared."""
        return list(self.variants) or [None]

    def variant(self, name: Optional[str]) -> "FinetuneConfig":
        """The settings of variant ``name``: these settings with its overrides merged in (mappings
        key by key, as ``extends``).  With several variants its folders carry its name
        (``<out>/fold-<k>/<name>/``, ``<features_out>/fold-<k>/<name>/``, ``<reports>/<name>/``);
        with one, or none declared (``name`` None), they are the plain ones."""
        if not self.variants:
            if name is not None:
                raise ConfigError(f"finetune.variants: no variant {name!r} (none is declared)")
            return self
        if name is None:
            if len(self.variants) > 1:
                raise ConfigError(f"finetune.variants: several variants ({', '.join(self.variants)}); name one")
            name = next(iter(self.variants))
        if name not in self.variants:
            raise ConfigError(f"finetune.variants: no variant {name!r} (known: {', '.join(self.variants)})")
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "variants"}
        base["fusion"] = dataclasses.asdict(self.fusion)
        try:
            out = _build(FinetuneConfig, _merged(base, self.variants[name]), f"finetune.variants.{name}")
        except ConfigError as err:  # the section's own checks name finetune.<key>: name the variant's key
            msg = str(err)
            if not msg.startswith("finetune.variants."):
                msg = f"finetune.variants.{name}." + msg.removeprefix("finetune.")
            raise ConfigError(msg) from None
        if len(self.variants) > 1:
            out.reports, out.tag = str(Path(self.reports) / name), name
        return out

    def __post_init__(self) -> None:
        # positive settings (epochs, batch_size, the learning rates, ...): RANGES, checked with every number
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"finetune.warmup: a fraction of the steps in [0, 1), got {self.warmup!r}")
        if not self.folds:
            raise ConfigError("finetune.folds: needs at least one fold")
        for name, overrides in self.variants.items():
            check_name("finetune.variants", name)  # it names folders
            shared = sorted(set(overrides) & set(SHARED_FINETUNE))
            if shared:
                raise ConfigError(
                    f"finetune.variants.{name}.{shared[0]}: shared by every variant ({', '.join(SHARED_FINETUNE)}); "
                    "set it under finetune"
                )
            self.variant(name)  # its settings are checked as finetune's are


OMITTED_AT = {
    "finetune": None,
    "layer_weights": None,
    "text_source": None,
}  # spec fields a record leaves out at these values


@dataclass
class ExperimentSpec:
    """One row of the results table: a model over chosen granularities.

    ``model: probe`` is the linear-probe reference (:mod:`mger.models.probe`) on the utterance means
    of ``speech_levels`` (``probe: speech``), of ``text_level`` (``text``), or of both.

    ``features`` says which speech (and text) features it trains on: the frozen encoders'
    stores, or fold k's fine-tuned stores for fold k (set by the section the experiment is
    listed in: ``train.experiments`` or ``train.finetuned_experiments``).
    """

    model: str  # a model kind of mger.models.registry (checked there: core cannot import models)
    speech_levels: list[SpeechLevel] = field(default_factory=lambda: ["word"])
    text_level: Literal["token", "word"] = "token"
    probe: Literal["speech", "text", "both"] = "both"  # model probe: which utterance-level inputs
    # the head's auxiliary tasks and K, flat as params.yaml writes them (:meth:`head` resolves them)
    aux_matching: float = 0.0
    aux_unimodal: float = 0.0
    aux_unimodal_on: AuxOn = "fused"
    aux_matching_negatives: Negatives = "any"
    layers: Optional[int] = None  # mha_aux's K for this row (default: train.layers)
    speech_store: str = "speech"  # which speech store: speech, or a name in features.extra_speech
    late_weights: Literal["mean", "fitted"] = "fitted"
    features: Literal["frozen", "finetuned"] = "frozen"
    finetune: Optional[str] = None  # fine-tuned experiments: the finetune.variants entry it reads
    layer_weights: Optional[Literal["off", "mean", "learned"]] = None  # a layer-list store's layers (default: train's)
    text_source: Optional[Literal["gold", "asr"]] = None  # None: the run's text; gold/asr: that one's store (tokens)

    def head(self, train: "TrainConfig") -> HeadConfig:
        """This row's head: its auxiliary tasks and K (else ``train.layers``), train's width and heads."""
        aux = {name: getattr(self, name) for name in AUX_FIELDS}
        return HeadConfig(layers=self.layers or train.layers, hidden=train.hidden, heads=train.heads, **aux)

    def record(self) -> dict:
        """The metrics' ``provenance.spec``: every field as written, but those at a default that
        rows written before the field existed read the same (``finetune`` and ``layer_weights`` None,
        ``text_source`` None), so :meth:`from_record` rebuilds the spec exactly."""
        return {k: v for k, v in dataclasses.asdict(self).items() if OMITTED_AT.get(k, ...) != v}

    @classmethod
    def from_record(cls, record: dict) -> "ExperimentSpec":
        """The spec a metrics file's ``provenance.spec`` holds (:meth:`record`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass
class TrainConfig:
    """``mger train``: fusion classifiers on the cached features, fold by fold (``split.protocol``)."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 8
    class_balanced: bool = False
    standardize: bool = True  # scale each input feature by its training-split mean and std
    early_stopping: Literal["val_ua", "val_loss"] = "val_ua"  # what picks the epoch (validation split)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # initialisation and data order only
    hidden: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.2
    device: str = "auto"  # auto: CUDA when present (bf16 autocast there)
    n_jobs: int = 1  # experiments trained at once (processes; same results as 1)
    metrics_dir: str = "reports/metrics"
    epochs_dir: str = "reports/epochs"
    predictions_dir: str = "reports/predictions"
    # a speech store of several layers (features.speech.layer a list or all): off refuses it, mean
    # averages its layers, learned trains a softmax-weighted sum with each classifier (SUPERB's recipe)
    layer_weights: Literal["off", "mean", "learned"] = "off"
    experiments: dict[str, ExperimentSpec] = field(default_factory=dict)
    finetuned_experiments: dict[str, ExperimentSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # positive settings (epochs, batch_size, patience, hidden, heads, layers): RANGES
        if not self.seeds:
            raise ConfigError("train.seeds: needs at least one seed")
        for section in ("experiments", "finetuned_experiments"):
            for name, spec in getattr(self, section).items():
                check_name(f"train.{section}", name, reserved=("all",))  # --experiment all
                check_name(f"train.{section}.{name}.speech_store", spec.speech_store)
        clash = sorted(set(self.experiments) & set(self.finetuned_experiments))
        if clash:
            raise ConfigError(f"train.finetuned_experiments.{clash[0]}: name already used in train.experiments")
        for spec in self.experiments.values():
            spec.features = "frozen"
        for spec in self.finetuned_experiments.values():
            spec.features = "finetuned"

    @property
    def all_experiments(self) -> dict[str, ExperimentSpec]:
        """Frozen and fine-tuned experiments by name."""
        return self.experiments | self.finetuned_experiments


@dataclass
class ReportConfig:
    """``mger report``: the results table and figures."""

    out: str = "reports/results.md"
    figures: str = "reports/figures"
    metrics: str = "reports/metrics.json"  # headline figures per row, what `dvc exp show` compares
    experiments: Optional[list[str]] = None  # rows shown (default all; --experiment overrides)
