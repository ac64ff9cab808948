"""A corpus of odd and broken image files, generated in memory, for preprocessing and app tests.

``image_cases()`` returns ``ImageCase``s: the file's bytes, the name a user's upload would carry,
and whether the app must accept it (``ok=True``) or refuse it with an ``ImageError`` that names
the file (``ok=False``). Everything is built with Pillow/numpy from scratch and cached, so the
whole corpus costs well under a second once per process.

``hdf5_cases(tmp_dir)`` and ``checkpoint_cases(tmp_dir)`` (further down) do the same for the
tutorial's HDF5 data files and for uploaded checkpoints; ``tests/test_bad_inputs.py`` runs all
three corpora through core, ``tests/test_app_data.py`` and ``tests/test_app_predict.py`` through
the app's upload widgets.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RED = (255, 0, 0)
GREEN = (0, 160, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ImageCase:
    """One file of the corpus: ``ok`` says whether it must be accepted (True) or refused (False)."""

    name: str
    data: bytes
    filename: str
    ok: bool


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """Save ``image`` in ``fmt`` to bytes."""
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def two_tone(size: tuple[int, int], top: tuple, bottom: tuple, mode: str = "RGB") -> Image.Image:
    """An image whose top half is ``top`` and bottom half ``bottom``."""
    w, h = size
    im = Image.new(mode, size, bottom)
    im.paste(top, (0, 0, w, h // 2))
    return im


def exif_rotated_jpeg(orientation: int = 6, size: tuple[int, int] = (1200, 1600)) -> bytes:
    """A JPEG that shows red-on-top / blue-at-bottom ONLY when its EXIF orientation is honoured.

    ``size`` is the upright (displayed) size; big enough that a 64-px preprocess decodes it
    in JPEG draft mode, so the test also covers orientation after draft.
    """
    upright = two_tone(size, RED, BLUE)
    # The stored pixels are the upright picture turned the opposite way of what the tag says
    # to apply when displaying (6 = display rotated 90° clockwise, 8 = counter-clockwise).
    stored = upright.transpose(
        {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=90, exif=exif.tobytes())


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height``: a decompression-bomb lookalike.

    A valid 1×1 PNG with the IHDR size patched and its CRC recomputed, so PIL reads the header
    happily and only the size checks can stop it. ~70 bytes whatever the declared size.
    """
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    # signature(8) + length(4) + b"IHDR"(4) → width, height at 16..24; the CRC covers type+data.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def gray16_png(value: int = 32768, size: tuple[int, int] = (64, 48)) -> bytes:
    """A 16-bit grayscale PNG (PIL mode I;16) filled with ``value`` (32768 = mid-grey)."""
    arr = np.full((size[1], size[0]), value, dtype=np.uint16)
    return encode(Image.fromarray(arr), "PNG")


def cmyk_jpeg(cmyk: tuple = (0, 255, 255, 0), size: tuple[int, int] = (64, 64)) -> bytes:
    """A CMYK JPEG of one colour (default pure red: no cyan, full magenta and yellow)."""
    return encode(Image.new("CMYK", size, cmyk), "JPEG", quality=95)


