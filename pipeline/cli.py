"""``mger``: the command line. Every DVC stage is one subcommand reading params.yaml.

Options given on the command line override the matching params.yaml values (a new, validated
params object: :func:`mger.core.config.with_overrides`).  Without ``--params`` the working
folder's params.yaml is read, or the built-in defaults where there is none; a ``--params FILE``
that does not exist is an error.

One error boundary (:func:`main`): any failure of a stage is printed as one line
``mger <stage>: error: <file or key>: <what is wrong; what to do>`` and exits with code 1;
``--debug`` (before or after the command, or ``MGER_DEBUG=1``) prints the traceback first.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

from mger import __version__
from mger.core.config import DEFAULT_PARAMS, ConfigError, Params, SplitConfig, read_params, with_overrides
from mger.core.config_corpus import SYNTH_LAYOUTS
from mger.core.processes import dispatch
from mger.core.reporting import StageError, write_errno

Handler = Callable[[argparse.Namespace, Params], None]


def positive_int(text: str) -> int:
    """An argparse type: an integer of 1 or more."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {n}")
    return n


def _cmd_synth(args: argparse.Namespace, params: Params) -> None:
    from mger.corpus.layouts import write_layout

    overrides = {"synth.seed": args.seed, "synth.sessions": args.sessions, "synth.dialogs_per_session": args.dialogs}
    overrides |= {"synth.turns_per_dialog": args.turns, "synth.layout": args.layout}
    cfg = with_overrides(params, overrides).synth  # checked as params are
    write_layout(cfg, out=args.out, force=args.force)


def _cmd_prepare(args: argparse.Namespace, params: Params) -> None:
    from mger.corpus.readers import Source, prepare_corpora, prepare_corpus

    cfg = params.prepare
    if cfg.corpora and not (args.corpus or args.root):
        sources = {name: Source(c.corpus, c.root, c.class_map) for name, c in cfg.corpora.items()}
        prepare_corpora(sources, manifest=args.out or cfg.manifest, report=args.report or cfg.report)
        return
    prepare_corpus(
        args.corpus or cfg.corpus,
        root=args.root or cfg.root,
        manifest=args.out or cfg.manifest,
        report=args.report or cfg.report,
        class_map=args.class_map or cfg.class_map,
    )


def _text_params(params: Params) -> Params:
    """The params every text-reading stage runs with (:func:`mger.core.transcripts.text_params`)."""
    from mger.core.transcripts import text_params

    return text_params(params)


def _cmd_transcribe(args: argparse.Namespace, params: Params) -> None:
    from mger.pipeline.transcribe import run_transcribe

    params = with_overrides(params, {"transcribe.backend": args.backend or None, "transcribe.n_jobs": args.n_jobs})
    run_transcribe(args.manifest or params.prepare.manifest, params.transcribe)


def _cmd_align(args: argparse.Namespace, params: Params) -> None:
    from mger.alignment.stage import run_align

    params = _text_params(params)
    params = with_overrides(
        params,
        {
            "align.backend": args.backend or None,
            "align.n_jobs": args.n_jobs,
            "align.on_failure": args.on_failure or None,
        },
    )
    run_align(args.manifest or params.prepare.manifest, params.align)


def _cmd_align_eval(args: argparse.Namespace, params: Params) -> None:
    from mger.alignment.stage import run_align_eval

    run_align_eval(
        args.truth or params.align_eval.truth,
        args.segments or f"{params.align.out}/segments.h5",
        args.out or params.align_eval.report,
    )


def _cmd_align_eval_corpus(args: argparse.Namespace, params: Params) -> None:
    from mger.alignment.corpus_eval import run_align_eval_corpus

    run_align_eval_corpus(
        args.manifest or params.prepare.manifest,
        args.segments or f"{params.align.out}/segments.h5",
        args.out or params.align_eval_corpus.report,
    )


def _cmd_demo_model(args: argparse.Namespace, params: Params) -> None:
    from mger.features.demo_model import make_demo_model

    make_demo_model(params.demo_model)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def _parse_fold(text: str) -> int:
    """``--fold k``: a fold's number (IEMOCAP: its test session's), so 1 or more (``fold--1`` is no folder)."""
    try:
        fold = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fold {text!r}: expected a fold number, e.g. 1") from None
    if fold < 1:
        raise argparse.ArgumentTypeError(f"--fold {text!r}: a fold is numbered 1 or more (IEMOCAP: its test session)")
    return fold


