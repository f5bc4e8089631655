"""The one split module: each protocol's folds, and the test, validation and training
utterances of a fold.

Protocols (``split.protocol``, :class:`mger.core.config_corpus.SplitConfig`):

- ``loso``: leave one ``group`` out.  Fold ``k`` (1-based) tests the ``k``-th group in sorted
  order (IEMOCAP: ``Ses01``..``Ses05``, so fold ``k`` is session ``k``).
- ``predefined``: one fold (fold 1): the corpus's own partitions (:data:`PARTITIONS`; our
  reading: MSP-Podcast trains on ``Train``, validates on ``Development``, tests on ``Test1``;
  MELD ``train`` / ``dev`` / ``test``).  Other partitions (MSP-Podcast ``Test2``) are unused and
  counted in :attr:`FoldSplit.unused`.  A corpus with no validation partition has validation
  carved from its training partition as below.
- ``speaker_folds``: ``split.n_folds`` speaker-independent folds; each gender's speakers, in an
  order drawn by ``split.seed`` (a stable hash, independent of the manifest's order), are dealt
  round-robin to the folds (:func:`speaker_fold_of`), so every fold holds as many speakers of
  each gender as the others, give or take one.
- ``cross_corpus``: one fold (fold 1): training and validation from ``split.train_corpus``,
  test on every utterance of ``split.test_corpus``; other corpora unused and counted.
- ``auto``: the corpus's default (:data:`DEFAULT_PROTOCOLS`, by the manifest's ``corpus``).

Validation (every protocol except ``predefined`` with a validation partition) is every
utterance of a few speakers of the *training* data (:func:`validation_speakers`), chosen by the
fold and ``split.seed`` alone (a stable hash, independent of the order utterances come in),
never by a training seed: fine-tuning, every classifier seed, the benchmarks and the tests of
fold ``k`` see the same validation speakers, so a classifier never early-stops or fits fusion
weights on a speaker its fold's fine-tuned encoder learnt from.  The test data is never used to
choose anything.

Balanced validation: where the manifest gives genders (``Utterance.gender``; empty or
``unknown`` counts as none), one speaker of each gender the training data holds, taken from
different training groups where the corpus allows (IEMOCAP: one woman and one man of two
different sessions; with speaker folds each speaker is its own group).  A corpus without
genders validates on two speakers, again from two groups where possible.  At least one training
speaker is always left to train on: with too few speakers the validation set shrinks to fewer
speakers (one gender then), and :attr:`FoldSplit.warning` says so.

A fold whose training data holds a single speaker (tiny test corpora) falls back to every fifth
training utterance for validation; :attr:`FoldSplit.val_speakers` then lists that speaker,
:attr:`FoldSplit.speaker_disjoint` is ``False`` and :attr:`FoldSplit.warning` names the fold
and the fallback (the stages print it and the metrics record it).

Statistics fitted on validation (late-fusion weights) are scored out of sample on the two
halves of :func:`validation_halves`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence, Union

from mger.core.config_corpus import SplitConfig
from mger.core.manifest import Utterance, groups

# The default protocol of each built-in corpus (``split.protocol: auto``); the readers' registry
# (mger.corpus.readers) states the same per reader, tests/test_splits.py checks they agree.
DEFAULT_PROTOCOLS: dict[str, str] = {
    "iemocap": "loso",
    "msp_podcast": "predefined",
    "meld": "predefined",
    "crema_d": "speaker_folds",
    "ravdess": "speaker_folds",
    "csv": "speaker_folds",
}

# ``predefined``: the partitions (``Utterance.partition``, compared lower-cased) that train,
# validate and test, per corpus; any other corpus with partitions (csv): ``_default``.
PARTITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "msp_podcast": {"train": ("train",), "val": ("development",), "test": ("test1",)},
    "meld": {"train": ("train",), "val": ("dev",), "test": ("test",)},
    "_default": {"train": ("train",), "val": ("dev", "development", "val", "validation"), "test": ("test",)},
}

SplitSpec = Union[SplitConfig, int]  # a SplitConfig, or a bare split seed (protocol auto)


class SplitError(ValueError):
    """A fold that cannot be split (no such fold, too few utterances, a protocol the corpus lacks)."""


@dataclass(frozen=True)
class FoldSplit:
    """Indices into the utterance list a split was made from; ``validation``: how the
    validation set was chosen, in words (recorded in the metrics); ``groups``: what the fold
    tests (loso: its group; speaker_folds: its speakers; predefined: the test partition(s);
    cross_corpus: the test corpus); ``unused``: utterances neither trained, validated nor tested
    on, counted by partition or corpus (MSP-Podcast ``Test2``)."""

    fold: int
    train: list[int]
    val: list[int]
    test: list[int]
    val_speakers: list[str]
    speaker_disjoint: bool
    validation: str = ""
    warning: str | None = None
    protocol: str = "loso"
    groups: list[str] = field(default_factory=list)
    unused: dict[str, int] = field(default_factory=dict)

    def ids(self, utts: Sequence[Utterance], part: str) -> list[str]:
        """The utterance ids of ``part`` (``train``, ``val`` or ``test``)."""
        return [utts[i].utt_id for i in getattr(self, part)]

    def leaked(self, utts: Sequence[Utterance]) -> list[int]:
        """Training or validation rows that belong to what the fold tests (its group, speakers,
        test partition or test corpus, :attr:`groups`): empty by construction; a stage that
        must never train on test data checks it rather than trusting it silently."""
        if self.protocol == "cross_corpus":
            return [i for i in self.train + self.val if any(in_corpus(utts[i], c) for c in self.groups)]
        key = _TESTED_BY.get(self.protocol, lambda u: u.group)
        tested = set(self.groups)
        return [i for i in self.train + self.val if key(utts[i]) in tested]


_TESTED_BY: dict[str, Callable[[Utterance], str]] = {  # what FoldSplit.groups names, per protocol
    "loso": lambda u: u.group,
    "speaker_folds": lambda u: u.speaker,
    "predefined": lambda u: u.partition,
}


@dataclass(frozen=True)
class Speaker:
    """A training speaker: the groups it speaks in and its gender (``""`` when unknown)."""

    groups: frozenset[str]
    gender: str


_UNKNOWN_GENDERS = {"", "unknown", "u", "?", "none", "na", "n/a"}


def _gender(value: str) -> str:
    """The manifest's gender field, or ``""`` when it says nothing."""
    value = (value or "").strip()
    return "" if value.lower() in _UNKNOWN_GENDERS else value


