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
    dtype: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"  # whisper: as features.dtype
    whisper: WhisperAsrSettings = field(default_factory=WhisperAsrSettings)
    # bounds: config.py's RANGES (transcribe.*)
