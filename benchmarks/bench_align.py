"""Alignment throughput (audio seconds per wall second), n_jobs=1 vs n_jobs=2, in one run.

    python benchmarks/bench_align.py [--manifest data/manifest.jsonl] [--n 200] [--jobs 1,2]

Uses the demo manifest (run `dvc repro prepare` first) and the pocketsphinx settings of
params.yaml.  Each setting is warmed up (worker processes started, decoders built) on a few
utterances before the timed run over the same ``n`` utterances.  With ``n_jobs=1`` joblib
aligns in this process, so its CPU time is printed too: audio seconds per CPU second is the
per-core speed, and unlike wall time it does not drop when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from benchmarks.markdown import run_recorded
from mger.alignment.stage import align_utterances
from mger.core.config import load_params
from mger.core.manifest import read_manifest


def throughput(utts, cfg) -> float:
    align_utterances(utts[: 4 * cfg.n_jobs], cfg, chunk_size=2)  # warm-up
    t0, cpu0 = time.perf_counter(), time.process_time()
    results = align_utterances(utts, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    failures = sum(f is not None for _, f in results)
    audio = sum(u.duration for u in utts)
    print(
        f"n_jobs={cfg.n_jobs}: {len(utts)} utterances, {audio:.0f} s of audio in {wall:.1f} s "
        f"= {audio / wall:.1f}x real time ({audio / wall / cfg.n_jobs:.1f}x per core), {failures} failures"
        + (f"; {audio / cpu:.1f}x real time per CPU second" if cfg.n_jobs == 1 else "")
    )
    return audio / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/manifest.jsonl")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument(
        "--jobs",
        default="1,2",
        help="n_jobs settings to time, comma-separated (default: %(default)s; 1 alone on a shared machine)",
    )
    args = parser.parse_args()
    utts = read_manifest(args.manifest)[: args.n]
    cfg = load_params(args.params).align
    speed = {
        n: throughput(utts, dataclasses.replace(cfg, n_jobs=n, backend="pocketsphinx"))
        for n in (int(j) for j in args.jobs.split(","))
    }
    if 1 in speed and 2 in speed:
        print(f"speed-up n_jobs=2 / n_jobs=1: {speed[2] / speed[1]:.2f}x")


if __name__ == "__main__":
    run_recorded("bench_align", main)
