"""Reader / writer pipelining of extraction: batches of audio read and prepared ahead of the
encoder by one thread (:class:`BatchReader`, :class:`Prefetch`), parts committed behind it by
another (:class:`PartWriter`), and where the time goes (:class:`PhaseClock`).  The stores are
the serial loop's, byte for byte (``tests/test_extract_overlap.py``)."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig
from mger.core.manifest import Utterance
from mger.features.cache import CacheError
from mger.features.registry import SpeechEncoding


def batch_seconds(cfg: FeaturesConfig, device: torch.device) -> float:
    """``auto``: one utterance per batch on CPU (padded batches are slower there:
    ``benchmarks/bench_extract.py`` measures it),
    200 s of audio per batch on GPU."""
    if cfg.batch_seconds != "auto":
        return float(cfg.batch_seconds)
    return 200.0 if device.type == "cuda" else 0.0


def make_batches(durations: Sequence[float], max_seconds: float) -> list[list[int]]:
    """Indices sorted by duration, grouped while (count x longest) stays within ``max_seconds``."""
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * durations[i] <= max_seconds:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


READ_AHEAD = 2  # batches read and prepared ahead of the encoder (bounded host memory; pinned on GPU)


class PhaseClock:
    """Where an extraction run's time goes: :meth:`enter` marks the start of a phase (and the
    end of the one before); :meth:`seconds` sums each phase's spans up to the last mark.

    ``stamp`` and ``elapsed``: the host clock by default.  With CUDA events (recorded on the
    stream, never synchronising) the spans are of the device's timeline, so a phase's share is
    the device time spent in it or idle waiting for the host to get through it
    (``benchmarks/bench_extract.py``).  Phases: :data:`PHASES`."""

    def __init__(
        self,
        stamp: Callable[[], Any] = time.perf_counter,
        elapsed: Callable[[Any, Any], float] = lambda start, end: end - start,
    ) -> None:
        self.marks: list[tuple[str, Any]] = []
        self._stamp, self._elapsed = stamp, elapsed

    def enter(self, phase: str) -> None:
        self.marks.append((phase, self._stamp()))

    def seconds(self) -> dict[str, float]:
        """Seconds per phase, in the order phases were first entered (the last mark only ends)."""
        out: dict[str, float] = {}
        for (phase, start), (_, end) in zip(self.marks, self.marks[1:]):
            out[phase] = out.get(phase, 0.0) + self._elapsed(start, end)
        return out


PHASES = {
    "read": "waiting for audio + preprocessing (reader thread)",
    "encode": "encoding (host→device copy + forward)",  # text parts: all of text_part
    "pool": "pooling",
    "to_host": "device→host copies",
    "write": "waiting for the writer thread",
}


def mark(clock: PhaseClock | None, phase: str) -> None:
    """``clock.enter(phase)``, where there is a clock."""
    if clock is not None:
        clock.enter(phase)


class Prefetch:
    """``fn(item)`` for each of ``items`` in order, computed by one background thread that starts
    at once and stays at most ``depth`` items ahead of the consumer (bounded memory).  An
    error of ``fn`` is raised where its item is taken.  A context manager: leaving it cancels
    what was not started and waits for the running call."""

    def __init__(self, fn: Callable[[Any], Any], items: Iterable[Any], depth: int = READ_AHEAD) -> None:
        self._fn, self._items = fn, iter(items)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mger-read")
        self._pending: deque[Future] = deque()
        for _ in range(depth):
            self._submit_next()

    def _submit_next(self) -> None:
        for item in islice(self._items, 1):
            self._pending.append(self._pool.submit(self._fn, item))

    def __iter__(self) -> "Prefetch":
        return self

    def __next__(self) -> Any:
        if not self._pending:
            raise StopIteration
        future = self._pending.popleft()
        self._submit_next()
        return future.result()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class LoadedBatch:
    """One batch's audio read and prepared on the host: ``batch`` (the encoder's
    ``prepare_batch``: for wav2vec2 a :class:`mger.features.encoders.SpeechBatch`), and the raw
    waves (T_i,) float32 where the functionals level needs them (openSMILE), else None."""

    batch: Any
    waves: list[np.ndarray] | None


def speech_batches(encoder: SpeechEncoding, cfg: FeaturesConfig, utts: Sequence[Utterance]) -> list[list[int]]:
    """The batches (indices into ``utts``) a part is encoded in (:func:`make_batches`)."""
    return make_batches([u.duration for u in utts], batch_seconds(cfg, encoder.device))


def _load(encoder: SpeechEncoding, utts: Sequence[Utterance], keep_waves: bool) -> LoadedBatch:
    """Runs in the reader thread: read ``utts``' audio, prepare and pad it (no device work)."""
    waves = [read_audio(u.wav) for u in utts]
    return LoadedBatch(encoder.prepare_batch(waves), waves if keep_waves else None)


