"""Fixtures for the browser tests: a real ``streamlit run`` server and headless Chromium.

* Chromium is the Debian one at ``/usr/bin/chromium`` (``$TORCHLAB_CHROMIUM`` overrides). Missing,
  the tests skip — unless ``TORCHLAB_REQUIRE_BROWSER=1`` (CI), where that is a failure.
* The real SIGNS files come from ``$TORCHLAB_DATA_DIR``, else ``<repo>/../shared/data``. Missing,
  the tests skip — unless ``TORCHLAB_REQUIRE_DATA=1``, where that is a failure.
* Each server gets its own free port and an empty temporary checkpoint folder. Its PyTorch uses
  ``$TORCHLAB_TEST_THREADS`` intra-op threads (default 1): on a shared 2-core box two threads
  spin-wait on each other and training runs ~10× slower.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TORCHLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
FAKE_CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
VIEWPORT = {"width": 1400, "height": 2000}  # tall: Streamlit's main area scrolls inside the page
SCREENSHOT_DIR = REPO / "docs" / "screenshots"
SERVER_START_TIMEOUT = 60.0


def _skip_or_fail(reason: str, require_env: str) -> None:
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason}; {require_env}=1 requires it")
    pytest.skip(reason)


def import_expect():
    """Playwright's ``expect``, for a test module's top level: without the package the module is
    skipped, or fails where ``TORCHLAB_REQUIRE_BROWSER=1``."""
    try:
        from playwright.sync_api import expect
    except ImportError:
        if os.environ.get("TORCHLAB_REQUIRE_BROWSER") == "1":
            raise
        pytest.skip("the playwright package is not installed", allow_module_level=True)
    return expect


# --- real data -------------------------------------------------------------------------------


def signs_data_root() -> Path:
    env = os.environ.get("TORCHLAB_DATA_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def signs_data_dir() -> Path:
    """The data directory holding ``signs/{train,test}_signs.h5`` (the real SIGNS photos)."""
    root = signs_data_root()
    files = [root / "signs" / f"{split}_signs.h5" for split in ("train", "test")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _skip_or_fail(f"real SIGNS data missing: {', '.join(missing)} (set TORCHLAB_DATA_DIR)", "TORCHLAB_REQUIRE_DATA")
    return root


def train_signs_lenet(data_dir: Path, epochs: int, path: Path) -> Path:
    """A LeNet-5 trained in this process on SIGNS (default recipe, no augmentation), saved at ``path``."""
    from core.data import load_dataset
    from core.spec import default_spec
    from core.trainer import Trainer, recipe

    ds = load_dataset("signs", data_dir)
    trainer = Trainer(default_spec("lenet", ds.num_classes), ds, recipe("lenet").replace(epochs=epochs, augment=False))
    for _ in trainer.run():
        pass
    return trainer.save(path)


# --- the Streamlit server --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    url: str
    checkpoint_dir: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_server(data_dir: Path, work_dir: Path) -> StreamlitServer:
    """``streamlit run streamlit_app.py`` on a free port; returns once ``/_stcore/health`` says ok."""
    port = _free_port()
    checkpoints = work_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("TORCHLAB_TEST_THREADS", "1")  # "app": as the app chooses (streamlit_app.share_cores)
    env = {
        **os.environ,
        "TORCHLAB_DATA_DIR": str(data_dir),
        "TORCHLAB_CHECKPOINT_DIR": str(checkpoints),
        "PYTHONUNBUFFERED": "1",
    }
    if threads == "app":
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    else:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    log_path = work_dir / "streamlit.log"
    log = open(log_path, "wb")
    cmd = [
        sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--server.fileWatcherType", "none",  # others' edits must not show "File change" mid-test
        "--browser.gatherUsageStats", "false",
    ]
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = StreamlitServer(f"http://127.0.0.1:{port}", checkpoints, log_path, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with code {process.returncode} before it was healthy:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5) as r:
                if r.status == 200 and r.read().decode().strip() == "ok":
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"streamlit not healthy after {SERVER_START_TIMEOUT:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def app(signs_data_dir, tmp_path_factory):
    """One server shared by a module's workflow tests (each test has its own browser session)."""
    server = start_server(signs_data_dir, tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


@pytest.fixture
def fresh_app(signs_data_dir, tmp_path):
    """A server started for this test alone: nothing has been rendered on it yet."""
    server = start_server(signs_data_dir, tmp_path)
    yield server
    server.stop()


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        _skip_or_fail(f"Chromium not found at {CHROMIUM} (set TORCHLAB_CHROMIUM)", "TORCHLAB_REQUIRE_BROWSER")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip_or_fail("the playwright package is not installed", "TORCHLAB_REQUIRE_BROWSER")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright_instance(chromium_path):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    yield pw
    pw.stop()


def launch_chromium(playwright_instance, chromium_path: Path, extra_args: list[str] | None = None):
    return playwright_instance.chromium.launch(executable_path=str(chromium_path),
                                               args=CHROMIUM_ARGS + list(extra_args or []))


@pytest.fixture(scope="session")
def browser(playwright_instance, chromium_path):
    b = launch_chromium(playwright_instance, chromium_path)
    yield b
    b.close()


@pytest.fixture
def new_page(browser):
    """A factory of pages, each in its own browser context (= its own Streamlit session)."""
    contexts = []

    def make(**context_args):
        ctx = browser.new_context(viewport=VIEWPORT, **context_args)
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def camera_page(playwright_instance, chromium_path):
    """A page in a second Chromium whose webcam is Chromium's fake one, camera permission granted."""
    b = launch_chromium(playwright_instance, chromium_path, FAKE_CAMERA_ARGS)
    ctx = b.new_context(viewport=VIEWPORT, permissions=["camera"])
    ctx.set_default_timeout(30_000)
    yield ctx.new_page()
    ctx.close()
    b.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
