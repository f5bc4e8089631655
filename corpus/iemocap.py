"""Reader for any tree in the layout of IEMOCAP_full_release (real or synthetic).

Layout read::

    <root>/SessionN/dialog/EmoEvaluation/<dialog>.txt     labels, times, V/A/D
    <root>/SessionN/dialog/transcriptions/<dialog>.txt    "<utt> [start-end]: text"
    <root>/SessionN/sentences/wav/<dialog>/<utt>.wav      one wav per utterance

The reader copes with what real copies contain: latin-1 bytes, CRLF endings, extra blank
lines, transcription lines without an id or a timestamp, labelled utterances without a
transcript or a wav, corrupt, empty or truncated wavs, garbled EmoEvaluation turn headers,
duplicate ids.  Each such item is a :class:`~mger.core.reporting.Problem` in
``reports/data_quality.json``; the run goes on.  Manifest ``wav`` paths are relative to the
working directory when the corpus lies under it (:func:`~mger.core.manifest.portable_path`).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from mger.core.audio import SAMPLE_RATE, AudioInfo, audio_info, nonfinite_audio
from mger.core.manifest import Utterance, portable_path, utt_id_problem
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.readers import CorpusRead, register_reader

CLASS_MAPS: dict[str, dict[str, str]] = {
    # The usual IEMOCAP 4-class setup: excited merged into happy (5,531 utterances).
    "4class": {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"},
    "5class": {"neu": "neu", "hap": "hap", "exc": "exc", "ang": "ang", "sad": "sad"},
    "6class": {"neu": "neu", "hap": "hap", "exc": "exc", "ang": "ang", "sad": "sad", "fru": "fru"},
}

_SESSION_DIR = re.compile(r"^Session(\d+)$")
_EMO_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+"
    r"\[\s*(?P<v>-?[\d.]+)\s*,\s*(?P<a>-?[\d.]+)\s*,\s*(?P<d>-?[\d.]+)\s*\]"
)
_UTT_ID_TOKEN = r"[A-Za-z0-9_.+-]+"
# A wav shorter than this, or than this fraction of its EmoEvaluation interval, is truncated.
MIN_WAV_SECONDS = 0.1
MIN_WAV_FRACTION = 0.5
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>Ses\d+[FM]_\S+?)(?:\s*\[\s*[\d.]+\s*-\s*[\d.]+\s*\])?\s*:\s?(?P<text>.*)$")


@dataclass(frozen=True)
class EmoRecord:
    """One labelled turn from an EmoEvaluation file."""

    utt_id: str
    start: float
    end: float
    code: str
    valence: float
    activation: float
    dominance: float


def read_text(path: Path) -> str:
    """Decode a corpus text file: UTF-8, else latin-1 (never fails); CRLF handled by splitlines."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_emo_evaluation(text: str) -> list[EmoRecord]:
    """The labelled turns of one EmoEvaluation file, in file order."""
    return parse_emo_file(text, "")[0]


def _emo_record(m: re.Match[str]) -> EmoRecord:
    return EmoRecord(
        utt_id=m["utt"],
        start=float(m["start"]),
        end=float(m["end"]),
        code=m["code"],
        valence=float(m["v"]),
        activation=float(m["a"]),
        dominance=float(m["d"]),
    )


def parse_emo_file(text: str, dialog: str) -> tuple[list[EmoRecord], list[tuple[int, str, str]]]:
    """(labelled turns in file order, [(line number, utterance id, line)] of lines that look like
    a turn header of ``dialog``, a ``[`` and an id ``<dialog>_…``, but do not parse)."""
    records, garbled = [], []
    header_id = re.compile(rf"(?<![\w.+-]){re.escape(dialog)}_{_UTT_ID_TOKEN}") if dialog else None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = _EMO_LINE.match(line)
        if m:
            records.append(_emo_record(m))
        elif header_id and line.startswith("[") and (found := header_id.search(line)):
            garbled.append((lineno, found.group(0), line))
    return records, garbled


