"""Word and character error rates of ASR transcripts against the gold text, and their report lines.

Both sides are normalised alike, as the aligner reads a transcript
(:func:`mger.alignment.normalize.normalize_transcript`: markers dropped, lower case, numbers
spelled out, punctuation gone), then scored by ``jiwer``.  A group's WER is the sum of its
utterances' word errors (substitutions + deletions + insertions) over the sum of their reference
words (likewise CER over characters); utterances without gold words are counted, not scored.
The overall WER carries a 95% bootstrap interval over utterances (seeded; our reading: the
utterance is the unit ASR errors come in).

The results report shows the stage's WER table (:func:`transcript_lines`) and the gold-vs-ASR
pairs: an experiment with ``text_source: asr`` against the same model on the gold text, with
:func:`mger.models.stats.paired_test`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mger.alignment.normalize import normalize_transcript
from mger.models.stats import format_p, paired_interval, paired_test

N_BOOT = 2000
GROUPS = ("corpus", "speaker", "emotion", "group", "partition")  # the manifest fields WER is broken down by


def words(text: str) -> str:
    """``text`` as scored: normalised words joined by single spaces."""
    return " ".join(normalize_transcript(text))


def utterance_errors(ref: str, hyp: str) -> dict[str, int]:
    """Word and character edit counts of one utterance (``ref``, ``hyp`` as written)."""
    import jiwer

    r, h = words(ref), words(hyp)
    if not r:
        return {"word_errors": 0, "ref_words": 0, "char_errors": 0, "ref_chars": 0}
    w = jiwer.process_words(r, h)
    c = jiwer.process_characters(r, h)
    return {
        "word_errors": w.substitutions + w.deletions + w.insertions,
        "ref_words": w.substitutions + w.deletions + w.hits,
        "char_errors": c.substitutions + c.deletions + c.insertions,
        "ref_chars": c.substitutions + c.deletions + c.hits,
    }


def _rates(counts: Sequence[Mapping[str, int]]) -> dict:
    n_words = sum(c["ref_words"] for c in counts)
    n_chars = sum(c["ref_chars"] for c in counts)
    return {
        "n_utterances": len(counts),
        "n_ref_words": n_words,
        "wer": sum(c["word_errors"] for c in counts) / n_words if n_words else None,
        "cer": sum(c["char_errors"] for c in counts) / n_chars if n_chars else None,
    }


def bootstrap_wer(counts: Sequence[Mapping[str, int]], n_boot: int = N_BOOT, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the WER, utterances resampled with replacement."""
    errs = np.array([c["word_errors"] for c in counts], dtype=float)
    refs = np.array([c["ref_words"] for c in counts], dtype=float)
    if not len(refs) or refs.sum() == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, len(refs), (n_boot, len(refs)))
    ratio = errs[idx].sum(1) / np.maximum(refs[idx].sum(1), 1)
    return [float(np.quantile(ratio, 0.025)), float(np.quantile(ratio, 0.975))]


def wer_table(rows: Sequence[Mapping[str, str]]) -> dict:
    """WER/CER overall and per corpus, speaker, emotion, group and partition of ``rows`` (each:
    ``ref``, ``hyp`` and those fields; ``corpus`` and ``partition`` are left out where the rows have
    fewer than two corpora, or no partition)."""
    counts = [utterance_errors(r["ref"], r["hyp"]) for r in rows]
    out = {"overall": _rates(counts) | {"wer_ci95": bootstrap_wer(counts)}}
    out["overall"]["no_gold_words"] = sum(c["ref_words"] == 0 for c in counts)
    for group in GROUPS:
        keys = sorted({str(r.get(group, "")) for r in rows})
        if (group == "partition" and keys == [""]) or (group == "corpus" and len(keys) < 2):
            continue  # a corpus without its own partitions (IEMOCAP); one corpus: its overall row
        out[f"by_{group}"] = {k: _rates([c for c, r in zip(counts, rows) if str(r.get(group, "")) == k]) for k in keys}
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def wer_lines(report: Mapping, source: str) -> list[str]:
    """The results report's transcript section from ``reports/transcribe.json``; ``source``: the
    text the rows read (``transcribe.source``)."""
    wer = report.get("wer")
    model = f"{report['backend']} ({report['model']}, {report['model_id']})"
    head = f"ASR transcripts: {model}; the rows read the {source} text"
    if not wer:
        return ["## Transcripts", "", f"{head}. No gold text to score against.", ""]
    o = wer["overall"]
    ci = o.get("wer_ci95")
    lines = [
        "## Transcripts (ASR vs gold text)",
        "",
        f"{head}. WER {_pct(o['wer'])}%"
        + (f" (95% CI [{_pct(ci[0])}, {_pct(ci[1])}], bootstrap over utterances)" if ci else "")
        + f", CER {_pct(o['cer'])}% over {o['n_utterances']} utterances ({o['n_ref_words']} gold words; "
        f"{report.get('n_empty', 0)} empty transcripts). Normalised as the aligner reads text (models/wer.py).",
        "",
        "| group | value | utterances | WER % | CER % |",
        "|---|---|---|---|---|",
    ]
    for group in GROUPS:
        for key, r in wer.get(f"by_{group}", {}).items():
            lines.append(f"| {group} | {key} | {r['n_utterances']} | {_pct(r['wer'])} | {_pct(r['cer'])} |")
    return lines + [""]


