"""results.md's title and protocol sentence (:mod:`mger.core.splits`): which protocol the folds
follow, what each fold tests, and, for a cross-corpus run, "cross-corpus: trained on X, tested on
Y" in the title, so its table is never read as a within-corpus result."""

from __future__ import annotations

from mger.core.config import Params


def run_protocol(params: Params, metrics: dict) -> dict:
    """The protocol the run's folds followed (``auto`` resolved, as the metrics record it), with
    the split params it ran under: ``{"protocol", "train_corpus", "test_corpus", "n_folds",
    "tested": fold → what it tests, "unused": name → count}``."""
    split = metrics.get("provenance", {}).get("split") or {
        "protocol": params.split.protocol,
        "train_corpus": params.split.train_corpus,
        "test_corpus": params.split.test_corpus,
        "n_folds": params.split.n_folds,
    }
    folds = metrics.get("folds", {})
    recorded = {entry.get("protocol") for entry in folds.values()} - {None}
    protocol = recorded.pop() if len(recorded) == 1 else split["protocol"]
    unused: dict[str, int] = {}
    for entry in folds.values():
        for name, n in (entry.get("unused") or {}).items():
            unused[name] = max(unused.get(name, 0), n)
    return split | {
        "protocol": protocol,
        "tested": {f: entry.get("tested", []) for f, entry in folds.items()},
        "unused": unused,
    }


def results_title(params: Params, metrics: dict) -> str:
    """results.md's first line: ``# Results``, or for a cross-corpus run ``# Results (
    cross-corpus: trained on X, tested on Y)``."""
    run = run_protocol(params, metrics)
    if run["protocol"] == "cross_corpus":
        return f"# Results (cross-corpus: trained on {run['train_corpus']}, tested on {run['test_corpus']})"
    return "# Results"


def protocol_sentence(params: Params, metrics: dict) -> str:
    """One sentence: the protocol, its number of folds, what they test and what was left unused
    (IEMOCAP's groups are its sessions: leave-one-session-out)."""
    run = run_protocol(params, metrics)
    protocol, n = run["protocol"], len(run["tested"])
    if protocol == "cross_corpus":
        text = (
            f"Cross-corpus: trained and validated on {run['train_corpus']}, tested on every utterance of "
            f"{run['test_corpus']}; one fold."
        )
    elif protocol == "predefined":
        tested = sorted({t for ts in run["tested"].values() for t in ts})
        text = f"The corpus's predefined partitions: one fold, testing {', '.join(tested) or 'the test partition'}."
    elif protocol == "speaker_folds":
        text = f"Speaker-independent folds: {n} folds, each testing its own speakers (drawn by `split.seed`)."
    else:
        iemocap = getattr(params.prepare, "corpus", "iemocap") == "iemocap" and not getattr(
            params.prepare, "corpora", {}
        )
        groups = [t for f in sorted(run["tested"], key=int) for t in run["tested"][f]]
        text = f"Leave-one-{'session' if iemocap else 'group'}-out over {n} folds."
        text += f" Fold k tests the k-th group: {', '.join(groups)}." if groups else ""
    if run["unused"]:
        text += " Unused: " + ", ".join(f"{k} ({v} utterances)" for k, v in sorted(run["unused"].items())) + "."
    if n == 1:  # predefined, cross_corpus: an SD over one fold is no spread
        text += ONE_FOLD
    return text


ONE_FOLD = " With one fold, every ± below is 0.00 (no spread over folds): the 95% intervals carry the uncertainty."
