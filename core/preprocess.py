"""Turning a user's photo into the net's input: the one preprocessing path for prediction and the app.

``preprocess_image`` is the whole pipeline: decode and check the file (``load_image``), center-crop
and resize it (``prepare_image``), then convert it with ``core.tensors.images_to_tensor``, the same
conversion training uses, so a photo reaches the net exactly as the training images did. The
uint8 array it also returns is "what the net sees", for the app to show.

``load_photo`` is the first two steps; image-folder data sets (``core.folders``) are made with it,
so a training photo and a photo to predict become the same array. A net whose input size differs
from its training images' (a 128-px ResNet trained on 64-px images) gets the photo made at the
images' size and then resized by ``images_to_tensor``, exactly as the trainer resizes its data.
A picture that is already decoded — a video frame as an H×W×3 uint8 RGB array, or a PIL image —
skips the decoding and takes the same crop, resize and conversion (the live webcam, ``core.live``).

Every way a file can be unusable ends in ``ImageError`` with a message meant for the user. Global
PIL state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``, warning filters) is left alone because
other code in the process may rely on it; our own limits are checked explicitly instead.
"""
from __future__ import annotations

import io
import math
import os
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.tensors import images_to_tensor

# PIL format ids we decode. Restricting Image.open to these keeps PIL's rarely used (and less
# hardened) plugins away from uploaded bytes. MPO, the multi-picture JPEG many phones write,
# is opened by the JPEG plugin.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
_SUPPORTED_TEXT = "JPEG, PNG, GIF, BMP, WebP or TIFF"

# Most pixels we will decode at once (about 150 MB as RGB). A 12 MP phone photo is well inside;
# bigger JPEGs still pass because they are decoded at a reduced scale (see _draft_side).
MAX_PIXELS: int = 50_000_000

# Smaller than this there is nothing of a hand left to recognise; refusing beats upscaling noise.
MIN_SIDE: int = 8

_WHITE = (255, 255, 255, 255)

# A photo: the file (bytes, path, file object) or a picture already decoded (an RGB array, a PIL image).
PhotoSource = bytes | str | os.PathLike | BinaryIO | np.ndarray | Image.Image


class ImageError(ValueError):
    """A file that cannot be used as an image; str() is a user-facing message naming what was wrong and what to do."""


