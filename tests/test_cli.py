"""The command line: help texts, overrides, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main

SUBCOMMANDS = ["synth", "prepare", "summary"]


def test_top_level_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name, options", [
    ("synth", ["--out", "--seed", "--sessions", "--dialogs", "--turns", "--params"]),
    ("prepare", ["--root", "--out", "--report", "--class-map", "--params"]),
])
def test_subcommand_help_describes_options(name: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    assert all(opt in out for opt in options)


def test_prepare_wrong_root_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "prepare", "--root", str(tmp_path / "nope"),
                           "--params", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "params file not found" in proc.stderr
    (tmp_path / "p.yaml").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "prepare", "--root", str(tmp_path / "nope"),
                           "--params", str(tmp_path / "p.yaml")], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("mger prepare: error:")
    assert "corpus root does not exist" in proc.stderr


def test_cli_overrides_params(tiny_corpus: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("prepare:\n  class_map: 6class\n")
    rc = main(["prepare", "--params", str(params), "--root", str(tiny_corpus), "--out", str(tmp_path / "m.jsonl"),
               "--report", str(tmp_path / "q.json")])
    assert rc == 0
    report = json.loads((tmp_path / "q.json").read_text())
    assert "fru" in report["class_map"] and report["kept"] == len((tmp_path / "m.jsonl").read_text().splitlines())
    assert build_parser().parse_args(["synth", "--seed", "0"]).seed == 0
