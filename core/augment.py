"""Batch augmentation on the device: the photo of a user's hand is not a SIGNS image.

SIGNS shows one kind of photo: a hand in the middle of a pale, plain wall, in even light. A webcam
shows the hand bigger or smaller, off-centre and tilted, in front of shelves, doors, brick walls,
faces and shirts, under warm or cool, dim or bright light, blurred and JPEG-compressed. Each change below
stands for one of those differences; every image of a batch draws its own values.

Order: relight the hand and swap the backdrop (while the wall is still where the keying expects
it); warp (random zoom, shift, rotation and mirror, or a crop that frames the hand); blur; light
(brightness, contrast, tone curve, colour temperature, cast); sensor noise; JPEG compression.
All of it is batched tensor ops on the batch's device — no loop over images, and no sizes that
depend on the data — so a GPU runs it as one fixed sequence of kernels per batch. The loops that remain
run over a fixed, small number of shapes, never over the batch. The costly changes (cluttered
backdrops, blur, JPEG) are computed only for the share of images that get them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; each image draws its own values. A range or share of 0 turns
    a change off. The field defaults are the augmentation from before the webcam work (mild
    geometry and light, flat backdrops); :func:`augment_for` gives each net its measured mix."""

    scale: tuple[float, float] = (0.9, 1.1)  # >1 zooms in (a crop), <1 zooms out
    shift: float = 0.08  # fraction of the image side
    rotate_deg: float = 10.0
    mirror: bool = False  # SIGNS shows one hand side; a webcam shows either hand, often mirrored
    # A webcam crop frames the hand, not the hand-and-forearm of a SIGNS photo: in this share of
    # images the warp is centred on the hand (the top of the non-wall region) and sized so the
    # hand's width fills 1 / hand_crop_margin of the frame, instead of the random zoom above.
    hand_crop_p: float = 0.0
    hand_crop_margin: tuple[float, float] = (1.15, 1.6)
    brightness: float = 0.15
    contrast: float = 0.2
    color: float = 0.05  # an independent shift per colour plane (RGB only)
    # Mid-tones lifted or pressed by a tone curve x + a·x·(1 − x), a drawn in ±tone (gamma-like, at
    # the cost of two multiply-adds): the exposure curves of other cameras, dim rooms.
    tone: float = 0.0
    temperature: float = 0.0  # warm (red up, blue down) or cool light, as a fraction (RGB only)
    # SIGNS photos all have the same pale wall; a webcam shows anything. Swap the wall (keyed from
    # the border colour) in this share of images.
    background_p: float = 0.65
    background_key: float = 0.12
    background_noise: float = 0.08  # the new backdrop's grain: noise std drawn from 0 to this
    # Pixels between ``background_key`` and that plus ``background_matte`` from the wall colour are
    # hand edges blended with the wall: the wall's share of them is swapped too, so the hand does
    # not keep a pale outline of the SIGNS wall on a dark backdrop. 0 keys hard.
    background_matte: float = 0.0
    # The share of swapped backdrops that are cluttered (blurred blobs, shelf/door-like blocks,
    # skin-coloured ovals like a face or an arm) instead of a shaded flat colour: a net that has
    # only ever seen plain walls takes any skin-toned or edged region for fingers.
    clutter_p: float = 0.0
    clutter_shapes: int = 6
    # The share of cluttered backdrops with a patterned patch or wall (brick, stripes, a check: brick
    # walls, blinds, shirts, rugs). Fists in front of a brick wall were read as five: rows of hard
    # edges look like fingers to a net that has seen only soft rooms.
    texture_p: float = 0.0
    texture_strength: float = 0.25  # the pattern's amplitude, drawn from 0 to this
    # SIGNS hands are always darker than their wall; in a room the hand is as often the brighter
    # thing. The hand (every non-wall pixel) is relit by a gain drawn in exp(±hand_light).
    hand_light: float = 0.0
    blur_p: float = 0.0  # share of images blurred (focus, motion, a low-resolution webcam)
    blur_sigma: float = 1.2  # Gaussian sigma in pixels, drawn from 0 to this
    noise: float = 0.0  # sensor noise std, drawn from 0 to this
    jpeg_p: float = 0.0  # share of images JPEG-compressed
    jpeg_quality: tuple[int, int] = (20, 90)


