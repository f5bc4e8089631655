"""Extraction speed, measured side by side in one run (base-size random-init wav2vec2).

    python -m benchmarks.bench_extract [--n 30] [--repeats 3] [--device cpu|cuda] [--shard-size 64]

Needs the demo outputs (`make demo` or `dvc repro extract`): the manifest, the segment table
and data/features/speech.h5 (section 5 only; skipped without it).  The pipeline runs are
``compute_parts`` as ``mger extract`` runs it (reader thread, encoder, writer thread; parts of
``--shard-size`` utterances), timed up to the last part committed; the merge of the parts into
one store is not timed.  Prints:

1. end-to-end extraction (read audio, encode, pool 5 levels, write HDF5) vs the naive
   reference written the way peers write it: per-utterance loop, batch 1, fp32, all hidden
   states, a Python loop for pooling, one .npy per utterance and level;
2. the pipeline's overhead over a bare model forward on the same batches with the same dtype
   (two ways: against a separate bare forward loop, and as the share of each pipeline run
   spent outside the model's forward, which the machine's drift does not blur; on GPU the
   forward is timed with CUDA events, so this is the share of the run the GPU is not busy
   with the model),
   for each dtype (CPU: fp32 and int8 dynamic quantisation; GPU: fp32, bf16, fp16), and how far
   each reduced precision's features are from fp32's; then, per dtype, where one pipeline
   run's time goes, phase by phase (:data:`mger.features.pipelining.PHASES`: waiting for the
   reader's audio and preprocessing, encoding, pooling, device→host copies, waiting for the
   writer thread), timed like the forward (host clock; on GPU CUDA events on the stream, so
   each phase's share is the GPU time spent in it or idle waiting for the host to get through
   it); on CPU also padded batches of 30 s of audio against one utterance per batch
   (``batch_seconds: auto`` on CPU);
3. a middle layer (6 of 12) vs the last layer, and all 13 hidden states (``layer: all``, what
   learned layer weights read) vs the last layer: time and store size, side by side;
4. pooling alone, vectorised vs a Python loop over every segment of the demo corpus, called
   the way the pipeline calls it (one call per part of ``features.shard_size`` utterances);
5. loading one fold's features, level by level, from the HDF5 store vs per-utterance .npy files,
   held both ways: one padded float32 tensor, and unpadded rows (how training holds a fold).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from functools import partialmethod
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from benchmarks.markdown import run_recorded
from mger.alignment.table import SegmentTable
from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, SpeechFeaturesConfig
from mger.core.manifest import read_manifest
from mger.core.splits import fold_split
from mger.features.cache import FeatureStore, compare_stores, merge_stores
from mger.features.encoders import SpeechEncoder, autocast_context, pad_batch
from mger.features.extract import compute_parts
from mger.features.fingerprint import AlignedInputs
from mger.features.pipelining import PHASES, PhaseClock, batch_seconds, make_batches
from mger.features.pooling import pool_segments
from mger.features.rows import _segments

_ENCODERS: dict[tuple, SpeechEncoder] = {}


POOLED_LEVELS = ("phone", "syllable", "word", "utterance")  # what a wav2vec2 store pools frames into


def _encoder(path: str, layer, device: str, dtype: str) -> SpeechEncoder:
    key = (path, str(layer), device, dtype)
    if key not in _ENCODERS:
        _ENCODERS[key] = SpeechEncoder(path, layer=layer, device=device, dtype=dtype)
    return _ENCODERS[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def forward_timer(model: torch.nn.Module, device: torch.device) -> Iterator[list[float]]:
    """Seconds spent inside ``model``'s forward while the block runs (one-element list, filled
    on exit).  On GPU, CUDA events on the stream time the forward's kernels without
    synchronising, so the pipeline's overlap of host work with the GPU is left intact."""
    starts: list = []
    ends: list = []
    spent = [0.0]
    handles = [
        model.register_forward_pre_hook(lambda *_: starts.append(_stamp(device))),
        model.register_forward_hook(lambda *_: ends.append(_stamp(device))),
    ]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()
        _sync(device)
        spent[0] = sum(_between(a, b) for a, b in zip(starts, ends))


