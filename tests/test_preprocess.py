"""Tests for core.preprocess: every image is generated in the test, nothing is downloaded."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from core.preprocess import (
    MAX_PIXELS,
    MIN_SIDE,
    ImageError,
    load_image,
    load_photo,
    prepare_image,
    preprocess_image,
)
from core.tensors import images_to_tensor
from tests.bad_input_corpus import (
    BLUE,
    GREEN,
    RED,
    WHITE,
    animated_gif,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    gray16_png,
    huge_jpeg,
    image_cases,
    palette_transparent_png,
    png_declaring,
    two_tone,
)


def mean_rgb(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1, 3).astype(float).mean(axis=0)


def assert_close(arr: np.ndarray, colour, tol: float = 12) -> None:
    """Every pixel of ``arr`` (H×W×3) within ``tol`` of ``colour``."""
    diff = np.abs(arr.astype(int) - np.array(colour)).max()
    assert diff <= tol, f"max diff {diff} from {colour}; mean {mean_rgb(arr)}"


def top(arr):  # upper quarter of rows: far from any blended boundary
    return arr[: arr.shape[0] // 4]


def bottom(arr):
    return arr[-arr.shape[0] // 4 :]


# --- colour modes ------------------------------------------------------------------------------


def test_rgb_png_exact():
    _, arr = preprocess_image(encode(Image.new("RGB", (80, 80), (10, 200, 30)), "PNG"))
    assert_close(arr, (10, 200, 30), tol=0)


def test_rgba_transparent_areas_become_white():
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent *black*: must not show as black
    im.paste((*BLUE, 255), (0, 32, 64, 64))
    _, arr = preprocess_image(encode(im, "PNG"), name="cutout.png")
    assert_close(top(arr), WHITE)
    assert_close(bottom(arr), BLUE)


def test_rgba_half_transparent_blends_with_white():
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 128))
    _, arr = preprocess_image(encode(im, "PNG"), size=16)
    assert_close(arr, (127, 127, 127), tol=2)


def test_palette_with_transparency():
    _, arr = preprocess_image(palette_transparent_png())
    assert_close(top(arr), WHITE)
    assert_close(bottom(arr), GREEN)


def test_grayscale_l():
    _, arr = preprocess_image(encode(Image.new("L", (40, 40), 100), "PNG"), size=32)
    assert_close(arr, (100, 100, 100), tol=0)


def test_grayscale_la_transparent_becomes_white():
    im = Image.new("LA", (64, 64), (0, 0))
    im.paste((90, 255), (0, 32, 64, 64))
    _, arr = preprocess_image(encode(im, "PNG"))
    assert_close(top(arr), WHITE)
    assert_close(bottom(arr), (90, 90, 90))


def test_bilevel_mode_1():
    im = two_tone((64, 64), 1, 0, mode="1")
    _, arr = preprocess_image(encode(im, "PNG"))
    assert_close(top(arr), WHITE, tol=0)
    assert_close(bottom(arr), (0, 0, 0), tol=0)


def test_cmyk_jpeg_red_comes_out_red():
    assert Image.open(io.BytesIO(cmyk_jpeg())).mode == "CMYK"
    _, arr = preprocess_image(cmyk_jpeg(), name="cmyk.jpg")
    r, g, b = mean_rgb(arr)
    assert r > 200 and g < 60 and b < 60, (r, g, b)


@pytest.mark.parametrize("value, expected", [(0, 0), (32768, 128), (65535, 255), (8000, 31)])
def test_gray16_png_keeps_its_value_range(value, expected):
    data = gray16_png(value)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit image
    _, arr = preprocess_image(data, name="gray16.png")
    assert_close(arr, (expected,) * 3, tol=1)


def test_float_image_in_unit_range():
    im = Image.fromarray(np.full((16, 16), 0.5, dtype=np.float32))  # mode F
    arr = prepare_image(im, 8)
    assert_close(arr, (128, 128, 128), tol=1)


def test_animated_gif_uses_first_frame():
    _, arr = preprocess_image(animated_gif(), name="animated.gif")
    assert_close(arr, RED, tol=2)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"]
)
def test_load_image_always_returns_rgb(mode):
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    im = Image.new(mode, (16, 16))
    assert load_image(encode(im, fmt)).mode == "RGB"


# --- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_honoured(orientation):
    data = exif_rotated_jpeg(orientation)
    # The stored pixels alone put red at the side, so only honouring EXIF gives red on top.
    raw = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    assert raw.shape[1] > raw.shape[0]
    assert not np.allclose(mean_rgb(top(raw)), RED, atol=30)

    _, arr = preprocess_image(data, name="rotated.jpg")  # 64 px: decoded in JPEG draft mode
    assert_close(top(arr), RED, tol=16)
    assert_close(bottom(arr), BLUE, tol=16)

    upright = load_image(data)  # full resolution, no draft
    assert upright.size == (1200, 1600)
    assert_close(np.array(upright)[:100], RED, tol=16)


def test_center_crop_keeps_the_middle():
    im = Image.new("RGB", (300, 100), RED)
    im.paste(GREEN, (100, 0, 200, 100))
    im.paste(BLUE, (200, 0, 300, 100))
    _, arr = preprocess_image(encode(im, "PNG"), size=32)
    assert_close(arr[:, 2:-2], GREEN, tol=8)
    # tall images are cropped vertically the same way
    _, arr_t = preprocess_image(encode(im.transpose(Image.Transpose.ROTATE_90), "PNG"), size=32)
    assert_close(arr_t[2:-2], GREEN, tol=8)


@pytest.mark.parametrize("size", [64, 32])
def test_output_shape_dtype_and_tensor(size):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)), "PNG")
    x, arr = preprocess_image(data, size=size)
    assert arr.shape == (size, size, 3) and arr.dtype == np.uint8 and arr.flags.writeable
    assert x.shape == (1, 3, size, size) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x, images_to_tensor(arr[None], 3))


def test_channels_1_is_the_training_grayscale_of_the_same_array():
    data = exif_rotated_jpeg(6)
    x3, arr3 = preprocess_image(data, channels=3)
    x1, arr1 = preprocess_image(data, channels=1)
    assert x3.shape == (1, 3, 64, 64) and x1.shape == (1, 1, 64, 64)
    assert np.array_equal(arr1, arr3)  # the net sees the same picture either way
    assert torch.equal(x1, images_to_tensor(arr1[None], 1))


def test_12mp_jpeg_pattern_preserved():
    # 4000×3000: the centre square 3000×3000 holds four coloured quadrants.
    im = Image.new("RGB", (4000, 3000), WHITE)
    quads = {(0, 0): RED, (1, 0): GREEN, (0, 1): BLUE, (1, 1): (255, 255, 0)}
    for (qx, qy), c in quads.items():
        im.paste(c, (500 + qx * 1500, qy * 1500, 500 + (qx + 1) * 1500, (qy + 1) * 1500))
    x, arr = preprocess_image(encode(im, "JPEG", quality=90), name="phone.jpg")
    assert x.shape == (1, 3, 64, 64)
    for (qx, qy), c in quads.items():
        assert_close(arr[qy * 32 + 4 : qy * 32 + 28, qx * 32 + 4 : qx * 32 + 28], c, tol=16)


def test_huge_jpeg_decoded_at_reduced_scale_by_load_image():
    im = load_image(huge_jpeg(), name="huge.jpg")
    w, h = im.size
    assert w == h and w * h <= MAX_PIXELS and w >= 2000
    a = np.array(im)
    assert_close(a[: h // 4], RED, tol=16)
    assert_close(a[-h // 4 :], WHITE, tol=16)


def test_min_side_boundary():
    preprocess_image(encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG"))
    with pytest.raises(ImageError, match="thin.png"):
        preprocess_image(encode(Image.new("RGB", (500, MIN_SIDE - 1)), "PNG"), name="thin.png")


def test_bad_arguments_are_value_errors_not_image_errors():
    data = encode(Image.new("RGB", (16, 16)), "PNG")
    with pytest.raises(ValueError):
        preprocess_image(data, size=0)
    with pytest.raises(ValueError):
        preprocess_image(data, channels=2)
    with pytest.raises(ValueError):
        prepare_image(Image.new("RGB", (16, 16)), -1)


# --- sources and names -------------------------------------------------------------------------


def test_sources_bytes_path_and_file_objects(tmp_path):
    data = encode(Image.new("RGB", (32, 32), GREEN), "PNG")
    path = tmp_path / "héllo wörld 😀.png"
    path.write_bytes(data)
    upload = io.BytesIO(data)
    upload.name = "upload.png"  # like Streamlit's UploadedFile
    upload.read()  # already read once: getvalue() still sees the whole file
    with open(path, "rb") as f:
        for source in (data, bytearray(data), str(path), path, upload, f):
            _, arr = preprocess_image(source, size=16)
            assert_close(arr, GREEN, tol=0)


def test_names_in_messages(tmp_path):
    path = tmp_path / "my photo (1).jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageError) as e:
        preprocess_image(path)
    assert '"my photo (1).jpg"' in str(e.value) and str(tmp_path) not in str(e.value)

    upload = io.BytesIO(b"")
    upload.name = "upload.png"
    with pytest.raises(ImageError, match="upload.png"):
        preprocess_image(upload)

    with pytest.raises(ImageError, match="^The file "):  # no name at all
        preprocess_image(b"\0" * 10)

    with pytest.raises(ImageError, match="gone.png"):
        preprocess_image(tmp_path / "gone.png")


def test_control_characters_in_names_cannot_forge_lines():
    with pytest.raises(ImageError) as e:
        preprocess_image(b"", name="a\nb\x1b[31m.png")
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


# --- the bad/odd corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("case", image_cases(), ids=lambda c: c.name)
def test_corpus_case(case):
    if case.ok:
        x, arr = preprocess_image(case.data, name=case.filename)
        assert x.shape == (1, 3, 64, 64) and arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    else:
        with pytest.raises(ImageError) as e:
            preprocess_image(case.data, name=case.filename)
        assert case.filename in str(e.value)


def test_corpus_is_small_except_the_huge_photo():
    for case in image_cases():
        assert len(case.data) < (2_000_000 if case.name.startswith("huge") else 100_000), case.name


def test_pil_global_state_is_left_alone():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for case in image_cases():
        try:
            preprocess_image(case.data, name=case.filename)
        except ImageError:
            pass
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_own_pixel_limit_holds_when_pil_limit_is_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError, match="bomb.png"):
        preprocess_image(png_declaring(30000, 30000), name="bomb.png")


def test_bomb_warning_as_error_is_still_an_image_error():
    # 100 MP is over PIL's warning threshold but under its error threshold.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="big.png"):
            preprocess_image(png_declaring(10000, 10000), name="big.png")


# --- one photo path for training and prediction, at every input size ---------------------------


def phone_photo(size: tuple[int, int] = (640, 480), seed: int = 0) -> bytes:
    """A JPEG with fine detail and hard edges: resizing it two different ways gives different pixels."""
    rng = np.random.default_rng(seed)
    w, h = size
    a = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    im = Image.fromarray(a)
    im.paste((250, 250, 250), (w // 3, h // 4, w // 3 + 40, h // 4 + 200))
    return encode(im, "JPEG", quality=92)


def test_load_photo_is_load_image_then_prepare_image():
    data = phone_photo()
    for size in (16, 64, 128):
        expected = prepare_image(load_image(data, min_side=2 * size), size)
        assert np.array_equal(load_photo(data, size), expected)
    with pytest.raises(ValueError):
        load_photo(data, 0)


@pytest.mark.parametrize("size", [8, 64, 128])
def test_prepare_image_of_a_prepared_image_is_the_identity(size):
    # An image folder written from an HDF5 set must load back as the same arrays.
    a = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    assert np.array_equal(prepare_image(Image.fromarray(a), size), a)
    assert np.array_equal(load_photo(encode(Image.fromarray(a), "PNG"), size), a)


@pytest.mark.parametrize("net_size", [64, 128])
@pytest.mark.parametrize("channels", [3, 1])
def test_a_photo_reaches_the_net_as_its_training_photos_did(tmp_path, net_size, channels):
    """The same photo, once in an image folder the trainer trains on, once given to predict."""
    from core.folders import load_image_folder
    from core.spec import ModelSpec
    from core.trainer import TrainConfig, Trainer

    photo = phone_photo()
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    (root / "a" / "photo.jpg").write_bytes(photo)  # a class of one image: always in the training split
    for i in range(3):
        (root / "b").mkdir(exist_ok=True)
        (root / "b" / f"{i}.jpg").write_bytes(phone_photo((300, 400), seed=i + 1))
    ds = load_image_folder(root, image_size=64)
    (index,) = np.flatnonzero(ds.y_train == 0)

    spec = ModelSpec("lenet", 2, in_channels=channels, input_size=net_size)
    trainer = Trainer(spec, ds, TrainConfig(augment=False, device="cpu", epochs=1, batch_size=0))
    trained = trainer.x_train[index].contiguous()  # the tensor training feeds the net

    x, seen = preprocess_image(photo, size=net_size, channels=channels, image_size=ds.image_size)
    assert x.shape == (1, channels, net_size, net_size)
    assert np.array_equal(seen, ds.x_train[index])  # the photo as a training image
    torch.testing.assert_close(x[0], trained, rtol=0, atol=1e-6)

    if net_size != ds.image_size:
        # The old way, straight to the net's size, is a different picture from the one it trained on.
        direct, _ = preprocess_image(photo, size=net_size, channels=channels)
        assert (direct[0] - trained).abs().max() > 0.05


def test_image_size_defaults_to_the_net_size():
    data = phone_photo()
    x, arr = preprocess_image(data, size=96)
    x2, arr2 = preprocess_image(data, size=96, image_size=96)
    assert arr.shape == (96, 96, 3) and torch.equal(x, x2) and np.array_equal(arr, arr2)
    assert torch.equal(x, images_to_tensor(load_photo(data, 96)[None], 3))
    x3, arr3 = preprocess_image(data, size=96, image_size=64)
    assert arr3.shape == (64, 64, 3) and x3.shape == (1, 3, 96, 96)
    assert torch.equal(x3, images_to_tensor(arr3[None], 3, size=96))
    with pytest.raises(ValueError, match="image_size"):
        preprocess_image(data, size=64, image_size=0)
