"""`mger synth --layout`: one writer per corpus layout behind one dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from mger.core.config import ConfigError
from mger.core.config_corpus import SYNTH_LAYOUTS, SynthConfig
from mger.corpus.layouts import LAYOUTS, layout_size, write_layout
from mger.pipeline.cli import main
from tests.conftest import TINY
from tests.test_synth import _digest


def test_every_config_layout_has_a_writer() -> None:
    assert tuple(LAYOUTS) == SYNTH_LAYOUTS
    assert SynthConfig().layout == "iemocap"  # `make demo` stays on the IEMOCAP layout


def test_unknown_layout_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"synth.layout: 'timit' is not a layout \(known: iemocap, "):
        SynthConfig(layout="timit")


def test_iemocap_layout_is_the_synth_of_before(tiny_corpus: Path, tmp_path: Path) -> None:
    """`mger synth --layout iemocap` writes the very files synthesize_corpus writes."""
    rc = main(
        ["synth", "--layout", "iemocap", "--out", str(tmp_path / "c"), "--seed", str(TINY["seed"]), "--sessions", "3"]
        + ["--dialogs", "1", "--turns", str(TINY["turns_per_dialog"])]
    )
    assert rc in (0, None)
    assert _digest(tmp_path / "c") == _digest(tiny_corpus)


def test_layout_size_matches_the_iemocap_layout_of_the_same_params() -> None:
    assert layout_size(SynthConfig()) == (10, 84)  # 5 sessions x 2 actors; 6 dialogs x 28 turns / 2
    assert layout_size(SynthConfig(sessions=2, dialogs_per_session=1, turns_per_dialog=16)) == (4, 8)


def test_a_layout_without_writer_says_so(tmp_path: Path) -> None:
    stubs = [name for name, w in LAYOUTS.items() if getattr(w, "stub", False)]
    for name in stubs:
        with pytest.raises(NotImplementedError, match=f"--layout {name}: this layout has no writer yet"):
            write_layout(SynthConfig(layout=name), out=tmp_path / name)
        assert not (tmp_path / name).exists()
