"""End-to-end: "teach it your hand" in headless Chromium with a (fake) webcam.

A user takes photos per class on the Data page — with the camera and by uploading files — saves them
as a data set, fine-tunes the saved SIGNS net on them with the Train page's one click, saves the
result, and predicts with it on the Predict page: the journey the issue asks for, on a real
``streamlit run`` server. Chromium's fake camera shows a test pattern, not a hand, so the uploads are
real photos of other people's hands (webcam-hands, from the data directory); ``bench/`` measures
accuracy. It also writes the README's screenshots of the Data page and of a fine-tuning run.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import import_expect, start_server, train_signs_lenet
from tests.e2e.test_browser import (
    RENDER_TIMEOUT, TRAIN_TIMEOUT, assert_clean, button, main, metric, open_page, screenshot, wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

SNAPSHOTS = 1  # camera photos per class
RECORDED = 3  # photos of one recording from the live camera
WEBRTC_IFRAME = 'iframe[title="streamlit_webrtc.component.webrtc_streamer"]'
LIVE_TIMEOUT = 90_000  # ms: WebRTC negotiation, then the first frames, on a shared CPU
UPLOADS = 4  # real photos per class
CLASSES = ["0", "1", "2", "3", "4", "5"]


@pytest.fixture(scope="module")
def hands(signs_data_dir) -> Path:
    """Photos of other people's hands: ``webcam-hands/train/<class>/*.jpg`` in the data directory."""
    root = signs_data_dir / "webcam-hands" / "train"
    if not all((root / c).is_dir() for c in CLASSES):
        reason = f"webcam-hands photos missing in {root.parent} (set TORCHLAB_DATA_DIR)"
        if os.environ.get("TORCHLAB_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture(scope="module")
def teach_app(signs_data_dir, tmp_path_factory):
    """A server whose data directory is writable (the user's set is saved there) and holds SIGNS
    (linked, never copied), with a LeNet trained on SIGNS already saved."""
    work = tmp_path_factory.mktemp("teach")
    data = work / "data"
    data.mkdir()
    (data / "signs").symlink_to(signs_data_dir / "signs", target_is_directory=True)
    server = start_server(data, work)
    train_signs_lenet(signs_data_dir, 3, server.checkpoint_dir / "lenet-signs-e2e.pt")
    server.data_dir = data
    yield server
    server.stop()


def take_photo(page) -> None:
    video = main(page).get_by_test_id("stCameraInput").locator("video")
    expect(video).to_be_visible(timeout=30_000)
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=video.element_handle(), timeout=30_000)
    main(page).get_by_test_id("stCameraInputButton").click()


