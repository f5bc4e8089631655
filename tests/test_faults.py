"""The fault suite: what a hostile user or a failing machine does, and what mger must do then.

Each case is one fault (a full disk, a killed writer, a second writer, a damaged store, a bad
id or param) and asserts the promise it threatens: outputs complete or absent, never partial;
never a silent reuse; one clear line naming the file or key, exit code 1.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mger.core import reporting
from mger.core.reporting import atomic_path, save_figure_atomic, write_bytes_atomic, write_json, write_text_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.mark.parametrize("writer", ["text", "json", "bytes"])
def test_full_disk_keeps_the_previous_file_and_no_temp(
    tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.md"
    target.write_text("| old | table |\n")
    big = "| row | " + "x" * 200_000 + " |\n"
    write = {
        "text": lambda: write_text_atomic(target, big),
        "json": lambda: write_json(target, {"rows": big}),
        "bytes": lambda: write_bytes_atomic(target, big.encode()),
    }[writer]
    with monkeypatch.context() as m:
        m.setattr(reporting.Path, "write_bytes", _failing_write_bytes(100))
        with pytest.raises(OSError) as info:
            write()
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "| old | table |\n"
    assert _leftovers(tmp_path) == []
    write()
    assert target.read_text().startswith(("| row |", '{\n  "rows"'))


def _failing_write_bytes(n_bytes: int):
    """A ``Path.write_bytes`` that writes ``n_bytes`` then fails as a full disk does."""

    def write_bytes(self: Path, data: bytes) -> int:
        with open(self, "wb") as fh:
            fh.write(data[:n_bytes])
            fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    return write_bytes


def test_atomic_path_removes_temp_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_figure_is_written_whole(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure_atomic(fig, tmp_path / "f.png", dpi=50)
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _leftovers(tmp_path) == []


def test_temp_of_a_killed_writer_is_cleaned_by_the_next_write(tmp_path: Path) -> None:
    """A writer SIGKILLed mid-write leaves only its hidden temp (the target is untouched); the
    next write of the same target removes it."""
    target = tmp_path / "results.md"
    code = (
        "import os, sys\nfrom mger.core.reporting import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half a ta')\n    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=os.environ | {"PYTHONPATH": _ROOT})
    assert proc.returncode == -9
    assert not target.exists() and len(_leftovers(tmp_path)) == 1
    write_text_atomic(target, "whole\n")
    assert target.read_text() == "whole\n" and _leftovers(tmp_path) == []


_ROOT = str(Path(__file__).resolve().parents[1])


# --- concurrent writers ----------------------------------------------------------------------


def _params_file(folder: Path, aligned: dict[str, Path], tiny_models: dict[str, str], **speech: object) -> Path:
    import yaml

    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"out": str(aligned["segments"].parent)},
        "features": {
            "out": str(folder),
            "shard_size": 2,
            "speech": {"model": tiny_models["speech"], **speech},
            "text": {"model": tiny_models["text"]},
        },
    }
    path = folder / f"p-{'-'.join(f'{k}{v}' for k, v in speech.items()) or 'default'}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


def _extract_cmd(params: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mger.pipeline.cli", "extract", "--kind", "speech", "--params", str(params), *extra]


def _wait_for(predicate, seconds: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "first, second",
    [
        ((), ()),  # two whole runs
        (("--shard", "0/2"), ("--shard", "1/2")),  # two shard runs of other settings
    ],
)
def test_concurrent_extract_with_other_settings_never_mixes(
    tiny_models, aligned, tmp_path: Path, first: tuple, second: tuple
) -> None:
    """Run A (pooling mean) is frozen (SIGSTOP) once it has set up its parts folder; run B
    (pooling max) must refuse in one line without touching A's parts; A then finishes a store
    of mean-pooled features only, and B, rerun alone, rebuilds it as max."""
    import signal

    import h5py

    from mger.features.cache import verify_store

    env = os.environ | {"PYTHONPATH": _ROOT}
    mean = _params_file(tmp_path, aligned, tiny_models)
    maxp = _params_file(tmp_path, aligned, tiny_models, pooling="max")
    parts = tmp_path / "speech.h5.parts"
    a = subprocess.Popen(_extract_cmd(mean, *first), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(list(parts.glob("part-*.h5"))) >= 1)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        fp_before = (parts / "fingerprint.json").read_text()
        names_before = sorted(p.name for p in parts.iterdir())
        b = subprocess.run(_extract_cmd(maxp, *second), env=env, capture_output=True, text=True)
        assert b.returncode == 1
        line = b.stderr.strip().splitlines()[-1]
        assert line.startswith("mger extract: error:") and "speech.h5" in line
        assert ("being written by pid" in line) or ("pooling: 'mean' → 'max'" in line), line
        assert (parts / "fingerprint.json").read_text() == fp_before
        assert sorted(p.name for p in parts.iterdir()) == names_before
    finally:
        os.kill(a.pid, signal.SIGCONT)
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    store = tmp_path / "speech.h5"
    if not first:
        with h5py.File(store) as f:
            assert json.loads(f.attrs["fingerprint"])["pooling"] == "mean"
        assert verify_store(store) == []
    else:  # A computed its half of the parts, all mean-pooled
        assert json.loads((parts / "fingerprint.json").read_text())["pooling"] == "mean"
    b = subprocess.run(_extract_cmd(maxp), env=env, capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    with h5py.File(store) as f:
        assert json.loads(f.attrs["fingerprint"])["pooling"] == "max"
        frames, foff = f["frame/data"][()].astype("float32"), f["frame/offsets"][()]
        utt = f["utterance/data"][()].astype("float32")
    for i in range(len(foff) - 1):  # every max-pooled utterance row is the max of its frames: no mean part reused
        np.testing.assert_allclose(utt[i], frames[foff[i] : foff[i + 1]].max(0), atol=1e-2)


# --- damaged stores ---------------------------------------------------------------------------


def _nan_row(path: Path) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        f["phone/data"][5, 3] = np.nan


def _inf_row(path: Path) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        f["frame/data"][0, 0] = np.inf


def _delete_level(path: Path) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        del f["word"]


def _flip_bytes(path: Path) -> None:
    """Flip one byte in the middle of the word level's data, behind HDF5's back."""
    import h5py

    with h5py.File(path, "r") as f:
        ds = f["word/data"]
        where = ds.id.get_offset() + ds.size  # the middle byte (float16: 2 bytes per value)
    with open(path, "r+b") as fh:
        fh.seek(where)
        byte = fh.read(1)
        fh.seek(where)
        fh.write(bytes([byte[0] ^ 0x10]))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _rename_id(path: Path) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        f["utt_ids"][0] = "Ses09F_impro01_F000"


@pytest.mark.parametrize(
    "damage, message",
    [
        (_nan_row, r"phone: NaN or inf in 1 rows of 1 utterances \(first: Ses\w+, its row \d+\)"),
        (_inf_row, r"frame: NaN or inf in 1 rows of 1 utterances \(first: Ses\w+, its row 0\)"),
        (_delete_level, r"word: level listed in the attributes is missing from the file"),
        (_flip_bytes, r"word: checksum mismatch: the level's bytes changed after writing"),
        (_truncate, r"cannot open as HDF5|unreadable"),
        (_rename_id, r"utt_ids: checksum mismatch"),
    ],
)
def test_cache_verify_finds_damage(reference_store, tmp_path: Path, damage, message: str) -> None:
    """Every kind of damage is found by ``mger cache verify`` (exit 1, a line naming the store
    and the level) and stops ``mger extract`` from calling the store up to date."""
    import re

    from mger.features.cache import verify_store

    store = tmp_path / "speech.h5"
    store.write_bytes(Path(reference_store["speech"]).read_bytes())
    assert verify_store(store) == []
    damage(store)
    problems = verify_store(store)
    assert any(re.search(message, p) for p in problems), problems
    proc = subprocess.run(
        [sys.executable, "-m", "mger.pipeline.cli", "cache", "verify", str(store)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": _ROOT},
    )
    assert proc.returncode == 1 and f"{store}: CORRUPT" in proc.stdout
    assert any(re.search(message, line) and line.startswith(str(store)) for line in proc.stdout.splitlines())


def test_verify_costs_little_next_to_extraction(reference_store) -> None:
    """``extract`` re-verifies a store before calling it up to date: reading and hashing every
    level; here the cost per MB of store, printed for the README (a few ms per MB)."""
    import time

    from mger.features.cache import verify_store

    store = Path(reference_store["speech"])
    t0 = time.perf_counter()
    assert verify_store(store) == []
    seconds = time.perf_counter() - t0
    mb = store.stat().st_size / 2**20
    print(f"verify: {mb:.2f} MB in {seconds * 1000:.0f} ms")
    assert seconds < 5.0


# --- a file-size limit (ulimit -f): one line naming the file, no crash -------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit -f is POSIX")
@pytest.mark.parametrize("stage", ["prepare", "align", "synth"])
def test_file_size_limit_is_one_line_naming_the_file(stage: str, aligned, tiny_corpus, tmp_path: Path) -> None:
    """A write refused by ``ulimit -f`` (EFBIG): one line naming the output, exit 1; no temp
    file left, and HDF5 does not crash the process (it segfaults when its own write is refused)."""
    import resource

    (tmp_path / "p.yaml").write_text(f"align: {{out: {tmp_path / 'al'}, report: {tmp_path / 'a.json'}}}\n")
    synth_wavs = tmp_path / "s" / "Session1" / "sentences" / "wav"
    argv, limit, named = {
        "prepare": (["--root", str(tiny_corpus), "--out", "m.jsonl", "--report", "q.json"], 2048, "m.jsonl"),
        "align": (["--manifest", str(aligned["manifest"]), "--backend", "iemocap", "--n-jobs", "1"], 16384, None),
        "synth": (["--out", str(tmp_path / "s"), "--sessions", "1", "--dialogs", "1", "--turns", "1"], 20480, None),
    }[stage]
    named = named or str({"align": tmp_path / "al" / "segments.h5", "synth": synth_wavs}[stage])

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    cmd = [sys.executable, "-m", "mger.pipeline.cli", stage, *argv, "--params", str(tmp_path / "p.yaml")]
    env = os.environ | {"PYTHONPATH": _ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, preexec_fn=limited)
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"mger {stage}: error: {named}"), lines
    assert lines[0].endswith(
        ": file too large for this system's file-size limit (`ulimit -f`); raise the limit and rerun"
    )
    assert not list(tmp_path.rglob(".*.tmp-*"))


@pytest.mark.parametrize("stage", ["extract", "align-eval"])
def test_a_truncated_segment_table_is_one_line_naming_it(
    stage: str, aligned, tiny_models, tiny_corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mger.pipeline.cli import main

    data = aligned["segments"].read_bytes()
    (tmp_path / "al").mkdir()
    table = tmp_path / "al" / "segments.h5"
    table.write_bytes(data[: len(data) // 2])
    params = _params_file(tmp_path / "f", aligned, tiny_models)
    params.write_text(params.read_text().replace(str(aligned["segments"].parent), str(tmp_path / "al")))
    argv = (
        ["extract", "--kind", "text"]
        if stage == "extract"
        else ["align-eval", "--truth", str(tiny_corpus / "truth" / "words.jsonl")]
    )
    assert main([*argv, "--params", str(params)]) == 1
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        f"mger {stage}: error: {table}: not a whole HDF5 segment table ("
    ), errors
    assert errors[0].endswith("rerun `mger align` to write it again")


# --- synth --out never deletes a folder it did not write --------------------------------------


def _synth(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "mger.pipeline.cli",
        "synth",
        "--out",
        str(out),
        "--sessions",
        "1",
        "--dialogs",
        "1",
        "--turns",
        "1",
        "--params",
        str(out.parent / "p.yaml"),
        *extra,
    ]
    (out.parent / "p.yaml").write_text("{}\n")
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": _ROOT})


def test_synth_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "1.tex").write_text("years of work\n")
    proc = _synth(thesis)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"mger synth: error: {thesis}: not empty and not an earlier `mger synth` output; synth would delete it: "
        "choose another --out, or pass --force to replace it"
    ]
    assert (thesis / "chapters" / "1.tex").read_text() == "years of work\n"
    stray = tmp_path / "file.txt"
    stray.write_text("x")
    assert _synth(stray).returncode == 1 and stray.read_text() == "x"


def test_synth_refuses_session_folders_it_did_not_write(tmp_path: Path) -> None:
    """A trimmed IEMOCAP copy holds only SessionN/ folders: synth tells its own output by the
    marker file it writes, never by folder names, so the copy stays."""
    from mger.corpus.synth import SYNTH_MARKER, check_out

    iemocap = tmp_path / "IEMOCAP"
    (iemocap / "Session1" / "sentences").mkdir(parents=True)
    (iemocap / "Session1" / "sentences" / "a.wav").write_bytes(b"RIFF user audio")
    (iemocap / "truth").mkdir()
    proc = _synth(iemocap)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not an earlier `mger synth` output" in proc.stderr
    assert (iemocap / "Session1" / "sentences" / "a.wav").read_bytes() == b"RIFF user audio"
    (iemocap / SYNTH_MARKER).write_text("{}\n")
    check_out(iemocap)  # with synth's marker it is synth's output (no exception)


def test_synth_keeps_a_users_file_in_its_output_and_refuses_a_link(tmp_path: Path) -> None:
    """A file someone put beside synth's own folders, or a link to the output: one line, nothing lost."""
    from mger.corpus.synth import SYNTH_MARKER, check_out

    corpus = tmp_path / "corpus"
    (corpus / "Session1").mkdir(parents=True)
    (corpus / SYNTH_MARKER).write_text("{}\n")
    (corpus / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"corpus: an earlier `mger synth` output that also holds notes.txt"):
        check_out(corpus)
    assert (corpus / "notes.txt").read_text() == "mine"
    (corpus / "notes.txt").unlink()
    link = tmp_path / "link"
    link.symlink_to(corpus)
    proc = _synth(link, "--force")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"mger synth: error: {link}: a symbolic link; give --out the folder itself ({corpus.resolve()})"
    ]
    assert (corpus / "Session1").is_dir() and link.is_symlink()


