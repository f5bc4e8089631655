"""align-eval-corpus: the segment table against IEMOCAP's own ForcedAlignment .wdseg files, on a
hand-built tree in IEMOCAP's layout and .wdseg format with known offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.alignment.base import Alignment, Segment
from mger.alignment.corpus_eval import read_wdseg_words, run_align_eval_corpus
from mger.alignment.table import write_table
from mger.corpus.readers import prepare_corpus
from mger.pipeline.cli import main
from tests.builders import TreeBuilder

D1, D2 = "Ses01F_impro01", "Ses02M_script01_1"
A, B, C = f"{D1}_F000", f"{D1}_M000", f"{D2}_F000"  # compared
UNIFORM, MISSING, BROKEN = f"{D2}_M000", f"{D1}_F001", f"{D2}_F001"
# .wdseg rows (start frame, end frame, label) as IEMOCAP writes them: <s>, <sil>, </s>, variants.
WDSEG = {
    A: [(0, 9, "<s>"), (10, 24, "HELLO"), (25, 27, "<sil>"), (28, 33, "I'M"), (34, 40, "HERE(2)"), (41, 49, "</s>")],
    B: [(0, 4, "<s>"), (5, 9, "GO"), (10, 19, "AWAY"), (20, 21, "++BREATH++"), (22, 30, "NOW"), (31, 49, "</s>")],
    C: [(0, 7, "<s>"), (8, 15, "YES(3)"), (16, 20, "<sil>"), (21, 29, "OKAY"), (30, 38, "WELL"), (39, 49, "</s>")],
    UNIFORM: [(0, 9, "<s>"), (10, 30, "GOODBYE"), (31, 49, "</s>")],
}
# The aligner's words: every .wdseg word 30 ms late, AWAY 80 ms late; "oh" only in the aligner's,
# WELL only in the .wdseg.
ALIGNED = {
    A: [("hello", 30), ("oh", None), ("i'm", 30), ("here", 30)],
    B: [("go", 30), ("away", 80), ("now", 30)],
    C: [("yes", 30), ("okay", 30)],
}


def _wdseg_text(rows: list[tuple[int, int, str]]) -> str:
    lines = [" SFrm  EFrm    SegAScr Word"]
    lines += [f"{s:6d} {e:5d} {-4000 * (e - s + 1):10d} {w}" for s, e, w in rows]
    return "\n".join([*lines, f" Total score:   {-4000 * 50:10d}"]) + "\n"


def _segfile(root: Path, uid: str) -> Path:
    dialog = uid.rsplit("_", 1)[0]
    return root / f"Session{int(uid[3:5])}" / "sentences" / "ForcedAlignment" / dialog / f"{uid}.wdseg"


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """An IEMOCAP-layout tree, its manifest and a segment table with known offsets."""
    root = tmp_path / "IEMOCAP_full_release"
    tb = TreeBuilder(root)
    tb.dialog(1, D1, [(A, "neu", "Hello, oh, I'm here."), (B, "ang", "Go away now!"), (MISSING, "neu", "Hi.")])
    tb.dialog(2, D2, [(C, "exc", "Yes, okay."), (UNIFORM, "sad", "Goodbye."), (BROKEN, "sad", "No.")])
    for uid, rows in WDSEG.items():
        _segfile(root, uid).parent.mkdir(parents=True, exist_ok=True)
        _segfile(root, uid).write_text(_wdseg_text(rows))
    _segfile(root, BROKEN).write_text(" SFrm  EFrm    SegAScr Word\n     0    12    -300 <s>\n    13  abc  -100 NO\n")
    prepare_corpus("iemocap", root, tmp_path / "manifest.jsonl", tmp_path / "q.json", "4class", quiet=True)
    starts = {uid: [(s / 100, (e + 1) / 100) for s, e, w in WDSEG[uid] if w[0].isalpha()] for uid in ALIGNED}
    alignments = []
    for uid, words in ALIGNED.items():
        times = iter(starts[uid])
        segs = []
        for label, shift in words:
            start, end = next(times) if shift is not None else (segs[-1].end, segs[-1].end + 0.05)
            shift = shift or 0
            segs.append(Segment(start + shift / 1000, end + shift / 1000, label))
        alignments.append(Alignment(uid, 0.5, segs))
    alignments.append(Alignment(UNIFORM, 0.5, [Segment(0.1, 0.3, "goodbye")], method="uniform"))
    write_table(tmp_path / "segments.h5", alignments, "pocketsphinx")
    return {"root": root, "manifest": tmp_path / "manifest.jsonl", "segments": tmp_path / "segments.h5"}


def test_known_offsets_counts_and_groups(tree: dict[str, Path], tmp_path: Path) -> None:
    m = run_align_eval_corpus(tree["manifest"], tree["segments"], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == m
    assert m["backend"] == "pocketsphinx" and m["manifest_utterances"] == 6
    assert (m["wdseg_found"], m["wdseg_missing"], m["wdseg_malformed"], m["not_aligned"]) == (5, 1, 1, 1)
    assert m["missing_examples"] == [MISSING] and m["n_utterances"] == 3
    assert (m["wdseg_words"], m["wdseg_words_unmatched"], m["aligned_words"], m["aligned_words_unmatched"]) == (
        9,
        1,
        9,
        1,
    )
    # 8 matched words: 7 at +30 ms, one at +80 ms.
    assert m["n_words"] == 8 and m["onset_within_50ms"] == 0.875 and m["offset_within_50ms"] == 0.875
    assert m["onset_signed_median_ms"] == 30.0 and m["onset_signed_mean_ms"] == 36.25
    assert m["offset_signed_median_ms"] == 30.0 and m["offset_signed_mean_ms"] == 36.25
    assert m["onset_within_20ms"] == 0.0
    speakers = m["by_speaker"]
    assert sorted(speakers) == ["Ses01_F", "Ses01_M", "Ses02_F"]
    assert speakers["Ses01_M"]["n_words"] == 3 and speakers["Ses01_M"]["onset_within_50ms"] == 0.667
    assert speakers["Ses01_M"]["onset_signed_mean_ms"] == 46.667 and speakers["Ses01_M"]["onset_signed_median_ms"] == 30
    assert speakers["Ses01_F"]["n_words"] == 3 and speakers["Ses01_F"]["onset_within_50ms"] == 1.0
    assert speakers["Ses02_F"]["n_words"] == 2 and speakers["Ses02_F"]["onset_signed_mean_ms"] == 30.0
    emotions = m["by_emotion"]
    assert {e: g["n_words"] for e, g in emotions.items()} == {"ang": 3, "hap": 2, "neu": 3}
    assert emotions["ang"]["onset_signed_mean_ms"] == 46.667 and emotions["neu"]["onset_within_50ms"] == 1.0
    assert (m["worst"][0]["word"], m["worst"][0]["onset_ms"], m["worst"][0]["voice"]) == ("AWAY", 80.0, "Ses01_M")
    assert m["note"] is None
    (problem,) = m["problems"]
    assert problem["item"] == BROKEN and problem["file"] == str(_segfile(tree["root"], BROKEN))
    assert problem["reason"].startswith("malformed .wdseg: line 3: not a segment row")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "no segment rows"),
        (" SFrm  EFrm    SegAScr Word\n Total score: 0\n", "no segment rows"),
        (" SFrm  EFrm    SegAScr Word\n    20    10   -50 WORD\n", "line 2: end frame 10 before start frame 20"),
        ("\x00\x01binary junk\n", "line 1: not a segment row"),
        (_wdseg_text([(0, 9, "<s>"), (10, 19, "<sil>"), (20, 29, "</s>")]), "no speech words"),
    ],
)
def test_malformed_wdseg_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "u.wdseg"
    path.write_text(text)
    words, found = read_wdseg_words(path)
    assert words == [] and found is not None and found.startswith(problem) and "\n" not in found


def test_wdseg_words_in_seconds_without_marks_or_variants(tmp_path: Path) -> None:
    path = tmp_path / "u.wdseg"
    path.write_text(_wdseg_text(WDSEG[C]))
    assert read_wdseg_words(path) == (
        [
            {"word": "YES", "start": 0.08, "end": 0.16},
            {"word": "OKAY", "start": 0.21, "end": 0.3},
            {"word": "WELL", "start": 0.3, "end": 0.39},
        ],
        None,
    )


def test_corpus_without_wdseg_writes_a_report_saying_so(
    tree: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (tree["root"]).rglob("*.wdseg"):
        path.unlink()
    out = tmp_path / "none.json"
    argv = ["align-eval-corpus", "--manifest", str(tree["manifest"]), "--segments", str(tree["segments"])]
    assert main([*argv, "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert (m["wdseg_found"], m["wdseg_missing"], m["n_utterances"], m["n_words"]) == (0, 6, 0, 0)
    assert m["by_speaker"] == {} and m["problems"] == [] and m["onset_within_50ms"] is None
    assert m["note"] == "no ForcedAlignment .wdseg file for any of the 6 manifest utterances"
    assert "no word compared: no ForcedAlignment .wdseg file" in capsys.readouterr().out


def test_synthetic_corpus_round_trip_with_the_iemocap_backend(aligned: dict[str, Path], tmp_path: Path) -> None:
    """The synthetic corpus writes .wdseg files too; the iemocap backend read them, so every word
    matches with no error, except words the backend keeps as written ("5", "TWENTY-MINUTE") where
    the comparison normalises them like a transcript ("five"); the report says what it measures."""
    from mger.alignment.normalize import normalize_token
    from mger.alignment.table import SegmentTable

    m = run_align_eval_corpus(aligned["manifest"], aligned["segments"], tmp_path / "r.json")
    table = SegmentTable.read(aligned["segments"])
    labels = [w.label for u in table.utt_ids for w in table.segments("word", u)]
    as_written = sum(normalize_token(label) != [label] for label in labels)
    assert m["wdseg_missing"] == m["wdseg_malformed"] == m["not_aligned"] == 0
    assert m["n_utterances"] == m["manifest_utterances"] > 0 and m["aligned_words"] == len(labels)
    assert m["wdseg_words_unmatched"] == m["aligned_words_unmatched"] == as_written
    assert m["n_words"] == m["wdseg_words"] - as_written > 0
    assert m["onset_mean_ms"] == m["offset_mean_ms"] == 0.0 and m["onset_within_50ms"] == 1.0
    assert m["note"].startswith("the iemocap backend read these same .wdseg files")


def test_summary_prints_one_line_when_words_were_compared(
    tree: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mger.core.config import params_from_dict
    from mger.pipeline.summary import print_summary

    quality = {"root": "corpus", "kept": 6, "dropped": 0, "per_class": {"neu": 6}, "per_group": {"Ses01": 6}}
    (tmp_path / "q.json").write_text(json.dumps(quality))
    none = str(tmp_path / "none.json")
    sections = {"prepare": {"report": str(tmp_path / "q.json")}, "align": {"report": none}}
    sections |= {"align_eval": {"report": none}, "features": {"out": str(tmp_path)}}
    sections |= {"report": {"out": str(tmp_path / "none.md")}, "finetune": {"reports": str(tmp_path)}}
    params = params_from_dict(sections | {"align_eval_corpus": {"report": str(tmp_path / "c.json")}})
    print_summary(params)
    assert ".wdseg" not in capsys.readouterr().out  # no report yet: no line
    run_align_eval_corpus(tree["manifest"], tree["segments"], tmp_path / "c.json")
    capsys.readouterr()
    print_summary(params)
    assert (
        "alignment vs the corpus's own .wdseg (pocketsphinx): 8 words in 3 utterances (1 .wdseg missing, "
        "1 malformed), onset median 30.0 ms, 87.5% within 50 ms, signed median 30.0 ms"
    ) in capsys.readouterr().out
