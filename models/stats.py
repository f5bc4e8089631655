"""Statistics of a results table, computed from per-utterance predictions alone.

Conventions (stated in every report, :data:`METHOD`):

* **Fold-averaged** WA / UA / F1 (the main table): the metric of each (fold, seed) cell, averaged
  over seeds within a fold, then mean ± SD over the folds, the SD with ddof=1 (the sample SD of
  the fold values; ddof=0 with one fold); ``seed_std`` is the SD (ddof=1) over seeds of the
  fold-averaged value.  **Pooled**: the metric over all folds' test utterances at once, per seed,
  averaged over seeds (some papers report this one).
* **Three 95% intervals** of fold-averaged WA and UA (F1: the fold interval only):

  - ``ci95``: percentile bootstrap over test utterances resampled with replacement *within each
    fold* (the same resample for every seed). It holds the trained models fixed, so it is
    *conditional on the trained models*: it ignores training variance and that utterances of one
    dialogue or speaker are not independent.
  - ``ci95_clustered``: the same, resampling whole clusters (IEMOCAP dialogues: the manifest's
    ``dialog``, a speaker where none is known) within each fold, every seed with the same resample.
  - ``ci95_folds``: a t-interval over folds, mean ± t(0.975, n_folds − 1) · SD / √n_folds of the
    per-fold values (seeds averaged first), clipped to [0, 1]; it carries training variance and the
    variation between sessions, with very few degrees of freedom.

  Bootstraps draw ``n_boot`` resamples from a fixed generator, so the intervals are reproducible.
* **Paired test** of two systems on the same (utterance, fold, seed) rows: approximate
  randomisation with the seed structure. Each system's correctness is averaged over seeds per
  (fold, utterance) first; each (fold, utterance) is then swapped between the systems with
  probability 1/2, ``n_perm`` times. Fold-averaged WA and UA are linear in per-utterance
  correctness (the labels fix every class's support), so this is exactly the test that applies *one*
  swap per (fold, utterance) to every seed at once; a fresh swap per seed would treat correlated
  seeds (a probe is the same in every seed) as independent evidence and reject a true null far too
  often (tests/test_stats.py simulates it). Three identical seeds give the p of one.
  p = (1 + #{|Δ*| ≥ |Δ|}) / (n_perm + 1), two-sided, Δ = difference in fold-averaged UA (or WA);
  with 10,000 permutations the smallest p is about 1e-4, shown as "< 0.001" (:func:`format_p`).
* **Multiple comparisons**: within each family of tests a report shows, Holm's step-down adjustment
  (:func:`holm`), printed beside the raw p; a difference is claimed only where the adjusted p < 0.05.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from mger.core.manifest import Utterance
from mger.models.metrics import all_metrics
from mger.models.predictions import Predictions

N_BOOT = 1000
N_PERM = 10_000
ALPHA = 0.05
_CHUNK_CELLS = 4_000_000  # permutations x utterances drawn at once: bounds the test's memory (~40 MB)
METHOD = (
    "fold-averaged: each fold's metric averaged over seeds, then mean ± SD over folds (ddof=1); pooled: over all "
    "folds' test utterances at once, mean over seeds; 95% intervals: (1) percentile bootstrap of the fold-averaged "
    f"value, test utterances resampled within folds ({N_BOOT} resamples), conditional on the trained models; "
    "(2) the same resampling whole dialogues within folds (a speaker where the manifest names no dialogue), the "
    "same resample for every seed; (3) a t-interval over folds (seeds averaged first, n_folds − 1 degrees of "
    "freedom, clipped to the metric's range); the main table shows the widest of the three and names it; paired tests: "
    f"approximate randomisation ({N_PERM} permutations, two-sided) with one swap per (fold, utterance) shared by "
    "every seed (each system's correctness averaged over seeds first), Holm-adjusted within each table, p < 0.001 "
    "printed as '< 0.001'; a difference is claimed only where the Holm-adjusted p < 0.05; validation: the fold's "
    "validation speakers (mger.core.splits), which chose the epoch and the late-fusion weights"
)


def sd(values: Sequence[float] | np.ndarray) -> float:
    """SD with ddof=1 (the sample SD), 0.0 for a single value: the "±" of every table."""
    x = np.asarray(values, dtype=float)
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def format_p(p: float) -> str:
    """A p-value for a table: three decimals, "< 0.001" below that (never "0.000")."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values of one family, in the input order; None (a test that
    could not run) stays None and does not count in the family. Sorted p_(1) ≤ … ≤ p_(m):
    adj_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))."""
    present = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(present, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(pvalues[i])))
        out[i] = running
    return out


def clusters_of(utterances: Iterable[Utterance]) -> tuple[dict[str, str], str]:
    """utt_id → its cluster for the clustered bootstrap (the row's dialogue, ``extras["dialog"]``
    where the corpus has one (IEMOCAP, MELD), else its speaker), and the unit's name for the report."""
    mapping, kinds = {}, set()
    for u in utterances:
        dialog = u.extra("dialog")
        mapping[u.utt_id] = f"dialog:{dialog}" if dialog else f"speaker:{u.speaker}"
        kinds.add("dialogue" if dialog else "speaker")
    unit = {frozenset({"dialogue"}): "dialogue", frozenset({"speaker"}): "speaker"}.get(
        frozenset(kinds), "dialogue (speaker where none)"
    )
    return mapping, unit


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


