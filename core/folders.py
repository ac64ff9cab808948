"""Image folders: a data set of photos in ordinary folders, read and written.

Two layouts are read, the usual PyTorch ones::

    ROOT/<class>/*.jpg            split into train/test here: seeded, stratified (default 20 % test)
    ROOT/train/<class>/*.jpg      split as given; test classes must be among train's
    ROOT/test/<class>/*.jpg

Images are ``.jpg .jpeg .png .gif .bmp .webp .tif .tiff`` (any case). Every one is made into an
array by ``core.preprocess.load_photo``, the function that prepares a photo for prediction, so a
net sees its training photos and the photos it is asked about the same way.

What is refused and what is skipped (the rules a stranger's folder meets):

* Refused with :class:`~core.data.DatasetError` naming the file or folder and what to do: a root
  that is missing or not a folder, no class folders, fewer than 2 classes, a class folder with no
  usable image, a class folder whose name has a control character, a path separator, a leading
  or trailing space or over 64 characters (such names are refused, not rewritten, so a class is
  never renamed behind the user's back), more than ``MAX_IMAGES`` images.
* Skipped, and listed one line each in ``Dataset.skipped``: files that are not images by name,
  image files that do not decode (the line is the decoder's message), files over
  ``MAX_FILE_BYTES``, hidden files and folders (``.name``), folders inside class folders, other
  folders beside ``train/`` and ``test/``, and every link that leads outside ROOT — such a link is
  never read. Image files lying directly in ROOT (outside any class folder) are listed too; other
  files there (README, LICENSE) are the folder's documentation and are ignored.

Images of each split are ordered by file name, then class, so a folder written by
:func:`export_image_folder` loads back in its original order.
"""
from __future__ import annotations

import math
import os
import shutil
import stat
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.data import (
    DEFAULT_IMAGE_SIZE,
    Dataset,
    DatasetError,
    DatasetPeek,
    _fsync_dir,
    _name_problem,
    _printable,
)
from core.preprocess import ImageError, load_photo

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
MAX_IMAGES = 20_000  # per set, train and test together
MAX_FILE_BYTES = 50 * 2**20  # one image file; a 12-megapixel JPEG is about 5 MB
MAX_ARRAY_BYTES = 2 * 2**30  # the decoded set in memory
MAX_ZIP_BYTES = 1 * 2**30
DEFAULT_TEST_FRACTION = 0.2
IMAGE_SIZES = (8, 512)  # the sides load_h5_split accepts, so every folder set can be exported

_CLASS_RULE = "letters, digits, spaces, '-' or '_', at most 64 characters"


@dataclass
class _Scan:
    """What a folder holds, by name only: the candidate image files of each class and split."""

    root: Path  # absolute, as given
    layout: str  # "classes" (split here) or "split" (train/ and test/ given)
    classes: tuple[str, ...]
    # split ("all" for the classes layout, else "train"/"test") → class → sorted file names
    files: dict[str, dict[str, list[str]]]
    skipped: list[str] = field(default_factory=list)
    counted: int = 0  # image files listed so far, to stop listing a huge folder early

    def folder(self, split: str, cls: str) -> str:
        """A class folder relative to ROOT, as messages name it."""
        return cls if split == "all" else f"{split}/{cls}"

    @property
    def n_files(self) -> int:
        return sum(len(names) for by_class in self.files.values() for names in by_class.values())


# --- reading -----------------------------------------------------------------------------------


