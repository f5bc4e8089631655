"""The ``transcribe:`` section of params.yaml: the ASR stage and which transcript the pipeline reads.

``source: gold`` (the default) keeps the corpus's own transcripts (the manifest's ``text``);
``source: asr`` makes alignment, the text store and every stage after them read the ASR
transcripts of ``mger transcribe`` instead (its manifest ``manifest``, the prepared manifest with
each ``text`` replaced).  :mod:`mger.core.transcripts` holds the files' format and the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass(frozen=True)
class WhisperAsrSettings:
    """``transcribe.whisper``: any Whisper-family checkpoint through transformers."""

    model: str = "openai/whisper-base"  # hub id or a save_pretrained folder
    revision: Optional[str] = None  # pin a hub commit
    language: Optional[str] = "en"  # null: the model detects it (multilingual checkpoints)
    batch_size: int = 8  # chunks per generate call
    chunk_seconds: float = 30.0  # longer audio is transcribed in consecutive chunks of at most this
    max_new_tokens: int = 128  # per chunk
    num_beams: int = 1  # greedy


@dataclass
class TranscribeConfig:
    """``mger transcribe``: manifest → ASR transcripts (``out``), the ASR manifest and a report."""

    source: Literal["gold", "asr"] = "gold"  # which transcript alignment, the text store and later stages read
    backend: Literal["pocketsphinx", "whisper"] = "pocketsphinx"
    out: str = "data/transcripts.jsonl"  # one row per utterance: utt_id, text, backend, model
    manifest: str = "data/manifest-asr.jsonl"  # the prepared manifest, text replaced by the ASR transcript
    report: str = "reports/transcribe.json"  # WER/CER against the gold text, empty transcripts, speed
    n_jobs: int = 1  # pocketsphinx: worker processes (one decoder each)
    device: str = "auto"  # whisper: as features.device
    dtype: str = "auto"  # whisper: as features.dtype
    whisper: WhisperAsrSettings = field(default_factory=WhisperAsrSettings)

    def __post_init__(self) -> None:
        # ValueError naming the key, as config's ConfigError (a ValueError) does; this module cannot
        # import config.py, which imports it.  The lead may move these bounds into config's ranges.
        for key, value in (
            ("n_jobs", self.n_jobs),
            ("whisper.batch_size", self.whisper.batch_size),
            ("whisper.max_new_tokens", self.whisper.max_new_tokens),
            ("whisper.num_beams", self.whisper.num_beams),
        ):
            if not 0 < value <= 1024:
                raise ValueError(f"transcribe.{key}: must be between 1 and 1024, got {value!r}")
        if not 1.0 <= self.whisper.chunk_seconds <= 30.0:
            raise ValueError(
                f"transcribe.whisper.chunk_seconds: must be between 1 and 30 (Whisper's window), "
                f"got {self.whisper.chunk_seconds!r}"
            )