def gold_asr_pairs(rows: Sequence[Mapping]) -> list[tuple[Mapping, Mapping]]:
    """(gold row, asr row) metrics pairs: two experiments of the same spec but the transcript
    their text store holds (``text_source``: the metrics' text read); where several rows read one
    transcript, the one naming it (``text_source: gold``/``asr``, its own store) is paired."""

    def spec(m: Mapping) -> dict:
        s = dict(m.get("provenance", {}).get("spec", {}))
        s.pop("text_source", None)
        return s

    def chosen(source: str) -> dict:
        """spec → the row reading ``source``'s text, a row naming it explicitly first."""
        out: dict = {}
        for m in sorted(rows, key=lambda m: "text_store" not in m):
            if m.get("text_source", "gold") == source:
                out.setdefault(json.dumps(spec(m), sort_keys=True), m)
        return out

    gold, asr = chosen("gold"), chosen("asr")
    return [(gold[key], a) for key, a in asr.items() if key in gold]


def pair_lines(pairs: Sequence[tuple[str, str, dict | str]]) -> list[str]:
    """The gold-vs-ASR table: (gold experiment, ASR experiment, paired test or why none)."""
    if not pairs:
        return []
    lines = [
        "### Gold vs ASR text (same model)",
        "",
        "| gold | ASR | Δ UA (ASR − gold) | 95% CI | p (UA) | Δ WA | p (WA) |",
        "|---|---|---|---|---|---|---|",
    ]
    for gold, asr, t in pairs:
        if isinstance(t, str):
            lines.append(f"| {gold} | {asr} | not paired: {t} | | | | |")
        else:
            lines.append(
                f"| {gold} | {asr} | {100 * t['ua']['delta']:+.2f} | "
                f"[{100 * t['ua']['ci'][0]:+.2f}, {100 * t['ua']['ci'][1]:+.2f}] | {format_p(t['ua']['p'])} | "
                f"{100 * t['wa']['delta']:+.2f} | {format_p(t['wa']['p'])} |"
            )
    return lines + [
        "",
        "Paired approximate-randomisation test over the same test utterances, folds and seeds, and a "
        "95% percentile bootstrap of the difference (utterances resampled within folds, the same resample "
        "for both rows and every seed; conditional on the trained models; models/stats.py): the "
        "difference is the cost of ASR text for this model.",
        "",
    ]


def transcript_lines(report_path: str | Path, source: str, experiments: Sequence[tuple[Mapping, object]]) -> list[str]:
    """The results report's transcript section: the stage's WER table (when ``report_path``
    exists; ``source``: ``transcribe.source``) and the gold-vs-ASR pairs of ``experiments``
    ((metrics, predictions) each)."""
    path = Path(report_path)
    lines = wer_lines(json.loads(path.read_text(encoding="utf-8")), source) if path.is_file() else []
    by_name = {m["experiment"]: p for m, p in experiments}
    tests = []
    for gold, asr in gold_asr_pairs([m for m, _ in experiments]):
        try:
            a, g = by_name[asr["experiment"]], by_name[gold["experiment"]]
            t: dict | str = paired_test(a, g)
            for metric, ci in paired_interval(a, g).items():
                t[metric]["ci"] = ci
        except ValueError as err:
            t = str(err)
        tests.append((gold["experiment"], asr["experiment"], t))
    return lines + pair_lines(tests)