def load_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    key: str | None = None,
    title: str | None = None,
) -> Dataset:
    """Load an image folder (either layout, see the module docstring) as a :class:`Dataset`.

    Every image is decoded and made ``image_size``×``image_size``×3 uint8 by
    ``core.preprocess.load_photo`` (EXIF orientation, colour modes, centre crop, antialiased
    resize). Classes are the class folders' names in sorted order; use
    :meth:`Dataset.with_class_order` for another. For the ``ROOT/<class>/`` layout the test share
    is ``test_fraction`` of each class, chosen by ``seed`` from the file names in sorted order,
    so the same files give the same split however the disk lists them: a class with 3 or more
    images gets at least one test image, and no class gives all its images to the test split.

    ``key`` and ``title`` default to the folder's name. Files that were left out are listed in
    ``Dataset.skipped``. Raises :class:`DatasetError` for a folder that cannot be used.
    """
    scan = _scan(root)
    _check_split_args(test_fraction, seed)
    _check_image_size(image_size)
    need = scan.n_files * image_size * image_size * 3
    if need > MAX_ARRAY_BYTES:
        raise DatasetError(
            f"{_p(scan.root)}: {scan.n_files} images at {image_size}×{image_size} would take {need / 2**30:.1f} GB "
            f"of memory (the limit is {MAX_ARRAY_BYTES / 2**30:.0f} GB) — use a smaller image size or fewer images"
        )
    skipped = list(scan.skipped)
    arrays: dict[tuple[str, str, str], np.ndarray] = {}  # (split, class, name) → image
    decoded: dict[str, dict[str, list[str]]] = {}
    for split, by_class in scan.files.items():
        decoded[split] = {}
        for cls, names in by_class.items():
            folder = scan.root / scan.folder(split, cls)
            ok = []
            for name in names:
                rel = f"{scan.folder(split, cls)}/{name}"
                try:
                    arrays[split, cls, name] = load_photo(_read_file(folder / name, rel), image_size, name=rel)
                except ImageError as e:
                    skipped.append(str(e))
                    continue
                ok.append(name)
            decoded[split][cls] = ok
    for split, by_class in decoded.items():
        if split == "test":
            continue  # a class may have no test photos; the split as a whole is checked below
        for cls, names in by_class.items():
            if not names:
                raise DatasetError(
                    f"{_p(scan.root)}: class folder {_q(scan.folder(split, cls))} has no usable image "
                    f"({len(scan.files[split][cls])} image files, none could be read) — "
                    f"add readable photos (see the skipped files: {_first_lines(skipped)})"
                )
    if scan.layout == "classes":
        train_names, test_names = _split(decoded["all"], scan.classes, test_fraction, seed, scan.root)
        sources = {"train": ("all", train_names), "test": ("all", test_names)}
    else:
        if not any(decoded["test"].values()):
            raise DatasetError(
                f"{_p(scan.root)}: test/ has no usable image — add photos to test/<class>/ folders "
                f"(see the skipped files: {_first_lines(skipped)})"
            )
        sources = {s: (s, decoded[s]) for s in ("train", "test")}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (from_split, by_class) in sources.items():
        order = _ordered(by_class, scan.classes)
        x = np.empty((len(order), image_size, image_size, 3), dtype=np.uint8)
        for i, (name, cls) in enumerate(order):
            x[i] = arrays[from_split, cls, name]
        y = np.array([scan.classes.index(cls) for _, cls in order], dtype=np.int64)
        out[split] = (x, y)
    name = scan.root.name
    return Dataset(
        key=key or name,
        title=title or name,
        classes=scan.classes,
        x_train=out["train"][0],
        y_train=out["train"][1],
        x_test=out["test"][0],
        y_test=out["test"][1],
        source=str(scan.root),
        kind="folder",
        skipped=tuple(skipped),
        split_made=scan.layout == "classes",
    )


def peek_image_folder(
    root: str | os.PathLike,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    key: str | None = None,
    title: str | None = None,
) -> DatasetPeek:
    """What :func:`load_image_folder` would load, from file names alone (nothing is decoded).

    The counts are the split the loader makes when every image file decodes. Raises
    :class:`DatasetError` for everything the loader refuses without decoding.
    """
    scan = _scan(root)
    _check_split_args(test_fraction, seed)
    if scan.layout == "classes":
        train, test = _split(scan.files["all"], scan.classes, test_fraction, seed, scan.root)
        n_train, n_test = (sum(len(v) for v in part.values()) for part in (train, test))
    else:
        n_train, n_test = (sum(len(v) for v in scan.files[s].values()) for s in ("train", "test"))
        if n_test == 0:
            raise DatasetError(f"{_p(scan.root)}: test/ holds no image file — add photos to test/<class>/ folders")
    name = scan.root.name
    return DatasetPeek(key or name, title or name, scan.classes, n_train, n_test, str(scan.root),
                       synthetic=False, kind="folder", skipped=tuple(scan.skipped), path=scan.root)


def has_class_folders(root: str | os.PathLike) -> bool:
    """Whether ``root`` has a sub-folder that is not hidden (cheap: one directory listing)."""
    try:
        with os.scandir(root) as it:
            return any(not e.name.startswith(".") and e.is_dir() for e in it)
    except OSError:
        return False


