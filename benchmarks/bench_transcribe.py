"""Transcription speed: pocketsphinx per CPU core, Whisper (random-init, base size) beside extraction's wav2vec2.

    python -m benchmarks.bench_transcribe [--manifest data/manifest.jsonl] [--n 20] [--device cuda]

Pocketsphinx (``transcribe.backend: pocketsphinx``, :class:`mger.features.asr.PocketsphinxRecognizer`)
decodes ``n`` utterances in this process: its real-time factor per core is CPU seconds over audio
seconds.  Whisper: a random-init ``WhisperForConditionalGeneration`` of whisper-base's sizes (d_model
512, 6+6 layers, 51,865 tokens) generates a fixed number of tokens per chunk (3 per second of its
longest utterance, at least 4: our reading of a speech rate of ~2.5 words/s; a random model would
otherwise stop at an arbitrary step), batched as ``mger transcribe`` batches (``--batch``), on
``--device`` with extraction's dtype rule; the same audio then goes through a random-init
wav2vec2-base forward (:class:`mger.features.encoders.SpeechEncoder`, the extract stage's
encoder), so the two are side by side on one device: seconds of audio per device-second each,
and their ratio.  The models are random: speed only, no transcript is meaningful.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.markdown import run_recorded
from mger.core.audio import SAMPLE_RATE, read_audio
from mger.core.manifest import read_manifest
from mger.features.asr import PocketsphinxRecognizer, chunk_waves
from mger.features.encoders import SpeechEncoder, autocast_context, resolve_device, resolve_dtype


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pocketsphinx(waves: list[np.ndarray], audio: float) -> None:
    rec = PocketsphinxRecognizer()
    rec.transcribe(waves[:1])  # warm-up
    t0, cpu0 = time.perf_counter(), time.process_time()
    rec.transcribe(waves)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"pocketsphinx: {len(waves)} utterances, {audio:.1f} s of audio: {cpu:.1f} CPU s, {wall:.1f} s wall; "
        f"real-time factor per core {cpu / audio:.3f} ({audio / cpu:.1f}x real time per core)"
    )


def whisper_base(device: torch.device):
    """A random-init WhisperForConditionalGeneration of whisper-base's sizes, and its feature extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        num_mel_bins=80,
    )
    net = WhisperForConditionalGeneration(config).to(device).eval().requires_grad_(False)
    net.generation_config.begin_suppress_tokens = None
    net.generation_config.suppress_tokens = None
    return net, WhisperFeatureExtractor(feature_size=80)


def time_whisper(waves, device, dtype, batch: int) -> float:
    """Device-seconds to transcribe ``waves`` (30 s chunks, ``batch`` chunks per generate call)."""
    net, extractor = whisper_base(device)
    chunks, _ = chunk_waves(waves, 30.0)
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))

    def run() -> None:
        for s in range(0, len(order), batch):
            part = [chunks[i] for i in order[s : s + batch]]
            tokens = max(4, math.ceil(3 * max(len(c) for c in part) / SAMPLE_RATE))
            mel = extractor(part, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(device)
            with torch.inference_mode(), autocast_context(device, dtype):
                net.generate(mel, min_new_tokens=tokens, max_new_tokens=tokens, num_beams=1, do_sample=False)

    return _timed(
        run,
        device,
        warm=lambda: net.generate(
            extractor([chunks[0]], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(device),
            max_new_tokens=2,
        ),
    )


def time_wav2vec2(waves, device_name: str, dtype_name: str, tmp: Path) -> float:
    """Device-seconds of a random-init wav2vec2-base forward over ``waves`` (extraction's encoder)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp / "w2v")
    enc = SpeechEncoder(str(tmp / "w2v"), None, "last", device_name, dtype_name)
    return _timed(
        lambda: [enc.encode([enc.prepare(w)]) for w in waves],
        enc.device,
        warm=lambda: enc.encode([enc.prepare(waves[0])]),
    )


def _timed(fn, device: torch.device, warm) -> float:
    warm()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/manifest.jsonl")
    parser.add_argument("--n", type=int, default=20, help="utterances (from the manifest's start)")
    parser.add_argument("--device", default="auto", help="Whisper and wav2vec2: as features.device")
    parser.add_argument("--dtype", default="auto", help="as features.dtype")
    parser.add_argument(
        "--batch", type=int, default=8, help="Whisper chunks per generate call (transcribe.whisper.batch_size)"
    )
    parser.add_argument("--skip-pocketsphinx", action="store_true")
    args = parser.parse_args()
    utts = read_manifest(args.manifest)[: args.n]
    waves = [read_audio(u.wav) for u in utts]
    audio = sum(len(w) for w in waves) / SAMPLE_RATE
    torch.set_num_threads(1)  # per core, as pocketsphinx
    if not args.skip_pocketsphinx:
        bench_pocketsphinx(waves, audio)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    with tempfile.TemporaryDirectory() as tmp:
        w2v = time_wav2vec2(waves, str(device), args.dtype, Path(tmp))
    whisper = time_whisper(waves, device, dtype, args.batch)
    where = f"{device} ({str(dtype).replace('torch.', '')}; 1 thread on CPU)"
    print(f"on {where}, {len(waves)} utterances, {audio:.1f} s of audio:")
    print(
        f"  whisper-base (random init, generate): {whisper:.2f} s = {audio / whisper:.1f} s of audio per device-second"
    )
    print(f"  wav2vec2-base forward (extraction):   {w2v:.2f} s = {audio / w2v:.1f} s of audio per device-second")
    print(f"  transcription costs {whisper / w2v:.1f}x extraction's speech forward on the same audio")


if __name__ == "__main__":
    run_recorded("bench_transcribe", main)
