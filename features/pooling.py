"""Frames to segments: pure, vectorised tensor functions (no Python loop over segments).

A segment ``[start, end)`` (seconds) takes the frames whose centres fall inside it; a
segment shorter than a frame, or between two centres, takes the frame nearest to its
midpoint, so no segment is ever empty and no pooled value is NaN.  Frame ``t`` of a
wav2vec2-family model covers samples ``[t*stride, t*stride + receptive_field)``; its centre
is at ``(t*stride + receptive_field/2) / sample_rate`` seconds.
"""

from __future__ import annotations

import warnings

import torch

POOLINGS = ("mean", "max", "std")


def frame_ranges(start: torch.Tensor, end: torch.Tensor, n_frames: torch.Tensor, stride_s: float,
                 centre0_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last (inclusive) frame of each segment.

    Shapes: start, end, n_frames: (S,) — n_frames is the owning utterance's frame count.
    Returns two (S,) int64 tensors, each within [0, n_frames - 1].
    """
    if not (start.shape == end.shape == n_frames.shape) or start.ndim != 1:
        raise ValueError(f"start, end, n_frames must be 1-D of equal length, got {start.shape}, {end.shape}, "
                         f"{n_frames.shape}")
    if (n_frames < 1).any():
        raise ValueError("every utterance needs at least one frame")
    last_valid = n_frames - 1
    first = torch.ceil((start - centre0_s) / stride_s - 1e-9).long()
    last = torch.ceil((end - centre0_s) / stride_s - 1e-9).long() - 1
    nearest = torch.round(((start + end) / 2 - centre0_s) / stride_s).long()
    nearest = torch.minimum(nearest.clamp(min=0), last_valid)
    first = torch.minimum(first.clamp(min=0), last_valid)
    last = torch.minimum(last.clamp(min=0), last_valid)
    empty = (last < first) | (end <= start)
    return torch.where(empty, nearest, first), torch.where(empty, nearest, last)


def pool_ranges(frames: torch.Tensor, first: torch.Tensor, last: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool rows ``frames[first[s]:last[s]+1]`` for every segment ``s`` at once.

    mean and std are products with a sparse CSR averaging matrix (one nonzero per frame of
    each segment); max is a ``scatter_reduce`` over the gathered rows.

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
    n_seg = first.shape[0]
    crow = torch.cat([torch.zeros(1, dtype=torch.long, device=frames.device), torch.cumsum(counts, 0)])
    seg_of_row = torch.repeat_interleave(torch.arange(n_seg, device=frames.device), counts)
    rows = first[seg_of_row] + (torch.arange(seg_of_row.shape[0], device=frames.device) - crow[:-1][seg_of_row])
    if mode == "max":
        picked = frames[rows]
        out = torch.full((n_seg, frames.shape[1]), float("-inf"), dtype=frames.dtype, device=frames.device)
        return out.scatter_reduce(0, seg_of_row[:, None].expand_as(picked), picked, reduce="amax")
    # mean (and std): one sparse (segments x frames) averaging matrix, one matrix product
    weights = (1.0 / counts.to(frames.dtype))[seg_of_row]
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
        warnings.simplefilter("ignore", UserWarning)
        averaging = torch.sparse_csr_tensor(crow, rows, weights, (n_seg, frames.shape[0]))
    mean = averaging @ frames
    if mode == "mean":
        return mean
    return (averaging @ frames.square() - mean.square()).clamp(min=0).sqrt()


def pool_segments(frames: torch.Tensor, frame_offsets: torch.Tensor, seg_utt: torch.Tensor, start: torch.Tensor,
                  end: torch.Tensor, stride_s: float, centre0_s: float, mode: str = "mean") -> torch.Tensor:
    """Pool the segments of several utterances whose frames are stacked in ``frames``.

    Shapes: frames (F, D) with utterance ``u`` at rows ``frame_offsets[u]:frame_offsets[u+1]``
    (frame_offsets (U+1,)); seg_utt, start, end (S,).  Returns (S, D).
    """
    n_frames = (frame_offsets[1:] - frame_offsets[:-1])[seg_utt]
    first, last = frame_ranges(start, end, n_frames, stride_s, centre0_s)
    base = frame_offsets[:-1][seg_utt]
    return pool_ranges(frames, base + first, base + last, mode)
