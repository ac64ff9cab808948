"""End-to-end: the real app (``streamlit run``) driven in headless Chromium with the real SIGNS data.

Covers deep links on a fresh server, Build's live code/summary, a Train run with live curves,
Stop/Resume and Save, Predict from an uploaded phone-sized photo, from a (fake) webcam and from a
file that is not an image, and two sessions training at once. It also writes the README's
screenshots to ``docs/screenshots/``.

Run: ``.venv/bin/python -m pytest tests/e2e -q -m browser``.
"""
from __future__ import annotations

import io
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from core.trainer import recipe
from tests.e2e.conftest import import_expect, train_signs_lenet

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

PAGES = [  # (url path, navigation label, h1)
    ("/", "Overview", "TorchLab"),
    ("/data", "Data", "Data"),
    ("/build", "Build", "Build a net"),
    ("/train", "Train", "Train"),
    ("/predict", "Predict", "Predict a hand sign"),
]
RENDER_TIMEOUT = 90_000  # ms: a first render imports torch and loads the data; the CPU may be shared
TRAIN_TIMEOUT = 240_000  # ms: a short run on a busy 2-core CPU
CHECKPOINT_NAME = "lenet-signs-e2e.pt"

PLOT_POINTS_JS = """key => {  // points in all traces of the plotly chart rendered with st.plotly_chart(key=key)
    const el = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
    return el ? (el.data || []).reduce((n, t) => n + ((t.y || []).length), 0) : 0; }"""
GRID_ROWS_JS = """el => Array.from(el.querySelectorAll('[role="row"]')).map(r =>
    Array.from(r.querySelectorAll('[role="gridcell"], [role="columnheader"]')).map(c => c.textContent.trim()))"""


# --- helpers ---------------------------------------------------------------------------------


def main(page):
    return page.get_by_test_id("stMainBlockContainer")