def test_capture_save_finetune_predict(teach_app, camera_page, hands, screenshot_dir):
    page = camera_page
    open_page(page, teach_app, "/data", "Data")
    for c in CLASSES:
        main(page).get_by_test_id("stRadio").get_by_text(c, exact=True).click()
        wait_idle(page)
        photos = main(page).get_by_test_id("stExpander").filter(has_text=f"Class {c} —")
        for n in range(1, SNAPSHOTS + 1):
            page.get_by_role("tab", name="Camera").click()
            wait_idle(page)
            take_photo(page)
            # Each snapshot adds one photo at once, to the class chosen (which stays chosen).
            expect(photos).to_contain_text(f"{n} photo", timeout=RENDER_TIMEOUT)
            wait_idle(page)
        page.get_by_role("tab", name="Upload").click()
        files = sorted((hands / c).glob("*.jpg"))[:UPLOADS]
        main(page).get_by_test_id("stTabs").locator('input[type="file"]').set_input_files([str(f) for f in files])
        button(page, f"Add {UPLOADS} photos to class {c}").click()
        expect(photos).to_contain_text(f"{SNAPSHOTS + UPLOADS} photos", timeout=RENDER_TIMEOUT)
        wait_idle(page)
    per_class = SNAPSHOTS + UPLOADS
    expect(main(page).get_by_text(f"{per_class * len(CLASSES)} in this session")).to_be_visible()
    name = main(page).get_by_role("textbox", name="Name of the set")
    name.fill("my-hand")
    name.press("Enter")
    wait_idle(page)
    screenshot(page, screenshot_dir / "data.png")
    button(page, "Save data set").click()
    expect(main(page).get_by_test_id("stAlertContentSuccess").filter(has_text="Saved")).to_contain_text("my-hand")
    saved = sorted(p.relative_to(teach_app.data_dir / "my-hand").parts[0] for p in (teach_app.data_dir / "my-hand").rglob("*.jpg"))
    assert saved == sorted(CLASSES * per_class)
    assert_clean(page)

    # Train: the recommended path is one click.
    open_page(page, teach_app, "/train", "Train")
    quick = main(page).get_by_test_id("stMarkdownContainer").filter(has_text="Teach it your hand")
    expect(quick).to_contain_text("lenet-signs-e2e.pt")
    expect(quick).to_contain_text("my-hand")
    button(page, "Fine-tune now").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Finished:", timeout=TRAIN_TIMEOUT)
    wait_idle(page)
    expect(main(page).get_by_text(re.compile("keeps the checkpoint's head"))).to_be_visible()
    screenshot(page, screenshot_dir / "finetune.png")
    box = main(page).get_by_role("textbox", name="Checkpoint name")
    box.fill("my-hand-lenet")
    box.press("Enter")
    wait_idle(page)
    button(page, "Save checkpoint").click()
    expect(main(page).get_by_test_id("stAlertContentSuccess").filter(has_text="Saved")).to_contain_text("my-hand-lenet.pt")
    assert (teach_app.checkpoint_dir / "my-hand-lenet.pt").stat().st_size > 0

    # Predict opens with the net just saved; predict from the camera.
    main(page).get_by_role("link", name="Open Predict").click()
    expect(page.locator("h1").filter(has_text="Predict a hand sign")).to_be_visible(timeout=RENDER_TIMEOUT)
    wait_idle(page)
    expect(main(page).get_by_role("combobox", name="Saved checkpoint")).to_have_value("my-hand-lenet.pt")
    page.get_by_role("tab", name="Camera").click()
    take_photo(page)
    expect(metric(page, "Prediction")).to_have_text(re.compile(r"^[0-5]$"), timeout=60_000)
    assert_clean(page)


def test_record_a_burst_of_photos_from_the_live_camera(teach_app, camera_page, screenshot_dir):
    page = camera_page
    open_page(page, teach_app, "/data", "Data")
    main(page).get_by_test_id("stRadio").get_by_text("2", exact=True).click()
    wait_idle(page)
    page.get_by_role("tab", name="Record").click()
    wait_idle(page)
    expect(main(page).get_by_test_id("stAlertContentInfo")).to_contain_text("Start the camera, then record a burst")
    expect(main(page).get_by_test_id("stCameraInput")).to_have_count(0)  # one camera at a time

    page.frame_locator(WEBRTC_IFRAME).get_by_role("button", name="Start the camera").click()
    count = main(page).get_by_role("spinbutton", name="Photos")
    expect(count).to_be_visible(timeout=LIVE_TIMEOUT)  # shown once the video plays
    count.fill(str(RECORDED))
    count.press("Enter")
    wait_idle(page)
    button(page, f"Record {RECORDED} photos of class 2").click()
    # The recording shows its progress, then its photos join the class at once.
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("class 2", timeout=RENDER_TIMEOUT)
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text(
        f"Added {RECORDED} photos to class 2", timeout=LIVE_TIMEOUT)
    # The next empty class is picked for the next recording, and the new photos show.
    expect(button(page, f"Record {RECORDED} photos of class 3")).to_be_visible()
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=RENDER_TIMEOUT)
    screenshot(page, screenshot_dir / "record.png")
    photos = main(page).get_by_test_id("stExpander").filter(has_text="Class 2 —")
    expect(photos).to_contain_text(f"{RECORDED} photos")
    expect(main(page).get_by_text(f"{RECORDED} in this session")).to_be_visible()
    assert_clean(page)