# For the nets that read hands: everything a webcam frame differs in, measured on webcam-hands
# (other people's hands, never trained on) and on SIGNS' test set under generated conditions by
# bench/bench_robustness.py. Gentler on the hand than on its surroundings: cropping around the
# hand in every image, mirroring, or relighting the hand cost clean SIGNS accuracy for no gain on
# real photos. Re-measured within ``mixed`` (README, "Robustness"): mirroring this part, tighter
# hand framing, or black bars such as padded webcam crops show traded SIGNS accuracy for gains on
# real photos within seed noise. Busier backdrops did not: nearly every swapped wall cluttered, and
# half of those patterned, read more of the strangers' photos at the same SIGNS accuracy.
WEBCAM = AugmentConfig(
    hand_crop_p=0.5,
    tone=0.2,
    temperature=0.1,
    background_p=0.95,
    background_matte=0.15,
    clutter_p=0.9,
    texture_p=0.5,
    blur_p=0.15,
    jpeg_p=0.15,
)


@dataclass(frozen=True)
class MixedAugment:
    """Two augmentations in one batch: a fixed share ``p`` of each batch's images (drawn anew every
    batch) gets ``other``, the rest ``base``.

    A net that sees only webcam-like images forgets what a clean SIGNS photo looks like; one that
    sees only clean ones never learns rooms. Mixing keeps both in every batch.
    """

    base: AugmentConfig
    other: AugmentConfig
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"the mixed share p must be in 0–1; got {self.p}")


AUGMENTATIONS: dict[str, str] = {
    "standard": "zoom, shift, tilt, light and colour, and a swapped wall: accurate on SIGNS-like photos",
    "webcam": "also hand framing, cluttered room-like backdrops (some with brick, stripes or checks), colour "
              "temperature, tone, blur and JPEG: reads more webcam photos of other hands, a few points lower "
              "on SIGNS itself",
    "mixed": "webcam in 70 % of each batch, standard in the rest: reads nearly as many webcam photos "
             "as webcam, and clean SIGNS-like photos about as well as standard",
    "mirrored": "standard, and half the images mirrored left-right (either hand): the fine-tuning recipe's, "
                "for a few photos of a hand",
}


def augment_for(arch: str, preset: str = "standard") -> AugmentConfig | MixedAugment:
    """The augmentation a net trains with: the ``standard`` one per net, :data:`WEBCAM`, or the two
    mixed.

    ``standard`` is what keeps each net's SIGNS accuracy: the mild field defaults, with the backdrop
    swapped in 80 % of the ResNet's images (better than 65 % for it on other walls). ``webcam`` is
    :data:`WEBCAM` for every net. ``mixed`` gives :data:`WEBCAM` to 70 % of each batch and the net's
    ``standard`` to the rest (:class:`MixedAugment`; shares of 0.3 and 0.5 were measured too). ``bench/bench_robustness.py`` measures them
    (README, "Robustness"). ``mirrored`` is the net's ``standard`` with ``mirror=True``: what
    :func:`core.trainer.finetune_recipe` trains a few photos with (``bench/bench_finetune.py``;
    README, "Fine-tuning").
    """
    if preset == "webcam":
        return WEBCAM
    if preset not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {preset!r}")
    standard = AugmentConfig(background_p=0.8) if arch == "resnet50" else AugmentConfig()
    if preset == "mirrored":
        return replace(standard, mirror=True)
    return MixedAugment(standard, WEBCAM, 0.7) if preset == "mixed" else standard


def mirrors(arch: str, preset: str) -> bool:
    """Whether training with ``preset`` shows the net every image as often mirrored left-right as
    not: such a net has learnt both sides alike, and reads a photo better as the mean of its
    answers for the photo and its mirror image (``core.engine.class_probabilities``)."""
    cfg = augment_for(arch, preset)
    return all(part.mirror for part in ((cfg.base, cfg.other) if isinstance(cfg, MixedAugment) else (cfg,)))


