"""The alignment backends' settings (``align.pocketsphinx``, ``align.mfa`` in params.yaml).

Part of the config schema, so they live in the ground layer: :mod:`mger.core.config` reads
them and the backends (:mod:`mger.alignment.pocketsphinx_backend`,
:mod:`mger.alignment.mfa_backend`) take them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    # Weight of the duration search's phone-duration term: senone_viterbi.DURATION_WEIGHT (a test keeps
    # them equal; this layer cannot import alignment/).  Chosen on eSpeak speech (docs/alignment.md,
    # item 14); lower it for speech whose phone durations vary more.
    duration_weight: float = 24.0


@dataclass(frozen=True)
class MfaSettings:
    acoustic_model: str = "english_us_arpa"
    dictionary: str = "english_us_arpa"
    jobs: int = 2
    beam: int = 10
    retry_beam: int = 40
    workdir: str = "data/mfa"
    executable: str = "mfa"
