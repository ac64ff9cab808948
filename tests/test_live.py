"""Live webcam prediction (core/live.py and the app's stream glue, streamlit_app.LiveVideo).

Frames are real ``av.VideoFrame``s in yuv420p, as WebRTC hands them to the server, each made of a
SIGNS test photo enlarged into the middle of a 640×480 frame (tests/live_frames.py), and read by
a LeNet-5 trained on SIGNS in this process.
"""
from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import torch
from PIL import Image

from core.capture import CaptureSet, FrameRecorder, Recording
from core.checkpoint import load_checkpoint, save_checkpoint
from core.explain import GRAD_CAM, SALIENCY
from core.inference import predict_image
from core.live import (
    CONTENDED_S,
    ICE_SERVERS_ENV,
    LIVE_SHARE,
    OUTLINE_RGB,
    RECORD_TRACK_RGB,
    LivePredictor,
    SettingError,
    annotate,
    annotate_recording,
    parse_ice_servers,
)
from core.nets import build_model
from core.spec import ModelSpec
from core.tensors import images_to_tensor, tensor_to_image
from core.trainer import COMPUTE_TURNS
from streamlit_app import LiveVideo, RecordVideo, live_rtc_configuration
from tests.live_frames import FRAME_H, FRAME_W, camera_frame

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def signs_lenet(data_dir, tmp_path_factory):
    """A LeNet-5 trained for 5 epochs on SIGNS (about 90 % test accuracy), saved and loaded back."""
    from tests.e2e.conftest import train_signs_lenet

    path = train_signs_lenet(data_dir, 5, tmp_path_factory.mktemp("live") / "lenet-signs.pt")
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def hands(signs_lenet, data_dir) -> dict[str, np.ndarray]:
    """For classes "3" and "1": a 640×480 RGB camera frame of a SIGNS test photo of that class that
    the net, reading the frame as a photo file, gets right with at least 90 % confidence."""
    import h5py

    with h5py.File(data_dir / "signs" / "test_signs.h5", "r") as f:
        x, y = np.asarray(f["test_set_x"]), np.asarray(f["test_set_y"]).reshape(-1)
    found = {}
    for label in ("3", "1"):
        for i in np.flatnonzero(y == int(label)):
            frame = camera_frame(x[i])
            pred = predict_image(signs_lenet, png(frame), name="frame.png")
            if pred.label == label and pred.confidence >= 0.9:
                found[label] = frame
                break
    assert set(found) == {"3", "1"}, "the SIGNS LeNet gets no class 3 or class 1 test photo right"
    return found


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def video_frame(rgb: np.ndarray) -> av.VideoFrame:
    """The frame as a camera sends it over WebRTC: yuv420p."""
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def stream(ckpt, explain: bool = False) -> LiveVideo:
    return LiveVideo(LivePredictor(ckpt, explain))


def send(video: LiveVideo, *frames: av.VideoFrame) -> list[av.VideoFrame]:
    """What streamlit-webrtc's stream thread does with the frames queued since the last call (on a
    thread of its own, as there: this one may already run an event loop, e.g. Playwright's)."""
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, video.recv_queued(list(frames))).result()


@pytest.fixture(autouse=True)
def one_step_at_a_time(monkeypatch):
    """The turn tests hold one turn and expect a frame to wait: the gate as it is before the app
    sizes it (an app test earlier in the process may have let two steps in at once)."""
    monkeypatch.setattr(COMPUTE_TURNS, "slots", 1)


# --- one stream ------------------------------------------------------------------------------------


def test_a_signs_frame_gets_its_label_through_the_photo_path(signs_lenet, hands):
    video = stream(signs_lenet)
    frame = video_frame(hands["3"])
    out = send(video, frame)
    result = video.predictor.latest
    assert result.label == "3" and result.confidence >= 0.8
    # The photo path, exactly: the frame as the server decodes it, saved as a PNG and predicted as
    # an upload, gives the same probabilities.
    as_photo = predict_image(signs_lenet, png(frame.to_ndarray(format="rgb24")), name="frame.png")
    assert result.probabilities == pytest.approx(as_photo.probabilities, abs=1e-6)
    assert np.array_equal(result.seen, tensor_to_image(as_photo.net_input[0]))
    assert result.box == (80, 0, 480)  # the centre square of 640×480, as prepare_image crops
    assert result.heatmap is None and result.method is None
    # One frame back, the camera's size, with the square the net reads drawn on it.
    assert len(out) == 1 and (out[0].width, out[0].height) == (FRAME_W, FRAME_H)
    shown = out[0].to_ndarray(format="rgb24")
    assert tuple(shown[240, 81]) == OUTLINE_RGB and tuple(shown[240, 84]) != OUTLINE_RGB