def augment_batch(x: torch.Tensor, generator: torch.Generator,
                  cfg: AugmentConfig | MixedAugment = AugmentConfig()) -> torch.Tensor:
    """Randomly warp and recolour an N×C×H×W batch in [0, 1]; returns a new tensor in [0, 1].

    ``generator`` must live on ``x``'s device; drawing every random number from it keeps a run
    reproducible and independent of any other run in the process. C is 1 (gray) or 3 (RGB);
    the colour-only changes (temperature, cast) apply to RGB only. A :class:`MixedAugment` splits
    the batch (a fixed count, randomly chosen) between its two configurations.
    """
    if isinstance(cfg, MixedAugment):
        return _augment_mixed(x, generator, cfg)
    n, c, h, w = x.shape
    dev, dt = x.device, x.dtype

    # Every per-image value of the warp and the keying in one draw, in this order: zoom, tilt, mirror,
    # shift; the hand framing's margin, height, sideways jitter and whether an image is framed; the
    # hand's relighting.
    ranges = {"zoom": cfg.scale, "angle": (-cfg.rotate_deg, cfg.rotate_deg)}
    if cfg.mirror:
        ranges["flip"] = (0, 1)
    ranges["shift"] = (-cfg.shift, cfg.shift, 2)
    if cfg.hand_crop_p > 0:
        ranges |= {"margin": cfg.hand_crop_margin, "top": (0.7, 1.0), "jitter": (-0.15, 0.15), "framed": (0, 1)}
    if cfg.hand_light > 0:
        ranges["hand_light"] = (-cfg.hand_light, cfg.hand_light, 1, 1, 1)
    v = dict(zip(ranges, _uniforms(generator, x, n, *ranges.values())))

    zoom, angle = v["zoom"], v["angle"] * (math.pi / 180)
    flip = torch.where(v["flip"] < 0.5, -1.0, 1.0).to(dt) if cfg.mirror else torch.ones(n, device=dev, dtype=dt)
    shift = v["shift"] * 2  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )  # N, 2, 3: output pixel → where to sample in the input
    if cfg.background_p > 0 or cfg.hand_light > 0 or cfg.hand_crop_p > 0:
        wall = _wall_colour(x)
        distance = (x - wall).abs_().amax(dim=1, keepdim=True)  # N, 1, H, W: how far from the wall colour
        if cfg.hand_crop_p > 0:
            framed = _hand_frame(distance >= cfg.background_key, angle, flip, v["margin"], v["top"], v["jitter"])
            theta = torch.where((v["framed"] < cfg.hand_crop_p).view(n, 1, 1), framed, theta)
        gain = torch.exp(v["hand_light"]) if cfg.hand_light > 0 else None
        x = _swap_background(x, wall, distance, generator, cfg, gain)
    # Border padding repeats the background instead of inventing black corners SIGNS never shows.
    x = F.grid_sample(x, _affine_grid(theta, h, w), mode="bilinear", padding_mode="border", align_corners=False)
    # From here on x is this call's own tensor: the changes below write into it in place, which spares
    # allocating a new batch per step.

    if cfg.blur_p > 0 and cfg.blur_sigma > 0:
        idx = _some(generator, x, cfg.blur_p)
        sigma = _uniform(generator, x, 0, cfg.blur_sigma, len(idx))
        x.index_copy_(0, idx, gaussian_blur(x.index_select(0, idx), sigma, max_sigma=cfg.blur_sigma))

    # Light, in one draw: contrast, brightness, colour cast, tone curve, colour temperature.
    ranges = {"contrast": (1 - cfg.contrast, 1 + cfg.contrast, 1, 1, 1),
              "brightness": (-cfg.brightness, cfg.brightness, 1, 1, 1)}
    if c == 3:
        ranges["cast"] = (-cfg.color, cfg.color, c, 1, 1)
    if cfg.tone > 0:
        ranges["tone"] = (-cfg.tone, cfg.tone, 1, 1, 1)
    if cfg.temperature > 0 and c == 3:
        ranges["warmth"] = (-cfg.temperature, cfg.temperature)
    v = dict(zip(ranges, _uniforms(generator, x, n, *ranges.values())))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x.sub_(mean).mul_(v["contrast"]).add_(mean).add_(v["brightness"])
    if c == 3:
        x.add_(v["cast"])
    x.clamp_(0.0, 1.0)
    if cfg.tone > 0:
        x.add_((v["tone"] * x).mul_(1 - x))  # x + a·x·(1 − x)
    if cfg.temperature > 0 and c == 3:
        x.mul_(_temperature_gains(v["warmth"], dt)).clamp_(0.0, 1.0)  # color_temperature, in place
    if cfg.noise > 0:
        x.add_(_grain(generator, x) * _uniform(generator, x, 0, cfg.noise, n, 1, 1, 1))
    x.clamp_(0.0, 1.0)
    if cfg.jpeg_p > 0:
        idx = _some(generator, x, cfg.jpeg_p)
        quality = _uniform(generator, x, *cfg.jpeg_quality, len(idx))
        x.index_copy_(0, idx, jpeg_like(x.index_select(0, idx), quality))
    return x


