"""The phantom set: deterministic, in the real layout, with the quirks the real set has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lggdemo.data.arrays import slice_table
from lggdemo.data.kaggle import Clinical, scan_dataset
from lggdemo.data.synthetic import CASE_PREFIX, GENERATOR_VERSION, PhantomConfig, default_root, generate, is_phantom

TINY = PhantomConfig(seed=3, n_patients=3, min_slices=3, max_slices=4)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = _files(generate(tmp_path / "a", TINY))
    b = _files(generate(tmp_path / "b", TINY))
    assert len(a) == 1 + 2 * sum(1 for k in a if k.endswith("_mask.tif"))
    assert a.keys() == b.keys() and a == b


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a = _files(generate(tmp_path / "a", TINY))
    b = _files(generate(tmp_path / "b", PhantomConfig(seed=4, n_patients=3, min_slices=3, max_slices=4)))
    common = a.keys() & b.keys()
    assert common, "same folder names for the same patient numbers"
    assert any(a[k] != b[k] for k in common if k.endswith(".tif"))


def test_regenerating_replaces_the_previous_copy(tmp_path: Path) -> None:
    root = generate(tmp_path, TINY)
    (root / "stale.txt").write_text("left over")
    again = generate(tmp_path, TINY)
    assert again == root and not (root / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["kaggle_3m"], "no temporary folders left behind"


def test_phantoms_read_like_the_real_layout(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    assert not index.problems
    config = PhantomConfig()
    assert len(index.patients) == config.n_patients
    assert all(config.min_slices <= len(r) <= config.max_slices for r in index.patients.values())
    assert all(is_phantom(pid) and pid.startswith(CASE_PREFIX) for pid in index.patient_ids)
    assert not is_phantom("TCGA_CS_4942_19970222")
    grades = [index.clinical_for(pid).grade for pid in index.patient_ids]
    assert grades[:-1] == ["G2", "G3"] * 5 + ["G2"] and grades[-1] is None
    assert index.clinical_for(index.patient_ids[-1]) == Clinical(), "a blank row, like TCGA_HT_A61B"
    areas = slice_table(index)
    per_patient = areas.groupby("patient_id").tumour_area_px.apply(lambda a: int((a > 0).sum()))
    assert (per_patient > 0).all(), "every patient has a tumour slice, as in the real set"
    assert 0.1 < (areas.tumour_area_px > 0).mean() < 0.9


def test_grade_iii_phantoms_are_larger_on_average(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    areas = slice_table(index).groupby("patient_id").tumour_area_px.sum()
    by_grade = {g: [areas[p] for p in index.patient_ids if index.clinical_for(p).grade == g] for g in ("G2", "G3")}
    assert np.mean(by_grade["G3"]) > np.mean(by_grade["G2"])


def test_default_root_is_generated_once_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path))
    small = PhantomConfig(n_patients=2, min_slices=3, max_slices=3)
    root = default_root(small)
    assert root.is_relative_to(tmp_path) and f"v{GENERATOR_VERSION}" in str(root)
    stamp = (root / "data.csv").stat().st_mtime_ns
    assert default_root(small) == root
    assert (root / "data.csv").stat().st_mtime_ns == stamp, "reused, not regenerated"


# --- first start: many pages, threads and processes ask for the phantoms at the same moment ------------

RACE = PhantomConfig(seed=5, n_patients=4, min_slices=6, max_slices=8)
RACE_THREADS = 8
RACE_PROCESSES = 3
#: One process of the cold start: wait for the starting signal, then do what a page does (find the phantoms,
#: index them, measure the tumour areas) and print what it saw.
_RACER = """
import json, sys, time
from pathlib import Path
from lggdemo.data.kaggle import scan_dataset
from lggdemo.data.arrays import slice_table
from lggdemo.data.synthetic import PhantomConfig, default_root
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
index = scan_dataset(default_root(PhantomConfig(seed=5, n_patients=4, min_slices=6, max_slices=8)))
areas = slice_table(index)
print(json.dumps([index.n_slices, int((areas.tumour_area_px > 0).sum()), len(index.problems)]))
"""


def _what_a_page_sees(_: object = None) -> tuple[int, int, int]:
    index = scan_dataset(default_root(RACE))
    areas = slice_table(index)
    return index.n_slices, int((areas.tumour_area_px > 0).sum()), len(index.problems)


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_cold_start_race_generates_once_and_everyone_sees_the_whole_set(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    reference_index = scan_dataset(generate(tmp_path / "reference", RACE))
    reference = slice_table(reference_index)
    expected = (reference_index.n_slices, int((reference.tumour_area_px > 0).sum()), 0)

    cache = tmp_path / "cache"
    monkeypatch.setenv("LGG_CACHE_DIR", str(cache))
    go = tmp_path / "go"
    env = dict(os.environ, LGG_CACHE_DIR=str(cache))
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(go)], cwd=repo, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(RACE_PROCESSES)]
    barrier = threading.Barrier(RACE_THREADS)

    def racer(_: int) -> tuple[int, int, int]:
        barrier.wait()
        return _what_a_page_sees()

    try:
        with ThreadPoolExecutor(RACE_THREADS) as pool:
            futures = [pool.submit(racer, i) for i in range(RACE_THREADS)]
            go.touch()  # the processes start with the threads (they have had their imports' time meanwhile)
            seen = [f.result(timeout=300) for f in futures]
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        seen.append(tuple(json.loads(out)))
    assert seen == [expected] * (RACE_THREADS + RACE_PROCESSES)

    base = default_root(RACE).parent
    assert sorted(p.name for p in base.iterdir()) == ["kaggle_3m"], "a leftover or second copy of the phantoms"
    tables = sorted(cache.glob("areas-*.csv"))
    assert len(tables) == 1, f"one dataset version expected, the cache holds {[p.name for p in tables]}"
    stored = pd.read_csv(tables[0])
    pd.testing.assert_series_equal(stored.tumour_area_px, reference.tumour_area_px)
