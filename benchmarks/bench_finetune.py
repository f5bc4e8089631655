"""Fine-tuning speed: cached conv features vs the frozen conv stack run on every step.

    python -m benchmarks.bench_finetune [--model base|demo] [--device cpu|cuda] [--steps 3]

Builds a random-init wav2vec2 (``base``: ``Wav2Vec2Config()``, the real base-size compute;
``demo``: the demo model's size), writes ``--batch`` noise utterances of ``--seconds``, and times
one training step (forward, backward, AdamW) through :class:`mger.models.finetune.SpeechInputs` both
ways, side by side in one run.  It also prints the time per IEMOCAP fold this implies at
README settings: one conv pass over the fold's training audio, then ``--epochs`` epochs of
``--train-utts / --batch`` steps (every crop at ``--seconds``: an upper bound).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.markdown import run_recorded
from mger.core.audio import write_audio
from mger.core.manifest import Utterance
from mger.features.encoders import SpeechEncoder
from mger.models.finetune import Head, SpeechInputs


def random_wav2vec2(kind: str, folder: Path) -> str:
    """A random-init wav2vec2 (``base``: ``Wav2Vec2Config()``, or the ``demo`` size) saved with its
    default feature extractor into ``folder``; returns the folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    if kind == "base":
        config = Wav2Vec2Config()
    else:
        config = Wav2Vec2Config(
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            conv_dim=(256,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=16,
        )
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    return str(folder)


def _utterances(folder: Path, n: int, seconds: float) -> list[Utterance]:
    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        wav = folder / f"u{i}.wav"
        write_audio(wav, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))
        utts.append(
            Utterance(
                f"u{i}", "bench", str(wav), seconds, "s", "F", "", "none", "neu", "neu", "g1", "", None, None, None
            )
        )
    return utts


def _step_seconds(inputs: SpeechInputs, head: Head, steps: int) -> float:
    params = [p for p in inputs.net.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    labels = torch.zeros(len(inputs), dtype=torch.long, device=inputs.encoder.device)
    idx = list(range(len(inputs)))
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(*inputs.forward(idx, torch.Generator().manual_seed(0))), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if inputs.encoder.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["base", "demo"], default="base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-utts", type=int, default=3900, help="IEMOCAP fold: ~4 sessions minus a speaker")
    parser.add_argument("--mean-seconds", type=float, default=4.5, help="mean IEMOCAP utterance duration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        encoder = SpeechEncoder(random_wav2vec2(args.model, tmp / "model"), device=args.device)
        encoder.model.train().requires_grad_(True)
        encoder.model.feature_extractor.requires_grad_(False)
        head = Head(encoder.dim, 4, 0.1).to(encoder.device)
        utts = _utterances(tmp, args.batch, args.seconds)
        t0 = time.perf_counter()
        cached = SpeechInputs(encoder, utts, frozen_conv=True, max_train_seconds=args.seconds)
        conv_pass = (time.perf_counter() - t0) / (args.batch * args.seconds)  # seconds per audio second
        rerun = SpeechInputs(encoder, utts, frozen_conv=False, max_train_seconds=args.seconds)
        t_cached = _step_seconds(cached, head, args.steps)
        t_rerun = _step_seconds(rerun, head, args.steps)
    steps = args.train_utts / args.batch * args.epochs
    fold = args.train_utts * args.mean_seconds * conv_pass + steps * t_cached
    print(f"model {args.model} on {encoder.device}, batch {args.batch} x {args.seconds:.0f} s, conv stack frozen")
    print(f"  step, conv stack run every step : {t_rerun:.3f} s")
    print(f"  step, conv features cached      : {t_cached:.3f} s   ({t_rerun / t_cached:.2f}x faster)")
    print(f"  conv pass (once per fold)       : {conv_pass * 1000:.1f} ms per audio second")
    print(
        f"  implied time per IEMOCAP fold   : {fold / 60:.1f} min ({args.train_utts} training utterances, "
        f"{args.epochs} epochs, upper bound)"
    )


if __name__ == "__main__":
    run_recorded("bench_finetune", main)