class BatchReader:
    """The batches of one or more parts (:func:`speech_batches`), read and prepared in order
    by a :class:`Prefetch` thread, at most :data:`READ_AHEAD` batches ahead of the encoder and
    across the end of a part, so the next part's first batches are ready when it starts."""

    def __init__(self, encoder: SpeechEncoding, cfg: FeaturesConfig, parts: Sequence[Sequence[Utterance]]) -> None:
        keep = "functionals" in cfg.speech.levels
        self.plans = [speech_batches(encoder, cfg, utts) for utts in parts]
        jobs = [[utts[i] for i in b] for utts, plan in zip(parts, self.plans) for b in plan]
        self._prefetch = Prefetch(lambda job: _load(encoder, job, keep), jobs)

    def part(self, k: int) -> Iterator[LoadedBatch]:
        """Part ``k``'s loaded batches; the parts are to be taken in order, each once."""
        return islice(self._prefetch, len(self.plans[k]))

    def __enter__(self) -> "BatchReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._prefetch.__exit__(*exc)


class PartWriter:
    """Commits parts (:func:`mger.features.rows.commit_part`) in one background thread while the next part is
    computed; at most one part in flight (:meth:`submit` first waits for the one before), so
    at most two parts' rows are held.  A failed commit is raised in the caller's thread by
    the next :meth:`submit` or :meth:`wait`, naming the part (:func:`_part_error`); on
    leaving after an error elsewhere, the part in flight is still committed (whole)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mger-write")
        self._pending: tuple[int, Path, Future] | None = None

    def submit(self, p: int, path: Path, commit: Callable[[], None]) -> None:
        """Run ``commit`` (part ``p``'s :func:`~mger.features.rows.commit_part` call, writing
        ``path``) in the writer thread."""
        self.wait()
        self._pending = (p, path, self._pool.submit(commit))

    def wait(self) -> None:
        """Until the part in flight is committed; its error, if any, raised here."""
        if self._pending is None:
            return
        p, path, future = self._pending
        self._pending = None
        err = future.exception()
        if err is not None:
            raise _part_error(self.kind, p, path, err)

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _part_error(kind: str, p: int, path: Path, err: BaseException) -> BaseException:
    """The writer's error as the caller raises it: a :class:`CacheError` as it is (it names
    the utterances), an ``OSError`` naming the part's file (the CLI prints it in one line),
    anything else a :class:`CacheError` naming the part; each noting the part."""
    err.add_note(f"while committing part {p} of the {kind} store ({path})")
    if isinstance(err, CacheError):
        return err
    if isinstance(err, OSError):
        err.filename = err.filename or str(path)
        return err
    if not isinstance(err, Exception):
        return err  # KeyboardInterrupt, SystemExit: as they are
    wrapped = CacheError(
        f"{path}: part {p} of the {kind} store was not written ({type(err).__name__}: {err}); "
        "nothing of it was stored: rerun `mger extract` to compute it again"
    )
    wrapped.__cause__ = err
    return wrapped
