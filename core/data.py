"""Data sets: the registry of every set the app can use, and the tutorial's HDF5 files.

A data set is one of three kinds, all loaded into the same :class:`Dataset`:

* ``synthetic`` — the built-in finger counts, generated in memory (always there);
* ``hdf5`` — the tutorial's files: ``train_set_x`` (N×64×64×3 uint8), ``train_set_y`` (N
  integers), ``list_classes``; ``test_set_*`` likewise. SIGNS (``signs``) and cat/non-cat
  (``cats``) are built in; any other ``train_<stem>.h5`` + ``test_<stem>.h5`` pair in a folder is a
  set too;
* ``folder`` — an image folder of photos (``ROOT/<class>/*.jpg`` or ``ROOT/train|test/<class>/…``),
  read by :mod:`core.folders` through the same preprocessing that prediction uses.

Everything is looked for in the data directory: ``--data-dir`` / ``data_dir=`` if given, else
``$TORCHLAB_DATA_DIR``, else ``datasets/`` in the project. The built-in files may sit in a sub-folder
named after their set (``signs/``, ``catvnoncat/``) or at the top of the directory; every other
sub-folder holding an image folder or an HDF5 pair is a set keyed by the folder's name
(:func:`list_datasets`). :func:`load_dataset` also takes a path.

The image-folder functions live in :mod:`core.folders` and can be imported from here too.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DATA_DIR_ENV = "TORCHLAB_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "datasets"
SYNTHETIC_SEED = 0
SYNTHETIC_SIZES = (1200, 120)  # train, test
# Of generated hands trained on beside real photos, the share of 3s shown with index, middle and ring
# finger (SIGNS shows thumb, index and middle): measured, README "Robustness".
GENERATED_OTHER_THREES = 0.5
DEFAULT_IMAGE_SIZE = 64  # the tutorial's side; image folders are made at it unless told otherwise
KINDS = ("synthetic", "hdf5", "folder")

# Keys and folder names of the built-in sets; a user's set may not take them.
RESERVED_NAMES = frozenset({"signs", "cats", "catvnoncat", "synthetic"})
MAX_NAME_CHARS = 64


class DatasetError(ValueError):
    """A data set that cannot be used; the message names the file or folder, what was expected,
    what was found and what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    """A built-in data set the app can offer, before it is loaded."""

    key: str
    title: str
    folder: str
    stem: str
    synthetic: bool = False

    def files(self, data_dir: Path) -> tuple[Path, Path]:
        """Where the train and test files are (first candidate that exists, else the sub-folder one)."""
        found = []
        for split in ("train", "test"):
            name = f"{split}_{self.stem}.h5"
            candidates = [data_dir / self.folder / name, data_dir / name]
            found.append(next((p for p in candidates if p.exists()), candidates[0]))
        return found[0], found[1]


