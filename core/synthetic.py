"""A generated "finger-count" hand-sign set: the built-in default dataset.

A fresh machine has no copy of the tutorial's SIGNS files, so the app ships this stand-in with the
same schema and classes: ``N×64×64×3`` uint8 RGB images of one hand, labelled 0–5 by the number of
raised fingers, one pose per count as in SIGNS. The same renderer makes the generated hands the
LeNet's recipe trains on beside real photos (:func:`core.data.generated_hands`), where a share of
the 3s is shown the other common way (``other_threes``). Each hand is a palm, a forearm and five capsules
(thumb and four fingers); a raised digit is a long capsule, a folded one a short knuckle lying over
the palm. Tilt, position, size, proportions, handedness, skin tone, wall, shadow, lighting and
sensor noise all vary, tuned so the set stays learnable by the app's LeNet-5 from 1,200 images
(97–98 % test accuracy) yet is not a single template per class.

Rendering is vectorised over the whole batch with signed distance fields: every part's distance
is evaluated on the pixel grid and turned into coverage with a one-pixel ramp, which antialiases
the edges analytically without a supersampled grid. Everything is drawn from one seeded
``numpy`` generator, so a seed always gives byte-identical arrays.

The variation ranges below were measured against a 1,200-image LeNet-5: each extra degree of
freedom (a second pose per count, wider tilt or placement, stronger lighting gradients or noise)
costs it several points of test accuracy and makes training erratic, so widen them with care.
"""
from __future__ import annotations

import numpy as np

SYNTHETIC_CLASSES: list[str] = ["0", "1", "2", "3", "4", "5"]

# Raised digits (thumb, index, middle, ring, pinky) for each count, following SIGNS: 3 is
# thumb-index-middle, 4 keeps the thumb folded. Each row raises exactly ``label`` digits.
_RAISED = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
    ],
    dtype=bool,
)
# The other common way to show three: index, middle and ring finger, the thumb holding the pinky
# down. SIGNS never shows it; many people do (README, "Robustness").
_RAISED_THREE_OTHER = np.array([0, 1, 1, 1, 0], dtype=bool)

# Hand geometry in "hand units" (a palm is about 0.9 wide), palm centre at the origin, fingers
# pointing to +y. Index first, so the thumb sits on the -x side before mirroring.
_PALM_HALF = (0.44, 0.44)
_PALM_CORNER = 0.16
_FINGER_X = (-0.35, -0.12, 0.12, 0.35)
_FINGER_LEN = (0.88, 0.98, 0.90, 0.74)
_FINGER_R = (0.100, 0.105, 0.100, 0.090)
# Fingers fan out so a gap of wall shows between raised ones, which is what makes them countable.
_FINGER_SPLAY_DEG = (-14.0, -5.0, 5.0, 15.0)
_SPLAY_RANGE = (0.8, 1.5)
_RAISED_BASE_Y = 0.30
# A folded finger is drawn from the middle of the palm up to just past its top edge: the part on the
# palm reads as the curled finger, the few pixels above it as a knuckle, far short of a raised one.
_FOLDED_Y = (-0.04, 0.40)
_THUMB_BASE = (-0.34, -0.16)
_THUMB_R = 0.11
_WRIST_Y = -0.30
_FOREARM_R = 0.30
# Brightness at the rim of each part relative to its middle. Digits get the darkest rims: where
# a finger lies over the palm or touches its neighbour, the rim is the only thing outlining it.
_RIM_FLOOR_FOREARM = 0.7
_RIM_FLOOR_PALM = 0.75
_RIM_FLOOR_DIGIT = 0.5
# Pose ranges: tilt either way, hand unit as a fraction of the image, and how much of the free room
# around the hand its position may wander over (1 = anywhere it fits).
_MAX_TILT_DEG = 25.0
_TILT_SD_DEG = 10.0
_SCALE_RANGE = (0.38, 0.46)
_PLACE_JITTER = 0.3
_MIRROR_P = 0.5