def test_the_label_follows_the_hand(signs_lenet, hands):
    video = stream(signs_lenet)
    labels = []
    for label in ("3", "1", "3"):
        send(video, video_frame(hands[label]))
        labels.append(video.predictor.latest.label)
    assert labels == ["3", "1", "3"]
    assert video.predictor.latest.frames == 3


def test_only_the_newest_frame_is_predicted(signs_lenet, hands):
    video = stream(signs_lenet)
    three, one = video_frame(hands["3"]), video_frame(hands["1"])
    out = send(video, three, three, one)  # the net was busy while these three arrived
    result = video.predictor.latest
    assert result.label == "1"
    assert (result.frames, result.skipped) == (1, 2)
    assert len(out) == 1
    send(video, three)
    assert (video.predictor.latest.label, video.predictor.latest.frames, video.predictor.latest.skipped) == ("3", 2, 2)


def test_grad_cam_overlay_on_the_square(signs_lenet, hands):
    video = stream(signs_lenet, explain=True)
    frame = hands["3"]
    out = send(video, video_frame(frame))[0].to_ndarray(format="rgb24")
    result = video.predictor.latest
    assert result.method == GRAD_CAM and result.heatmap.shape == (64, 64)
    assert result.heatmap.max() == pytest.approx(1.0)
    plain = send(stream(signs_lenet), video_frame(frame))[0].to_ndarray(format="rgb24")
    left, top, side = result.box
    inside = (slice(top + 8, top + side - 8), slice(left + 8, left + side - 8))
    outside = (slice(None), slice(0, left - 1))
    # The heat map colours the square the net reads and nothing else.
    assert np.abs(out[inside].astype(int) - plain[inside].astype(int)).mean() > 10
    assert np.array_equal(out[outside], plain[outside])


def test_a_mirror_reading_net_reads_each_frame_with_its_mirror_image(signs_lenet, hands):
    # A net fine-tuned with the mirrored augmentation: a frame is read as a photo of it is, with the
    # mirror image, and its overlay is the evidence behind both views.
    import copy

    from core.explain import grad_cam

    mirrored = copy.copy(signs_lenet)
    mirrored.training = {**signs_lenet.training, "augment": True, "augmentation": "mirrored"}
    def live(ckpt, frame: np.ndarray, explain: bool = False):
        video = stream(ckpt, explain=explain)
        send(video, video_frame(np.ascontiguousarray(frame)))
        return video.predictor.latest

    frame = hands["3"]
    result = live(mirrored, frame, explain=True)
    alone, its_mirror = live(signs_lenet, frame), live(signs_lenet, frame[:, ::-1])
    expected = {c: (alone.probabilities[c] + its_mirror.probabilities[c]) / 2 for c in mirrored.classes}
    assert result.probabilities == pytest.approx(expected, abs=3e-4)  # the mirrored frame is made apart
    assert result.probabilities != pytest.approx(alone.probabilities, abs=3e-4)  # the two views differ
    net_input = images_to_tensor(torch.from_numpy(result.seen[None].copy()), 3)
    index = list(mirrored.classes).index(result.label)
    np.testing.assert_allclose(result.heatmap, grad_cam(mirrored.model, net_input, index, mirror=True).numpy(), atol=1e-5)


def test_annotate_leaves_the_frame_alone_outside_the_square():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    before = frame.copy()
    out = annotate(frame, None)
    assert np.array_equal(frame, before)  # a new array; the camera's frame is not drawn on
    changed = np.any(out != frame, axis=2)
    assert changed[:, :80].sum() == 0 and changed[:, 560:].sum() == 0
    assert changed[:, 80:83].all() and changed[:, 557:560].all()  # the outline's left and right edges
    assert not changed[10:470, 90:550].any()  # inside untouched without a heat map


