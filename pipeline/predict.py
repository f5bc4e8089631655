"""``mger export`` and ``mger predict``: a trained system on recordings it has not seen
(docs/inference.md).

``mger export --experiment NAME [--fold k] [--out DIR]`` writes the system folder
(:func:`mger.models.system.export_system`; default ``systems/<NAME>`` or ``systems/<NAME>-fold<k>``).

``mger predict SYSTEM AUDIO... [--text T | --transcripts FILE] [--asr [--asr-backend B]
[--asr-model M]] [--out FILE]``: AUDIO is audio files, folders (every .wav/.flac/.ogg in them,
sorted) or a CSV list (columns ``path`` and optionally ``text``); ``--transcripts`` is a CSV
(``path``/``name``, ``text``) or a JSONL manifest (``wav``, ``text``); ``--asr`` transcribes
every file without a given transcript (:func:`asr_config` picks the recogniser).  Output: CSV
(``name, start, end, label, p_<class>..., error, note, text, text_source``) or JSON (by
``--out``'s suffix; default ``predictions.csv``).  A bad file is one line on
stderr and one row with its error; the batch goes on and the command exits 0 if any file was
predicted (1 if none was).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mger.core.config import Params
from mger.core.config_transcribe import TranscribeConfig, WhisperAsrSettings
from mger.core.reporting import StageError, write_json, write_text_atomic

if TYPE_CHECKING:
    from mger.models.system import Result

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def _cmd_export(args: argparse.Namespace, params: Params) -> None:
    from mger.core.transcripts import text_params
    from mger.models.system import export_system

    params = text_params(params)  # the manifest of the text the stores and training read
    out = args.out or f"systems/{args.experiment}" + (f"-fold{args.fold}" if args.fold is not None else "")
    t0 = time.perf_counter()
    system = export_system(params, args.experiment, out, args.fold)
    what = f"fold {args.fold}'s system" if args.fold is not None else "the final system (every fold's data)"
    check = system.get("check", {})
    same = (
        f"; reproduces {check['rows_compared']} evaluation rows within {check['max_abs_diff']:.1e}"
        if check.get("rows_compared")
        else ""
    )
    print(
        f"export {args.experiment}: {what}, {len(system['members'])} member(s) over seeds {system['seeds']}{same} "
        f"in {time.perf_counter() - t0:.1f}s → {out}"
    )


def audio_items(paths: list[str]) -> list[tuple[str, str | None]]:
    """(audio path, text from a CSV list or None) of every file named, folder walked or CSV listed."""
    out: list[tuple[str, str | None]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(str(f), None) for f in sorted(p.rglob("*")) if f.suffix.lower() in AUDIO_SUFFIXES]
        elif p.suffix.lower() == ".csv":
            with p.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            if rows and "path" not in rows[0]:
                raise StageError(f"{p}: a CSV list needs a 'path' column (and optionally 'text')")
            out += [
                (str((p.parent / r["path"]) if not Path(r["path"]).is_absolute() else r["path"]), r.get("text"))
                for r in rows
            ]
        else:
            out.append((str(p), None))
    return out


def read_transcripts(path: str) -> dict[str, str]:
    """Transcripts by audio path, file name and stem: a CSV (``path`` or ``name``, ``text``) or a
    JSONL manifest (``wav``, ``text``)."""
    p = Path(path)
    rows: list[tuple[str, str]] = []
    if p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                key = r.get("path") or r.get("name")
                if key is None or "text" not in r:
                    raise StageError(f"{p}: a transcripts CSV needs 'path' (or 'name') and 'text' columns")
                rows.append((key, r["text"]))
    else:
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                r = json.loads(line)
                if "text" not in r or not ({"wav", "path"} & set(r)):
                    raise StageError(f"{p}: line {n}: a JSONL transcript needs 'wav' (or 'path') and 'text'")
                rows.append((r.get("wav") or r["path"], r["text"]))
    out: dict[str, str] = {}
    for key, text in rows:
        for k in (key, str(Path(key).resolve()), Path(key).name, Path(key).stem):
            out.setdefault(k, text)
    return out


def _text_for(path: str, listed: str | None, args: argparse.Namespace, transcripts: dict[str, str]) -> str | None:
    if args.text is not None:
        return args.text
    if listed:
        return listed
    for k in (path, str(Path(path).resolve()), Path(path).name, Path(path).stem):
        if k in transcripts:
            return transcripts[k]
    return None


@dataclass(frozen=True)
class TextOrigin:
    """Where an item's transcript came from: ``source`` given (``--text``, ``--transcripts``, a
    listed one), ``asr:<backend>`` or none; ``note``: the recogniser's note (why it is empty)."""

    text: str | None
    source: str
    note: str = ""


