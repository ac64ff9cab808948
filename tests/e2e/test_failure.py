"""End-to-end: a trainer failure shows a clear message and leaves the server working (issue 16;
headless Chromium, real SIGNS data).

The failure is a real one, from settings the page accepts: a LeNet-5 without batch norm trained
with SGD with momentum at the largest learning rate the page allows (10, constant) overflows to a
NaN loss within the first steps (with batch norm it may not, which is why Build turns it off).
The page must name what went wrong and what to do, show no traceback, and the same page (and
server) must go on working: a sensible run afterwards trains to its end and Predict renders. The
server's log must hold no traceback either.

Run: ``.venv/bin/python -m pytest tests/e2e/test_failure.py -q``.
"""
from __future__ import annotations

import re
import urllib.request

import pytest

from tests.e2e.conftest import import_expect
from tests.e2e.test_browser import (
    RENDER_TIMEOUT, assert_clean, button, choose, main, open_page, progress_text, runs_table, set_number, wait_finished,
    wait_for, wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()


def test_a_diverging_run_shows_a_clear_message_and_the_server_keeps_working(app, page):
    # A LeNet-5 without batch norm, handed to Train.
    open_page(page, app, "/build", "Build a net")
    batchnorm = main(page).get_by_role("switch", name="Batch norm")
    expect(batchnorm).to_be_checked()  # the default LeNet has it
    main(page).get_by_test_id("stCheckbox").filter(has_text="Batch norm").get_by_text("Batch norm").click()
    wait_idle(page)
    expect(batchnorm).not_to_be_checked()
    button(page, "Use this net").click()
    expect(page.locator("h1").first).to_have_text("Train", timeout=RENDER_TIMEOUT)
    wait_idle(page)
    expect(main(page).get_by_text("batch norm off come from the net")).to_be_visible()

    # Settings the page accepts, at the edge of what it allows: SGD with momentum at lr 10.
    choose(page, "Optimizer", "SGD with momentum")
    choose(page, "Schedule", "constant")
    set_number(page, "Learning rate", "10")
    expect(main(page).get_by_role("spinbutton", name="Learning rate", exact=True)).to_have_value("10.00000")
    set_number(page, "Epochs", "2")
    augment = main(page).get_by_role("switch", name="Augment", exact=True)
    if augment.is_checked():
        main(page).get_by_test_id("stCheckbox").filter(has_text="Augment").get_by_text("Augment", exact=True).click()
        wait_idle(page)
    expect(augment).not_to_be_checked()
    button(page, "Start").click()

    # What went wrong and what to do, in words, in the page; no traceback.
    error = main(page).get_by_test_id("stAlertContentError")
    expect(error).to_contain_text(re.compile(r"the loss became (nan|inf|-inf) at epoch \d+, step \d+"), timeout=120_000)
    expect(error).to_contain_text("learning rate 10")
    expect(error).to_contain_text("try a smaller learning rate")
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Diverged:")
    wait_idle(page)
    assert_clean(page)
    expect(button(page, "Resume")).to_be_disabled()  # its weights are unusable: nothing to continue
    expect(button(page, "Save checkpoint")).to_have_count(0)  # nor to save
    rows = wait_for(lambda: runs_table(page)[1:], 30, "the runs table's rows")
    assert len(rows) == 1 and "diverged" in rows[0], rows

    # The same page goes on working: a sensible learning rate trains to the end.
    set_number(page, "Learning rate", "0.01")
    set_number(page, "Epochs", "1")
    button(page, "Start").click()
    wait_finished(page)
    expect(main(page).get_by_test_id("stAlertContentError")).to_have_count(0)  # the new run's view: no error
    assert progress_text(page).startswith("Finished:"), progress_text(page)
    rows = wait_for(lambda: len(runs_table(page)) == 3 and runs_table(page)[1:], 30, "both runs in the runs table")
    assert [("diverged" in r, "finished" in r) for r in rows] == [(True, False), (False, True)], rows
    assert_clean(page)

    # And so does the server: another page renders, and it is healthy.
    page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink").filter(has_text="Predict").click()
    expect(page.locator("h1").first).to_contain_text("Predict a hand sign", timeout=RENDER_TIMEOUT)
    wait_idle(page)
    assert_clean(page)
    assert app.process.poll() is None
    with urllib.request.urlopen(f"{app.url}/_stcore/health", timeout=10) as r:
        assert r.read().decode().strip() == "ok"
    log = app.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception" not in log, app.log_tail()