# The built-in sets only; every other set is found by list_datasets().
DATASETS: dict[str, DatasetInfo] = {
    "signs": DatasetInfo("signs", "SIGNS hand signs (0–5)", "signs", "signs"),
    "cats": DatasetInfo("cats", "cat / non-cat photos", "catvnoncat", "catvnoncat"),
    "synthetic": DatasetInfo("synthetic", "built-in synthetic finger counts (0–5)", "", "", synthetic=True),
}


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: uint8 N×H×W×3 images and int64 labels for both splits.

    ``kind`` is ``"synthetic"``, ``"hdf5"`` or ``"folder"``; ``skipped`` has one line per file
    of an image folder that was left out, naming the file and why.
    """

    key: str
    title: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    synthetic: bool = False
    kind: str = "hdf5"
    skipped: tuple[str, ...] = ()
    # The loader split the photos into train and test itself (an image folder of class folders),
    # rather than the data coming split.
    split_made: bool = False

    def __post_init__(self) -> None:
        # Constructors written before `kind` existed mark generated sets with synthetic=True only.
        if self.synthetic and self.kind == "hdf5":
            object.__setattr__(self, "kind", "synthetic")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        """One honest line: what the data is, how much, and where it came from."""
        if self.synthetic:
            kind = "SYNTHETIC (generated, not real photos)"
        elif self.kind == "folder":
            n = len(self.skipped)
            kind = "real photos (image folder), " + (f"{n} file{'s' if n != 1 else ''} skipped" if n else "no file skipped")
        else:
            kind = "real"
        return (
            f"{self.title}: {len(self.x_train)} train + {len(self.x_test)} test images, "
            f"{self.image_size}×{self.image_size} RGB, {self.num_classes} classes, {kind} — {self.source}"
        )

    def class_examples(self, per_class: int = 2) -> list[tuple[str, np.ndarray]]:
        """The first ``per_class`` training images of each class, class by class: how the data shows
        each class, for a user who wants to show the net theirs the same way."""
        return [(c, self.x_train[i]) for k, c in enumerate(self.classes)
                for i in np.flatnonzero(self.y_train == k)[:per_class]]

    def with_class_order(self, order: Sequence[str]) -> Dataset:
        """The same images with the classes in ``order`` and the labels renumbered to match.

        For fine-tuning, where a checkpoint's head fixes which output is which class. Raises
        :class:`DatasetError` unless ``order`` names exactly this set's classes, once each.
        """
        order = tuple(str(c) for c in order)
        if len(set(order)) != len(order) or set(order) != set(self.classes):
            missing = [c for c in self.classes if c not in order]
            extra = [c for c in order if c not in self.classes]
            dupes = sorted({c for c in order if order.count(c) > 1})
            details = "; ".join(
                part for part in (
                    f"missing {missing}" if missing else "",
                    f"not in the data set {extra}" if extra else "",
                    f"repeated {dupes}" if dupes else "",
                ) if part
            )
            raise DatasetError(
                f"{self.title}: the class order {list(order)} must name the data set's classes "
                f"{list(self.classes)} once each ({details})"
            )
        if order == self.classes:
            return self
        new_label = np.array([order.index(c) for c in self.classes], dtype=np.int64)
        return replace(self, classes=order, y_train=new_label[self.y_train], y_test=new_label[self.y_test])


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$TORCHLAB_DATA_DIR``, else ``datasets/``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR


@dataclass(frozen=True)
class DatasetPeek:
    """What a data set holds, found without decoding any image.

    For an image folder, ``n_train``/``n_test`` are the split :func:`load_dataset` will make if
    every image file decodes, and ``skipped`` lists the files already known to be left out (not
    images, links leading outside the folder, …). ``path`` is the folder the set lives in (the
    image folder itself, or the folder of the HDF5 files; None for the synthetic set). ``error``
    is set only on the entries ``list_datasets(include_broken=True)`` adds for folders that
    cannot be used; it says why.
    """

    key: str
    title: str
    classes: tuple[str, ...]
    n_train: int
    n_test: int
    source: str
    synthetic: bool
    kind: str = "hdf5"
    skipped: tuple[str, ...] = ()
    error: str | None = None
    path: Path | None = None

    @property
    def usable(self) -> bool:
        return self.error is None


# --- the registry ------------------------------------------------------------------------------


def list_datasets(data_dir: str | os.PathLike | None = None, *, include_broken: bool = False) -> list[DatasetPeek]:
    """Every data set in the data directory, read afresh on each call (nothing is cached).

    In order: SIGNS (``signs``) and cat/non-cat (``cats``) when their two files exist, then each
    other sub-folder that holds an image folder or a ``train_<stem>.h5`` + ``test_<stem>.h5`` pair,
    keyed by the folder's name (sorted), then the built-in synthetic set. Counting costs a
    directory listing per class folder or two HDF5 headers, no image is decoded.

    A folder that cannot be used (no class folders, one class, a hostile class name, an unreadable
    file, …) never breaks the listing: it is left out, or, with ``include_broken=True``, listed
    with ``error`` saying what is wrong, for a page to show. Hidden folders (``.name``) and the
    built-ins' own folders are not listed.
    """
    root = resolve_data_dir(data_dir)
    peeks: list[DatasetPeek] = []
    for key in ("signs", "cats"):
        info = DATASETS[key]
        train_path, test_path = info.files(root)
        present = [p for p in (train_path, test_path) if p.is_file()]
        try:
            if len(present) == 1:
                missing = test_path if present[0] == train_path else train_path
                raise DatasetError(f"{_path_text(missing)}: file not found — the set needs both of its files")
            if present:
                peeks.append(_peek_h5_pair(key, info.title, train_path, test_path))
        except DatasetError as e:
            if include_broken:
                source = f"{train_path}, {test_path}"
                peeks.append(_broken_peek(key, info.title, source, str(e), train_path.parent, kind="hdf5"))
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name) if root.is_dir() else []
    except OSError:
        entries = []  # an unreadable data directory holds nothing we can offer
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name in (DATASETS["signs"].folder, DATASETS["cats"].folder):
            continue
        try:
            if not entry.is_dir():  # follows a link: a linked folder is a set like any other
                continue
        except OSError:
            continue
        path = Path(entry.path)
        try:
            problem = _name_problem(name)
            if problem is None and name.lower() in RESERVED_NAMES:
                problem = f"is reserved for the built-in set {name.lower()!r}"
            if problem is not None:
                raise DatasetError(
                    f"{_path_text(path)}: the folder's name {problem} — rename the folder ({_NAME_RULE})"
                )
            peeks.append(peek_path(path, key=name))
        # The app lists a stranger's folders on every page render: whatever goes wrong inside one
        # (a permission error, a damaged HDF5 header, …) must only mark that folder as unusable.
        except Exception as e:  # noqa: BLE001
            if include_broken:
                shown = _printable(name)
                error = _printable(_error_text(e), 2000)
                peeks.append(_broken_peek(shown, shown, _path_text(path), error, path))
    peeks.append(_synthetic_peek())
    return peeks


def available_datasets(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Keys of the data sets that can be loaded now (``list_datasets``'s order; synthetic last)."""
    return [p.key for p in list_datasets(data_dir)]


