"""Turning image arrays into the tensors the nets eat: the one conversion used everywhere."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ITU-R 601 luma, the weights the tutorial uses for its grayscale LeNet input.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def images_to_tensor(images: np.ndarray | torch.Tensor, channels: int = 3, size: int | None = None) -> torch.Tensor:
    """Convert N×H×W×3 uint8 images to an N×C×H×W float tensor in [0, 1].

    The axes are moved with ``permute``: the tutorial's ``reshape(N, 3, 64, 64)`` keeps the memory
    order and so scrambles the colour planes of an RGB batch. ``channels=1`` gives grayscale with
    the tutorial's 0.299/0.587/0.114 weights. ``size`` resizes (antialiased) for a net whose input
    size differs from the images'. Works on any device the input lives on.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected N×H×W×3 images, got shape {tuple(x.shape)}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # N,3,H,W
    if channels == 1:
        w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)  # N,1,H,W
    if size is not None and (x.shape[-2], x.shape[-1]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()



def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """One net input (C×H×W in [0, 1], C = 1 or 3) as an image to show: H×W (gray) or H×W×3 uint8.

    The inverse of :func:`images_to_tensor` for display: what the net is given, pixel for pixel.
    """
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a C×H×W tensor with 1 or 3 channels, got shape {tuple(x.shape)}")
    a = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()
