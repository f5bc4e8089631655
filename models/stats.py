"""Statistics of a results table, computed from per-utterance predictions alone.

Conventions (stated in every report):

* **Fold-averaged** WA / UA / F1 (the main table): the metric of each (fold, seed) cell, averaged
  over seeds within a fold, then mean ± std over the folds; ``seed_std`` is the std over seeds of
  the fold-averaged value.  **Pooled**: the metric over all folds' test utterances at once, per
  seed, averaged over seeds (some papers report this one).
* **95% confidence interval** of fold-averaged WA and UA: percentile bootstrap over test
  utterances, resampled with replacement *within each fold* (the same resample for every seed),
  ``n_boot`` resamples from a fixed generator, so the interval is reproducible.
* **Paired test** of two systems on the same (utterance, fold, seed) rows: approximate
  randomisation (a permutation test): each row's two predictions are swapped with probability
  1/2, ``n_perm`` times; p = (1 + #{|Δ*| ≥ |Δ|}) / (n_perm + 1), two-sided, where Δ is the
  difference in fold-averaged UA (or WA).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mger.models.metrics import all_metrics
from mger.models.predictions import Predictions

N_BOOT = 1000
N_PERM = 2000
METHOD = (
    f"fold-averaged: each fold's metric averaged over seeds, then mean ± std over folds; pooled: over all "
    f"folds' test utterances at once, mean over seeds; ci95: percentile bootstrap of the fold-averaged value, "
    f"test utterances resampled within folds ({N_BOOT} resamples); paired tests: approximate randomisation "
    f"({N_PERM} permutations, two-sided); validation: the fold's validation speaker (mger.core.splits), which "
    f"chose the epoch and the late-fusion weights"
)


def _cells(p: Predictions) -> dict[tuple[int, int], np.ndarray]:
    """(fold, seed) → row indices ordered by utterance id; every seed of a fold must hold the
    same utterances (else the bootstrap and the pairing would compare different things)."""
    cells: dict[tuple[int, int], np.ndarray] = {}
    for fold in np.unique(p.fold):
        ref = None
        for seed in np.unique(p.seed):
            idx = np.flatnonzero((p.fold == fold) & (p.seed == seed))
            idx = idx[np.argsort(p.utt_ids[idx], kind="stable")]
            if ref is not None and not np.array_equal(p.utt_ids[idx], ref):
                raise ValueError(f"fold {fold}: seed {seed} has other test utterances than seed {p.seed[0]}")
            ref = p.utt_ids[idx]
            cells[(int(fold), int(seed))] = idx
    return cells


def _fold_average(values: dict[tuple[int, int], np.ndarray | float]) -> np.ndarray | float:
    """Mean over folds of the mean over seeds."""
    folds = sorted({f for f, _ in values})
    return np.mean([np.mean([v for (f, _), v in values.items() if f == fold], axis=0) for fold in folds], axis=0)


def _rates(
    labels: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """WA and UA of weighted rows. labels (n,), correct (R, n), weights (R, n) → (R,), (R,)."""
    onehot = np.eye(n_classes)[labels]
    support = weights @ onehot
    hits = (weights * correct) @ onehot
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
    ua = recall.sum(1) / present.sum(1)
    wa = (weights * correct).sum(1) / weights.sum(1)
    return wa, ua


def summarize(p: Predictions, n_boot: int = N_BOOT) -> dict:
    """Fold-averaged, pooled and per-class figures, and bootstrap CIs; fractions in [0, 1]."""
    n = len(p.classes)
    cells = _cells(p)
    cell_metrics = {k: all_metrics(p.label[i], p.pred[i], n) for k, i in cells.items()}
    folds, seeds = sorted({f for f, _ in cells}), sorted({s for _, s in cells})
    out: dict = {}
    ci = bootstrap_ci(p, n_boot)
    for m in ("wa", "ua", "f1"):
        grid = np.array([[cell_metrics[(f, s)][m] for f in folds] for s in seeds])  # (seeds, folds)
        out[m] = {
            "mean": float(grid.mean(0).mean()),
            "std": float(grid.mean(0).std()),
            "seed_std": float(grid.mean(1).std()),
        } | ({"ci95": ci[m]} if m in ci else {})
    pooled = [all_metrics(p.label[p.seed == s], p.pred[p.seed == s], n) for s in seeds]
    out["pooled"] = {m: float(np.mean([x[m] for x in pooled])) for m in ("wa", "ua", "f1")}
    recall = []
    for s in seeds:
        cm = np.array(all_metrics(p.label[p.seed == s], p.pred[p.seed == s], n)["confusion"], float)
        recall.append(np.divide(np.diag(cm), cm.sum(1), out=np.full(n, np.nan), where=cm.sum(1) > 0))
    out["per_class_recall"] = {c: float(np.mean([r[k] for r in recall])) for k, c in enumerate(p.classes)}
    out["folds"] = {
        str(f): {m: float(np.mean([cell_metrics[(f, s)][m] for s in seeds])) for m in ("wa", "ua", "f1")}
        | {
            "n_test": int(len(cells[(f, seeds[0])])),
            "seeds": {str(s): {m: float(cell_metrics[(f, s)][m]) for m in ("wa", "ua", "f1")} for s in seeds},
        }
        for f in folds
    }
    out["confusion"] = np.sum([cell_metrics[k]["confusion"] for k in cells], axis=0).tolist()
    return out


def bootstrap_ci(p: Predictions, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CIs of fold-averaged WA and UA, resampling test utterances within folds."""
    rng = np.random.default_rng(seed)
    cells = _cells(p)
    wa: dict[tuple[int, int], np.ndarray] = {}
    ua: dict[tuple[int, int], np.ndarray] = {}
    for fold in sorted({f for f, _ in cells}):
        keys = [k for k in cells if k[0] == fold]
        size = len(cells[keys[0]])
        weights = rng.multinomial(size, np.full(size, 1 / size), size=n_boot).astype(float)
        for k in keys:
            i = cells[k]
            wa[k], ua[k] = _rates(p.label[i], (p.pred[i] == p.label[i])[None].astype(float), weights, len(p.classes))
    tail = 100 * (1 - level) / 2
    return {
        name: [float(x) for x in np.percentile(_fold_average(v), [tail, 100 - tail])]
        for name, v in (("wa", wa), ("ua", ua))
    }