def best_hand_dataset(data_dir: str | os.PathLike | None = None) -> str:
    """The real SIGNS set where its files exist, else the synthetic finger counts."""
    root = resolve_data_dir(data_dir)
    return "signs" if all(p.is_file() for p in DATASETS["signs"].files(root)) else "synthetic"


def peek_dataset(key: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> DatasetPeek:
    """Class names and sizes of a data set, cheaply (for menus, tables and checks).

    ``key`` is anything :func:`load_dataset` takes. Raises :class:`DatasetError` for a set that
    cannot be used.
    """
    key_str = os.fspath(key)
    if key_str == "synthetic":
        return _synthetic_peek()
    if key_str in DATASETS:
        info = DATASETS[key_str]
        train_path, test_path = info.files(resolve_data_dir(data_dir))
        return _peek_h5_pair(key_str, info.title, train_path, test_path)
    return peek_path(_user_set_location(key_str, data_dir), key=_user_key(key_str, data_dir))


def load_dataset(
    key: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
) -> Dataset:
    """Load and validate a data set.

    ``key`` is a built-in key (``signs``, ``cats``, ``synthetic``), a key from
    :func:`list_datasets` (a sub-folder of the data directory), or a path: an image folder, a
    folder holding an HDF5 pair, or a ``train_<stem>.h5`` file with its ``test_<stem>.h5`` beside
    it. A key found in the data directory wins over the same name as a path.

    ``image_size`` is the side image-folder photos are made at (default 64, the tutorial's);
    HDF5 and synthetic sets are loaded as they are stored.
    """
    key_str = os.fspath(key)
    if key_str == "synthetic":
        return _load_synthetic()
    if key_str in DATASETS:
        info = DATASETS[key_str]
        train_path, test_path = info.files(resolve_data_dir(data_dir))
        return _load_h5_pair(key_str, info.title, train_path, test_path)
    where = _user_set_location(key_str, data_dir)
    return load_path(where, key=_user_key(key_str, data_dir), image_size=image_size)


def peek_path(path: str | os.PathLike, *, key: str | None = None) -> DatasetPeek:
    """:func:`peek_dataset` for a path: an image folder, a folder with an HDF5 pair, or a train_*.h5 file."""
    from core.folders import peek_image_folder

    kind, where = _what_is_at(Path(path))
    key = key if key is not None else _path_key(Path(path))
    if kind == "folder":
        return peek_image_folder(where, key=key, title=key)
    train_path, test_path = where
    return _peek_h5_pair(key, key, train_path, test_path)


def load_path(path: str | os.PathLike, *, key: str | None = None, image_size: int | None = None) -> Dataset:
    """:func:`load_dataset` for a path: an image folder, a folder with an HDF5 pair, or a train_*.h5 file."""
    from core.folders import load_image_folder

    kind, where = _what_is_at(Path(path))
    key = key if key is not None else _path_key(Path(path))
    if kind == "folder":
        return load_image_folder(where, image_size=image_size or DEFAULT_IMAGE_SIZE, key=key, title=key)
    train_path, test_path = where
    return _load_h5_pair(key, key, train_path, test_path)


def _user_set_location(key: str, data_dir: str | os.PathLike | None) -> Path:
    """A registry key's folder in the data directory, else the key read as a path."""
    if _name_problem(key) is None and key.lower() not in RESERVED_NAMES:
        candidate = resolve_data_dir(data_dir) / key
        if candidate.is_dir():
            return candidate
    path = Path(key).expanduser()
    if os.sep in key or "/" in key or path.exists():
        if not path.exists():
            raise DatasetError(
                f"{_path_text(path)}: no such file or folder — give an image folder, a folder with a "
                "train_*.h5/test_*.h5 pair, or a train_*.h5 file"
            )
        return path
    known = ", ".join(available_datasets(data_dir))
    raise DatasetError(
        f"unknown data set {_printable(key)!r}; choose one of {known}, or give the path of an image "
        "folder or of a train_*.h5 file"
    )


def _user_key(key: str, data_dir: str | os.PathLike | None) -> str:
    """The key a set loaded by ``key`` carries: the key itself for a registry name, else its folder's name."""
    if _name_problem(key) is None and (resolve_data_dir(data_dir) / key).is_dir():
        return key
    return _path_key(Path(key).expanduser())


def _path_key(path: Path) -> str:
    path = Path(os.path.abspath(path))
    if path.is_file():
        stem = _h5_stem(path.name)
        return stem if stem else path.stem
    return path.name or str(path)


def _h5_stem(name: str) -> str | None:
    m = re.fullmatch(r"(?:train|test)_(.+)\.h5", name)
    return m.group(1) if m else None


def _what_is_at(path: Path) -> tuple[str, Any]:
    """("folder", root) for an image folder, ("hdf5", (train, test)) for an HDF5 pair.

    A folder that has class folders is an image folder even if it also holds .h5 files: the
    photos are what TorchLab saves, the HDF5 pair is an export of them.
    """
    if path.is_file():
        stem = _h5_stem(path.name)
        if stem is None:
            raise DatasetError(
                f"{_path_text(path)}: not a data set file — give a train_<name>.h5 file (with "
                "test_<name>.h5 beside it), or the folder that holds the images"
            )
        train_path, test_path = path.with_name(f"train_{stem}.h5"), path.with_name(f"test_{stem}.h5")
        for p in (train_path, test_path):
            if not p.is_file():
                raise DatasetError(
                    f"{_path_text(p)}: file not found — a set needs both train_{stem}.h5 and test_{stem}.h5 side by side"
                )
        return "hdf5", (train_path, test_path)
    if not path.is_dir():
        raise DatasetError(f"{_path_text(path)}: no such file or folder")
    from core.folders import has_class_folders

    if has_class_folders(path):
        return "folder", path
    pairs = _h5_pairs(path)
    if len(pairs) == 1:
        return "hdf5", pairs[0]
    if len(pairs) > 1:
        named = [p for p in pairs if p[0].name == f"train_{path.name}.h5"]
        if len(named) == 1:
            return "hdf5", named[0]
        raise DatasetError(
            f"{_path_text(path)}: holds {len(pairs)} HDF5 pairs ({', '.join(p[0].name for p in pairs)}) — "
            "give the train_*.h5 file you mean, or keep one pair per folder"
        )
    return "folder", path  # core.folders says what is missing, by name


def _h5_pairs(folder: Path) -> list[tuple[Path, Path]]:
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.startswith("train_") and e.name.endswith(".h5"))
    except OSError as e:
        raise DatasetError(f"{_path_text(folder)}: could not be listed ({e.strerror or e})") from None
    pairs = []
    for name in names:
        test = folder / ("test_" + name[len("train_"):])
        if test.is_file() and (folder / name).is_file():
            pairs.append((folder / name, test))
    return pairs