def _stamp(device: torch.device) -> "float | torch.cuda.Event":
    """Now: the host clock, or on GPU an event recorded on the current stream."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _between(start, end) -> float:
    return start.elapsed_time(end) / 1000 if isinstance(start, torch.cuda.Event) else end - start


SHARD_SIZE = FeaturesConfig().shard_size  # utterances per part in the pipeline runs (--shard-size)


def pipeline_run(
    path,
    layer,
    device,
    dtype,
    utts,
    table,
    out,
    batch_seconds="auto",
    outside: list[float] | None = None,
    clock: PhaseClock | None = None,
) -> float:
    """mger's own path (``compute_parts``): read and prepare audio in the reader thread, encode,
    pool every level, commit the parts in the writer thread; then (untimed) the parts merged
    into the store ``out``.  ``outside`` collects, per run, the share of the time spent outside
    the model's forward; ``clock`` (:func:`phase_clock`) marks the run's phases."""
    enc = _encoder(path, layer, device, dtype)
    cfg = FeaturesConfig(
        device=device,
        dtype=dtype,
        batch_seconds=batch_seconds,
        shard_size=SHARD_SIZE,
        speech=SpeechFeaturesConfig(model=path, layer=layer),
    )
    parts = Path(f"{out}.parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    with forward_timer(enc.model, enc.device) as forward:
        t0 = time.perf_counter()
        compute_parts("speech", cfg, AlignedInputs(list(utts), table, ""), Path(out), (0, 1), enc, clock)
        _sync(enc.device)
        wall = time.perf_counter() - t0
    if outside is not None:
        outside.append(1 - forward[0] / wall)
    merge_stores(sorted(parts.glob("part-*.h5")), out, {"bench": 1})
    shutil.rmtree(parts)
    return wall


def phase_clock(device: torch.device) -> PhaseClock:
    """A :class:`PhaseClock` timing what ``forward_timer`` times: host clock, or CUDA events on GPU."""
    return PhaseClock(lambda: _stamp(device), _between)


def phase_breakdown(path: str, device: str, dtype: str, utts, table, tmp: Path) -> None:
    """Where one pipeline run's time goes, phase by phase (:data:`PHASES`), with the model's
    forward inside the encoding phase and the share outside it: what is left to overlap."""
    enc = _encoder(path, "last", device, dtype)
    clock = phase_clock(enc.device)
    with forward_timer(enc.model, enc.device) as forward:
        pipeline_run(path, "last", device, dtype, utts, table, tmp / "phases.h5", clock=clock)
    seconds = clock.seconds()
    total = sum(seconds.values())
    timeline = "GPU timeline, CUDA events" if enc.device.type == "cuda" else "host clock"
    n_parts = -(-len(utts) // SHARD_SIZE)
    print(f"  one {dtype} pipeline run, phase by phase ({timeline}; {n_parts} parts of up to {SHARD_SIZE} utterances):")
    for phase, what in PHASES.items():
        t = seconds.get(phase, 0.0)
        print(f"    {what:<52s} {t:8.3f} s {t / total:6.1%}")
        if phase == "encode":
            print(f"    {'  of which inside the model forward':<52s} {forward[0]:8.3f} s {forward[0] / total:6.1%}")
    run = "run (first to last mark)"
    print(f"    {run:<52s} {total:8.3f} s; outside the model's forward: {1 - forward[0] / total:.1%}")


def bare_run(path, device, dtype, utts, waves) -> float:
    """The model's forward alone on the pipeline's batches (``batch_seconds: auto``), padded
    and on the device before the clock starts (with the pipeline's masks)."""
    enc = _encoder(path, "last", device, dtype)
    batches = make_batches([u.duration for u in utts], batch_seconds(FeaturesConfig(), enc.device))
    inputs = [[torch.from_numpy(enc.prepare(waves[i])) for i in batch] for batch in batches]
    padded = [pad_batch(items, enc.device)[0] for items in inputs]
    _sync(enc.device)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast_context(enc.device, enc.dtype):
        for items, batch in zip(inputs, padded):
            with enc.padding([len(x) for x in items]) as kwargs:
                enc.model(batch, **kwargs)
    _sync(enc.device)
    return time.perf_counter() - t0


def loop_pool(frames: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """One segment, the way peers pool it: mean of the frames whose centres fall inside it,
    else the frame nearest its midpoint.  frames: (T, D) of one utterance."""
    centres = 0.0125 + 0.02 * torch.arange(frames.shape[0])
    inside = (centres >= start) & (centres < end)
    if inside.any():
        return frames[inside].mean(0)
    return frames[torch.argmin((centres - (start + end) / 2).abs())]


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
        np.save(out / f"{u.utt_id}.frame.npy", frames.numpy())
        np.save(out / f"{u.utt_id}.utterance.npy", frames.mean(0, keepdim=True).numpy())
        for level in ("phone", "syllable", "word"):
            pooled = [loop_pool(frames, seg.start, seg.end) for seg in table.segments(level, u.utt_id)]
            if pooled:
                np.save(out / f"{u.utt_id}.{level}.npy", torch.stack(pooled).numpy())
    return time.perf_counter() - t0


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as a run for :func:`best_rounds`: calls it, returns the seconds it took."""

    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def best_time(repeats: int, fn: Callable[[], object]) -> float:
    """Best wall time of ``repeats`` calls of ``fn()`` after one warm-up call."""
    return best_rounds(repeats, {"": timed(fn)})[""]


def best_rounds(repeats: int, runs: dict) -> dict[str, float]:
    """One warm-up round, then ``repeats`` timed rounds, each calling every function of ``runs``
    (which returns the seconds it measured) once in turn, so drift in the machine's speed hits
    them alike; the best time of each."""
    for fn in runs.values():
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], fn())
    return best


def report(name: str, seconds: float, audio: float, ref: float | None = None) -> None:
    ratio = f"  ({ref / seconds:.2f}x the naive reference)" if ref else ""
    print(f"{name:<52s} {seconds:7.2f} s  {audio / seconds:6.1f}x real time{ratio}", flush=True)


def deviation(test: Path, ref: Path) -> str:
    """Frame features of one store against another's: worst per-frame cosine, mean relative deviation."""
    cos, dev = compare_stores(test, ref)["frame"]
    return f"min frame cosine {cos:.4f}, mean relative deviation {dev:.2%}"


def bench_encoding(path: str, device: str, utts, waves, table, audio: float, repeats: int, tmp: Path) -> None:
    """Sections 1-3, each setting's best of ``repeats`` interleaved rounds (:func:`best_rounds`)."""
    dtypes = ["fp32", "bf16", "fp16"] if device == "cuda" else ["fp32", "int8"]
    runs = {"naive": lambda: naive_run(path, device, utts, table, tmp)}
    outside: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
    for dtype in dtypes:
        runs[f"bare {dtype}"] = lambda dtype=dtype: bare_run(path, device, dtype, utts, waves)
        runs[f"pipeline {dtype}"] = lambda dtype=dtype: pipeline_run(
            path, "last", device, dtype, utts, table, tmp / f"{dtype}.h5", outside=outside[dtype]
        )
    best = best_rounds(repeats, runs)
    t_naive = best["naive"]
    report("naive reference (fp32, batch 1, loop pooling, .npy)", t_naive, audio)
    for dtype in dtypes:
        report(f"bare forward, {dtype}", best[f"bare {dtype}"], audio, t_naive)
        report(f"pipeline end to end, {dtype}", best[f"pipeline {dtype}"], audio, t_naive)
        overhead = best[f"pipeline {dtype}"] / best[f"bare {dtype}"] - 1
        print(
            f"{'':<52s} overhead over bare forward: {100 * overhead:+.1f}%; "
            f"outside the model's forward: {np.median(outside[dtype]):.1%} of each run (median)"
        )
        if dtype != "fp32":
            print(f"{'':<52s} {dtype} vs fp32 features: {deviation(tmp / f'{dtype}.h5', tmp / 'fp32.h5')}")
    top = min(dtypes, key=lambda d: best[f"pipeline {d}"])
    print(f"best pipeline setting vs naive reference: {t_naive / best[f'pipeline {top}']:.2f}x ({top})")
    print("where the pipeline's time goes (one more run each, after the rounds above):")
    for dtype in dtypes:
        phase_breakdown(path, device, dtype, utts, table, tmp)
    if device == "cpu":  # why ``batch_seconds: auto`` is one utterance per batch on CPU (rounds of their own:
        # the padded batches' large activations would disturb the runs after them)
        batching = best_rounds(
            repeats,
            {
                s: lambda s=s: pipeline_run(path, "last", device, "fp32", utts, table, tmp / "b.h5", batch_seconds=s)
                for s in (0.0, 30.0)
            },
        )
        print(
            f"fp32 pipeline with padded batches of 30 s of audio: {batching[30.0]:.2f} s vs one utterance per batch "
            f"{batching[0.0]:.2f} s = {batching[30.0] / batching[0.0]:.2f} of the time"
        )
    layers = {
        "6": lambda: pipeline_run(path, 6, device, "fp32", utts, table, tmp / "mid.h5"),
        "last": lambda: pipeline_run(path, "last", device, "fp32", utts, table, tmp / "last.h5"),
        "all": lambda: pipeline_run(path, "all", device, "fp32", utts, table, tmp / "all.h5"),
    }
    t_layer = best_rounds(repeats, layers)
    print(
        f"layer 6 of 12: {t_layer['6']:.2f} s vs last layer {t_layer['last']:.2f} s = "
        f"{t_layer['6'] / t_layer['last']:.2f} of the time (fp32)",
        flush=True,
    )
    print(layer_cost_line(t_layer["all"], t_layer["last"], tmp / "all.h5", tmp / "last.h5"), flush=True)


def rows_mib(store: Path) -> float:
    """MiB of float16 rows in a store, all levels (offsets and attributes not counted)."""
    fs = FeatureStore(store)
    return sum(2 * int(np.prod(fs.level_shape(lv))) for lv in fs.levels) / 2**20


def layer_cost_line(t_all: float, t_last: float, all_store: Path, last_store: Path) -> str:
    """The cost of writing k layers: time and store size of ``layer: all`` against the last layer."""
    k = FeatureStore(all_store).level_shape("frame")[1]
    size_all, size_last = rows_mib(all_store), rows_mib(last_store)
    return (
        f"all {k} hidden states (layer: all) vs the last layer: {t_all:.2f} s vs {t_last:.2f} s = "
        f"{t_all / t_last:.2f}x the time; store rows {size_all:.1f} MiB vs {size_last:.1f} MiB = "
        f"{size_all / size_last:.1f}x the size (fp32, 5 levels)"
    )


def bench_pooling(table: SegmentTable, part_size: int, repeats: int) -> None:
    """Section 4: the segments of every demo utterance, pooled the way ``speech_part`` pools them:
    one call per part, on base-size frames the encoder has just written (random here)."""
    torch.manual_seed(0)
    t_vec = t_loop = 0.0
    n_segs, diff = 0, 0.0
    for p in range(0, len(table.utt_ids), part_size):
        utt_ids = table.utt_ids[p : p + part_size]
        counts = [max(1, int(d * 50)) for d in table.duration[p : p + part_size]]
        offsets = torch.tensor(np.concatenate([[0], np.cumsum(counts)]))
        segs = [(k, s, e) for lv in POOLED_LEVELS for k, u in enumerate(utt_ids) for s, e in _segments(table, lv, u)]
        seg_utt = torch.tensor([k for k, _, _ in segs])
        bounds = torch.tensor([(s, e) for _, s, e in segs], dtype=torch.float64)
        frames = torch.randn(int(offsets[-1]), 768)

        def vectorised() -> torch.Tensor:
            return pool_segments(frames, offsets, seg_utt, bounds[:, 0], bounds[:, 1], 0.02, 0.0125)

        t_vec += best_time(repeats, vectorised)
        t0 = time.perf_counter()
        loop = [loop_pool(frames[offsets[k] : offsets[k + 1]], s, e) for k, s, e in segs]
        t_loop += time.perf_counter() - t0
        n_segs += len(segs)
        diff = max(diff, (vectorised() - torch.stack(loop)).abs().max().item())
    print(
        f"pooling {n_segs} segments (4 levels, one call per part of {part_size} utterances, 768 dims): vectorised "
        f"{t_vec * 1000:.1f} ms, Python loop {t_loop * 1000:.0f} ms = {t_loop / t_vec:.0f}x faster, "
        f"max abs difference {diff:.2e}",
        flush=True,
    )


def bench_loading(store: str, manifest: str, repeats: int) -> None:
    """Section 5: fold 1's training utterances, each level, held both ways: padded float32
    (``FeatureStore.load`` vs ``np.load`` + ``pad_sequence``) and as unpadded rows, the way
    training holds a fold and pads each mini-batch (``FeatureStore.ragged`` vs the list of
    ``np.load`` arrays a peer's Dataset holds); interleaved rounds, a fresh store each call."""
    src = FeatureStore(store)
    utts = [u for u in read_manifest(manifest) if u.utt_id in set(src.utt_ids)]
    train = fold_split(utts, 1).ids(utts, "train")
    npy = Path(tempfile.mkdtemp())
    for level in src.levels:
        for uid in train:
            np.save(npy / f"{uid}.{level}.npy", src.rows(level, uid).astype(np.float32))  # as peers save them
    os.sync()
    print(
        f"loading fold 1's training features ({len(train)} utterances, {src.attrs.get('dim')} dims), best of "
        f"{repeats}; padded: one float32 tensor; rows: unpadded (store: float16 as stored, .npy: float32 arrays):"
    )
    for level in src.levels:
        files = [npy / f"{uid}.{level}.npy" for uid in train]

        def npy_arrays() -> list[torch.Tensor]:
            return [torch.from_numpy(np.load(f)) for f in files]

        best = best_rounds(
            repeats,
            {
                "padded store": timed(lambda: FeatureStore(store).load(level, train)),
                "padded npy": timed(lambda: torch.nn.utils.rnn.pad_sequence(npy_arrays(), batch_first=True)),
                "rows store": timed(lambda: FeatureStore(store).ragged(level, train)),
                "rows npy": timed(npy_arrays),
            },
        )
        padded, rows, arrays = src.load(level, train).data, src.ragged(level, train), npy_arrays()
        assert torch.equal(torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True), padded)
        assert all(torch.equal(rows.item(i), a) for i, a in enumerate(arrays))
        ms = {name: t * 1000 for name, t in best.items()}
        ratio = {way: best[f"{way} npy"] / best[f"{way} store"] for way in ("padded", "rows")}
        print(
            f"  {level:<10s} padded {tuple(padded.shape)!s:<16s} ({padded.numel() * 4 / 1e6:5.1f} MB) store "
            f"{ms['padded store']:6.1f} ms, .npy {ms['padded npy']:6.1f} ms = {ratio['padded']:4.1f}x | rows "
            f"({rows.data.numel() * 2 / 1e6:5.1f} MB) store {ms['rows store']:6.1f} ms, .npy {ms['rows npy']:6.1f} ms"
            f" = {ratio['rows']:4.1f}x faster",
            flush=True,
        )


def main() -> None:
    global SHARD_SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="utterances (from the demo manifest)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the best counts)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--manifest", default="data/manifest.jsonl")
    parser.add_argument("--segments", default="data/align/segments.h5")
    parser.add_argument("--store", default="data/features/speech.h5")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="utterances per part in pipeline runs")
    parser.add_argument("--skip-encoding", action="store_true", help="only sections 4 and 5 (no model runs)")
    args = parser.parse_args()
    SHARD_SIZE = args.shard_size
    tqdm.__init__ = partialmethod(tqdm.__init__, disable=True)  # compute_parts' bar, once per pipeline run
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    table = SegmentTable.read(args.segments)
    if not args.skip_encoding:
        torch.manual_seed(0)
        model_dir = Path(tempfile.mkdtemp()) / "wav2vec2-base-random"
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(model_dir)  # base size: 12 layers, 768 dims
        all_utts = [u for u in read_manifest(args.manifest) if u.utt_id in set(table.utt_ids)]
        utts = all_utts[:: max(1, len(all_utts) // args.n)][: args.n]
        audio = sum(u.duration for u in utts)
        print(
            f"{len(utts)} utterances, {audio:.0f} s of audio, base-size wav2vec2 (random init), device "
            f"{args.device}, {torch.get_num_threads()} threads, best of {args.repeats} runs each",
            flush=True,
        )
        waves = [read_audio(u.wav) for u in utts]
        bench_encoding(str(model_dir), args.device, utts, waves, table, audio, args.repeats, Path(tempfile.mkdtemp()))
    bench_pooling(table, FeaturesConfig().shard_size, args.repeats)
    if Path(args.store).exists():
        bench_loading(args.store, args.manifest, args.repeats)


if __name__ == "__main__":
    run_recorded("bench_extract", main)
