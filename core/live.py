"""Live prediction from a webcam: frame after frame through the photo path, taking turns.

A :class:`LivePredictor` serves one video stream (one browser session). Each frame, an H×W×3 uint8
RGB array, goes through :func:`core.inference.predict_image` — the same crop, resize and tensor
conversion as an uploaded photo and as the training images — and, when asked for, through Grad-CAM
(:func:`core.explain.grad_cam`; the MLP gets input-gradient saliency). The app's video glue calls
:meth:`LivePredictor.process` on its own thread with the newest frame only, telling it how many
older ones it skipped, so a net slower than the camera always answers for what the camera shows now.

Each frame takes :data:`core.trainer.COMPUTE_TURNS` for its compute, as every training step does:
a frame waits for the step running now and a step for the frame, so live prediction and a running
training share the machine by turns instead of slowing each other down by fighting over its cores.
Turns alone would give a slow net half the machine (a ResNet-50 frame is longer than a LeNet
step), so while a frame has to wait for its turn — other work is running — the stream keeps to
:data:`LIVE_SHARE` of the time: after a frame that took *t* seconds the next is read no sooner than
*t* / LIVE_SHARE after it began, and the frames in between are skipped like stale ones.

The checkpoint's model is the one cached for every session, so nothing here changes it: the net is
used in eval mode under ``torch.no_grad`` (Grad-CAM differentiates with respect to a detached copy
of the features, see :mod:`core.explain`), and all per-stream state — the newest result, the frame
rate, the counts — lives in the predictor, never in a module global.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.capture import Recording
from core.checkpoint import Checkpoint
from core.explain import GRAD_CAM, SALIENCY, colorize, grad_cam, saliency
from core.inference import predict_image
from core.nets import has_spatial_features
from core.preprocess import ImageError, centre_square
from core.tensors import tensor_to_image
from core.trainer import COMPUTE_TURNS

FPS_WINDOW = 2.0  # seconds: the frame rate is the frames processed over the last this many seconds
LIVE_SHARE = 0.25  # the most of the compute time a stream takes while other work waits for turns
# A frame that waited longer than this for its turn found other work running. Above Python's GIL
# switch interval (5 ms), so a frame that merely waited for another thread's Python code does not count.
CONTENDED_S = 0.006
OUTLINE_RGB = (238, 76, 44)  # the app's accent colour: the square the net reads
RECORD_TRACK_RGB = (255, 255, 255)  # the recording bar's unfilled part
ICE_SERVERS_ENV = "TORCHLAB_ICE_SERVERS"


class SettingError(ValueError):
    """A malformed ``$TORCHLAB_ICE_SERVERS``; str() names the setting and what it should be."""


@dataclass(frozen=True)
class LiveResult:
    """What the net made of one video frame, and how fast the stream is being read."""

    label: str
    confidence: float
    probabilities: dict[str, float]  # class → softmax probability, in the checkpoint's class order
    seen: np.ndarray  # the net's input as an image: H×W (gray) or H×W×3 uint8
    box: tuple[int, int, int]  # (left, top, side): the frame's centre square the net read
    heatmap: np.ndarray | None  # H×W float32 in [0, 1] at the net's input size, when asked for
    method: str | None  # GRAD_CAM or SALIENCY with a heat map, else None
    seconds: float  # compute time of this frame (preprocessing, forward, heat map)
    waited: float  # time this frame waited for its compute turn
    fps: float  # frames processed per second over the last FPS_WINDOW seconds (0 until two frames)
    frames: int  # frames processed since the stream (or the checkpoint) started
    skipped: int  # frames not predicted: a newer one had arrived, or the stream was yielding to other work


class LivePredictor:
    """Predicts the frames of one video stream (see the module doc). Thread-safe: the video
    thread calls :meth:`process`, the page reads :attr:`latest` and calls :meth:`configure`."""

    def __init__(self, ckpt: Checkpoint, explain: bool = False, share: float | None = LIVE_SHARE) -> None:
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1] or None, got {share}")
        self._lock = threading.Lock()
        self._ckpt = ckpt
        self._explain = explain
        self._share = share  # None: no yielding, turns only (for measurements)
        self._reset()

    def _reset(self) -> None:
        self._latest: LiveResult | None = None
        self._error: str | None = None
        self._done: deque[float] = deque()  # when recent frames finished, for the frame rate
        self._frames = 0
        self._skipped = 0
        self._not_before = float("-inf")  # while yielding to other work: when the next frame may be read

    def configure(self, ckpt: Checkpoint, explain: bool) -> None:
        """Use ``ckpt`` (another checkpoint starts the counts afresh) and draw heat maps or not,
        from the next frame on."""
        with self._lock:
            if ckpt is not self._ckpt:
                self._ckpt = ckpt
                self._reset()
            self._explain = explain

    @property
    def latest(self) -> LiveResult | None:
        """The newest frame's result (None before the first)."""
        with self._lock:
            return self._latest

    @property
    def error(self) -> str | None:
        """Why the newest frame could not be read, or None when it was."""
        with self._lock:
            return self._error

    def process(self, frame: np.ndarray, skipped: int = 0) -> LiveResult | None:
        """Predict one frame (an H×W×3 uint8 RGB array), ``skipped`` older frames having been left
        out for it. Takes ``COMPUTE_TURNS`` for the compute. Returns the result (also kept as
        :attr:`latest`), or None for a frame that was not predicted: one that came while the stream
        yields to other work (module doc; counted as skipped), or one that is not a usable picture
        (:attr:`error` says why).
        """
        start = time.monotonic()
        with self._lock:
            if start < self._not_before:
                self._skipped += 1 + skipped
                return None
            ckpt, explain = self._ckpt, self._explain
        try:
            with COMPUTE_TURNS:
                began = time.monotonic()
                pred = predict_image(ckpt, frame, name="The camera frame")
                method, heat = None, None
                if explain:
                    index = list(ckpt.classes).index(pred.label)
                    if has_spatial_features(ckpt.model):
                        method, heat = GRAD_CAM, grad_cam(ckpt.model, pred.net_input, index, mirror=pred.mirrored)
                    else:
                        method, heat = SALIENCY, saliency(ckpt.model, pred.net_input, index, mirror=pred.mirrored)
                ended = time.monotonic()
        except ImageError as e:
            with self._lock:
                self._error = str(e)
            return None
        with self._lock:
            if ckpt is not self._ckpt:  # the page switched nets meanwhile: this frame is not theirs
                return None
            self._frames += 1
            self._skipped += skipped
            contended = self._share is not None and began - start > CONTENDED_S
            self._not_before = began + (ended - began) / self._share if contended else float("-inf")
            self._done.append(ended)
            while self._done[0] < ended - FPS_WINDOW:
                self._done.popleft()
            span = self._done[-1] - self._done[0]
            fps = (len(self._done) - 1) / span if span > 0 else 0.0
            h, w = frame.shape[:2]
            result = LiveResult(
                label=pred.label,
                confidence=pred.confidence,
                probabilities=pred.probabilities,
                seen=tensor_to_image(pred.net_input[0]),
                box=centre_square(w, h),
                heatmap=None if heat is None else heat.numpy().astype(np.float32),
                method=method,
                seconds=ended - began,
                waited=began - start,
                fps=fps,
                frames=self._frames,
                skipped=self._skipped,
            )
            self._latest, self._error = result, None
            return result