def _resolved_device(params: Params, overrides: dict | None = None) -> Params:
    """``features.device: auto`` decided once for the whole stage (every shard, fold and worker
    process then gets the same concrete device), with the stage's other ``overrides``."""
    from mger.features.encoders import resolve_device

    return with_overrides(params, {"features.device": str(resolve_device(params.features.device))} | (overrides or {}))


def _cmd_extract(args: argparse.Namespace, params: Params) -> None:
    from mger.features.extract import extract, finetuned_setup
    from mger.features.store_paths import KINDS, stage_config, store_file

    if args.audio:
        _extract_audio(args, params)
        return
    prepared = params.prepare.manifest  # the named transcripts' text stores read it (text_source)
    params = _resolved_device(_text_params(params), {"features.n_jobs": args.n_jobs})
    setups = [(params.features, None, [*KINDS, *params.features.extra_speech])]
    if args.fold is not None:
        variants = [args.variant] if args.variant else params.finetune.variant_names
        if args.checkpoint and len(variants) > 1:
            raise ValueError("--checkpoint with several fine-tuning variants: name one with --variant")
        setups = [
            finetuned_setup(params.features, params.finetune.variant(v), args.fold, args.checkpoint) for v in variants
        ]
    elif args.checkpoint or args.variant:
        raise ValueError("--checkpoint and --variant need --fold: fine-tuned encoders belong to one fold")
    for cfg, fold, names in setups:  # the frozen encoders, or fold k's fine-tuned ones of each variant
        if args.kind != "all" and args.kind not in names:
            raise ValueError(f"--kind {args.kind}: not a store of these params (stores: {', '.join(names)})")
        for name in names if args.kind == "all" else [args.kind]:
            aligned = stage_config(cfg, name, audio=False)
            if aligned is None:
                print(f"extract: store {name} has only alignment-free levels: `mger extract --audio` builds it")
                continue
            extract(
                "text" if name == "text" else "speech",
                aligned,
                args.manifest or params.prepare.manifest,
                f"{params.align.out}/segments.h5",
                shard=args.shard,
                no_rebuild=args.no_rebuild,
                store=store_file(cfg.out, name),
                fold=fold,
            )
    if args.fold is None and args.kind in ("all", "text"):
        _extract_source_texts(args, params, prepared)


def _extract_audio(args: argparse.Namespace, params: Params) -> None:
    """``mger extract --audio``: the alignment-free file of every speech store listing such levels
    (functionals) under ``features.audio_out``, from the prepared manifest's ids and wavs alone,
    so neither the transcript source nor the alignment re-runs it (DVC stage ``extract_audio``)."""
    from mger.features.extract import extract
    from mger.features.store_paths import stage_config, store_file

    if args.fold is not None or args.checkpoint or args.variant:
        raise ValueError("--audio: the frozen encoders' alignment-free levels; fine-tuned stores have none (no --fold)")
    params = _resolved_device(params, {"features.n_jobs": args.n_jobs})
    cfg = params.features
    names = [name for name in cfg.speech_stores if stage_config(cfg, name, audio=True)]
    if args.kind != "all" and args.kind not in names:
        have = ", ".join(names) or "none"
        raise ValueError(f"--kind {args.kind}: no alignment-free level in that store (stores with one: {have})")
    Path(cfg.audio_out).mkdir(parents=True, exist_ok=True)  # the stage's output, also when empty
    if not names:
        print(f"extract --audio: no store lists an alignment-free level (functionals); {cfg.audio_out} stays empty")
    for name in names if args.kind == "all" else [args.kind]:
        extract(
            "speech",
            stage_config(cfg, name, audio=True),
            args.manifest or params.prepare.manifest,
            None,
            shard=args.shard,
            no_rebuild=args.no_rebuild,
            store=store_file(cfg.audio_out, name),
        )


def _extract_source_texts(args: argparse.Namespace, params: Params, prepared: str) -> None:
    """The text store of each transcript an experiment names (``text_source: gold`` or ``asr``:
    ``text-gold.h5``, ``text-asr.h5``, whatever ``transcribe.source`` the run reads), so the
    gold-vs-ASR pair exists under either source; none when no experiment names one."""
    from mger.core.transcripts import source_text_store, text_manifest
    from mger.features.extract import extract

    named = sorted({s.text_source for s in params.train.all_experiments.values() if s.text_source})
    for source in named:
        extract(
            "text",
            params.features,
            text_manifest(args.manifest or prepared, source, params.transcribe.manifest),
            f"{params.align.out}/segments.h5",
            shard=args.shard,
            no_rebuild=args.no_rebuild,
            store=source_text_store(params.features.out, source),
        )