def _scan(root: str | os.PathLike) -> _Scan:
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.exists():
        raise DatasetError(f"{_p(root)}: no such folder — give the folder that holds one sub-folder of images per class")
    if not root.is_dir():
        hint = " — unzip it first and give the folder" if root.suffix.lower() == ".zip" else ""
        raise DatasetError(f"{_p(root)}: is a file, not a folder{hint}; an image folder holds one sub-folder per class")
    real = root.resolve()
    scan = _Scan(root, "classes", (), {})
    top = _list(root, real, "", scan)
    if "train" in top or "test" in top:
        scan.layout = "split"
        for other in sorted(set(top) - {"train", "test"}):
            scan.skipped.append(f"{_q(other + '/')}: only train/ and test/ are read in this layout — skipped")
        for split in ("train", "test"):
            if split not in top:
                there = "train" if split == "test" else "test"
                raise DatasetError(
                    f"{_p(root)}: has {there}/ but no {split}/ — add {split}/<class>/ folders of images, or put the "
                    "class folders directly in the folder to have TorchLab split them"
                )
        by_split = {s: _list(top[s], real, s + "/", scan) for s in ("train", "test")}
        for s in ("train", "test"):
            _check_class_names(root, by_split[s], s + "/")
        if not by_split["train"]:
            raise DatasetError(f"{_p(root)}: train/ has no class folders — put each class's images in train/<class>/")
        strangers = sorted(set(by_split["test"]) - set(by_split["train"]))
        if strangers:
            raise DatasetError(
                f"{_p(root)}: class folder {_q('test/' + strangers[0])} has no train/{_printable(strangers[0])}/ to match "
                f"— every test class needs training images (train has {_names(sorted(by_split['train']))})"
            )
        scan.classes = tuple(sorted(by_split["train"]))
        for s in ("train", "test"):
            scan.files[s] = {c: _list_images(by_split[s][c], real, f"{s}/{c}/", scan) for c in sorted(by_split[s])}
    else:
        _check_class_names(root, top, "")
        if not top:
            loose = any(s.startswith('"') and "not in a class folder" in s for s in scan.skipped)
            hint = " (the images lie directly in it)" if loose else ""
            raise DatasetError(
                f"{_p(root)}: has no class folders{hint} — put each class's images in its own sub-folder, "
                "e.g. ROOT/rock/1.jpg, ROOT/paper/1.jpg (or ROOT/train/<class>/ and ROOT/test/<class>/)"
            )
        scan.classes = tuple(sorted(top))
        scan.files["all"] = {c: _list_images(top[c], real, c + "/", scan) for c in scan.classes}
    for split, by_class in scan.files.items():
        if split == "test":
            continue
        for cls, names in by_class.items():
            if not names:
                raise DatasetError(
                    f"{_p(root)}: class folder {_q(scan.folder(split, cls))} holds no image file — add "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))} photos to it, or remove the folder"
                )
    if len(scan.classes) < 2:
        raise DatasetError(
            f"{_p(root)}: has only one class ({_names(scan.classes)}) — a classifier needs at least 2 class folders"
        )
    return scan


def _list(folder: Path, real_root: Path, prefix: str, scan: _Scan) -> dict[str, Path]:
    """The usable sub-folders of a ROOT-level folder, by name; everything else reported or ignored."""
    found: dict[str, Path] = {}
    for entry in _entries(folder, prefix):
        name, rel = entry.name, prefix + entry.name
        if entry.is_symlink() and not _inside(entry.path, real_root):
            scan.skipped.append(f"{_q(rel)}: a link leading outside the folder — not followed, skipped")
            continue
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:
            is_dir = is_file = False
        if is_dir:
            if name.startswith("."):
                scan.skipped.append(f"{_q(rel + '/')}: a hidden folder — skipped")
            else:
                found[name] = Path(entry.path)
        elif is_file and _is_image_name(name):
            scan.skipped.append(f"{_q(rel)}: not in a class folder — skipped (move it into the folder of its class)")
    return found


