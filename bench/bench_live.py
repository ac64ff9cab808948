"""Live webcam prediction: time per frame, frames per second, and a training run beside it.

    python bench/bench_live.py [--frames 60] [--epochs 6] [--rounds 2] [--threads 1] [--data-dir DIR] [--json out.json]

1. Per frame: what a stream's thread does with one 640×480 camera frame (yuv420p, as WebRTC
   delivers it): ``streamlit_app.LiveVideo`` — to RGB, ``predict_image`` (under COMPUTE_TURNS), the
   Grad-CAM overlay when on, the frame back as a video frame. LeNet-5 and ResNet-50 (untrained
   weights time as trained ones), Grad-CAM off and on; p50/p95 ms and the frames per second that
   allows (1000 / p50), and what a 30 fps camera then gives.
2. Beside training: a LeNet-5 run of the default recipe on SIGNS (the synthetic set without the
   files) trains in a thread, as the app's job does, alone and while a simulated 30 fps camera feeds
   a live stream (a thread that, like streamlit-webrtc's, predicts the newest of the frames queued
   since its last one). Training images per second with and without the stream, the stream's
   frames per second, alternating rounds (the machine is shared), medians. "resnet50 turns" is the
   ResNet-50 stream taking turns only, without keeping to ``core.live.LIVE_SHARE`` while training
   waits (the app's stream does keep to it).

Not included: WebRTC itself (the browser's encoding, aiortc's decoding and re-encoding of the
video), which costs the server CPU time of its own. Prints tables and writes JSON (default
bench/results/live.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_checkpoint, save_checkpoint
from core.data import best_hand_dataset, load_dataset, resolve_data_dir
from core.live import LIVE_SHARE, LivePredictor
from core.nets import build_model
from core.spec import default_spec
from core.trainer import Trainer, recipe
from streamlit_app import LiveVideo
from tests.live_frames import camera_frame

CAMERA_FPS = 30


def checkpoint_for(arch: str, tmp: Path):
    spec = default_spec(arch, 6)
    path = save_checkpoint(tmp / f"{arch}.pt", build_model(spec, seed=0), spec, "module", [str(i) for i in range(6)])
    return load_checkpoint(path)


def video_frame(image: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(camera_frame(image), format="rgb24").reformat(format="yuv420p")


def per_frame(ckpt, frame: av.VideoFrame, explain: bool, n: int) -> dict:
    video = LiveVideo(LivePredictor(ckpt, explain))
    for _ in range(3):
        video.answer(frame, 0)  # the stream thread's whole path for one frame
    times = []
    for _ in range(n):
        t = time.perf_counter()
        video.answer(frame, 0)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50 = statistics.median(times)
    return {"p50_ms": p50, "p95_ms": times[min(n - 1, int(0.95 * n))], "max_fps": 1000 / p50,
            "fps_at_30": min(CAMERA_FPS, 1000 / p50)}


class Stream:
    """A 30 fps camera thread and a stream thread predicting the newest queued frame (the async
    track of streamlit-webrtc: frames arriving while one is predicted queue up, the newest wins)."""

    def __init__(self, ckpt, frame: av.VideoFrame, share: float | None) -> None:
        self.video = LiveVideo(LivePredictor(ckpt, share=share))
        self.frame = frame
        self.frames: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._camera), threading.Thread(target=self._stream)]

    def _camera(self) -> None:
        t = time.monotonic()
        while not self.stop.is_set():
            self.frames.put(self.frame)
            t += 1 / CAMERA_FPS
            time.sleep(max(0.0, t - time.monotonic()))

    def _stream(self) -> None:
        while not self.stop.is_set():
            try:
                batch = [self.frames.get(timeout=0.1)]
            except queue.Empty:
                continue
            while not self.frames.empty():
                batch.append(self.frames.get_nowait())
            self.video.answer(batch[-1], len(batch) - 1)

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def train_seconds(ds, epochs: int) -> float:
    """Wall seconds of a LeNet default-recipe run of ``epochs`` epochs, trained in a thread."""
    trainer = Trainer(default_spec("lenet", ds.num_classes), ds, recipe("lenet").replace(epochs=epochs))
    out: dict[str, float] = {}

    def run() -> None:
        t = time.perf_counter()
        for _ in trainer.run():
            pass
        out["s"] = time.perf_counter() - t

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out["s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "live.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = resolve_data_dir(args.data_dir)
    ds = load_dataset(best_hand_dataset(data_dir), data_dir)
    image = ds.x_test[int(np.flatnonzero(ds.y_test == 3)[0])]
    frame = video_frame(image)
    machine = f"{platform.machine()}, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"

    frames, beside = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = {arch: checkpoint_for(arch, Path(tmp)) for arch in ("lenet", "resnet50")}
        for arch, ckpt in ckpts.items():
            for explain in (False, True):
                frames.append({"net": arch, "grad_cam": explain, **per_frame(ckpt, frame, explain, args.frames)})
        print(f"Live prediction, one 640×480 frame — {machine}")
        print(f"{'net':<10} {'Grad-CAM':<9} {'p50 ms':>7} {'p95 ms':>7} {'max fps':>8} {'fps (30 fps camera)':>20}")
        for r in frames:
            print(f"{r['net']:<10} {'on' if r['grad_cam'] else 'off':<9} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} "
                  f"{r['max_fps']:>8.1f} {r['fps_at_30']:>20.1f}")

        train_seconds(ds, 1)  # warm-up
        n_images = args.epochs * len(ds.x_train)
        plans = [("alone", None, None), ("lenet live", "lenet", LIVE_SHARE),
                 ("resnet50 turns", "resnet50", None), ("resnet50 live", "resnet50", LIVE_SHARE)]
        results: dict[str, list[dict]] = {name: [] for name, _, _ in plans}
        for _ in range(args.rounds):
            for name, arch, share in plans:
                if arch is None:
                    s = train_seconds(ds, args.epochs)
                    results[name].append({"images_per_s": n_images / s})
                    continue
                with Stream(ckpts[arch], frame, share) as stream:
                    time.sleep(1.0)  # the stream at its pace before the run starts
                    before = stream.video.predictor.latest
                    t0 = time.perf_counter()
                    s = train_seconds(ds, args.epochs)
                    after = stream.video.predictor.latest
                    wall = time.perf_counter() - t0
                read = (after.frames - before.frames) if after and before else 0
                results[name].append({"images_per_s": n_images / s, "live_fps": read / wall,
                                      "frame_ms": after.seconds * 1000 if after else None})
        alone = statistics.median(r["images_per_s"] for r in results["alone"])
        print(f"\nLeNet-5 training ({ds.title}, {args.epochs} epochs, default recipe) beside a live stream, "
              f"median of {args.rounds} rounds")
        print(f"{'':<15} {'train img/s':>12} {'vs alone':>9} {'live fps':>9}")
        for name, _, _ in plans:
            ips = statistics.median(r["images_per_s"] for r in results[name])
            fps = [r["live_fps"] for r in results[name] if "live_fps" in r]
            beside.append({"case": name, "images_per_s": ips, "vs_alone": ips / alone,
                           "live_fps": statistics.median(fps) if fps else None, "rounds": results[name]})
            print(f"{name:<15} {ips:>12.0f} {ips / alone:>9.2f} {statistics.median(fps) if fps else float('nan'):>9.1f}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "dataset": ds.key, "camera_fps": CAMERA_FPS,
                               "per_frame": frames, "beside_training": beside}, indent=2))


if __name__ == "__main__":
    main()
