"""Turning image arrays into the tensors the nets eat: the one conversion used everywhere."""
from __future__ import annotations

import numpy as np
import torch

# ITU-R 601 luma, the weights the tutorial uses for its grayscale LeNet input.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def images_to_tensor(images: np.ndarray | torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Convert N×H×W×3 uint8 images to an N×C×H×W float tensor in [0, 1].

    The axes are moved with ``permute``: the tutorial's ``reshape(N, 3, 64, 64)`` keeps the memory
    order and so scrambles the colour planes of an RGB batch. ``channels=1`` gives grayscale with
    the tutorial's 0.299/0.587/0.114 weights. Works on any device the input lives on.
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
    return x.contiguous()


def flatten_images(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W → N×(C·H·W), the MLP's input (the tutorial's ``reshape(N, -1)``)."""
    return x.reshape(x.shape[0], -1)
