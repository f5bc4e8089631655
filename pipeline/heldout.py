"""A held-out alignment evaluation: voices, rates and sentence styles the demo corpus never uses.

The stage entry point: the sets themselves (held-out, development, demo-style; their voices,
rates, sentences and layout) are built by :mod:`mger.corpus.heldout`; this aligns and scores them.
The held-out set is for *checking only*, never for tuning (docs/alignment.md).

``python -m mger.pipeline.heldout`` builds the set (if missing), aligns it with the params'
``align`` settings into ``<out>/align`` and writes ``reports/align_eval_heldout.json``;
``--with-demo DIR`` also evaluates a demo-style corpus (:data:`mger.corpus.heldout.DEMO_STYLE`)
and prints the signed bias of both sets pooled, the figure alignment changes are judged on.
``--dev`` builds and evaluates the *development* set instead, on which alignment changes are
diagnosed; the held-out set then only checks them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mger.corpus.heldout import build_demo_style, build_heldout, set_kind
from mger.pipeline.cli import one_line_errors, positive_int


def evaluate_heldout(out: str | Path, report: str | Path, params: str | None = None, n_jobs: int | None = None) -> dict:
    """Align a set (``<out>/manifest.jsonl``) with the params' align settings and evaluate it against its truth."""
    from mger.alignment.stage import run_align, run_align_eval
    from mger.core.config import read_params, with_overrides

    out = Path(out)
    overrides = {
        "align.out": str(out / "align"),
        "align.report": str(out / "alignment.json"),
        "align.n_jobs": n_jobs or None,
    }
    cfg = with_overrides(read_params(params), overrides).align
    run_align(out / "manifest.jsonl", cfg)
    return run_align_eval(out / "truth" / "words.jsonl", out / "align" / "segments.h5", report)


def pooled_bias(folders: list[Path]) -> tuple[int, float, float]:
    """(words, signed onset median ms, signed offset median ms) over the aligned sets pooled."""
    from mger.alignment.evaluate import read_truth, word_errors
    from mger.alignment.table import SegmentTable

    onset, offset = [], []
    for folder in folders:
        table, truth = SegmentTable.read(folder / "align" / "segments.h5"), read_truth(folder / "truth" / "words.jsonl")
        for uid, method in zip(table.utt_ids, table.method):
            if method == "aligned" and uid in truth:
                errs = word_errors(uid, truth[uid], table.segments("word", uid))
                onset += [e.onset for e in errs if e.onset is not None]
                offset += [e.offset for e in errs if e.offset is not None]
    return len(onset), float(np.median(onset)) * 1000, float(np.median(offset)) * 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mger.pipeline.heldout", description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder of the set (default: data/heldout; with --dev, data/dev)")
    parser.add_argument(
        "--report",
        help="metrics JSON (default: reports/align_eval_heldout.json; with --dev, reports/align_eval_dev.json)",
    )
    parser.add_argument(
        "--params",
        help="params file whose align section is used (default: params.yaml of the "
        "working folder, or the built-in defaults where there is none)",
    )
    parser.add_argument("--n", type=positive_int, help="number of utterances (default: 3 per sentence, >= variants)")
    parser.add_argument("--n-jobs", type=positive_int, help="alignment worker processes (default: align.n_jobs)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the set(s) even if they exist")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="the development set instead (own sentences, seed and voice/rate pairing), for "
        "diagnosing alignment changes; the held-out set only checks them",
    )
    parser.add_argument(
        "--with-demo",
        metavar="DIR",
        help="also build (if missing) and evaluate the demo-style "
        "corpus in DIR (report <DIR>/align_eval.json) and print the bias of both sets pooled",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def run(args: argparse.Namespace) -> None:
    from mger.core.config import read_params

    read_params(args.params)  # a bad params file fails before anything is built
    kind = "dev" if args.dev else "heldout"
    out = Path(args.out or ("data/dev" if args.dev else "data/heldout"))
    report = args.report or f"reports/align_eval_{kind}.json"
    found = set_kind(out)
    if found not in (None, kind) and not args.rebuild:
        raise ValueError(
            f"{out} holds the {'development' if found == 'dev' else 'held-out'} set, not the "
            f"{'development' if args.dev else 'held-out'} one: pass another --out, or --rebuild to replace it"
        )
    if args.rebuild or found is None:
        build_heldout(out, args.n, dev=args.dev)
    evaluate_heldout(out, report, args.params, args.n_jobs)
    if args.with_demo:
        demo = Path(args.with_demo)
        if args.rebuild or not (demo / "truth" / "words.jsonl").exists():
            build_demo_style(demo)
        evaluate_heldout(demo, demo / "align_eval.json", args.params, args.n_jobs)
        n, on, off = pooled_bias([demo, out])
        print(
            f"pooled (demo-style + {'dev' if args.dev else 'held-out'}, {n} words): signed onset median "
            f"{on:.2f} ms, signed offset median {off:.2f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    """The command line; every failure is one line naming what went wrong (``--debug``: the traceback)."""
    args = build_parser().parse_args(argv)
    return one_line_errors("heldout", args.debug, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
