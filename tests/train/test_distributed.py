"""The trainer under torchrun on this CPU (gloo): a 2-process run, world size 1 = a plain run, cancelling, a dying rank.

The runs are tiny (32-pixel inputs, a few dozen slices per epoch) and marked ``slow``: each starts real
processes that import torch. Only the unit tests at the top run in the fast suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.kaggle import load_image, scan_dataset
from lggdemo.inference.predictor import Predictor
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, active_dir, is_complete, read_card, set_active
from lggdemo.train import TrainConfig, distributed
from lggdemo.train.progress import Cancelled, Progress

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TINY_ARGS = ["--preset", "quick", "--image-size", "32", "--grade-image-size", "32", "--batch-size", "8", "--epochs", "1",
             "--encoder", "resnet18", "--seed", "0", "--no-bar"]


def trainer_args(data: Path, out: Path, samples: int, folds: int = 0, *extra: str) -> list[str]:
    return ["-m", "lggdemo.train", *TINY_ARGS, "--data", str(data), "--out", str(out), "--samples-per-epoch", str(samples),
            "--folds", str(folds), *extra]


def tensors(directory: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / name))


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def wait_for_step(progress: Path, proc: subprocess.Popen, log: Path, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if progress.exists() and '"event": "step"' in progress.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before training: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the run never reached a training step")


def workers(agent: int) -> dict[int, int]:
    """Rank -> pid of torchrun's workers (it starts each in a session of its own, so not by process group)."""
    out = {}
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
            if f"\nPPid:\t{agent}\n" in status:
                env = dict(item.split("=", 1) for item in (entry / "environ").read_bytes().decode(errors="replace")
                           .split("\0") if "=" in item)
                if "RANK" in env:
                    out[int(env["RANK"])] = int(entry.name)
        except OSError:
            continue
    return out


