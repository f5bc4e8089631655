"""Frames → segments: exact values on hand-built segments, and the loop reference."""

from __future__ import annotations

import pytest
import torch

from mger.features.pooling import frame_ranges, pool_ranges, pool_segments

STRIDE, C0 = 0.02, 0.0125  # wav2vec2: 320-sample hop, 400-sample receptive field at 16 kHz


def test_frame_ranges_centres_inside_and_nearest_fallback() -> None:
    # centres: 0.0125, 0.0325, 0.0525, 0.0725, 0.0925 (5 frames)
    start = torch.tensor([0.0, 0.013, 0.03, 0.2, 0.0525, 0.05])
    end = torch.tensor([0.05, 0.02, 0.0725, 0.3, 0.0526, 0.05])
    first, last = frame_ranges(start, end, torch.full((6,), 5), STRIDE, C0)
    assert first.tolist() == [0, 0, 1, 4, 2, 2]
    assert last.tolist() == [1, 0, 2, 4, 2, 2]
    # the utterance level's single segment [0, inf) takes every frame, in float32 and float64
    for dtype in (torch.float32, torch.float64):
        whole = frame_ranges(
            torch.tensor([0.0], dtype=dtype), torch.tensor([float("inf")], dtype=dtype), torch.tensor([5]), STRIDE, C0
        )
        assert [t.tolist() for t in whole] == [[0], [4]]


@pytest.mark.parametrize("mode", ["mean", "max", "std"])
def test_pool_exact_values(mode: str) -> None:
    frames = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 60.0], [7.0, 0.0]])
    first, last = torch.tensor([0, 1, 3]), torch.tensor([1, 3, 3])
    out = pool_ranges(frames, first, last, mode)
    expected = {
        "mean": [[2.0, 15.0], [5.0, 80 / 3], [7.0, 0.0]],
        "max": [[3.0, 20.0], [7.0, 60.0], [7.0, 0.0]],
        "std": [
            [1.0, 5.0],
            [
                torch.tensor([3.0, 5, 7]).std(unbiased=False).item(),
                torch.tensor([20.0, 60, 0]).std(unbiased=False).item(),
            ],
            [0.0, 0.0],
        ],
    }[mode]
    assert torch.allclose(out, torch.tensor(expected), atol=1e-5)
    assert pool_ranges(frames, first[:0], last[:0], mode).shape == (0, 2)


@pytest.mark.parametrize("mode", ["mean", "max", "std"])
def test_pool_segments_across_utterances_matches_loop(mode: str) -> None:
    """Overlapping, nested and sub-frame segments of several utterances, against a Python loop."""
    g = torch.Generator().manual_seed(0)
    counts = [7, 1, 30]
    frames = torch.randn(sum(counts), 4, generator=g)
    offsets = torch.tensor([0, 7, 8, 38])
    seg_utt = torch.randint(0, 3, (200,), generator=g)
    start = torch.rand(200, generator=g) * 0.8
    end = start + torch.rand(200, generator=g) * 0.3
    pooled = pool_segments(frames, offsets, seg_utt, start, end, STRIDE, C0, mode)
    reduce = {"mean": lambda x: x.mean(0), "max": lambda x: x.amax(0), "std": lambda x: x.std(0, unbiased=False)}[mode]
    assert torch.isfinite(pooled).all()
    for s in range(200):
        u = int(seg_utt[s])
        utt = frames[offsets[u] : offsets[u + 1]]
        centres = C0 + STRIDE * torch.arange(len(utt))
        inside = (centres >= start[s]) & (centres < end[s])
        if inside.any():
            ref = reduce(utt[inside])
        else:
            nearest = int(torch.argmin((centres - (start[s] + end[s]) / 2).abs()))
            ref = reduce(utt[nearest : nearest + 1])
        assert torch.allclose(pooled[s], ref, atol=1e-5), s


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="pooling"):
        pool_ranges(torch.zeros(2, 2), torch.tensor([0]), torch.tensor([1]), "median")
    with pytest.raises(ValueError, match="at least one frame"):
        frame_ranges(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0]), STRIDE, C0)
    with pytest.raises(ValueError, match="1-D"):
        frame_ranges(torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(2, 1), STRIDE, C0)