def _config(split: SplitSpec) -> SplitConfig:
    return SplitConfig(seed=split) if isinstance(split, int) else split


def resolve_protocol(utts: Sequence[Utterance], split: SplitSpec = 0) -> str:
    """``split.protocol``, with ``auto`` resolved to the default of the manifest's corpus
    (:data:`DEFAULT_PROTOCOLS`); a corpus without a default: ``loso`` when its rows name two or
    more groups, else ``speaker_folds``.  Corpora of different defaults in one manifest are
    refused: the protocol must then be chosen."""
    cfg = _config(split)
    if cfg.protocol != "auto":
        return cfg.protocol
    corpora = sorted({u.corpus for u in utts})
    chosen = {c: DEFAULT_PROTOCOLS.get(c) for c in corpora}
    for c in corpora:
        if chosen[c] is None:
            named = {u.group for u in utts if u.corpus == c}
            chosen[c] = "loso" if len(named) >= 2 and "" not in named else "speaker_folds"
    found = sorted(set(chosen.values()))
    if len(found) > 1:
        raise SplitError(
            f"split.protocol auto: the manifest combines corpora with different default protocols "
            f"({', '.join(f'{c}: {p}' for c, p in chosen.items())}); set split.protocol (e.g. cross_corpus "
            "with split.train_corpus and split.test_corpus)"
        )
    if not found:
        raise SplitError("split: no utterances to split")
    return found[0]


Unit = Callable[[Utterance], str]  # what validation speakers are drawn apart by (a group, or the speaker)


