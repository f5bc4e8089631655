"""`mger synth --layout`: one writer per corpus layout behind one dispatch."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from mger.core.config import ConfigError
from mger.core.config_corpus import SYNTH_LAYOUTS, SynthConfig
from mger.corpus.layouts import LAYOUTS, crema_d_plan, layout_size, ravdess_plan, write_layout
from mger.corpus.readers import prepare_corpus
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


SMALL = dict(sessions=2, dialogs_per_session=1, turns_per_dialog=16, seed=3)  # 4 actors x 8 files


def _truth_ids(root: Path) -> list[str]:
    return [json.loads(line)["utt_id"] for line in (root / "truth" / "words.jsonl").read_text().splitlines()]


def test_crema_d_layout_reads_back_exactly_what_was_written(tmp_path: Path) -> None:
    cfg = SynthConfig(layout="crema_d", **SMALL)
    out = tmp_path / "crema"
    assert write_layout(cfg, out=out) == 32
    actors, genders, plans = crema_d_plan(*layout_size(cfg))
    rows = prepare_corpus("crema_d", out, tmp_path / "m.jsonl", tmp_path / "r.json", "6class", quiet=True)
    planned = sorted((p for plan in plans for p in plan), key=lambda p: p.path)
    assert [u.utt_id for u in rows] == [p.utt_id for p in planned] == sorted(_truth_ids(out))
    assert [u.text for u in rows] == [p.text for p in planned]
    assert [u.label_raw for u in rows] == [p.utt_id.split("_")[2] for p in planned]
    # emotions in turn, actor a's i-th file the ((i + a) % 6)-th
    assert Counter(u.label for u in rows) == {"ang": 5, "dis": 6, "fea": 6, "hap": 6, "neu": 5, "sad": 4}
    assert {u.speaker: u.gender for u in rows} == {"1001": "M", "1002": "F", "1003": "M", "1004": "F"}
    assert all(u.duration > 0.5 for u in rows)
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []


def test_ravdess_layout_reads_back_exactly_what_was_written(tmp_path: Path) -> None:
    cfg = SynthConfig(layout="ravdess", **SMALL)
    out = tmp_path / "ravdess"
    assert write_layout(cfg, out=out) == 32
    rows = prepare_corpus("ravdess", out, tmp_path / "m.jsonl", tmp_path / "r.json", "8class", quiet=True)
    planned = [p for plan in ravdess_plan(*layout_size(cfg)) for p in plan]
    assert sorted(u.utt_id for u in rows) == sorted(p.utt_id for p in planned) == sorted(_truth_ids(out))
    texts = {p.utt_id: p.text for p in planned}
    assert all(u.text == texts[u.utt_id] for u in rows)
    assert Counter(u.label for u in rows) == dict.fromkeys(["neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur"], 4)
    assert {u.speaker: u.gender for u in rows} == {"01": "M", "02": "F", "03": "M", "04": "F"}
    assert sf.info(rows[0].wav).samplerate == 48000
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [(p["item"], p["reason"]) for p in rep["problems"]] == [
        (".mger-synth.json", "not an Actor_XX folder (not read)"),
        ("truth", "not an Actor_XX folder (not read)"),
    ]
    foreign = tmp_path / "foreign"
    (foreign / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="not an earlier `mger synth` output"):  # the marker guards every layout
        write_layout(cfg, out=foreign)
    assert write_layout(dataclasses.replace(cfg, sessions=1), out=out) == 16  # its own output: replaced


def test_layout_writer_refuses_sizes_its_names_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 24 actors"):
        ravdess_plan(25, 8)
    with pytest.raises(ValueError, match="at most 91 actors"):
        crema_d_plan(4, 300)


def test_same_seed_gives_byte_identical_layout_files(tmp_path: Path) -> None:
    cfg = SynthConfig(layout="ravdess", sessions=1, dialogs_per_session=1, turns_per_dialog=4, seed=9)
    write_layout(cfg, out=tmp_path / "a")
    write_layout(cfg, out=tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") and len(_digest(tmp_path / "a")) == 6
