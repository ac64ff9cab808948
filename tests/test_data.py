"""Loading the tutorial's HDF5 files, refusing broken ones, and turning images into tensors."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from core.data import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    Dataset,
    DatasetError,
    DatasetPeek,
    available_datasets,
    export_h5,
    h5_bytes,
    list_datasets,
    load_dataset,
    load_h5_split,
    peek_dataset,
    resolve_data_dir,
    sanitize_class_name,
    sanitize_set_name,
    user_set_path,
)
from core.tensors import GRAY_WEIGHTS, images_to_tensor

# --- the real files ----------------------------------------------------------------------------


def _read_raw(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f[f"{split}_set_x"][()], f[f"{split}_set_y"][()], f["list_classes"][()]


def test_signs_loader_matches_the_file(data_dir: Path) -> None:
    ds = load_dataset("signs", data_dir)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        raw_x, raw_y, raw_classes = _read_raw(data_dir / "signs" / f"{split}_signs.h5", split)
        np.testing.assert_array_equal(x, raw_x)
        np.testing.assert_array_equal(y, raw_y.reshape(-1))
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert ds.classes == tuple(str(c) for c in raw_classes)
    assert ds.classes == ("0", "1", "2", "3", "4", "5")
    assert ds.x_train.shape == (1080, 64, 64, 3) and ds.x_test.shape == (120, 64, 64, 3)
    assert np.bincount(ds.y_train).tolist() == [180] * 6
    assert ds.num_classes == 6 and ds.image_size == 64 and not ds.synthetic
    assert ds.kind == "hdf5" and ds.skipped == ()
    assert "real" in ds.describe() and "1080 train" in ds.describe()


def test_class_examples_are_each_classs_first_training_photos_from_the_file(data_dir: Path) -> None:
    ds = load_dataset("signs", data_dir)
    raw_x, raw_y, _ = _read_raw(data_dir / "signs" / "train_signs.h5", "train")
    raw_y = raw_y.reshape(-1)
    examples = ds.class_examples(per_class=2)
    assert [label for label, _ in examples] == ["0", "0", "1", "1", "2", "2", "3", "3", "4", "4", "5", "5"]
    for k in range(6):
        first_two = np.flatnonzero(raw_y == k)[:2]
        for (_, image), i in zip(examples[2 * k : 2 * k + 2], first_two):
            np.testing.assert_array_equal(image, raw_x[i])
    # A class with fewer photos than asked for gives what it has, in the data set's class order.
    small = dataclasses.replace(ds, x_train=ds.x_train[:3], y_train=np.array([4, 1, 4]))
    assert [label for label, _ in small.class_examples(per_class=5)] == ["1", "4", "4"]


def test_cats_classes_decode(cats_data_dir: Path) -> None:
    ds = load_dataset("cats", cats_data_dir)
    assert ds.classes == ("non-cat", "cat")
    assert ds.x_train.shape == (209, 64, 64, 3) and ds.x_test.shape == (50, 64, 64, 3)
    assert set(np.unique(ds.y_train)) == {0, 1}


def test_available_datasets_with_the_real_dir(cats_data_dir: Path) -> None:
    keys = available_datasets(cats_data_dir)
    assert {"signs", "cats"} <= set(keys)
    assert keys[:2] == ["signs", "cats"] and keys[-1] == "synthetic"
    peeks = {p.key: p for p in list_datasets(cats_data_dir)}
    assert (peeks["signs"].n_train, peeks["signs"].n_test, peeks["signs"].kind) == (1080, 120, "hdf5")
    assert peeks["cats"].classes == ("non-cat", "cat")
    assert peeks["synthetic"].kind == "synthetic" and peeks["synthetic"].synthetic
    assert peek_dataset("signs", cats_data_dir) == peeks["signs"]


def test_available_datasets_with_an_empty_dir(tmp_path: Path) -> None:
    assert available_datasets(tmp_path) == ["synthetic"]


# --- crafted files: every fault is refused by name ---------------------------------------------


def write_h5(path: Path, split: str = "train", *, n: int = 4, omit: str | None = None, **arrays: object) -> Path:
    """A small tutorial-layout file; ``arrays`` override x / y / classes, ``omit`` drops a key."""
    rng = np.random.default_rng(0)
    data = {
        f"{split}_set_x": arrays.get("x", rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)),
        f"{split}_set_y": arrays.get("y", np.arange(n, dtype=np.int64) % 2),
        "list_classes": arrays.get("classes", np.array([b"non-cat", b"cat"])),
    }
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key != omit:
                f.create_dataset(key, data=value)
    return path


def refused(path: Path, split: str = "train") -> str:
    with pytest.raises(DatasetError) as info:
        load_h5_split(path, split)
    message = str(info.value)
    assert str(path) in message
    return message


def test_crafted_file_loads(tmp_path: Path) -> None:
    x, y, classes = load_h5_split(write_h5(tmp_path / "ok.h5"), "train")
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 0, 1] and y.dtype == np.int64
    assert classes == ("non-cat", "cat")


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in refused(tmp_path / "train_signs.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "train_signs.h5"
    path.write_bytes(b"<html>404 not found</html>")
    assert "not an HDF5 file" in refused(path)


@pytest.mark.parametrize("key", ["train_set_x", "train_set_y", "list_classes"])
def test_missing_key(tmp_path: Path, key: str) -> None:
    message = refused(write_h5(tmp_path / "f.h5", omit=key))
    assert f"'{key}'" in message and "missing" in message


def test_wrong_split_keys(tmp_path: Path) -> None:
    # A train file handed in as the test split: its keys are train_set_*.
    assert "'test_set_x'" in refused(write_h5(tmp_path / "f.h5", "train"), "test")


@pytest.mark.parametrize(
    "x, expect",
    [
        (np.zeros((4, 16, 16), np.uint8), "rank"),  # gray, no channel axis
        (np.zeros((4, 768), np.uint8), "rank"),  # already flattened
        (np.zeros((4, 16, 12, 3), np.uint8), "square"),
        (np.zeros((4, 16, 16, 4), np.uint8), "N×S×S×3"),  # RGBA
        (np.zeros((4, 16, 16, 1), np.uint8), "N×S×S×3"),
        (np.zeros((4, 4, 4, 3), np.uint8), "8–512"),
    ],
    ids=["rank3", "rank2", "non-square", "4-channels", "1-channel", "too-small"],
)
def test_wrong_image_shape(tmp_path: Path, x: np.ndarray, expect: str) -> None:
    message = refused(write_h5(tmp_path / "f.h5", x=x))
    assert "train_set_x" in message and expect in message and str(x.shape) in message


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint16])
def test_wrong_image_dtype(tmp_path: Path, dtype: type) -> None:
    x = np.full((4, 16, 16, 3), 0.5, dtype=dtype)
    if np.issubdtype(dtype, np.floating):
        x[0, 0, 0, 0] = np.nan  # a float file may hide NaNs; it is refused on dtype before they matter
    message = refused(write_h5(tmp_path / "f.h5", x=x))
    assert "train_set_x" in message and "uint8" in message and np.dtype(dtype).name in message


def test_length_mismatch(tmp_path: Path) -> None:
    message = refused(write_h5(tmp_path / "f.h5", y=np.zeros(3, np.int64)))
    assert "train_set_x has 4 images" in message and "train_set_y has 3 labels" in message


def test_empty_set(tmp_path: Path) -> None:
    message = refused(write_h5(tmp_path / "f.h5", x=np.zeros((0, 16, 16, 3), np.uint8), y=np.zeros(0, np.int64)))
    assert "train_set_x" in message and "empty" in message


@pytest.mark.parametrize("bad", [2, -1, 99])
def test_labels_outside_class_list(tmp_path: Path, bad: int) -> None:
    message = refused(write_h5(tmp_path / "f.h5", y=np.array([0, 1, bad, 0], np.int64)))
    assert "train_set_y" in message and "outside 0–1" in message and str(bad) in message


def test_float_labels(tmp_path: Path) -> None:
    message = refused(write_h5(tmp_path / "f.h5", y=np.array([0.0, 1.0, 0.0, 1.0], np.float32)))
    assert "train_set_y" in message and "integer" in message


def test_label_matrix_refused(tmp_path: Path) -> None:
    message = refused(write_h5(tmp_path / "f.h5", y=np.zeros((4, 2), np.int64)))
    assert "train_set_y" in message and "vector" in message


def test_too_few_classes(tmp_path: Path) -> None:
    message = refused(write_h5(tmp_path / "f.h5", y=np.zeros(4, np.int64), classes=np.array([b"cat"])))
    assert "list_classes" in message


def test_labels_as_tutorial_row_vector_accepted(tmp_path: Path) -> None:
    # The course notebooks reshape labels to (1, N); a file saved that way must still load.
    _, y, _ = load_h5_split(write_h5(tmp_path / "f.h5", y=np.array([[1, 0, 1, 1]], np.int64)), "train")
    assert y.shape == (4,) and y.tolist() == [1, 0, 1, 1]


def test_integer_and_str_classes_decode(tmp_path: Path) -> None:
    _, _, classes = load_h5_split(write_h5(tmp_path / "a.h5", classes=np.arange(3)), "train")
    assert classes == ("0", "1", "2")
    str_classes = np.array(["no", "yes"], dtype=h5py.string_dtype())
    _, _, classes = load_h5_split(write_h5(tmp_path / "b.h5", classes=str_classes), "train")
    assert classes == ("no", "yes")


# --- data sets in a directory ------------------------------------------------------------------


def test_dataset_from_crafted_files_at_top_or_in_subfolder(tmp_path: Path) -> None:
    (tmp_path / "catvnoncat").mkdir()
    write_h5(tmp_path / "catvnoncat" / "train_catvnoncat.h5", "train", n=6)
    write_h5(tmp_path / "test_catvnoncat.h5", "test", n=2)  # top level of the data dir
    assert available_datasets(tmp_path) == ["cats", "synthetic"]
    ds = load_dataset("cats", tmp_path)
    assert (len(ds.x_train), len(ds.x_test)) == (6, 2)
    assert ds.classes == ("non-cat", "cat")


def test_dataset_with_one_file_missing(tmp_path: Path) -> None:
    (tmp_path / "signs").mkdir()
    write_h5(tmp_path / "signs" / "train_signs.h5", "train")
    assert available_datasets(tmp_path) == ["synthetic"]
    with pytest.raises(DatasetError, match="test_signs.h5"):
        load_dataset("signs", tmp_path)


def test_train_and_test_disagree(tmp_path: Path) -> None:
    (tmp_path / "signs").mkdir()
    write_h5(tmp_path / "signs" / "train_signs.h5", "train")
    test_path = write_h5(tmp_path / "signs" / "test_signs.h5", "test", classes=np.array([b"a", b"b"]))
    with pytest.raises(DatasetError, match="list_classes") as info:
        load_dataset("signs", tmp_path)
    assert str(test_path) in str(info.value)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    write_h5(tmp_path / "signs" / "test_signs.h5", "test", x=x)
    with pytest.raises(DatasetError, match="test_set_x"):
        load_dataset("signs", tmp_path)


def test_unknown_dataset_key() -> None:
    with pytest.raises(DatasetError, match="imagenet"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="imagenet"):
        peek_dataset("imagenet")


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "from-arg") == tmp_path / "from-arg"  # argument beats env
    assert resolve_data_dir(str(tmp_path)) == tmp_path


def test_env_var_reaches_the_loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "catvnoncat").mkdir()
    for split in ("train", "test"):
        write_h5(tmp_path / "catvnoncat" / f"{split}_catvnoncat.h5", split)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert available_datasets() == ["cats", "synthetic"]
    assert load_dataset("cats").source.startswith(str(tmp_path))


def test_synthetic_dataset() -> None:
    ds = load_dataset("synthetic")
    assert ds.synthetic and ds.kind == "synthetic" and "SYNTHETIC" in ds.describe()
    assert ds.x_train.dtype == np.uint8 and ds.x_train.ndim == 4 and ds.x_train.shape[-1] == 3
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)
    assert ds.y_train.min() >= 0 and ds.y_train.max() < ds.num_classes


# --- the Dataset type ---------------------------------------------------------------------------


def test_dataset_kind_defaults_and_checks(make_tiny_dataset) -> None:
    tiny = make_tiny_dataset()
    assert tiny.synthetic and tiny.kind == "synthetic"  # built with synthetic=True only
    args = {"key": "k", "title": "t", "classes": ("a", "b"), "x_train": tiny.x_train, "y_train": tiny.y_train % 2,
            "x_test": tiny.x_test, "y_test": tiny.y_test % 2, "source": "s"}
    assert Dataset(**args).kind == "hdf5" and Dataset(**args).skipped == ()
    folder = Dataset(**args, kind="folder", skipped=('"a/x.txt": not an image', '"b/y.jpg" is damaged'))
    assert "real photos (image folder), 2 files skipped — s" in folder.describe()
    with pytest.raises(ValueError, match="kind"):
        Dataset(**args, kind="zip")


def test_peek_keeps_its_positional_fields() -> None:
    peek = DatasetPeek("k", "t", ("a", "b"), 3, 1, "src", False)
    assert peek.kind == "hdf5" and peek.skipped == () and peek.error is None and peek.usable and peek.path is None


def test_with_class_order_on_the_real_file(data_dir: Path) -> None:
    ds = load_dataset("signs", data_dir)
    rev = ds.with_class_order(["5", "4", "3", "2", "1", "0"])
    np.testing.assert_array_equal(rev.y_train, 5 - ds.y_train)
    np.testing.assert_array_equal(rev.y_test, 5 - ds.y_test)
    assert rev.x_train is ds.x_train
    with pytest.raises(DatasetError, match="class order"):
        ds.with_class_order(["0", "1", "2", "3", "4", "6"])


def test_with_class_order_on_the_cached_read_only_synthetic_set() -> None:
    ds = load_dataset("synthetic")
    order = list(reversed(ds.classes))
    rev = ds.with_class_order(order)
    assert [rev.classes[y] for y in rev.y_train[:50]] == [ds.classes[y] for y in ds.y_train[:50]]
    assert load_dataset("synthetic").classes == ds.classes  # the cached set is untouched


# --- names of users' sets and classes ------------------------------------------------------------


@pytest.mark.parametrize("name, clean", [
    ("my hand", "my-hand"), ("  rock  paper ", "rock-paper"), ("Set_2", "Set_2"), ("é-set", "é-set"), ("x" * 64, "x" * 64),
])
def test_sanitize_set_name_accepts(name: str, clean: str) -> None:
    assert sanitize_set_name(name) == clean


@pytest.mark.parametrize("name, says", [
    ("", "empty"), ("   ", "empty"), ("a/b", "'/'"), ("..", "'.'"), ("../etc", "'/'"), ("a\\b", "'\\\\'"),
    ("nul\x00", "\\x00"), ("esc\x1b[1m", "\\x1b"), ("x" * 65, "65 characters"), ("-rf", "start with a letter"),
    ("_x", "start with a letter"), ("a.b", "'.'"),
])
def test_sanitize_set_name_refuses(name: str, says: str) -> None:
    with pytest.raises(DatasetError) as info:
        sanitize_set_name(name)
    message = str(info.value)
    assert says in message, message
    assert "\x00" not in message and "\x1b" not in message


@pytest.mark.parametrize("name, clean", [
    ("rock", "rock"), ("thumbs up", "thumbs-up"), ("0", "0"), ("5", "5"), ("_background", "_background"),
])
def test_sanitize_class_name(name: str, clean: str) -> None:
    assert sanitize_class_name(name) == clean


@pytest.mark.parametrize("name", ["", "a/b", "..", "tab\there\n", "x" * 65, "<script>"])
def test_sanitize_class_name_refuses(name: str) -> None:
    with pytest.raises(DatasetError, match="class name"):
        sanitize_class_name(name)


def test_user_set_path(tmp_path: Path) -> None:
    assert user_set_path("my hand", tmp_path) == tmp_path / "my-hand"
    for reserved in ("signs", "Cats", "catvnoncat", "SYNTHETIC"):
        with pytest.raises(DatasetError, match="built-in"):
            user_set_path(reserved, tmp_path)
    with pytest.raises(DatasetError):
        user_set_path("../outside", tmp_path)


# --- writing the tutorial's layout -------------------------------------------------------------


def test_export_h5_of_a_crafted_set(tmp_path: Path, make_tiny_dataset) -> None:
    tiny = make_tiny_dataset(size=16, num_classes=3)
    train_path, test_path = export_h5(tiny, tmp_path / "out", "tiny")
    assert train_path == tmp_path / "out" / "train_tiny.h5" and test_path == tmp_path / "out" / "test_tiny.h5"
    for path, split, x, y in ((train_path, "train", tiny.x_train, tiny.y_train), (test_path, "test", tiny.x_test, tiny.y_test)):
        got_x, got_y, classes = load_h5_split(path, split)
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
        assert classes == tiny.classes
        with h5py.File(path) as f:
            assert sorted(f.keys()) == sorted([f"{split}_set_x", f"{split}_set_y", "list_classes"])
            assert f["list_classes"][()].tolist() == [b"bar", b"column", b"diagonal"]
    assert [h5py.File(io.BytesIO(b), "r")["list_classes"][()].tolist() for b in h5_bytes(tiny)] == [[b"bar", b"column", b"diagonal"]] * 2


def test_export_h5_refuses_what_load_h5_split_would(tmp_path: Path, make_tiny_dataset) -> None:
    tiny = make_tiny_dataset(size=16)
    empty_test = dataclasses.replace(tiny, x_test=tiny.x_test[:0], y_test=tiny.y_test[:0])
    with pytest.raises(DatasetError, match="test_set_x"):
        export_h5(empty_test, tmp_path, "x")
    with pytest.raises(DatasetError, match="test_set_x"):
        h5_bytes(empty_test)
    assert list(tmp_path.iterdir()) == []


# --- images_to_tensor --------------------------------------------------------------------------

RED, GREEN, BLUE = 10, 20, 30


def planes_batch(n: int = 2, size: int = 4) -> np.ndarray:
    """N×S×S×3 images whose red, green and blue planes are three distinct constants."""
    x = np.empty((n, size, size, 3), np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = RED, GREEN, BLUE
    return x


def test_permute_keeps_colour_planes_where_reshape_scrambles_them() -> None:
    images = planes_batch()
    x = images_to_tensor(images)
    for c, value in enumerate((RED, GREEN, BLUE)):
        assert torch.all(x[:, c] == value / 255)

    # The tutorial's reshape(N, 3, H, W) keeps memory order: "channel 0" is the first third of
    # the interleaved R, G, B bytes, a mix of all three colours.
    scrambled = torch.as_tensor(images).reshape(2, 3, 4, 4)
    assert set(scrambled[:, 0].unique().tolist()) == {RED, GREEN, BLUE}
    assert not torch.equal(scrambled.float() / 255, x)


def test_grayscale_weights() -> None:
    pixels = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]]], np.uint8)
    gray = images_to_tensor(pixels, channels=1)
    assert gray.shape == (1, 1, 2, 2)
    expected = torch.tensor([[GRAY_WEIGHTS[0], GRAY_WEIGHTS[1]], [GRAY_WEIGHTS[2], 1.0]])
    torch.testing.assert_close(gray[0, 0], expected)
    assert gray[0, 0, 0, 0].item() == pytest.approx(0.299)


def test_range_dtype_and_shape() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 0, 0)
    images[0, 0, 1] = (255, 255, 255)
    for channels in (3, 1):
        x = images_to_tensor(images, channels=channels)
        assert x.shape == (3, channels, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
        assert x.min().item() == 0.0 and x.max().item() == pytest.approx(1.0)
    torch.testing.assert_close(images_to_tensor(torch.from_numpy(images)), images_to_tensor(images))


def test_resize_keeps_planes() -> None:
    x = images_to_tensor(planes_batch(size=8), size=4)
    assert x.shape == (2, 3, 4, 4)
    for c, value in enumerate((RED, GREEN, BLUE)):
        torch.testing.assert_close(x[:, c], torch.full((2, 4, 4), value / 255))


@pytest.mark.parametrize("shape, channels", [((2, 8, 8), 3), ((2, 8, 8, 4), 3), ((2, 8, 8, 3), 2)])
def test_images_to_tensor_refuses_bad_input(shape: tuple[int, ...], channels: int) -> None:
    with pytest.raises(ValueError):
        images_to_tensor(np.zeros(shape, np.uint8), channels=channels)


def test_real_images_to_tensor(data_dir: Path) -> None:
    ds = load_dataset("signs", data_dir)
    x = images_to_tensor(ds.x_test[:5])
    torch.testing.assert_close(x[:, 0], torch.from_numpy(ds.x_test[:5, :, :, 0]).float() / 255)