def _augment_mixed(x: torch.Tensor, generator: torch.Generator, cfg: MixedAugment) -> torch.Tensor:
    order = torch.randperm(x.shape[0], generator=generator, device=x.device)
    k = round(cfg.p * x.shape[0])
    out = torch.empty_like(x)
    for idx, part in ((order[:k], cfg.other), (order[k:], cfg.base)):
        if len(idx):
            out.index_copy_(0, idx, augment_batch(x.index_select(0, idx), generator, part))  # back in place
    return out


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, h, w), align_corners=False)``, the same numbers, as broadcast
    arithmetic: on the CPU the library's matrix product over every pixel costs several times more."""

    def centres(k: int) -> torch.Tensor:  # pixel centres in [-1, 1], computed as affine_grid does
        if k <= 1:
            return torch.zeros(1, device=theta.device, dtype=theta.dtype)
        return torch.linspace(-1, 1, k, device=theta.device, dtype=theta.dtype) * (k - 1) / k

    t = theta[..., None, None]  # N, 2, 3, 1, 1: per output coordinate, the weights of x, y and 1
    grid = (centres(w).view(1, 1, w) * t[:, :, 0] + centres(h).view(1, h, 1) * t[:, :, 1]).add_(t[:, :, 2])
    # Made as two planes (broadcasting into interleaved pairs is slow), handed over interleaved
    # (grid_sample reads that layout faster).
    return grid.permute(0, 2, 3, 1).contiguous()  # N, H, W, 2


def _some(generator: torch.Generator, like: torch.Tensor, share: float) -> torch.Tensor:
    """Indices of a random ``share`` of the batch (a fixed count, so the costly changes run on
    those images only, with no data-dependent sizes that would stall a GPU)."""
    n = like.shape[0]
    return torch.randperm(n, generator=generator, device=like.device)[: round(share * n)]


def color_temperature(x: torch.Tensor, warmth: torch.Tensor) -> torch.Tensor:
    """Relight an N×3×H×W RGB batch warmer (``warmth`` > 0: red up, blue down) or cooler (< 0).

    ``warmth`` holds one value per image; 0.2 scales red by 1.2 and blue by 0.8, about the step
    from daylight to indoor bulb light after a camera's partial white balance.
    """
    return (x * _temperature_gains(warmth, x.dtype)).clamp_(0.0, 1.0)