def asr_config(meta: dict, params: Params, backend: str | None, model: str | None, device: str) -> TranscribeConfig:
    """The recogniser ``--asr`` uses: the one the system trained on (system.json's ``asr``),
    else params' ``transcribe`` section; ``--asr-backend`` / ``--asr-model`` (a Whisper hub id
    or folder; alone it implies whisper) override it; Whisper runs on predict's ``--device``."""
    trained = meta.get("asr")
    cfg = params.transcribe
    if trained:
        s = trained["settings"]
        cfg = replace(cfg, backend=s["backend"], dtype=s["dtype"], whisper=WhisperAsrSettings(**s["whisper"]))
    if model is not None:
        if backend == "pocketsphinx":
            raise StageError("--asr-model names a Whisper checkpoint; it does not go with --asr-backend pocketsphinx")
        backend = "whisper"
        if model != cfg.whisper.model:
            cfg = replace(cfg, whisper=replace(cfg.whisper, model=model, revision=None))
    return replace(cfg, backend=backend or cfg.backend, device=device, n_jobs=1)


def _asr_texts(paths: list[str], cfg: TranscribeConfig, trained: dict | None) -> dict[str, TextOrigin]:
    """Each file's ASR transcript and note (:func:`mger.features.asr.transcribe_files`); a
    warning line when the recogniser is not the one the system trained on."""
    from tqdm import tqdm

    from mger.features.asr import make_recognizer, transcribe_files

    rec = make_recognizer(cfg)
    if trained and (rec.backend, rec.model_id) != (trained["backend"], trained["model_id"]):
        print(
            f"warning: --asr: the system trained on text of {trained['backend']} {trained['model']} "
            f"({trained['model_id']}); transcribing with {rec.backend} {rec.model} ({rec.model_id})",
            file=sys.stderr,
        )
    step = max(8, cfg.whisper.batch_size)
    pairs: list[tuple[str, str]] = []
    for s in tqdm(range(0, len(paths), step), desc="asr", unit="batch", file=sys.stderr):
        pairs += transcribe_files(rec, paths[s : s + step])
    source = f"asr:{rec.backend}"
    empty = sum(not text for text, _ in pairs)
    print(f"asr ({rec.backend}, {rec.model}): {len(paths)} file(s) transcribed, {empty} empty", file=sys.stderr)
    return {p: TextOrigin(text, source, note) for p, (text, note) in zip(paths, pairs)}


def _origins(args: argparse.Namespace, params: Params, meta: dict) -> list[tuple[str, TextOrigin]]:
    """Every audio file and its transcript: given ones win, ``--asr`` transcribes the others."""
    if not args.asr and (args.asr_backend or args.asr_model):
        raise StageError("--asr-backend and --asr-model choose the recogniser of --asr; add --asr")
    transcripts = read_transcripts(args.transcripts) if args.transcripts else {}
    given = [(path, _text_for(path, listed, args, transcripts)) for path, listed in audio_items(args.audio)]
    out = {p: TextOrigin(t, "given") for p, t in given if t is not None}
    todo = list(dict.fromkeys(p for p, t in given if t is None))
    if args.asr and todo:
        cfg = asr_config(meta, params, args.asr_backend, args.asr_model, args.device)
        out |= _asr_texts(todo, cfg, meta.get("asr"))
    return [(p, out.get(p, TextOrigin(None, "none"))) for p, _ in given]


def _cmd_predict(args: argparse.Namespace, params: Params) -> None:
    from mger.models.system import Item, load_system

    system = load_system(args.system, device=args.device)
    files = _origins(args, params, system.meta)
    if not files:
        raise StageError(f"no audio file in {', '.join(args.audio)}")
    items = [Item(path, path, origin.text) for path, origin in files]
    t0 = time.perf_counter()
    results = system.predict_items(items, progress=True, max_seconds=args.max_seconds)
    wall = time.perf_counter() - t0
    for r in results:
        if r.error:
            print(f"warning: {r.error}", file=sys.stderr)
    out = Path(args.out)
    write_results(out, results, system.classes, system.meta, dict(files))
    good = [r for r in results if r.error is None]
    print(
        f"predict: {len(items)} file(s), {len(good)} prediction(s), {len(results) - len(good)} error(s) "
        f"({wall / len(items):.2f} s per file) → {out}"
    )
    if not good:
        raise StageError(f"no file could be predicted ({len(results)} error(s), each a row of {out})")