def test_synth_replaces_its_own_output_and_a_forced_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    assert _synth(corpus).returncode == 0
    (corpus / "Session1" / "leftover.txt").write_text("from an earlier run")
    assert _synth(corpus).returncode == 0  # an earlier synth output: replaced without --force
    assert not (corpus / "Session1" / "leftover.txt").exists()
    assert len(list(corpus.glob("Session1/sentences/wav/*/*.wav"))) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _synth(other, "--force").returncode == 0 and not (other / "notes.txt").exists()
    from mger.corpus.synth import check_out

    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty")  # an empty folder is fine (no exception)


# --- hostile and duplicate ids ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["../../escape_F000", "Ses01F_a/b_F001", "..Ses01F_x_F002", ".hidden_F003", "Ses01F_back\\slash_F004"]
)
def test_prepare_drops_ids_that_are_paths(tmp_path: Path, bad_id: str) -> None:
    """An id that would name a file outside its folder is dropped at prepare with a
    data-quality entry; the good utterances are kept."""
    from mger.corpus.readers import prepare_corpus
    from tests.builders import TreeBuilder

    builder = TreeBuilder(tmp_path / "corpus")
    builder.dialog(
        1, "Ses01F_impro01", [("Ses01F_impro01_F000", "neu", "hello there"), ("Ses01F_impro01_M000", "ang", "go away")]
    )
    emo = tmp_path / "corpus" / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    emo.write_text(emo.read_text() + f"[9.0000 - 9.5000]\t{bad_id}\tsad\t[2.5000, 3.0000, 3.5000]\n")
    trans = tmp_path / "corpus" / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    trans.write_text(trans.read_text() + f"{bad_id} [009.0000-009.5000]: so sad\n")
    utts = prepare_corpus(
        "iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True
    )
    assert [u.utt_id for u in utts] == ["Ses01F_impro01_F000", "Ses01F_impro01_M000"]
    problems = json.loads((tmp_path / "q.json").read_text())["problems"]
    assert [(p["item"], p["kept"]) for p in problems] == [(bad_id, False)]
    assert "path separator" in problems[0]["reason"] and problems[0]["file"] == str(emo)


