"""Speech recognition backends for ``mger transcribe``, behind one small interface.

A :class:`Recognizer` has an identity (``backend``, ``model``, ``model_id``: what a transcript
and, through the ASR manifest, a store's fingerprint record) and ``transcribe(waves)``: 16 kHz
float waveforms in, one transcript per waveform out, in order.  Backends register by name in
:data:`RECOGNIZERS` (``transcribe.backend``):

- ``pocketsphinx``: the wheel's US-English acoustic model, trigram LM and CMUdict (offline, one
  CPU core per worker).  Each utterance is decoded as by a fresh decoder (``reinit_feat``, as the
  aligner does: :mod:`mger.alignment.pocketsphinx_backend`), so transcripts do not depend on
  ``transcribe.n_jobs``.
- ``whisper``: any Whisper-family checkpoint (``WhisperForConditionalGeneration`` and its
  processor) by hub id or folder, revision pinned; on the device and dtype extraction would use
  (:func:`mger.features.encoders.resolve_device`, ``resolve_dtype``, ``autocast_context``);
  audio longer than ``chunk_seconds`` is cut into consecutive chunks whose transcripts are joined;
  chunks of all the waves of a call are batched (``batch_size``).

Empty or silent audio (:func:`silence_note`) gets an empty transcript and a note, never a decoder
call: the report lists it and the utterance goes on text-less (or is dropped by
``align.on_failure``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from mger.core.audio import SAMPLE_RATE, read_audio
from mger.core.config_transcribe import TranscribeConfig

MIN_SECONDS = 0.1  # shorter audio is "empty": no decoder sees it
SILENT_PEAK = 10 ** (-60 / 20)  # a peak under -60 dBFS is silence


class Recognizer(Protocol):
    """What ``mger transcribe`` uses of a backend."""

    backend: str
    model: str
    model_id: str

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        """One transcript per 16 kHz float waveform (N,), in order."""
        ...


RECOGNIZERS: dict[str, Callable[[TranscribeConfig], Recognizer]] = {}


def register(name: str) -> Callable:
    def wrap(factory: Callable[[TranscribeConfig], Recognizer]) -> Callable[[TranscribeConfig], Recognizer]:
        RECOGNIZERS[name] = factory
        return factory

    return wrap


def make_recognizer(cfg: TranscribeConfig) -> Recognizer:
    """The configured backend (``transcribe.backend``)."""
    return RECOGNIZERS[cfg.backend](cfg)


def silence_note(wave: np.ndarray) -> str:
    """Why ``wave`` gets an empty transcript without decoding ("empty audio", "silent audio"), or ""."""
    if len(wave) < MIN_SECONDS * SAMPLE_RATE:
        return f"empty audio (under {MIN_SECONDS} s)"
    if float(np.max(np.abs(wave))) < SILENT_PEAK:
        return "silent audio (peak under -60 dBFS)"
    return ""


def transcribe_files(rec: Recognizer, paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(transcript, note) per audio file, in order, as ``mger transcribe`` makes them: each file
    read by :func:`mger.core.audio.read_audio` (mono, resampled to 16 kHz), one
    ``rec.transcribe`` call for the batch.  An unreadable, empty or silent file gets "" and a note
    (never a decoder call), decoded audio without words "" and "no words recognised"."""
    notes, waves, todo = [], [], []
    for i, path in enumerate(paths):
        try:
            wave = read_audio(path)
        except Exception as err:  # a bad file must not stop the run: record it instead
            first = str(err).splitlines()[0] if str(err) else ""
            notes.append(f"unreadable audio: {type(err).__name__}: {first}")
            continue
        notes.append(silence_note(wave))
        if not notes[-1]:
            waves.append(wave)
            todo.append(i)
    texts = dict(zip(todo, rec.transcribe(waves))) if waves else {}
    out = []
    for i, note in enumerate(notes):
        text = texts.get(i, "")
        out.append((text, note or ("" if text else "no words recognised")))
    return out