def annotate(frame: np.ndarray, result: LiveResult | None, opacity: float = 0.45) -> np.ndarray:
    """The frame to show back: the centre square the net reads outlined and, when the result has
    one, its heat map blended over that square. A new H×W×3 uint8 array; ``frame`` is not changed."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    left, top, side = centre_square(w, h)
    if result is not None and result.heatmap is not None and result.box == (left, top, side):
        # Coloured at the map's size, then enlarged and blended by PIL: mapping every pixel of a
        # full frame through the colour map in numpy costs several times as much.
        heat = Image.fromarray(colorize(result.heatmap)).resize((side, side), Image.Resampling.BILINEAR)
        square = Image.fromarray(out[top:top + side, left:left + side])
        out[top:top + side, left:left + side] = np.asarray(Image.blend(square, heat, opacity))
    _outline(out, left, top, side)
    return out


def annotate_recording(frame: np.ndarray, recording: Recording) -> np.ndarray:
    """The frame to show back while recording photos for a data set: the centre square the net
    will read outlined (what counts is inside it), and, while a recording runs, a bar along the
    square's foot that fills as frames are kept. A new H×W×3 uint8 array."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    left, top, side = centre_square(w, h)
    t = _outline(out, left, top, side)
    if recording.running:
        filled = side * recording.kept // max(1, recording.asked)
        out[top + side - 4 * t:top + side, left:left + side] = RECORD_TRACK_RGB
        out[top + side - 4 * t:top + side, left:left + filled] = OUTLINE_RGB
    return out


def _outline(out: np.ndarray, left: int, top: int, side: int) -> int:
    """Outline the square in place; returns the line's thickness (a little thicker on big frames)."""
    t = max(2, side // 160)
    colour = np.array(OUTLINE_RGB, dtype=np.uint8)
    out[top:top + t, left:left + side] = colour
    out[top + side - t:top + side, left:left + side] = colour
    out[top:top + side, left:left + t] = colour
    out[top:top + side, left + side - t:left + side] = colour
    return t


def parse_ice_servers(text: str | None) -> list[dict]:
    """The ICE servers (STUN/TURN) for live video, from ``$TORCHLAB_ICE_SERVERS``: a JSON list of
    ``{"urls": ..., "username": ..., "credential": ...}`` objects, as a browser's RTCIceServer.

    Unset or empty means none: the browser and the server then connect directly (localhost or
    the same network) and nothing on the internet is contacted. Raises :class:`SettingError`,
    naming the setting, for anything else than such a list.
    """
    if text is None or not text.strip():
        return []
    where = f"${ICE_SERVERS_ENV}"
    try:
        servers = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingError(f"{where} is not valid JSON ({e.msg} at character {e.pos}); expected a list such as "
                         '[{"urls": "stun:stun.example.org:3478"}]') from None
    if not isinstance(servers, list):
        raise SettingError(f"{where} must be a JSON list of ICE servers, got {type(servers).__name__}")
    for i, server in enumerate(servers):
        urls = server.get("urls") if isinstance(server, dict) else None
        if isinstance(urls, str):
            urls = [urls]
        if not (isinstance(urls, list) and urls and all(
                isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns") for u in urls)):
            raise SettingError(f"{where}: entry {i} needs \"urls\": a stun:, stuns:, turn: or turns: URL or a list of them")
        extra = set(server) - {"urls", "username", "credential"}
        if extra:
            raise SettingError(f"{where}: entry {i} has unknown keys {sorted(extra)} (allowed: urls, username, credential)")
    return servers
