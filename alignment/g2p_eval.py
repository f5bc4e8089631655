"""How good are eSpeak-derived (out-of-vocabulary) pronunciations? Measured against CMUdict.

Every word of the CMUdict that pocketsphinx ships is given to eSpeak NG (en-us, each word
alone) and mapped to ARPAbet by :mod:`mger.alignment.g2p`.  The phone error rate is the summed
Levenshtein distance to the *closest* CMUdict variant of the word (stress digits removed)
over the summed length of those variants: the same measure as a G2P paper's PER.

    python -m mger.alignment.g2p_eval          # prints words, coverage, PER, word accuracy
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from mger.alignment.g2p import espeak_to_arpabet_checked


def cmudict_path() -> Path:
    """pocketsphinx's bundled CMUdict (the dictionary the aligner uses)."""
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


def read_cmudict(path: str | Path) -> dict[str, list[tuple[str, ...]]]:
    """word → its pronunciations (variants ``word(2)`` folded in), stress digits removed."""
    out: dict[str, list[tuple[str, ...]]] = {}
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if not parts or parts[0].startswith(";;;"):
                continue
            word = parts[0].split("(")[0]
            out.setdefault(word, []).append(tuple(p.rstrip("012") for p in parts[1:] if not p.startswith("#")))
    return out


def edit_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance between two phone sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@dataclass
class G2pReport:
    """The figures :func:`evaluate_cmudict` prints (rates as fractions 0-1)."""

    words: int
    with_pronunciation: int
    unknown_mnemonics: dict[str, int]
    phone_error_rate: float
    word_accuracy: float
    empty: list[str]


def evaluate_cmudict(path: str | Path | None = None, limit: int | None = None) -> G2pReport:
    """Run eSpeak over every CMUdict word (or the first ``limit``) and compare."""
    from mger.corpus.espeak import engine

    cmu = read_cmudict(path or cmudict_path())
    words = list(cmu)[:limit] if limit else list(cmu)
    unknown: dict[str, int] = {}
    errors = ref_len = exact = 0
    empty: list[str] = []
    for word, mnemonics in zip(words, engine().phonemes_many(words)):
        phones, dropped = espeak_to_arpabet_checked(mnemonics)
        for m in dropped:
            unknown[m] = unknown.get(m, 0) + 1
        if not phones:
            empty.append(word)
        hyp = tuple(phones)
        dist, ref = min((edit_distance(hyp, r), r) for r in cmu[word])
        errors += dist
        ref_len += len(ref)
        exact += dist == 0
    return G2pReport(
        len(words),
        len(words) - len(empty),
        unknown,
        round(errors / max(1, ref_len), 4),
        round(exact / max(1, len(words)), 4),
        empty,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dict", help="CMUdict file (default: pocketsphinx's)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    report = evaluate_cmudict(args.dict)
    print(
        f"g2p: {report.words} CMUdict words, {report.with_pronunciation} with an eSpeak pronunciation, "
        f"{sum(report.unknown_mnemonics.values())} unknown mnemonics dropped; phone error rate "
        f"{report.phone_error_rate:.1%}, words exactly right {report.word_accuracy:.1%}"
    )
    if report.empty:
        print(f"g2p: no phones for: {' '.join(report.empty[:20])}")
    if args.json:
        from mger.core.reporting import write_json

        write_json(args.json, asdict(report))


if __name__ == "__main__":
    main()
