"""A corpus of odd and broken image files, generated in memory, for preprocessing and app tests.

``image_cases()`` returns ``ImageCase``s: the file's bytes, the name a user's upload would carry,
and whether the app must accept it (``ok=True``) or refuse it with an ``ImageError`` that names
the file (``ok=False``). Everything is built with Pillow/numpy from scratch and cached, so the
whole corpus costs well under a second once per process.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

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
