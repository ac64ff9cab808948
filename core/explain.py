"""Looking inside a net: Grad-CAM, input-gradient saliency, feature maps and learned filters.

Everything here reads the net through the seam of :mod:`core.nets` (:func:`~core.nets.forward_features`,
:func:`~core.nets.forward_head`, :func:`~core.nets.feature_stages`), the same for both construction
styles, and never looks a layer up by name. No hooks are registered: Grad-CAM takes
``torch.autograd.grad`` of the class score with respect to the feature map itself.

One cached model serves every session of the app, so an explanation must not disturb it: nothing
here changes weights, buffers (batch-norm statistics), train/eval mode or ``requires_grad`` flags,
registers hooks or fills ``.grad``, and there is no shared mutable state, so two threads can
explain with the same model at once. The net must be in eval mode (in train mode its batch norms
would update their statistics on the photo); :func:`grad_cam` and :func:`saliency` refuse otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import Checkpoint, atomic_write
from core.inference import Prediction, predict_image
from core.nets import (
    feature_stages,
    forward_features,
    forward_head,
    has_spatial_features,
)
from core.tensors import tensor_to_image

GRAD_CAM = "Grad-CAM"
SALIENCY = "input-gradient saliency"

# At most this many channels per stage are drawn; ResNet stages have 64 to 2,048.
MAX_MAPS_PER_STAGE = 16

# The few lines the app shows next to the heat map. tests/test_explain.py executes them and checks
# they give what grad_cam gives, so the code shown is the code that runs.
GRADCAM_CODE = '''\
import torch
import torch.nn.functional as F
from core.nets import forward_features, forward_head

def grad_cam(model, x, class_index):                         # model in eval mode, x: 1×C×H×W
    features = forward_features(model, x).detach().requires_grad_()  # 1×K×h×w: last conv stage
    with torch.enable_grad():
        score = forward_head(model, features)[0, class_index]        # the class's logit
    (grads,) = torch.autograd.grad(score, features)         # how the score moves with each value
    weights = grads.mean(dim=(2, 3), keepdim=True)           # one weight per channel
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))      # evidence for the class
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam         # 0 … 1 over the input
'''


class ExplainError(ValueError):
    """A request that cannot be explained; str() says what was wrong and what to do."""


# --- the maps ------------------------------------------------------------------------------------


def _check(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The single image as 1×C×H×W on the model's device, after checking the request."""
    if any(m.training for m in model.modules()):
        raise ExplainError("the net is in training mode; call model.eval() before explaining it "
                           "(in training mode its batch norms would learn from the photo)")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ExplainError(f"expected one image as a C×H×W or 1×C×H×W tensor, got shape {tuple(x.shape)}")
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    return x.detach()


def _class_in_range(class_index: int, n_classes: int) -> None:
    if not 0 <= class_index < n_classes:
        raise ExplainError(f"class index {class_index} is out of range: the net has {n_classes} classes (0–{n_classes - 1})")


def _scale(m: torch.Tensor) -> torch.Tensor:
    """Divide by the maximum, so 1 is the strongest evidence and 0 stays "none" (not min–max: a
    map that is positive everywhere keeps its floor instead of inventing a zero)."""
    peak = m.max()
    return m / peak if peak > 0 else torch.zeros_like(m)