def parse_transcriptions(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """(utt id → text, [(line number, line)] of non-empty lines without an utterance id)."""
    texts: dict[str, str] = {}
    unparsed = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _TRANSCRIPT_LINE.match(line)
        if m:
            texts.setdefault(m["utt"], m["text"].strip())
        else:
            unparsed.append((lineno, line))
    return texts, unparsed


def speaker_of(utt_id: str, session: int) -> tuple[str, str]:
    """(speaker ``Ses01_F``, gender ``F``) from the utterance suffix letter (``..._F000``)."""
    suffix = utt_id.rsplit("_", 1)[-1]
    gender = suffix[:1]
    if gender not in ("F", "M"):
        raise ValueError(f"utterance id {utt_id!r} does not end in _F… or _M…")
    return f"Ses{session:02d}_{gender}", gender


def _session_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        raise StageError(f"{root}: corpus root does not exist or is not a folder")
    found = []
    for child in root.iterdir():
        m = _SESSION_DIR.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    if not found:
        raise StageError(f"{root}: no Session1..SessionN folders here; point prepare.root at IEMOCAP_full_release")
    return sorted(found)


def dialog_names(session_dir: Path) -> list[str]:
    """Every dialog of a session that any of its files names: EmoEvaluation and transcription
    files, wav folders (hidden names, e.g. macOS's ``._x.txt``, left out), so a dialog whose
    EmoEvaluation file is missing is seen, and reported."""
    found = {
        p.stem for sub in ("EmoEvaluation", "transcriptions") for p in (session_dir / "dialog" / sub).glob("*.txt")
    }
    wavs = session_dir / "sentences" / "wav"
    found |= {p.name for p in wavs.iterdir() if p.is_dir()} if wavs.is_dir() else set()
    return sorted(name for name in found if not name.startswith("."))


class CorpusReader:
    """Walks the tree and builds manifest rows; problems go to ``log``."""

    def __init__(self, root: str | Path, class_map: Mapping[str, str], log: ProblemLog) -> None:
        self.root = Path(root).resolve()
        self.class_map = dict(class_map)
        self.log = log
        self.raw_codes: Counter[str] = Counter()
        self.unparsed_lines: list[dict[str, object]] = []
        self.unparsed_emo_lines: list[dict[str, object]] = []
        self._seen: set[str] = set()

    def read(self) -> list[Utterance]:
        sessions = _session_dirs(self.root)
        if not any((d / "dialog" / "EmoEvaluation").glob("*.txt") for _, d in sessions):
            raise StageError(f"{self.root}: no SessionN/dialog/EmoEvaluation/*.txt files")
        dialogs = [(num, session_dir, dialog) for num, session_dir in sessions for dialog in dialog_names(session_dir)]
        out: list[Utterance] = []
        for num, session_dir, dialog in tqdm(dialogs, desc="prepare", unit="dialog", file=sys.stderr):
            out.extend(self._read_dialog(num, session_dir, dialog))
        return out

    def _read_dialog(self, session: int, session_dir: Path, dialog: str) -> list[Utterance]:
        emo_file = session_dir / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        trans_file = session_dir / "dialog" / "transcriptions" / f"{dialog}.txt"
        texts = self._read_transcriptions(trans_file)
        try:
            text = read_text(emo_file) if emo_file.is_file() else None
        except OSError as err:
            self._drop_dialog(
                session_dir, dialog, emo_file, f"EmoEvaluation file unreadable ({err.strerror or err})", texts
            )
            return []
        records, garbled = parse_emo_file(text or "", dialog)
        if not records and not garbled:
            what = "empty" if text is not None and not text.strip() else "without a labelled turn"
            if text is not None and "\x00" in text:  # zero-filled, or UTF-16: every line unreadable
                what = "not text (NUL bytes; zero-filled, or UTF-16 rather than UTF-8)"
            what = what if text is not None else "not a file" if emo_file.exists() else "missing"
            self._drop_dialog(session_dir, dialog, emo_file, f"EmoEvaluation file {what}", texts)
            return []
        for lineno, uid, line in garbled:
            self.unparsed_emo_lines.append({"file": str(emo_file), "line": lineno, "text": line})
            self.log.add(uid, emo_file, f"line {lineno}: turn header does not parse: {line[:80]!r}")
        out = []
        for rec in records:
            utt = self._utterance(session, session_dir, dialog, rec, texts, trans_file, emo_file)
            if utt is not None:
                out.append(utt)
        return out

    def _drop_dialog(
        self, session_dir: Path, dialog: str, emo_file: Path, problem: str, texts: Mapping[str, str]
    ) -> None:
        """Record every utterance of ``dialog`` that its transcript or its wav folder names as
        dropped (no label without its EmoEvaluation turn), one line printed for the dialog; the
        dialog itself when nothing names its utterances."""
        wavs = session_dir / "sentences" / "wav" / dialog
        ids = {uid for uid in texts if uid.startswith(f"{dialog}_")}
        ids |= {w.stem for w in wavs.glob("*.wav")} if wavs.is_dir() else set()
        for uid in sorted(ids):
            self.log.add(uid, emo_file, f"{problem}: no label for the dialog's utterances", echo=False)
        if not ids:
            self.log.add(dialog, emo_file, f"{problem}, and no transcript or wav names the dialog's utterances")
        elif not self.log.quiet:
            tqdm.write(f"warning: {emo_file}: {problem} ({len(ids)} utterances of {dialog}, dropped)", file=sys.stderr)

    def _read_transcriptions(self, trans_file: Path) -> dict[str, str]:
        """utt id → text of ``trans_file`` ({} when absent); lines without an id are recorded."""
        if not trans_file.is_file():
            return {}
        texts, unparsed = parse_transcriptions(read_text(trans_file))
        for lineno, line in unparsed:
            self.unparsed_lines.append({"file": str(trans_file), "line": lineno, "text": line})
            tqdm.write(
                f"warning: {trans_file}:{lineno}: transcription line without an utterance id: {line[:60]!r}",
                file=sys.stderr,
            )
        return texts

    def _utterance(
        self,
        session: int,
        session_dir: Path,
        dialog: str,
        rec: EmoRecord,
        texts: Mapping[str, str],
        trans_file: Path,
        emo_file: Path,
    ) -> Utterance | None:
        uid = rec.utt_id
        if utt_id_problem(uid):
            self.log.add(
                uid,
                emo_file,
                "utterance id with a path separator, '..' or a leading '.' "
                "(ids name files: wav, TextGrid, features); fix the id",
            )
            return None
        if uid in self._seen:
            self.log.add(uid, emo_file, "duplicate id")
            return None
        self._seen.add(uid)
        self.raw_codes[rec.code] += 1
        if rec.code not in self.class_map:
            self.log.add(uid, emo_file, f"label {rec.code!r} outside the class map", echo=False)
            return None
        try:
            speaker, gender = speaker_of(uid, session)
        except ValueError as err:
            self.log.add(uid, emo_file, str(err))
            return None
        text = texts.get(uid)
        if text is None:
            self.log.add(uid, trans_file, "transcript missing")
            return None
        if not text.strip():
            self.log.add(uid, trans_file, "transcript empty")
            return None
        wav = session_dir / "sentences" / "wav" / dialog / f"{uid}.wav"
        info = self._wav_info(uid, wav, rec.end - rec.start)
        if info is None:
            return None
        return Utterance(
            utt_id=uid,
            corpus="iemocap",
            wav=portable_path(wav),
            duration=round(info.duration, 4),
            speaker=speaker,
            gender=gender,
            text=text,
            text_source="gold",
            label=self.class_map[rec.code],
            label_raw=rec.code,
            group=f"Ses{session:02d}",
            partition="",
            valence=rec.valence,
            activation=rec.activation,
            dominance=rec.dominance,
            extras={"session": session, "dialog": dialog, "improvised": "_impro" in dialog},
        )

    def _wav_info(self, uid: str, wav: Path, interval: float) -> AudioInfo | None:
        """The wav's header, or None (recorded) when it is missing, unreadable, empty or much
        shorter than its EmoEvaluation interval (``interval`` seconds: a truncated file)."""
        if not wav.is_file():
            self.log.add(uid, wav, "wav missing")
            return None
        try:
            info = audio_info(wav)
        except Exception as err:  # soundfile raises several types for corrupt headers
            first = (str(err).splitlines() or [""])[0]
            self.log.add(uid, wav, f"wav unreadable ({type(err).__name__}: {first})")
            return None
        if info.frames == 0:
            self.log.add(uid, wav, "wav empty")
            return None
        if info.duration < MIN_WAV_SECONDS or info.duration < MIN_WAV_FRACTION * interval:
            self.log.add(
                uid,
                wav,
                f"wav truncated: {info.duration:.4f} s of audio for a {interval:.4f} s EmoEvaluation interval",
            )
            return None
        if nonfinite_audio(wav):
            self.log.add(uid, wav, "wav holds NaN or inf samples")
            return None
        if info.sample_rate != SAMPLE_RATE or info.channels != 1:
            self.log.add(
                uid,
                wav,
                f"{info.sample_rate} Hz, {info.channels} channel(s), not 16 kHz mono (kept; converted when read)",
                kept=True,
            )
        return info


@register_reader("iemocap", class_maps=CLASS_MAPS, protocol="loso")
def read_iemocap(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """The utterances of the IEMOCAP-layout tree at ``root``; the report's IEMOCAP entries: the
    raw EmoEvaluation codes of every labelled turn (kept or not) and the lines that do not parse."""
    reader = CorpusReader(root, class_map, log)
    utterances = reader.read()
    return CorpusRead(
        utterances,
        {
            "per_raw_label_all": dict(sorted(reader.raw_codes.items())),
            "unparsed_transcript_lines": reader.unparsed_lines,
            "unparsed_evaluation_lines": reader.unparsed_emo_lines,
        },
    )
