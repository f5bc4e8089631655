"""Evaluation metrics, defined the way the IEMOCAP literature means them.

* WA (weighted accuracy) = overall accuracy = correct / total.
* UA (unweighted accuracy) = mean over classes of per-class recall (balanced accuracy).
* macro-F1 = unweighted mean of per-class F1.

Classes are ``range(n_classes)``; a class absent from ``y_true`` is left out of UA (its
recall is undefined) but counts in macro-F1 with F1 = 0 if it was predicted.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predictions."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def weighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def unweighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    m = confusion(y_true, y_pred, n_classes)
    support = m.sum(1)
    present = support > 0
    return float(np.mean(np.diag(m)[present] / support[present]))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    m = confusion(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(float)
    precision = np.divide(tp, m.sum(0), out=np.zeros_like(tp), where=m.sum(0) > 0)
    recall = np.divide(tp, m.sum(1), out=np.zeros_like(tp), where=m.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    used = (m.sum(0) + m.sum(1)) > 0
    return float(f1[used].mean())


def all_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    return {
        "wa": weighted_accuracy(y_true, y_pred),
        "ua": unweighted_accuracy(y_true, y_pred, n_classes),
        "f1": macro_f1(y_true, y_pred, n_classes),
        "confusion": confusion(y_true, y_pred, n_classes).tolist(),
    }