def wait_gone(pids: list[int], limit_s: float = 30) -> bool:
    """Whether every pid has exited (and been reaped) within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "\nState:\tZ" not in _status(p)]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def start_ranks(proc: subprocess.Popen, log: Path, progress: Path) -> dict[int, int]:
    wait_for_step(progress, proc, log)
    ranks = workers(proc.pid)
    assert sorted(ranks) == [0, 1], f"torchrun's workers not found: {ranks}"
    return ranks


# --- fast: one plain process ----------------------------------------------------------------------


def test_a_plain_process_has_no_process_group_and_keeps_its_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    cpu = torch.device("cpu")
    assert distributed.join(cpu) == cpu
    assert distributed.context() == distributed.SINGLE and distributed.is_main() and distributed.world_size() == 1
    assert distributed.rank_seed(7) == 7  # a plain run draws exactly what it drew before
    model = torch.nn.Linear(2, 1)
    assert distributed.distribute(model, cpu) is model
    assert distributed.finish(0) == 0 and distributed.finish(130) == 130
    entry = distributed.card_entry(TrainConfig(batch_size=12))
    assert entry["world_size"] == 1 and entry["backend"] is None and entry["per_rank_batch_size"] == 12


def test_a_stop_request_is_raised_by_the_step_check_of_a_plain_process() -> None:
    progress = Progress()
    distributed.check_together(progress)  # nothing asked: no exception
    progress.stop.set()
    with pytest.raises(Cancelled):
        distributed.check_together(progress)


def test_other_ranks_draw_independent_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "_context", distributed.DistContext(rank=rank, world_size=3, backend="gloo"))
        seeds.append(distributed.rank_seed(0))
    assert seeds[0] == 0 and len(set(seeds)) == 3


# --- slow: real torchrun runs -------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_gloo_run_publishes_weights_the_app_loads(synthetic_root: Path, tmp_path: Path) -> None:
    out, log, progress = tmp_path / "ddp2", tmp_path / "log.txt", tmp_path / "progress.jsonl"
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node", "2",
           *trainer_args(synthetic_root, out, 48, 2, "--progress-file", str(progress))]
    with open(log, "w") as fh:
        res = subprocess.run(cmd, cwd=ROOT, env={**os.environ}, stdout=fh, stderr=subprocess.STDOUT, timeout=600)
    assert res.returncode == 0, log.read_text()[-3000:]
    assert is_complete(out)
    card = read_card(out)
    assert card["distributed"]["world_size"] == 2 and card["distributed"]["backend"] == "gloo"
    assert card["distributed"]["per_rank_batch_size"] == 8 and card["distributed"]["global_batch_size"] == 16
    assert set(card["grade"]["cross_validation"]["variants"]) == {"fusion", "clinical_only", "image_only"}  # rank 0 scored
    assert sorted(p.name for p in out.iterdir()) == sorted(["model_card.json", SEG_FILE, GRADE_FILE])  # no temp files
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [e["event"] for e in events].count("start") == 1 and events[-1]["event"] == "done"  # rank 0 alone reports
    predictor = Predictor.from_directory(out, "cpu")
    index = scan_dataset(synthetic_root)
    recs = index.patients[index.patient_ids[0]]
    rec = recs[len(recs) // 2]
    result = predictor.predict([load_image(rec)], index.clinical_for(rec.patient_id))
    assert result.slices[0].mask.shape == (256, 256) and 0.0 <= float(result.grade.raw_score) <= 1.0


@pytest.mark.slow
def test_one_process_torchrun_gives_the_plain_runs_weights(synthetic_root: Path, tmp_path: Path) -> None:
    plain, ddp1 = tmp_path / "plain", tmp_path / "torchrun1"
    for cmd, out in (([sys.executable], plain), ([*TORCHRUN, "--standalone", "--nproc_per_node", "1"], ddp1)):
        res = subprocess.run([*cmd, *trainer_args(synthetic_root, out, 32, 0, "--threads", "1")], cwd=ROOT,
                             env={**os.environ}, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    assert read_card(plain)["distributed"]["world_size"] == 1 and read_card(plain)["distributed"]["backend"] is None
    assert read_card(ddp1)["distributed"]["world_size"] == 1 and read_card(ddp1)["distributed"]["backend"] == "gloo"
    for name in (SEG_FILE, GRADE_FILE):
        # Tensors, not file bytes: safetensors writes its metadata keys in no fixed order.
        a, b = tensors(plain, name), tensors(ddp1, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_to_torchrun_stops_every_rank_and_leaves_active_weights(
        sig: signal.Signals, synthetic_root: Path, tiny_weights: Path, tmp_path: Path) -> None:
    active = tmp_path / "active"
    shutil.copytree(tiny_weights, active)
    set_active(active)
    before = files_of(active)
    out, log, progress = tmp_path / "new-run", tmp_path / "log.txt", tmp_path / "progress.jsonl"
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node", "2",
           *trainer_args(synthetic_root, out, 8000, 0, "--progress-file", str(progress))]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        ranks = start_ranks(proc, log, progress)
        os.killpg(proc.pid, sig)  # kill -TERM -PGID, or Ctrl-C in its terminal; torchrun passes it on to its workers
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the run did not stop within 90 s: {log.read_text()[-3000:]}")
    assert wait_gone(list(ranks.values())), "a rank outlived torchrun"
    assert not out.exists()  # nothing was published, not even an empty folder
    assert files_of(active) == before and active_dir() == active.resolve()
    assert json.loads(progress.read_text().splitlines()[-1])["event"] == "cancelled"
    # The workers stopped without a traceback (torchrun's agent prints its own SignalException: its way of exiting).
    assert "lggdemo/train" not in log.read_text()


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_with_a_clear_error(synthetic_root: Path, tiny_weights: Path, tmp_path: Path) -> None:
    active = tmp_path / "active"
    shutil.copytree(tiny_weights, active)
    set_active(active)
    before = files_of(active)
    out, log, progress = tmp_path / "new-run", tmp_path / "log.txt", tmp_path / "progress.jsonl"
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node", "2",
           *trainer_args(synthetic_root, out, 8000, 0, "--progress-file", str(progress))]
    env = {**os.environ, distributed.TIMEOUT_ENV: "60"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        ranks = start_ranks(proc, log, progress)
        os.kill(ranks[1], signal.SIGKILL)
        started = time.monotonic()
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the run hung after a rank died: {log.read_text()[-3000:]}")
    assert code != 0 and time.monotonic() - started < 120
    text = log.read_text()
    assert "lggdemo.train FAILED" in text and "SIGKILL" in text, text[-3000:]  # torchrun names the dead rank
    last = json.loads(progress.read_text().splitlines()[-1])  # rank 0's own report, for the job manager
    assert last["event"] == "error" and "lost its peers" in last["message"], last
    assert wait_gone([ranks[0]]), "rank 0 outlived the run"
    assert not out.exists() and files_of(active) == before


def test_card_of_a_distributed_context_says_how_batch_norm_was_treated(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(batch_size=8)
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(rank=0, world_size=4, backend="gloo"))
    cpu = distributed.card_entry(cfg)
    assert cpu["global_batch_size"] == 32 and "per-rank" in cpu["batch_norm"] and cpu["launcher"] == "torchrun"
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(rank=0, world_size=4, backend="nccl"))
    assert "SyncBatchNorm" in distributed.card_entry(cfg)["batch_norm"]
    assert np.isfinite(distributed.timeout_s())


def test_a_lost_peer_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer.\nmore")
    assert distributed.describe_failure(gloo).startswith("RuntimeError: [gloo")  # a plain process: the error as is
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(rank=0, world_size=2, backend="gloo"))
    text = distributed.describe_failure(gloo)
    assert text.startswith("rank 0 of 2 lost its peers") and "Connection reset by peer" in text and "more" not in text
    assert distributed.describe_failure(ValueError("bad")) == "ValueError: bad"
