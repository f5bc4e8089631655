"""Shared fixtures: corpora built in code, never checked in."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.synth import synthesize_corpus

TINY = dict(seed=5, sessions=3, dialogs_per_session=1, turns_per_dialog=8)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic corpus of 3 sessions x 1 dialog x 8 turns (shared, treat as read-only)."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_corpus(root, **TINY)
    return root