def test_duplicate_ids_in_a_manifest_stop_extract(
    aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mger.pipeline.cli import main

    lines = aligned["manifest"].read_text().splitlines()
    manifest = tmp_path / "dup.jsonl"
    manifest.write_text("\n".join(lines + [lines[3]]) + "\n")
    params = _params_file(tmp_path, aligned, tiny_models)
    assert main(["extract", "--kind", "text", "--manifest", str(manifest), "--params", str(params)]) == 1
    dup = json.loads(lines[3])["utt_id"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mger extract: error: {manifest}: utterance id {dup} appears more than once; one id would get two "
        "utterances' features: fix the manifest or rerun `mger prepare`"
    )
    assert not (tmp_path / "text.h5").exists() and not (tmp_path / "text.h5.parts").exists()


# --- SIGKILL at chosen points of extract, a full disk at its write ------------------------------

_KILL_AT = """
import os, sys
import mger.features.cache as cache
import mger.features.rows as rows
import mger.features.shards as shards
point = sys.argv[1]
def kill_after(module, name, calls=1):
    real, seen = getattr(module, name), {"n": 0}
    def wrapped(*args, **kw):
        out = real(*args, **kw)
        seen["n"] += 1
        if seen["n"] == calls:
            os.kill(os.getpid(), 9)
        return out
    setattr(module, name, wrapped)
if point == "after 3 parts":
    kill_after(rows, "write_store", 3)
elif point == "merge written, not renamed":
    kill_after(cache, "_write_levels")
elif point == "merged, parts not removed":
    kill_after(shards, "merge_stores")
from mger.pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("point", ["after 3 parts", "merge written, not renamed", "merged, parts not removed"])
def test_extract_killed_at_any_point_leaves_old_or_whole_store(
    point: str, reference_store, aligned, tiny_models, tmp_path: Path
) -> None:
    """SIGKILL during a rebuild (layer 1 over a layer-'last' store): the old store stays whole
    until the new one replaces it; a rerun gives exactly the uninterrupted result and no
    leftovers (parts folder, temps)."""
    import shutil

    import h5py

    from mger.features.cache import verify_store

    env = os.environ | {"PYTHONPATH": _ROOT}
    store = tmp_path / "speech.h5"
    shutil.copy(reference_store["speech"], store)
    params = _params_file(tmp_path, aligned, tiny_models, layer=1)
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AT, point, *_extract_cmd(params)[3:]], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    assert verify_store(store) == []
    with h5py.File(store) as f:
        layer = json.loads(f.attrs["fingerprint"])["layer"]
    assert layer == (1 if point == "merged, parts not removed" else 3)  # 'last' of the 3-layer model, resolved
    rerun = subprocess.run(_extract_cmd(params), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert verify_store(store) == [] and sorted(p.name for p in tmp_path.iterdir() if "speech" in p.name) == [
        "speech.h5",
        "speech.h5.lock",
    ]
    with h5py.File(store) as f:
        assert json.loads(f.attrs["fingerprint"])["layer"] == 1


def test_full_disk_at_the_merge_keeps_the_old_store(
    reference_store,
    aligned,
    tiny_models,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    import mger.features.cache as cache
    from mger.pipeline.cli import main

    store = tmp_path / "speech.h5"
    shutil.copy(reference_store["speech"], store)
    before = store.read_bytes()

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_merged_level", full)  # the merge's first write of level data
    params = _params_file(tmp_path, aligned, tiny_models, layer=1)
    assert main(["extract", "--kind", "speech", "--params", str(params)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("mger extract: error: ") and "disk full; free some space and rerun" in line, line
    assert store.read_bytes() == before
    n_parts = -(-len(aligned["manifest"].read_text().splitlines()) // 2)  # shard_size 2; kept for the rerun
    assert not list(tmp_path.glob("*.tmp")) and len(list((tmp_path / "speech.h5.parts").glob("part-*.h5"))) == n_parts


# --- bad params: one line naming the params file and the key, for any stage -------------------


@pytest.mark.parametrize(
    "stage, yaml_text, key",
    [
        ("train", "train:\n  lr: -1\n", "train.lr: must be positive"),
        ("train", "train:\n  dropout: 1\n", "train.dropout: must be in [0, 1)"),
        ("extract", "features:\n  batch_seconds: -5\n", "features.batch_seconds: must be positive"),
        ("finetune", "finetune:\n  weight_decay: -0.5\n", "finetune.weight_decay: must be >= 0"),
        ("train", "train:\n  hidden: 130\n  heads: 4\n", "train: hidden size 130 is not divisible by 4"),
        ("synth", "synth:\n  seed: [1\n", "not valid YAML"),
        ("prepare", "prepare:\n  manifets: x\n", "prepare.manifets: unknown key"),
    ],
)
def test_bad_params_are_one_line_for_any_stage(
    tmp_path: Path, stage: str, yaml_text: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mger.pipeline.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml_text)
    extra = ["--experiment", "all"] if stage == "train" else []
    assert main([stage, *extra, "--params", str(params)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mger {stage}: error: {params}: ") and key in err[0], err


# --- bad values from the encoder, a part damaged before the merge ------------------------------


def _features_cfg(tiny_models: dict[str, str], out: Path):
    from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig

    return FeaturesConfig(
        out=str(out),
        shard_size=4,
        speech=SpeechFeaturesConfig(model=tiny_models["speech"]),
        text=TextFeaturesConfig(model=tiny_models["text"]),
    )


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_nan_from_the_encoder_never_reaches_the_store(aligned, tiny_models, tmp_path: Path) -> None:
    """A float wav with samples near float32's limit (finite): the encoder's normalisation
    overflows and its rows are NaN; extract stops naming the utterance and stores nothing of
    that part."""
    import dataclasses

    import soundfile as sf

    from mger.core.audio import read_audio
    from mger.core.manifest import read_manifest, write_manifest
    from mger.features.cache import CacheError
    from mger.features.extract import extract

    utts = read_manifest(aligned["manifest"])
    audio = read_audio(utts[5].wav)
    audio[1000:1100] = 3e38
    sf.write(str(tmp_path / "huge.wav"), audio, 16000, subtype="FLOAT")
    utts[5] = dataclasses.replace(utts[5], wav=str(tmp_path / "huge.wav"))
    write_manifest(tmp_path / "m.jsonl", utts)
    with pytest.raises(CacheError, match=rf"NaN or inf for 1 utterances at level frame \(e.g. {utts[5].utt_id}\)"):
        extract("speech", _features_cfg(tiny_models, tmp_path), tmp_path / "m.jsonl", aligned["segments"])
    assert not (tmp_path / "speech.h5").exists()
    assert sorted(p.name for p in (tmp_path / "speech.h5.parts").glob("part-*")) == ["part-00000.h5"]  # before it


def test_nan_audio_is_one_line_naming_the_wav(
    aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A float wav holding NaN samples: one line naming the wav and saying so (not dtype advice);
    parts finished before it stay.  `mger prepare` drops such a wav, recorded
    (tests/test_iemocap_reader.py)."""
    import dataclasses

    import soundfile as sf

    from mger.core.audio import read_audio
    from mger.core.manifest import read_manifest, write_manifest
    from mger.pipeline.cli import main

    utts = read_manifest(aligned["manifest"])
    audio = read_audio(utts[5].wav)
    audio[1000:1100] = np.nan
    nan_wav = tmp_path / "nan.wav"
    sf.write(str(nan_wav), audio, 16000, subtype="FLOAT")
    utts[5] = dataclasses.replace(utts[5], wav=str(nan_wav))
    write_manifest(tmp_path / "m.jsonl", utts)
    params = _params_file(tmp_path, aligned, tiny_models)
    assert main(["extract", "--kind", "speech", "--manifest", str(tmp_path / "m.jsonl"), "--params", str(params)]) == 1
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert errors == [
        f"mger extract: error: {nan_wav}: the audio holds NaN or inf samples (a float wav); fix or remove the "
        "file and rerun `mger prepare` (it drops such wavs, recorded in the data-quality report)"
    ]
    assert not (tmp_path / "speech.h5").exists()
    done = sorted(p.name for p in (tmp_path / "speech.h5.parts").glob("part-*"))
    assert done == ["part-00000.h5", "part-00001.h5"]  # shard_size 2: the parts before utterance 5's


def test_part_damaged_before_the_merge_is_refused(aligned, tiny_models, tmp_path: Path) -> None:
    import h5py

    from mger.features.cache import CacheError, verify_store
    from mger.features.extract import extract

    cfg = _features_cfg(tiny_models, tmp_path)
    extract("text", cfg, aligned["manifest"], aligned["segments"], shard=(0, 2))
    part = tmp_path / "text.h5.parts" / "part-00000.h5"
    with h5py.File(part, "r") as f:
        where = f["word/data"].id.get_offset() + 7
    with open(part, "r+b") as fh:
        fh.seek(where)
        byte = fh.read(1)
        fh.seek(where)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CacheError, match=r"part-00000\.h5: level 'word' does not match its checksum"):
        extract("text", cfg, aligned["manifest"], aligned["segments"], shard=(1, 2))
    assert not (tmp_path / "text.h5").exists()
    part.unlink()
    extract("text", cfg, aligned["manifest"], aligned["segments"])
    assert verify_store(tmp_path / "text.h5") == []