@register("pocketsphinx")
class PocketsphinxRecognizer:
    """The pocketsphinx wheel's US-English model, full LM search."""

    backend = "pocketsphinx"

    def __init__(self, cfg: TranscribeConfig | None = None) -> None:
        import pocketsphinx
        from pocketsphinx import Decoder, set_loglevel

        set_loglevel("FATAL")
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        self.model = "pocketsphinx:en-us"
        self.model_id = f"pocketsphinx-{_version('pocketsphinx')}:{_files_sha256(model_dir)[:16]}"

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        from mger.alignment.pocketsphinx_backend import _pcm

        out = []
        for wave in waves:
            dec = self._decoder
            dec.reinit_feat()  # batch CMN over this utterance alone (see the aligner's docstring)
            dec.start_utt()
            dec.process_raw(_pcm(wave), full_utt=True)
            dec.end_utt()
            hyp = dec.hyp()
            out.append(hyp.hypstr.strip() if hyp is not None else "")
        return out


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _files_sha256(folder: Path) -> str:
    """sha256 over the files' names and bytes (sorted)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder)}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def chunk_waves(waves: Sequence[np.ndarray], seconds: float) -> tuple[list[np.ndarray], list[int]]:
    """Consecutive chunks of at most ``seconds`` of each wave, and each chunk's wave index."""
    size = int(seconds * SAMPLE_RATE)
    chunks, owners = [], []
    for i, wave in enumerate(waves):
        for start in range(0, max(len(wave), 1), size):
            chunks.append(wave[start : start + size])
            owners.append(i)
    return chunks, owners


@register("whisper")
class WhisperRecognizer:
    """``WhisperForConditionalGeneration`` and its processor, by hub id or folder."""

    backend = "whisper"

    def __init__(self, cfg: TranscribeConfig) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from mger.features.encoders import (
            _quiet_transformers,
            hub_source,
            resolve_device,
            resolve_dtype,
            resolve_model_path,
            state_dict_sha256,
        )

        _quiet_transformers()
        w = cfg.whisper
        path = resolve_model_path(w.model)
        source = hub_source(w.model, path, w.revision, "transcribe.whisper.model")
        self.settings = w
        self.processor = WhisperProcessor.from_pretrained(path, revision=w.revision, **source)
        net = WhisperForConditionalGeneration.from_pretrained(path, revision=w.revision, **source)
        self.model = w.model
        self.model_id = f"{w.revision or 'unpinned'}:{state_dict_sha256(net)[:16]}"
        self.device = resolve_device(cfg.device, "transcribe.device")
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        limit = int(net.config.max_target_positions) - 4  # room for the start tokens
        self.max_new_tokens = max(1, min(w.max_new_tokens, limit))
        self.torch = torch

    def _generate_kwargs(self) -> dict:
        kw: dict = {"max_new_tokens": self.max_new_tokens, "num_beams": self.settings.num_beams}
        if getattr(self.net.generation_config, "lang_to_id", None):  # a multilingual checkpoint
            kw |= {"task": "transcribe"} | ({"language": self.settings.language} if self.settings.language else {})
        return kw

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        from mger.features.encoders import autocast_context

        chunks, owners = chunk_waves(waves, self.settings.chunk_seconds)
        texts: list[str] = []
        step = self.settings.batch_size
        for s in range(0, len(chunks), step):
            batch = [c.astype(np.float32) for c in chunks[s : s + step]]
            feats = self.processor.feature_extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            mel = feats.input_features.to(self.device)
            with self.torch.inference_mode(), autocast_context(self.device, self.dtype):
                ids = self.net.generate(mel, **self._generate_kwargs())
            texts.extend(t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        out = [[] for _ in waves]
        for owner, text in zip(owners, texts):
            if text:
                out[owner].append(text)
        return [" ".join(parts) for parts in out]
