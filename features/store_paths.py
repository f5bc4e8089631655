"""Store file names: where the ``speech``, ``text`` and extra speech stores of a features
folder are, and the settings each is built from.  Beside the cache (:mod:`mger.features.cache`),
so that training, the report and the CLI find a store without importing the extract stage.

A speech store's levels are kept in two files of the same name: the alignment-free ones
(:data:`mger.core.ragged_h5.AUDIO_LEVELS`, openSMILE's functionals) under ``features.audio_out``
(``mger extract --audio``, DVC stage ``extract_audio``), the rest under ``features.out``
(``mger extract``).  An experiment's input ``speech:<level>`` is read from the file of its level
(:func:`store_role`: ``audio`` or the input's kind)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mger.core.config import FeaturesConfig
from mger.core.ragged_h5 import AUDIO_LEVELS

KINDS = ("speech", "text")
AUDIO = "audio"  # the role of a speech store's alignment-free file (store_role)


def store_file(out: str | Path, kind: str) -> Path:
    """The ``kind`` store in the folder ``out``: ``speech.h5``, ``text.h5``, or
    ``speech-<name>.h5`` for the speech store ``name`` of ``features.extra_speech``."""
    return Path(out) / (f"{kind}.h5" if kind in KINDS else f"speech-{kind}.h5")


def store_config(cfg: FeaturesConfig, name: str) -> FeaturesConfig:
    """The features settings that build the store ``name`` (``speech``, ``text`` or an extra
    speech store, whose settings take the place of ``features.speech``)."""
    if name in KINDS:
        return cfg
    return dataclasses.replace(cfg, speech=cfg.extra_speech[name])


def stage_config(cfg: FeaturesConfig, name: str, audio: bool) -> FeaturesConfig | None:
    """The settings of the file of store ``name`` one extraction stage writes: its alignment-free
    levels (``audio``) or the others; None when that file would hold no level (a text store has
    no alignment-free file)."""
    full = store_config(cfg, name)
    if name == "text":
        return None if audio else full
    levels = [lv for lv in full.speech.levels if (lv in AUDIO_LEVELS) == audio]
    if not levels:
        return None
    return dataclasses.replace(full, speech=dataclasses.replace(full.speech, levels=levels))


def store_role(name: str) -> str:
    """The file an experiment input ``kind:level`` is read from: ``audio`` (the alignment-free
    file of its speech store) for a speech level of :data:`AUDIO_LEVELS`, else its kind."""
    kind, level = name.split(":")
    return AUDIO if kind == "speech" and level in AUDIO_LEVELS else kind


def frozen_store_files(cfg: FeaturesConfig) -> list[Path]:
    """Every file the frozen stores of ``cfg`` are kept in: each store's aligned file under
    ``out`` (speech, text, the extra speech stores), then the alignment-free ones under ``audio_out``."""
    names = [*KINDS, *cfg.extra_speech]
    aligned = [store_file(cfg.out, name) for name in names if stage_config(cfg, name, audio=False)]
    free = [store_file(cfg.audio_out, name) for name in names if stage_config(cfg, name, audio=True)]
    return aligned + free