def palette_transparent_png(size: tuple[int, int] = (64, 64)) -> bytes:
    """A palette PNG: transparent top half (index 0), green bottom half (index 1)."""
    im = Image.new("P", size, 0)
    im.putpalette([0, 0, 0, *GREEN] + [0] * (3 * 254))
    im.paste(1, (0, size[1] // 2, size[0], size[1]))
    return encode(im, "PNG", transparency=0)


def animated_gif(size: tuple[int, int] = (64, 64)) -> bytes:
    """A 3-frame GIF whose first frame is red (then green, blue)."""
    frames = [Image.new("RGB", size, c) for c in (RED, GREEN, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def truncated_jpeg() -> bytes:
    """The first 60% of a detailed JPEG: a broken download."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = encode(Image.fromarray(arr), "JPEG", quality=90)
    return data[: len(data) * 6 // 10]


def truncated_png() -> bytes:
    """The first 60% of a detailed PNG."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = encode(Image.fromarray(arr), "PNG")
    return data[: len(data) * 6 // 10]


def huge_jpeg(size: tuple[int, int] = (8000, 8000)) -> bytes:
    """A real 8000×8000 (64 MP) JPEG, red top half, white bottom half (~1 MB, ~0.25 s to build)."""
    return encode(two_tone(size, RED, WHITE), "JPEG", quality=50)


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="red"/></svg>\n'
)
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
# An ISO-BMFF 'ftyp' box with the HEIC brand, then an empty 'meta' box: what an iPhone photo starts with.
HEIC = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + struct.pack(">I", 12) + b"meta\0\0\0\0"


@functools.lru_cache(maxsize=1)
def _build() -> tuple[ImageCase, ...]:
    green_png = encode(Image.new("RGB", (64, 64), GREEN), "PNG")
    green_jpg = encode(Image.new("RGB", (64, 64), GREEN), "JPEG", quality=95)
    noise = np.random.default_rng(2).bytes(4096)
    return (
        # --- must be refused ---
        ImageCase("zero_bytes", b"", "empty.jpg", False),
        ImageCase("random_bytes", noise, "noise.jpg", False),
        ImageCase("truncated_jpeg", truncated_jpeg(), "truncated.jpg", False),
        ImageCase("truncated_png", truncated_png(), "truncated.png", False),
        ImageCase("decompression_bomb", png_declaring(30000, 30000), "bomb.png", False),
        # 60 MP: below PIL's own bomb warning, so only our MAX_PIXELS check stops it.
        ImageCase("over_pixel_limit_png", png_declaring(10000, 6000), "poster.png", False),
        ImageCase("one_pixel", encode(Image.new("RGB", (1, 1), RED), "PNG"), "pixel.png", False),
        ImageCase("svg_renamed_png", SVG, "drawing.png", False),
        ImageCase("pdf_renamed_png", PDF, "document.png", False),
        ImageCase("heic_renamed_png", HEIC, "IMG_0001.png", False),
        ImageCase("odd_name_random_bytes", noise[:500], "héllo wörld 😀 (copy).jpg", False),
        # --- must be accepted ---
        ImageCase("huge_8000x8000_jpeg", huge_jpeg(), "huge.jpg", True),
        ImageCase("gray16_png", gray16_png(), "gray16.png", True),
        ImageCase("cmyk_jpeg", cmyk_jpeg(), "cmyk.jpg", True),
        ImageCase("palette_transparent_png", palette_transparent_png(), "palette.png", True),
        ImageCase("animated_gif", animated_gif(), "animated.gif", True),
        ImageCase("exif_rotated_jpeg", exif_rotated_jpeg(6), "rotated.jpg", True),
        ImageCase("gray_jpeg", encode(two_tone((64, 64), 30, 220, "L"), "JPEG"), "gray.jpg", True),
        ImageCase("webp", encode(Image.new("RGB", (64, 64), GREEN), "WEBP"), "photo.webp", True),
        ImageCase("bmp", encode(Image.new("RGB", (64, 64), GREEN), "BMP"), "photo.bmp", True),
        ImageCase("tiff", encode(Image.new("RGB", (64, 64), GREEN), "TIFF"), "scan.tif", True),
        ImageCase("odd_name_path_traversal", green_png, "../../etc/passwd.png", True),
        ImageCase("odd_name_unicode", green_jpg, "héllo wörld 😀.jpg", True),
    )


def image_cases() -> list[ImageCase]:
    """The corpus (built once per process; the list is new each call, the cases are immutable)."""
    return list(_build())


# --- HDF5 data files ----------------------------------------------------------------------------
#
# ``hdf5_cases(tmp_dir)`` returns ``H5Case``s for the Overview page's upload and for
# ``core.data.install_dataset_file``: the bytes of a file named like one of the tutorial's own
# (``train_signs.h5`` / ``test_signs.h5``), and whether it must be installed (``ok=True``) or refused
# with a ``DatasetError`` naming the file. Each file is written with h5py into ``tmp_dir`` and read
# back as bytes; all but one are a few kilobytes.


@dataclass(frozen=True)
class H5Case:
    """One HDF5 upload. ``upload_limit``: patch ``core.data.MAX_UPLOAD_BYTES`` to this many bytes
    before installing (the size guard is tested without allocating 200 MB)."""

    name: str
    filename: str
    data: bytes
    ok: bool
    upload_limit: int | None = None

    @property
    def split(self) -> str:
        return self.filename.split("_", 1)[0]


H5_SIZE = 16  # pixels: the smallest real-looking set that passes validation (8–512, square)
H5_CLASSES = 6


def _h5_images(n: int, size: int = H5_SIZE, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def _h5_labels(n: int, classes: int = H5_CLASSES) -> np.ndarray:
    return (np.arange(n) % classes).astype(np.int64)


def write_h5(path, split: str = "train", **datasets) -> bytes:
    """Write a tutorial-layout file: ``{split}_set_x``, ``{split}_set_y``, ``list_classes``.

    Keyword arguments override (array) or drop (``None``) ``x``, ``y`` and ``classes``; any other
    keyword is written as an extra data set of that name.
    """
    import h5py

    n = 12
    layout = {
        f"{split}_set_x": datasets.pop("x", _h5_images(n)),
        f"{split}_set_y": datasets.pop("y", _h5_labels(n)),
        "list_classes": datasets.pop("classes", np.arange(H5_CLASSES, dtype=np.int64)),
        **datasets,
    }
    with h5py.File(path, "w") as f:
        for key, value in layout.items():
            if value is not None:
                f.create_dataset(key, data=value)
    with open(path, "rb") as f:
        return f.read()


def hdf5_cases(tmp_dir) -> list[H5Case]:
    """The HDF5 corpus, built in ``tmp_dir``."""
    d = Path(tmp_dir) / "h5-corpus"
    d.mkdir(parents=True, exist_ok=True)

    def h5(name: str, split: str = "train", **datasets) -> bytes:
        return write_h5(d / f"{name}.h5", split, **datasets)

    valid = h5("valid")
    nan_images = _h5_images(12).astype(np.float32)
    nan_images[0, 0, 0, 0] = np.nan
    big = h5("big", x=np.zeros((200, 64, 64, 3), np.uint8), y=_h5_labels(200))  # ~2.4 MB, uncompressed
    return [
        # --- must be installed ---
        H5Case("valid_small_set", "train_signs.h5", valid, True),
        H5Case("valid_test_split", "test_signs.h5", h5("valid_test", "test", x=_h5_images(6, seed=1), y=_h5_labels(6)), True),
        # The tutorial's own files store the labels as a (1, N) row.
        H5Case("labels_as_1xN_row", "train_signs.h5", h5("row", y=_h5_labels(12)[None, :]), True),
        # --- must be refused ---
        H5Case("not_hdf5", "train_signs.h5", b"x,y\n1,2\n" * 64, False),
        H5Case("zero_bytes", "train_signs.h5", b"", False),
        H5Case("truncated_hdf5", "train_signs.h5", valid[: len(valid) // 2], False),
        H5Case("missing_keys", "train_signs.h5", h5("missing", y=None, images=_h5_images(12)), False),
        H5Case("test_keys_in_train_file", "train_signs.h5", h5("wrong_split", "test"), False),
        H5Case("wrong_rank", "train_signs.h5", h5("rank", x=_h5_images(12)[..., 0]), False),
        H5Case("four_channels", "train_signs.h5", h5("rgba", x=_h5_images(12, channels=4)), False),
        H5Case("non_square", "train_signs.h5", h5("nonsquare", x=_h5_images(12)[:, :, :12]), False),
        H5Case("float32_with_nan", "train_signs.h5", h5("float", x=nan_images), False),
        H5Case("labels_out_of_range", "train_signs.h5", h5("labels", y=_h5_labels(12) + 3), False),
        H5Case("negative_labels", "train_signs.h5", h5("negative", y=_h5_labels(12) - 1), False),
        H5Case("float_labels", "train_signs.h5", h5("float_labels", y=_h5_labels(12).astype(np.float64)), False),
        H5Case("x_y_length_mismatch", "train_signs.h5", h5("mismatch", y=_h5_labels(11)), False),
        H5Case("zero_images", "train_signs.h5", h5("empty", x=np.zeros((0, H5_SIZE, H5_SIZE, 3), np.uint8), y=_h5_labels(0)), False),
        H5Case("one_class", "train_signs.h5", h5("one_class", y=np.zeros(12, np.int64), classes=np.array([0])), False),
        H5Case("bigger_than_upload_limit", "train_signs.h5", big, False, upload_limit=1024 * 1024),
    ]


# --- checkpoints --------------------------------------------------------------------------------
#
# ``checkpoint_cases(tmp_dir)`` returns ``CkptCase``s: the bytes of an uploaded ``.pt`` file,
# whether ``core.checkpoint.load_checkpoint`` must accept it (``ok``), and whether
# ``check_fits(ckpt, CHOSEN_SPEC)`` must accept the loaded checkpoint (``fits``). The malicious
# cases carry a ``marker``: a file their pickled code would create if anything ever unpickled it.

CHOSEN_SPEC_KW = dict(arch="mlp", num_classes=6, in_channels=3, input_size=16, hidden=(8,), batchnorm=False)
CKPT_CLASSES = ("0", "1", "2", "3", "4", "5")
OTHER_CLASSES = ("bar", "column", "diagonal")  # tests/conftest.py's tiny set, 3 classes


def chosen_spec():
    from core.spec import ModelSpec

    return ModelSpec(**CHOSEN_SPEC_KW)


@dataclass(frozen=True)
class CkptCase:
    name: str
    filename: str
    data: bytes
    ok: bool  # load_checkpoint accepts it
    fits: bool = False  # ...and check_fits(ckpt, chosen_spec()) accepts it
    classes: tuple[str, ...] = ()  # the class names an accepted checkpoint must report
    marker: Path | None = None  # a file that exists only if the file's code ran


class _RunsCode:
    """Pickles as a call to ``exec(code)``: unpickling it runs the code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _marker_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('unpickled: code ran')"


def malicious_pickle(marker) -> bytes:
    """A bare pickle stream that creates ``marker`` when unpickled (``pickle.loads`` runs it)."""
    import pickle

    return pickle.dumps({"format": "torchlab-checkpoint", "state_dict": _RunsCode(_marker_code(marker))}, protocol=2)


def malicious_checkpoint(marker) -> bytes:
    """``torch.save``'s zip format with a TorchLab-looking header whose pickle creates ``marker``
    when loaded with ``torch.load(weights_only=False)``."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": "torchlab-checkpoint", "version": 1, "spec": dict(CHOSEN_SPEC_KW, hidden=[8]),
                "classes": list(CKPT_CLASSES), "state_dict": _RunsCode(_marker_code(marker))}, buf)
    return buf.getvalue()


def _saved(path, spec_kw: dict, classes) -> bytes:
    from core.checkpoint import save_checkpoint
    from core.nets import build_model
    from core.spec import ModelSpec

    spec = ModelSpec(**spec_kw)
    save_checkpoint(path, build_model(spec, "module", seed=0), spec, "module", classes,
                    metrics={"test_acc": 0.5}, dataset={"key": "synthetic", "title": "corpus", "synthetic": True})
    return path.read_bytes()


def _edited(valid: bytes, **changes) -> bytes:
    """The valid checkpoint's payload with some entries replaced (safe: weights_only load)."""
    import torch

    payload = torch.load(io.BytesIO(valid), weights_only=True)
    payload.update(changes)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def checkpoint_cases(tmp_dir) -> list[CkptCase]:
    """The checkpoint corpus, built in ``tmp_dir`` (markers live there too)."""
    import torch

    from core.checkpoint import export_full_model
    from core.nets import build_model

    d = Path(tmp_dir) / "ckpt-corpus"
    d.mkdir(parents=True, exist_ok=True)
    valid = _saved(d / "valid.pt", CHOSEN_SPEC_KW, CKPT_CLASSES)
    lenet_kw = dict(arch="lenet", num_classes=6, in_channels=1, input_size=16)
    other_arch = _saved(d / "lenet.pt", lenet_kw, CKPT_CLASSES)
    other_classes = _saved(d / "three.pt", dict(CHOSEN_SPEC_KW, num_classes=3), OTHER_CLASSES)
    model = build_model(chosen_spec(), "module", seed=0)
    bare = io.BytesIO()
    torch.save(model.state_dict(), bare)
    lenet_state = torch.load(io.BytesIO(other_arch), weights_only=True)["state_dict"]
    noise = np.random.default_rng(3).bytes(4096)
    return [
        # --- must load ---
        CkptCase("valid", "mlp-synthetic.pt", valid, True, True, CKPT_CLASSES),
        CkptCase("another_architecture", "lenet-synthetic.pt", other_arch, True, False, CKPT_CLASSES),
        CkptCase("another_class_count", "three-classes.pt", other_classes, True, False, OTHER_CLASSES),
        # --- must be refused, and nothing in them run ---
        CkptCase("malicious_pickle", "evil.pt", malicious_pickle(d / "PWNED-pickle"), False, marker=d / "PWNED-pickle"),
        CkptCase("malicious_zip_checkpoint", "evil-zip.pt", malicious_checkpoint(d / "PWNED-zip"), False,
                 marker=d / "PWNED-zip"),
        CkptCase("whole_pickled_module", "full-module.pt", export_full_model(model), False),
        CkptCase("random_bytes", "random.pt", noise, False),
        CkptCase("zero_bytes", "empty.pt", b"", False),
        CkptCase("truncated_checkpoint", "truncated.pt", valid[: len(valid) * 6 // 10], False),
        CkptCase("bare_state_dict", "state-dict.pth", bare.getvalue(), False),
        CkptCase("weights_of_another_net", "mismatch.pt", _edited(valid, state_dict=lenet_state), False),
        CkptCase("future_format_version", "future.pt", _edited(valid, version=99), False),
        CkptCase("class_names_do_not_match", "classes.pt", _edited(valid, classes=["a", "b"]), False),
        CkptCase("bad_spec_values", "spec.ckpt", _edited(valid, spec=dict(CHOSEN_SPEC_KW, num_classes="6", hidden=[8])), False),
    ]
