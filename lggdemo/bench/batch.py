"""``--batch``: studies per minute of ``lggdemo-predict --manifest`` with 1 and with N processes.

Each process count runs the real CLI end to end in a subprocess (one process: plain Python; several: ``torchrun
--nproc-per-node N``, one rank per process, each with cores/N threads) over the same manifest of studies, into a
fresh output folder, so what is timed is what a user's batch pays: start-up, model loading, reading, inference,
measurements (surface metrics where a study carries a reference), outputs, markers and the merged summary.

Two rates are reported: end to end (studies / wall time, start-up included), and steady state (per rank, the
studies after its first over the time from its first to its last, summed over ranks: start-up and the first,
slowest study left out). The runs' summaries are compared: sharding must not change a row (``device`` names
the engine's thread count, which differs by design).
"""

from __future__ import annotations

import csv
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lggdemo.data.synthetic import default_root
from lggdemo.device import default_threads
from lggdemo.inference.batch import MARKER, SUMMARY, discover


def _manifest(data: Path, n: int, dest: Path) -> tuple[Path, int]:
    studies = discover(data)[: max(1, n)]
    path = dest / "manifest.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "id"])
        writer.writerows([str(s.path), s.key] for s in studies)
    return path, len(studies)


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "lggdemo.predict"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [torchrun, "--standalone", f"--nproc-per-node={processes}", "-m", "lggdemo.predict"]


def _steady_rate(out: Path, processes: int) -> float | None:
    """Studies per minute once running: each rank's studies after its first, over the time from its first to its
    last marker, summed over ranks (rank r ran the r-th, (r+P)-th ... study in key order, as ``batch.my_share``)."""
    folders = sorted(p.parent.name for p in out.glob(f"studies/*/{MARKER}"))
    total = 0.0
    for r in range(processes):
        stamps = sorted((out / "studies" / k / MARKER).stat().st_mtime for k in folders[r::processes])
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return None
        total += (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60.0
    return total


def bench_batch(data: Path | None = None, studies: int = 12, processes: Sequence[int] = (1, 2), *,
                weights_dir: Path | None = None, formats: str = "nifti", device: str = "cpu",
                engine: str | None = None) -> dict[str, Any]:
    """Time the batch CLI over the first ``studies`` studies of ``data`` (default: the phantoms) per process count."""
    root = Path(data) if data is not None else default_root()
    cores = default_threads()  # the cores this run was given (OMP_NUM_THREADS where set), shared by its processes
    report: dict[str, Any] = {"data": str(root), "cpu": _cpu_name(), "cores": cores, "formats": formats}
    summaries: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="lgg-bench-batch-") as tmp:
        manifest, n = _manifest(root, studies, Path(tmp))
        report["studies"] = n
        # untimed: one study, so the ONNX export cache (models/engine) is filled before any timed run needs it
        warm_dir = Path(tmp) / "warm"
        warm_dir.mkdir()
        warm, _ = _manifest(root, 1, warm_dir)
        subprocess.run([*_command(1), "--manifest", str(warm), "--out", str(warm_dir / "out"), "--device",
                        device, *(["--weights", str(weights_dir)] if weights_dir else []),
                        *(["--engine", engine] if engine else [])],
                       env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
        for p in processes:
            out = Path(tmp) / f"out-{p}"
            cmd = [*_command(p), "--manifest", str(manifest), "--out", str(out), "--device", device, "--format", formats]
            if weights_dir is not None:
                cmd += ["--weights", str(weights_dir)]
            if engine is not None:
                cmd += ["--engine", engine]
            env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // p)), HF_HUB_OFFLINE="1")
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            entry: dict[str, Any] = {"exit_code": done.returncode, "wall_s": round(wall, 2),
                                     "threads_per_process": max(1, cores // p)}
            if done.returncode not in (0, 2) or not (out / SUMMARY).is_file():
                entry["error"] = done.stderr[-2000:]
            else:
                summaries[p] = (out / SUMMARY).read_text()
                steady = _steady_rate(out, p)
                entry.update(studies_per_min=round(n / wall * 60.0, 2),
                             steady_studies_per_min=None if steady is None else round(steady, 2),
                             failed_studies=sum(r["status"] != "ok" for r in csv.DictReader(io.StringIO(summaries[p]))))
            report[f"processes_{p}"] = entry
    rates = {p: report[f"processes_{p}"].get("studies_per_min") for p in processes}
    if len(processes) > 1 and rates.get(processes[0]) and all(rates.values()):
        report["speedup_vs_1"] = {str(p): round(rates[p] / rates[processes[0]], 2) for p in processes[1:]}
    if len(summaries) > 1:
        differ = _differing_columns(list(summaries.values()))
        report["summaries_identical"] = not differ
        report["differing_columns"] = differ
    return report


#: Columns that name the run, not the study: the engine's thread count is part of ``device``.
RUN_COLUMNS = ("device",)


def _differing_columns(summaries: list[str]) -> list[str]:
    """Summary columns whose values differ between runs (the run-describing :data:`RUN_COLUMNS` left out)."""
    tables = [list(csv.DictReader(io.StringIO(s))) for s in summaries]
    if len({len(t) for t in tables}) != 1:
        return ["(row count)"]
    columns = [c for c in (tables[0][0] if tables[0] else {}) if c not in RUN_COLUMNS]
    return [c for c in columns if any(t[i][c] != tables[0][i][c] for t in tables[1:] for i in range(len(t)))]
