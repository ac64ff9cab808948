"""End-to-end: Stop acts within one second while training (issue 16; headless Chromium, real SIGNS data).

A default LeNet-5 run of 200 epochs (far longer than the test) is stopped once its live chart and
step count move. The time is measured from the click on Stop to the page showing the run stopped:
in the test, ``time.monotonic`` from just before the mouse press is sent to the moment the page
reports the change (the assertion); and in the page's own clock, from the click event to the DOM
change (printed, for comparison). The page says "Stopped:" only once the training thread has left
its loop (``TrainingJob`` sets that status as its thread ends, and the Stop callback waits for it),
so that moment is also when the trainer stopped; the test then checks that the step count stays put.

Run: ``.venv/bin/python -m pytest tests/e2e/test_stop.py -q -s`` (``-s`` prints the times).
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import import_expect
from tests.e2e.test_browser import (
    RENDER_TIMEOUT, assert_clean, button, main, open_page, plot_points, progress_step, progress_text, set_number,
    wait_for, wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

EPOCHS = 200  # far longer than the test: it is stopped
STOP_BOUND_S = 1.0  # issue 16: "Stop acts within one second while training"

# Records, in the page's own clock, the click on the main area's Stop button and the first moment
# the main area's progress text says "Stopped:" (a MutationObserver sees every change of the DOM).
WATCH_STOP_JS = """() => {
    window.__stop = {click: null, stopped: null};
    const bar = () => document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stProgress"]');
    const check = () => {
        const el = bar();
        if (window.__stop.stopped === null && el && el.innerText.includes('Stopped:'))
            window.__stop.stopped = performance.now();
    };
    new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                        attributes: true});
    document.addEventListener('click', e => {
        const b = e.target.closest('button');
        if (window.__stop.click === null && b && b.innerText.trim().endsWith('Stop')
            && b.closest('[data-testid="stMainBlockContainer"]'))
            window.__stop.click = performance.now();
    }, true);
}"""


def test_stop_acts_within_one_second_while_training(app, page):
    open_page(page, app, "/train", "Train")
    set_number(page, "Epochs", str(EPOCHS))
    button(page, "Start").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Training:", timeout=RENDER_TIMEOUT)

    # Training is under way: the live chart gains points and the step count advances.
    chart = "live_steps"
    first = wait_for(lambda: plot_points(page, chart), 60, "the first points of the live loss chart")
    wait_for(lambda: plot_points(page, chart) > first, 60, "the live loss chart to gain points", poll_s=0.25)
    step = progress_step(page)
    wait_for(lambda: progress_step(page) > step, 60, "the step count to advance", poll_s=0.25)
    assert progress_text(page).startswith("Training:"), progress_text(page)
    stop = button(page, "Stop")
    expect(stop).to_be_enabled()

    page.evaluate(WATCH_STOP_JS)
    # Playwright's locator click first waits for the button to be visible, stable and hit by the
    # pointer (under load that alone takes a few hundred ms); that is done here, so that the clock
    # starts right before the mouse press itself is sent.
    stop.scroll_into_view_if_needed()
    stop.click(trial=True)
    box = stop.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    t0 = time.monotonic()
    page.mouse.click(x, y)
    # The bound is what is measured, not a timeout: the wait itself is generous.
    page.wait_for_function("() => window.__stop.stopped !== null", polling="raf", timeout=60_000)
    seconds = time.monotonic() - t0
    marks = page.evaluate("() => window.__stop")
    assert marks["click"] is not None, "the page saw no click on Stop"
    print(f"\nclick → 'Stopped:' shown: {seconds:.3f} s (test clock), "
          f"{(marks['stopped'] - marks['click']) / 1000:.3f} s (page clock)")
    assert seconds < STOP_BOUND_S, f"Stop took {seconds:.2f} s from the click to the stopped page"

    # The trainer really stopped: the step count shown stays where it was.
    stopped_at = progress_step(page)
    assert 0 < stopped_at, progress_text(page)
    wait_idle(page)
    time.sleep(2.0)
    assert progress_text(page).startswith("Stopped:"), progress_text(page)
    assert progress_step(page) == stopped_at, progress_text(page)
    expect(button(page, "Resume")).to_be_enabled()
    expect(button(page, "Stop")).to_be_disabled()
    assert_clean(page)
