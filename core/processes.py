"""Work spread over processes or machines, and worker processes that never outlive their run.

:func:`dispatch` runs independent jobs (extraction shards, fine-tuning folds, classifier
experiments) in order, in ``n_jobs`` local joblib processes, or on a Dask cluster
(``backend: dask``; ``scheduler`` an address, or a local cluster): the one engine for all
three.  Each job writes its own outputs atomically, so the results are the files, not the
return values.

joblib's loky workers are started by the main process and are meant to be reused; when the
main process is killed outright (SIGKILL, an out-of-memory kill, a cancelled job) nobody
tells them, and they stay alive holding memory and cores.  :func:`die_with_parent` asks the
Linux kernel to send a worker SIGTERM the moment its parent dies (``PR_SET_PDEATHSIG``); on
other systems it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, Callable, Sequence

_PR_SET_PDEATHSIG = 1
_armed = False


def die_with_parent(parent_pid: int) -> None:
    """In a worker of ``parent_pid`` (not in the parent itself): end with the parent."""
    global _armed
    if _armed or os.getpid() == parent_pid:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: nothing to arm
        return
    _armed = True
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def _chunk_in_worker(fn: Callable[[Any, Sequence[Any]], list], cfg: Any, chunk: Sequence[Any], parent_pid: int) -> list:
    die_with_parent(parent_pid)  # a killed stage leaves no worker behind
    return fn(cfg, chunk)


def map_chunks(
    fn: Callable[[Any, Sequence[Any]], list], cfg: Any, items: Sequence[Any], chunk_size: int, n_jobs: int, desc: str
) -> list:
    """``fn(cfg, chunk)`` over ``items`` cut into chunks of ``chunk_size``, in ``n_jobs`` local
    joblib processes that end with this one; the results flattened in ``items``' order, with a
    progress bar of items (the align and transcribe stages' per-utterance work)."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_chunk_in_worker)(fn, cfg, c, os.getpid()) for c in chunks
    )
    out: list = []
    with tqdm(total=len(items), desc=desc, unit="utt", file=sys.stderr) as bar:
        for rows in jobs:
            out += rows
            bar.update(len(rows))
    return out


def _in_worker(fn: Callable[..., Any], args: tuple, parent_pid: int, threads: int) -> Any:
    """A local joblib worker: it ends with its run and computes with ``threads`` torch threads."""
    die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def dispatch(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    n_jobs: int = 1,
    backend: str = "joblib",
    scheduler: str | None = None,
    what: str = "jobs",
    share_cores: bool = False,
) -> list[Any]:
    """``[fn(*args) for args in jobs]``: in this process (one job, or ``n_jobs`` 1 with joblib),
    in ``n_jobs`` joblib worker processes, or on Dask (a ``distributed`` client to
    ``scheduler``, or a local cluster).

    ``share_cores``: local workers split the cores (torch threads = cores // workers), which is
    fast but changes floating-point summation order; without it each worker computes with this
    process's torch thread count (joblib would lower it), so it computes bit for bit what a
    serial run computes (training and fine-tuning dispatch this way, for several GPUs or
    machines; extraction shares the cores, its float16 rows checked to a tolerance)."""
    from joblib import Parallel, delayed, parallel_config

    if backend == "joblib" and (n_jobs == 1 or len(jobs) <= 1):
        return [fn(*args) for args in jobs]
    if backend == "dask":  # Dask's workers manage their own lifetimes and threads
        from distributed import Client

        with Client(scheduler) if scheduler else Client(processes=False) as client, parallel_config(backend="dask"):
            print(f"{len(jobs)} {what} on Dask scheduler {client.scheduler.address}", file=sys.stderr)
            return Parallel(n_jobs=n_jobs)(delayed(fn)(*args) for args in jobs)
    import torch

    threads = (
        max(1, (os.cpu_count() or 1) // max(1, min(n_jobs, len(jobs)))) if share_cores else torch.get_num_threads()
    )
    return Parallel(n_jobs=n_jobs)(delayed(_in_worker)(fn, args, os.getpid(), threads) for args in jobs)