@pytest.mark.parametrize("fault", ["missing", "garbage"])
def test_one_bad_wav_is_one_line_and_keeps_finished_parts(
    fault: str, aligned, tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wav deleted or overwritten with garbage after prepare: extract stops with one line
    naming that wav; parts finished before it stay for the rerun after the wav is restored."""
    import dataclasses

    from mger.core.manifest import read_manifest, write_manifest
    from mger.pipeline.cli import main

    utts = read_manifest(aligned["manifest"])
    bad = tmp_path / "bad.wav"
    if fault == "garbage":
        bad.write_bytes(b"RIFF" + os.urandom(3000))
    utts[9] = dataclasses.replace(utts[9], wav=str(bad))
    write_manifest(tmp_path / "m.jsonl", utts)
    params = _params_file(tmp_path, aligned, tiny_models)
    assert main(["extract", "--kind", "speech", "--manifest", str(tmp_path / "m.jsonl"), "--params", str(params)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("mger extract: error: ") and str(bad) in line, line
    assert not (tmp_path / "speech.h5").exists()
    done = sorted(p.name for p in (tmp_path / "speech.h5.parts").glob("part-*.h5")) if fault == "garbage" else []
    assert done == [f"part-{p:05d}.h5" for p in range(len(done))] and len(done) == (4 if fault == "garbage" else 0)


def test_shard_run_waits_out_a_short_exclusive_setup(aligned, tiny_models, tmp_path: Path, monkeypatch) -> None:
    """Shard runs started together meet each other's exclusive set-up: a shard run waits for
    it (up to SETUP_WAIT_S) instead of failing; a whole run is refused at once."""
    import threading

    import mger.features.extract as extract_mod
    import mger.features.shards as shards
    from mger.features.cache import CacheError, StoreLock, verify_store

    cfg = _features_cfg(tiny_models, tmp_path)
    holder = StoreLock(tmp_path / "text.h5")
    assert holder.acquire()
    with pytest.raises(CacheError, match=r"text\.h5 is being written by pid \d+"):
        extract_mod.extract("text", cfg, aligned["manifest"], aligned["segments"])
    monkeypatch.setattr(shards, "SETUP_WAIT_S", 0.3)
    with pytest.raises(CacheError, match="is being written by"):
        extract_mod.extract("text", cfg, aligned["manifest"], aligned["segments"], shard=(0, 2))
    monkeypatch.setattr(shards, "SETUP_WAIT_S", 30.0)
    threading.Timer(0.5, holder.release).start()
    extract_mod.extract("text", cfg, aligned["manifest"], aligned["segments"], shard=(0, 2))
    extract_mod.extract("text", cfg, aligned["manifest"], aligned["segments"], shard=(1, 2))
    assert verify_store(tmp_path / "text.h5") == []


def test_full_disk_while_writing_the_manifest_keeps_the_old_one(tmp_path: Path, monkeypatch) -> None:
    import builtins

    from mger.core.manifest import read_manifest, write_manifest
    from tests.builders import iemocap_row

    utt = iemocap_row(
        "Ses01F_impro01_F000",
        1,
        "Ses01F_impro01",
        "Ses01_F",
        "F",
        True,
        "/x.wav",
        1.0,
        "hi",
        "neu",
        "neu",
        3.0,
        3.0,
        3.0,
    )
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, [utt])
    real_open = builtins.open

    class Full:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    monkeypatch.setattr(Path, "open", lambda self, *a, **kw: Full(real_open(self, *a, **kw)))
    with pytest.raises(OSError) as info:
        write_manifest(path, [utt, utt])
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert [u.utt_id for u in read_manifest(path)] == ["Ses01F_impro01_F000"] and _leftovers(tmp_path) == []


def test_verify_names_a_folder_given_as_a_store(tmp_path: Path) -> None:
    """`mger cache verify <folder>` said "no such file" of a folder that exists."""
    from mger.features.cache import verify_store

    assert verify_store(tmp_path) == ["a folder, not a store file"]
    assert verify_store(tmp_path / "absent.h5") == ["no such file"]