def _check_split(manifest: str, split: SplitConfig, folds: Sequence[int] = (), what: str = "") -> None:
    """The manifest splits under ``split`` (split.protocol's corpus, groups, partitions), and
    every fold of ``what`` (``finetune.folds``) exists, or one line saying why not."""
    from mger.core.manifest import read_manifest
    from mger.core.splits import SplitError, all_folds, check_folds

    utts = read_manifest(manifest)
    try:
        all_folds(utts, split)
        if folds:
            check_folds(utts, split, folds, what)
    except SplitError as err:
        raise StageError(f"{manifest}: {err}") from None


def _cmd_finetune(args: argparse.Namespace, params: Params) -> None:
    from mger.models.finetune_stage import run_finetune

    params = _text_params(params)
    folds = args.fold or params.finetune.folds
    _check_split(
        args.manifest or params.prepare.manifest, params.split, folds, "--fold" if args.fold else "finetune.folds"
    )
    params = _resolved_device(params)
    jobs = [
        (
            fold,
            params.finetune,  # every variant of finetune.variants, one after another
            params.features,
            args.manifest or params.prepare.manifest,
            f"{params.align.out}/segments.h5",
            params.split,
            params.train.seeds,
        )
        for fold in folds
    ]
    dispatch(
        run_finetune,
        jobs,
        args.n_jobs or 1,
        params.train_dispatch.backend if args.n_jobs else "joblib",
        params.train_dispatch.scheduler,
        what="folds",
    )


def _cmd_cache(args: argparse.Namespace, params: Params) -> None:
    from mger.features.cache_cli import cache_compare, cache_ls, cache_verify, cache_verify_all

    params = _text_params(params)
    if args.action == "ls":
        for folder in [args.path] if args.path else [params.features.out, params.features.audio_out]:
            cache_ls(folder)
    elif args.action == "compare":
        if not (args.path and args.other):
            raise ValueError("mger cache compare needs two stores: PATH OTHER")
        cache_compare(args.path, args.other)
    elif args.path is None:
        if not cache_verify_all(params, args.manifest, args.segments):
            raise SystemExit(1)
    else:
        segments = args.segments or f"{params.align.out}/segments.h5"
        from mger.core.transcripts import manifest_of_store

        built_from = args.manifest or manifest_of_store(args.path, params.prepare.manifest, params.transcribe.manifest)
        if not cache_verify(args.path, args.manifest, segments, (built_from, segments)):
            raise SystemExit(1)


def _cmd_train(args: argparse.Namespace, params: Params) -> None:
    from mger.models.experiment import expected_cost, run_experiment
    from mger.models.registry import check_model_kinds

    params = _text_params(params)
    experiments = params.train.all_experiments
    names = list(experiments) if args.experiment == "all" else [args.experiment]
    if not names:
        raise ConfigError(
            f"{args.params or 'params'}: train.experiments and train.finetuned_experiments are empty; "
            "add an experiment (see the README) or pass --experiment NAME"
        )
    _check_split(params.prepare.manifest, params.split)
    unknown = [name for name in names if name not in experiments]
    if unknown:
        raise ValueError(
            f"train.experiments and train.finetuned_experiments have no {unknown[0]!r} "
            f"(known: {', '.join(experiments)})"
        )
    check_model_kinds({name: experiments[name] for name in names})
    names.sort(key=lambda name: -expected_cost(experiments[name], params.train))  # longest first
    jobs = [
        (
            name,
            experiments[name],
            params.train,
            params.features,
            params.prepare.manifest,
            params.finetune,
            params.split,
            f"{params.align.out}/segments.h5",
            params.transcribe.manifest,  # experiments with text_source asr
        )
        for name in names
    ]
    n_jobs = with_overrides(params, {"train.n_jobs": args.n_jobs}).train.n_jobs
    dispatch(
        run_experiment,
        jobs,
        n_jobs,
        params.train_dispatch.backend if n_jobs > 1 else "joblib",
        params.train_dispatch.scheduler,
        what="experiments",
    )


def _cmd_report(args: argparse.Namespace, params: Params) -> None:
    from mger.models.report import write_report

    only = [n.strip() for n in args.experiment.split(",") if n.strip()] if args.experiment else None
    write_report(_text_params(params), only)


