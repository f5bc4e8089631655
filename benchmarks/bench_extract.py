"""Extraction speed, measured side by side in one run (base-size random-init wav2vec2).

    python -m benchmarks.bench_extract [--n 30] [--device cpu|cuda]

Needs the demo outputs (`make demo` or `dvc repro extract`): the manifest, the segment table
and data/features/speech.h5.  Prints:

1. end-to-end extraction (read audio, encode, pool 5 levels, write HDF5) vs the naive
   reference written the way peers write it: per-utterance loop, batch 1, fp32, all hidden
   states, a Python loop for pooling, one .npy per utterance and level;
2. the pipeline's overhead over a bare model forward on the same audio, same dtype and the
   same process layout;
3. a middle layer (6 of 12) vs the last layer;
4. pooling alone, vectorised vs a Python loop over every segment of the demo corpus;
5. loading one fold's features from the HDF5 store vs from per-utterance .npy files.

On CPU the pipeline's best setting is two shard processes with one thread each (intra-op
threading scales poorly on two cores); on GPU, one process with padded batches and autocast.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from joblib import Parallel, delayed

from alignment.table import SegmentTable
from features.cache import FeatureStore, write_store
from features.encoders import SpeechEncoder
from features.extract import Inputs, speech_part
from features.pooling import pool_segments
from pipeline.audio import read_audio
from pipeline.config import FeaturesConfig, SpeechFeaturesConfig
from pipeline.manifest import fold_split, read_manifest

_ENCODERS: dict[tuple, SpeechEncoder] = {}


def _encoder(path: str, layer, device: str, dtype: str, threads: int | None) -> SpeechEncoder:
    if threads:
        torch.set_num_threads(threads)
    key = (path, str(layer), device, dtype)
    if key not in _ENCODERS:
        _ENCODERS[key] = SpeechEncoder(path, layer=layer, device=device, dtype=dtype)
    return _ENCODERS[key]


def pipeline_run(path, layer, device, dtype, threads, utts, table, out) -> float:
    enc = _encoder(path, layer, device, dtype, threads)
    cfg = FeaturesConfig(device=device, dtype=dtype, speech=SpeechFeaturesConfig(model=path, layer=layer))
    inputs = Inputs(list(utts), table, "")
    t0 = time.perf_counter()
    levels = speech_part(enc, cfg, inputs, utts)
    write_store(out, [u.utt_id for u in utts], levels, {"bench": 1})
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bare_run(path, device, dtype, threads, waves) -> float:
    enc = _encoder(path, "last", device, dtype, threads)
    prepared = [enc._prepare(w) for w in waves]
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(enc.device.type, dtype=enc.dtype, enabled=enc.dtype != torch.float32):
        for w in prepared:
            enc.model(torch.from_numpy(w)[None].to(enc.device))
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def naive_run(path: str, device: str, utts, table: SegmentTable, out: Path) -> float:
    """How peers write it: loop, batch 1, fp32, Python pooling loop, one .npy per utterance."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path).to(device).eval()
    t0 = time.perf_counter()
    for u in utts:
        audio, _ = sf.read(u.wav, dtype="float32")
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        with torch.no_grad():
            hidden = model(torch.from_numpy(audio)[None].to(device), output_hidden_states=True).hidden_states
        frames = hidden[-1][0].cpu()
        centres = 0.0125 + 0.02 * torch.arange(frames.shape[0])
        np.save(out / f"{u.utt_id}.frame.npy", frames.numpy())
        np.save(out / f"{u.utt_id}.utterance.npy", frames.mean(0, keepdim=True).numpy())
        for level in ("phones", "syllables", "words"):
            pooled = []
            for seg in table.segments(level, u.utt_id):
                inside = (centres >= seg.start) & (centres < seg.end)
                if inside.any():
                    pooled.append(frames[inside].mean(0))
                else:
                    pooled.append(frames[torch.argmin((centres - (seg.start + seg.end) / 2).abs())])
            if pooled:
                np.save(out / f"{u.utt_id}.{level}.npy", torch.stack(pooled).numpy())
    return time.perf_counter() - t0