def grad_cam(model: nn.Module, x: torch.Tensor, class_index: int, mirror: bool = False) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): where in ``x`` the net found evidence for ``class_index``.

    ``x`` is one net input (C×H×W or 1×C×H×W, as :attr:`Prediction.net_input`). The class's logit
    is differentiated with respect to the last spatial feature map (:func:`~core.nets.forward_features`);
    each channel is weighted by the spatial mean of its gradient, the weighted sum is passed through
    a ReLU (only evidence *for* the class), upsampled bilinearly to the input size and divided by
    its maximum. Returns an H×W float tensor in [0, 1] on the CPU (all zeros when nothing in the
    image speaks for the class). With ``mirror`` (a net that reads a photo with its mirror image,
    :attr:`Checkpoint.mirror_average`), the map of the mirror image, mirrored back, is added before
    the division: the evidence behind both answers the prediction averaged.

    Works under ``torch.no_grad()`` too, with no hooks and no change to the model (module doc).
    The map is as coarse as the feature map: LeNet-5 13×13 and ResNet-50 2×2 for 64-px inputs.
    Raises :class:`ExplainError` for a net in training mode, a bad shape or class, and
    ``ValueError`` for a net without convolutions (use :func:`saliency`).
    """
    return _map(_grad_cam, model, x, class_index, mirror)


def _map(raw: Callable[[nn.Module, torch.Tensor, int], torch.Tensor], model: nn.Module, x: torch.Tensor,
         class_index: int, mirror: bool) -> torch.Tensor:
    """``raw``'s map of the checked input (plus its mirror image's, mirrored back), divided by the peak."""
    x = _check(model, x)
    heat = raw(model, x, class_index)
    if mirror:
        heat = heat + raw(model, x.flip(-1), class_index).flip(-1)
    return _scale(heat).float().cpu()


def _grad_cam(model: nn.Module, x: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM before its division by the maximum: H×W, ≥ 0, on the model's device."""
    with torch.no_grad():  # the conv part needs no graph: the gradient stops at the features
        features = forward_features(model, x)
    # A leaf of its own: the gradient is taken with respect to it whatever the weights'
    # requires_grad flags say (a frozen net too), and nothing flows into the weights' .grad.
    features = features.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward_head(model, features)
        _class_in_range(class_index, int(logits.shape[1]))
        (grads,) = torch.autograd.grad(logits[0, class_index], features)
    with torch.no_grad():
        weights = grads.mean(dim=(2, 3), keepdim=True)  # 1×K×1×1
        cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # 1×1×h×w
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def saliency(model: nn.Module, x: torch.Tensor, class_index: int, mirror: bool = False) -> torch.Tensor:
    """Input-gradient saliency (Simonyan et al. 2013): |∂ score / ∂ pixel|, the largest over the
    colour channels, divided by its maximum. H×W float in [0, 1] on the CPU.

    Works for any net, and is what the MLP gets (it has no conv feature map for Grad-CAM). It says
    which pixels would change the score most, not where the evidence is: noisier than Grad-CAM.
    Same guarantees, errors and ``mirror`` as :func:`grad_cam`.
    """
    return _map(_saliency, model, x, class_index, mirror)


def _saliency(model: nn.Module, x: torch.Tensor, class_index: int) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        _class_in_range(class_index, int(logits.shape[1]))
        (grads,) = torch.autograd.grad(logits[0, class_index], x)
    return grads.detach().abs().amax(dim=1)[0]


# --- colour --------------------------------------------------------------------------------------

# Matplotlib's "inferno" at 11 evenly spaced points (a perceptually uniform map: brightness rises
# steadily from black to pale yellow, so "hotter" reads the same in colour and in grayscale).
_INFERNO_ANCHORS = np.array([
    (0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
    (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164),
], dtype=np.float64)
COLORMAP_NAME = "inferno"
COLORMAP: np.ndarray = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO_ANCHORS)), _INFERNO_ANCHORS[:, c]) for c in range(3)],
    axis=1,
).round().astype(np.uint8)  # 256×3: the lookup table