def _peek_h5_pair(key: str, title: str, train_path: Path, test_path: Path) -> DatasetPeek:
    try:
        with h5py.File(train_path, "r") as f, h5py.File(test_path, "r") as g:
            classes = tuple(_decode_class(c) for c in f["list_classes"][()])
            n_train, n_test = f["train_set_x"].shape[0], g["test_set_x"].shape[0]
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{train_path}: could not read its header ({e}) — is the file complete?") from None
    return DatasetPeek(key, title, classes, n_train, n_test, f"{train_path}, {test_path}", False, kind="hdf5",
                       path=Path(os.path.abspath(train_path)).parent)


def _load_h5_pair(key: str, title: str, train_path: Path, test_path: Path) -> Dataset:
    x_train, y_train, classes = load_h5_split(train_path, "train")
    x_test, y_test, test_classes = load_h5_split(test_path, "test")
    if test_classes != classes:
        raise DatasetError(f"{test_path}: list_classes {list(test_classes)} differ from the train file's {list(classes)}")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DatasetError(
            f"{test_path}: test_set_x images are {x_test.shape[1:]}, but the train file's are {x_train.shape[1:]}"
        )
    return Dataset(key, title, classes, x_train, y_train, x_test, y_test, source=f"{train_path}, {test_path}", kind="hdf5")


