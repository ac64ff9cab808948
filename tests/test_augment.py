"""Batch augmentation: what each change does to an image, and what it must leave alone.

References where they exist: PIL's own JPEG encoder for the JPEG-like compression, plain
arithmetic for the colour temperature, a hand-made hand-on-wall image for the background swap.
"""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from core.augment import (
    WEBCAM,
    AugmentConfig,
    MixedAugment,
    augment_batch,
    augment_for,
    background_mask,
    color_temperature,
    gaussian_blur,
    jpeg_like,
)

# Every change switched on, as strongly as its range allows.
EVERYTHING = AugmentConfig(
    scale=(0.8, 1.5), shift=0.15, rotate_deg=25, mirror=True, tone=0.5, temperature=0.2, background_p=1.0,
    clutter_p=0.5, blur_p=0.5, noise=0.05, jpeg_p=0.5, jpeg_quality=(20, 90),
)
NOTHING = AugmentConfig(
    scale=(1.0, 1.0), shift=0.0, rotate_deg=0.0, brightness=0.0, contrast=0.0, color=0.0, background_p=0.0,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hand_on_wall(n: int = 4, channels: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A pale plain wall with a dark 'hand' block in the middle; returns the images and the hand mask."""
    x = torch.full((n, channels, size, size), 0.85)
    hand = torch.zeros(n, 1, size, size, dtype=torch.bool)
    hand[..., size // 4: 3 * size // 4, size // 3: 2 * size // 3] = True
    x = torch.where(hand, torch.tensor(0.35), x)
    return x, hand


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 64, 70])
def test_output_has_the_inputs_shape_dtype_and_range(channels: int, size: int) -> None:
    x = torch.rand(8, channels, size, size)
    for cfg in (AugmentConfig(), EVERYTHING, augment_for("lenet"), augment_for("resnet50"), augment_for("lenet", "mixed")):
        y = augment_batch(x, gen(), cfg)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0


def test_input_is_not_modified() -> None:
    x = torch.rand(8, 3, 32, 32)
    before = x.clone()
    augment_batch(x, gen(), EVERYTHING)
    assert torch.equal(x, before)


def test_same_seed_same_output_other_seed_other_output() -> None:
    x = torch.rand(16, 3, 32, 32)
    a = augment_batch(x, gen(5), EVERYTHING)
    b = augment_batch(x, gen(5), EVERYTHING)
    c = augment_batch(x, gen(6), EVERYTHING)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.01


def test_no_change_configured_means_no_change() -> None:
    x = torch.rand(8, 3, 32, 32)
    assert torch.allclose(augment_batch(x, gen(), NOTHING), x, atol=1e-5)


def test_each_image_draws_its_own_changes_in_one_batched_call() -> None:
    # 256 copies of one image in one call: were the batch augmented as one (or a loop reusing
    # one draw), the copies would come out alike.
    x = torch.rand(1, 3, 32, 32).expand(256, 3, 32, 32).contiguous()
    y = augment_batch(x, gen(), EVERYTHING)
    assert y.shape == (256, 3, 32, 32)
    distinct = torch.unique(y.flatten(1).round(decimals=4), dim=0)
    assert len(distinct) == 256


def test_batched_draws_are_the_separate_draws_each_in_its_own_range() -> None:
    # augment_batch draws its per-image values many ranges at a time: each value must still come
    # from its own range (or a change's distribution shifts), and on the CPU they are the very
    # numbers one draw per range gives, in the same order.
    from core.augment import _uniform, _uniforms

    like = torch.zeros(1)
    ranges = [(0.9, 1.1), (-10.0, 10.0, 2), (0.05, 0.95, 3, 1, 1), (0, 1)]
    for repeat in (None, 3):
        batched, separate = gen(4), gen(4)
        got = _uniforms(batched, like, 7, *ranges, repeat=repeat)
        for i in range(repeat or 1):
            for part, (lo, hi, *shape) in zip(got, ranges):
                assert torch.equal(part[i] if repeat else part, _uniform(separate, like, lo, hi, 7, *shape))
        assert torch.equal(torch.rand(3, generator=batched), torch.rand(3, generator=separate))


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (64, 64), (70, 70)])
def test_the_warp_samples_where_affine_grid_says(size: tuple[int, int]) -> None:
    from core.augment import _affine_grid

    theta = torch.randn(5, 2, 3, generator=gen(1))
    expected = torch.nn.functional.affine_grid(theta, [5, 3, *size], align_corners=False)
    assert torch.allclose(_affine_grid(theta, *size), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("clutter_p, texture_p", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
def test_background_swap_changes_the_wall_and_leaves_the_hand(channels: int, clutter_p: float, texture_p: float) -> None:
    x, hand = hand_on_wall(8, channels)
    cfg = replace(NOTHING, background_p=1.0, clutter_p=clutter_p, texture_p=texture_p)
    y = augment_batch(x, gen(), cfg)
    hand_px = hand.expand_as(x)
    assert torch.equal(y[hand_px], x[hand_px])  # every hand pixel untouched
    wall_change = (y - x).abs()[~hand_px].mean()
    assert wall_change > 0.1
    # Each image got its own backdrop.
    walls = y.masked_fill(hand_px, 0).flatten(1)
    assert (walls[0] - walls[1]).abs().mean() > 0.02


def test_background_share_is_respected() -> None:
    x, _ = hand_on_wall(400, 1)
    y = augment_batch(x, gen(), replace(NOTHING, background_p=0.3))
    swapped = ((y - x).abs().flatten(1).amax(1) > 1e-6).float().mean().item()
    assert 0.22 < swapped < 0.38


def test_background_mask_finds_the_wall() -> None:
    x, hand = hand_on_wall(2, 3)
    assert torch.equal(background_mask(x).bool(), ~hand)


def test_cluttered_backdrop_has_edges_a_flat_one_lacks() -> None:
    x, _ = hand_on_wall(64, 3)
    flat = augment_batch(x, gen(), replace(NOTHING, background_p=1.0, background_noise=0.0))
    busy = augment_batch(x, gen(), replace(NOTHING, background_p=1.0, background_noise=0.0, clutter_p=1.0))

    def wall_edges(y: torch.Tensor) -> float:
        dx = (y[..., :, 1:] - y[..., :, :-1]).abs()[..., :6, :]  # the top rows: wall only
        return dx.mean().item()

    assert wall_edges(busy) > 3 * wall_edges(flat)


def test_patterned_backdrops_have_hard_edges_in_their_share() -> None:
    # Brick, stripes and checks: many sharp steps between neighbouring pixels, where a cluttered
    # room without them is soft. The share is per image, as drawn.
    x, _ = hand_on_wall(400, 3, size=64)
    cluttered = replace(NOTHING, background_p=1.0, background_noise=0.0, clutter_p=1.0)
    plain = augment_batch(x, gen(), cluttered)
    patterned = augment_batch(x, gen(), replace(cluttered, texture_p=1.0, texture_strength=0.4))
    half = augment_batch(x, gen(), replace(cluttered, texture_p=0.5, texture_strength=0.4))

    def sharp_steps(y: torch.Tensor) -> torch.Tensor:  # per image: share of wall pixels next to a step > 0.1
        top = y[..., :14, :]  # above the hand: wall only
        return ((top[..., :, 1:] - top[..., :, :-1]).abs().amax(1) > 0.1).flatten(1).float().mean(1)

    assert sharp_steps(patterned).mean() > 2 * sharp_steps(plain).mean()
    with_pattern = (sharp_steps(half) > sharp_steps(plain).quantile(0.9)).float().mean().item()
    assert 0.25 < with_pattern < 0.6  # about half of them, with the weakest patterns not told apart


def test_webcam_backdrops_are_mostly_cluttered_and_often_patterned() -> None:
    # Measured on webcam-hands (README, "Robustness"): more cluttered backdrops and patterns read
    # more photos of strangers' hands than the softer rooms before.
    assert WEBCAM.background_p >= 0.9 and WEBCAM.clutter_p >= 0.9 and WEBCAM.texture_p >= 0.5


def test_gaussian_blur_smooths_keeps_the_mean_and_sigma_zero_is_identity() -> None:
    x = torch.rand(3, 3, 32, 32)
    y = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(y[0], x[0], atol=1e-6)

    def tv(t: torch.Tensor) -> float:
        return (t[..., 1:] - t[..., :-1]).abs().mean().item()

    assert tv(y[2]) < tv(y[1]) < tv(x[1])
    assert torch.allclose(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02)
    # The same as blurring each image on its own: no leakage between images of the batch.
    assert torch.allclose(gaussian_blur(x[2:], torch.tensor([2.0])), y[2:], atol=1e-6)
    # A kernel sized for the largest sigma that can be drawn (no read of the data) blurs the same,
    # to within the Gaussian's far tails.
    assert torch.equal(gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]), max_sigma=2.0), y)
    wide = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]), max_sigma=3.0)
    assert torch.allclose(wide, y, atol=5e-3) and torch.allclose(wide[0], x[0], atol=1e-6)


def test_color_temperature_warms_and_cools() -> None:
    x = torch.full((2, 3, 4, 4), 0.5)
    y = color_temperature(x, torch.tensor([0.2, -0.2]))
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([0.6, 0.5, 0.4]))  # warm: red up, blue down
    assert torch.allclose(y[1, :, 0, 0], torch.tensor([0.4, 0.5, 0.6]))  # cool


def _pil_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    mode = "L" if img.ndim == 2 else "RGB"
    Image.fromarray(img, mode).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert(mode))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_like_matches_pils_jpeg_encoder(channels: int) -> None:
    # A smooth image with edges, like a photo: blurred noise plus a block.
    g = gen(1)
    x = torch.nn.functional.interpolate(torch.rand(1, channels, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    x[..., 20:40, 24:44] = 0.1
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = img[..., 0] if channels == 1 else img
    x = torch.from_numpy(img.astype(np.float32) / 255).reshape(1, 64, 64, channels).permute(0, 3, 1, 2)
    for quality in (20, 75):
        ref = torch.from_numpy(_pil_jpeg(img, quality).astype(np.float32) / 255).reshape(1, 64, 64, channels).permute(0, 3, 1, 2)
        ours = jpeg_like(x, torch.tensor([float(quality)]))
        pil_error = (ref - x).abs().mean().item()
        assert pil_error > 0.002  # the reference really lost something
        # Ours is much closer to what PIL's encoder makes than the original is.
        assert (ours - ref).abs().mean().item() < 0.3 * pil_error
    # Lower quality loses more.
    q20 = (jpeg_like(x, torch.tensor([20.0])) - x).abs().mean()
    q90 = (jpeg_like(x, torch.tensor([90.0])) - x).abs().mean()
    assert q20 > 2 * q90


def test_jpeg_like_works_per_image_on_a_batch() -> None:
    x = torch.rand(4, 3, 24, 40)  # sides that are not multiples of 8 or 16
    y = jpeg_like(x, torch.tensor([10.0, 95.0, 10.0, 95.0]))
    assert y.shape == x.shape
    err = (y - x).abs().mean(dim=(1, 2, 3))
    assert err[0] > err[1] and err[2] > err[3]
    assert torch.allclose(jpeg_like(x[1:2], torch.tensor([95.0])), y[1:2], atol=1e-6)


def test_mirror_flips_some_images_left_right() -> None:
    x = torch.zeros(64, 1, 16, 16)
    x[..., :, :4] = 1.0  # a bright band on the left
    y = augment_batch(x, gen(), replace(NOTHING, mirror=True))
    left, right = y[..., :, :4].mean(dim=(1, 2, 3)), y[..., :, -4:].mean(dim=(1, 2, 3))
    flipped = (right > left).float().mean().item()
    assert 0.3 < flipped < 0.7
    assert torch.allclose(y[right > left], x.flip(-1)[right > left], atol=1e-5)


def test_hand_light_relights_the_hand_and_not_the_wall() -> None:
    x, hand = hand_on_wall(64, 1)
    y = augment_batch(x, gen(), replace(NOTHING, hand_light=0.5))
    hand_px = hand.expand_as(x)
    assert torch.equal(y[~hand_px], x[~hand_px])
    gains = y[:, 0, 16, 16] / x[:, 0, 16, 16]  # a pixel inside the hand block
    assert gains.min() < 0.8 and gains.max() > 1.25  # darker and brighter hands, up to exp(±0.5)
    assert gains.min() >= np.exp(-0.5) - 1e-4 and gains.max() <= np.exp(0.5) + 1e-4


def test_background_matte_swaps_the_wall_share_of_edge_pixels() -> None:
    x, hand = hand_on_wall(8, 1)
    x[..., 8:24, 10] = 0.72  # a hand edge: between hand (0.35) and wall (0.85), 0.13 from the wall
    hard = augment_batch(x, gen(), replace(NOTHING, background_p=1.0))
    soft = augment_batch(x, gen(), replace(NOTHING, background_p=1.0, background_matte=0.15, background_noise=0.0))
    assert torch.equal(hard[..., 8:24, 10], x[..., 8:24, 10])  # hard keying keeps the pale edge
    wall_after = soft[..., 16, 9].mean(dim=1)  # the new wall right next to the edge
    edge_after = soft[..., 16, 10].mean(dim=1)
    # The edge trades its wall share — 1 − (0.13 − 0.12) / 0.15 of it — for the new wall.
    expected = 0.72 + (1 - 0.01 / 0.15) * (wall_after - 0.85)
    assert torch.allclose(edge_after, expected, atol=0.02)
    assert (edge_after - 0.72).abs().max() > 0.2
    hand_px = hand.expand_as(x) & (x < 0.5)
    assert torch.equal(soft[hand_px], x[hand_px])


def test_hand_crop_frames_the_hand() -> None:
    # A small hand in the upper right of a big wall, as in many SIGNS photos.
    x = torch.full((32, 1, 64, 64), 0.85)
    x[..., 10:30, 36:52] = 0.3  # the hand
    x[..., 30:, 40:48] = 0.3  # the forearm down to the bottom edge
    y = augment_batch(x, gen(), replace(NOTHING, hand_crop_p=1.0))
    share_before = (x < 0.5).float().mean().item()
    share_after = (y < 0.5).float().mean(dim=(1, 2, 3))
    assert (share_after > 1.5 * share_before).all()  # the hand fills more of every frame
    # ... and sits near the middle, not off in a corner.
    cols = (y < 0.5).float().mean(dim=(1, 2))  # N, W
    centre = (cols * torch.arange(64)).sum(1) / cols.sum(1)
    assert ((centre - 31.5).abs() < 12).all()


def test_tone_curve_moves_mid_tones_and_keeps_black_and_white() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4).expand(64, 1, 1, 4).contiguous()
    y = augment_batch(x, gen(), replace(NOTHING, tone=0.4))
    assert torch.allclose(y[..., 0], x[..., 0]) and torch.allclose(y[..., 3], x[..., 3], atol=1e-6)
    mid = y[..., 2].flatten()
    assert mid.min() < 0.47 and mid.max() > 0.53 and ((mid - 0.5).abs() <= 0.1 + 1e-6).all()
    assert (y[..., 1] < y[..., 2]).all()  # still monotonic


def _distinct_hands_on_walls(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """hand_on_wall with every image a little darker than the one before, so an image put back at
    another index is caught."""
    x, hand = hand_on_wall(n, 3)
    return x * torch.linspace(0.8, 1.0, n).view(n, 1, 1, 1), hand.expand_as(x)


def test_mixed_gives_the_other_augmentation_to_its_share_and_keeps_every_image_in_place() -> None:
    x, hand_px = _distinct_hands_on_walls(64)
    # The base changes nothing and the other swaps every wall: the changed images are the other's.
    mixed = MixedAugment(NOTHING, replace(NOTHING, background_p=1.0), p=0.25)
    y = augment_batch(x, gen(), mixed)
    changed = (y - x).abs().flatten(1).amax(1) > 1e-3
    assert changed.sum() == 16  # a fixed count: round(0.25 × 64)
    assert torch.allclose(y[~changed], x[~changed], atol=1e-5)
    assert torch.allclose(y[hand_px], x[hand_px], atol=1e-5)  # swapped ones too: each hand is its own image's


def test_mixed_draws_its_share_anew_for_every_batch_and_reproducibly() -> None:
    x, _ = _distinct_hands_on_walls(64)
    mixed = MixedAugment(NOTHING, replace(NOTHING, background_p=1.0), p=0.5)
    g = gen(3)
    first, second = augment_batch(x, g, mixed), augment_batch(x, g, mixed)

    def changed(y: torch.Tensor) -> torch.Tensor:
        return (y - x).abs().flatten(1).amax(1) > 1e-3

    assert changed(first).sum() == changed(second).sum() == 32
    assert not torch.equal(changed(first), changed(second))
    assert torch.equal(augment_batch(x, gen(3), mixed), first)
    # Shares of 0 and 1 are the base and the other alone, and a batch of one image works.
    assert not changed(augment_batch(x, gen(), replace(mixed, p=0.0))).any()
    assert changed(augment_batch(x, gen(), replace(mixed, p=1.0))).all()
    assert augment_batch(x[:1], gen(), mixed).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="share p must be in 0–1"):
        replace(mixed, p=1.5)


def test_the_mixed_preset_is_webcam_in_70_percent_of_each_batch_over_each_nets_standard() -> None:
    from core.trainer import TrainConfig

    for arch in ("lenet", "resnet50"):
        assert augment_for(arch, "mixed") == MixedAugment(augment_for(arch), WEBCAM, 0.7)
    # The older presets are what they were.
    assert augment_for("lenet") == AugmentConfig() and augment_for("resnet50") == AugmentConfig(background_p=0.8)
    assert augment_for("lenet", "webcam") is WEBCAM
    TrainConfig(augmentation="mixed").validate()
    with pytest.raises(ValueError, match="augmentation must be one of standard, webcam, mixed, mirrored"):
        augment_for("lenet", "heavy")


def test_the_mirrored_preset_is_each_nets_standard_with_mirroring() -> None:
    from core.trainer import TrainConfig

    for arch in ("lenet", "resnet50"):
        assert augment_for(arch, "mirrored") == replace(augment_for(arch), mirror=True)
    TrainConfig(augmentation="mirrored").validate()
    # It mirrors: some images of a batch come out as their left-right flip (nothing else changes).
    x = torch.rand(64, 3, 16, 16)
    cfg = replace(augment_for("lenet", "mirrored"), scale=(1.0, 1.0), shift=0.0, rotate_deg=0.0, background_p=0.0,
                  brightness=0.0, contrast=0.0, color=0.0)
    y = augment_batch(x, gen(), cfg)
    flipped = [torch.allclose(y[i], x[i].flip(-1), atol=1e-5) for i in range(64)]
    assert 10 < sum(flipped) < 54