def colorize(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """Values in [0, 1] (any shape) → RGB uint8 (shape + (3,)) through the inferno colour map."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return COLORMAP[np.clip(np.rint(v * 255), 0, 255).astype(np.intp)]


def colorbar(width: int = 256, height: int = 12) -> np.ndarray:
    """The colour map as a horizontal strip, 0 on the left and 1 on the right: the heat map's legend."""
    return np.repeat(colorize(np.linspace(0, 1, width))[None], height, axis=0)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray | torch.Tensor, opacity: float = 0.5,
                    size: int | None = None) -> np.ndarray:
    """The heat map over an image: H×W×3 uint8, ``opacity`` of the colour-mapped heat map
    blended with ``(1 - opacity)`` of the image (H×W gray or H×W×3 uint8, the heat map's size).

    ``size`` upsamples both to size×size first (the image by nearest neighbour, so its pixels stay
    the pixels the net saw; the heat map bilinearly, as it is smooth).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ExplainError(f"opacity must be between 0 and 1, got {opacity}")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    heat = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float32)
    if img.shape[:2] != heat.shape:
        raise ExplainError(f"the heat map is {heat.shape} but the image is {img.shape[:2]}")
    if size is not None:
        img = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        img = F.interpolate(img, size=(size, size), mode="nearest-exact")[0].permute(1, 2, 0).numpy()
        heat = F.interpolate(torch.from_numpy(heat)[None, None], size=(size, size), mode="bilinear",
                             align_corners=False)[0, 0].clamp(0, 1).numpy()
    blend = opacity * colorize(heat).astype(np.float32) + (1.0 - opacity) * img.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


# --- feature maps and filters ------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMaps:
    """One conv stage's output for one photo, ready to draw as a grid of gray images."""

    name: str  # "conv1", "conv2"; "stem", "stage 1" … "stage 4"
    shape: tuple[int, int, int]  # C×h×w of the stage's whole output
    channels: tuple[int, ...]  # the channels shown, strongest first when not all are shown
    maps: np.ndarray  # len(channels)×h×w float32 in [0, 1]; one scale for the stage, 0 = no activation


def feature_maps(model: nn.Module, x: torch.Tensor, max_per_stage: int = MAX_MAPS_PER_STAGE) -> list[FeatureMaps]:
    """The activations of every conv stage (:func:`~core.nets.feature_stages`) for one input.

    A stage with at most ``max_per_stage`` channels shows all of them in order (LeNet's 6 and 16);
    a wider one shows its ``max_per_stage`` strongest (highest mean activation), strongest first.
    Each stage is scaled by the largest value shown, so a dark map is a weak one and maps of one
    stage compare. Empty for a net without convolutions. No model state changes (module doc).
    """
    x = _check(model, x)
    out: list[FeatureMaps] = []
    with torch.no_grad():
        for stage in feature_stages(model):
            x = stage.forward(x)
            a = x[0].float().cpu()  # C×h×w
            c = a.shape[0]
            if c <= max_per_stage:
                idx = list(range(c))
            else:
                idx = a.mean(dim=(1, 2)).argsort(descending=True, stable=True)[:max_per_stage].tolist()
            shown = a[idx]
            # The stages end in a ReLU (or a pool after one), so values are ≥ 0; the clamp keeps a
            # net without that property drawable.
            shown = _scale(shown.clamp_min(0))
            out.append(FeatureMaps(stage.name, (c, a.shape[1], a.shape[2]), tuple(int(i) for i in idx),
                                   shown.numpy().astype(np.float32)))
    return out


@dataclass(frozen=True)
class Filters:
    """The first layer's learned weights as small images."""

    description: str  # what they are, for a caption
    shape: tuple[int, ...]  # the weight tensor's shape
    images: np.ndarray  # N×h×w (one input channel) or N×h×w×3 (RGB) float32 in [0, 1]; 0.5 = weight 0


