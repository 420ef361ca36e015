"""Browser-test infrastructure shared by every page's Playwright tests.

Fixtures
--------
``browser``          session-wide headless Chromium (Debian's ``/usr/bin/chromium``, never ``playwright install``);
                     skips with a reason where Chromium or Playwright is missing.
``start_app``        factory: ``start_app(env=None, fresh=False) -> base_url``. A Streamlit server for the test's
                     environment (``os.environ``, ``env`` on top; ``LGG_DATA_DIR`` defaults to the synthetic fixture,
                     ``LGG_CACHE_DIR`` / ``LGG_RUNS_DIR`` come from the session's isolated environment). Tests whose
                     environment is the same share one server per worker: each test's page is a new browser context,
                     so a new Streamlit session, and a server start costs ~10 s of imports and model export that
                     each browser test need not pay again. A private server, stopped after the test, for
                     ``fresh=True`` (a test of a server's very first request) and for an environment that names the
                     test's own tmp folder (a runs folder of its own, say). Server logs go to files; after each test
                     the part it caused must be free of the torch/file-watcher errors (``torch.classes``,
                     ``__path__._path``).
``page``             a fresh context (viewport 1400x1000) and page, closed after the test.
``save_screenshot``  ``save_screenshot(page, name) -> Path`` writes ``<name>.png`` to a temp folder, or to
                     ``docs/screenshots`` (committed, shown in the README) under ``make screenshots``.

A test usually reads::

    @pytest.mark.e2e
    def test_something(start_app, page, save_screenshot):
        page.goto(start_app() + "/predict")
        page.get_by_text("Predict").first.wait_for()
        save_screenshot(page, "predict")

Wait for real content (a chart, a dataframe, a text), not for Streamlit's status widget to vanish. The page's
default timeout is long (PAGE_TIMEOUT_MS) because the first script run imports the whole model stack.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
#: Strings that must never appear in a server log: the torch + file-watcher clash Streamlit once had.
FORBIDDEN_LOG_TEXT = ("torch.classes", "__path__._path")
STARTUP_TIMEOUT_S = 60.0
PAGE_TIMEOUT_MS = 180_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is a (slow) browser test, whether or not its author remembered the marks."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed browser test's report carries what the page showed and the app's log: a timeout alone says only
    what did not appear, and on CI there is no other way to see the page."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    page = getattr(item, "funcargs", {}).get("page")
    if page is not None:
        try:
            text = page.locator("body").inner_text(timeout=5_000)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001  # the page may be gone; say so instead of hiding the failure
            text = f"(page text unavailable: {exc})"
        report.sections.append(("page text at failure", text[-4000:]))
    for log, since in item.stash.get(_LOGS_USED, []):
        report.sections.append((f"server log {log.name} (this test's part)", "\n".join(
            _read_from(log, since).splitlines()[-60:])))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (requirements-dev.txt)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    pg = context.new_page()
    # Generous: a page's first script run imports torch, smp and grad-cam, which takes ~10 s on 2 idle cores
    # and over a minute on cores shared with a training run. A wait only lasts this long when it fails.
    pg.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield pg
    finally:
        context.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class AppServer:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def _launch(env: dict[str, str], log_dir: Path) -> AppServer:
    """``streamlit run streamlit_app.py`` on a free loopback port, once it answers its health check."""
    # A free port is only free until someone binds it: under pytest-xdist another worker's server may take it
    # between our probe and Streamlit's bind, so a start that finds its port in use tries another one.
    for _attempt in range(3):
        port = _free_port()
        log_path = log_dir / f"streamlit-{port}.log"
        cmd = [
            sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _healthy(url):
                return AppServer(proc, url, log_path)
            time.sleep(0.3)
        if proc.poll() is None:
            _stop(proc)
            pytest.fail(f"streamlit did not answer {url}/_stcore/health within {STARTUP_TIMEOUT_S:.0f} s; "
                        f"log:\n{_tail(log_path)}")
        if "is not available" not in _tail(log_path):  # Streamlit: "Port N is not available"
            break
    pytest.fail(f"streamlit exited with {proc.returncode} before answering; log:\n{_tail(log_path)}")


def _server_env(synthetic_root: Path, env: dict[str, str] | None) -> dict[str, str]:
    full = dict(os.environ)
    full.update({"LGG_DATA_DIR": str(synthetic_root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    full.update(env or {})
    full.pop("PYTEST_CURRENT_TEST", None)  # pytest's own per-test variable: not part of what the app sees
    return full


#: The server logs a test used, with where each stood when it began: its failure report and its log check read them.
_LOGS_USED = pytest.StashKey[list[tuple[Path, int]]]()


@dataclass
class SharedServers:
    """This worker's servers that tests share, one per environment."""

    log_dir: Path
    by_env: dict[tuple[tuple[str, str], ...], AppServer] = field(default_factory=dict)


