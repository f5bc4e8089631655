"""Late fusion's validation UA is out of sample (mger.models.train.cross_fitted_proba): under a
simulated null its optimism is gone, while scoring the fitted weights in sample shows it."""

from __future__ import annotations

import numpy as np
import pytest

from mger.models.metrics import unweighted_accuracy
from mger.models.train import cross_fitted_proba, fit_weights

N_CLASSES = 4


def _members(rng: np.random.Generator, labels: np.ndarray, signal: float) -> list[np.ndarray]:
    """Three members' (N, C) probabilities: noise, plus the same ``signal`` on the true class."""
    out = []
    for _ in range(3):
        logits = 1.5 * rng.standard_normal((len(labels), N_CLASSES))
        logits[np.arange(len(labels)), labels] += signal
        e = np.exp(logits)
        out.append(e / e.sum(1, keepdims=True))
    return out


def _optimism(signal: float, n_fits: int = 120) -> tuple[float, float]:
    """Mean (in-sample, cross-fitted) validation UA minus the UA of an independent held-out set
    scored with the weights fitted on all of validation (two validation 'speakers' of 64)."""
    rng = np.random.default_rng(29)
    old, new = [], []
    halves = (list(range(64)), list(range(64, 128)))
    for _ in range(n_fits):
        y_val, y_out = rng.integers(0, N_CLASSES, 128), rng.integers(0, N_CLASSES, 1000)
        p_val, p_out = _members(rng, y_val, signal), _members(rng, y_out, signal)
        w = fit_weights(p_val, y_val, N_CLASSES)
        held_out = unweighted_accuracy(y_out, sum(a * p for a, p in zip(w, p_out)).argmax(1), N_CLASSES)
        in_sample = sum(a * p for a, p in zip(w, p_val)).argmax(1)
        crossed = cross_fitted_proba(p_val, y_val, N_CLASSES, halves).argmax(1)
        old.append(unweighted_accuracy(y_val, in_sample, N_CLASSES) - held_out)
        new.append(unweighted_accuracy(y_val, crossed, N_CLASSES) - held_out)
    return float(np.mean(old)), float(np.mean(new))


@pytest.mark.parametrize("signal, old_at_least", [(0.0, 0.04), (1.0, 0.025)])
def test_cross_fitted_validation_has_no_optimism_under_a_null(signal: float, old_at_least: float) -> None:
    """No member better than another (no signal at all, or the same signal in each): in-sample
    scoring flatters the ensemble by several points; the cross-fitted figure does not (≤ 1 point)."""
    old, new = _optimism(signal)
    assert old >= old_at_least
    assert new <= 0.01


def test_cross_fitting_scores_each_half_with_the_other_halfs_weights() -> None:
    labels = np.array([0, 1, 0, 1])
    good = np.eye(2)[labels].astype(float)  # member 0 right everywhere, member 1 wrong everywhere
    bad = np.eye(2)[1 - labels].astype(float)
    halves = ([0, 1], [2, 3])
    out = cross_fitted_proba([good, bad], labels, 2, halves)
    assert (out.argmax(1) == labels).all()
    flipped = [np.vstack([good[:2], bad[2:]]), np.vstack([bad[:2], good[2:]])]  # halves disagree on the better member
    assert (cross_fitted_proba(flipped, labels, 2, halves).argmax(1) != labels).all()