def fold_t_interval(per_fold: Sequence[float], level: float = 0.95) -> list[float] | None:
    """t-interval of the mean over folds: mean ± t(1 − α/2, n − 1) · SD(ddof=1) / √n, clipped to
    the metric's range [0, 1]; None with fewer than two folds."""
    x = np.asarray(per_fold, dtype=float)
    if x.size < 2:
        return None
    half = float(scipy_stats.t.ppf(0.5 + level / 2, x.size - 1)) * x.std(ddof=1) / np.sqrt(x.size)
    return [float(max(0.0, x.mean() - half)), float(min(1.0, x.mean() + half))]


def summarize(
    p: Predictions, n_boot: int = N_BOOT, groups: Mapping[str, str] | None = None, unit: str = "dialogue"
) -> dict:
    """Fold-averaged, pooled and per-class figures and the three intervals; fractions in [0, 1].
    ``groups`` (utt_id → cluster, :func:`clusters_of`) enables the clustered bootstrap, named ``unit``."""
    n = len(p.classes)
    cells = _cells(p)
    cell_metrics = {k: all_metrics(p.label[i], p.pred[i], n) for k, i in cells.items()}
    folds, seeds = sorted({f for f, _ in cells}), sorted({s for _, s in cells})
    out: dict = {}
    ci = bootstrap_ci(p, n_boot)
    clustered = bootstrap_ci(p, n_boot, groups=groups) if groups is not None else {}
    for m in ("wa", "ua", "f1"):
        grid = np.array([[cell_metrics[(f, s)][m] for f in folds] for s in seeds])  # (seeds, folds)
        out[m] = (
            {"mean": float(grid.mean(0).mean()), "std": sd(grid.mean(0)), "seed_std": sd(grid.mean(1))}
            | ({"ci95": ci[m]} if m in ci else {})
            | ({"ci95_clustered": clustered[m]} if m in clustered else {})
            | {"ci95_folds": fold_t_interval(grid.mean(0))}
        )
    if groups is not None:
        out["clustered_by"] = unit
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


def bootstrap_ci(
    p: Predictions,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    groups: Mapping[str, str] | None = None,
) -> dict[str, list[float]]:
    """Percentile CIs of fold-averaged WA and UA, resampling test utterances within folds, or with
    ``groups`` (utt_id → cluster) whole clusters within folds; every seed of a fold gets the same
    resample (weights (n_boot, n) from one multinomial draw over the fold's k clusters)."""
    rng = np.random.default_rng(seed)
    cells = _cells(p)
    wa: dict[tuple[int, int], np.ndarray] = {}
    ua: dict[tuple[int, int], np.ndarray] = {}
    for fold in sorted({f for f, _ in cells}):
        keys = [k for k in cells if k[0] == fold]
        ids = p.utt_ids[cells[keys[0]]]
        if groups is None:
            member = np.arange(len(ids))
        else:
            missing = [u for u in ids.tolist() if u not in groups]
            if missing:
                raise ValueError(f"clustered bootstrap: utterance {missing[0]} has no cluster (dialogue or speaker)")
            _, member = np.unique([groups[u] for u in ids.tolist()], return_inverse=True)
        k = int(member.max()) + 1
        weights = rng.multinomial(k, np.full(k, 1 / k), size=n_boot).astype(float)[:, member]
        for key in keys:
            i = cells[key]
            wa[key], ua[key] = _rates(
                p.label[i], (p.pred[i] == p.label[i])[None].astype(float), weights, len(p.classes)
            )
    tail = 100 * (1 - level) / 2
    return {
        name: [float(x) for x in np.percentile(_fold_average(v), [tail, 100 - tail])]
        for name, v in (("wa", wa), ("ua", ua))
    }


