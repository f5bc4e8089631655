"""Word boundaries against the corpus's own forced alignment (``mger align-eval-corpus``).

IEMOCAP ships a Sphinx word segmentation for most sentences,
``SessionN/sentences/ForcedAlignment/<dialog>/<utt>.wdseg`` (10 ms frames; format and
non-speech labels: :mod:`mger.alignment.sphinx_segfiles`).  This compares the segment
table's words with those files the way ``mger align-eval`` compares them with the synthetic
ground truth (:mod:`mger.alignment.evaluate`: same normalisation, difflib matching, signed
errors aligned minus ``.wdseg``, same figures), by speaker and by emotion (the manifest's
``label``).  The ``.wdseg`` is a reference, not the truth: it is itself a forced alignment,
so a figure here is agreement between two aligners (with the ``iemocap`` backend the table
*is* these files).

Per utterance of the manifest: no ``.wdseg`` (or a wav outside IEMOCAP's layout) counts as
missing; a malformed one is a one-line problem naming the file, recorded in the report; one
whose utterance the table lacks or holds as a ``uniform`` fallback counts as not aligned.  A
corpus without any ``.wdseg`` gets a report saying so with zero counts: the stage never fails
for want of files.
"""

from __future__ import annotations

from pathlib import Path

from mger.alignment.evaluate import WordError, by_utterance_key, matched_errors, summarize, worst_words
from mger.alignment.iemocap_backend import segfile_path
from mger.alignment.sphinx_segfiles import parse_segfile, segfile_problem
from mger.alignment.table import SegmentTable
from mger.core.manifest import Utterance, read_manifest
from mger.core.reporting import ProblemLog, write_json

REFERENCE = "SessionN/sentences/ForcedAlignment/<dialog>/<utt>.wdseg"
N_MISSING_LISTED = 50


def read_wdseg_words(path: Path) -> tuple[list[dict], str | None]:
    """(speech words of a ``.wdseg`` as truth entries {word, start, end} in seconds, problem):
    the problem is one line (:func:`mger.alignment.sphinx_segfiles.segfile_problem`, or no
    speech word at all) and the words are then empty."""
    text = path.read_text(encoding="utf-8", errors="replace")
    problem = segfile_problem(text)
    if problem:
        return [], problem
    words = [{"word": s.label, "start": s.start, "end": s.end} for s in parse_segfile(text)]
    return words, None if words else "no speech words (only <s>, <sil>, </s> or fillers)"


def _reference_words(utts: list[Utterance], log: ProblemLog) -> tuple[dict[str, list[dict]], list[str]]:
    """(utt id → ``.wdseg`` words of the readable files, ids without a ``.wdseg``); malformed → ``log``."""
    words: dict[str, list[dict]] = {}
    missing = []
    for u in utts:
        path = segfile_path(u.wav, ".wdseg")
        if path is None or not path.is_file():
            missing.append(u.utt_id)
            continue
        entries, problem = read_wdseg_words(path)
        if problem:
            log.add(u.utt_id, path, f"malformed .wdseg: {problem}")
        else:
            words[u.utt_id] = entries
    return words, missing


def compare_with_wdseg(utts: list[Utterance], table: SegmentTable, log: ProblemLog) -> dict:
    """The report's figures: counts, overall and per speaker / emotion errors, worst words."""
    reference, missing = _reference_words(utts, log)
    method = dict(zip(table.utt_ids, table.method))
    common = [u for u in utts if u.utt_id in reference and method.get(u.utt_id) == "aligned"]
    errors: list[WordError] = []
    n_aligned_words = n_aligned_matched = 0
    for u in common:
        words = table.segments("word", u.utt_id)
        errs, n_matched = matched_errors(u.utt_id, reference[u.utt_id], words)
        errors += errs
        n_aligned_words += len(words)
        n_aligned_matched += n_matched
    on = [e.onset for e in errors if e.onset is not None]
    metrics = summarize(on, [e.offset for e in errors if e.offset is not None], len(common), table.backend)
    speakers = {u.utt_id: u.speaker for u in utts}
    return (
        {
            "reference": REFERENCE,
            "manifest_utterances": len(utts),
            "wdseg_found": len(utts) - len(missing),
            "wdseg_missing": len(missing),
            "wdseg_malformed": len(log.problems),
            "not_aligned": len(reference) - len(common),
            "wdseg_words": len(errors),
            "wdseg_words_unmatched": len(errors) - len(on),
            "aligned_words": n_aligned_words,
            "aligned_words_unmatched": n_aligned_words - n_aligned_matched,
        }
        | metrics
        | {
            "by_speaker": by_utterance_key(errors, speakers),
            "by_emotion": by_utterance_key(errors, {u.utt_id: u.label for u in utts}),
            "worst": worst_words(errors, speakers),
            "missing_examples": missing[:N_MISSING_LISTED],
        }
    )


def _note(m: dict) -> str | None:
    if not m["wdseg_found"]:
        return f"no ForcedAlignment .wdseg file for any of the {m['manifest_utterances']} manifest utterances"
    if m["backend"] == "iemocap":
        return "the iemocap backend read these same .wdseg files: the figures measure only their round trip"
    return None


def run_align_eval_corpus(manifest_path: str | Path, table_path: str | Path, report_path: str | Path) -> dict:
    """Compare the segment table's words with the corpus's ``.wdseg`` files; write and return the report."""
    log = ProblemLog()
    m = compare_with_wdseg(read_manifest(manifest_path), SegmentTable.read(table_path), log)
    m |= {"note": _note(m), "problems": log.as_json()}
    write_json(report_path, m)
    head = (
        f"align-eval-corpus ({m['backend']} vs .wdseg): {m['manifest_utterances']} utterances, "
        f"{m['wdseg_found']} .wdseg found ({m['wdseg_missing']} missing, {m['wdseg_malformed']} malformed), "
        f"{m['n_utterances']} compared"
    )
    if not m["n_words"]:
        print(f"{head}; no word compared{': ' + m['note'] if m['note'] else ''} → {report_path}")
        return m
    print(
        f"{head}; {m['n_words']} words ({m['wdseg_words_unmatched']} .wdseg and {m['aligned_words_unmatched']} "
        f"aligned words unmatched): onset median {m['onset_median_ms']} ms, within 50 ms "
        f"{m['onset_within_50ms']:.1%}, signed median {m['onset_signed_median_ms']} ms, mean "
        f"{m['onset_signed_mean_ms']} ms; offset within 50 ms {m['offset_within_50ms']:.1%}, signed median "
        f"{m['offset_signed_median_ms']} ms → {report_path}"
    )
    if m["note"]:
        print(f"align-eval-corpus: note: {m['note']}")
    return m
