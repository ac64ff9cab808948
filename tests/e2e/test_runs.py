"""End-to-end: a run is addressable (headless Chromium, real SIGNS data).

The Train page's URL carries the run it shows (``?run=…``): a refreshed tab and a second tab opened
on that URL (another browser session) re-attach to the live run — its progress goes on from where it
was, its curve keeps growing, and Stop in either tab stops it; Resume continues it.

Run: ``.venv/bin/python -m pytest tests/e2e/test_runs.py -q``.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import import_expect
from tests.e2e.test_browser import (
    RENDER_TIMEOUT, assert_clean, button, main, open_page, plot_points, progress_step, progress_text, runs_table,
    set_number, wait_for, wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

EPOCHS = 200  # far longer than the test: it is stopped


def run_id(page) -> str:
    m = re.search(r"[?&]run=([0-9a-f]+)", page.url)
    assert m, f"the Train page's URL names no run: {page.url}"
    return m.group(1)


def wait_training(page, after_step: int = -1) -> int:
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Training:", timeout=RENDER_TIMEOUT)
    return wait_for(lambda: progress_step(page) > after_step and progress_step(page), 60,
                    f"the step count to pass {after_step}", poll_s=0.2)


def start_long_run(app, new_page) -> tuple:
    """A new tab on the Train page with a run far longer than the test going: (page, step, run id)."""
    page = new_page()
    open_page(page, app, "/train", "Train")
    set_number(page, "Epochs", str(EPOCHS))
    button(page, "Start").click()
    return page, wait_training(page), run_id(page)


def test_a_refresh_and_a_second_tab_reattach_to_the_live_run(app, new_page):
    a, step, run = start_long_run(app, new_page)

    # A refresh: a new browser session on the same URL shows the same run, still going.
    a.reload()
    expect(a.locator("h1").first).to_contain_text("Train", timeout=RENDER_TIMEOUT)
    step = wait_training(a, after_step=step)  # it went on from where it was, not from step 0
    assert run_id(a) == run
    wait_for(lambda: plot_points(a, "live_steps") > 0, 30, "the live loss chart after the refresh")
    rows = wait_for(lambda: runs_table(a)[1:], 30, "the runs table's rows after the refresh")  # the grid fills late
    assert len(rows) == 1 and rows[0][0].startswith("#1 LeNet"), rows
    # The settings shown are the run's, not the recipe's (40 epochs).
    expect(main(a).get_by_role("spinbutton", name="Epochs")).to_have_value(str(EPOCHS))

    # A second tab (another browser context: another session) on that URL attaches to the same run.
    b = new_page()
    b.goto(a.url)
    expect(b.locator("h1").first).to_contain_text("Train", timeout=RENDER_TIMEOUT)
    step_b = wait_training(b, after_step=step)
    assert run_id(b) == run
    expect(main(b).get_by_role("spinbutton", name="Epochs")).to_have_value(str(EPOCHS))
    expect(button(b, "Stop")).to_be_enabled()

    # Stop in the second tab stops the run for both.
    t0 = time.monotonic()
    button(b, "Stop").click()
    expect(main(b).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=30_000)
    stop_seconds = time.monotonic() - t0
    stopped_at = progress_step(b)
    assert stopped_at >= step_b, progress_text(b)
    expect(main(a).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=30_000)
    wait_idle(a)
    assert progress_step(a) == stopped_at  # the same run, and it no longer moves
    time.sleep(1.5)
    assert progress_step(b) == stopped_at
    # Stop takes effect after the current step; the rest is one page round trip. A bound loose
    # enough for a loaded shared machine (bench/bench_watch.py measures the latency itself).
    assert stop_seconds < 5, stop_seconds

    # Resume from the first tab continues it (from the step it stopped at), then stop it for good.
    expect(button(a, "Resume")).to_be_enabled()
    button(a, "Resume").click()
    wait_training(a, after_step=stopped_at)
    button(a, "Stop").click()
    expect(main(a).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=30_000)
    for page in (a, b):
        assert_clean(page)


def test_a_refresh_on_another_page_keeps_the_run(app, new_page):
    # The user starts a run, looks at another page, refreshes there (a new session), and comes back:
    # the run is still going and still theirs, rather than stopping unwatched 30 s later.
    a, step, run = start_long_run(app, new_page)
    a.get_by_test_id("stSidebarNav").get_by_role("link", name="Predict").click()
    expect(a.locator("h1").first).to_contain_text("Predict", timeout=RENDER_TIMEOUT)
    wait_for(lambda: f"run={run}" in a.url, 30, "the Predict page's URL to name the run")
    a.reload()
    expect(a.locator("h1").first).to_contain_text("Predict", timeout=RENDER_TIMEOUT)
    wait_idle(a)
    time.sleep(2)
    a.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
    expect(a.locator("h1").first).to_contain_text("Train", timeout=RENDER_TIMEOUT)
    wait_training(a, after_step=step)
    assert run_id(a) == run
    expect(main(a).get_by_role("spinbutton", name="Epochs")).to_have_value(str(EPOCHS))
    button(a, "Stop").click()
    expect(main(a).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=30_000)
    assert_clean(a)


def test_a_link_to_a_run_this_server_does_not_have_says_so(app, page):
    page.goto(app.url + "/train?run=0123456789ab")
    expect(page.locator("h1").first).to_contain_text("Train", timeout=RENDER_TIMEOUT)
    expect(main(page).get_by_test_id("stAlertContentInfo").filter(has_text="no longer on this server")).to_be_visible()
    assert "run=" not in page.url
    assert_clean(page)