def _contributions(a: Predictions, b: Predictions) -> dict[str, np.ndarray]:
    """Per (fold, utterance), sorted: its share of Δ = a − b in fold-averaged WA and UA, from each
    system's correctness averaged over seeds. Summing a metric's vector gives Δ; flipping an
    entry's sign swaps that utterance's predictions between the systems in every seed."""
    cells_a, cells_b = _cells(a), _cells(b)
    folds = sorted({f for f, _ in cells_a})
    shares: dict[str, list[np.ndarray]] = {"wa": [], "ua": []}
    for fold in folds:
        keys = [k for k in sorted(cells_a) if k[0] == fold]
        labels = a.label[cells_a[keys[0]]]
        diff = np.mean([(a.pred[cells_a[k]] == labels).astype(float) - (b.pred[cells_b[k]] == labels) for k in keys], 0)
        support = np.bincount(labels, minlength=len(a.classes))
        shares["wa"].append(diff / len(labels) / len(folds))
        shares["ua"].append(diff / support[labels] / np.count_nonzero(support) / len(folds))
    return {m: np.concatenate(v) for m, v in shares.items()}


def paired_test(a: Predictions, b: Predictions, n_perm: int = N_PERM, seed: int = 0) -> dict[str, dict[str, float]]:
    """Approximate randomisation test of ``a`` vs ``b`` on the same rows, one swap per (fold,
    utterance) shared by every seed (module docstring): per metric (``wa``, ``ua``) the observed
    Δ = a − b (fold-averaged) and its two-sided p-value. Vectorised: the n_perm × n swap masks are
    drawn as packed random bits in chunks of at most ``_CHUNK_CELLS``."""
    if sorted(a.key()) != sorted(b.key()):
        raise ValueError("paired test needs the same (utterance, fold, seed) rows in both systems")
    if a.classes != b.classes:
        raise ValueError(f"paired test needs the same classes ({a.classes} vs {b.classes})")
    shares = _contributions(a, b)
    d = np.stack([shares["wa"], shares["ua"]], 1)  # (n, 2)
    observed = d.sum(0)
    n = len(d)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(2, dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_perm, step):
        rows = min(step, n_perm - start)
        swap = np.unpackbits(rng.integers(0, 256, (rows, (n + 7) // 8), dtype=np.uint8), axis=1, count=n)
        null = observed - 2 * (swap @ d)  # a swapped entry changes sign: Δ* = Σ d − 2 Σ_swapped d
        exceed += np.sum(np.abs(null) >= np.abs(observed) - 1e-12, axis=0)
    return {
        m: {"delta": float(observed[j]), "p": float((1 + exceed[j]) / (n_perm + 1))} for j, m in enumerate(("wa", "ua"))
    }


def paired_interval(
    a: Predictions, b: Predictions, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile CIs of Δ = a − b in fold-averaged WA and UA: test utterances resampled within
    folds, one resample for both systems and every seed, each utterance weighing its share of Δ
    as in :func:`paired_test` (class supports held at the fold's); conditional on the trained
    models."""
    shares = _contributions(a, b)
    d = np.stack([shares["wa"], shares["ua"]], 1)  # (n, 2), fold by fold in sorted order
    cells = _cells(a)
    rng = np.random.default_rng(seed)
    total, start = np.zeros((n_boot, 2)), 0
    for fold in sorted({f for f, _ in cells}):
        n = len(cells[min(k for k in cells if k[0] == fold)])
        weights = rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(float)
        total += weights @ d[start : start + n]
        start += n
    tail = 100 * (1 - level) / 2
    return {m: [float(x) for x in np.percentile(total[:, j], [tail, 100 - tail])] for j, m in enumerate(("wa", "ua"))}


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


def by_improvised(p: Predictions, utterances: Iterable[Utterance]) -> dict[str, dict[str, float]]:
    """:func:`breakdown` into improvised vs scripted test utterances where the rows carry
    ``extras["improvised"]`` (IEMOCAP); ``{}`` for a corpus without it."""
    kind = {
        u.utt_id: "improvised" if u.extra("improvised") else "scripted"
        for u in utterances
        if u.extra("improvised") is not None
    }
    if not kind or any(u not in kind for u in p.utt_ids.tolist()):
        return {}
    return breakdown(p, kind.__getitem__)
