"""The report's cells (:mod:`mger.models.report`): figures as percentages with their SD and
intervals, p-values with Holm's adjustment, and the sentences that claim a difference only where
the adjusted p is below ``ALPHA``."""

from __future__ import annotations

from mger.models.report_rows import Experiment
from mger.models.stats import ALPHA, format_p, holm, paired_test


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def mean_sd(x: dict) -> str:
    return f"{100 * x['mean']:.2f} ± {100 * x['std']:.2f}"


SD_NOTE = "mean ± SD over folds (ddof=1)"
_INTERVALS = ("ci95", "ci95_clustered", "ci95_folds")  # the metrics keys of a row's 95% intervals


def _interval_kind(m: dict, key: str) -> str:
    return {"ci95_clustered": f"{m.get('clustered_by', 'dialogue')}s", "ci95_folds": "folds t"}.get(key, "utterances")


def widest_interval(m: dict, metric: str = "ua") -> tuple[float, float, str]:
    """The widest of a row's 95% intervals of ``metric`` (utterance bootstrap, clustered
    bootstrap, t over folds; those the metrics hold), and which it is."""
    present = [(key, m[metric][key]) for key in _INTERVALS if m[metric].get(key)]
    key, (lo, hi) = max(present, key=lambda kv: kv[1][1] - kv[1][0])
    return lo, hi, _interval_kind(m, key)


def ci_cell(m: dict) -> str:
    lo, hi, kind = widest_interval(m)
    return f"[{pct(lo)}, {pct(hi)}] {kind}"


def p_cells(p: float, adjusted: float | None) -> str:
    """'raw | Holm' cells of a table."""
    return f"{format_p(p)} | {format_p(adjusted) if adjusted is not None else '–'}"


def paired_tests(pairs: list[tuple[Experiment, Experiment]]) -> list[dict | str]:
    """The paired test (system, baseline) of each pair, each with Holm-adjusted p-values over the
    family (per metric: ``p_holm``), or the reason it could not run."""
    out: list[dict | str] = []
    for system, base in pairs:
        try:
            out.append(paired_test(system.predictions, base.predictions))
        except ValueError as err:
            out.append(str(err))
    for metric in ("ua", "wa"):
        adjusted = holm([t[metric]["p"] if isinstance(t, dict) else None for t in out])
        for t, adj in zip(out, adjusted):
            if isinstance(t, dict):
                t[metric]["p_holm"] = adj
    return out


def findings(pairs: list[tuple[str, str]], tests: list[dict | str], metric: str = "ua") -> str:
    """The one sentence of a table that claims differences: only those whose Holm-adjusted p < ALPHA."""
    held = [
        f"{system} vs {base} ({100 * t[metric]['delta']:+.2f} {metric.upper()}, Holm p {format_p(t[metric]['p_holm'])})"
        for (system, base), t in zip(pairs, tests)
        if isinstance(t, dict) and t[metric]["p_holm"] < ALPHA
    ]
    head = f"Differences in {metric.upper()} that hold after Holm's correction within this table (adjusted p < {ALPHA})"
    if not held:
        return f"{head}: none; no difference here is distinguishable from noise at this level."
    return f"{head}: {'; '.join(held)}. No other difference here is distinguishable from noise at this level."
