"""Epoch time of each classifier on IEMOCAP-sized random tensors (5,531 utterances, 768-dim).

    python -m benchmarks.bench_train [--utterances 5531] [--frame-utterances 1000] [--device cuda]
    python -m benchmarks.bench_train --probe [--utterances 646]

``--probe``: the linear probe (models/probe.py: five C values, lbfgs) on utterance means of
random 768-dim inputs, fitted with BLAS limited to one thread and with BLAS's default
threads, side by side in one run (the ratio is the figure; this machine's cores differ).

Lengths per level are drawn around IEMOCAP's (4.5 s mean: ~225 wav2vec2 frames, ~45 phones,
~16 syllables, ~12 words, ~16 BERT tokens).  The frame level is timed on
``--frame-utterances`` utterances (to keep the run short) and scaled linearly to the full
count.  Inputs are float16 rows padded per mini-batch, as training holds a fold.  One
training epoch (batch 32, AdamW) per model.  ``--device cuda``: rows moved to the GPU once,
padded there, bf16 autocast (the path ``train.device`` takes); the epoch is timed after a
synchronisation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.markdown import run_recorded
from mger.core.config import HeadConfig, TrainConfig
from mger.features.cache import Ragged
from mger.features.encoders import resolve_device
from mger.models.modules import ModelConfig
from mger.models.train import TensorSet, fit

MEAN_LENGTH = {"frame": 225, "phone": 45, "syllable": 16, "word": 12, "token": 16}
MODELS = [
    ("audio", ["frame"]),
    ("audio", ["phone"]),
    ("audio", ["syllable"]),
    ("audio", ["word"]),
    ("text", ["word"]),
    ("multigranular", ["phone", "syllable", "word"]),
    ("coattention", ["word"]),
    ("mha_aux", ["word"]),
]


def random_items(n: int, level: str, dim: int, rng: np.random.Generator) -> Ragged:
    """n items of ``level``'s typical lengths, float16 rows as a store holds them."""
    mean = MEAN_LENGTH[level]
    lengths = torch.from_numpy(np.clip(rng.gamma(4.0, mean / 4.0, n).round(), 1, 3 * mean).astype(np.int64))
    rows = torch.from_numpy(rng.standard_normal((int(lengths.sum()), dim), dtype=np.float32)).half()
    return Ragged(rows, torch.cumsum(lengths, 0) - lengths, lengths)


def bench_probe(n: int, rng: np.random.Generator) -> None:
    """Probe fits with one BLAS thread and with BLAS's default, side by side."""
    from mger.models.probe import LinearProbe

    labels = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 768)) + labels[:, None] * 0.05
    split = int(0.8 * n)
    times = {}
    for threads in (1, None):
        t0 = time.perf_counter()
        LinearProbe(4, blas_threads=threads).fit(x[:split], labels[:split], x[split:], labels[split:])
        times[threads] = time.perf_counter() - t0
    print(
        f"linear probe, {n} utterances x 768: one BLAS thread {times[1]:.2f} s, BLAS default "
        f"{times[None]:.2f} s ({times[None] / times[1]:.1f}x the one-thread time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=5531)
    parser.add_argument("--frame-utterances", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--probe", action="store_true", help="time the linear probe's BLAS threading instead")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    if args.probe:
        bench_probe(args.utterances, rng)
        return
    print(
        f"one epoch, batch 32, {args.utterances} utterances, 768-dim speech and text, on {device} "
        f"({torch.get_num_threads()} CPU threads)"
    )
    for kind, levels in MODELS:
        n = args.frame_utterances if "frame" in levels else args.utterances
        names = [f"speech:{lv}" for lv in levels] if kind in ("audio", "multigranular") else []
        if kind in ("coattention", "mha_aux"):
            names = [f"speech:{levels[0]}", "text:token"]
        if kind == "text":
            names = ["text:token"]
        inputs = {nm: random_items(n, nm.split(":")[1], 768, rng) for nm in names}
        data = TensorSet(inputs, torch.as_tensor(rng.integers(0, 4, n))).to(device)
        aux = 0.5 if kind == "mha_aux" else 0.0
        cfg = ModelConfig(
            kind=kind,
            speech_levels=levels,
            dims={nm: 768 for nm in names},
            n_classes=4,
            head=HeadConfig(aux_matching=aux, aux_unimodal=aux),
        )
        t0 = time.perf_counter()
        fit(cfg, data, data.subset(np.arange(min(64, n))), TrainConfig(epochs=1, batch_size=32), seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) * args.utterances / n
        scaled = f" (timed on {n}, scaled)" if n != args.utterances else ""
        print(f"{kind:<14s} {'+'.join(levels):<22s} {seconds:7.1f} s per epoch{scaled}")


if __name__ == "__main__":
    run_recorded("bench_train", main)