# Skin tones from light to dark (RGB in [0, 1]); a tone is a random point along this ramp.
_SKIN_RAMP = np.array(
    [
        [0.96, 0.84, 0.75],
        [0.92, 0.74, 0.62],
        [0.84, 0.62, 0.48],
        [0.72, 0.50, 0.35],
        [0.55, 0.36, 0.24],
        [0.38, 0.24, 0.16],
    ],
    dtype=np.float32,
)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Minimum grayscale gap between skin and wall, so the LeNet's gray input always shows the hand.
_WALL_SKIN_GAP = 0.16
_BLOTCH_CELLS = 6

# Rendering works through the batch in chunks so the per-pixel temporaries stay cache-sized.
_CHUNK = 32


def generate_finger_set(
    n_train: int = 1200, n_test: int = 120, seed: int = 0, size: int = 64, other_threes: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate a finger-count hand-sign set in the SIGNS schema.

    Returns ``x_train`` (``n_train×size×size×3`` uint8 RGB), ``y_train`` (int64 in 0..5),
    ``x_test`` and ``y_test``. Classes are balanced (counts differ by at most one). The two splits
    come from independent child streams of ``seed``, so they are disjoint draws and the train
    split does not change when ``n_test`` does. ``other_threes`` is the share of the 3s shown the
    other common way (index, middle and ring finger instead of SIGNS' thumb, index and middle);
    at 0 the set is the same, byte for byte, as without it.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"split sizes must be non-negative, got {n_train} and {n_test}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if not 0.0 <= other_threes <= 1.0:
        raise ValueError(f"other_threes is a share in 0–1, got {other_threes}")
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    x_train, y_train = _generate_split(np.random.default_rng(train_seq), n_train, size, other_threes)
    x_test, y_test = _generate_split(np.random.default_rng(test_seq), n_test, size, other_threes)
    return x_train, y_train, x_test, y_test


def _generate_split(rng: np.random.Generator, n: int, size: int,
                    other_threes: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` balanced labels and render one image for each."""
    labels = rng.permutation(np.arange(n) % len(SYNTHETIC_CLASSES)).astype(np.int64)
    raised = _RAISED[labels]  # a copy: the poses of this split
    if other_threes > 0:  # drawn only then, so the default set's stream is unchanged
        raised[(labels == 3) & (rng.random(n) < other_threes)] = _RAISED_THREE_OTHER
    hands = _sample_hands(rng, raised, size)
    walls = _sample_walls(rng, n, hands["skin"] @ _LUMA)
    shadows = _sample_shadows(rng, n, size)
    cameras = _sample_cameras(rng, n)

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        hand = _take(hands, part)
        cover, shade, union = _render_hand(hand, size)
        # Composite channels-first: broadcasting a mask over a trailing axis of length 3 is several
        # times slower in numpy than over whole image rows.
        rgb = _paint_wall(_take(walls, part), size)
        rgb *= 1.0 - _cast_shadow(union, _take(shadows, part))[:, None]
        skin = hand["skin"][:, :, None, None] * shade[:, None]
        skin -= rgb
        skin *= cover[:, None]
        rgb += skin
        # The sensor noise is the only randomness drawn inside the loop, after every scene
        # parameter, so it never shifts the scenes; its stream depends on the fixed chunk size.
        images[part] = _expose(rgb, _take(cameras, part), rng).transpose(0, 2, 3, 1)
    return images, labels


def _take(params: dict[str, np.ndarray], part: slice) -> dict[str, np.ndarray]:
    """The per-image parameters of one chunk."""
    return {key: value[part] for key, value in params.items()}


def _rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate points counter-clockwise by ``angle`` radians (broadcasting over the batch)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * x - s * y, s * x + c * y


def _sample_hands(rng: np.random.Generator, raised: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Sample shape, pose, placement and skin for each hand (``raised``: ``n×5``, which digits are
    up), in pixel coordinates.

    Returns ``seg`` (``n×6×5`` capsules ``(ax, ay, bx, by, r)``: forearm, thumb, index, middle,
    ring, pinky), ``palm`` (``n×6`` rounded boxes ``(cx, cy, angle, half_w, half_h, corner)``)
    and ``skin`` (``n×3`` RGB).
    """
    n = len(raised)
    width = rng.uniform(0.9, 1.12, n)  # per-hand proportions, so hands differ in more than scale
    seg = _hand_parts(rng, raised, width)
    # Left and right hands: mirror about the hand's long axis; then tilt the whole hand.
    seg[:, :, [0, 2]] *= np.where(rng.random(n) < _MIRROR_P, -1.0, 1.0)[:, None, None]
    tilt = np.clip(rng.normal(0.0, _TILT_SD_DEG, n), -_MAX_TILT_DEG, _MAX_TILT_DEG)
    angle = np.deg2rad(tilt)
    seg[..., 0], seg[..., 1] = _rotate(seg[..., 0], seg[..., 1], angle[:, None])
    seg[..., 2], seg[..., 3] = _rotate(seg[..., 2], seg[..., 3], angle[:, None])
    half_w, half_h = _PALM_HALF[0] * width, np.full(n, _PALM_HALF[1])

    scale, cx, cy = _fit_in_frame(rng, seg, half_w, half_h, angle, size)
    # Image rows grow downwards while hand y grows upwards, hence the flipped y.
    s, x0, y0 = scale[:, None], cx[:, None], cy[:, None]
    pixels = np.stack(
        [x0 + seg[..., 0] * s, y0 - seg[..., 1] * s, x0 + seg[..., 2] * s, y0 - seg[..., 3] * s,
         seg[..., 4] * s],
        axis=-1,
    )
    palm = np.stack([cx, cy, angle, half_w * scale, half_h * scale, _PALM_CORNER * scale], axis=-1)
    return {"seg": pixels, "palm": palm, "skin": _skin_tone(rng, n)}


def _hand_parts(rng: np.random.Generator, raised: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Forearm and digit capsules in hand units, upright and unmirrored: ``n×6×5``."""
    n = len(raised)
    seg = np.zeros((n, 6, 5))
    finger_len = rng.uniform(0.88, 1.12, n)
    splay = rng.uniform(*_SPLAY_RANGE, n)

    # Forearm: leaves the palm downwards with a little wrist bend, and runs off the image (four
    # hand units is always past the frame).
    wrist = np.deg2rad(rng.uniform(-15, 15, n))
    forearm_x, forearm_y = _rotate(0.0, -4.0, wrist)
    seg[:, 0] = np.stack([np.zeros(n), np.full(n, _WRIST_Y), forearm_x, forearm_y,
                          _FOREARM_R * width * rng.uniform(0.9, 1.1, n)], axis=-1)

    # Thumb: out to the side and up when raised, across the palm (under the other digits' tips)
    # when folded.
    thumb_up = np.deg2rad(rng.uniform(45, 70, n))
    thumb_len = rng.uniform(0.66, 0.78, n) * finger_len
    base_x, base_y = _THUMB_BASE[0] * width, np.full(n, _THUMB_BASE[1])
    up = raised[:, 0]
    tip_x = np.where(up, base_x - np.sin(thumb_up) * thumb_len, 0.05)
    tip_y = np.where(up, base_y + np.cos(thumb_up) * thumb_len, rng.uniform(-0.02, 0.1, n))
    seg[:, 1] = np.stack([base_x, base_y, tip_x, tip_y, _THUMB_R * rng.uniform(0.9, 1.1, n)], -1)

    for j in range(4):
        base_x = _FINGER_X[j] * width
        angle = np.deg2rad(_FINGER_SPLAY_DEG[j] * splay + rng.uniform(-2.5, 2.5, n))
        length = _FINGER_LEN[j] * finger_len
        up = raised[:, j + 1]
        seg[:, j + 2] = np.stack(
            [
                base_x,
                np.where(up, _RAISED_BASE_Y, _FOLDED_Y[0]),
                np.where(up, base_x + np.sin(angle) * length, base_x),
                np.where(up, _RAISED_BASE_Y + np.cos(angle) * length, _FOLDED_Y[1]),
                _FINGER_R[j] * rng.uniform(0.9, 1.1, n),
            ],
            axis=-1,
        )
    return seg


def _fit_in_frame(
    rng: np.random.Generator,
    seg: np.ndarray,
    half_w: np.ndarray,
    half_h: np.ndarray,
    angle: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick each hand's scale (pixels per hand unit) and palm centre in pixels.

    The visible hand (not the forearm, which is meant to leave the frame) always fits inside a
    small margin, so no raised finger is ever cut off and miscounted; the scale shrinks where a
    wide pose would not fit.
    """
    corner_x, corner_y = _rotate(
        np.array([-1, 1, 1, -1]) * half_w[:, None], np.array([-1, -1, 1, 1]) * half_h[:, None],
        angle[:, None],
    )
    digits = seg[:, 1:]
    reach = digits[..., 4]
    xs = np.concatenate([corner_x, digits[..., 2] - reach, digits[..., 2] + reach], axis=1)
    ys = np.concatenate([corner_y, digits[..., 3] - reach, digits[..., 3] + reach], axis=1)
    lo_x, hi_x, lo_y, hi_y = xs.min(1), xs.max(1), ys.min(1), ys.max(1)
    margin = 0.04 * size
    room = size - 2 * margin
    scale = rng.uniform(*_SCALE_RANGE, len(seg)) * size
    scale = np.minimum(scale, room / np.maximum(hi_x - lo_x, hi_y - lo_y))
    # Place the bounding box near the middle of the free room left around it.
    place_x = 0.5 + _PLACE_JITTER * rng.uniform(-0.5, 0.5, len(seg))
    place_y = 0.5 + _PLACE_JITTER * rng.uniform(-0.5, 0.5, len(seg))
    cx = margin - lo_x * scale + place_x * (room - (hi_x - lo_x) * scale)
    cy = margin + hi_y * scale + place_y * (room - (hi_y - lo_y) * scale)
    return scale, cx, cy


def _skin_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random realistic skin colours: a point on the light-to-dark ramp plus a small tint."""
    t = rng.random(n) * (len(_SKIN_RAMP) - 1)
    i = np.minimum(t.astype(int), len(_SKIN_RAMP) - 2)
    f = (t - i)[:, None].astype(np.float32)
    tone = _SKIN_RAMP[i] * (1 - f) + _SKIN_RAMP[i + 1] * f
    tone *= rng.uniform(0.95, 1.05, (n, 1)) * rng.uniform(0.97, 1.03, (n, 3))
    return np.clip(tone, 0.0, 1.0).astype(np.float32)


def _sample_walls(rng: np.random.Generator, n: int, skin_luma: np.ndarray) -> dict[str, np.ndarray]:
    """Walls behind the hand: flat or two-colour gradients, with or without blotchy texture.

    Mostly light like the SIGNS photos, sometimes mid or dark; the brightness is pushed away from
    the skin's so the hand never vanishes into the wall in grayscale.
    """
    luma = np.where(rng.random(n) < 0.7, rng.uniform(0.62, 0.95, n), rng.uniform(0.12, 0.95, n))
    above, below = skin_luma + _WALL_SKIN_GAP, skin_luma - _WALL_SKIN_GAP
    # Push to the side the wall already leans to, unless that side has no room left.
    go_up = ((luma >= skin_luma) & (above <= 0.98)) | (below < 0.08)
    luma = np.where(np.abs(luma - skin_luma) < _WALL_SKIN_GAP, np.where(go_up, above, below), luma)

    ends = luma[:, None, None] * (1.0 + rng.uniform(-0.07, 0.07, (n, 2, 3)))  # 2 colours × RGB
    ends[:, 1] *= np.where(rng.random(n) < 0.5, 1.0, rng.uniform(0.75, 1.15, n))[:, None]
    return {
        "ends": ends.astype(np.float32),
        "direction": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        "blotch": np.where(rng.random(n) < 0.5, rng.uniform(0.02, 0.09, n), 0.0).astype(np.float32),
        "blotch_grid": rng.uniform(-1.0, 1.0, (n, _BLOTCH_CELLS, _BLOTCH_CELLS)).astype(np.float32),
    }


def _paint_wall(walls: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Render a chunk of walls as ``n×3×size×size`` float RGB."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    cos = np.cos(walls["direction"])[:, None, None]
    sin = np.sin(walls["direction"])[:, None, None]
    t = np.clip(cos * coords[None, None, :] + sin * coords[None, :, None] + 0.5, 0.0, 1.0)
    # Blotches: the coarse random grid smoothly upsampled, for plaster- and fabric-like walls.
    texture = 1.0 + walls["blotch"][:, None, None] * _upsample(walls["blotch_grid"], size)
    near, far = walls["ends"][:, 0, :, None, None], walls["ends"][:, 1, :, None, None]
    wall = (t * texture)[:, None] * (far - near)
    wall += near * texture[:, None]
    return wall


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly upsample a batch of small square grids to ``size×size``.

    Done with gathers rather than a matrix product, so no BLAS threads are involved and the
    result is bit-for-bit the same on every machine.
    """
    cells = grid.shape[-1]
    pos = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    lo = np.minimum(pos.astype(int), cells - 2)
    frac = (pos - lo).astype(np.float32)
    rows = grid[:, lo, :] * (1 - frac)[:, None] + grid[:, lo + 1, :] * frac[:, None]
    return rows[:, :, lo] * (1 - frac) + rows[:, :, lo + 1] * frac


def _sample_shadows(rng: np.random.Generator, n: int, size: int) -> dict[str, np.ndarray]:
    """Offset, softness and depth of the soft shadow each hand casts on the wall."""
    angle = rng.uniform(0, 2 * np.pi, n)
    dist = rng.uniform(0.02, 0.08, n) * size
    return {
        "dx": np.rint(np.cos(angle) * dist).astype(int),
        "dy": np.rint(np.sin(angle) * dist).astype(int),
        "soft": (rng.uniform(0.05, 0.1, n) * size).astype(np.float32),
        "depth": np.where(rng.random(n) < 0.7, rng.uniform(0.08, 0.3, n), 0.0).astype(np.float32),
    }


def _sample_cameras(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Exposure, contrast, lighting gradient and noise level for each photo."""
    draws = {
        "gain": rng.uniform(0.8, 1.12, n),
        "grad_x": rng.uniform(-0.2, 0.2, n),
        "grad_y": rng.uniform(-0.2, 0.2, n),
        "contrast": rng.uniform(0.8, 1.15, n),
        "noise": rng.uniform(0.002, 0.015, n),
    }
    return {key: value.astype(np.float32) for key, value in draws.items()}


def _capsule_sdf(px: np.ndarray, py: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) from each pixel to a batch of capsules ``(ax, ay, bx, by, r)``.

    ``px`` is a row of pixel x centres and ``py`` a column of y centres. Terms that depend on one
    axis only are formed on that row or column before broadcasting, which saves full-image passes.
    """
    ax, ay, bx, by, r = (seg[:, i, None, None].astype(np.float32) for i in range(5))
    ex, ey = bx - ax, by - ay
    inv_len2 = 1.0 / np.maximum(ex * ex + ey * ey, 1e-6)
    dx0, dy0 = px - ax, py - ay  # n×1×W and n×H×1
    h = (dx0 * ex * inv_len2) + (dy0 * ey * inv_len2)  # position along the segment, 0..1 inside
    np.clip(h, 0.0, 1.0, out=h)
    dx = dx0 - ex * h
    dy = dy0 - ey * h
    dx *= dx
    dy *= dy
    dx += dy
    np.sqrt(dx, out=dx)
    dx -= r
    return dx


def _box_sdf(px: np.ndarray, py: np.ndarray, palm: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to a batch of rotated rounded boxes ``(cx, cy, angle, w, h, r)``."""
    cx, cy, angle, hw, hh, rad = (palm[:, i, None, None].astype(np.float32) for i in range(6))
    # Undo the hand's rotation; pixel y points down, hence the sign on the sine.
    c, s = np.cos(angle), np.sin(angle)
    x, y = px - cx, cy - py
    qx = np.abs(c * x + s * y) - hw + rad
    qy = np.abs(c * y - s * x) - hh + rad
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - rad


def _render_hand(
    hands: dict[str, np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a chunk of hands.

    Returns coverage (0..1), shade (skin brightness factor) and the union distance field (for the
    shadow), each ``n×size×size``. Parts are layered forearm, palm, fingers, thumb (a folded thumb
    lies over the curled fingers), each darkened towards its own rim.
    """
    grid = np.arange(size, dtype=np.float32) + 0.5
    px, py = grid[None, None, :], grid[None, :, None]
    seg = hands["seg"]
    n = len(seg)
    shade = np.ones((n, size, size), dtype=np.float32)
    union = np.full((n, size, size), np.inf, dtype=np.float32)

    def paint(dist: np.ndarray, rim: np.ndarray, floor: float) -> None:
        # The rim falloff fakes the rounded shading of a limb (a half-cylinder profile); the
        # one-pixel ramp across the edge is an analytic antialias.
        tone = dist / -rim
        np.clip(tone, 0.0, 1.0, out=tone)
        tone *= 2.0 - tone
        np.sqrt(tone, out=tone)
        tone *= 1.0 - floor
        tone += floor - shade
        alpha = 0.5 - dist
        np.clip(alpha, 0.0, 1.0, out=alpha)
        tone *= alpha
        np.add(shade, tone, out=shade)
        np.minimum(union, dist, out=union)

    # A capsule's rim falloff spans its radius; the palm's spans a bit more than its corner.
    rim = seg[:, :, 4, None, None].astype(np.float32)
    palm = hands["palm"]
    paint(_capsule_sdf(px, py, seg[:, 0]), rim[:, 0], _RIM_FLOOR_FOREARM)
    paint(_box_sdf(px, py, palm), 1.5 * palm[:, 5, None, None].astype(np.float32), _RIM_FLOOR_PALM)
    for k in (2, 3, 4, 5, 1):
        paint(_capsule_sdf(px, py, seg[:, k]), rim[:, k], _RIM_FLOOR_DIGIT)
    # The union's distance field gives the coverage of the whole hand in one go.
    cover = 0.5 - union
    np.clip(cover, 0.0, 1.0, out=cover)
    return cover, shade, union


def _cast_shadow(union: np.ndarray, shadow: dict[str, np.ndarray]) -> np.ndarray:
    """Darkening of the wall: the hand's silhouette, shifted and blurred by a soft edge."""
    n, size, _ = union.shape
    grid = np.arange(size)
    rows = np.clip(grid[None, :] - shadow["dy"][:, None], 0, size - 1)
    cols = np.clip(grid[None, :] - shadow["dx"][:, None], 0, size - 1)
    shifted = union[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    soft = shadow["soft"][:, None, None]
    return shadow["depth"][:, None, None] * np.clip(0.5 - shifted / soft, 0.0, 1.0)


def _expose(rgb: np.ndarray, camera: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Camera effects over a composed ``n×3×H×W`` chunk, quantised to uint8 (same layout).

    A linear brightness gradient stands in for uneven lighting, a contrast change for exposure,
    and additive noise for the sensor (uniform rather than Gaussian: several times cheaper to draw
    and indistinguishable at these amplitudes). The whole chain is folded into one multiply and
    one add per pixel before the noise, which is what keeps this step cheap.
    """
    size = rgb.shape[-1]
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gx, gy = camera["grad_x"][:, None, None], camera["grad_y"][:, None, None]
    light = 1.0 + gx * coords[None, None, :] + gy * coords[None, :, None]
    contrast = camera["contrast"][:, None, None, None]
    # Noise is drawn in [0, 1) and centred through the offset; +0.5 turns the final truncation
    # into rounding.
    noise_span = camera["noise"][:, None, None, None] * np.float32(255.0 * 12**0.5)
    offset = 255.0 * 0.5 * (1.0 - contrast) - 0.5 * noise_span + 0.5
    rgb *= (255.0 * camera["gain"][:, None, None] * light)[:, None] * contrast
    rgb += offset
    noise = rng.random(rgb.shape, dtype=np.float32)
    noise *= noise_span
    rgb += noise
    np.clip(rgb, 0.0, 255.99, out=rgb)
    return rgb.astype(np.uint8)
