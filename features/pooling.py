"""Frames to segments: pure, vectorised tensor functions (no Python loop over segments).

A segment ``[start, end)`` (seconds) takes the frames whose centres fall inside it; a
segment shorter than a frame, or between two centres, takes the frame nearest to its
midpoint, so no segment is ever empty and no pooled value is NaN.  Frame ``t`` of a
wav2vec2-family model covers samples ``[t*stride, t*stride + receptive_field)``; its centre
is at ``(t*stride + receptive_field/2) / sample_rate`` seconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLINGS = ("mean", "max", "std")


def frame_ranges(
    start: torch.Tensor, end: torch.Tensor, n_frames: torch.Tensor, stride_s: float, centre0_s: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last (inclusive) frame of each segment.

    Shapes: start, end, n_frames: (S,) — n_frames is the owning utterance's frame count.
    Returns two (S,) int64 tensors, each within [0, n_frames - 1].
    """
    if not (start.shape == end.shape == n_frames.shape) or start.ndim != 1:
        raise ValueError(
            f"start, end, n_frames must be 1-D of equal length, got {start.shape}, {end.shape}, {n_frames.shape}"
        )
    if (n_frames < 1).any():
        raise ValueError("every utterance needs at least one frame")
    last_valid = n_frames - 1
    limit = n_frames.to(start.dtype) + 1

    def position(seconds: torch.Tensor) -> torch.Tensor:  # in frames, clamped before any cast (end = inf)
        return ((seconds - centre0_s) / stride_s).clamp(-1.0).minimum(limit)

    first = torch.ceil(position(start) - 1e-9).long()
    last = torch.ceil(position(end) - 1e-9).long() - 1
    nearest = torch.round(position((start + end) / 2)).long()
    nearest = torch.minimum(nearest.clamp(min=0), last_valid)
    first = torch.minimum(first.clamp(min=0), last_valid)
    last = torch.minimum(last.clamp(min=0), last_valid)
    empty = (last < first) | (end <= start)
    return torch.where(empty, nearest, first), torch.where(empty, nearest, last)


def range_indices(first: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ranges ``first[s] .. first[s] + counts[s] - 1`` laid end to end, and where each
    starts in that list (``embedding_bag``'s indices and offsets).  Shapes: (S,), (S,) →
    (counts.sum(),), (S,); a count may be 0."""
    starts = torch.cumsum(counts, 0) - counts
    owner = torch.repeat_interleave(torch.arange(first.shape[0], device=first.device), counts)
    return first[owner] + (torch.arange(owner.shape[0], device=first.device) - starts[owner]), starts


def pool_ranges(frames: torch.Tensor, first: torch.Tensor, last: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool rows ``frames[first[s]:last[s]+1]`` for every segment ``s`` at once.

    Segments of several levels cover the same frames (a word is its phones' frames), so rows
    are reduced in two ``embedding_bag`` passes instead of once per segment: the boundaries of
    all segments cut the frames into elementary runs, each frame is read once to reduce its
    run (sum, or max), and every segment then combines the runs it consists of.  Sums are
    re-associated (differences ~1e-7 relative to a direct mean); max is exact.  std is the
    population std from the sums of the rows and of their squares.

    Shapes: frames (F, D) — all frames of a batch, flattened; first, last (S,) row indices
    into ``frames``.  Returns (S, D).  ``mode``: mean, max or std (population).
    """
    if mode not in POOLINGS:
        raise ValueError(f"pooling {mode!r}: expected one of {POOLINGS}")
    if frames.ndim != 2:
        raise ValueError(f"frames must be (F, D), got {tuple(frames.shape)}")
    counts = last - first + 1
    if (counts < 1).any():
        raise ValueError("every segment needs at least one frame")
    if first.shape[0] == 0:
        return frames.new_zeros((0, frames.shape[1]))
    cuts = torch.unique(torch.cat([first, last + 1]))  # sorted; run j is rows cuts[j]..cuts[j+1]-1
    run_rows = torch.arange(int(cuts[0]), int(cuts[-1]), device=frames.device)
    run_first, run_last = torch.searchsorted(cuts, first), torch.searchsorted(cuts, last + 1) - 1
    n_runs = run_last - run_first + 1
    seg_runs, seg_starts = range_indices(run_first, n_runs)

    def runs(table: torch.Tensor, how: str) -> torch.Tensor:  # pass 1: every frame read once, into its run
        return F.embedding_bag(run_rows, table, cuts[:-1] - cuts[0], mode=how)

    if mode == "max":
        return F.embedding_bag(seg_runs, runs(frames, "max"), seg_starts, mode="max")
    weights = (1.0 / counts.to(frames.dtype)).repeat_interleave(n_runs)

    def mean_of(table: torch.Tensor) -> torch.Tensor:  # pass 2: run sums, weighted by 1 / frame count
        return F.embedding_bag(seg_runs, runs(table, "sum"), seg_starts, mode="sum", per_sample_weights=weights)

    mean = mean_of(frames)
    if mode == "mean":
        return mean
    return (mean_of(frames.square()) - mean.square()).clamp(min=0).sqrt()


def pool_segments(
    frames: torch.Tensor,
    frame_offsets: torch.Tensor,
    seg_utt: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    stride_s: float,
    centre0_s: float,
    mode: str = "mean",
) -> torch.Tensor:
    """Pool the segments of several utterances whose frames are stacked in ``frames``.

    Shapes: frames (F, D) with utterance ``u`` at rows ``frame_offsets[u]:frame_offsets[u+1]``
    (frame_offsets (U+1,)); seg_utt, start, end (S,).  Returns (S, D).
    """
    n_frames = (frame_offsets[1:] - frame_offsets[:-1])[seg_utt]
    first, last = frame_ranges(start, end, n_frames, stride_s, centre0_s)
    base = frame_offsets[:-1][seg_utt]
    return pool_ranges(frames, base + first, base + last, mode)