def _list_images(folder: Path, real_root: Path, prefix: str, scan: _Scan) -> list[str]:
    """The image files of one class folder, sorted by name; every other entry reported."""
    names = []
    others = 0
    for entry in _entries(folder, prefix):
        name, rel = entry.name, prefix + entry.name
        if entry.is_symlink() and not _inside(entry.path, real_root):
            scan.skipped.append(f"{_q(rel)}: a link leading outside the folder — not followed, skipped")
        elif name.startswith("."):
            scan.skipped.append(f"{_q(rel)}: a hidden file — skipped")
        elif _is_dir(entry):
            scan.skipped.append(
                f"{_q(rel + '/')}: a folder inside a class folder — skipped (images must sit directly in the class folder)"
            )
        elif not _is_file(entry):
            scan.skipped.append(f"{_q(rel)}: not a regular file — skipped")
        elif not _is_image_name(name):
            scan.skipped.append(
                f"{_q(rel)}: not an image file by its name — skipped (use {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        else:
            names.append(name)
            scan.counted += 1
            if scan.counted > MAX_IMAGES:
                raise DatasetError(
                    f"{_p(scan.root)}: holds more than {MAX_IMAGES:,} images, the most a set may have — use fewer"
                )
            continue
        others += 1
        if others > MAX_IMAGES:
            raise DatasetError(
                f"{_p(scan.root)}: {_q(prefix)} holds more than {MAX_IMAGES:,} files that are not images — "
                "keep only the photos in class folders"
            )
    return sorted(names)


def _entries(folder: Path, prefix: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise DatasetError(f"{_p(folder)}: could not be listed ({e.strerror or e}) — check its permissions") from None


def _check_class_names(root: Path, classes: dict[str, Path], prefix: str) -> None:
    for name in sorted(classes):
        problem = _name_problem(name)
        if problem:
            raise DatasetError(
                f"{_p(root)}: the class folder {_q(prefix + name)} {problem} — rename the folder ({_CLASS_RULE})"
            )


def _inside(path: str, real_root: Path) -> bool:
    try:
        target = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return False
    return target == real_root or target.is_relative_to(real_root)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a link (already known to stay inside ROOT)
    except OSError:
        return False


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _read_file(path: Path, rel: str) -> bytes:
    """A file's bytes, refusing anything over MAX_FILE_BYTES before reading it."""
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since the listing, opening it
        # returns at once (and the check below refuses it) instead of waiting for a writer forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"{_q(rel)}: not a regular file — skipped")
            size = st.st_size
            if size > MAX_FILE_BYTES:
                raise ImageError(
                    f"{_q(rel)} is {size / 2**20:.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MB an image file "
                    "may have — skipped (save it smaller)"
                )
            return f.read()
    except OSError as e:
        raise ImageError(f"{_q(rel)} could not be read ({e.strerror or e}) — skipped") from None


def _check_split_args(test_fraction: float, seed: int) -> None:
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test fraction must be between 0 and 1 (e.g. 0.2 for 20 %), got {test_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"split seed must be a whole number ≥ 0, got {seed!r}")


def _check_image_size(image_size: int) -> None:
    lo, hi = IMAGE_SIZES
    if not isinstance(image_size, (int, np.integer)) or not lo <= image_size <= hi:
        raise DatasetError(f"image size must be a whole number of pixels in {lo}–{hi} (e.g. 64), got {image_size!r}")


def _test_count(n: int, test_fraction: float) -> int:
    k = math.floor(test_fraction * n + 0.5)
    if n >= 3:
        k = max(k, 1)
    return max(0, min(k, n - 1))


def _split(
    by_class: dict[str, list[str]], classes: tuple[str, ...], test_fraction: float, seed: int, root: Path
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each class's sorted file names cut into train and test (see load_image_folder)."""
    counts = {c: _test_count(len(by_class[c]), test_fraction) for c in classes}
    if sum(counts.values()) == 0:
        # Tiny classes (1–2 photos) round to no test image; one from the biggest class keeps a test split.
        big = max(classes, key=lambda c: len(by_class[c]))  # max keeps the first of equals: sorted order
        if len(by_class[big]) < 2:
            raise DatasetError(
                f"{_p(root)}: every class has a single image, so none can be set aside for testing — "
                "add at least 3 images per class"
            )
        counts[big] = 1
    train, test = {}, {}
    for c in classes:
        names = by_class[c]
        # One generator per class, seeded by the class's name: adding a class leaves the others' split alone.
        rng = np.random.default_rng([int(seed), zlib.crc32(c.encode("utf-8"))])
        chosen = set(rng.permutation(len(names))[: counts[c]].tolist())
        test[c] = [n for i, n in enumerate(names) if i in chosen]
        train[c] = [n for i, n in enumerate(names) if i not in chosen]
    return train, test


def _ordered(by_class: dict[str, list[str]], classes: tuple[str, ...]) -> list[tuple[str, str]]:
    """A split's images as (file name, class) pairs, ordered by file name, then class."""
    return sorted((name, c) for c in classes for name in by_class.get(c, []))


def _q(rel: str) -> str:
    return f'"{_printable(rel)}"'


def _p(path: Path | str) -> str:
    """A path for a message: as given, but no control character from a folder's name gets through."""
    return _printable(str(path), limit=400)


def _names(names) -> str:
    return ", ".join(_printable(n) for n in names) or "none"


def _first_lines(lines: list[str], n: int = 3) -> str:
    shown = "; ".join(lines[:n])
    return shown + (f"; … {len(lines) - n} more" if len(lines) > n else "") if lines else "none"


# --- writing -----------------------------------------------------------------------------------


def export_image_folder(dataset: Dataset, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` as ``out_dir/train/<class>/<i>.png`` and ``out_dir/test/<class>/<i>.png``.

    Lossless PNGs of the arrays as they are, so :func:`load_image_folder` at the same image size
    gives back the same arrays, labels and split (classes in sorted order; see
    :meth:`Dataset.with_class_order`). ``<i>`` is the image's index in its split, zero-padded,
    which keeps the order too. The folder is written beside ``out_dir`` under a hidden temporary
    name, flushed to disk and renamed into place, so ``out_dir`` is either complete or absent.
    An existing ``out_dir`` is refused unless ``overwrite``; it is then replaced as a whole.
    """
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    for c in dataset.classes:
        problem = _name_problem(c)
        if problem:
            raise DatasetError(f"{dataset.title}: class name {_q(c)} {problem} — it cannot be a folder name ({_CLASS_RULE})")
    if len(set(dataset.classes)) != len(dataset.classes):
        raise DatasetError(f"{dataset.title}: class names repeat ({list(dataset.classes)}) — each needs its own folder")
    for split, x in (("train", dataset.x_train), ("test", dataset.x_test)):
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise DatasetError(f"{dataset.title}: {split} images must be N×H×W×3 uint8, found {x.shape} {x.dtype}")
    if out.exists() and not overwrite:
        raise DatasetError(f"{_p(out)}: already exists — choose another name, or replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        written: list[Path] = []
        for split, x, y in (("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)):
            folders = [tmp / split / c for c in dataset.classes]
            for folder in folders:
                folder.mkdir(parents=True)
            width = len(str(max(len(x) - 1, 0)))
            for i, (image, label) in enumerate(zip(x, y)):
                path = folders[int(label)] / f"{i:0{width}d}.png"
                Image.fromarray(image, "RGB").save(path, "PNG")
                written.append(path)
        _make_durable(tmp, written)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the set from other users of the data directory
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "set")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _make_durable(tree: Path, files: list[Path]) -> None:
    """Flush a freshly written folder tree to disk before it is renamed into place.

    One ``syncfs`` of the file system where Linux has it: an fsync per file costs about 4 ms
    each here (5 s for SIGNS' 1,200 images), a syncfs of the same tree about 25 ms.
    Elsewhere, every file and folder is fsynced.
    """
    if _syncfs(tree):
        return
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder, dirs, _ in os.walk(tree, topdown=False):
        _fsync_dir(Path(folder))


def _syncfs(path: Path) -> bool:
    """syncfs(2) on the file system holding ``path``; False where it is unavailable or fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        return False
    try:
        return getattr(libc, "syncfs", lambda _fd: -1)(fd) == 0
    finally:
        os.close(fd)


def zip_folder(path: str | os.PathLike) -> bytes:
    """The bytes of a zip of the folder ``path``, member names relative to it (``train/0/0001.png``).

    Hidden files and folders are left out, and so are links that lead outside the folder (links
    to folders are not followed at all). Raises :class:`DatasetError` for a missing folder or
    one over ``MAX_ZIP_BYTES``.
    """
    import io

    root = Path(os.path.abspath(Path(path).expanduser()))
    if not root.is_dir():
        raise DatasetError(f"{_p(root)}: no such folder to zip")
    real = root.resolve()
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w") as zf:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                full = os.path.join(folder, name)
                if name.startswith(".") or not _inside(full, real) or not os.path.isfile(full):
                    continue
                total += os.path.getsize(full)
                if total > MAX_ZIP_BYTES:
                    raise DatasetError(f"{_p(root)}: more than {MAX_ZIP_BYTES // 2**20} MB to zip — too large to download")
                arcname = os.path.relpath(full, root).replace(os.sep, "/")
                # PNG and JPEG are compressed already; deflating them again only costs time.
                kind = zipfile.ZIP_STORED if _is_image_name(name) else zipfile.ZIP_DEFLATED
                zf.write(full, arcname, compress_type=kind)
    return buf.getvalue()