def load_image(
    source: bytes | str | os.PathLike | BinaryIO,
    name: str | None = None,
    *,
    min_side: int | None = None,
) -> Image.Image:
    """Decode and check an image file and return it as an upright RGB image.

    ``source`` is the file's bytes, a path, or a binary file object (a Streamlit upload works; an
    object with ``getvalue()`` is read whole, others from their current position). ``name`` is
    used only in error messages; it defaults to the path's or file object's name.

    The image is fully decoded (so damaged and truncated files are caught here, not later),
    turned upright according to its EXIF orientation, and converted to RGB: transparency is
    composited on white, palette, grayscale, CMYK and 16-bit/float images are converted with
    their real value range.

    ``min_side`` lets a JPEG be decoded at a reduced scale (1/2 to 1/8) as long as its shorter
    side stays at least ``min_side`` pixels, which is far faster for big photos. Independently,
    a JPEG over ``MAX_PIXELS`` is decoded at the scale that brings it under the limit.

    Raises ``ImageError`` for anything that is not a usable image.
    """
    data, name = _read_source(source, name)
    label = file_label(name)
    if not data:
        raise ImageError(f"{label} is empty (0 bytes). Upload the photo again.")
    # Anything PIL or a codec raises while parsing untrusted bytes (OSError, SyntaxError,
    # struct.error, zlib errors, EOFError, ...) means "unusable file" to the user, so every
    # exception is mapped to ImageError with the best message we can give.
    try:
        return _decode(data, label, min_side)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning is only raised when someone made warnings errors; it means the same thing.
        raise ImageError(
            f"{label} declares an enormous image size, far above the {_mp(MAX_PIXELS, '-')} limit "
            "(it may be a decompression bomb). Use a normal photo, resized below "
            f"{_mp(MAX_PIXELS)} if needed."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(_unsupported_message(label, data)) from None
    except MemoryError:
        raise ImageError(
            f"{label} is too large to decode in memory. Resize it (e.g. to 2000×2000) and try again."
        ) from None
    except Exception as exc:
        if "truncated" in str(exc).lower():
            what = "is incomplete: the image data ends early (an interrupted download or copy?)"
        else:
            what = "is damaged: its image data could not be decoded"
        raise ImageError(
            f"{label} {what}. Open it in an image viewer and re-save it as {_SUPPORTED_TEXT}, "
            "or upload the original photo again."
        ) from None


def prepare_image(image: Image.Image, size: int) -> np.ndarray:
    """Center-crop ``image`` to a square and resize it to ``size``×``size``.

    Returns a writable ``size``×``size``×3 uint8 RGB array. The resize is antialiased (LANCZOS,
    preceded by an exact box ``reduce`` for big images, which is both faster and as good), so a
    large photo shrinks without aliasing. Non-RGB images are converted as in ``load_image``.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    image = _to_rgb(image)
    left, top, side = centre_square(*image.size)
    small = image.resize(
        (size, size),
        Image.Resampling.LANCZOS,
        box=(left, top, left + side, top + side),
        # reduce() by an integer factor first while the result stays >= 2× the target:
        reducing_gap=2.0,
    )
    return np.array(small, dtype=np.uint8)  # np.array copies: torch wants a writable array


def centre_square(width: int, height: int) -> tuple[int, int, int]:
    """The square ``prepare_image`` keeps of a ``width``×``height`` picture: (left, top, side)."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def load_photo(source: PhotoSource, size: int, name: str | None = None) -> np.ndarray:
    """Decode a photo and make it a ``size``×``size``×3 uint8 array: ``load_image`` → ``prepare_image``.

    The one way a photo becomes an image array, for a data set's training photos and for a photo
    to predict alike. ``source`` may also be a decoded picture (see :func:`decoded_picture`): it
    then skips the decoding. Raises ``ImageError`` for an unusable file or picture.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if isinstance(source, (np.ndarray, Image.Image)):
        return prepare_image(decoded_picture(source, name), size)
    # 2× the target keeps enough detail for the antialiased resize to do its job.
    return prepare_image(load_image(source, name, min_side=2 * size), size)


def decoded_picture(picture: np.ndarray | Image.Image, name: str | None = None) -> Image.Image:
    """A picture that is already decoded, checked like a file's: an H×W×3 (RGB) or H×W (gray)
    uint8 array — a video frame — or a PIL image, as an RGB image.

    Raises ``ImageError`` for another shape or dtype, a side under ``MIN_SIDE`` or more than
    ``MAX_PIXELS`` pixels.
    """
    label = file_label(name) if name else "The picture"
    if isinstance(picture, Image.Image):
        w, h = picture.size
    else:
        a = picture
        if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise ImageError(f"{label} must be an H×W×3 (RGB) or H×W (gray) uint8 array, "
                             f"got shape {a.shape} and dtype {a.dtype}.")
        h, w = a.shape[:2]
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{label} is only {w}×{h} pixels; images must be at least {MIN_SIDE}×{MIN_SIDE}.")
    if w * h > MAX_PIXELS:
        raise ImageError(f"{label} is {w}×{h} pixels ({_mp(w * h)}), more than the {_mp(MAX_PIXELS, '-')} limit.")
    if isinstance(picture, Image.Image):
        return _to_rgb(picture)
    return Image.fromarray(np.ascontiguousarray(picture)).convert("RGB")


def preprocess_image(
    source: PhotoSource,
    size: int = 64,
    channels: int = 3,
    name: str | None = None,
    *,
    image_size: int | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Turn a photo (a file, or a decoded picture such as a video frame) into the net's input.

    ``load_photo`` at ``image_size`` → ``images_to_tensor`` at ``size``. ``size`` is the net's
    input side; ``image_size`` is the side of the images the net was trained on (default: the
    same). When they differ, the photo is made exactly like a training image and then resized by
    ``images_to_tensor`` exactly like the training batches, so a net built for 128 px and trained
    on 64-px images sees a photo as it saw its data.

    Returns the 1×C×``size``×``size`` float tensor in [0, 1] (``channels`` 3 = RGB, 1 = the
    training grayscale) and the ``image_size``×``image_size``×3 uint8 array the tensor was made
    from, i.e. the photo as a training image. Raises ``ImageError`` for an unusable file or picture.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if image_size is None:
        image_size = size
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    array = load_photo(source, image_size, name)
    return images_to_tensor(array[None], channels, size=size), array


# --- internals ---------------------------------------------------------------------------------


def _read_source(source: bytes | str | os.PathLike | BinaryIO, name: str | None) -> tuple[bytes, str | None]:
    """Get the file's bytes (reading everything first keeps PIL away from open handles)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, (str, os.PathLike)):
        # Only the base name goes into messages: the server's directories are none of the user's business.
        name = name if name is not None else os.path.basename(os.fspath(source))
        try:
            with open(source, "rb") as f:
                return f.read(), name
        except OSError as exc:
            raise ImageError(
                f"{file_label(name)} could not be opened ({exc.strerror or exc}). Check the file and try again."
            ) from None
    if name is None:
        name = getattr(source, "name", None)
        name = os.path.basename(name) if isinstance(name, str) else None
    getvalue = getattr(source, "getvalue", None)
    data = getvalue() if callable(getvalue) else source.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected a binary file object, got one that returns {type(data).__name__}")
    return bytes(data), name


def _decode(data: bytes, label: str, min_side: int | None) -> Image.Image:
    """The decode steps of load_image; raises PIL's exceptions, mapped by the caller."""
    image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise ImageError(
            f"{label} is only {w}×{h} pixels; images must be at least {MIN_SIDE}×{MIN_SIDE}. "
            "Use a larger photo of the hand."
        )
    side = _draft_side(w, h, min_side)
    if side is not None:
        # A no-op for everything but JPEG; libjpeg then decodes at 1/2, 1/4 or 1/8 scale,
        # keeping both sides >= `side`. EXIF is untouched, so orientation still applies below.
        image.draft("RGB", (side, side))
    dw, dh = image.size
    if dw * dh > MAX_PIXELS:  # checked before decoding, whatever PIL's global limit is set to
        raise ImageError(
            f"{label} is {w}×{h} pixels ({_mp(w * h)}), more than the {_mp(MAX_PIXELS, '-')} limit. "
            f"Resize it (e.g. to 2000×2000) or save it as JPEG, and try again."
        )
    image.load()
    _apply_exif_orientation(image)
    return _to_rgb(image)


def _draft_side(w: int, h: int, min_side: int | None) -> int | None:
    """The square draft request: the smallest allowed by `min_side` and by the pixel limit."""
    candidates = []
    if min_side is not None and min_side > 0:
        candidates.append(min_side)
    if w * h > MAX_PIXELS:
        # JPEG scales by powers of two; draft picks scale = min(w, h) // request, rounded down
        # to one, so ask for the shorter side divided by the power of two that fits the limit.
        factor = 2 ** math.ceil(math.log2(math.sqrt(w * h / MAX_PIXELS)))
        candidates.append(max(1, min(w, h) // factor))
    return min(candidates) if candidates else None


def _apply_exif_orientation(image: Image.Image) -> None:
    """Turn a phone photo upright in place (cameras store it sideways plus an EXIF flag)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # A malformed EXIF block should not cost the user their photo; use the stored orientation.
        pass


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, keeping what the pixels mean."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        # Transparent areas become white, like the page a drawing or cut-out sits on;
        # PIL's plain convert("RGB") would drop alpha and expose arbitrary (often black) colour.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")  # P, L, 1, CMYK, YCbCr, ...


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale → 8-bit RGB by value range (PIL clips these to white)."""
    a = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        a = a / 257.0  # 0..65535 → 0..255
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if image.mode == "F" and lo >= 0.0 and hi <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        elif lo >= 0.0 and hi <= 255.0:
            pass  # already 8-bit values in a wider container
        elif lo >= 0.0 and hi <= 65535.0:
            a = a / 257.0  # 16-bit data (older PIL opens 16-bit PNGs as "I")
        else:
            a = (a - lo) * (255.0 / (hi - lo))  # anything else: stretch its own range
    gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _unsupported_message(label: str, data: bytes) -> str:
    """Say what the file looks like when it is not an image we read, and what to use instead."""
    head = data[:1024]
    kind = None
    if head.startswith(b"%PDF"):
        kind = "a PDF document"
    elif len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            kind = "a HEIC/HEIF photo (the iPhone default)"
        elif brand in (b"avif", b"avis"):
            kind = "an AVIF image"
        else:
            kind = "a video or ISO media file"
    elif b"<svg" in head.lower() or (head.lstrip().startswith(b"<?xml") and b"svg" in head.lower()):
        kind = "an SVG drawing"
    if kind is not None:
        return (
            f"{label} is {kind}, which is not supported. Save or export it as {_SUPPORTED_TEXT} "
            "(a screenshot works too) and try again."
        )
    return (
        f"{label} is not an image format TorchLab can read. Use a {_SUPPORTED_TEXT} image "
        "and try again."
    )


def file_label(name: str | None) -> str:
    """The file as messages call it; control characters are replaced so a name can't forge lines."""
    if not name:
        return "The file"
    clean = "".join(c if c.isprintable() else "?" for c in name)
    if len(clean) > 120:
        clean = clean[:100] + "…" + clean[-19:]
    return f'"{clean}"'


def _mp(pixels: int, sep: str = " ") -> str:
    """Pixels as "12 megapixels" (or "50-megapixel" as an adjective)."""
    return f"{pixels / 1e6:.0f}{sep}megapixel{'s' if sep == ' ' else ''}"
