"""``python -m lggdemo.bench --batch``: the batch CLI timed with one process and with two torchrun ranks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lggdemo.bench.cli import main
from lggdemo.data.synthetic import PhantomConfig, generate


@pytest.mark.slow
def test_batch_bench_reports_studies_per_minute_for_1_and_2_processes(tmp_path: Path, tiny_weights: Path) -> None:
    if not Path(sys.executable).with_name("torchrun").is_file():
        pytest.skip("torchrun is not installed next to the interpreter")
    data = generate(tmp_path / "data", PhantomConfig(seed=5, n_patients=4, min_slices=8, max_slices=8))
    out = tmp_path / "bench.json"
    assert main(["--batch", "--data", str(data), "--studies", "4", "--processes", "1,2", "--weights",
                 str(tiny_weights), "--json", str(out)]) == 0
    report = json.loads(out.read_text())["batch"]
    assert report["studies"] == 4 and report["summaries_identical"] is True
    for p in (1, 2):
        run = report[f"processes_{p}"]
        assert run["exit_code"] == 0 and run["failed_studies"] == 0
        assert run["studies_per_min"] == pytest.approx(4 / run["wall_s"] * 60, rel=0.01)
    assert report["processes_2"]["threads_per_process"] == max(1, report["cores"] // 2)
    assert report["speedup_vs_1"]["2"] > 0
