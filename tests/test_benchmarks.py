"""The benchmark scripts' table writer: a script replaces its own block and nothing else."""

from __future__ import annotations

from pathlib import Path

from benchmarks.markdown import write_block


def test_write_block_replaces_only_its_own_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    write_block(doc, "bench_a", "| a | 1 |\n")
    write_block(doc, "bench_b", "| b | 2 |")
    write_block(doc, "bench_a", "| a | 3 |")
    assert doc.read_text() == ("# Benchmarks\n\nintro\n<!-- bench_a -->\n| a | 3 |\n<!-- /bench_a -->\n"
                               "<!-- bench_b -->\n| b | 2 |\n<!-- /bench_b -->\n")