@pytest.fixture(scope="session")
def _shared_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServers]:
    shared = SharedServers(tmp_path_factory.mktemp("app-servers"))
    yield shared
    for server in shared.by_env.values():
        _stop(server.proc)


@pytest.fixture()
def start_app(request: pytest.FixtureRequest, synthetic_root: Path, tmp_path: Path,
              _shared_servers: SharedServers) -> Iterator[Callable[..., str]]:
    private: list[AppServer] = []
    used: list[tuple[Path, int]] = []
    request.node.stash[_LOGS_USED] = used

    def _start(env: dict[str, str] | None = None, fresh: bool = False) -> str:
        full_env = _server_env(synthetic_root, env)
        key = tuple(sorted(full_env.items()))
        server = _shared_servers.by_env.get(key)
        if fresh or any(str(tmp_path) in value for value in full_env.values()):
            server = _launch(full_env, tmp_path)
            private.append(server)
        elif server is None or server.proc.poll() is not None or not _healthy(server.url):
            if server is not None:  # a shared server that died is replaced; its log stays for the reports
                _stop(server.proc)
            server = _launch(full_env, _shared_servers.log_dir)
            _shared_servers.by_env[key] = server
        used.append((server.log, server.log.stat().st_size))
        return server.url

    yield _start

    for server in private:
        _stop(server.proc)
    bad = [f"{log.name}: {needle!r}" for log, since in used for needle in FORBIDDEN_LOG_TEXT
           if needle in _read_from(log, since)]
    assert not bad, f"server log has torch/file-watcher errors: {bad}\n{_tail(used[-1][0])}"


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


_CONTENT_HEIGHT_JS = """() => Math.max(window.innerHeight, ...[...document.querySelectorAll(
    '[data-testid="stMain"], [data-testid="stAppViewContainer"], [data-testid="stSidebarContent"]')]
    .map(e => e.scrollHeight))"""


def _save_screenshot(directory: Path, page: object, name: str, max_height: int = 5000) -> Path:
    """Whole-page PNG in ``directory``, written via a temp file so a half image is never committed.

    Streamlit scrolls inside its own container, so Playwright's ``full_page`` alone captures one screen:
    the viewport is made as tall as the content (at most ``max_height``) for the picture, then restored.
    """
    dest = directory / f"{name}.png"
    tmp = directory / f".{name}.tmp.png"
    viewport = page.viewport_size  # type: ignore[attr-defined]
    height = min(int(page.evaluate(_CONTENT_HEIGHT_JS)), max_height)  # type: ignore[attr-defined]
    try:
        if viewport and height > viewport["height"]:
            page.set_viewport_size({"width": viewport["width"], "height": height})  # type: ignore[attr-defined]
            page.wait_for_timeout(1000)  # type: ignore[attr-defined]  # charts re-layout to the new size
        page.screenshot(path=str(tmp), full_page=True)  # type: ignore[attr-defined]
    finally:
        if viewport:
            page.set_viewport_size(viewport)  # type: ignore[attr-defined]
    shutil.move(str(tmp), dest)
    return dest


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: a temp folder, or docs/screenshots (the README's) when ``make screenshots`` asks."""
    if asked := os.environ.get("LGG_SCREENSHOTS_DIR"):
        Path(asked).mkdir(parents=True, exist_ok=True)
        return Path(asked)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture()
def save_screenshot(screenshots_dir: Path) -> Callable[[object, str], Path]:
    return lambda page, name: _save_screenshot(screenshots_dir, page, name)
