"""The corpus stages' sections of params.yaml: ``synth`` (:mod:`mger.corpus.synth`), ``prepare``
(:mod:`mger.corpus.readers`) and ``split`` (:mod:`mger.core.splits`: protocol, folds, validation).
Their numeric ranges are rows of :data:`mger.core.config.RANGES`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from mger.core.config_loader import NAME_PATTERN, ConfigError

# ``synth.layout``: the corpus layouts `mger synth --layout` writes (mger.corpus.layouts.LAYOUTS)
SYNTH_LAYOUTS = ("iemocap", "msp_podcast", "meld", "crema_d", "ravdess", "csv")


@dataclass
class SynthConfig:
    """``mger synth``: the synthetic corpus, in the IEMOCAP layout or another corpus's (``layout``)."""

    out: str = "data/synth"
    layout: str = "iemocap"  # one of SYNTH_LAYOUTS (mger.corpus.layouts)
    seed: int = 13
    sessions: int = 5
    dialogs_per_session: int = 6
    turns_per_dialog: int = 28
    max_sentences_per_turn: int = 1  # each turn speaks 1..N sentences (params/iemocap-scale.yaml: 3)

    def __post_init__(self) -> None:
        if self.layout not in SYNTH_LAYOUTS:
            raise ConfigError(f"synth.layout: {self.layout!r} is not a layout (known: {', '.join(SYNTH_LAYOUTS)})")
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


def _check_class_map(key: str, class_map: Union[str, dict[str, str]]) -> None:
    for code, name in class_map.items() if isinstance(class_map, dict) else []:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"{key}.{code}: {name!r} is not a class name: use letters, digits, _ and - "
                "(it becomes a column of the predictions CSV and a label in the figures)"
            )


@dataclass
class CorpusSource:
    """One corpus of ``prepare.corpora`` (combined into one manifest)."""

    corpus: str
    root: str
    class_map: Union[str, dict[str, str]] = "4class"


@dataclass
class PrepareConfig:
    """``mger prepare``: corpus root → manifest (:mod:`mger.corpus.readers`).

    ``corpus`` names the reader (``iemocap``, ``msp_podcast``, ``meld``, ``crema_d``,
    ``ravdess``, ``csv``); ``class_map`` is a named map of that corpus (``4class``, ...) or an
    explicit mapping from its raw label codes to class names; codes outside it are dropped.
    ``corpora`` (name → corpus, root, class_map), when given, replaces corpus/root/class_map:
    every corpus is read and all go into one manifest, ids prefixed ``<name>-``.
    """

    root: str = "data/synth"
    manifest: str = "data/manifest.jsonl"
    report: str = "reports/data_quality.json"
    class_map: Union[str, dict[str, str]] = "4class"
    corpus: str = "iemocap"
    corpora: dict[str, CorpusSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_class_map("prepare.class_map", self.class_map)
        for name, source in self.corpora.items():
            if not NAME_PATTERN.fullmatch(name):
                raise ConfigError(f"prepare.corpora.{name}: not a corpus name (letters, digits, _ and -)")
            _check_class_map(f"prepare.corpora.{name}.class_map", source.class_map)


PROTOCOLS = ("auto", "loso", "predefined", "speaker_folds", "cross_corpus")  # split.protocol (core/splits.py)


@dataclass
class SplitConfig:
    """The folds and the validation speakers of every fold (:mod:`mger.core.splits`), shared by
    fine-tuning and every classifier; training seeds change initialisation and data order only.

    ``protocol``: ``auto`` (the corpus's default, :data:`mger.core.splits.DEFAULT_PROTOCOLS`),
    ``loso`` (leave one ``group`` out), ``predefined`` (the corpus's partitions),
    ``speaker_folds`` (``n_folds`` speaker-independent folds drawn by ``seed``) or
    ``cross_corpus`` (train and validate on ``train_corpus``, test on ``test_corpus``).
    """

    seed: int = 0
    protocol: str = "auto"
    n_folds: int = 5
    train_corpus: str = ""
    test_corpus: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"split.protocol: {self.protocol!r} is not a protocol (known: {', '.join(PROTOCOLS)})")
        if self.n_folds < 2:
            raise ConfigError(f"split.n_folds: speaker folds need at least 2 folds, got {self.n_folds}")
        if self.protocol == "cross_corpus":
            if not self.train_corpus or not self.test_corpus:
                raise ConfigError("split.protocol cross_corpus needs split.train_corpus and split.test_corpus")
            if self.train_corpus == self.test_corpus:
                raise ConfigError(
                    f"split.train_corpus and split.test_corpus are both {self.train_corpus!r}: cross_corpus "
                    "tests on another corpus"
                )
        elif self.train_corpus or self.test_corpus:
            raise ConfigError(
                f"split.train_corpus / split.test_corpus are set but split.protocol is {self.protocol!r}: "
                "they apply to cross_corpus only"
            )
