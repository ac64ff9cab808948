"""Helpers for the AppTests of the pages (``tests/test_app_*.py``): what a user sees, clicks, uploads.

Every test starts the real entry point (``streamlit_app.py``: navigation + shared shell), switches
to a page and drives its widgets. Data come from ``$TORCHLAB_DATA_DIR`` (an empty tmp dir → the
built-in synthetic set; the ``data_dir`` fixture → the tutorial's real files) and checkpoints go to
``$TORCHLAB_CHECKPOINT_DIR`` (a tmp dir). Every page must render without an exception element and
without "Traceback" in any element.

Uploads: Streamlit 1.67's AppTest supports both input widgets directly —
``at.file_uploader[...].set_value((name, bytes, mime))`` (or a list of such tuples) and
``at.camera_input[...].set_value(("x.jpg", bytes, "image/jpeg"))``. The camera element only
accepts a ``.jpg`` name and the ``image/jpeg`` type (what a browser's camera produces); the bytes
themselves are free, so the camera test sends PNG bytes under that name: the app decodes by
content, not by name.

Page discovery: before every run AppTest resets Streamlit's legacy ``pages/`` discovery flag
(``PagesManager.uses_pages_directory``), so each run starts as the very first run of a fresh server
would: the page runs alone, ``page_setup``'s deep-link repair switches discovery off and reruns —
and that rerun drops any button click of the run. A real server pays this once per process. The
``apps`` fixture therefore puts each run in that steady state (flag off, as ``st.navigation`` leaves
it), by wrapping ``PagesManager.__init__``; ``test_fresh_server_renders_every_page`` covers the
first-run path without the wrapper.

Training happens on a background thread: tests press Start, then poll
``at.session_state["job"].running`` with a deadline, re-running the script now and then as the
page's live fragment would, and run it once more when the job is done.
"""
from __future__ import annotations

import mimetypes
import time
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data import load_dataset
from tests.bad_input_corpus import encode


ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 120  # seconds per script run (generous: the CPU is shared)
JOB_TIMEOUT = 180  # seconds for a background training run to end


def clear_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()


def state(at: AppTest, key: str, default=None):
    try:
        return at.session_state[key]
    except KeyError:
        return default


# --- helpers --------------------------------------------------------------------------------------


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def assert_clean(at: AppTest) -> None:
    """No exception element, and no element anywhere (main or sidebar) mentions a traceback."""
    assert not at.exception, [e.message for e in at.exception]
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            assert "Traceback" not in str(proto), f"a {node.type} element shows a traceback"


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[0]


def disabled(widget) -> bool:
    return bool(widget.proto.disabled)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def plotly_keys(at: AppTest) -> list[str | None]:
    return [c.key for c in at.get("plotly_chart")]


def table(at: AppTest, column: str):
    """The first dataframe that has ``column``."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no dataframe with a {column!r} column")


def wait_for_job(at: AppTest, timeout: float = JOB_TIMEOUT) -> None:
    """Poll the session's training job until it is no longer running, then re-run the page."""
    job = at.session_state["job"]
    deadline = time.monotonic() + timeout
    last_run = time.monotonic()
    while job.running:
        assert time.monotonic() < deadline, f"training did not end within {timeout} s: {job.progress()}"
        time.sleep(0.25)
        if time.monotonic() - last_run > 3:  # as the page's live fragment would, now and then
            at.run()
            assert_clean(at)
            last_run = time.monotonic()
    at.run()
    assert_clean(at)


def hand_photo(size: int = 480, fmt: str = "JPEG", index: int = 0) -> bytes:
    """A synthetic test image of a hand, enlarged to ``size``×``size``, as a photo file."""
    ds = load_dataset("synthetic")
    image = Image.fromarray(np.asarray(ds.x_test[index])).resize((size, size), Image.Resampling.BICUBIC)
    return encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def mime(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


