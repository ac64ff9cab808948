"""Every page renders on a fresh server, as a user opening its URL first sees it."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


from tests.apptest import ROOT, RUN_TIMEOUT, assert_clean


# --- every page -----------------------------------------------------------------------------------

PAGE_TITLES = {"pages/home.py": "🔥 TorchLab", "pages/data.py": "Data", "pages/build.py": "Build a net", "pages/train.py": "Train",
               "pages/predict.py": "Predict a hand sign"}


@pytest.mark.parametrize("page", list(PAGE_TITLES))
def test_fresh_server_renders_every_page(env, page):
    """Without the steady-server wrapper: each run goes through the deep-link repair and still
    renders the page asked for (what a user opening a page's URL on a fresh server sees)."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=RUN_TIMEOUT)
    at.run()
    assert_clean(at)
    at.switch_page(page)
    at.run()
    assert_clean(at)
    assert at.title[0].value == PAGE_TITLES[page]