def learned_filters(model: nn.Module, input_shape: tuple[int, int, int]) -> Filters:
    """The first conv layer's filters (LeNet: 6 of 5×5; ResNet-50: 64 of 7×7), or for a net without
    convolutions its first linear layer's weights as input-sized images, one per hidden unit (the
    MLP: 64×64 for a 64-px input).

    All filters share one scale, symmetric around zero: mid-gray is a zero weight, brighter
    positive, darker negative (per colour channel for RGB), so strong and weak filters compare.
    ``input_shape`` is the net's C×H×W input (needed to fold a linear layer's rows into images).
    """
    layer = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if layer is not None:
        w = layer.weight.detach().float().cpu()  # N×C×k×k
        what = f"first conv layer: {w.shape[0]} filters of {w.shape[1]}×{w.shape[2]}×{w.shape[3]}"
    else:
        layer = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        if layer is None:
            raise ExplainError(f"{type(model).__name__} has neither a conv nor a linear layer to draw")
        c, h, wd = input_shape
        if layer.in_features != c * h * wd:
            raise ExplainError(f"the first linear layer takes {layer.in_features} inputs, not {c}×{h}×{wd} = {c * h * wd}")
        w = layer.weight.detach().float().cpu().reshape(-1, c, h, wd)  # flatten order is C, H, W
        what = f"first linear layer: the weights of its {w.shape[0]} units, each as a {c}×{h}×{wd} image"
    peak = w.abs().max()
    images = 0.5 + 0.5 * w / peak if peak > 0 else torch.full_like(w, 0.5)
    images = images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)
    return Filters(what, tuple(layer.weight.shape), images.numpy().astype(np.float32))


# --- one photo, explained ----------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why the net said what it said about one photo."""

    prediction: Prediction
    class_index: int  # the class explained
    class_name: str
    method: str  # GRAD_CAM or SALIENCY
    heatmap: np.ndarray  # H×W float32 in [0, 1] at the net's input size
    feature_maps: list[FeatureMaps]  # empty for the MLP
    learned: Filters

    @property
    def seen(self) -> np.ndarray:
        """What the net was given, as an image: H×W (gray) or H×W×3 uint8."""
        return tensor_to_image(self.prediction.net_input[0])

    def overlay(self, opacity: float = 0.5, size: int | None = None) -> np.ndarray:
        """The heat map over what the net saw: H×W×3 uint8 (size×size when ``size`` is given)."""
        return overlay_heatmap(self.seen, self.heatmap, opacity, size)

    def filters(self) -> Filters:
        """The first layer's learned filters (see :func:`learned_filters`)."""
        return self.learned


def explain(ckpt: Checkpoint, source: bytes | str | os.PathLike | BinaryIO, name: str | None = None,
            class_name: str | None = None) -> Explanation:
    """Predict one photo (:func:`~core.inference.predict_image`) and explain the prediction.

    ``class_name`` picks the class to explain ("why not 3?"); by default the predicted one.
    Conv nets get Grad-CAM, the MLP an input-gradient saliency map. Raises
    :class:`core.preprocess.ImageError` for an unusable photo and :class:`ExplainError` for an
    unknown class name.
    """
    pred = predict_image(ckpt, source, name=name)
    wanted = pred.label if class_name is None else class_name
    if wanted not in ckpt.classes:
        raise ExplainError(f"{wanted!r} is not one of this net's classes: {', '.join(ckpt.classes)}")
    index = list(ckpt.classes).index(wanted)
    model = ckpt.model
    if has_spatial_features(model):
        method, heat = GRAD_CAM, grad_cam(model, pred.net_input, index, mirror=pred.mirrored)
    else:
        method, heat = SALIENCY, saliency(model, pred.net_input, index, mirror=pred.mirrored)
    return Explanation(
        prediction=pred,
        class_index=index,
        class_name=wanted,
        method=method,
        heatmap=heat.numpy().astype(np.float32),
        feature_maps=feature_maps(model, pred.net_input),
        learned=learned_filters(model, ckpt.spec.input_shape),
    )


def enlarge(image: np.ndarray, side: int) -> np.ndarray:
    """A small map or filter (h×w or h×w×3, float in [0, 1] or uint8) as a uint8 image about
    ``side`` pixels wide, each value a block of pixels (nearest neighbour: a 5×5 filter stays 25
    squares instead of a blur)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    k = max(1, side // max(a.shape[0], a.shape[1]))
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB (or gray) uint8 image as a PNG, atomically (temp file, fsync, rename)."""
    from PIL import Image

    path = Path(path)
    atomic_write(path, lambda f: Image.fromarray(np.ascontiguousarray(image)).save(f, "PNG"))
    return path