def _temperature_gains(warmth: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """N×3×1×1 RGB gains of :func:`color_temperature`."""
    w = warmth.to(dtype).view(-1, 1, 1, 1)
    return torch.cat([1 + w, torch.ones_like(w), 1 - w], dim=1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float | None = None) -> torch.Tensor:
    """Blur each image of an N×C×H×W batch with its own Gaussian ``sigma`` (pixels; 0 = unchanged).

    Separable convolution with one kernel per image, as a grouped convolution over the whole
    batch; edges are reflected. The kernel reaches 2.5 ``max_sigma`` either side: give the largest
    sigma the caller can draw, and the kernel's size never depends on the data — no read of the
    device, one shape for a CUDA graph. Without it, the batch's largest sigma is read.
    """
    n, c, h, w = x.shape
    if n == 0:
        return x
    radius = max(1, math.ceil(2.5 * (float(sigma.max()) if max_sigma is None else max_sigma)))
    radius = min(radius, (min(h, w) - 1) // 2)
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(n, 1).clamp_min(1e-3)
    k = torch.exp(-0.5 * (taps / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # N, K; sigma → 0 leaves a single 1 in the middle
    k = k.repeat_interleave(c, dim=0)  # N·C, K
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


# libjpeg's base quantisation tables (ITU T.81 Annex K), in natural (row-major) order.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_JPEG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)


def jpeg_like(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Approximate JPEG compression of an N×C×H×W batch at a per-image ``quality`` (1–100).

    What a JPEG encoder loses, done as tensor ops: 8×8 block DCT, quantisation with libjpeg's tables
    scaled by quality as libjpeg scales them, and for RGB the YCbCr conversion with chroma at half
    resolution (4:2:0). Entropy coding is lossless and is left out.
    """
    n, c, h, w = x.shape
    if n == 0:
        return x
    q = quality.to(x.dtype).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(n, 1, 1, 1)

    def table(base: tuple[int, ...]) -> torch.Tensor:
        t = _constant(base, x.device, x.dtype).view(1, 1, 1, 64)
        return torch.floor((t * scale + 50) / 100).clamp(1, 255)  # N, 1, 1, 64

    if c == 1:
        return _jpeg_planes(x, table(_JPEG_LUMA))
    ycc = _rgb_to_ycbcr(x)
    y = _jpeg_planes(ycc[:, :1], table(_JPEG_LUMA))
    chroma = F.avg_pool2d(ycc[:, 1:], 2, ceil_mode=True)
    chroma = _jpeg_planes(chroma, table(_JPEG_CHROMA))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    return _ycbcr_to_rgb(torch.cat([y, chroma], 1)).clamp(0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """64×64: the orthonormal 2-D DCT-II of a flattened 8×8 block, as one matrix (so the whole
    batch's blocks go through one matrix product). Made once per device and dtype; not to be modified."""
    k = torch.arange(8, device=device, dtype=dtype)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = d[0] / math.sqrt(2)
    return torch.kron(d, d)


def _jpeg_planes(x: torch.Tensor, qtable: torch.Tensor) -> torch.Tensor:
    """Block DCT → quantise → inverse DCT of every plane of an N×C×H×W batch in [0, 1]."""
    n, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    hb, wb = x.shape[-2] // 8, x.shape[-1] // 8
    blocks = (x * 255 - 128).reshape(n, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * wb, 64)
    d = _dct_matrix(x.device, x.dtype)
    coef = blocks @ d.T
    coef = torch.round(coef / qtable) * qtable
    blocks = (coef @ d).reshape(n, c, hb, wb, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)
    return ((blocks + 128) / 255).clamp(0.0, 1.0)[..., :h, :w]


def _rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.cat([y, (b - y) * 0.564 + 0.5, (r - y) * 0.713 + 0.5], 1)  # JFIF, in [0, 1]


def _ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    return torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def _grain(generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N×1×H×W noise of unit variance, the same in every colour plane (luminance grain).

    Uniform rather than Gaussian, and one plane rather than three: the net cannot tell the
    difference at this amplitude, and the draw costs a fraction of ``randn`` over N×C×H×W.
    """
    n, _, h, w = like.shape
    unit = torch.rand(n, 1, h, w, generator=generator, device=like.device, dtype=like.dtype)
    return unit.sub_(0.5).mul_(math.sqrt(12))


def _uniform(generator: torch.Generator, like: torch.Tensor, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=like.device, dtype=like.dtype) * (hi - lo) + lo


def _uniforms(generator: torch.Generator, like: torch.Tensor, n: int, *ranges: tuple[float, ...],
              repeat: int | None = None) -> list[torch.Tensor]:
    """Several :func:`_uniform` draws in one call: each range ``(lo, hi, *shape)`` gives an N×shape
    tensor of values in [lo, hi); with ``repeat``, all of them that many times over, on a leading dimension.

    On the CPU the numbers are exactly those of one ``_uniform(generator, like, lo, hi, n, *shape)``
    per range in turn (and ``repeat`` times over): a draw takes its numbers from the generator one by
    one, so one long draw splits into the short ones. (A GPU generator hands out numbers per call, so
    there the values differ from separate draws; their distribution does not.) Small batches draw
    dozens of such values per image, and a call per draw costs more than the drawing.
    """
    ranges = tuple(tuple(r) for r in ranges)  # hashable, for the cached rows
    sizes = [math.prod(r[2:]) for r in ranges]
    lo, width = _range_rows(ranges, like.device, like.dtype)
    lead = () if repeat is None else (repeat,)
    u = torch.rand(*lead, sum(sizes), n, generator=generator, device=like.device, dtype=like.dtype) * width + lo
    # Row i of u holds the i-th n values drawn: a range's rows together are its N×shape values in order.
    return [part.reshape(*lead, n, *r[2:]) for part, r in zip(u.split(sizes, dim=-2), ranges)]


@functools.lru_cache(maxsize=64)
def _range_rows(ranges: tuple[tuple[float, ...], ...], device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """R×1 lows and widths for :func:`_uniforms`: each range's, once per row it fills."""
    rows = [(r[0], r[1] - r[0]) for r in ranges for _ in range(math.prod(r[2:]))]
    lo, width = _constant(tuple(rows), device, dtype).unbind(1)
    return lo.view(-1, 1), width.view(-1, 1)


@functools.lru_cache(maxsize=64)
def _constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small constant tensor, made once per device and dtype rather than copied from Python on
    every call. Shared: never modify it."""
    return torch.tensor(values, device=device, dtype=dtype)


def background_mask(x: torch.Tensor, key: float = 0.12) -> torch.Tensor:
    """N×1×H×W: 1 where a pixel is backdrop, keyed as within ``key`` of the border's median colour.

    Crude, but SIGNS walls are plain, and the hand and its shadow stay.
    """
    return ((x - _wall_colour(x)).abs().amax(dim=1, keepdim=True) < key).to(x.dtype)


def _wall_colour(x: torch.Tensor) -> torch.Tensor:
    """N×C×1×1: the median colour of each image's border."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # N, C, 2H+2W
    return border.median(dim=-1).values[..., None, None]


def _hand_frame(solid: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor, margin: torch.Tensor,
                top_frac: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
    """N×2×3 warps that frame each image's hand, as a crop around a labelled hand would.

    ``solid`` (N×1×H×W, bool) marks the non-wall pixels. The hand is the top of that region: its
    width is measured over the rows from its highest pixel down to half the image, so the forearm
    below does not widen it. ``margin``, ``top_frac`` and ``jitter`` are each image's random crop size
    (the hand's width times it), fingertip height and sideways shift (see augment_batch).
    """
    n, _, h, w = solid.shape
    like = angle
    rows = solid[:, 0].sum(dim=2) >= 2  # N, H: rows with hand in them
    idx_h = torch.arange(h, device=solid.device)
    top = torch.where(rows, idx_h, h).amin(dim=1).clamp(max=h // 2)  # N
    band = (idx_h.view(1, h) >= top.view(n, 1)) & (idx_h.view(1, h) < (top + h // 2).view(n, 1))
    cols = (solid[:, 0] & band.view(n, h, 1)).sum(dim=1) >= 2  # N, W
    idx_w = torch.arange(w, device=solid.device)
    left = torch.where(cols, idx_w, w).amin(dim=1)
    right = torch.where(cols, idx_w, -1).amax(dim=1)
    found = right >= left
    # A lone finger is narrow: at least 45 % of the frame is taken, or a "1" would be blown up 3×.
    width = torch.where(found, right - left + 1, w).to(like.dtype).clamp(min=0.45 * w)
    side = width * margin  # pixels
    half = (side / w).clamp(max=1.0)  # half the crop's side in grid units ([-1, 1] spans w)
    cx = torch.where(found, (left + right + 1).to(like.dtype) / w - 1, torch.zeros_like(half))
    top_n = top.to(like.dtype) * 2 / h - 1
    cy = top_n + half * top_frac  # the fingertips near the top of the frame
    cx = cx + half * jitter
    cos, sin = torch.cos(angle) * half, torch.sin(angle) * half
    return torch.stack([torch.stack([cos * flip, -sin, cx], 1), torch.stack([sin * flip, cos, cy], 1)], 1)


def _swap_background(x: torch.Tensor, wall: torch.Tensor, distance: torch.Tensor, generator: torch.Generator,
                     cfg: AugmentConfig, hand_gain: torch.Tensor | None = None) -> torch.Tensor:
    """Relight the hand by ``hand_gain`` (N×1×1×1, or None to leave it), and replace the backdrop of a
    random share of the images by a shaded colour or a cluttered scene. ``wall`` and ``distance`` are
    from the keying (see augment_batch).

    Backdrops are made only for the images that get one (a fixed count, drawn as indices).
    """
    if hand_gain is not None:
        x = torch.where(distance < cfg.background_key, x, (x * hand_gain).clamp_max_(1.0))
    idx = _some(generator, x, cfg.background_p)
    xs, wall, distance = x.index_select(0, idx), wall.index_select(0, idx), distance.index_select(0, idx)
    k = round(cfg.clutter_p * len(idx))  # idx is in random order: its first k get a cluttered room
    other, grain = _flat_backdrop(xs, generator, cfg, skip=k)
    if k > 0:
        other = torch.cat([_cluttered_backdrop(xs[:k], generator, cfg).add_(grain[:k]), other])
    if cfg.background_matte > 0:
        # Edge pixels trade their wall share for the backdrop's.
        # 1 − (d − key) / matte, in place (−s + 1 is exactly 1 − s).
        share = (distance - cfg.background_key).div_(cfg.background_matte).neg_().add_(1).clamp_(0, 1)
        xs.add_((other - wall).mul_(share))
    return x.index_copy(0, idx, torch.where(distance < cfg.background_key, other, xs).clamp_(0, 1))


def _flat_backdrop(x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig,
                   skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random colour, shaded by a linear ramp, with grain; returns it and the grain alone.

    The random values are drawn for every image of ``x``, the backdrop made for ``x[skip:]`` only
    (the first ``skip`` get a cluttered one, with this grain); the grain is returned for all.
    """
    n, c, h, w = x.shape
    ramp_x = torch.linspace(-0.5, 0.5, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
    ramp_y = torch.linspace(-0.5, 0.5, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
    shade_x, shade_y = _uniforms(generator, x, n, (-0.4, 0.4, 1, 1, 1), (-0.4, 0.4, 1, 1, 1))
    grain = _grain(generator, x)
    strength, colour = _uniforms(generator, x, n, (0, cfg.background_noise, 1, 1, 1), (0.05, 0.95, c, 1, 1))
    grain.mul_(strength)
    shade = shade_x[skip:] * ramp_x + shade_y[skip:] * ramp_y
    return (colour[skip:] + shade).add_(grain[skip:]), grain


def _cluttered_backdrop(x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """A room-like scene: blurred colour blobs, then axis-aligned blocks (shelves, doors, frames)
    and ovals, a share of them skin-coloured (faces, arms), each in its own muted colour.

    Drawn at half resolution and upsampled: four times cheaper, and a webcam focused on a hand
    sees the room behind it a little soft anyway. The shapes are made all at once (one more
    dimension, the shape) and painted in turn, the later over the earlier.
    """
    n, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    sh, sw = max(8, h // 2), max(8, w // 2)

    # Rooms are mostly muted: a colour is a gray level plus a little chroma, scaled per image by a
    # saturation, rarely high.
    saturation, gray, chroma, fine, fine_strength, skin_level = _uniforms(
        generator, x, n, (0, 0.6, 1, 1, 1), (0.05, 0.95, 1, 3, 3), (-0.5, 0.5, c, 3, 3),
        (-0.15, 0.15, c, 8, 8), (0, 1, 1, 1, 1), (0.45, 1.1, 1, 1, 1))
    scene = F.interpolate(gray + chroma * saturation, size=(sh, sw), mode="bilinear", align_corners=False)
    scene = scene + F.interpolate(fine * fine_strength, size=(sh, sw), mode="bilinear", align_corners=False)
    yy = torch.linspace(0, 1, sh, device=dev, dtype=dt).view(1, 1, sh, 1)
    xx = torch.linspace(0, 1, sw, device=dev, dtype=dt).view(1, 1, 1, sw)
    # Skin tones as RGB (bright to dark); gray images see their luma.
    skin_rgb = _constant((0.88, 0.68, 0.56), dev, dt).view(1, 3, 1, 1)
    if c == 1:
        skin_rgb = (skin_rgb * _constant((0.299, 0.587, 0.114), dev, dt).view(1, 3, 1, 1)).sum(1, keepdim=True)
    skin = skin_rgb * skin_level

    # A fixed few shapes per image, S × N × … : centre, radii, oval or block, there or not, skin or not,
    # colour (gray level, chroma) and shading.
    cx, cy, rx, ry, kind, present, is_skin, shape_gray, shape_chroma, tilt = _uniforms(
        generator, x, n, (0, 1, 1, 1, 1), (0, 1, 1, 1, 1), (0.05, 0.4, 1, 1, 1), (0.05, 0.4, 1, 1, 1),
        (0, 1, 1, 1, 1), (0, 1, 1, 1, 1), (0, 1, 1, 1, 1), (0.05, 0.95, 1, 1, 1), (-0.5, 0.5, c, 1, 1),
        (-0.15, 0.15, 1, 1, 1), repeat=cfg.clutter_shapes)
    dx, dy = xx - cx, yy - cy
    oval = (dx / rx) ** 2 + (dy / ry) ** 2 < 1
    block = (dx.abs() < rx) & (dy.abs() < ry)
    shapes = torch.where(kind < 0.5, oval, block) & (present < 0.7)
    colours = torch.where(is_skin < 0.3, skin, shape_gray + shape_chroma * saturation)
    colours = colours + tilt * dy  # shaded, not flat
    for shape, colour in zip(shapes, colours):
        scene = torch.where(shape, colour, scene)
    scene = F.interpolate(scene, size=(h, w), mode="bilinear", align_corners=False)
    # Patterns are drawn at full resolution: at half, upsampled, their edges would be soft.
    return scene.add_(_pattern(scene, generator, cfg)).clamp_(0, 1) if cfg.texture_p > 0 else scene


def _pattern(x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """N×C×H×W to add to a backdrop: brick courses, stripes at any angle or a check, over the whole
    backdrop or a block of it, in a ``texture_p`` share of the images (zero in the rest)."""
    n, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    (course, brick, offset, angle, period, period2, phase, kind, cx, cy, rx, ry, whole, strength, used,
     tint) = _uniforms(generator, x, n, *[(lo, hi, 1, 1) for lo, hi in (
        (4, 10), (8, 20), (0, 20), (0, math.pi), (2.5, 12), (2.5, 12), (0, 2 * math.pi), (0, 1),
        (0, w), (0, h), (0.15 * w, 0.6 * w), (0.15 * h, 0.6 * h), (0, 1), (0, cfg.texture_strength), (0, 1))],
        (0.7, 1.3, c, 1, 1))
    yy = torch.arange(h, device=dev, dtype=dt).view(1, h, 1)
    xx = torch.arange(w, device=dev, dtype=dt).view(1, 1, w)
    # Brick: mortar lines between courses, and joints half a brick apart from course to course,
    # each brick a little lighter or darker.
    row = torch.floor((yy + offset) / course)
    along = xx + offset + (row % 2) * brick / 2
    mortar = ((yy + offset) % course < 1.2) | (along % brick < 1.2)
    bricks = torch.where(mortar, 1.0, torch.sin(row * 7.1 + torch.floor(along / brick) * 3.3).mul_(0.3).sub_(0.3))
    # Stripes (blinds, shirts) and a check of two crossing ones (plaid, tiles), hard-edged.
    cos, sin = torch.cos(angle), torch.sin(angle)
    stripes = torch.sign(torch.sin((xx * cos + yy * sin) * (2 * math.pi) / period + phase))
    across = torch.sign(torch.sin((yy * cos - xx * sin) * (2 * math.pi) / period2 + phase))
    pattern = torch.where(kind < 0.4, bricks, torch.where(kind < 0.7, stripes, (stripes + across) * 0.5))
    block = ((xx - cx).abs() < rx) & ((yy - cy).abs() < ry)
    shown = (block | (whole < 0.5)) & (used < cfg.texture_p)
    return (pattern * strength * shown).unsqueeze(1) * tint
