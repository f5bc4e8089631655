"""The benchmark scripts' table writer: a script replaces its own block and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.markdown import run_recorded, write_block


def test_write_block_replaces_only_its_own_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    write_block(doc, "bench_a", "| a | 1 |\n")
    write_block(doc, "bench_b", "| b | 2 |")
    write_block(doc, "bench_a", "| a | 3 |")
    assert doc.read_text() == (
        "# Benchmarks\n\nintro\n<!-- bench_a -->\n| a | 3 |\n<!-- /bench_a -->\n"
        "<!-- bench_b -->\n| b | 2 |\n<!-- /bench_b -->\n"
    )


def test_run_recorded_writes_what_main_printed(tmp_path: Path, monkeypatch, capsys) -> None:
    doc = tmp_path / "benchmarks.md"
    seen = []

    def main() -> None:
        seen.append(list(sys.argv[1:]))
        print("ratio 2.0x")

    monkeypatch.setattr(sys, "argv", ["bench_x.py", "--n", "3", "--markdown", str(doc)])
    run_recorded("bench_x", main)
    assert seen == [["--n", "3"]] and "ratio 2.0x" in capsys.readouterr().out
    text = doc.read_text()
    assert text.startswith("<!-- bench_x -->\n`python -m benchmarks.bench_x --n 3` on ")
    assert text.endswith(
        "core(s) of " + text.split("core(s) of ")[1].split(":")[0] + ":\n\n```\nratio 2.0x\n```\n<!-- /bench_x -->\n"
    )
    monkeypatch.setattr(sys, "argv", ["bench_x.py"])
    run_recorded("bench_x", main)  # without --markdown: prints only
    assert doc.read_text() == text


def test_per_epoch_splits_a_run_into_epochs_and_the_rest() -> None:
    from benchmarks.bench_pipeline import per_epoch

    assert per_epoch(10.0, 16.0, 2) == (3.0, 7.0)
    assert per_epoch(10.0, 9.0, 2) == (0.0, 10.0)  # timing noise never gives a negative epoch
