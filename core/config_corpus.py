"""The corpus stages' sections of params.yaml: ``synth`` (:mod:`mger.corpus.synth`), ``prepare``
(:mod:`mger.corpus.iemocap`) and ``split`` (:mod:`mger.core.splits`).  Their numeric ranges are
rows of :data:`mger.core.config.RANGES`."""

from __future__ import annotations

from dataclasses import dataclass
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
class SplitConfig:
    """The validation speakers of every fold (:mod:`mger.core.splits`), shared by fine-tuning and
    every classifier; training seeds change initialisation and data order only."""

    seed: int = 0