def test_a_recording_shows_the_square_and_a_bar_that_fills_as_frames_are_kept():
    frame = np.full((480, 640, 3), 40, np.uint8)
    idle = annotate_recording(frame, Recording(None, False, 0, 0, False))
    assert np.array_equal(idle, annotate(frame, None))  # no recording: the square alone, as in Predict
    bar = slice(480 - 4 * 3, 477)  # the rows above the square's foot (the outline is 3 px at 480)
    half = annotate_recording(frame, Recording("2", True, 5, 10, False))
    assert (half[bar, 83:310] == OUTLINE_RGB).all()  # kept half: the left half filled
    assert (half[bar, 330:557] == RECORD_TRACK_RGB).all()  # the rest still to come
    assert np.array_equal(half[:400], idle[:400])  # nothing else drawn
    assert np.array_equal(frame, np.full((480, 640, 3), 40, np.uint8))  # the camera's frame untouched


def test_the_recording_stream_keeps_frames_and_sends_them_back_outlined():
    recorder = FrameRecorder(interval_s=0.001, delay_s=0.0)
    video = RecordVideo(recorder)
    rgb = camera_frame(np.full((64, 64, 3), 128, np.uint8))
    back = video.recv(video_frame(rgb)).to_ndarray(format="rgb24")
    cs = CaptureSet(["3", "4"])
    assert recorder.collect_into(cs) is None and cs.total == 0 and back.shape == rgb.shape  # not recording
    recorder.start("3", 2)
    for _ in range(3):
        time.sleep(0.002)
        video.recv(video_frame(rgb))
    assert recorder.collect_into(cs).added == 2 and cs.counts() == {"3": 2, "4": 0}
    kept = np.asarray(Image.open(io.BytesIO(cs.images["3"][0].data))).astype(int)
    assert np.abs(kept - np.asarray(Image.fromarray(rgb).resize((512, 384))).astype(int)).mean() < 4


def test_the_mlp_gets_a_saliency_overlay(tmp_path):
    spec = ModelSpec("mlp", 6, in_channels=3, input_size=64)
    path = save_checkpoint(tmp_path / "mlp.pt", build_model(spec, seed=0), spec, "module", [str(i) for i in range(6)])
    video = stream(load_checkpoint(path), explain=True)
    send(video, video_frame(camera_frame(np.full((64, 64, 3), 128, np.uint8))))
    assert video.predictor.latest.method == SALIENCY


def test_a_frame_that_is_not_a_picture_keeps_the_stream_going(signs_lenet):
    video = stream(signs_lenet)
    tiny = av.VideoFrame.from_ndarray(np.zeros((4, 6, 3), np.uint8), format="rgb24")
    out = send(video, tiny)  # no exception: the stream thread would die of one
    assert len(out) == 1 and video.predictor.latest is None
    assert "at least 8×8" in video.predictor.error


# --- sessions and the shared model ---------------------------------------------------------------


def test_two_streams_share_nothing_but_the_model(signs_lenet, hands):
    a, b = stream(signs_lenet), stream(signs_lenet, explain=True)
    for _ in range(2):
        send(a, video_frame(hands["3"]))
        send(b, video_frame(hands["1"]))
        send(b, video_frame(hands["1"]), video_frame(hands["1"]))
    ra, rb = a.predictor.latest, b.predictor.latest
    assert (ra.label, ra.frames, ra.skipped, ra.method) == ("3", 2, 0, None)
    assert (rb.label, rb.frames, rb.skipped, rb.method) == ("1", 4, 2, GRAD_CAM)
    a.predictor.configure(signs_lenet, explain=True)  # one session turns the overlay on …
    b.predictor.configure(signs_lenet, explain=False)  # … the other off
    send(a, video_frame(hands["3"]))
    send(b, video_frame(hands["1"]))
    assert (a.predictor.latest.method, a.predictor.latest.frames) == (GRAD_CAM, 3)
    assert (b.predictor.latest.method, b.predictor.latest.frames) == (None, 5)


def test_live_prediction_changes_nothing_in_the_shared_model(signs_lenet, hands):
    model = signs_lenet.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    for explain in (False, True):
        send(stream(signs_lenet, explain), video_frame(hands["3"]))
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # weights and batch-norm statistics
    assert [m.training for m in model.modules()] == modes and not any(modes)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_another_checkpoint_starts_the_counts_afresh(signs_lenet, hands, tmp_path):
    video = stream(signs_lenet)
    send(video, video_frame(hands["3"]))
    other = load_checkpoint(save_checkpoint(tmp_path / "other.pt", signs_lenet.model, signs_lenet.spec,
                                            signs_lenet.style, signs_lenet.classes))
    video.predictor.configure(other, explain=False)
    assert video.predictor.latest is None
    send(video, video_frame(hands["1"]))
    assert (video.predictor.latest.label, video.predictor.latest.frames) == ("1", 1)


