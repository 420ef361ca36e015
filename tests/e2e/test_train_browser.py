"""Retraining from the sidebar in a real Chromium, with the REAL trainer (``python -m lggdemo.train``).

The runs are kept tiny (segmentation only, 1 epoch, 32 px, on the phantoms): the other model is copied
from the previously active weights (the ``tiny_weights`` fixture, placed as a past run), so the new
folder is complete and can become active. The job is a detached process whose state lives on disk, so
the test reads the same files the app does (``LGG_RUNS_DIR``) to check what became active.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path

import pytest

from lggdemo import jobs
from lggdemo.models import weights

pytestmark = pytest.mark.e2e

PREVIOUS = "20000101-000000"
RUN_TIMEOUT_MS = 240_000  # a loaded 2-core machine; a quiet one needs well under a minute


@pytest.fixture()
def previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_weights: Path) -> Path:
    """A complete past run, active: what a cancelled run must leave untouched and a new run completes from."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("LGG_RUNS_DIR", str(runs))  # the app inherits it through start_app
    folder = runs / PREVIOUS
    shutil.copytree(tiny_weights, folder)
    weights.set_active(folder)
    yield folder
    if jobs.current() is not None:  # never leave a trainer running after a failed test
        jobs.cancel(force=True)
        jobs.wait(timeout=30)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _no_exception(page) -> None:  # noqa: ANN001
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _start_from_sidebar(page, epochs: int) -> None:  # noqa: ANN001
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Retrain models").click()
    sidebar.get_by_text("Segmentation", exact=True).click()
    for name, value in (("Epochs", epochs), ("Image size (px)", 32)):
        box = sidebar.get_by_role("spinbutton", name=name)
        box.fill(str(value))
        box.press("Tab")  # commit the value before the form is submitted
    sidebar.get_by_text("Dataset: Synthetic phantoms").wait_for()
    sidebar.get_by_role("button", name="Start training").click()
    # The click is answered by a live status, or by a message saying why not: wait for either, and fail with it.
    answer = sidebar.get_by_text(re.compile(r"Training run \d{8}-\d{6}|Not started|already in progress"))
    answer.first.wait_for()
    said = answer.first.inner_text()
    assert said.startswith("Training run"), f"Start was refused: {said!r}\nsidebar: {sidebar.inner_text()[:2000]}"


def _open(page, base: str, path: str) -> None:  # noqa: ANN001
    """Home first: on a fresh server a deep link runs the page file alone (Streamlit's legacy pages/ mode)
    until the entry script has run once and installed st.navigation; then the deep link is fine."""
    page.goto(base)
    page.get_by_role("heading", name="Lower-grade glioma MRI").wait_for()
    page.goto(base + path)


def _progress(page) -> float | None:  # noqa: ANN001
    bar = page.locator('[data-testid="stSidebar"] [role="progressbar"]')
    if bar.count() == 0:
        return None
    value = bar.first.get_attribute("aria-valuenow")
    return float(value) if value is not None else None


def test_quick_run_from_the_sidebar_becomes_active(start_app, page, save_screenshot, previous: Path) -> None:  # noqa: ANN001
    base = start_app()
    before = _digest(previous)
    _open(page, base, "/train")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    page.get_by_text(f"run {PREVIOUS}").first.wait_for()  # the active weights are named
    t0 = time.monotonic()
    _start_from_sidebar(page, epochs=1)
    sidebar = page.locator('[data-testid="stSidebar"]')
    run = jobs.current()
    assert run is not None and run.settings == {**run.settings, "task": "seg", "epochs": 1, "image_size": 32}

    seen: list[float] = []
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while time.monotonic() < deadline and jobs.current() is not None:
        value = _progress(page)
        if value is not None and (not seen or value != seen[-1]):
            seen.append(value)
        if len([v for v in seen if v > 0]) >= 2:
            break
        page.wait_for_timeout(300)
    assert len(set(seen)) >= 2 and max(seen) > min(seen), f"the progress bar never moved: {seen}"

    # Switch pages while it runs: the sidebar on the EDA page shows the same run (state is on disk).
    sidebar.locator('[data-testid="stSidebarNav"]').get_by_text("Dataset EDA").click()
    page.get_by_role("heading", name="Dataset EDA", exact=True).wait_for()
    sidebar.get_by_text(re.compile(rf"Training run {run.name}|Run {run.name} finished")).first.wait_for()

    sidebar.get_by_text(f"Run {run.name} finished").first.wait_for(timeout=RUN_TIMEOUT_MS)
    seconds = time.monotonic() - t0
    assert sidebar.get_by_text("its weights are now active").count() == 1
    _no_exception(page)
    done = jobs.find_run(run.name)
    assert done.state == "succeeded" and done.activated and weights.active_dir() == run.path.resolve()
    assert (run.path / weights.GRADE_FILE).read_bytes() == (previous / weights.GRADE_FILE).read_bytes()  # completed
    assert _digest(previous) == before  # the past run is untouched
    print(f"sidebar run (seg, 1 epoch, 32 px, phantoms, real trainer): {seconds:.1f} s from Start to 'finished'")

    page.goto(base + "/train")
    page.get_by_text(f"run {run.name}").first.wait_for()  # now the active weights
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= 1")
    page.get_by_text("Log (last lines)").wait_for()
    page.locator('[data-testid="stDataFrame"]').wait_for()
    _no_exception(page)
    page.wait_for_timeout(500)  # plotly transitions
    save_screenshot(page, "train")


def test_cancel_keeps_the_active_weights_byte_identical(start_app, page, previous: Path) -> None:  # noqa: ANN001
    base = start_app()
    pointer = weights.pointer_path().read_bytes()
    before = _digest(previous)
    _open(page, base, "/predict")  # any page: the control is in the sidebar of all of them
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Retrain models").wait_for()
    _start_from_sidebar(page, epochs=3)
    sidebar.get_by_text(re.compile(r"step \d+/\d+")).first.wait_for(timeout=RUN_TIMEOUT_MS)  # training, not preparing
    run = jobs.current()
    assert run is not None
    sidebar.get_by_role("button", name="Cancel training").click()
    sidebar.get_by_text(f"Run {run.name} was cancelled").first.wait_for(timeout=RUN_TIMEOUT_MS)
    _no_exception(page)
    out = jobs.find_run(run.name)
    assert out.state == "cancelled" and out.exit_code == jobs.EXIT_CANCELLED and not out.complete
    assert weights.pointer_path().read_bytes() == pointer and _digest(previous) == before
    assert weights.active_dir() == previous.resolve()
