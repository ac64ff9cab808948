"""End-to-end: live webcam prediction (Predict → Live) in headless Chromium.

Chromium's fake camera plays a video file made here of one SIGNS test photo (a Y4M of 640×480
frames, the photo in the middle), over WebRTC to a real ``streamlit run`` server with no ICE server
configured (the default: nothing beyond localhost is contacted). The label the net gives that
photo must appear beside the video and keep being read, frame after frame; with the Grad-CAM
overlay on too. It also writes the README's screenshot of the Live mode.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import (
    CHROMIUM_ARGS,
    FAKE_CAMERA_ARGS,
    VIEWPORT,
    import_expect,
    start_server,
    train_signs_lenet,
)
from tests.e2e.test_browser import (
    RENDER_TIMEOUT,
    assert_clean,
    main,
    metric,
    open_page,
    wait_for,
    wait_idle,
)
from tests.live_frames import camera_frame, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

WEBRTC_IFRAME = 'iframe[title="streamlit_webrtc.component.webrtc_streamer"]'
LIVE_TIMEOUT = 90_000  # ms: WebRTC negotiation, then the first frames, on a shared CPU


@pytest.fixture(scope="module")
def live_app(signs_data_dir, tmp_path_factory):
    """A server with a LeNet-5 trained on SIGNS (5 epochs, about 90 % test) saved where Predict looks."""
    server = start_server(signs_data_dir, tmp_path_factory.mktemp("live"))
    server.checkpoint = train_signs_lenet(signs_data_dir, 5, server.checkpoint_dir / "lenet-signs-live.pt")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hand_video(live_app, signs_data_dir, tmp_path_factory) -> tuple[Path, str]:
    """A Y4M video of a SIGNS test photo of three fingers and the label the checkpoint gives its
    frame through the live path (a photo it reads right with at least 95 % confidence)."""
    import av
    import h5py

    from core.checkpoint import load_checkpoint
    from core.live import LivePredictor

    with h5py.File(signs_data_dir / "signs" / "test_signs.h5", "r") as f:
        x, y = np.asarray(f["test_set_x"]), np.asarray(f["test_set_y"]).reshape(-1)
    predictor = LivePredictor(load_checkpoint(live_app.checkpoint), share=None)
    for i in np.flatnonzero(y == 3):
        frame = camera_frame(x[i])
        # As the server will get it: through yuv420p (the video file's format, and WebRTC's).
        received = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")
        result = predictor.process(received)
        if result.label == "3" and result.confidence >= 0.95:
            return write_y4m(tmp_path_factory.mktemp("video") / "hand.y4m", [frame] * 3), "3"
    pytest.fail("the SIGNS LeNet reads no three-finger test photo right with 95 % confidence")


@pytest.fixture
def live_page(playwright_instance, chromium_path, hand_video):
    """A page in a Chromium whose fake camera plays the hand video."""
    video, _ = hand_video
    b = playwright_instance.chromium.launch(
        executable_path=str(chromium_path),
        args=[*CHROMIUM_ARGS, *FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={video}"])
    ctx = b.new_context(viewport=VIEWPORT, permissions=["camera"])
    ctx.set_default_timeout(30_000)
    yield ctx.new_page()
    ctx.close()
    b.close()


def frames_read(page) -> int:
    m = re.search(r"(\d+) frames read", main(page).inner_text())
    return int(m.group(1)) if m else -1


def test_live_prediction_follows_the_camera(live_app, live_page, hand_video, screenshot_dir):
    page = live_page
    _, label = hand_video
    open_page(page, live_app, "/predict", "Predict a hand sign")
    page.get_by_role("tab", name="Live").click()
    wait_idle(page)
    expect(main(page).get_by_test_id("stAlertContentInfo")).to_contain_text("Start live prediction")
    expect(main(page).get_by_test_id("stCameraInput")).to_have_count(0)  # one camera at a time

    video = page.frame_locator(WEBRTC_IFRAME)
    video.get_by_role("button", name="Start live prediction").click()
    expect(metric(page, "Prediction")).to_have_text(label, timeout=LIVE_TIMEOUT)
    expect(main(page).get_by_test_id("stMetric").filter(has_text="Prediction")).to_contain_text("confident")
    # Live: the frames keep being read (the answer beside the video is redrawn as they are).
    first = wait_for(lambda: frames_read(page) > 0 and frames_read(page), 30, "a count of frames read")
    wait_for(lambda: frames_read(page) > first + 10, 60, "more frames to be read")
    wait_for(lambda: float(metric(page, "Frames per second").inner_text()) > 1, 30, "a frame rate above 1 fps")
    expect(metric(page, "Prediction")).to_have_text(label)
    expect(main(page).get_by_text("What the net sees", exact=True)).to_be_visible()

    # The Grad-CAM overlay, switched on while the video plays: the heat map colours the video.
    plain = middle_of(video.locator("video"))
    main(page).get_by_test_id("stCheckbox").filter(has_text="Grad-CAM overlay").locator("label").click()
    expect(main(page).get_by_text(f"Overlay: Grad-CAM for class {label}")).to_be_visible(timeout=LIVE_TIMEOUT)
    wait_for(lambda: np.abs(middle_of(video.locator("video")) - plain).mean() > 15, 60,
             "the heat map to colour the video")
    expect(metric(page, "Prediction")).to_have_text(label)
    assert_clean(page)
    screenshot_live(page, screenshot_dir / "live.png")

    video.get_by_role("button", name="Stop").click()
    expect(main(page).get_by_test_id("stAlertContentInfo")).to_contain_text("Start live prediction",
                                                                            timeout=RENDER_TIMEOUT)
    expect(metric(page, "Prediction")).to_have_count(0)
    assert_clean(page)


def middle_of(video) -> np.ndarray:
    """The middle of the video as shown (inside the square the net reads), as float RGB."""
    from PIL import Image

    shown = np.asarray(Image.open(io.BytesIO(video.screenshot())).convert("RGB"), dtype=np.float64)
    h, w = shown.shape[:2]
    return shown[h // 4:3 * h // 4, w // 3:2 * w // 3]


def screenshot_live(page, path: Path) -> None:
    """The README's screenshot, taken while the video plays (the page is never idle then for long),
    down to the end of the Live tab's content."""
    bottom = main(page).get_by_test_id("stTabs").bounding_box()
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"],
                                          "height": min(VIEWPORT["height"], bottom["y"] + bottom["height"] + 12)})
    assert path.stat().st_size > 10_000
