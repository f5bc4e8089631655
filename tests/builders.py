"""Builders of corpus files for tests (hand-made IEMOCAP-layout trees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


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
