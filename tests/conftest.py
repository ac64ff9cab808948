"""Shared fixtures: where the tutorial's real data files are.

The files never live in the repository. Tests that need them take the ``data_dir`` fixture, which
skips them when the files are absent, unless ``TORCHLAB_REQUIRE_DATA=1`` (CI with the data
mounted), where a missing file is a failure rather than a silent skip.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "TORCHLAB_DATA_DIR"
REQUIRE_DATA_ENV = "TORCHLAB_REQUIRE_DATA"
THREADS_ENV = "TORCHLAB_TEST_THREADS"


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """One intra-op thread unless ``$TORCHLAB_TEST_THREADS`` says otherwise.

    The test tensors are tiny, and on a shared 2-core box two intra-op threads wait on each other at
    every op: a ResNet-50 forward measured 1.3 s with two threads against 0.04 s with one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    yield
    torch.set_num_threads(before)


def stub_video(monkeypatch: pytest.MonkeyPatch, playing: bool) -> None:
    """streamlit-webrtc's video as the page sees it, without a browser: playing or not."""
    import streamlit_webrtc

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer",
                        lambda **kw: SimpleNamespace(state=SimpleNamespace(playing=playing), video_processor=None))


@pytest.fixture(autouse=True)
def _video_needs_a_browser(monkeypatch):
    """streamlit-webrtc's component reaches into the server's session manager, which AppTest's
    stand-in runtime lacks: in-process tests see a video that is not playing (a test that records
    turns it on with :func:`stub_video`; the browser tests drive the real one on a real server)."""
    stub_video(monkeypatch, playing=False)


def real_data_dir() -> Path:
    """``$TORCHLAB_DATA_DIR`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def _need(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if not missing:
        return
    reason = f"real data files missing: {', '.join(missing)} (set {DATA_DIR_ENV})"
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_DATA_ENV}=1 requires them")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory, holding at least ``signs/{train,test}_signs.h5``."""
    root = real_data_dir()
    _need([root / "signs" / f"{split}_signs.h5" for split in ("train", "test")])
    return root


@pytest.fixture(scope="session")
def cats_data_dir(data_dir: Path) -> Path:
    """As ``data_dir``, additionally requiring ``catvnoncat/{train,test}_catvnoncat.h5``."""
    _need([data_dir / "catvnoncat" / f"{split}_catvnoncat.h5" for split in ("train", "test")])
    return data_dir


# --- a tiny in-memory data set for fast trainer / checkpoint / inference tests -----------------

TINY_CLASSES = ("bar", "column", "diagonal", "ring", "dot", "blank")


def make_tiny_dataset(
    n_train: int = 48,
    n_test: int = 24,
    size: int = 16,
    num_classes: int = 3,
    seed: int = 0,
    key: str = "tiny",
):
    """A small, learnable :class:`core.data.Dataset` built in memory.

    Each class is a simple bright pattern (a horizontal bar, a vertical bar, a diagonal, ...) at a
    random place on a noisy dark background, in a random tint: N×size×size×3 uint8 images and
    balanced int64 labels. The same arguments always give the same arrays.
    """
    import numpy as np

    from core.data import Dataset

    if not 2 <= num_classes <= len(TINY_CLASSES):
        raise ValueError(f"num_classes must be 2–{len(TINY_CLASSES)}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        images = np.empty((n, size, size, 3), dtype=np.uint8)
        for i, label in enumerate(labels):
            c = rng.integers(size // 4, size - size // 4)
            r = rng.integers(size // 4, size - size // 4)
            half = max(1, size // 8)
            mask = {
                0: np.abs(yy - r) < half,
                1: np.abs(xx - c) < half,
                2: np.abs(yy - xx - (r - c) // 2) < half,
                3: np.abs(np.hypot(yy - r, xx - c) - size / 4) < 1.0,
                4: np.hypot(yy - r, xx - c) < half + 1,
                5: np.zeros_like(xx, dtype=bool),
            }[int(label)]
            background = rng.integers(0, 60, (size, size, 3))
            tint = rng.integers(170, 256, 3)
            images[i] = np.where(mask[..., None], tint, background).astype(np.uint8)
        return images, labels

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return Dataset(
        key=key,
        title=f"tiny patterns ({key})",
        classes=TINY_CLASSES[:num_classes],
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        source=f"generated in memory by tests/conftest.py (seed {seed})",
        synthetic=True,
    )


@pytest.fixture
def tiny_dataset():
    """48 train + 24 test 16×16 RGB images in 3 classes (see :func:`make_tiny_dataset`)."""
    return make_tiny_dataset()


@pytest.fixture(name="make_tiny_dataset")
def make_tiny_dataset_fixture():
    """The :func:`make_tiny_dataset` factory, for tests that need other sizes, classes or seeds."""
    return make_tiny_dataset


@pytest.fixture(scope="module")
def torch_single_thread():
    """One intra-op thread for the duration of a test module, then the previous count.

    The tiny nets of the trainer/checkpoint/inference tests gain nothing from more threads, and on
    a shared CPU a second thread spin-waiting for a busy core makes each step 10–50× slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the app under Streamlit's AppTest (tests/test_app_*.py; helpers in tests/apptest.py) ---------
# Imported here, not at the top: only the app tests need Streamlit.


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty data dir (→ synthetic set) and an empty checkpoint dir, with fresh Streamlit caches."""
    from tests.apptest import clear_caches

    data, ckpt = tmp_path / "data", tmp_path / "checkpoints"
    data.mkdir()
    ckpt.mkdir()
    monkeypatch.setenv("TORCHLAB_DATA_DIR", str(data))
    monkeypatch.setenv("TORCHLAB_CHECKPOINT_DIR", str(ckpt))
    clear_caches()
    yield SimpleNamespace(data=data, ckpt=ckpt, tmp=tmp_path, monkeypatch=monkeypatch)
    clear_caches()


@pytest.fixture
def steady_server(monkeypatch):
    """Every AppTest run as on a server where ``st.navigation`` already ran (see the module doc)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def apps(steady_server):
    """Makes AppTests; stops any training job they left running when the test ends."""
    from streamlit.testing.v1 import AppTest

    from tests.apptest import ROOT, RUN_TIMEOUT, assert_clean, state

    made: list[AppTest] = []

    def make(page: str | None = None, **session) -> AppTest:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=RUN_TIMEOUT)
        for key, value in session.items():
            at.session_state[key] = value
        made.append(at)
        at.run()
        assert_clean(at)
        if page is not None:
            at.switch_page(page)
            at.run()
        return at

    yield make
    for at in made:
        for run in state(at, "runs", []):
            if run.job is not None:
                run.job.stop(timeout=60)

