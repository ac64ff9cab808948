"""Batch augmentation on the device: the photo of a user's hand is not a SIGNS image.

One random affine warp per image (scale, shift, small rotation, mirror) with ``grid_sample``,
then brightness, contrast and a colour cast, all as batched tensor ops, so augmenting costs a few
per cent of a training step instead of a per-image Python loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; each image draws its own values."""

    scale: tuple[float, float] = (0.8, 1.15)  # >1 zooms in (a crop), <1 zooms out
    shift: float = 0.12  # fraction of the image side
    rotate_deg: float = 15.0
    mirror: bool = True  # a left hand shows the same count as a right hand
    brightness: float = 0.25
    contrast: float = 0.3
    color: float = 0.08


def augment_batch(x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Randomly warp and recolour an N×C×H×W batch in [0, 1]; returns a new tensor in [0, 1].

    ``generator`` must live on ``x``'s device; drawing every random number from it keeps a run
    reproducible and independent of any other run in the process.
    """
    n, c = x.shape[:2]
    dev, dt = x.device, x.dtype

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev, dtype=dt) * (hi - lo) + lo

    zoom = uniform(*cfg.scale, n)
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg, n) * (math.pi / 180)
    flip = torch.where(uniform(0, 1, n) < 0.5, -1.0, 1.0).to(dt) if cfg.mirror else torch.ones(n, device=dev, dtype=dt)
    shift = uniform(-cfg.shift, cfg.shift, n, 2) * 2  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )  # N, 2, 3: output pixel → where to sample in the input
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Border padding repeats the background instead of inventing black corners SIGNS never shows.
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(1 - cfg.contrast, 1 + cfg.contrast, n, 1, 1, 1)
    brightness = uniform(-cfg.brightness, cfg.brightness, n, 1, 1, 1)
    cast = uniform(-cfg.color, cfg.color, n, c, 1, 1) if c == 3 else 0.0
    return ((x - mean) * contrast + mean + brightness + cast).clamp_(0.0, 1.0)