def paired_test(a: Predictions, b: Predictions, n_perm: int = N_PERM, seed: int = 0) -> dict[str, dict[str, float]]:
    """Approximate randomisation test of ``a`` vs ``b`` on the same rows: per metric (``wa``,
    ``ua``) the observed Δ = a − b (fold-averaged) and its two-sided p-value."""
    if sorted(a.key()) != sorted(b.key()):
        raise ValueError("paired test needs the same (utterance, fold, seed) rows in both systems")
    if a.classes != b.classes:
        raise ValueError(f"paired test needs the same classes ({a.classes} vs {b.classes})")
    rng = np.random.default_rng(seed)
    cells_a, cells_b = _cells(a), _cells(b)
    observed: dict[str, dict] = {"wa": {}, "ua": {}}
    permuted: dict[str, dict] = {"wa": {}, "ua": {}}
    for k in sorted(cells_a):
        ia, ib = cells_a[k], cells_b[k]
        labels = a.label[ia]
        ca, cb = (a.pred[ia] == labels).astype(float), (b.pred[ib] == labels).astype(float)
        swap = rng.random((n_perm, len(ia))) < 0.5
        ones = np.ones_like(swap, dtype=float)
        pa = _rates(labels, np.where(swap, cb, ca), ones, len(a.classes))
        pb = _rates(labels, np.where(swap, ca, cb), ones, len(a.classes))
        oa = _rates(labels, ca[None], ones[:1], len(a.classes))
        ob = _rates(labels, cb[None], ones[:1], len(a.classes))
        for j, m in enumerate(("wa", "ua")):
            observed[m][k] = float(oa[j][0] - ob[j][0])
            permuted[m][k] = pa[j] - pb[j]
    out = {}
    for m in ("wa", "ua"):
        delta, null = float(_fold_average(observed[m])), _fold_average(permuted[m])
        p_value = (1 + int(np.sum(np.abs(null) >= abs(delta) - 1e-12))) / (n_perm + 1)
        out[m] = {"delta": delta, "p": float(p_value)}
    return out


def breakdown(p: Predictions, group_of: Callable[[str], str]) -> dict[str, dict[str, float]]:
    """Pooled WA and UA (mean over seeds) per group of test utterances (e.g. improvised vs
    scripted), with the number of distinct utterances in each group."""
    groups = np.array([group_of(u) for u in p.utt_ids.tolist()])
    out = {}
    for g in sorted(set(groups.tolist())):
        sub = p.where(groups == g)
        per_seed = [
            all_metrics(sub.label[sub.seed == s], sub.pred[sub.seed == s], len(p.classes)) for s in np.unique(sub.seed)
        ]
        out[g] = {
            "n": int(len(np.unique(sub.utt_ids))),
            "wa": float(np.mean([x["wa"] for x in per_seed])),
            "ua": float(np.mean([x["ua"] for x in per_seed])),
        }
    return out