def _row_text(r: Result, origins: dict[str, TextOrigin]) -> tuple[str, str, str]:
    """A result row's transcript (a segment's own words, else its file's), its source and its
    note (the prediction's, then the recogniser's)."""
    origin = origins.get(r.name, TextOrigin(None, "none"))
    text = r.text if r.text is not None else origin.text
    note = "; ".join(x for x in (r.note, f"asr: {origin.note}" if origin.note else "") if x)
    return text or "", origin.source, note


def write_results(
    out: Path, results: list[Result], classes: list[str], meta: dict, origins: dict[str, TextOrigin] | None = None
) -> None:
    """CSV (``name, start, end, label, p_<class>..., error, note, text, text_source``) or JSON by
    ``out``'s suffix; ``origins``: each file's transcript and where it came from."""
    origins = origins or {}
    if out.suffix.lower() == ".json":
        rows = []
        for r in results:
            text, source, note = _row_text(r, origins)
            rows.append(
                {
                    "name": r.name,
                    "start": r.start,
                    "end": r.end,
                    "label": r.label,
                    "probs": r.probs,
                    "error": r.error,
                    "note": note,
                    "text": text,
                    "text_source": source,
                }
            )
        keys = ("experiment", "fold", "mger_version", "classes")
        write_json(out, {"system": {k: meta[k] for k in keys} | {"asr": meta.get("asr")}, "predictions": rows})
        return
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "start", "end", "label", *(f"p_{c}" for c in classes), "error", "note", "text", "text_source"])
    for r in results:
        probs = [f"{r.probs[c]:.6f}" for c in classes] if r.probs else [""] * len(classes)
        start = "" if r.start is None else f"{r.start:.3f}"
        end = "" if r.end is None else f"{r.end:.3f}"
        text, source, note = _row_text(r, origins)
        w.writerow([r.name, start, end, r.label or "", *probs, r.error or "", note, text, source])
    write_text_atomic(out, buf.getvalue())


def add_commands(add: Callable[..., argparse.ArgumentParser], parse_fold: Callable[[str], int]) -> None:
    """The ``export`` and ``predict`` subcommands (called by :func:`mger.pipeline.cli.build_parser`)."""
    p = add(
        "export",
        _cmd_export,
        "Write a self-contained system folder of one experiment: the final system trained on every session "
        "(default) or fold k's evaluated system (--fold k).",
    )
    p.add_argument("--experiment", required=True, help="experiment name (train.experiments or finetuned_experiments)")
    p.add_argument("--fold", type=parse_fold, help="export fold k's evaluated system instead of the final one")
    p.add_argument("--out", help="system folder to write (default systems/<experiment>[-fold<k>])")

    p = add("predict", _cmd_predict, "Class probabilities of new recordings from an exported system.")
    p.add_argument("system", help="system folder written by `mger export`")
    p.add_argument("audio", nargs="+", help="audio files, folders of them, or a CSV list (path[,text])")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="the transcript (the same for every file)")
    src.add_argument("--transcripts", help="CSV (path or name, text) or JSONL (wav, text) of transcripts")
    p.add_argument(
        "--asr",
        action="store_true",
        help="transcribe every file without a given transcript (default recogniser: the one the system trained "
        "on, else params' transcribe section)",
    )
    p.add_argument("--asr-backend", choices=["pocketsphinx", "whisper"], help="--asr's recogniser backend")
    p.add_argument("--asr-model", help="--asr's Whisper checkpoint: hub id or save_pretrained folder")
    p.add_argument(
        "--out", default="predictions.csv", help="CSV or JSON (by suffix) to write (default predictions.csv)"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        help="longer recordings are split at pauses (default: the speech encoder's max_seconds)",
    )
    p.add_argument("--device", default="auto", help="encoders' and classifiers' device: auto (default), cpu, cuda")