def _cmd_summary(args: argparse.Namespace, params: Params) -> None:
    from mger.pipeline.summary import print_summary

    print_summary(params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mger",
        description="Multi-granularity speech+text emotion recognition pipeline (stages of dvc.yaml).",
    )
    parser.add_argument("--version", action="version", version=f"mger {__version__}")
    debug_help = "on an error, print the traceback (also MGER_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=f"{debug_help}; before or after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--params",
            help=f"params file (default: {DEFAULT_PARAMS} of the working folder, or the "
            "built-in defaults where there is none)",
        )
        # SUPPRESS: not given after the command, it leaves a `mger --debug COMMAND` as it is
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        p.set_defaults(handler=handler)
        return p

    p = add("synth", _cmd_synth, "Write the synthetic corpus spoken by eSpeak NG, in a corpus's layout.")
    p.add_argument("--out", help="corpus folder to (re)create (default: synth.out)")
    p.add_argument("--layout", choices=SYNTH_LAYOUTS, help="the corpus whose layout to write (synth.layout)")
    p.add_argument("--seed", type=int, help="random seed; the same seed gives identical files (synth.seed)")
    p.add_argument("--sessions", type=int, help="number of sessions, 1-9 (synth.sessions)")
    p.add_argument("--dialogs", type=int, help="dialogs per session (synth.dialogs_per_session)")
    p.add_argument("--turns", type=int, help="turns per dialog (synth.turns_per_dialog)")
    p.add_argument(
        "--force", action="store_true", help="replace --out even if it is a non-empty folder that synth did not write"
    )

    p = add(
        "prepare", _cmd_prepare, "Read a corpus tree (or several: prepare.corpora) and write the utterance manifest."
    )
    p.add_argument("--corpus", help="corpus reader: iemocap, msp_podcast, meld, crema_d, ravdess, csv (prepare.corpus)")
    p.add_argument("--root", help="the corpus folder, e.g. IEMOCAP_full_release, real or synthetic (prepare.root)")
    p.add_argument("--out", help="manifest JSONL to write (prepare.manifest)")
    p.add_argument("--report", help="data-quality JSON report (prepare.report)")
    p.add_argument("--class-map", help="a class map of the corpus, e.g. 4class (prepare.class_map)")
    p = add("transcribe", _cmd_transcribe, "Transcribe every manifest utterance (ASR); score it against the gold text.")
    p.add_argument("--manifest", help="manifest to transcribe (prepare.manifest)")
    p.add_argument("--backend", choices=["pocketsphinx", "whisper"], help="recogniser (transcribe.backend)")
    p.add_argument("--n-jobs", type=int, help="pocketsphinx worker processes (transcribe.n_jobs)")
    p = add("align", _cmd_align, "Forced-align every manifest utterance to words, syllables and phones.")
    p.add_argument("--manifest", help="manifest to align (prepare.manifest)")
    p.add_argument("--backend", choices=["pocketsphinx", "iemocap", "mfa"], help="aligner (align.backend)")
    p.add_argument("--n-jobs", type=int, help="parallel worker processes (align.n_jobs)")
    p.add_argument("--on-failure", choices=["drop", "uniform"], help="failure policy (align.on_failure)")

    p = add("align-eval", _cmd_align_eval, "Compare aligned word boundaries with the synthetic ground truth.")
    p.add_argument("--truth", help="ground-truth words.jsonl (align_eval.truth)")
    p.add_argument("--segments", help="segment table to evaluate (<align.out>/segments.h5)")
    p.add_argument("--out", help="metrics JSON to write (align_eval.report)")
    p = add(
        "align-eval-corpus",
        _cmd_align_eval_corpus,
        "Compare aligned word boundaries with the corpus's own ForcedAlignment .wdseg files.",
    )
    p.add_argument("--manifest", help="manifest whose utterances are compared (prepare.manifest)")
    p.add_argument("--segments", help="segment table to evaluate (<align.out>/segments.h5)")
    p.add_argument("--out", help="report JSON to write (align_eval_corpus.report)")

    add("demo-model", _cmd_demo_model, "Save the random-init wav2vec2 the offline demo encodes with.")

    p = add("extract", _cmd_extract, "Encode speech (wav2vec2 family) and text (BERT family) into HDF5 stores.")
    p.add_argument(
        "--kind", default="all", help="which store: speech, text, a name in features.extra_speech, or all (default)"
    )
    p.add_argument("--manifest", help="manifest (prepare.manifest)")
    p.add_argument(
        "--audio",
        action="store_true",
        help="the alignment-free levels (functionals) into features.audio_out: needs no alignment or transcript",
    )
    p.add_argument("--shard", type=_parse_shard, help="compute only shard i of N (i/N) of the parts")
    p.add_argument("--n-jobs", type=int, help="local parallel shards (features.n_jobs)")
    p.add_argument(
        "--fold", type=_parse_fold, help="use fold k's fine-tuned encoders; writes <finetune.features_out>/fold-<k>"
    )
    p.add_argument("--checkpoint", help="with --fold: the fine-tuned fold folder (default <finetune.out>/fold-<k>)")
    p.add_argument("--variant", help="with --fold: that variant of finetune.variants only (default: every variant)")
    p.add_argument(
        "--no-rebuild",
        action="store_true",
        help="stop with a message instead of rebuilding a store whose fingerprint differs",
    )

    p = add(
        "finetune", _cmd_finetune, "Fine-tune the encoders on fold k's training data (never its test data); resumable."
    )
    p.add_argument(
        "--fold",
        type=_parse_fold,
        action="append",
        help="fold k of split.protocol (IEMOCAP: session k); repeatable (default: every fold of finetune.folds)",
    )
    p.add_argument("--manifest", help="manifest (prepare.manifest)")
    p.add_argument(
        "--n-jobs",
        type=positive_int,
        help="folds at once, one process each, on train_dispatch.backend "
        "(joblib here, or a Dask cluster at train_dispatch.scheduler); default: one after another",
    )

    p = add(
        "cache",
        _cmd_cache,
        "List feature stores, verify one or all (offsets, shapes, NaN/inf, coverage, built from the current "
        "segment table and manifest; the segment table's times), or compare two stores of the same utterances.",
    )
    p.add_argument(
        "action",
        choices=["ls", "verify", "compare"],
        help="ls: list stores; verify: check one store or segment table (no PATH: the segment table and "
        "every store of features.out and of the fine-tuned folds); compare: PATH's rows against OTHER's",
    )
    p.add_argument(
        "path", nargs="?", help="ls: folder (features.out); verify: store or segments.h5 (default: all); compare: store"
    )
    p.add_argument("other", nargs="?", help="compare: the reference store")
    p.add_argument("--manifest", help="verify: also check that every utterance of this manifest is covered")
    p.add_argument(
        "--segments",
        help="verify --manifest: the segment table; utterances alignment dropped are "
        "not expected (default: <align.out>/segments.h5)",
    )

    p = add("train", _cmd_train, "Train and evaluate one experiment of train.experiments (split.protocol's folds).")
    p.add_argument("--experiment", required=True, help="experiment name, or 'all'")
    p.add_argument(
        "--n-jobs",
        type=int,
        help="experiments at once, one process each, on train_dispatch.backend "
        "(joblib here, or a Dask cluster at train_dispatch.scheduler); default: train.n_jobs",
    )

    p = add(
        "report",
        _cmd_report,
        "Write the results table (report.out, e.g. reports/results.md), the figures and the headline "
        "figures (report.metrics) from the experiments' metrics.",
    )
    p.add_argument(
        "--experiment",
        help="report only these experiments of params, comma-separated (e.g. text,mha; joint_ft for the "
        "end-to-end row); default: every one, each of which must have been trained",
    )

    add("summary", _cmd_summary, "Print what the pipeline has produced so far (counts, results).")
    from mger.pipeline.predict import add_commands  # export, predict (docs/inference.md)

    add_commands(add, _parse_fold)
    return parser


