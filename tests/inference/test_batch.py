"""``lggdemo-predict --tree/--manifest``: studies found, shared between ranks, resumed without trusting a
half-written output, one summary row per study; torchrun's two ranks give the rows one process gives (slow)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lggdemo.data.synthetic import PhantomConfig, generate
from lggdemo.inference.batch import (
    MARKER,
    SUMMARY,
    BatchError,
    Study,
    clean_partial,
    discover,
    my_share,
    parse_shard,
    read_manifest,
    read_marker,
    write_marker,
)
from lggdemo.predict import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small phantoms (8-10 slices) in the Kaggle layout: a folder tree of six studies."""
    return generate(tmp_path_factory.mktemp("tree"), PhantomConfig(seed=3, n_patients=6, min_slices=8, max_slices=10))


def _summary(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / SUMMARY).read_text())))


def _temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_file()]


def test_a_tree_is_split_into_studies(tmp_path: Path, small_tree: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(small_tree / sorted(p.name for p in small_tree.iterdir() if p.is_dir())[0], root / "site1" / "k")
    (root / "site2").mkdir(parents=True)
    for name in ("alpha.nii.gz", "beta.nii"):  # unrelated NIfTI files: one study each
        (root / "site2" / name).write_bytes(b"x")
    (root / "site2" / "seq").mkdir()
    for name in ("p_flair.nii.gz", "p_t1.nii.gz", "p_mask.nii.gz"):  # one patient's sequences: one study
        (root / "site2" / "seq" / name).write_bytes(b"x")
    (root / "site3").mkdir()
    (root / "site3" / "study.zip").write_bytes(b"x")
    (root / "site3" / "notes.txt").write_text("not a study")
    (root / "site3" / "dcm").mkdir()
    (root / "site3" / "dcm" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 8)  # no suffix, DICOM magic
    studies = discover(root)
    assert [s.key for s in studies] == ["site1__k", "site2__alpha.nii.gz", "site2__beta.nii", "site2__seq",
                                        "site3__dcm", "site3__study.zip"]
    assert {s.path for s in studies} == {root / "site1" / "k", root / "site2" / "alpha.nii.gz",
                                        root / "site2" / "beta.nii", root / "site2" / "seq", root / "site3" / "dcm",
                                        root / "site3" / "study.zip"}
    assert [s.key for s in discover(root / "site1" / "k")] == ["k"]  # a study given as the tree itself
    with pytest.raises(BatchError, match="no study"):
        (tmp_path / "empty").mkdir()
        discover(tmp_path / "empty")


def test_manifest_rows_become_studies(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,id,age,sex\na/p1.nii.gz,P1,54,female\n/abs/p2.zip,,,\nb c/p3,,31,\n")
    studies = read_manifest(tmp_path / "m.csv")
    by_key = {s.key: s for s in studies}
    assert set(by_key) == {"P1", "abs__p2.zip", "b_c__p3"}  # the id, else the path, made a folder name
    assert by_key["P1"].path == tmp_path / "a" / "p1.nii.gz"
    assert by_key["P1"].clinical is not None and by_key["P1"].clinical.age == 54 and by_key["P1"].clinical.sex == "female"
    assert [s.clinical for s in studies if s.path == Path("/abs/p2.zip")] == [None]
    (tmp_path / "dup.csv").write_text("path,id\na,X\nb,X\n")
    with pytest.raises(BatchError, match="same study"):
        read_manifest(tmp_path / "dup.csv")
    (tmp_path / "age.csv").write_text("path,age\na,old\n")
    with pytest.raises(BatchError, match="line 2"):
        read_manifest(tmp_path / "age.csv")
    (tmp_path / "nopath.csv").write_text("file\na\n")
    with pytest.raises(BatchError, match="'path' column"):
        read_manifest(tmp_path / "nopath.csv")


def test_shards_come_from_the_flag_or_torchrun() -> None:
    assert parse_shard("2/5", {}) == (2, 5)
    assert parse_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert parse_shard(None, {}) == (0, 1)
    for bad in ("5/5", "x/2", "1/0"):
        with pytest.raises(BatchError):
            parse_shard(bad, {})
    studies = [Study(f"s{i}", Path(f"s{i}")) for i in range(7)]
    shares = [my_share(studies, r, 3) for r in range(3)]
    assert sorted(s.key for share in shares for s in share) == sorted(s.key for s in studies)  # each exactly once
    assert [len(s) for s in shares] == [3, 2, 2]


def test_a_marker_vouches_for_its_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    out = folder / "s_mask.nii.gz"
    out.write_bytes(b"mask bytes")
    write_marker(folder, Study("s", Path("in")), {"input": "in", "error": None}, [out])
    assert read_marker(folder)["row"]["input"] == "in"
    (folder / ".s_report.pdf.x1y2").write_bytes(b"half a pdf")  # what a killed atomic write leaves
    assert clean_partial(folder) == [".s_report.pdf.x1y2"] and out.is_file()
    out.write_bytes(b"mask byte")  # truncated after the marker: the study is no longer complete
    assert read_marker(folder) is None
    assert sorted(clean_partial(folder)) == [MARKER, "s_mask.nii.gz"] and not any(folder.iterdir())


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_rerun_skips_complete_studies_and_redoes_broken_ones(tmp_path: Path, small_tree: Path,
                                                             tiny_weights: Path) -> None:
    tree = tmp_path / "tree"
    for name in sorted(p.name for p in small_tree.iterdir() if p.is_dir())[:3]:
        # without their masks: no reference, so no surface metrics (and no MONAI import) to wait for here
        shutil.copytree(small_tree / name, tree / name, ignore=shutil.ignore_patterns("*_mask.tif"))
    out = tmp_path / "out"
    args = ["--tree", str(tree), "--out", str(out), "--weights", str(tiny_weights), "--device", "cpu", "--no-grade",
            "--format", "nifti,prob-nifti"]
    assert main(args) == 0
    first = _summary(out)
    keys = [r["study"] for r in first]
    assert len(keys) == 3 and all(r["status"] == "ok" for r in first)
    folders = [out / "studies" / k for k in keys]
    assert sorted(p.name for p in folders[0].iterdir()) == sorted([MARKER, f"{keys[0]}_mask.nii.gz",
                                                                   f"{keys[0]}_prob.nii.gz"])
    stamps = [(f / MARKER).stat().st_mtime_ns for f in folders]
    # a killed run's leftovers: a truncated output, outputs without their marker, a temp file of a write
    mask = folders[0] / f"{keys[0]}_mask.nii.gz"
    mask.write_bytes(mask.read_bytes()[:100])
    (folders[1] / MARKER).unlink()
    (folders[2] / f".{keys[2]}_prob.nii.gz.abc123").write_bytes(b"half a file")
    (out / SUMMARY).unlink()
    assert main(args) == 0
    again = _summary(out)
    assert [r["study"] for r in again] == keys  # one row per study, none twice
    assert again == first
    assert (folders[0] / MARKER).stat().st_mtime_ns != stamps[0] and (folders[1] / MARKER).is_file()
    assert (folders[2] / MARKER).stat().st_mtime_ns == stamps[2]  # complete: skipped
    assert not _temp_files(out)
    assert all(read_marker(f) is not None for f in folders)
    # --merge writes the same summary from the markers alone, and refuses while a study is missing
    (out / SUMMARY).unlink()
    assert main(["--tree", str(tree), "--out", str(out), "--merge"]) == 0 and _summary(out) == first
    shutil.rmtree(folders[1])
    assert main(["--tree", str(tree), "--out", str(out), "--merge"]) == 2


def _run(cmd: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.update(extra)
    return env


@pytest.mark.slow
def test_two_torchrun_ranks_give_the_rows_of_one_process(tmp_path: Path, small_tree: Path, tiny_weights: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip(f"torchrun is not installed next to {sys.executable}")
    common = ["--tree", str(small_tree), "--weights", str(tiny_weights), "--device", "cpu", "--age", "50",
              "--format", "nifti,prob-nifti"]
    one = _run([sys.executable, "-m", "lggdemo.predict", *common, "--out", str(tmp_path / "one")],
               _env(OMP_NUM_THREADS="1"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "lggdemo.predict", *common,
                "--out", str(tmp_path / "two")], _env())
    assert two.returncode == 0, two.stderr[-3000:]
    assert "rank 0/2: 3 studies done" in two.stderr and "rank 1/2: 3 studies done" in two.stderr
    rows_one, rows_two = _summary(tmp_path / "one"), _summary(tmp_path / "two")
    assert len(rows_one) == 6 and rows_two == rows_one
    assert not _temp_files(tmp_path / "two")


@pytest.mark.slow
def test_a_killed_run_restarts_without_duplicates_or_half_files(tmp_path: Path, small_tree: Path,
                                                                 tiny_weights: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lggdemo.predict", "--tree", str(small_tree), "--out", str(out), "--weights",
           str(tiny_weights), "--device", "cpu", "--no-grade", "--format", "nifti,pdf"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(list(out.glob(f"studies/*/{MARKER}"))) < 2 and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # mid-batch: no chance to clean up
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = len(list(out.glob(f"studies/*/{MARKER}")))
    assert 2 <= finished < 6 and not (out / SUMMARY).exists()
    again = _run(cmd, _env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{6 - finished} studies done, {finished} already complete" in again.stderr
    rows = _summary(out)
    assert len(rows) == 6 and len({r["study"] for r in rows}) == 6
    assert not _temp_files(out)
    assert all(read_marker(f) is not None for f in (out / "studies").iterdir())
