"""The manifest reader refuses rows it cannot trust (ids that would name files elsewhere)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mger.core.manifest import read_manifest, write_manifest
from mger.pipeline.cli import main
from tests.builders import iemocap_row, write_tone

ROW = iemocap_row(
    "Ses01F_impro01_F000", 1, "Ses01F_impro01", "Ses01_F", "F", True, "a.wav", 1.0, "hi", "neu", "neu", 3, 3, 3
)


def _manifest_with_id(tmp_path: Path, utt_id: str) -> Path:
    path = tmp_path / "m.jsonl"
    write_manifest(path, [ROW])
    row = json.loads(path.read_text())
    path.write_text(path.read_text() + json.dumps({**row, "utt_id": utt_id}) + "\n")
    return path


@pytest.mark.parametrize("bad_id", ["", "../../evil", "a/b", "a\\b", ".", "..", ".hidden"])
def test_read_manifest_refuses_ids_that_are_not_file_names(tmp_path: Path, bad_id: str) -> None:
    path = _manifest_with_id(tmp_path, bad_id)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:2: utt_id {re.escape(repr(bad_id))} ") as err:
        read_manifest(path)
    assert "\n" not in str(err.value)


def test_align_refuses_a_traversing_id_and_writes_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    write_tone(work / "a.wav")
    path = _manifest_with_id(work, "../../evil")
    argv = ["align", "--manifest", str(path), "--backend", "iemocap", "--on-failure", "uniform", "--n-jobs", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mger align: error: {path}:2: utt_id '../../evil' contains a path separator")
    assert not list(tmp_path.rglob("*.TextGrid"))


def test_read_manifest_keeps_relative_wav_paths(tmp_path: Path) -> None:
    write_manifest(tmp_path / "m.jsonl", [ROW])
    assert read_manifest(tmp_path / "m.jsonl")[0].wav == "a.wav"


@pytest.mark.parametrize(
    "wav, problem",
    [
        ("../../outside/Ses01F_impro01_F000.wav", "climbs out of its folder ('..')"),
        ("/data/IEMOCAP/../../etc/x.wav", "climbs out of its folder ('..')"),
        ("..\\..\\x.wav", "climbs out of its folder ('..')"),
        ("/etc/passwd", "is not an audio file mger reads (.wav, .flac, .mp4)"),
        ("", "is empty"),
    ],
)
def test_read_manifest_refuses_wavs_that_are_not_corpus_files(tmp_path: Path, wav: str, problem: str) -> None:
    """A wav path prepare never writes (climbing out of its folder, not a wav) is refused in one
    line naming the manifest line, before any stage reads it."""
    path = tmp_path / "m.jsonl"
    write_manifest(path, [ROW, dataclasses.replace(ROW, utt_id="Ses01F_impro01_M000", wav=wav)])
    with pytest.raises(ValueError, match=rf"^{re.escape(f'{path}:2: wav {wav!r} {problem}: ')}") as err:
        read_manifest(path)
    assert "\n" not in str(err.value)
    write_manifest(path, [ROW, dataclasses.replace(ROW, wav="/data/IEMOCAP/Session1/a..b.WAV")])
    assert read_manifest(path)[1].wav == "/data/IEMOCAP/Session1/a..b.WAV"  # absolute, and '..' inside a name: fine
