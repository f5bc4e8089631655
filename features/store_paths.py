"""Store file names: where the ``speech``, ``text`` and extra speech stores of a features
folder are, and the settings each is built from.  Beside the cache (:mod:`mger.features.cache`),
so that training, the report and the CLI find a store without importing the extract stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mger.core.config import FeaturesConfig

KINDS = ("speech", "text")


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