def wait_idle(page, timeout: float = RENDER_TIMEOUT) -> None:
    """Until Streamlit's script run is over: ``stApp``'s ``data-test-script-state`` is ``notRunning``
    and stays so for half a second (a rerun can follow the end of a run)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        page.wait_for_function(
            """() => { const app = document.querySelector('[data-testid="stApp"]');
                       return app && app.getAttribute('data-test-script-state') === 'notRunning'; }""",
            timeout=max(1.0, deadline - time.monotonic()) * 1000,
        )
        page.wait_for_timeout(500)
        state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        if state == "notRunning" or time.monotonic() > deadline:
            return


def open_page(page, server, path: str, title: str) -> None:
    page.goto(server.url + path)
    expect(page.locator("h1").first).to_contain_text(title, timeout=RENDER_TIMEOUT)
    wait_idle(page)


def assert_clean(page) -> None:
    """No traceback anywhere and no Streamlit exception element."""
    assert "Traceback" not in page.content()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def metric(page, label: str):
    return main(page).get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def codes(page) -> list[str]:
    """The net's code in its two styles (the look-inside expander's snippet left out)."""
    net_code = main(page).locator('[data-testid="stCode"]:not([data-testid="stExpander"] [data-testid="stCode"])')
    expect(net_code).to_have_count(2)
    return [c.inner_text() for c in net_code.all()]


def choose(page, label: str, option: str) -> None:
    main(page).get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def set_number(page, label: str, value: str) -> None:
    box = main(page).get_by_role("spinbutton", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def button(page, name: str):
    return main(page).get_by_role("button", name=name, exact=True)  # the header has its own "Stop"


def progress_text(page) -> str:
    bar = main(page).get_by_test_id("stProgress")
    return bar.first.inner_text() if bar.count() else ""


def progress_step(page) -> int:
    m = re.search(r"step (\d+)/(\d+)", progress_text(page))
    return int(m.group(1)) if m else -1


def plot_points(page, key: str) -> int:
    return page.evaluate(PLOT_POINTS_JS, key)


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_finished(page) -> None:
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Finished:", timeout=TRAIN_TIMEOUT)
    wait_idle(page)


def runs_table(page) -> list[list[str]]:
    """The Runs table's rows (header first), read from the data grid's accessible table."""
    grid = main(page).get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible()
    return grid.evaluate(GRID_ROWS_JS)


def screenshot(page, path: Path) -> None:
    wait_idle(page)
    page.wait_for_timeout(1500)  # let images, fonts and plotly finish drawing
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


# --- data for Predict --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_checkpoint(app, signs_data_dir) -> Path:
    """A LeNet-5 trained in this process for 5 epochs on SIGNS (~90 % test), saved where the app looks."""
    return train_signs_lenet(signs_data_dir, 5, app.checkpoint_dir / CHECKPOINT_NAME)


@pytest.fixture(scope="module")
def hand_photo(trained_checkpoint, signs_data_dir, tmp_path_factory) -> tuple[Path, str]:
    """A real SIGNS test photo enlarged to a phone-sized 1200×1200 JPEG, and the label the
    checkpoint gives it in this process (a three-finger photo it gets right, if there is one)."""
    import h5py
    from PIL import Image

    from core.checkpoint import load_checkpoint
    from core.inference import predict_image

    with h5py.File(signs_data_dir / "signs" / "test_signs.h5", "r") as f:
        x, y = np.asarray(f["test_set_x"]), np.asarray(f["test_set_y"]).reshape(-1)
    ckpt = load_checkpoint(trained_checkpoint)
    candidates = []
    for i in [int(i) for i in np.flatnonzero(y == 3)[:10]]:
        buf = io.BytesIO()
        Image.fromarray(x[i]).resize((1200, 1200), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        pred = predict_image(ckpt, buf.getvalue(), name="hand.jpg")
        candidates.append((pred.label == ckpt.classes[int(y[i])], buf.getvalue(), pred.label))
    _, data, label = next((c for c in candidates if c[0]), candidates[0])
    path = tmp_path_factory.mktemp("photos") / "hand.jpg"
    path.write_bytes(data)
    return path, label


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, nav_label, title", PAGES, ids=[p[1].lower() for p in PAGES])
def test_deep_link_on_fresh_server(fresh_app, page, path, nav_label, title):
    """Opened first by its own URL on a just-started server, a page renders itself and the navigation."""
    open_page(page, fresh_app, path, title)
    nav = page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")
    expect(nav).to_have_count(len(PAGES))
    labels = nav.get_by_test_id("stMarkdownContainer").all_inner_texts()  # without the icons' ligature names
    assert [t.strip() for t in labels] == [p[1] for p in PAGES]
    expect(nav.filter(has_text=nav_label)).to_have_attribute("aria-current", "page")
    assert page.url.rstrip("/") == (fresh_app.url + path).rstrip("/")
    # The Overview renders before torch has loaded; the sidebar's device line follows once it has.
    expect(page.get_by_test_id("stSidebar")).to_contain_text(re.compile(r"Device\s*(CPU \(\d+ threads?\)|GPU: )"))
    assert_clean(page)


def test_build_follows_options(app, page, screenshot_dir):
    open_page(page, app, "/build", "Build a net")
    lenet_params = metric(page, "Parameters").inner_text()
    module_code, sequential_code = codes(page)
    assert "class LeNet5(nn.Module)" in module_code and "nn.Conv2d" in module_code
    assert "nn.Sequential(" in sequential_code and "nn.Conv2d" in sequential_code
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text("Both styles give identical outputs")
    screenshot(page, screenshot_dir / "build.png")

    choose(page, "Architecture", "MLP")
    expect(metric(page, "Parameters")).not_to_have_text(lenet_params)
    mlp_params = metric(page, "Parameters").inner_text()
    mlp_codes = codes(page)
    assert all("nn.Linear" in c and "nn.Conv2d" not in c for c in mlp_codes), mlp_codes
    assert mlp_codes != [module_code, sequential_code]

    # RGB → Gray (the MLP's default is RGB, as the cat example): a third of the input features.
    main(page).get_by_test_id("stRadio").filter(has_text="Input").get_by_text("Gray", exact=True).click()
    wait_idle(page)
    expect(metric(page, "Parameters")).not_to_have_text(mlp_params)
    gray_params = int(metric(page, "Parameters").inner_text().replace(",", ""))
    assert gray_params < int(mlp_params.replace(",", ""))
    gray_codes = codes(page)
    assert gray_codes != mlp_codes and all("nn.BatchNorm1d" in c for c in gray_codes)  # the MLP's default has it

    # Batch norm off, the tutorial's MLP: no BatchNorm1d in either style, and fewer parameters.
    main(page).get_by_test_id("stCheckbox").filter(has_text="Batch norm").get_by_text("Batch norm").click()
    wait_idle(page)
    expect(metric(page, "Parameters")).not_to_have_text(f"{gray_params:,}")
    assert int(metric(page, "Parameters").inner_text().replace(",", "")) == gray_params - 2 * (20 + 7 + 5)
    assert all("BatchNorm" not in c for c in codes(page))
    assert_clean(page)


EPOCHS = 10  # long enough (about 25 s in the test server) that Stop lands mid-run
# The Train page's default recipe for LeNet on SIGNS' 1,080 training photos and the generated hands it adds.
TOTAL_STEPS = EPOCHS * math.ceil((1080 + recipe("lenet", tuple("012345")).generated_hands) / recipe("lenet").batch_size)


def test_train_live_stop_resume_save(app, page, screenshot_dir):
    open_page(page, app, "/train", "Train")
    set_number(page, "Epochs", str(EPOCHS))
    expect(main(page).get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value(str(EPOCHS))
    button(page, "Start").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Training:", timeout=RENDER_TIMEOUT)

    # The live chart gains points while the run goes on.
    chart = "live_steps"  # the key of the live loss-per-step chart
    first = wait_for(lambda: plot_points(page, chart), 60, "the first points of the live loss chart")
    first_step = progress_step(page)
    wait_for(lambda: plot_points(page, chart) > first, 60, "the live loss chart to gain points", poll_s=0.25)
    # The progress text and the chart update in one fragment rerun but reach the DOM one after the
    # other, so the step count may trail the chart by a moment: wait for it rather than sample it.
    wait_for(lambda: progress_step(page) > first_step, 60, "the step count to advance", poll_s=0.25)

    button(page, "Stop").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=60_000)
    wait_idle(page)
    expect(button(page, "Resume")).to_be_enabled()
    expect(button(page, "Start")).to_be_enabled()
    stopped_at = progress_step(page)
    assert 0 < stopped_at < TOTAL_STEPS, progress_text(page)

    button(page, "Resume").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text(re.compile("Training:|Finished:"), timeout=60_000)
    assert progress_step(page) >= stopped_at  # resumed, not restarted
    wait_finished(page)
    assert f"step {TOTAL_STEPS}/{TOTAL_STEPS}" in progress_text(page)
    expect(button(page, "Resume")).to_be_disabled()
    assert plot_points(page, chart) >= 2 * TOTAL_STEPS - 10  # raw and smoothed loss, one point a step

    rows = runs_table(page)
    assert len(rows) == 2 and "finished" in rows[1], rows
    button(page, "Save checkpoint").click()
    expect(main(page).get_by_test_id("stAlertContentSuccess").filter(has_text="Saved")).to_contain_text(
        "lenet-signs-run1.pt", timeout=60_000)
    assert (app.checkpoint_dir / "lenet-signs-run1.pt").stat().st_size > 0
    expect(button(page, "Download checkpoint (.pt)")).to_be_visible()
    assert_clean(page)
    screenshot(page, screenshot_dir / "train.png")


def test_predict_upload(app, page, trained_checkpoint, hand_photo, screenshot_dir):
    os.utime(trained_checkpoint)  # the newest checkpoint is the one Predict offers first
    photo, expected_label = hand_photo
    open_page(page, app, "/predict", "Predict a hand sign")
    expect(main(page).get_by_role("combobox", name="Saved checkpoint")).to_have_value(CHECKPOINT_NAME)

    main(page).locator('input[type="file"]').set_input_files(str(photo))
    expect(metric(page, "Prediction")).to_have_text(expected_label, timeout=60_000)
    wait_idle(page)
    wait_for(lambda: plot_points(page, "probs") == 6, 30, "the probability bar chart (six classes)")
    assert page.evaluate("() => document.querySelector('.st-key-probs .js-plotly-plot').data[0].type") == "bar"
    expect(main(page).get_by_text("Your photo", exact=True)).to_be_visible()
    expect(main(page).get_by_text("What the net sees: 64×64, RGB", exact=True)).to_be_visible()
    assert_clean(page)

    # Look inside: the heat map of the predicted class, then of another one ("why not?").
    expect(main(page).get_by_text(f"Grad-CAM for class {expected_label}:")).to_be_visible()
    expect(main(page).get_by_text("no evidence → most evidence")).to_be_visible()
    other = "1" if expected_label != "1" else "2"
    choose(page, "Explain the class", other)
    expect(main(page).get_by_text(f"Grad-CAM for class {other}:")).to_be_visible(timeout=30_000)
    expect(metric(page, "Prediction")).to_have_text(expected_label)
    main(page).get_by_text("Feature maps: what each conv stage computed for this photo").click()
    expect(main(page).get_by_text("6×30×30")).to_be_visible()
    expect(main(page).get_by_text("16×13×13")).to_be_visible()
    choose(page, "Explain the class", expected_label)  # the README's screenshot shows the answer's own map
    expect(main(page).get_by_text(f"Grad-CAM for class {expected_label}:")).to_be_visible(timeout=30_000)
    assert_clean(page)

    button(page, "Evaluate").click()
    expect(metric(page, "Test accuracy")).to_contain_text("%", timeout=60_000)
    screenshot(page, screenshot_dir / "predict.png")


def test_predict_rejects_a_file_that_is_not_an_image(app, page, trained_checkpoint, tmp_path):
    bogus = tmp_path / "hand.png"
    bogus.write_bytes(np.random.default_rng(0).bytes(4096))
    open_page(page, app, "/predict", "Predict a hand sign")
    main(page).locator('input[type="file"]').set_input_files(str(bogus))
    error = main(page).get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("hand.png", timeout=60_000)
    expect(error).to_contain_text("not an image")
    expect(metric(page, "Prediction")).to_have_count(0)
    assert_clean(page)


def test_predict_camera(app, camera_page, trained_checkpoint):
    page = camera_page
    open_page(page, app, "/predict", "Predict a hand sign")
    page.get_by_role("tab", name="Camera").click()
    video = main(page).get_by_test_id("stCameraInput").locator("video")
    expect(video).to_be_visible(timeout=30_000)
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=video.element_handle(), timeout=30_000)
    main(page).get_by_test_id("stCameraInputButton").click()
    expect(metric(page, "Prediction")).to_have_text(re.compile(r"^[0-5]$"), timeout=60_000)
    expect(main(page).get_by_test_id("stMetric").filter(has_text="Prediction")).to_contain_text("confident")
    expect(main(page).get_by_text(re.compile(r"^Grad-CAM for class [0-5]:"))).to_be_visible()
    assert_clean(page)


def test_two_sessions_keep_separate_runs(app, new_page):
    """Two browser sessions train at once (an MLP each, chosen on Build and handed to Train with
    "Use this net", 100 epochs: long enough to overlap); each session's Runs table lists its own run only."""
    a, b = new_page(), new_page()
    for page, lr, seed in ((a, "0.00300", "1"), (b, "0.00200", "2")):
        open_page(page, app, "/build", "Build a net")
        choose(page, "Architecture", "MLP")
        button(page, "Use this net").click()
        expect(page.locator("h1").first).to_have_text("Train", timeout=RENDER_TIMEOUT)
        wait_idle(page)
        expect(main(page).get_by_test_id("stCaptionContainer").first).to_contain_text("MLP")
        set_number(page, "Epochs", "100")
        set_number(page, "Learning rate", lr)
        set_number(page, "Seed", seed)
    button(a, "Start").click()
    button(b, "Start").click()

    def both_running() -> bool:
        return all(progress_text(p).startswith("Training:") for p in (a, b))

    wait_for(both_running, 60, "both sessions to show their run training at the same time", poll_s=0.2)
    for page in (a, b):
        wait_finished(page)

    for page, mine, other in ((a, "lr 0.003", "lr 0.002"), (b, "lr 0.002", "lr 0.003")):
        header, *rows = runs_table(page)
        assert len(rows) == 1, rows
        assert rows[0][0].startswith("#1 MLP") and mine in rows[0][0], rows  # each session counts its own runs
        assert other not in " ".join(rows[0]), rows
        assert rows[0][header.index("status")] == "finished"
        assert "step 1700/1700" in progress_text(page)  # 100 epochs of 17 batches: its own run, not the other's
        assert_clean(page)


def test_overview_screenshot(app, page, screenshot_dir):
    open_page(page, app, "/", "TorchLab")
    expect(main(page).get_by_test_id("stImage")).to_have_count(6)  # one photo per class
    expect(main(page).get_by_test_id("stDataFrame")).to_be_visible()
    assert_clean(page)
    screenshot(page, screenshot_dir / "overview.png")


def test_no_page_asks_the_internet_for_anything(app, page):
    # The app works offline and keeps the user's photos on their machine; a page's material icon used
    # to become the tab's favicon, fetched from Google's font server on every page.
    outside = []
    page.on("request", lambda r: outside.append(r.url)
            if r.url.startswith(("http:", "https:", "ws:", "wss:")) and not r.url.startswith(app.url) else None)
    for path, title in (("/", "TorchLab"), ("/data", "Data"), ("/build", "Build a net"), ("/train", "Train"),
                        ("/predict", "Predict")):
        open_page(page, app, path, title)
        page.wait_for_timeout(1000)  # (icons and fonts load after the title)
    assert outside == []
