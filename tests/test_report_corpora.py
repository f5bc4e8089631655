"""The report's corpus facts on other corpora than IEMOCAP (make demo-corpora): the synthetic
corpus is recognised in every layout (a csv corpus's root is its table; several corpora), and the
published IEMOCAP block belongs to reports that read IEMOCAP only."""

from __future__ import annotations

from pathlib import Path

from mger.core.config import params_from_dict
from mger.models.report import reads_iemocap, synthetic_corpus


def _synth_tree(root: Path) -> Path:
    (root / "truth").mkdir(parents=True)
    (root / "truth" / "words.jsonl").write_text("")  # what `mger synth` leaves beside each layout
    return root


def test_synthetic_corpus_csv_table_and_corpora(tmp_path: Path) -> None:
    table = _synth_tree(tmp_path / "csv") / "corpus.csv"
    table.write_text("utt_id,wav,label,speaker\n")
    assert synthetic_corpus(params_from_dict({"prepare": {"corpus": "csv", "root": str(table)}}))
    real = tmp_path / "real"
    real.mkdir()
    assert not synthetic_corpus(params_from_dict({"prepare": {"corpus": "crema_d", "root": str(real)}}))
    both = {"a": {"corpus": "crema_d", "root": str(real)}, "b": {"corpus": "csv", "root": str(table)}}
    assert synthetic_corpus(params_from_dict({"prepare": {"corpora": both}}))
    assert not synthetic_corpus(params_from_dict({"prepare": {"corpora": {"a": both["a"]}}}))


def test_published_iemocap_block_for_iemocap_only() -> None:
    assert reads_iemocap(params_from_dict({}))  # the default corpus
    assert not reads_iemocap(params_from_dict({"prepare": {"corpus": "meld", "root": "x"}}))
    corpora = {"c": {"corpus": "crema_d", "root": "x"}, "r": {"corpus": "ravdess", "root": "y"}}
    assert not reads_iemocap(params_from_dict({"prepare": {"corpora": corpora}}))
    corpora["i"] = {"corpus": "iemocap", "root": "z"}
    assert reads_iemocap(params_from_dict({"prepare": {"corpora": corpora}}))


def test_corpus_line_names_every_root_of_prepare_corpora() -> None:
    from mger.models.report import _corpus_line

    corpora = {"c": {"corpus": "crema_d", "root": "data/c"}, "r": {"corpus": "ravdess", "root": "data/r"}}
    line = _corpus_line(params_from_dict({"prepare": {"corpora": corpora}}), {"n_utterances": 9, "classes": ["a"]})
    assert line.startswith("Corpus: `data/c`, `data/r`, 9 utterances, classes a.")