def training_speakers(
    utts: Sequence[Utterance], indices: Sequence[int], unit: Unit | None = None
) -> dict[str, Speaker]:
    """speaker → :class:`Speaker` over ``utts[indices]`` (its groups by ``unit``, default
    ``Utterance.group``); a speaker given two genders is refused."""
    unit = unit or (lambda u: u.group)
    found: dict[str, tuple[set[str], set[str]]] = {}
    for i in indices:
        grps, genders = found.setdefault(utts[i].speaker, (set(), set()))
        grps.add(unit(utts[i]))
        genders.add(_gender(utts[i].gender))
    out = {}
    for name, (grps, genders) in found.items():
        known = genders - {""}
        if len(known) > 1:
            raise SplitError(f"speaker {name!r} has several genders in the manifest ({', '.join(sorted(known))})")
        out[name] = Speaker(frozenset(grps), next(iter(known), ""))
    return out


def _index(n: int, fold: int, split_seed: int) -> int:
    """A position among ``n`` candidates by a stable hash of (fold, split seed)."""
    digest = hashlib.sha256(f"mger-split:{split_seed}:{fold}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _pick(candidates: list[tuple[str, ...]], fold: int, split_seed: int) -> tuple[str, ...]:
    """One of the sorted ``candidates`` by a stable hash of (fold, split seed)."""
    return candidates[_index(len(candidates), fold, split_seed)]


def _nth_of_product(pools: list[list[str]], k: int) -> tuple[str, ...]:
    """``list(itertools.product(*pools))[k]`` without listing the product."""
    out = []
    for pool in reversed(pools):
        k, r = divmod(k, len(pool))
        out.append(pool[r])
    return tuple(reversed(out))


def _nth_pair(names: list[str], k: int) -> tuple[str, str]:
    """``list(itertools.combinations(names, 2))[k]`` without listing the pairs."""
    for a in range(len(names) - 1):
        row = len(names) - 1 - a
        if k < row:
            return names[a], names[a + 1 + k]
        k -= row
    raise IndexError(k)


def _apart(chosen: tuple[str, ...], speakers: Mapping[str, Speaker]) -> bool:
    """Whether the speakers of ``chosen`` share no group."""
    seen: set[str] = set()
    for name in chosen:
        if seen & speakers[name].groups:
            return False
        seen |= speakers[name].groups
    return True


def validation_speakers(
    speakers: Mapping[str, Speaker], fold: int, split_seed: int, apart_by: str | None = "groups"
) -> tuple[list[str], str]:
    """The validation speakers of ``fold`` among the training ``speakers`` and how they were
    chosen: one per gender (or two when no gender is known), from different groups where
    possible, always leaving a training speaker; one set of all candidates, picked by a
    stable hash of (fold, split seed), so the input order never matters.  ``apart_by``: what
    the groups are called in the description (None: each speaker is its own group, said nothing)."""
    if not speakers:
        raise SplitError(f"fold {fold}: no training speakers to validate on")
    names = sorted(speakers)
    by_gender: dict[str, list[str]] = {}
    for name in names:
        if speakers[name].gender:
            by_gender.setdefault(speakers[name].gender, []).append(name)
    genders = sorted(by_gender)
    if len(genders) >= 2 and len(genders) < len(names):
        pools = [by_gender[g] for g in genders]
        how = f"one speaker per gender ({', '.join(genders)})"
    else:
        size = min(2, len(names) - 1) or 1
        pools = [names] * size  # combinations, not the product, of these
        how = "two speakers" if size == 2 else "one speaker"
        if genders:
            how += f" (training data gives {'one gender' if len(genders) == 1 else 'too few speakers'})"
        else:
            how += " (no gender in the manifest)"
    by_product = "per gender" in how
    if _own_groups(speakers):  # every set is apart: the hash's pick without listing the sets
        if by_product:
            chosen = _nth_of_product(pools, _index(math.prod(len(p) for p in pools), fold, split_seed))
        elif len(pools) == 2:
            chosen = _nth_pair(names, _index(len(names) * (len(names) - 1) // 2, fold, split_seed))
        else:
            chosen = (names[_index(len(names), fold, split_seed)],)
        apart_found = True
    else:
        sets = list(itertools.product(*pools)) if by_product else list(itertools.combinations(names, len(pools)))
        apart = [g for g in sets if _apart(g, speakers)]
        chosen, apart_found = _pick(apart or sets, fold, split_seed), bool(apart)
    if len(chosen) > 1 and apart_by:
        how += (
            f" from different training {apart_by}"
            if apart_found
            else f" ({apart_by} shared: no two {apart_by} to draw from)"
        )
    return sorted(chosen), how


def _own_groups(speakers: Mapping[str, Speaker]) -> bool:
    """Whether each speaker speaks in one group of its own (so no two speakers share a group)."""
    seen: set[str] = set()
    for sp in speakers.values():
        if len(sp.groups) != 1 or sp.groups & seen:
            return False
        seen |= sp.groups
    return True


def _carve(
    utts: Sequence[Utterance], rest: list[int], fold: int, split_seed: int, unit: Unit | None, apart_by: str | None
) -> tuple[list[int], list[int], list[str], bool, str, str | None]:
    """Validation carved from the training candidates ``rest``: (train, val, validation
    speakers, speaker-disjoint, how, warning); one speaker only: every fifth utterance."""
    where = f"fold {fold}" if fold else "final split"
    speakers = training_speakers(utts, rest, unit)
    chosen, how = validation_speakers(speakers, fold, split_seed, apart_by)
    val = [i for i in rest if utts[i].speaker in chosen]
    train = [i for i in rest if utts[i].speaker not in chosen]
    disjoint, warning = bool(train), None
    if not disjoint:  # one training speaker: every fifth training utterance validates
        rest = sorted(rest, key=lambda i: utts[i].utt_id)  # independent of the manifest's order
        val, train = rest[::5], [i for k, i in enumerate(rest) if k % 5]
        how = f"every fifth training utterance (the training data holds one speaker, {chosen[0]})"
        warning = f"{where}: validation is {how}: not speaker-disjoint from training"
    elif "per gender" not in how and any(s.gender for s in speakers.values()):
        warning = f"{where}: validation is {how}: not balanced by gender"
    return sorted(train), sorted(val), sorted({utts[i].speaker for i in val}), disjoint, how, warning


def _roles(utts: Sequence[Utterance]) -> list[str]:
    """``predefined``: each row's role (train, val, test) by its corpus's :data:`PARTITIONS`, or
    its partition name when unused; a corpus without partitions is refused in one line."""
    out = []
    for u in utts:
        if not u.partition:
            raise SplitError(
                f"split.protocol predefined: {u.corpus} utterance {u.utt_id} has no partition (the corpus has "
                "no predefined split); use split.protocol loso or speaker_folds"
            )
        table = PARTITIONS.get(u.corpus, PARTITIONS["_default"])
        part = u.partition.lower()
        out.append(next((role for role, names in table.items() if part in names), u.partition))
    return out


def speaker_fold_of(utts: Sequence[Utterance], n_folds: int, split_seed: int) -> dict[str, int]:
    """``speaker_folds``: speaker → fold (1..``n_folds``).  Each gender's speakers (known
    genders sorted, unknown last) in the order of a stable hash of (split seed, speaker) are
    dealt round-robin, the deal going on from one gender to the next, so folds differ by at
    most one speaker overall and per gender; independent of the manifest's order."""
    speakers = training_speakers(utts, range(len(utts)))
    genders = {sp.gender for sp in speakers.values()}
    if len(speakers) < n_folds:
        raise SplitError(
            f"split.n_folds is {n_folds} but the manifest has {len(speakers)} speaker(s): speaker folds need "
            "a speaker per fold at least"
        )
    order = sorted(genders, key=lambda g: (g == "", g))
    out, k = {}, 0
    for gender in order:
        names = [n for n, sp in speakers.items() if sp.gender == gender]
        names.sort(key=lambda n: (hashlib.sha256(f"mger-folds:{split_seed}:{n}".encode()).digest(), n))
        for name in names:
            out[name] = k % n_folds + 1
            k += 1
    return out


def fold_numbers(utts: Sequence[Utterance], split: SplitSpec = 0) -> list[int]:
    """The folds the protocol gives ``utts``: loso one per group, speaker_folds ``n_folds``,
    predefined and cross_corpus one (fold 1)."""
    cfg = _config(split)
    protocol = resolve_protocol(utts, cfg)
    if protocol == "loso":
        return list(range(1, len(groups(utts)) + 1))
    if protocol == "speaker_folds":
        return list(range(1, cfg.n_folds + 1))
    return [1]


def check_folds(utts: Sequence[Utterance], split: SplitSpec, folds: Sequence[int], what: str) -> None:
    """Refuse, in one line, a fold number of ``what`` (``finetune.folds``) the protocol does not have."""
    have = fold_numbers(utts, split)
    missing = [f for f in folds if f not in have]
    if missing:
        protocol = resolve_protocol(utts, split)
        listed = ", ".join(map(str, have))
        raise SplitError(
            f"{what}: fold {missing[0]} does not exist: split.protocol {protocol} gives {len(have)} fold(s) "
            f"({listed}); set {what}: [{listed}]"
            if what.endswith("folds")
            else f"{what} {missing[0]}: no such fold: split.protocol {protocol} gives {len(have)} fold(s) ({listed})"
        )


@dataclass
class _Held:
    """What a protocol holds out for one fold, before validation is carved from the rest."""

    test: list[int]
    rest: list[int]  # training candidates (row indices)
    tested: list[str]  # the groups, speakers, partitions or corpus the fold tests
    unused: dict[str, int] = field(default_factory=dict)
    unit: Unit | None = None  # what validation speakers are drawn apart by
    apart_by: str | None = "groups"
    val: list[int] | None = None  # the corpus's own validation partition, where it has one


def _held_loso(utts: Sequence[Utterance], fold: int) -> _Held:
    present = groups(utts)
    if "" in present:
        blank = next(u for u in utts if not u.group)
        raise SplitError(
            f"split.protocol loso: {blank.corpus} utterance {blank.utt_id} has no group (the corpus names no "
            "sessions to leave out); use split.protocol speaker_folds or predefined"
        )
    if len(present) < 2:
        raise SplitError(
            f"{len(present)} group(s) {present}; leave-one-group-out needs at least two: prepare a corpus "
            "with more groups (IEMOCAP sessions, e.g. synth.sessions) or use split.protocol speaker_folds"
        )
    tested = [present[fold - 1]]
    test = [i for i, u in enumerate(utts) if u.group == tested[0]]
    return _Held(test, [i for i, u in enumerate(utts) if u.group != tested[0]], tested)


def _held_speaker_folds(utts: Sequence[Utterance], fold: int, cfg: SplitConfig) -> _Held:
    fold_of = speaker_fold_of(utts, cfg.n_folds, cfg.seed)
    test = [i for i, u in enumerate(utts) if fold_of[u.speaker] == fold]
    rest = [i for i, u in enumerate(utts) if fold_of[u.speaker] != fold]
    return _Held(test, rest, sorted({utts[i].speaker for i in test}), unit=lambda u: u.speaker, apart_by=None)


def _held_predefined(utts: Sequence[Utterance]) -> _Held:
    roles = _roles(utts)
    test = [i for i, r in enumerate(roles) if r == "test"]
    rest = [i for i, r in enumerate(roles) if r == "train"]
    if not test or not rest:
        found = ", ".join(sorted({u.partition for u in utts}))
        raise SplitError(
            f"split.protocol predefined: the manifest's partitions ({found}) give no "
            f"{'test' if not test else 'training'} partition; use split.protocol loso or speaker_folds"
        )
    given = [i for i, r in enumerate(roles) if r == "val"]
    unused = dict(sorted(Counter(r for r in roles if r not in ("train", "val", "test")).items()))
    return _Held(test, rest, sorted({utts[i].partition for i in test}), unused, val=given or None)


def _held_cross_corpus(utts: Sequence[Utterance], cfg: SplitConfig) -> _Held:
    test, rest, tested = _cross_corpus(utts, cfg)
    used = set(test) | set(rest)
    unused = dict(sorted(Counter(u.corpus for i, u in enumerate(utts) if i not in used).items()))
    return _Held(test, rest, tested, unused)


def _held(utts: Sequence[Utterance], fold: int, cfg: SplitConfig, protocol: str) -> _Held:
    """What ``protocol`` tests in fold ``fold`` and what it leaves to train on."""
    if protocol == "loso":
        return _held_loso(utts, fold)
    if protocol == "speaker_folds":
        return _held_speaker_folds(utts, fold, cfg)
    held = _held_predefined(utts) if protocol == "predefined" else _held_cross_corpus(utts, cfg)
    held.unit = _unit_of(utts, held.rest)
    return held


def _shared_speakers_note(
    utts: Sequence[Utterance], trained: Sequence[int], test: Sequence[int], protocol: str
) -> str | None:
    """A note where a speaker of the test rows also trains or validates (predefined partitions
    such as MELD's, or corpora sharing speaker names), else None."""
    shared = {utts[i].speaker for i in trained} & {utts[i].speaker for i in test}
    if not shared:
        return None
    if protocol == "predefined":
        return (
            f"the corpus's partitions share {len(shared)} speaker(s) between training/validation and test "
            "(its own protocol: not speaker-independent)"
        )
    return f"{len(shared)} speaker name(s) appear in both training/validation and test"


def fold_split(utts: Sequence[Utterance], fold: int, split: SplitSpec = 0) -> FoldSplit:
    """Fold ``fold`` of ``utts`` under ``split`` (a :class:`SplitConfig`, or a split seed with
    protocol ``auto``): test, training and validation as the module docstring sets out."""
    cfg = _config(split)
    protocol = resolve_protocol(utts, cfg)
    have = fold_numbers(utts, cfg)
    if fold not in have:
        raise SplitError(
            f"fold {fold}: split.protocol {protocol} gives {len(have)} fold(s) ({', '.join(map(str, have))})"
            + (f"; the manifest's groups: {', '.join(groups(utts))}" if protocol == "loso" else "")
        )
    held = _held(utts, fold, cfg, protocol)
    if held.val is not None:  # the corpus's own validation partition
        train, val = sorted(held.rest), held.val
        val_speakers = sorted({utts[i].speaker for i in val})
        disjoint = not ({utts[i].speaker for i in train} & set(val_speakers))
        how = f"the corpus's validation partition ({', '.join(sorted({utts[i].partition for i in val}))})"
        warning = None
    else:
        train, val, val_speakers, disjoint, how, warning = _carve(
            utts, held.rest, fold, cfg.seed, held.unit, held.apart_by
        )
    note = _shared_speakers_note(utts, train + val, held.test, protocol)
    if note:
        warning = f"{warning}; fold {fold}: {note}" if warning else f"fold {fold}: {note}"
    if not train or not val or not held.test:
        raise SplitError(
            f"fold {fold}: too few utterances for train/validation/test ({len(held.rest)} to train on, "
            f"{len(held.test)} to test on)"
        )
    return FoldSplit(
        fold, train, val, sorted(held.test), val_speakers, disjoint, how, warning, protocol, held.tested, held.unused
    )


def _unit_of(utts: Sequence[Utterance], rest: Sequence[int]) -> Unit:
    """Validation speakers are drawn apart by group where the training data names two or more
    groups, else each speaker is its own group."""
    named = {utts[i].group for i in rest}
    return (lambda u: u.group) if len(named) >= 2 and "" not in named else (lambda u: u.speaker)


def in_corpus(u: Utterance, name: str) -> bool:
    """Whether ``u`` belongs to corpus ``name``: its reader (``Utterance.corpus``) or, in a
    manifest combining corpora (``prepare.corpora``), its name there (the ``<name>-`` prefix
    that combining gives every id)."""
    return u.corpus == name or u.utt_id.startswith(f"{name}-")


def _cross_corpus(utts: Sequence[Utterance], cfg: SplitConfig) -> tuple[list[int], list[int], list[str]]:
    """``cross_corpus``: (test = every ``test_corpus`` row, training candidates = every
    ``train_corpus`` row, [test corpus]); a corpus missing from the manifest, or rows in both,
    are refused."""
    test = [i for i, u in enumerate(utts) if in_corpus(u, cfg.test_corpus)]
    rest = [i for i, u in enumerate(utts) if in_corpus(u, cfg.train_corpus)]
    for name, key, rows in ((cfg.train_corpus, "train_corpus", rest), (cfg.test_corpus, "test_corpus", test)):
        if not rows:
            present = ", ".join(sorted({u.corpus for u in utts}))
            raise SplitError(
                f"split.{key}: {name!r} is not in the manifest (corpora: {present}); prepare both corpora "
                "into one manifest (prepare.corpora)"
            )
    both = set(test) & set(rest)
    if both:
        raise SplitError(
            f"split.train_corpus {cfg.train_corpus!r} and split.test_corpus {cfg.test_corpus!r} both hold "
            f"{len(both)} utterance(s) (e.g. {utts[min(both)].utt_id}): name two different corpora"
        )
    return test, rest, [cfg.test_corpus]


def all_folds(utts: Sequence[Utterance], split: SplitSpec = 0) -> dict[int, FoldSplit]:
    """Every fold of ``utts`` under ``split`` (:func:`fold_numbers`), keyed by fold number."""
    return {fold: fold_split(utts, fold, split) for fold in fold_numbers(utts, split)}


def validation_halves(utts: Sequence[Utterance], split: FoldSplit) -> tuple[list[int], list[int], str]:
    """Two non-empty halves of ``split.val`` (positions into it) for cross-fitting whatever is
    fitted on validation, and how they were made: by validation speaker when there are two or
    more (alternating over the sorted speakers), else by a stable hash of the utterance id
    (sorted ids alternating when the hash leaves a half empty).  Order-independent."""
    ids = [utts[i].utt_id for i in split.val]
    speakers = sorted({utts[i].speaker for i in split.val})
    if len(speakers) >= 2:
        side = {s: k % 2 for k, s in enumerate(speakers)}
        first = [p for p, i in enumerate(split.val) if side[utts[i].speaker] == 0]
        how = "2 halves by speaker"
    else:
        first = [p for p, u in enumerate(ids) if hashlib.sha256(f"mger-half:{u}".encode()).digest()[0] % 2 == 0]
        how = "2 halves by utterance-id hash"
        if not first or len(first) == len(ids):
            order = sorted(range(len(ids)), key=ids.__getitem__)
            first = sorted(order[::2])
    if not first or len(first) == len(ids):
        raise SplitError(f"fold {split.fold}: {len(ids)} validation utterance(s) cannot be cross-fitted in two halves")
    taken = set(first)
    second = [p for p in range(len(ids)) if p not in taken]
    return first, second, how


def final_split(utts: Sequence[Utterance], split: SplitSpec = 0) -> FoldSplit:
    """The final system's split (``mger export`` without ``--fold``); ``test`` is empty.
    loso and speaker_folds: every utterance trains, and validation (early stopping, late-fusion
    weights) is carved as in the folds, by :func:`validation_speakers` over all speakers with
    fold ``0`` (one speaker only: every fifth utterance).  predefined and cross_corpus: fold 1's
    training and validation (the test partition or corpus never trains)."""
    if not utts:
        raise SplitError("final split: no utterances")
    cfg = _config(split)
    protocol = resolve_protocol(utts, cfg)
    if protocol in ("predefined", "cross_corpus"):
        one = fold_split(utts, 1, cfg)
        unused = dict(one.unused)
        unused["test: " + ", ".join(one.groups)] = len(one.test)
        return FoldSplit(
            0,
            one.train,
            one.val,
            [],
            one.val_speakers,
            one.speaker_disjoint,
            one.validation,
            one.warning,
            protocol,
            [],
            unused,
        )
    unit, apart_by = ((lambda u: u.speaker), None) if protocol == "speaker_folds" else (None, "groups")
    rest = list(range(len(utts)))
    train, val, val_speakers, disjoint, how, warning = _carve(utts, rest, 0, cfg.seed, unit, apart_by)
    if not train or not val:
        raise SplitError(f"final split: too few utterances for train/validation ({len(utts)})")
    return FoldSplit(0, train, val, [], val_speakers, disjoint, how, warning, protocol)
