"""Webcam frames made of SIGNS photos, for the live-prediction tests (``tests/test_live.py`` and
``tests/e2e/test_live.py``): a photo enlarged into the middle of a 640×480 frame, and a Y4M video
file of such frames for Chromium's fake camera (``--use-file-for-fake-video-capture``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FRAME_W, FRAME_H = 640, 480


def camera_frame(photo: np.ndarray, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """A height×width×3 uint8 frame whose centre square is ``photo`` (H×W×3 uint8) enlarged; the
    rest is the median colour of the photo's border, as the wall beside the hand."""
    side = min(width, height)
    big = np.asarray(Image.fromarray(photo).resize((side, side), Image.Resampling.BICUBIC))
    border = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]])
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = np.median(border, axis=0).astype(np.uint8)
    left, top = (width - side) // 2, (height - side) // 2
    frame[top:top + side, left:left + side] = big
    return frame


def rgb_to_i420(frame: np.ndarray) -> bytes:
    """An RGB frame (even sides) as I420: the Y plane, then U and V at half resolution; BT.601
    studio range, the conversion a browser assumes for camera frames."""
    rgb = frame.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

    def half(c: np.ndarray) -> np.ndarray:
        return (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) / 4

    planes = [y, half(u), half(v)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """A YUV4MPEG2 (.y4m) video of RGB ``frames`` (all one size, even sides), 4:2:0."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".encode())
        f.writelines(b"FRAME\n" + rgb_to_i420(frame) for frame in frames)
    return path
