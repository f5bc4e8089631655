"""The alignment sections of params.yaml: ``align`` with its backends' settings
(``align.pocketsphinx``, ``align.mfa``), ``align_eval`` and ``align_eval_corpus``.

Part of the config schema, so they live in the ground layer: :mod:`mger.core.config` reads
them and the alignment stage and backends (:mod:`mger.alignment.stage`,
:mod:`mger.alignment.pocketsphinx_backend`, :mod:`mger.alignment.mfa_backend`) take them.
Their numeric ranges are rows of :data:`mger.core.config.RANGES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mger.core.config_loader import ConfigError

# Weight of the duration search's phone-duration term (alignment/senone_viterbi.py's default and
# align.pocketsphinx.duration_weight's).  Chosen on eSpeak speech (docs/alignment.md, item 14);
# lower it for speech whose phone durations vary more.
DURATION_WEIGHT = 24.0

# (beam, wbeam, pbeam): the first rung is the one that aligned 100 of 100 utterances here; the
# last is the backend's last resort (LAST_RESORT_RUNG there), which it appends to a ladder that
# stops short of it, so this default aligns exactly as the three rungs before it did.
DEFAULT_LADDER: tuple[tuple[float, float, float], ...] = (
    (1e-80, 1e-60, 1e-80),
    (1e-120, 1e-100, 1e-120),
    (1e-200, 1e-180, 1e-200),
    (1e-300, 1e-300, 1e-300),
)


@dataclass(frozen=True)
class PocketsphinxSettings:
    """Decoder settings; ``ladder`` rungs are tried in order until one aligns."""

    ladder: tuple[tuple[float, float, float], ...] = DEFAULT_LADDER
    silprob: float = 1.0
    remove_noise: bool = False
    energy_check: bool = True  # re-align, pauses cut, where loud frames were labelled silence
    slow_speech: bool = True  # slow utterances analysed with longer frames (see SLOW_PHONE_RATE)
    refine_onsets: bool = True  # stop closures and onsets after silence corrected (alignment/refine.py)
    duration_search: bool = True  # re-align over the senone scores with durations and energy (senone_viterbi.py)
    duration_weight: float = DURATION_WEIGHT  # the duration search's phone-duration term


@dataclass(frozen=True)
class MfaSettings:
    acoustic_model: str = "english_us_arpa"
    dictionary: str = "english_us_arpa"
    jobs: int = 2
    beam: int = 10
    retry_beam: int = 40
    workdir: str = "data/mfa"
    executable: str = "mfa"


@dataclass
class AlignConfig:
    """``mger align``: manifest → words, syllables, phones (see alignment/)."""

    backend: Literal["pocketsphinx", "iemocap", "mfa"] = "pocketsphinx"
    on_failure: Literal["drop", "uniform"] = "uniform"
    n_jobs: int = 2
    out: str = "data/align"
    report: str = "reports/alignment.json"
    pocketsphinx: PocketsphinxSettings = field(default_factory=PocketsphinxSettings)
    mfa: MfaSettings = field(default_factory=MfaSettings)

    def __post_init__(self) -> None:
        if not self.pocketsphinx.ladder:
            raise ConfigError("align.pocketsphinx.ladder: needs at least one (beam, wbeam, pbeam) rung")


@dataclass
class AlignEvalConfig:
    """``mger align-eval``: word boundaries against the synthetic corpus's ground truth."""

    truth: str = "data/synth/truth/words.jsonl"
    report: str = "reports/align_eval.json"


@dataclass
class AlignEvalCorpusConfig:
    """``mger align-eval-corpus``: word boundaries against the corpus's own ForcedAlignment ``.wdseg``."""

    report: str = "reports/align_eval_corpus.json"
