"""core.capture: a user's photos per class, held per session, saved as an image folder."""
from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from core import capture
from core.capture import CaptureError, CaptureSet
from core.data import DatasetError, load_dataset
from core.preprocess import ImageError, load_photo


def photo(w: int = 640, h: int = 480, color: tuple[int, int, int] = (200, 120, 90), fmt: str = "JPEG", **kw) -> bytes:
    image = Image.new("RGB", (w, h), color)
    # A dark bar on the left half, so orientation and crops are visible in the pixels.
    image.paste((20, 20, 20), (0, 0, w // 4, h))
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def filled(per_class: int = 2, classes: tuple[str, ...] = ("a", "b")) -> CaptureSet:
    cs = CaptureSet(list(classes))
    for k, c in enumerate(classes):
        for i in range(per_class):
            cs.add(c, photo(color=(40 * k + 10 * i, 200 - 30 * k, 90)), f"{c}{i}.jpg")
    return cs


def test_default_classes_are_finger_counts():
    assert CaptureSet().classes == ["0", "1", "2", "3", "4", "5"]


def test_add_stores_an_upright_bounded_jpeg_and_a_thumbnail():
    cs = CaptureSet(["a", "b"])
    # A 1000×600 photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view).
    image = Image.new("RGB", (1000, 600), (200, 120, 90))
    image.paste((20, 20, 20), (0, 0, 250, 600))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    item = cs.add("a", buf.getvalue(), "side.jpg")
    stored = Image.open(io.BytesIO(item.data))
    assert stored.format == "JPEG" and stored.mode == "RGB"
    assert stored.size == (capture.STORED_SIDE * 600 // 1000, capture.STORED_SIDE)  # upright, longest side 512
    # Upright: the dark bar that was on the left of the stored pixels is now at the top.
    a = np.asarray(stored).astype(int)
    assert a[:20].mean() < 60 and a[-20:].mean() > 90
    assert item.thumbnail.shape == (capture.THUMB_SIDE, capture.THUMB_SIDE, 3) and item.thumbnail.dtype == np.uint8
    assert cs.counts() == {"a": 1, "b": 0} and cs.total == 1


def test_bad_files_and_limits_are_refused_with_a_message(monkeypatch):
    cs = CaptureSet(["a", "b"])
    with pytest.raises(ImageError, match="notes.txt"):
        cs.add("a", b"hello", "notes.txt")
    with pytest.raises(CaptureError, match="at least 32×32"):
        cs.add("a", photo(20, 20), "tiny.jpg")
    with pytest.raises(CaptureError, match="no class 'c'"):
        cs.add("c", photo(), "x.jpg")
    monkeypatch.setattr(capture, "MAX_PER_CLASS", 2)
    cs.add("a", photo(), "1.jpg")
    cs.add("a", photo(), "2.jpg")
    with pytest.raises(CaptureError, match="already has 2 photos"):
        cs.add("a", photo(), "3.jpg")
    monkeypatch.setattr(capture, "MAX_TOTAL_BYTES", cs.total_bytes + 10)
    with pytest.raises(CaptureError, match="MB"):
        cs.add("b", photo(), "4.jpg")
    assert cs.counts() == {"a": 2, "b": 0}


def test_set_classes_keeps_photos_of_kept_classes_and_refuses_bad_lists():
    cs = filled(1, ("a", "b"))
    cs.set_classes(["b", "a", "c"])
    assert cs.classes == ["b", "a", "c"] and cs.counts() == {"b": 1, "a": 1, "c": 0}
    assert cs.dropped_by(["a", "c"]) == ["b"]
    for bad, message in ((["a"], "2–20 classes"), (["a", "a"], "twice"), ([f"c{i}" for i in range(21)], "2–20"),
                         (["ok", "../up"], "up"), (["ok", "x\x00y"], "x")):
        with pytest.raises(CaptureError, match=message):
            cs.set_classes(bad)
    assert cs.classes == ["b", "a", "c"]  # a refused list changes nothing


def test_remove_deletes_one_photo_only():
    cs = filled(2)
    first, second = cs.images["a"]
    assert cs.remove("a", first.id)
    assert not cs.remove("a", first.id)  # a second click on a stale button does nothing
    assert cs.images["a"] == [second]


def test_save_writes_the_image_folder_layout_that_loads_through_the_one_photo_path(tmp_path):
    cs = filled(3)
    folder = cs.save("my hand", tmp_path)
    assert folder == tmp_path / "my-hand"
    assert folder.stat().st_mode & 0o777 == 0o755  # others using the data directory can read it
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jpg")) == [
        f"{c}/{i:04d}.jpg" for c in "ab" for i in range(3)
    ]
    ds = load_dataset(str(folder))
    assert ds.classes == ("a", "b") and len(ds.x_train) + len(ds.x_test) == 6
    # Every training image is the stored photo prepared exactly as prediction prepares a photo.
    expected = {load_photo(p.read_bytes(), ds.image_size).tobytes() for p in folder.rglob("*.jpg")}
    got = {x.tobytes() for x in np.concatenate([ds.x_train, ds.x_test])}
    assert got == expected


def test_save_refuses_an_unready_set_a_bad_name_and_an_existing_set(tmp_path):
    cs = CaptureSet(["a", "b"])
    cs.add("a", photo(), "1.jpg")
    with pytest.raises(CaptureError, match="class 'b' has no photo"):
        cs.save("x", tmp_path)
    assert CaptureSet(["a", "b", "c"]).problems() == ["classes 'a', 'b', 'c' have no photo"]  # one line, not three
    cs = filled(2)
    for bad in ("../escape", "signs", ""):
        with pytest.raises((DatasetError, CaptureError)):
            cs.save(bad, tmp_path)
    assert not (tmp_path.parent / "escape").exists()
    cs.save("mine", tmp_path)
    with pytest.raises(CaptureError, match="exists already"):
        cs.save("mine", tmp_path)
    bigger = filled(3)
    bigger.save("mine", tmp_path, overwrite=True)
    assert sum(1 for _ in (tmp_path / "mine").rglob("*.jpg")) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temp or old folder left behind


def test_a_failed_save_leaves_the_earlier_set_intact_and_no_debris(tmp_path, monkeypatch):
    filled(2).save("mine", tmp_path)
    before = sorted(p.read_bytes() for p in (tmp_path / "mine").rglob("*.jpg"))
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(capture.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        filled(3).save("mine", tmp_path, overwrite=True)
    assert sorted(p.read_bytes() for p in (tmp_path / "mine").rglob("*.jpg")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


# --- recording from live video -----------------------------------------------------------------


def frame(value: int, w: int = 640, h: int = 480) -> np.ndarray:
    a = np.full((h, w, 3), value, dtype=np.uint8)
    a[:, : w // 4] = 255 - value  # a bar on the left, so a flipped or cropped frame would show
    return a


def test_a_recording_keeps_one_frame_per_interval_after_the_delay_then_ends_by_itself():
    rec = capture.FrameRecorder(interval_s=0.3, delay_s=1.0)
    cs = CaptureSet(["1", "2"])
    assert not rec.offer(frame(1), now=0.0)  # nothing runs: nothing kept
    assert rec.collect_into(cs) is None  # and nothing to report
    rec.start("2", 3, now=10.0)
    assert rec.status(now=10.5).waiting and rec.status(now=10.5).running
    assert not rec.offer(frame(2), now=10.9)  # still in the delay
    assert rec.offer(frame(110), now=11.0)
    assert rec.collect_into(cs) is None and cs.counts()["2"] == 1  # moved, still running: no report yet
    kept = [t for t in (11.1, 11.29, 11.3, 11.5, 11.61, 11.9, 12.5) if rec.offer(frame(int(t * 10) % 256), now=t)]
    assert kept == [11.3, 11.61]  # one per 0.3 s, and three were asked for
    assert not rec.status(now=13.0).running
    done = rec.collect_into(cs)
    assert done is not None and (done.class_name, done.kept, done.asked, done.added, done.refused) == ("2", 3, 3, 3, ())
    assert [int(np.asarray(Image.open(io.BytesIO(i.data)))[0, -1, 0]) for i in cs.images["2"]] == [110, 113, 116]
    assert rec.collect_into(cs) is None  # reported once


def test_kept_frames_are_downscaled_copies_and_stop_keeps_what_was_recorded():
    rec = capture.FrameRecorder(interval_s=0.1, delay_s=0.0)
    rec.start("a", 10, now=0.0)
    big = frame(50, 1280, 720)
    assert rec.offer(big, now=0.0)
    big[:] = 0  # the video reuses its buffer: the kept frame must not change
    rec.stop()
    assert not rec.status().running and not rec.offer(frame(60), now=1.0)
    cs = CaptureSet(["a", "b"])
    done = rec.collect_into(cs)
    assert (done.kept, done.asked, done.added) == (1, 10, 1)  # stopped after 1 of 10
    kept = np.asarray(Image.open(io.BytesIO(cs.images["a"][0].data)))
    assert kept.shape == (288, capture.STORED_SIDE, 3)
    assert abs(kept[:, -1].mean() - 50) < 2 and abs(kept[:, 0].mean() - 205) < 2


def test_a_recording_started_before_the_last_ones_frames_were_collected_counts_only_its_own():
    rec = capture.FrameRecorder(interval_s=0.1, delay_s=0.0)
    cs = CaptureSet(["a", "b"])
    rec.start("a", 5, now=0.0)
    assert rec.offer(frame(10), now=0.0) and rec.offer(frame(20), now=0.1)
    rec.start("b", 2, now=1.0)  # the page did not collect "a"'s two frames in between
    assert rec.offer(frame(30), now=1.0) and rec.offer(frame(40), now=1.1)
    done = rec.collect_into(cs)
    assert (done.class_name, done.kept, done.asked, done.added) == ("b", 2, 2, 2)  # not 4: "Added 2 photos to class b"
    assert cs.counts() == {"a": 2, "b": 2}  # the earlier frames were not lost either


def test_a_full_class_ends_the_recording_and_says_why_once():
    rec = capture.FrameRecorder(interval_s=0.1, delay_s=0.0)
    cs = CaptureSet(["a", "b"])
    first = cs.add_frame("a", frame(9))
    cs.images["a"] += [first] * (capture.MAX_PER_CLASS - 3)  # room for two more
    rec.start("a", 5, now=0.0)
    for t in range(4):
        rec.offer(frame(30 + t), now=t * 0.1)
    done = rec.collect_into(cs)
    assert done is not None and not rec.status().running
    assert (done.kept, done.added) == (4, 2) and len(done.refused) == 1 and "already has 200 photos" in done.refused[0]
    assert cs.counts()["a"] == capture.MAX_PER_CLASS


def test_a_page_that_sees_the_recording_end_has_every_frame():
    # The video thread keeps the last frame (a slow resize) while the page collects in a loop: the
    # end is reported only with every kept frame moved, never before the last one arrives.
    for attempt in range(20):
        rec = capture.FrameRecorder(interval_s=1e-6, delay_s=0.0)
        cs = CaptureSet(["a", "b"])
        rec.start("a", 3)
        reports = []

        def page() -> None:
            deadline = time.monotonic() + 10  # (a regression fails the test rather than spinning on)
            while not reports and time.monotonic() < deadline:
                if (done := rec.collect_into(cs)) is not None:
                    reports.append((done.added, cs.counts()["a"]))

        worker = threading.Thread(target=page, daemon=True)
        worker.start()
        big = frame(80, 1920, 1080)
        while rec.status().running:
            rec.offer(big)
        worker.join(10)
        assert reports == [(3, 3)], f"attempt {attempt}: {reports}"


def test_a_recording_asks_for_a_frame_at_least():
    with pytest.raises(CaptureError, match="at least one frame"):
        capture.FrameRecorder().start("a", 0)
    with pytest.raises(ValueError):
        capture.FrameRecorder(interval_s=0)


def test_a_recorded_frame_is_stored_like_a_photo():
    cs = CaptureSet(["a", "b"])
    item = cs.add_frame("a", frame(70))
    stored = Image.open(io.BytesIO(item.data))
    assert stored.format == "JPEG" and stored.size == (capture.STORED_SIDE, 384)  # bounded, as photos are
    same = np.asarray(Image.fromarray(frame(70)).resize(stored.size, Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(np.asarray(stored).astype(int) - same).mean() < 2  # the same picture
    assert item.thumbnail.shape == (capture.THUMB_SIDE, capture.THUMB_SIDE, 3)
    with pytest.raises(CaptureError, match="no class 'c'"):
        cs.add_frame("c", frame(70))
    with pytest.raises(CaptureError, match="not an RGB video frame"):
        cs.add_frame("a", np.zeros((480, 640), np.uint8))
    with pytest.raises(CaptureError, match="at least 32×32"):
        cs.add_frame("a", np.zeros((20, 640, 3), np.uint8))
    assert cs.room("a") == capture.MAX_PER_CLASS - 1 and cs.room("zzz") == 0