def best_of(repeats: int, fn, *args) -> float:
    """Best wall time of ``repeats`` runs (after the caller's warm-up): less noise from the machine."""
    return min(fn(*args) for _ in range(repeats))


def two_process(fn, halves, *args) -> float:
    """Run ``fn`` on two halves in two worker processes (one thread each); best of two wall times."""
    import importlib

    fn = getattr(importlib.import_module("benchmarks.bench_extract"), fn.__name__)  # pickled by reference
    Parallel(n_jobs=2)(delayed(fn)(*args, h[:1]) for h in halves)  # warm-up: workers load the model
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        Parallel(n_jobs=2)(delayed(fn)(*args, h) for h in halves)
        times.append(time.perf_counter() - t0)
    return min(times)


def _bare_half(path, device, dtype, waves):
    return bare_run(path, device, dtype, 1, waves)


def _pipe_half(path, device, dtype, table_path, utts):
    out = Path(tempfile.mkdtemp()) / "part.h5"
    return pipeline_run(path, "last", device, dtype, 1, utts, SegmentTable.read(table_path), out)


def report(name: str, seconds: float, audio: float, ref: float | None = None) -> None:
    ratio = f"  ({ref / seconds:.2f}x the naive reference)" if ref else ""
    print(f"{name:<52s} {seconds:7.2f} s  {audio / seconds:6.1f}x real time{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="utterances (from the demo manifest)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--manifest", default="data/manifest.jsonl")
    parser.add_argument("--segments", default="data/align/segments.h5")
    parser.add_argument("--store", default="data/features/speech.h5")
    args = parser.parse_args()
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    model_dir = Path(tempfile.mkdtemp()) / "wav2vec2-base-random"
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(model_dir)  # base size: 12 layers, 768 dims
    path = str(model_dir)
    table = SegmentTable.read(args.segments)
    all_utts = [u for u in read_manifest(args.manifest) if u.utt_id in set(table.utt_ids)]
    utts = all_utts[:: max(1, len(all_utts) // args.n)][: args.n]
    audio = sum(u.duration for u in utts)
    waves = [read_audio(u.wav) for u in utts]
    tmp = Path(tempfile.mkdtemp())
    print(f"{len(utts)} utterances, {audio:.0f} s of audio, base-size wav2vec2 (random init), device {args.device}, "
          f"{torch.get_num_threads()} threads")
    naive_run(path, args.device, utts[:2], table, tmp)  # warm-up
    t_naive = best_of(2, naive_run, path, args.device, utts, table, tmp)
    report("naive reference (fp32, batch 1, loop pooling, .npy)", t_naive, audio)
    dtypes = ["fp32", "bf16"] if args.device == "cuda" else ["fp32"]
    best = None
    for dtype in dtypes:
        bare_run(path, args.device, dtype, None, waves[:2])
        t_bare = best_of(2, bare_run, path, args.device, dtype, None, waves)
        report(f"bare forward, 1 process, {dtype}", t_bare, audio, t_naive)
        pipeline_run(path, "last", args.device, dtype, None, utts[:2], table, tmp / "w.h5")
        t_pipe = best_of(2, pipeline_run, path, "last", args.device, dtype, None, utts, table, tmp / "p.h5")
        report(f"pipeline end to end, 1 process, {dtype}", t_pipe, audio, t_naive)
        print(f"{'':<52s} overhead over bare forward: {100 * (t_pipe / t_bare - 1):+.1f}%")
        best = max(best or 0, t_naive / t_pipe)
    if args.device == "cpu":
        halves = [list(range(0, len(utts), 2)), list(range(1, len(utts), 2))]
        t_bare2 = two_process(_bare_half, [[waves[i] for i in h] for h in halves], path, "cpu", "fp32")
        report("bare forward, 2 processes x 1 thread, fp32", t_bare2, audio, t_naive)
        t_pipe2 = two_process(_pipe_half, [[utts[i] for i in h] for h in halves], path, "cpu", "fp32", args.segments)
        report("pipeline end to end, 2 processes x 1 thread, fp32", t_pipe2, audio, t_naive)
        print(f"{'':<52s} overhead over bare forward: {100 * (t_pipe2 / t_bare2 - 1):+.1f}%")
        best = max(best, t_naive / t_pipe2)
    print(f"best pipeline setting vs naive reference: {best:.2f}x")

    dtype = "bf16" if args.device == "cuda" else "fp32"
    pipeline_run(path, 6, args.device, dtype, None, utts[:2], table, tmp / "w.h5")
    t_mid = best_of(2, pipeline_run, path, 6, args.device, dtype, None, utts, table, tmp / "m.h5")
    t_last = best_of(2, pipeline_run, path, "last", args.device, dtype, None, utts, table, tmp / "l.h5")
    print(f"layer 6 of 12: {t_mid:.2f} s vs last layer {t_last:.2f} s = {t_mid / t_last:.2f} of the time")

    # 4. pooling alone, over every segment of the demo corpus
    frames_per = [int(d * 50) for d in table.duration]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(frames_per)]))
    frames = torch.randn(int(offsets[-1]), 768)
    segs = [(i, s.start, s.end) for i, u in enumerate(table.utt_ids) for lv in ("phones", "syllables", "words")
            for s in table.segments(lv, u)]
    seg_utt = torch.tensor([s[0] for s in segs])
    start = torch.tensor([s[1] for s in segs], dtype=torch.float64)
    end = torch.tensor([s[2] for s in segs], dtype=torch.float64)
    pool_segments(frames, offsets, seg_utt, start, end, 0.02, 0.0125)  # warm-up
    t0 = time.perf_counter()
    vec = pool_segments(frames, offsets, seg_utt, start, end, 0.02, 0.0125)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = []
    for u, s, e in segs:
        utt = frames[offsets[u]:offsets[u + 1]]
        centres = 0.0125 + 0.02 * torch.arange(utt.shape[0])
        inside = (centres >= s) & (centres < e)
        loop.append(utt[inside].mean(0) if inside.any() else utt[torch.argmin((centres - (s + e) / 2).abs())])
    t_loop = time.perf_counter() - t0
    diff = (vec - torch.stack(loop)).abs().max().item()
    print(f"pooling {len(segs)} segments: vectorised {t_vec * 1000:.1f} ms, Python loop {t_loop * 1000:.0f} ms "
          f"= {t_loop / t_vec:.0f}x faster, max abs difference {diff:.2e}")

    # 5. one fold's features: HDF5 store vs per-utterance .npy files
    if Path(args.store).exists():
        store_ids = FeatureStore(args.store).utt_ids
        train, _ = fold_split([u for u in read_manifest(args.manifest) if u.utt_id in set(store_ids)], 1)
        npy = Path(tempfile.mkdtemp())
        src = FeatureStore(args.store)
        for uid in train:
            np.save(npy / f"{uid}.npy", src.rows("frame", uid).astype(np.float32))  # as peers save them
        os.sync()
        FeatureStore(args.store).load("frame", train[:2])  # warm-up (imports, page cache)
        t0 = time.perf_counter()
        arrays = [torch.from_numpy(np.load(npy / f"{uid}.npy")) for uid in train]
        padded = torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True)
        t_npy = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = FeatureStore(args.store).load("frame", train)
        t_h5 = time.perf_counter() - t0
        assert batch.data.shape == padded.shape
        print(f"loading fold 1 train frames ({len(train)} utterances, {tuple(batch.data.shape)}): HDF5 store "
              f"{t_h5:.2f} s, per-utterance .npy {t_npy:.2f} s = {t_npy / t_h5:.1f}x faster")


if __name__ == "__main__":
    main()