def _synthetic_peek() -> DatasetPeek:
    from core.synthetic import SYNTHETIC_CLASSES

    return DatasetPeek("synthetic", DATASETS["synthetic"].title, tuple(SYNTHETIC_CLASSES), *SYNTHETIC_SIZES,
                       source=f"generated in memory (seed {SYNTHETIC_SEED})", synthetic=True, kind="synthetic")


def _broken_peek(
    key: str, title: str, source: str, error: str, path: Path | None = None, kind: str = "folder"
) -> DatasetPeek:
    return DatasetPeek(key, title, (), 0, 0, source, False, kind=kind, error=error, path=path)


def _error_text(e: BaseException) -> str:
    if isinstance(e, DatasetError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.filename or 'a file'}: could not be read ({e.strerror or e})"
    return f"could not be read ({type(e).__name__}: {e})"


def shows_finger_counts(classes: Sequence[str]) -> bool:
    """Whether a data set's classes are the finger counts 0–5 (in any order), as SIGNS' are."""
    from core.synthetic import SYNTHETIC_CLASSES

    return len(classes) == len(SYNTHETIC_CLASSES) and set(map(str, classes)) == set(SYNTHETIC_CLASSES)


def generated_hands(dataset: Dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` generated finger-count hands to train on beside ``dataset``'s own training images:
    uint8 images at its size and labels in its class order; half the 3s shown the other common way.

    The same ``n`` and ``seed`` give the same images, so a resumed run trains on the same ones.
    Raises :class:`DatasetError` unless the data set's classes are the finger counts 0–5.
    """
    from core.synthetic import SYNTHETIC_CLASSES, generate_finger_set

    if not shows_finger_counts(dataset.classes):
        raise DatasetError(
            f"generated hands show 0–5 raised fingers, and {dataset.title} has other classes "
            f"({', '.join(dataset.classes)}): set generated hands to 0 for it"
        )
    x, y, _, _ = generate_finger_set(n, 0, seed=seed, size=dataset.image_size, other_threes=GENERATED_OTHER_THREES)
    relabel = np.array([dataset.classes.index(c) for c in SYNTHETIC_CLASSES], dtype=np.int64)
    return x, relabel[y]


@lru_cache(maxsize=1)
def _load_synthetic() -> Dataset:
    from core.synthetic import SYNTHETIC_CLASSES, generate_finger_set

    x_train, y_train, x_test, y_test = generate_finger_set(*SYNTHETIC_SIZES, seed=SYNTHETIC_SEED)
    for a in (x_train, y_train, x_test, y_test):
        a.setflags(write=False)  # shared by every caller through the cache
    return Dataset(
        "synthetic", DATASETS["synthetic"].title, tuple(SYNTHETIC_CLASSES), x_train, y_train, x_test, y_test,
        source=f"generated in memory (seed {SYNTHETIC_SEED})", synthetic=True, kind="synthetic",
    )


# --- names of sets and classes -----------------------------------------------------------------

_NAME_RULE = f"letters, digits, spaces, '-' or '_', at most {MAX_NAME_CHARS} characters"


def _printable(name: str, limit: int = 80) -> str:
    """A name fit for a message: control characters escaped, long names shortened."""
    clean = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)
    return clean if len(clean) <= limit else clean[: limit - 12] + "…" + clean[-11:]


def _path_text(path: str | os.PathLike) -> str:
    """A path for a message: whole, but with control characters from folder names escaped."""
    return _printable(os.fspath(path), limit=400)


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a folder-derived class or set name, or None if it can.

    Looser than the sanitisers (spaces and punctuation are fine: a stranger's folder "non-cat"
    or "thumbs up" reads as it is), but nothing that could forge a message line, climb out of a
    folder, hide, or overflow a menu.
    """
    if not name or not name.strip():
        return "is empty"
    if name != name.strip():
        return "starts or ends with a space"
    if any(not c.isprintable() for c in name):
        return "contains a control character"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name.startswith("."):
        return "starts with a dot"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long (at most {MAX_NAME_CHARS})"
    return None


def _sanitize(name: str, what: str, *, first_alnum: bool) -> str:
    if not isinstance(name, str):
        raise DatasetError(f"{what} must be text, got {type(name).__name__}")
    # Only spaces become "-": a tab or newline in a name is a control character, refused below.
    clean = re.sub(r" +", "-", unicodedata.normalize("NFC", name).strip(" "))
    shown = _printable(name)
    if not clean:
        raise DatasetError(f"the {what} is empty — use {_SANITIZED_RULE}")
    if len(clean) > MAX_NAME_CHARS:
        raise DatasetError(f"the {what} {shown!r} is {len(clean)} characters long — use at most {MAX_NAME_CHARS}")
    bad = sorted({c for c in clean if not (c.isalnum() or c in "-_")})
    if bad:
        listed = " ".join(repr(c) if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in bad)
        raise DatasetError(f"the {what} {shown!r} contains {listed} — use {_SANITIZED_RULE}")
    if first_alnum and not clean[0].isalnum():
        raise DatasetError(f"the {what} {shown!r} must start with a letter or digit")
    return clean


_SANITIZED_RULE = f"letters, digits, '-' and '_' (spaces become '-'), 1–{MAX_NAME_CHARS} characters"


def sanitize_set_name(name: str) -> str:
    """A user's name for a data set as a folder name: spaces become ``-``; letters, digits, ``-``
    and ``_`` only, starting with a letter or digit, 1–64 characters.

    Raises :class:`DatasetError` naming the offending characters rather than dropping them
    (``"my/../set"`` is refused, not turned into something else the user did not type).
    """
    return _sanitize(name, "data set name", first_alnum=True)


def sanitize_class_name(name: str) -> str:
    """A user's name for a class as a folder name: as :func:`sanitize_set_name`
    (``"thumbs up"`` → ``"thumbs-up"``, ``"0"`` stays ``"0"``) but may start with ``-`` or ``_``."""
    return _sanitize(name, "class name", first_alnum=False)


def user_set_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where a user's data set called ``name`` is saved: ``<data dir>/<sanitised name>``.

    Raises :class:`DatasetError` for an invalid name or one of the built-ins' (``signs``,
    ``cats``, ``catvnoncat``, ``synthetic``, in any case).
    """
    clean = sanitize_set_name(name)
    if clean.lower() in RESERVED_NAMES:
        raise DatasetError(f"the name {clean!r} belongs to a built-in data set — choose another name")
    return resolve_data_dir(data_dir) / clean


# --- the tutorial's HDF5 files -----------------------------------------------------------------


def _decode_class(c: object) -> str:
    if isinstance(c, bytes):
        return c.decode("utf-8", errors="replace")
    if isinstance(c, np.generic):
        return str(c.item())
    return str(c)


def load_h5_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read and validate one tutorial-layout HDF5 file.

    Returns images (N×S×S×3 uint8), labels (N int64) and the class names. Every fault raises
    :class:`DatasetError` naming the file, the key, what was expected and what was found. Shapes and
    dtypes are checked before any array is read, so a wrong file costs nothing to refuse.
    """
    path = Path(path)
    x_key, y_key = f"{split}_set_x", f"{split}_set_y"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found — put the tutorial's {path.name} there or set {DATA_DIR_ENV}")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file — expected the tutorial's {path.name}")
    try:
        with h5py.File(path, "r") as f:
            for key in (x_key, y_key, "list_classes"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise DatasetError(f"{path}: key {key!r} missing — found keys {sorted(f.keys())}")
            x_ds, y_ds, c_ds = f[x_key], f[y_key], f["list_classes"]
            _check_images(path, x_key, x_ds.shape, x_ds.dtype)
            n = x_ds.shape[0]
            y_shape = y_ds.shape
            if len(y_shape) == 2 and y_shape[0] == 1:  # the tutorial's own (1, N) label rows
                y_shape = y_shape[1:]
            if len(y_shape) != 1:
                raise DatasetError(f"{path}: {y_key} must be a vector of N labels, found shape {y_ds.shape}")
            if not np.issubdtype(y_ds.dtype, np.integer):
                raise DatasetError(f"{path}: {y_key} must hold integer labels, found dtype {y_ds.dtype}")
            if y_shape[0] != n:
                raise DatasetError(f"{path}: {x_key} has {n} images but {y_key} has {y_shape[0]} labels")
            if len(c_ds.shape) != 1 or c_ds.shape[0] < 2:
                raise DatasetError(f"{path}: list_classes must list at least 2 classes, found shape {c_ds.shape}")
            classes = tuple(_decode_class(c) for c in c_ds[()])
            x = np.ascontiguousarray(x_ds[()])
            y = np.asarray(y_ds[()]).reshape(-1).astype(np.int64)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DatasetError(f"{path}: could not be read as HDF5 ({e}) — is the file complete?") from None
    bad = (y < 0) | (y >= len(classes))
    if bad.any():
        raise DatasetError(
            f"{path}: {y_key} has {int(bad.sum())} labels outside 0–{len(classes) - 1} "
            f"(list_classes has {len(classes)} classes), e.g. {int(y[bad][0])}"
        )
    return x, y, classes


def _check_images(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 4:
        raise DatasetError(f"{path}: {key} must be N×H×W×3 images (rank 4), found rank {len(shape)} shape {shape}")
    n, h, w, c = shape
    if n == 0:
        raise DatasetError(f"{path}: {key} holds no images (empty set)")
    if c != 3 or h != w or not 8 <= h <= 512:
        raise DatasetError(f"{path}: {key} must be N×S×S×3 with square S in 8–512 (e.g. N×64×64×3), found {shape}")
    if dtype != np.uint8:
        raise DatasetError(f"{path}: {key} must be uint8 pixels 0–255, found dtype {dtype}")




def export_h5(dataset: Dataset, out_dir: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """Write ``dataset`` as the tutorial's pair ``train_<stem>.h5`` + ``test_<stem>.h5`` in ``out_dir``.

    ``train_set_x`` N×S×S×3 uint8, ``train_set_y`` N int64, ``list_classes`` int64 when the classes
    are exactly ``"0"``…``"n-1"`` in order (like SIGNS), else UTF-8 bytes (like the cat file);
    ``test_set_*`` likewise. Each file is written to a temporary name, flushed to disk and renamed
    into place. Returns the two paths.
    """
    problem = _name_problem(stem)
    if problem is None and not re.fullmatch(r"[\w-]+", stem):
        problem = "may hold only letters, digits, '-' and '_'"
    if problem:
        raise DatasetError(f"file stem {_printable(stem)!r} {problem}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, x, y in _h5_splits(dataset):
        target = out / f"{split}_{stem}.h5"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "r+b") as f:
                _write_h5(f, split, x, y, dataset.classes)
                f.flush()
                os.fsync(f.fileno())
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide the file from other users
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    _fsync_dir(out)
    return written[0], written[1]


def h5_bytes(dataset: Dataset) -> tuple[bytes, bytes]:
    """The bytes of the pair :func:`export_h5` writes (train, test), for a download."""
    out = []
    for split, x, y in _h5_splits(dataset):
        buf = io.BytesIO()
        _write_h5(buf, split, x, y, dataset.classes)
        out.append(buf.getvalue())
    return out[0], out[1]


def _h5_splits(dataset: Dataset) -> list[tuple[str, np.ndarray, np.ndarray]]:
    splits = [("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)]
    for split, x, y in splits:
        _check_images(Path(dataset.title), f"{split}_set_x", tuple(x.shape), x.dtype)  # the layout load_h5_split reads
        if len(y) != len(x):
            raise DatasetError(f"{dataset.title}: {split} has {len(x)} images but {len(y)} labels")
    return splits


def _write_h5(f: Any, split: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> None:
    if list(classes) == [str(i) for i in range(len(classes))]:
        list_classes = np.arange(len(classes), dtype=np.int64)
    else:
        list_classes = np.array([c.encode("utf-8") for c in classes])
    with h5py.File(f, "w") as h:
        h.create_dataset(f"{split}_set_x", data=np.ascontiguousarray(x, dtype=np.uint8))
        h.create_dataset(f"{split}_set_y", data=np.asarray(y, dtype=np.int64))
        h.create_dataset("list_classes", data=list_classes)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # the app's upload limit (.streamlit/config.toml maxUploadSize)


def known_files() -> dict[str, tuple[str, str]]:
    """Every file name the app accepts, mapped to (data set key, split)."""
    return {
        f"{split}_{info.stem}.h5": (key, split)
        for key, info in DATASETS.items()
        if not info.synthetic
        for split in ("train", "test")
    }


def install_dataset_file(name: str, data: bytes, data_dir: str | os.PathLike | None = None) -> Path:
    """Validate an uploaded tutorial HDF5 file and put it where :func:`load_dataset` looks.

    Only the tutorial's own file names are accepted, and the target path is built from that name,
    never from the upload's, so no name can reach outside the data directory. The bytes are
    checked as a complete data file first, and moved into place atomically: a bad upload never
    replaces a good file.
    """
    base = os.path.basename(str(name).replace("\\", "/"))
    files = known_files()
    if base not in files:
        raise DatasetError(f"{name!r}: not a file TorchLab knows — upload one of {', '.join(sorted(files))}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DatasetError(f"{base}: {len(data) / 2**20:.0f} MB is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
    key, split = files[base]
    target_dir = resolve_data_dir(data_dir) / DATASETS[key].folder
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / base
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=target_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide the file from other users
            os.fsync(f.fileno())
        load_h5_split(tmp, split)  # raises DatasetError naming the problem
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, DatasetError):
            raise DatasetError(str(e).replace(tmp, base).replace(Path(tmp).name, base)) from None
        raise
    return target


# The image-folder functions are defined in core.folders, which builds on the types above; they
# are offered here too, resolved on first use so that either module may be imported first.
_FOLDER_NAMES = ("load_image_folder", "peek_image_folder", "export_image_folder", "zip_folder")


def __getattr__(name: str) -> Any:
    if name in _FOLDER_NAMES:
        import core.folders

        return getattr(core.folders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
