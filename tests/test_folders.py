"""Image folders as data sets: both layouts, the split, every refusal, hostile names, and the
round trips to the tutorial's HDF5 layout and back (on crafted folders and on the real files)."""
from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import core.folders
from core.data import (
    Dataset,
    DatasetError,
    available_datasets,
    export_h5,
    h5_bytes,
    list_datasets,
    load_dataset,
    load_h5_split,
    peek_dataset,
    user_set_path,
)
from core.folders import (
    export_image_folder,
    load_image_folder,
    peek_image_folder,
    zip_folder,
)
from tests.conftest import _need, real_data_dir

SIDE = 16  # files are written at this size and loaded at it: prepare_image is then the identity


def colour(cls: int, i: int) -> tuple[int, int, int]:
    """The solid colour of image ``i`` of class ``cls``: identifies an image after loading."""
    return (10 + 40 * cls, (7 * i) % 256, 99)


def write_image(path: Path, rgb: tuple[int, int, int], size: int = SIDE, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path, fmt)
    return path


def make_folder(root: Path, counts: dict[str, int], *, prefix: str = "") -> Path:
    """``root/<prefix><class>/<i>.png`` with ``counts[class]`` images each (classes numbered in dict order)."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / prefix / name / f"img{i:03d}.png", colour(c, i))
    return root


def identities(x: np.ndarray) -> list[tuple[int, int, int]]:
    """The solid colour of each loaded image."""
    return [tuple(int(v) for v in img[0, 0]) for img in x]


def refused(root: Path, *expected: str, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        load_image_folder(root, image_size=SIDE, **kwargs)
    message = str(info.value)
    for part in expected:
        assert part in message, message
    return message


# --- the two layouts ---------------------------------------------------------------------------


def test_class_layout_loads_every_image_once_with_its_label(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "rps", {"rock": 10, "paper": 5, "scissors": 3})
    ds = load_image_folder(root, image_size=SIDE)
    assert ds.classes == ("paper", "rock", "scissors")  # sorted names, not creation order
    assert ds.kind == "folder" and not ds.synthetic and ds.skipped == ()
    assert ds.split_made  # its test photos were set aside here, from the same photos
    assert ds.key == ds.title == "rps" and ds.source == str(root)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (SIDE, SIDE, 3)
    assert len(ds.x_train) + len(ds.x_test) == 18
    created = {"rock": 0, "paper": 1, "scissors": 2}
    seen = identities(ds.x_train) + identities(ds.x_test)
    labels = [ds.classes[y] for y in (*ds.y_train, *ds.y_test)]
    assert len(set(seen)) == 18  # no image twice, none lost
    for rgb, label in zip(seen, labels):
        assert rgb[0] == 10 + 40 * created[label]  # each image carries its own folder's label
    assert "real photos (image folder)" in ds.describe() and "no file skipped" in ds.describe()
    assert str(root) in ds.describe()


def test_split_layout_is_used_as_given(tmp_path: Path) -> None:
    root = tmp_path / "given"
    make_folder(root, {"a": 4, "b": 3}, prefix="train")
    write_image(root / "test" / "a" / "t0.png", (1, 2, 3))
    write_image(root / "test" / "a" / "t1.png", (4, 5, 6))  # no test/b: a class may have no test photos
    (root / "LICENSE").write_text("licence text")  # the folder's documentation, not data
    ds = load_image_folder(root, image_size=SIDE, test_fraction=0.5, seed=7)  # no effect on a given split
    assert ds.classes == ("a", "b") and not ds.split_made
    assert (len(ds.x_train), len(ds.x_test)) == (7, 2)
    assert identities(ds.x_test) == [(1, 2, 3), (4, 5, 6)] and ds.y_test.tolist() == [0, 0]
    assert ds.skipped == ()


def test_split_layout_test_class_must_exist_in_train(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "s", {"a": 2, "b": 2}, prefix="train")
    make_folder(root, {"a": 1, "zebra": 1}, prefix="test")
    refused(root, '"test/zebra"', "train")


@pytest.mark.parametrize("only", ["train", "test"])
def test_split_layout_needs_both_halves(tmp_path: Path, only: str) -> None:
    root = make_folder(tmp_path / "s", {"a": 2, "b": 2}, prefix=only)
    other = "test" if only == "train" else "train"
    refused(root, f"no {other}/")


def test_split_layout_with_an_unreadable_test_half(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "s", {"a": 2, "b": 2}, prefix="train")
    (root / "test" / "a").mkdir(parents=True)
    (root / "test" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    message = refused(root, "test/", "no usable image")
    assert "x.jpg" in message


def test_other_folders_beside_train_and_test_are_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "s", {"a": 2, "b": 2}, prefix="train")
    make_folder(root, {"a": 1}, prefix="test")
    make_folder(root, {"a": 1}, prefix="val")
    ds = load_image_folder(root, image_size=SIDE)
    assert len(ds.skipped) == 1 and '"val/"' in ds.skipped[0]


# --- class order -------------------------------------------------------------------------------


def test_with_class_order_renumbers_labels_only(tmp_path: Path) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"a": 4, "b": 4, "c": 4}), image_size=SIDE)
    new = ds.with_class_order(["c", "a", "b"])
    assert new.classes == ("c", "a", "b")
    assert new.x_train is ds.x_train and new.x_test is ds.x_test
    for old_y, new_y in ((ds.y_train, new.y_train), (ds.y_test, new.y_test)):
        assert [new.classes[y] for y in new_y] == [ds.classes[y] for y in old_y]
    assert ds.with_class_order(("a", "b", "c")) is ds


@pytest.mark.parametrize(
    "order, says",
    [(["a", "b"], "missing ['c']"), (["a", "b", "c", "d"], "not in the data set ['d']"), (["a", "a", "b", "c"], "repeated ['a']")],
)
def test_with_class_order_refuses_another_set_of_names(tmp_path: Path, order: list[str], says: str) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"a": 3, "b": 3, "c": 3}), image_size=SIDE)
    with pytest.raises(DatasetError, match="class order") as info:
        ds.with_class_order(order)
    assert says in str(info.value)


# --- refusals, each naming what is wrong --------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", str(tmp_path / "nowhere"), "no such folder")


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "photos.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    refused(tmp_path / "photos.zip", "photos.zip", "not a folder", "unzip")


def test_no_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_image(root / "a.png", (1, 1, 1))
    write_image(root / "b.png", (2, 2, 2))
    refused(root, str(root), "no class folders", "images lie directly in it")


def test_one_class_is_not_enough(tmp_path: Path) -> None:
    refused(make_folder(tmp_path / "f", {"only": 5}), "only one class", "only", "at least 2")


def test_class_folder_without_images(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("hi")
    refused(root, '"empty"', "holds no image file")


def test_class_whose_images_all_fail_to_decode(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    (root / "c").mkdir()
    (root / "c" / "1.jpg").write_bytes(b"\xff\xd8 broken")
    (root / "c" / "2.png").write_bytes(b"")
    message = refused(root, '"c"', "no usable image")
    assert "c/1.jpg" in message  # the reason is there, with the file


def test_too_many_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.folders, "MAX_IMAGES", 5)
    refused(make_folder(tmp_path / "f", {"a": 3, "b": 3}), "more than 5 images")


def test_too_much_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.folders, "MAX_ARRAY_BYTES", 6 * SIDE * SIDE * 3 - 1)
    refused(make_folder(tmp_path / "f", {"a": 3, "b": 3}), "6 images at 16×16", "smaller image size")


@pytest.mark.parametrize("kwargs, says", [
    ({"image_size": 4}, "image size"), ({"image_size": 1024}, "image size"),
    ({"test_fraction": 0.0}, "test fraction"), ({"test_fraction": 1.0}, "test fraction"), ({"seed": -1}, "seed"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict, says: str) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    with pytest.raises(DatasetError, match=says):
        load_image_folder(root, **{"image_size": SIDE, **kwargs})


# --- skipped files: left out, never silently ----------------------------------------------------


def test_skipped_files_are_each_reported_by_name(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("not a photo")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, "PNG")
    (root / "b" / "cut.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])  # truncated
    (root / "b" / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (root / "b" / ".DS_Store").write_bytes(b"\0")
    (root / "b" / "nested").mkdir()
    write_image(root / "b" / "nested" / "deep.png", (5, 5, 5))
    write_image(root / "loose.png", (6, 6, 6))  # not in a class folder
    (root / "README.md").write_text("about these photos")  # documentation: ignored
    (root / ".git").mkdir()

    ds = load_image_folder(root, image_size=SIDE)
    assert len(ds.x_train) + len(ds.x_test) == 8  # exactly the good images
    report = "\n".join(ds.skipped)
    for name in ("a/notes.txt", "a/broken.jpg", "b/cut.png", "b/photo.heic", "b/.DS_Store", "b/nested/", "loose.png", ".git/"):
        assert name in report, name
    assert "README" not in report
    assert len(ds.skipped) == 8
    assert "8 files skipped" in ds.describe()
    # the decoder's own reason is kept for the broken image
    assert any(line.startswith("\"a/broken.jpg\" is incomplete") for line in ds.skipped)
    # a peek (no decoding) already knows the files it can tell by name
    peek = peek_image_folder(root)
    assert {"a/notes.txt", "b/.DS_Store", "loose.png"} <= {s.split('"')[1] for s in peek.skipped}


def test_big_files_are_skipped_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "a" / "huge.png")  # noise does not compress: ~200 KB
    monkeypatch.setattr(core.folders, "MAX_FILE_BYTES", 400)
    ds = load_image_folder(root, image_size=SIDE)
    assert len(ds.x_train) + len(ds.x_test) == 6
    assert any("a/huge.png" in line and "MB" in line for line in ds.skipped)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_skipped_not_waited_on(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    os.mkfifo(root / "a" / "pipe.jpg")
    ds = load_image_folder(root, image_size=SIDE)
    assert any("a/pipe.jpg" in line and "not a regular file" in line for line in ds.skipped)


# --- hostile names and links --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, says",
    [
        ("esc\x1b[31mred", "control character"),
        ("two\nlines", "control character"),
        ("back\\slash", "path separator"),
        ("x" * 65, "65 characters"),
        (" padded", "space"),
    ],
    ids=["ansi-escape", "newline", "backslash", "too-long", "leading-space"],
)
def test_hostile_class_folder_names_are_refused(tmp_path: Path, name: str, says: str) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    make_folder(root, {name: 3})
    message = refused(root, says, "rename the folder")
    assert "\x1b" not in message and "\n" not in message  # a name cannot forge output
    with pytest.raises(DatasetError):
        peek_image_folder(root)


def test_dot_folders_are_hidden_and_skipped(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    make_folder(root, {"...": 3, ".ipynb_checkpoints": 2})
    ds = load_image_folder(root, image_size=SIDE)
    assert ds.classes == ("a", "b")
    assert sorted(ds.skipped) == sorted(['".../": a hidden folder — skipped', '".ipynb_checkpoints/": a hidden folder — skipped'])


def test_links_leading_outside_are_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = make_folder(tmp_path / "outside", {"secret": 4})
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    os.symlink(outside / "secret", root / "secret")  # a class folder
    os.symlink(outside / "secret" / "img000.png", root / "a" / "leak.png")  # an image
    os.symlink("../../outside/secret/img001.png", root / "b" / "relative.png")
    os.symlink("/etc/passwd", root / "b" / "passwd.jpg")
    os.symlink(root / "a" / "img000.png", root / "b" / "alias.png")  # inside: fine
    os.symlink(root / "b" / "gone.png", root / "b" / "dangling.png")
    read: list[str] = []
    real_read = core.folders._read_file
    monkeypatch.setattr(core.folders, "_read_file", lambda p, rel: read.append(os.path.realpath(p)) or real_read(p, rel))

    ds = load_image_folder(root, image_size=SIDE)
    assert ds.classes == ("a", "b")
    assert len(ds.x_train) + len(ds.x_test) == 7  # 6 + the alias inside ROOT
    assert read and all(Path(p).is_relative_to(root.resolve()) for p in read)
    for name in ('"secret"', "a/leak.png", "b/relative.png", "b/passwd.jpg"):
        assert any(name in line and "outside the folder" in line for line in ds.skipped), name
    assert any("b/dangling.png" in line for line in ds.skipped)  # a dangling link is reported, not a crash
    assert len(ds.skipped) == 5


def test_root_given_through_a_link_is_fine(tmp_path: Path) -> None:
    real = make_folder(tmp_path / "real", {"a": 3, "b": 3})
    os.symlink(real, tmp_path / "link")
    ds = load_image_folder(tmp_path / "link", image_size=SIDE)
    assert len(ds.x_train) + len(ds.x_test) == 6 and ds.skipped == ()


# --- the split ---------------------------------------------------------------------------------


def split_of(ds: Dataset) -> tuple[list, list]:
    return identities(ds.x_train), identities(ds.x_test)


def test_split_is_stratified_and_never_takes_a_whole_class(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"ten": 10, "three": 3, "two": 2, "one": 1, "twenty": 20})
    ds = load_image_folder(root, image_size=SIDE)
    test_counts = dict(zip(ds.classes, np.bincount(ds.y_test, minlength=5).tolist()))
    train_counts = dict(zip(ds.classes, np.bincount(ds.y_train, minlength=5).tolist()))
    assert test_counts == {"one": 0, "ten": 2, "three": 1, "twenty": 4, "two": 0}
    assert all(train_counts[c] >= 1 for c in ds.classes)
    peek = peek_image_folder(root)
    assert (peek.n_train, peek.n_test) == (len(ds.x_train), len(ds.x_test))


def test_every_class_of_three_or_more_gets_a_test_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 4, "c": 40})
    ds = load_image_folder(root, image_size=SIDE, test_fraction=0.01)
    assert np.bincount(ds.y_test, minlength=3).tolist() == [1, 1, 1]
    ds = load_image_folder(root, image_size=SIDE, test_fraction=0.9)
    assert np.bincount(ds.y_train, minlength=3).tolist() == [1, 1, 4]  # never all of a class


def test_tiny_classes_still_leave_a_test_split(tmp_path: Path) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"a": 2, "b": 2}), image_size=SIDE)
    assert (len(ds.x_train), len(ds.x_test)) == (3, 1)
    refused(make_folder(tmp_path / "g", {"a": 1, "b": 1}), "single image", "at least 3")


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 20, "b": 20})
    first = split_of(load_image_folder(root, image_size=SIDE, seed=1))
    assert split_of(load_image_folder(root, image_size=SIDE, seed=1)) == first
    other = split_of(load_image_folder(root, image_size=SIDE, seed=2))
    assert sorted(other[1]) != sorted(first[1])
    assert sorted(other[0] + other[1]) == sorted(first[0] + first[1])


def test_split_ignores_directory_listing_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "f", {"a": 12, "b": 12, "c": 5})
    before = split_of(load_image_folder(root, image_size=SIDE))
    real_scandir = os.scandir

    class Reversed:  # the same entries, listed the other way round
        def __init__(self, path):
            with real_scandir(path) as it:
                self.entries = sorted(it, key=lambda e: e.name, reverse=True)

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return iter(self.entries)

    monkeypatch.setattr(core.folders.os, "scandir", Reversed)
    assert split_of(load_image_folder(root, image_size=SIDE)) == before


def test_adding_a_class_leaves_the_other_classes_split_alone(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 10, "b": 10})
    before = load_image_folder(root, image_size=SIDE)
    make_folder(tmp_path / "extra", {"x": 0, "y": 0, "ab": 6})  # class index 2: its own colours
    os.rename(tmp_path / "extra" / "ab", root / "ab")  # sorts between the two others
    after = load_image_folder(root, image_size=SIDE)
    assert set(identities(before.x_test)) <= set(identities(after.x_test))


def test_decoding_failures_do_not_break_the_rule_of_one_test_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    (root / "a" / "zz.png").write_bytes(b"broken")  # 4 files, 3 usable: the split is made of usable ones
    ds = load_image_folder(root, image_size=SIDE)
    assert np.bincount(ds.y_test, minlength=2).tolist() == [1, 1]


# --- images go through the prediction path -----------------------------------------------------


def test_photos_are_prepared_as_prediction_prepares_them(tmp_path: Path) -> None:
    from core.preprocess import load_photo

    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    photo = Image.new("RGB", (300, 200), (200, 30, 30))
    photo.paste((30, 30, 200), (120, 60, 180, 140))
    photo.save(root / "a" / "zphoto.jpg", "JPEG", quality=90)
    ds = load_image_folder(root, image_size=32, test_fraction=0.01)
    x = np.concatenate([ds.x_train, ds.x_test])
    expected = load_photo((root / "a" / "zphoto.jpg").read_bytes(), 32)
    assert any(np.array_equal(img, expected) for img in x)


# --- writing: HDF5 and image folders, and back ---------------------------------------------------


def test_folder_to_h5_and_back(tmp_path: Path) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"rock": 4, "paper": 4}), image_size=SIDE)
    train_path, test_path = export_h5(ds, tmp_path / "out", "rps")
    assert (train_path.name, test_path.name) == ("train_rps.h5", "test_rps.h5")
    for path, split, x, y in ((train_path, "train", ds.x_train, ds.y_train), (test_path, "test", ds.x_test, ds.y_test)):
        got_x, got_y, classes = load_h5_split(path, split)
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
        assert classes == ds.classes
        with h5py.File(path) as f:
            assert f["list_classes"].dtype.kind == "S"  # names, as bytes like the cat file
            assert f[f"{split}_set_y"].dtype == np.int64
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
    back = load_dataset(tmp_path / "out")  # a folder holding an HDF5 pair is a data set
    np.testing.assert_array_equal(back.x_test, ds.x_test)
    assert back.kind == "hdf5" and back.key == "out"
    assert load_dataset(str(train_path)).classes == ds.classes  # so is its train file


def test_h5_bytes_are_the_exported_files(tmp_path: Path) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"0": 3, "1": 3, "2": 3}), image_size=SIDE)
    train_bytes, test_bytes = h5_bytes(ds)
    (tmp_path / "train_x.h5").write_bytes(train_bytes)
    (tmp_path / "test_x.h5").write_bytes(test_bytes)
    x, y, _ = load_h5_split(tmp_path / "test_x.h5", "test")
    np.testing.assert_array_equal(x, ds.x_test)
    np.testing.assert_array_equal(y, ds.y_test)
    with h5py.File(tmp_path / "train_x.h5") as f:
        assert f["list_classes"].dtype == np.int64 and f["list_classes"][()].tolist() == [0, 1, 2]  # like SIGNS


def test_export_h5_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"a": 3, "b": 3}), image_size=SIDE)
    train_path, _ = export_h5(ds, tmp_path / "out", "s")
    before = train_path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("core.data._write_h5", fail)
    with pytest.raises(OSError):
        export_h5(ds, tmp_path / "out", "s")
    assert train_path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test_s.h5", "train_s.h5"]


def test_export_h5_refuses_a_bad_stem(tmp_path: Path) -> None:
    ds = load_image_folder(make_folder(tmp_path / "f", {"a": 3, "b": 3}), image_size=SIDE)
    with pytest.raises(DatasetError, match="stem"):
        export_h5(ds, tmp_path, "../evil")


def test_export_image_folder_round_trip_with_class_order(tmp_path: Path, make_tiny_dataset) -> None:
    tiny = make_tiny_dataset(n_train=30, n_test=15, size=SIDE, num_classes=5)  # "ring" before "dot": not sorted
    out = export_image_folder(tiny, tmp_path / "tiny")
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    back = load_image_folder(out, image_size=SIDE)
    assert back.classes == tuple(sorted(tiny.classes))
    back = back.with_class_order(tiny.classes)
    for a, b in ((back.x_train, tiny.x_train), (back.y_train, tiny.y_train), (back.x_test, tiny.x_test), (back.y_test, tiny.y_test)):
        np.testing.assert_array_equal(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temp folder was renamed


def test_export_image_folder_refuses_to_overwrite_unless_told(tmp_path: Path, make_tiny_dataset) -> None:
    one, two = make_tiny_dataset(size=SIDE, seed=1), make_tiny_dataset(size=SIDE, seed=2)
    out = export_image_folder(one, tmp_path / "set")
    with pytest.raises(DatasetError, match="already exists"):
        export_image_folder(two, out)
    export_image_folder(two, out, overwrite=True)
    back = load_image_folder(out, image_size=SIDE).with_class_order(two.classes)
    np.testing.assert_array_equal(back.x_train, two.x_train)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # neither temp nor old copy left


def test_export_image_folder_interrupted_leaves_nothing_half_written(
    tmp_path: Path, make_tiny_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_tiny_dataset(size=SIDE, seed=1)
    out = export_image_folder(first, tmp_path / "set")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    saved = 0
    real_save = Image.Image.save

    def save_then_fail(self, *args, **kwargs):
        nonlocal saved
        saved += 1
        if saved > 10:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        export_image_folder(make_tiny_dataset(size=SIDE, seed=2), out, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        export_image_folder(first, tmp_path / "new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("bad", ["a\nb", "x" * 65, ".hidden"])
def test_export_image_folder_refuses_unusable_class_names(tmp_path: Path, make_tiny_dataset, bad: str) -> None:
    tiny = make_tiny_dataset(size=SIDE)
    hostile = dataclasses.replace(tiny, classes=(bad, *tiny.classes[1:]))
    with pytest.raises(DatasetError, match="class name"):
        export_image_folder(hostile, tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_zip_folder_holds_the_files_by_relative_path(tmp_path: Path, make_tiny_dataset) -> None:
    out = export_image_folder(make_tiny_dataset(size=SIDE, n_train=6, n_test=3), tmp_path / "set")
    os.symlink("/etc/passwd", out / "train" / "bar" / "passwd.png")
    (out / ".scratch").write_text("temp")
    with zipfile.ZipFile(io.BytesIO(zip_folder(out))) as zf:
        names = zf.namelist()
        assert all(not n.startswith("/") and ".." not in n for n in names)
        assert not any("passwd" in n or "scratch" in n for n in names)
        on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png") if not p.is_symlink())
        assert sorted(names) == on_disk
        assert zf.read(names[0]) == (out / names[0]).read_bytes()
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(zip_folder(out))) as zf:
        zf.extractall(unzipped)
    a = load_image_folder(out, image_size=SIDE)
    b = load_image_folder(unzipped, image_size=SIDE)
    np.testing.assert_array_equal(a.x_train, b.x_train)


# --- the registry ------------------------------------------------------------------------------


def test_registry_on_a_data_dir_of_every_kind(tmp_path: Path, make_tiny_dataset) -> None:
    data = tmp_path / "data"
    data.mkdir()
    export_image_folder(make_tiny_dataset(size=SIDE), user_set_path("my hand", data))
    make_folder(data / "one-class", {"only": 3})  # broken: one class
    make_folder(data / "empty-folder", {})
    (data / "empty-folder").mkdir()
    export_h5(make_tiny_dataset(size=SIDE, seed=3), data / "h5set", "h5set")
    make_folder(data / "bad\x1bname", {"a": 3, "b": 3})
    make_folder(data / "synthetic", {"a": 3, "b": 3})  # a reserved name
    make_folder(data / ".hidden", {"a": 3, "b": 3})
    (data / "notes.txt").write_text("not a set")

    peeks = list_datasets(data)
    assert [p.key for p in peeks] == ["h5set", "my-hand", "synthetic"]
    assert available_datasets(data) == ["h5set", "my-hand", "synthetic"]
    by_key = {p.key: p for p in peeks}
    assert by_key["my-hand"].kind == "folder" and by_key["my-hand"].title == "my-hand"
    assert (by_key["my-hand"].n_train, by_key["my-hand"].n_test) == (48, 24)
    assert by_key["h5set"].kind == "hdf5" and by_key["synthetic"].kind == "synthetic"
    assert peeks[-1].synthetic

    everything = list_datasets(data, include_broken=True)
    broken = {p.key: p.error for p in everything if not p.usable}
    assert set(broken) == {"one-class", "empty-folder", "bad\\x1bname", "synthetic"}
    assert "only one class" in broken["one-class"]
    assert "no class folders" in broken["empty-folder"]
    assert "control character" in broken["bad\\x1bname"]
    assert "reserved" in broken["synthetic"]
    assert all("\x1b" not in (p.key + p.title + (p.error or "")) for p in everything)
    assert [p.key for p in everything if p.usable] == ["h5set", "my-hand", "synthetic"]

    ds = load_dataset("my-hand", data)
    assert ds.kind == "folder" and ds.key == "my-hand" and (len(ds.x_train), len(ds.x_test)) == (48, 24)
    assert load_dataset("my-hand", data, image_size=32).image_size == 32
    assert load_dataset("h5set", data).kind == "hdf5"
    assert peek_dataset("my-hand", data).n_train == 48
    assert load_dataset("synthetic", data).kind == "synthetic"  # the built-in, not the folder

    # a set saved a moment ago is listed at once (nothing cached)
    export_image_folder(make_tiny_dataset(size=SIDE), user_set_path("later", data))
    assert "later" in available_datasets(data)


def test_registry_with_real_files_linked_in(data_dir: Path, tmp_path: Path, make_tiny_dataset) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(data_dir / "signs", data / "signs")
    export_image_folder(make_tiny_dataset(size=SIDE), user_set_path("mine", data))
    make_folder(data / "broken", {"x": 2})
    assert available_datasets(data) == ["signs", "mine", "synthetic"]
    signs = peek_dataset("signs", data)
    assert (signs.n_train, signs.n_test, signs.kind) == (1080, 120, "hdf5")
    assert load_dataset("signs", data).x_train.shape == (1080, 64, 64, 3)


def test_load_dataset_by_path_and_its_errors(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "photos", {"a": 3, "b": 3})
    for key in (root, str(root)):
        ds = load_dataset(key, tmp_path / "empty-data-dir", image_size=SIDE)
        assert ds.key == "photos" and ds.kind == "folder"
    assert load_dataset(root).image_size == 64  # the default size
    assert peek_dataset(root).n_train + peek_dataset(root).n_test == 6
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(str(tmp_path / "gone"))
    (tmp_path / "data.h5").write_bytes(b"x")
    with pytest.raises(DatasetError, match="train_<name>.h5"):
        load_dataset(str(tmp_path / "data.h5"))
    (tmp_path / "train_half.h5").write_bytes(b"x")
    with pytest.raises(DatasetError, match="test_half.h5"):
        load_dataset(str(tmp_path / "train_half.h5"))
    with pytest.raises(DatasetError, match="unknown data set 'nothing-here'"):
        load_dataset("nothing-here", tmp_path)


def test_a_built_in_set_with_one_file_is_listed_only_as_broken(tmp_path: Path, make_tiny_dataset) -> None:
    _, test_path = export_h5(make_tiny_dataset(size=SIDE), tmp_path / "signs", "signs")
    test_path.unlink()
    assert available_datasets(tmp_path) == ["synthetic"]
    (broken,) = [p for p in list_datasets(tmp_path, include_broken=True) if not p.usable]
    assert broken.key == "signs" and broken.kind == "hdf5" and "test_signs.h5" in broken.error


def test_core_data_offers_the_folder_functions_too() -> None:
    import core.data

    for name in ("load_image_folder", "peek_image_folder", "export_image_folder", "zip_folder"):
        assert getattr(core.data, name) is getattr(core.folders, name)
    with pytest.raises(AttributeError):
        core.data.no_such_function  # noqa: B018


# --- the real files ----------------------------------------------------------------------------


def test_signs_h5_to_folder_and_back_is_exact(data_dir: Path, tmp_path: Path) -> None:
    signs = load_dataset("signs", data_dir)
    out = export_image_folder(signs, tmp_path / "signs-folder")
    back = load_image_folder(out)  # 64 px: the files' own size
    assert back.classes == signs.classes == ("0", "1", "2", "3", "4", "5")
    for a, b in ((back.x_train, signs.x_train), (back.y_train, signs.y_train), (back.x_test, signs.x_test), (back.y_test, signs.y_test)):
        np.testing.assert_array_equal(a, b)
    assert back.skipped == ()


def test_signs_h5_export_is_the_same_data(data_dir: Path, tmp_path: Path) -> None:
    signs = load_dataset("signs", data_dir)
    train_path, test_path = export_h5(signs, tmp_path, "signs")
    for path, split, x, y in ((train_path, "train", signs.x_train, signs.y_train), (test_path, "test", signs.x_test, signs.y_test)):
        got_x, got_y, classes = load_h5_split(path, split)
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
        assert classes == signs.classes
        with h5py.File(path) as f, h5py.File(data_dir / "signs" / path.name) as original:
            assert f["list_classes"].dtype == original["list_classes"].dtype == np.int64
            np.testing.assert_array_equal(f["list_classes"][()], original["list_classes"][()])


@pytest.fixture(scope="module")
def webcam_hands() -> Path:
    root = real_data_dir() / "webcam-hands"
    _need([root / "LICENSE"])  # skips, or fails under TORCHLAB_REQUIRE_DATA=1, without the folder
    return root


def test_webcam_hands_loads_with_its_own_split(webcam_hands: Path) -> None:
    ds = load_dataset(str(webcam_hands))
    assert ds.kind == "folder" and ds.key == "webcam-hands"
    assert ds.classes == ("0", "1", "2", "3", "4", "5")
    assert ds.x_train.shape == (1381, 64, 64, 3) and ds.x_test.shape == (349, 64, 64, 3)
    assert np.bincount(ds.y_test).tolist() == [109, 52, 57, 36, 28, 67]
    assert ds.skipped == ()  # LICENSE at the top is documentation, not a skipped file
    peek = peek_dataset(str(webcam_hands))
    assert (peek.n_train, peek.n_test) == (1381, 349)
    assert "webcam-hands" in available_datasets(webcam_hands.parent)
