"""The linear-probe reference: a standardised multinomial logistic regression on utterance-level
inputs (each input's rows averaged per utterance, inputs concatenated).

A model earns its complexity only by beating this probe on the same inputs, folds and seeds,
so every results table carries probe rows (``model: probe``) and each model row its paired
difference to the probe of its inputs.  The regularisation strength ``C`` is chosen on the
fold's validation speakers only (highest validation UA; ties go to the stronger
regularisation); the test data choose nothing.  lbfgs on standardised inputs is
deterministic, so every training seed gives the same probe.

The fits run with BLAS limited to one thread: on these small matrices (hundreds of rows) a
multi-threaded BLAS spends its time synchronising, and a probe took 20-60x longer
(``benchmarks/bench_train.py --probe`` prints both side by side).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch

from mger.features.cache import Ragged
from mger.models.metrics import unweighted_accuracy

C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def item_means(rows: Ragged) -> np.ndarray:
    """(B, D) float64: the mean of each item's rows (extra axes, e.g. layers, flattened)."""
    data, starts, lengths = rows.data.cpu(), rows.starts.cpu(), rows.lengths.cpu()
    data = data.reshape(len(data), -1)
    idx = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    gather = (
        torch.cat([torch.arange(s, s + n) for s, n in zip(starts.tolist(), lengths.tolist())])
        if len(idx)
        else torch.zeros(0, dtype=torch.long)
    )
    sums = torch.zeros(len(lengths), data.shape[1], dtype=torch.float64)
    sums.index_add_(0, idx, data[gather].double())
    return (sums / lengths.clamp(min=1)[:, None].double()).numpy()


def probe_inputs(inputs: dict[str, Ragged], names: Sequence[str]) -> np.ndarray:
    """The probe's design matrix: item means of ``names``, concatenated in that order."""
    return np.concatenate([item_means(inputs[n]) for n in names], axis=1)


class LinearProbe:
    """``fit`` on training rows with ``C`` chosen on validation rows; ``predict_proba``."""

    def __init__(
        self, n_classes: int, c_grid: Sequence[float] = C_GRID, max_iter: int = 3000, blas_threads: int | None = 1
    ) -> None:
        self.n_classes, self.c_grid, self.max_iter = n_classes, tuple(c_grid), max_iter
        self.blas_threads = blas_threads  # None: BLAS's own default

    def _model(self, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=self.max_iter))

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> "LinearProbe":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads):
            return self._fit(x, y, x_val, y_val)

    def _fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> "LinearProbe":
        self.val_ua_: dict[float, float] = {}
        best = None
        for c in self.c_grid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs convergence notes at tiny C: the score decides
                model = self._model(c).fit(x, y)
            self.model_ = model
            ua = unweighted_accuracy(y_val, self.predict_proba(x_val).argmax(1), self.n_classes)
            self.val_ua_[c] = ua
            if best is None or ua > best[0]:
                best = (ua, c, model)
        self.val_ua, self.c_, self.model_ = best
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, n_classes); classes absent from the training rows get probability 0."""
        out = np.zeros((len(x), self.n_classes))
        out[:, self.model_.classes_] = self.model_.predict_proba(x)
        return out
