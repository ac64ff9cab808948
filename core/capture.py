"""A data set in the making: photos the user takes or uploads per class, kept in memory until saved.

The Data page keeps one :class:`CaptureSet` per browser session, so captures belong to that session
only until the user saves them. Saving writes the usual image-folder layout (``ROOT/<class>/*.jpg``)
into the data directory, atomically, where :func:`core.data.load_dataset` finds it like any other set.

Every photo is checked on the way in by :func:`core.preprocess.load_image` (the decoder prediction
uses) and stored upright, as RGB, downscaled to at most :data:`STORED_SIDE` pixels: large enough for
every input size a net can have, small enough that a session's captures stay bounded in memory.

A :class:`FrameRecorder` takes photos from a live video instead: a burst of frames of one class, a
few a second, while the user moves the hand — many varied photos for a few seconds' work.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.data import DatasetError, sanitize_class_name, user_set_path
from core.preprocess import file_label, load_image, prepare_image

DEFAULT_CLASSES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5")  # finger counts: a SIGNS net keeps its head
MAX_CLASSES = 20
MAX_PER_CLASS = 200
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # of stored (re-encoded) images, per session
MIN_SIDE = 32  # smaller than this a photo holds no hand worth learning from
STORED_SIDE = 512  # the longest side kept: nets take at most 512 px
THUMB_SIDE = 96
JPEG_QUALITY = 92
# A recording keeps a frame this often: the hand moves between two, so they differ as photos do,
# and thirty take about ten seconds.
RECORD_INTERVAL_S = 0.3
RECORD_DELAY_S = 1.0  # from the click to the first frame: time to bring the hand back into view


class CaptureError(ValueError):
    """A capture that cannot be taken (a limit reached, an unknown class); the message says what to do."""


@dataclass(frozen=True)
class CapturedImage:
    """One stored photo: its JPEG bytes (upright RGB, ≤ STORED_SIDE px) and a square thumbnail."""

    id: str
    name: str
    data: bytes
    thumbnail: np.ndarray  # THUMB_SIDE×THUMB_SIDE×3 uint8, centre crop as the net will see it


@dataclass
class CaptureSet:
    """Photos per class, in memory; :meth:`save` turns them into an image folder on disk."""

    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    images: dict[str, list[CapturedImage]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.set_classes(self.classes)

    # --- classes ---------------------------------------------------------------------------------

    def set_classes(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """Rename/replace the class list. Images of a class that stays are kept; those of a class
        that is dropped are discarded, so the page asks before dropping a class that has images.

        Raises :class:`CaptureError` for fewer than 2 or more than :data:`MAX_CLASSES` classes, a
        duplicate, or a name that cannot be a folder name.
        """
        clean: list[str] = []
        for raw in names:
            raw = str(raw).strip()
            if not raw:
                continue
            try:
                name = sanitize_class_name(raw)
            except DatasetError as e:
                raise CaptureError(str(e)) from None
            if name in clean:
                raise CaptureError(f"class {name!r} is listed twice; give every class its own name")
            clean.append(name)
        if not 2 <= len(clean) <= MAX_CLASSES:
            raise CaptureError(f"a data set needs 2–{MAX_CLASSES} classes; got {len(clean)}")
        self.classes = clean
        self.images = {c: list(self.images.get(c, [])) for c in clean}
        return clean

    def dropped_by(self, names: list[str]) -> list[str]:
        """Classes with images that :meth:`set_classes` with ``names`` would discard."""
        keep = {str(n).strip() for n in names}
        return [c for c in self.classes if self.images.get(c) and c not in keep]

    # --- images ----------------------------------------------------------------------------------

    def add(self, class_name: str, source: bytes, name: str = "photo") -> CapturedImage:
        """Check and store one photo under ``class_name``.

        Raises :class:`core.preprocess.ImageError` for a file that is not a usable image, and
        :class:`CaptureError` for an unknown class, a photo under :data:`MIN_SIDE` pixels, or a
        full class or session.
        """
        self._check_room(class_name)
        return self._store(class_name, load_image(source, name, min_side=STORED_SIDE), file_label(name))

    def add_frame(self, class_name: str, frame: np.ndarray, name: str = "video frame") -> CapturedImage:
        """Store one video frame (an H×W×3 uint8 RGB array, as :class:`FrameRecorder` keeps them)
        under ``class_name``, as :meth:`add` stores a photo; the same :class:`CaptureError` cases."""
        self._check_room(class_name)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise CaptureError(f"{name} is not an RGB video frame (shape {frame.shape}, {frame.dtype})")
        return self._store(class_name, Image.fromarray(frame), name)

    def _check_room(self, class_name: str) -> None:
        if class_name not in self.images:
            raise CaptureError(f"no class {class_name!r}; the classes are {', '.join(self.classes)}")
        if len(self.images[class_name]) >= MAX_PER_CLASS:
            raise CaptureError(f"class {class_name!r} already has {MAX_PER_CLASS} photos, the most a class can hold")

    def _store(self, class_name: str, image: Image.Image, name: str) -> CapturedImage:
        """Downscale, JPEG-encode and keep an upright RGB image; the size and session limits."""
        if min(image.size) < MIN_SIDE:
            w, h = image.size
            raise CaptureError(f"{name} is only {w}×{h} pixels; photos must be at least {MIN_SIDE}×{MIN_SIDE}.")
        image.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=JPEG_QUALITY)
        data = buf.getvalue()
        if self.total_bytes + len(data) > MAX_TOTAL_BYTES:
            raise CaptureError(
                f"this session's photos would pass {MAX_TOTAL_BYTES // 2**20} MB; save the set, or delete some photos"
            )
        item = CapturedImage(uuid.uuid4().hex[:12], name, data, prepare_image(image, THUMB_SIDE))
        self.images[class_name].append(item)
        return item

    def room(self, class_name: str) -> int:
        """How many more photos ``class_name`` can take (0 for an unknown class)."""
        return MAX_PER_CLASS - len(self.images[class_name]) if class_name in self.images else 0

    def remove(self, class_name: str, image_id: str) -> bool:
        """Delete one photo; False if it was not there (already deleted in another rerun)."""
        items = self.images.get(class_name, [])
        kept = [i for i in items if i.id != image_id]
        self.images[class_name] = kept
        return len(kept) != len(items)

    def clear(self) -> None:
        self.images = {c: [] for c in self.classes}

    def counts(self) -> dict[str, int]:
        return {c: len(self.images[c]) for c in self.classes}

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    @property
    def total_bytes(self) -> int:
        return sum(len(i.data) for items in self.images.values() for i in items)

    def problems(self) -> list[str]:
        """What stops the set from being saved and trained on (empty when it is ready)."""
        empty = [repr(c) for c, n in self.counts().items() if n == 0]
        out = [f"class {empty[0]} has no photo"] if len(empty) == 1 else (
            [f"classes {', '.join(empty)} have no photo"] if empty else [])
        if not out and self.total < 2 * len(self.classes):
            out.append("take at least two photos per class (one can go to the test split)")
        return out

    # --- saving ----------------------------------------------------------------------------------

    def save(self, name: str, data_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
        """Write the photos as ``<data dir>/<name>/<class>/<n>.jpg`` and return that folder.

        The folder is written beside its target under a temporary name and renamed into place, so a
        failure leaves nothing half-written and never damages a set saved earlier. An existing set
        of that name is replaced only with ``overwrite``. Raises :class:`CaptureError` when the set
        is not ready (see :meth:`problems`) and :class:`core.data.DatasetError` for a bad name.
        """
        if problems := self.problems():
            raise CaptureError("not saved: " + "; ".join(problems))
        target = user_set_path(name, data_dir)
        if target.exists() and not overwrite:
            raise CaptureError(f"a data set called {target.name!r} exists already; choose another name or replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for c in self.classes:
                folder = tmp / c
                folder.mkdir()
                for n, item in enumerate(self.images[c]):
                    with open(folder / f"{n:04d}.jpg", "wb") as f:
                        f.write(item.data)
                        f.flush()
                        os.fsync(f.fileno())
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the set from other users of the data directory
            if target.exists():
                old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:6]}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


@dataclass(frozen=True)
class Recording:
    """Where a :class:`FrameRecorder` stands: the running recording, or the last one."""

    class_name: str | None  # the class it records (or recorded); None before the first recording
    running: bool  # frames are being kept (the delay before the first one included)
    kept: int  # frames kept so far
    asked: int  # frames asked for: fewer were kept if it was stopped
    waiting: bool  # running, but still in the delay before the first frame
    added: int = 0  # kept frames that joined the set (see FrameRecorder.collect_into)
    refused: tuple[str, ...] = ()  # why the others did not, each reason once


class FrameRecorder:
    """Keeps frames of a live video for a data set: after ``delay_s``, one every ``interval_s``,
    until ``count`` frames of the class are kept or :meth:`stop` is called.

    Thread-safe: the video's thread offers every frame (:meth:`offer`); the page starts and stops
    recordings and moves the kept frames into the session's :class:`CaptureSet` with
    :meth:`collect_into`. Frames are kept downscaled to at most :data:`STORED_SIDE` pixels, as the
    set stores photos, so frames the page has not collected yet hold little memory.
    """

    def __init__(self, interval_s: float = RECORD_INTERVAL_S, delay_s: float = RECORD_DELAY_S) -> None:
        if interval_s <= 0 or delay_s < 0:
            raise ValueError(f"interval_s must be > 0 and delay_s ≥ 0; got {interval_s} and {delay_s}")
        self.interval_s, self.delay_s = interval_s, delay_s
        self._lock = threading.Lock()
        self._class: str | None = None
        self._running = False
        self._kept = self._asked = self._added = 0
        self._refused: list[str] = []
        self._reported = True  # the last recording's end was handed to the page (there was none)
        self._next = 0.0  # when the next frame may be kept
        self._serial = 0  # which recording is the current one
        self._frames: list[tuple[int, str, np.ndarray]] = []  # kept, not yet collected: (recording, class, image)

    def start(self, class_name: str, count: int, now: float | None = None) -> None:
        """Record ``count`` frames of ``class_name`` (a running recording ends first; frames it kept
        that were not collected yet still join their class, but count as its, not this one's)."""
        if count < 1:
            raise CaptureError(f"a recording needs at least one frame; asked for {count}")
        now = time.monotonic() if now is None else now
        with self._lock:
            self._serial += 1
            self._class, self._running, self._reported = class_name, True, False
            self._kept, self._asked, self._added, self._refused = 0, count, 0, []
            self._next = now + self.delay_s

    def stop(self) -> None:
        """End the recording now; the frames kept so far are still collected."""
        with self._lock:
            self._running = False

    def status(self, now: float | None = None) -> Recording:
        """The running recording's progress, or the last one's outcome."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._status(now)

    def _status(self, now: float) -> Recording:
        waiting = self._running and self._kept == 0 and now < self._next
        return Recording(self._class, self._running, self._kept, self._asked, waiting, self._added,
                         tuple(self._refused))

    def offer(self, frame: np.ndarray, now: float | None = None) -> bool:
        """A frame of the video (H×W×3 uint8 RGB); kept when a recording runs and its time has come.
        Returns whether it was kept. Called for every frame, so it returns at once when not keeping."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._running or now < self._next:
                return False
            # Kept, counted and handed over in one step: a page that sees the recording ended has
            # every frame it kept. (The resize holds the lock a few ms, once per kept frame.)
            image = Image.fromarray(frame)
            image.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.LANCZOS)
            self._frames.append((self._serial, self._class, np.asarray(image)))  # a copy: the video may reuse its buffer
            self._kept += 1
            self._next = now + self.interval_s
            self._running = self._kept < self._asked
            return True

    def collect_into(self, cs: CaptureSet) -> Recording | None:
        """Move the frames kept so far into ``cs`` (as :meth:`CaptureSet.add_frame`). Returns the
        recording's outcome once, on the call that finds it ended with every frame moved; else None.

        A refused frame (a full class or session) ends the recording: the frames after it would
        be refused too. Nothing here touches the page, so a rerun the user asks for cannot cut the
        move in two and lose frames.
        """
        with self._lock:
            frames, self._frames, serial = self._frames, [], self._serial
        added, refused = 0, []
        for recording, class_name, frame in frames:
            try:
                cs.add_frame(class_name, frame)
                added += recording == serial
            except CaptureError as e:
                refused.append(str(e))
        with self._lock:
            # (a recording started meanwhile reports its own frames only)
            self._added += added if serial == self._serial else 0
            self._refused += [r for r in dict.fromkeys(refused) if r not in self._refused]
            if refused:
                self._running = False
            if self._running or self._frames or self._reported:
                return None
            self._reported = True
            return self._status(time.monotonic())
