"""Data sets: the tutorial's HDF5 files, validated on load, and the built-in synthetic default.

The files keep the tutorial's layout: ``train_set_x`` (N×64×64×3 uint8), ``train_set_y`` (N
integers), ``list_classes``; ``test_set_*`` likewise. They are looked for in the data directory:
``--data-dir`` / ``data_dir=`` if given, else ``$TORCHLAB_DATA_DIR``, else ``datasets/`` in the
project. A file may sit in a sub-folder named after its set (``signs/``, ``catvnoncat/``) or at the
top of the directory.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np

DATA_DIR_ENV = "TORCHLAB_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "datasets"
SYNTHETIC_SEED = 0
SYNTHETIC_SIZES = (1200, 120)  # train, test


class DatasetError(ValueError):
    """A data file that cannot be used; the message names the file, the key, what was expected
    and what was found."""


@dataclass(frozen=True)
class DatasetInfo:
    """A data set the app can offer, before it is loaded."""

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


DATASETS: dict[str, DatasetInfo] = {
    "signs": DatasetInfo("signs", "SIGNS hand signs (0–5)", "signs", "signs"),
    "cats": DatasetInfo("cats", "cat / non-cat photos", "catvnoncat", "catvnoncat"),
    "synthetic": DatasetInfo("synthetic", "built-in synthetic finger counts (0–5)", "", "", synthetic=True),
}


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: uint8 N×H×W×3 images and int64 labels for both splits."""

    key: str
    title: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    synthetic: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        """One honest line: what the data is, how much, and where it came from."""
        kind = "SYNTHETIC (generated, not real photos)" if self.synthetic else "real"
        return (
            f"{self.title}: {len(self.x_train)} train + {len(self.x_test)} test images, "
            f"{self.image_size}×{self.image_size} RGB, {self.num_classes} classes, {kind} — {self.source}"
        )


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$TORCHLAB_DATA_DIR``, else ``datasets/``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR


def available_datasets(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Keys of the data sets that can be loaded now: real ones whose two files exist, then synthetic."""
    root = resolve_data_dir(data_dir)
    real = [k for k, info in DATASETS.items() if not info.synthetic and all(p.is_file() for p in info.files(root))]
    return [*real, "synthetic"]


def best_hand_dataset(data_dir: str | os.PathLike | None = None) -> str:
    """The real SIGNS set where its files exist, else the synthetic finger counts."""
    return "signs" if "signs" in available_datasets(data_dir) else "synthetic"


@dataclass(frozen=True)
class DatasetPeek:
    """What a data set holds, read from the file headers without loading any image."""

    key: str
    title: str
    classes: tuple[str, ...]
    n_train: int
    n_test: int
    source: str
    synthetic: bool


def peek_dataset(key: str, data_dir: str | os.PathLike | None = None) -> DatasetPeek:
    """Class names and sizes of a data set, cheaply (for menus, tables and checks)."""
    if key not in DATASETS:
        raise DatasetError(f"unknown data set {key!r}; choose one of {', '.join(DATASETS)}")
    info = DATASETS[key]
    if info.synthetic:
        from core.synthetic import SYNTHETIC_CLASSES

        return DatasetPeek(key, info.title, tuple(SYNTHETIC_CLASSES), *SYNTHETIC_SIZES,
                           source=f"generated in memory (seed {SYNTHETIC_SEED})", synthetic=True)
    train_path, test_path = info.files(resolve_data_dir(data_dir))
    try:
        with h5py.File(train_path, "r") as f, h5py.File(test_path, "r") as g:
            classes = tuple(_decode_class(c) for c in f["list_classes"][()])
            n_train, n_test = f["train_set_x"].shape[0], g["test_set_x"].shape[0]
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{train_path}: could not read its header ({e}) — is the file complete?") from None
    return DatasetPeek(key, info.title, classes, n_train, n_test, f"{train_path}, {test_path}", False)


def load_dataset(key: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load and validate a data set by key (``signs``, ``cats`` or ``synthetic``)."""
    if key not in DATASETS:
        raise DatasetError(f"unknown data set {key!r}; choose one of {', '.join(DATASETS)}")
    info = DATASETS[key]
    if info.synthetic:
        return _load_synthetic()
    train_path, test_path = info.files(resolve_data_dir(data_dir))
    x_train, y_train, classes = load_h5_split(train_path, "train")
    x_test, y_test, test_classes = load_h5_split(test_path, "test")
    if test_classes != classes:
        raise DatasetError(f"{test_path}: list_classes {list(test_classes)} differ from the train file's {list(classes)}")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DatasetError(
            f"{test_path}: test_set_x images are {x_test.shape[1:]}, but the train file's are {x_train.shape[1:]}"
        )
    return Dataset(key, info.title, classes, x_train, y_train, x_test, y_test, source=f"{train_path}, {test_path}")


@lru_cache(maxsize=1)
def _load_synthetic() -> Dataset:
    from core.synthetic import SYNTHETIC_CLASSES, generate_finger_set

    x_train, y_train, x_test, y_test = generate_finger_set(*SYNTHETIC_SIZES, seed=SYNTHETIC_SEED)
    for a in (x_train, y_train, x_test, y_test):
        a.setflags(write=False)  # shared by every caller through the cache
    return Dataset(
        "synthetic", DATASETS["synthetic"].title, tuple(SYNTHETIC_CLASSES), x_train, y_train, x_test, y_test,
        source=f"generated in memory (seed {SYNTHETIC_SEED})", synthetic=True,
    )


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
            os.fsync(f.fileno())
        load_h5_split(tmp, split)  # raises DatasetError naming the problem
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, DatasetError):
            raise DatasetError(str(e).replace(tmp, base).replace(Path(tmp).name, base)) from None
        raise
    return target