def error_line(err: BaseException) -> str:
    """One line for ``err``: the file or key and what to do; unexpected errors say so."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    code = write_errno(err) if isinstance(err, OSError) else None
    if isinstance(err, OSError) and (code == errno.ENOSPC or "No space left" in text):
        where = err.filename or "an output file"
        text = f"{where}: disk full; free some space and rerun (outputs are written whole or not at all)"
    elif code == errno.EFBIG:
        where = err.filename or "an output file"
        text = f"{where}: file too large for this system's file-size limit (`ulimit -f`); raise the limit and rerun"
    elif isinstance(err, OSError) and err.filename is not None and not isinstance(err, FileNotFoundError):
        text = f"{err.filename}: {err.strerror or text}"
    elif isinstance(err, FileNotFoundError) and err.filename is not None:
        text = f"{err.filename}: no such file; check the path (or run the stage that writes it)"
    elif not (isinstance(err, (ValueError, RuntimeError, OSError)) or (isinstance(err, KeyError) and " " in text)):
        text = f"{type(err).__name__}: {text} (unexpected; rerun with --debug for the traceback)"
    return " ".join(text.split())


def one_line_errors(prog: str, debug: bool, run: Callable[[], None]) -> int:
    """The error boundary of a command: ``run()``, every failure one line ``<prog>: error: ...``
    and exit 1 (the traceback too with ``debug`` or ``MGER_DEBUG=1``), Ctrl-C exit 130."""
    try:
        run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or os.environ.get("MGER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return one_line_errors(f"mger {args.command}", args.debug, lambda: args.handler(args, read_params(args.params)))


if __name__ == "__main__":
    sys.exit(main())