# --- taking turns with training ------------------------------------------------------------------


def _process_in_thread(predictor: LivePredictor, frame: np.ndarray) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(predictor.process(frame)))
    thread.start()
    return thread, out


def _wait_for_ticket(ticket: int) -> None:
    deadline = time.monotonic() + 10
    while COMPUTE_TURNS._next_ticket <= ticket and time.monotonic() < deadline:
        time.sleep(0.005)
    assert COMPUTE_TURNS._next_ticket > ticket, "the frame never asked for a compute turn"


def test_each_frame_waits_for_its_compute_turn(signs_lenet, hands):
    predictor = LivePredictor(signs_lenet, share=None)
    with COMPUTE_TURNS:  # a training step holds the turn
        ticket = COMPUTE_TURNS._next_ticket
        thread, out = _process_in_thread(predictor, hands["3"])
        _wait_for_ticket(ticket)
        time.sleep(0.2)
        assert thread.is_alive() and predictor.latest is None  # queued behind the step, not computing
    thread.join(timeout=30)
    assert out[0].label == "3" and out[0].waited >= 0.2


def test_while_others_wait_for_turns_the_stream_keeps_to_its_share(signs_lenet, hands):
    assert 0 < LIVE_SHARE < 1  # the app's stream yields; a small share here keeps the timing robust
    share = 0.02
    predictor = LivePredictor(signs_lenet, share=share)
    with COMPUTE_TURNS:  # other work is running: the frame has to wait
        ticket = COMPUTE_TURNS._next_ticket
        thread, out = _process_in_thread(predictor, hands["3"])
        _wait_for_ticket(ticket)
        time.sleep(0.05)
    thread.join(timeout=30)
    first = out[0]
    assert first.waited > CONTENDED_S
    # The frames within seconds / share of the first's start are skipped, not predicted.
    assert predictor.process(hands["1"]) is None
    assert predictor.process(hands["1"], skipped=2) is None
    assert (predictor.latest.label, predictor.latest.frames) == ("3", 1)
    time.sleep(first.seconds / share + 0.05)
    second = predictor.process(hands["1"])  # nobody else computing now: read at once …
    assert (second.label, second.frames, second.skipped) == ("1", 2, 4)
    third = predictor.process(hands["3"])  # … and the next one too
    assert third is not None and third.label == "3"


# --- the WebRTC configuration --------------------------------------------------------------------


def test_no_ice_server_is_contacted_by_default(monkeypatch):
    from streamlit_webrtc.component import (
        _resolve_server_rtc_configuration,
        enhance_frontend_rtc_configuration,
    )

    monkeypatch.delenv(ICE_SERVERS_ENV, raising=False)
    config = live_rtc_configuration()
    assert config == {"iceServers": []}
    # streamlit-webrtc fills in a public STUN server when iceServers is missing; an empty list stays empty
    # for the browser and for the server.
    assert enhance_frontend_rtc_configuration(config)["iceServers"] == []
    assert _resolve_server_rtc_configuration(config).iceServers == []
    assert enhance_frontend_rtc_configuration({})["iceServers"]  # (what the default would have been)


def test_ice_servers_from_the_setting(monkeypatch):
    servers = [{"urls": "stun:stun.example.org:3478"},
               {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "u", "credential": "p"}]
    monkeypatch.setenv(ICE_SERVERS_ENV, json.dumps(servers))
    assert live_rtc_configuration() == {"iceServers": servers}
    assert parse_ice_servers("  ") == []


@pytest.mark.parametrize("text, says", [
    ("stun:stun.example.org", "not valid JSON"),
    ('{"urls": "stun:x"}', "must be a JSON list"),
    ('[{"url": "stun:x"}]', 'needs "urls"'),
    ('[{"urls": "http://x"}]', 'needs "urls"'),
    ('[{"urls": []}]', 'needs "urls"'),
    ('["stun:x"]', 'needs "urls"'),
    ('[{"urls": "stun:x", "password": "p"}]', "unknown keys ['password']"),
])
def test_a_malformed_setting_is_refused_with_its_name(text, says):
    with pytest.raises(SettingError) as e:
        parse_ice_servers(text)
    assert ICE_SERVERS_ENV in str(e.value) and says in str(e.value)
