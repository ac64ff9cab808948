"""The three nets of the tutorial, each written in PyTorch's two construction styles.

Every net exists as an ``nn.Module`` subclass with its own ``forward`` and as an ``nn.Sequential``.
Both are built from one :class:`~core.spec.ModelSpec`, and both register their parameters and
buffers in the same order, so weights copy across styles one tensor at a time
(:func:`copy_weights`) and the two give identical outputs.

Every net, in both styles, splits into *features* and a *head* (:func:`feature_head_split`), in the
spirit of timm's ``forward_features`` / ``forward_head``: fine-tuning swaps the head for new
classes (:func:`replace_head`) and "train the last layers only" freezes the features
(:func:`freeze_features`) without naming a single layer.

The conv nets also split at their last spatial feature map (:func:`forward_features` /
:func:`forward_head`, and the conv stages before it, :func:`feature_stages`): the seam Grad-CAM
and the feature-map pictures of ``core.explain`` use, again the same in both styles.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.spec import (
    RESNET50_BLOCKS,
    RESNET50_WIDTHS,
    RESNET_EXPANSION,
    ModelSpec,
    SpecError,
    Style,
)


def _norm1d(spec: ModelSpec, n: int) -> nn.Module:
    return nn.BatchNorm1d(n) if spec.batchnorm else nn.Identity()


def _norm2d(spec: ModelSpec, n: int) -> nn.Module:
    return nn.BatchNorm2d(n) if spec.batchnorm else nn.Identity()


class FeatureStage(NamedTuple):
    """One conv stage of a net (see :func:`feature_stages`): its display name and its forward."""

    name: str  # "conv1", "conv2" (LeNet-5); "stem", "stage 1" … "stage 4" (ResNet-50)
    forward: Callable[[torch.Tensor], torch.Tensor]


# --- MLP ---------------------------------------------------------------------------------------


def mlp_sizes(spec: ModelSpec) -> list[int]:
    """Layer widths from input to output, e.g. [12288, 20, 7, 5, 2] for the tutorial's cat net."""
    c, h, w = spec.input_shape
    return [c * h * w, *spec.hidden, spec.num_classes]


class MLP(nn.Module):
    """The tutorial's fully connected net: flatten → (Linear → [BN] → ReLU → [Dropout])* → Linear."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        sizes = mlp_sizes(spec)
        self.n_hidden = len(spec.hidden)
        # Registered layer by layer (fc1, bn1, fc2, ...) so the order matches the Sequential twin.
        for i, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1]), start=1):
            setattr(self, f"fc{i}", nn.Linear(n_in, n_out))
            setattr(self, f"bn{i}", _norm1d(spec, n_out))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # N, C*H*W
        for i in range(1, self.n_hidden + 1):
            x = getattr(self, f"fc{i}")(x)  # N, hidden_i
            x = self.dropout(F.relu(getattr(self, f"bn{i}")(x)))
        return self.head(x)  # N, classes


def mlp_sequential(spec: ModelSpec) -> nn.Sequential:
    sizes = mlp_sizes(spec)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), _norm1d(spec, n_out), nn.ReLU(), nn.Dropout(spec.dropout)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


# --- LeNet-5 -----------------------------------------------------------------------------------

LENET_FC = (400, 120, 84)


def lenet_flat_features(spec: ModelSpec) -> int:
    """Features after the conv part: 16 × 13 × 13 = 2704 for a 64×64 input."""
    side = ((spec.input_size - 4) // 2 - 4) // 2
    if side < 1:
        raise SpecError(f"input size {spec.input_size} is too small for LeNet-5 (needs ≥ 16)")
    return 16 * side * side


class LeNet5(nn.Module):
    """The tutorial's LeNet-5 variant: two conv/BN/ReLU/max-pool stages, then 400-120-84 with BN1d."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(spec.in_channels, 6, kernel_size=5)
        self.bn1 = _norm2d(spec, 6)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.bn2 = _norm2d(spec, 16)
        self.fc1 = nn.Linear(lenet_flat_features(spec), LENET_FC[0])
        self.bn3 = _norm1d(spec, LENET_FC[0])
        self.fc2 = nn.Linear(LENET_FC[0], LENET_FC[1])
        self.bn4 = _norm1d(spec, LENET_FC[1])
        self.fc3 = nn.Linear(LENET_FC[1], LENET_FC[2])
        self.bn5 = _norm1d(spec, LENET_FC[2])
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(LENET_FC[2], spec.num_classes)

    def conv1_stage(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # N, 6, 30, 30

    def conv2_stage(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # N, 16, 13, 13

    def feature_stages(self) -> list[FeatureStage]:
        return [FeatureStage("conv1", self.conv1_stage), FeatureStage("conv2", self.conv2_stage)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2_stage(self.conv1_stage(x))  # N, 16, 13, 13

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # N, 2704
        x = self.dropout(F.relu(self.bn3(self.fc1(x))))  # N, 400
        x = self.dropout(F.relu(self.bn4(self.fc2(x))))  # N, 120
        x = self.dropout(F.relu(self.bn5(self.fc3(x))))  # N, 84
        return self.head(x)  # N, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def lenet_sequential(spec: ModelSpec) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(spec.in_channels, 6, kernel_size=5), _norm2d(spec, 6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), _norm2d(spec, 16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    n_in = lenet_flat_features(spec)
    for n_out in LENET_FC:
        layers += [nn.Linear(n_in, n_out), _norm1d(spec, n_out), nn.ReLU(), nn.Dropout(spec.dropout)]
        n_in = n_out
    layers.append(nn.Linear(n_in, spec.num_classes))
    return nn.Sequential(*layers)


# --- ResNet-50 ---------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4), added to the shortcut, then ReLU.

    As in the tutorial (and the original ResNet), the stride sits on the first 1×1 conv, and the
    convs carry biases. ``project`` gives the shortcut its own 1×1 conv + BN (the "convolutional
    block"); without it the shortcut is the identity (the "identity block").
    """

    def __init__(self, spec: ModelSpec, in_ch: int, width: int, stride: int = 1, project: bool = False) -> None:
        super().__init__()
        out_ch = width * RESNET_EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride=stride)
        self.bn1 = _norm2d(spec, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = _norm2d(spec, width)
        self.conv3 = nn.Conv2d(width, out_ch, 1)
        self.bn3 = _norm2d(spec, out_ch)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), _norm2d(spec, out_ch))
            if project
            else nn.Identity()
        )

    def zero_init_last(self) -> None:
        """Zero the scale of the last batch norm, so the residual branch adds nothing and the block
        starts as the identity on its shortcut (see :func:`zero_init_residuals`). Without batch
        norm there is no scale to zero and the block is left as it is."""
        if isinstance(self.bn3, nn.BatchNorm2d):
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))  # N, width, H/s, W/s
        y = F.relu(self.bn2(self.conv2(y)))  # N, width, H/s, W/s
        y = self.bn3(self.conv3(y))  # N, 4·width, H/s, W/s
        return F.relu(y + self.shortcut(x))


def resnet_stages(spec: ModelSpec) -> list[list[Bottleneck]]:
    """The four stages: one projection block (stride 1 in the first stage, 2 after) then identity blocks."""
    stages, in_ch = [], 64
    for i, (width, n_blocks) in enumerate(zip(RESNET50_WIDTHS, RESNET50_BLOCKS)):
        blocks = [Bottleneck(spec, in_ch, width, stride=1 if i == 0 else 2, project=True)]
        in_ch = width * RESNET_EXPANSION
        blocks += [Bottleneck(spec, in_ch, width) for _ in range(n_blocks - 1)]
        stages.append(blocks)
    return stages


def _resnet_stem(spec: ModelSpec) -> list[nn.Module]:
    return [
        nn.ZeroPad2d(3),
        nn.Conv2d(spec.in_channels, 64, 7, stride=2),
        _norm2d(spec, 64),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
    ]


def _resnet_head(spec: ModelSpec) -> list[nn.Module]:
    # Global average pooling rather than the tutorial's fixed 2×2 average pool + flatten: the
    # classifier then fits any input size, with 36,864 fewer weights (see README).
    return [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(spec.dropout),
        nn.Linear(RESNET50_WIDTHS[-1] * RESNET_EXPANSION, spec.num_classes),
    ]


class ResNet50(nn.Module):
    """The tutorial's ResNet-50: stem, four bottleneck stages (3, 4, 6, 3 blocks), pooled head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_resnet_stem(spec))
        self.stages = nn.Sequential(*(nn.Sequential(*blocks) for blocks in resnet_stages(spec)))
        self.head = nn.Sequential(*_resnet_head(spec))

    def feature_stages(self) -> list[FeatureStage]:
        return [FeatureStage("stem", self.stem),
                *(FeatureStage(f"stage {i}", stage) for i, stage in enumerate(self.stages, start=1))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # N, 64, 15, 15 for a 64×64 input
        return self.stages(x)  # N, 2048, 2, 2

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)  # N, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resnet_sequential(spec: ModelSpec) -> nn.Sequential:
    blocks = [block for stage in resnet_stages(spec) for block in stage]
    return nn.Sequential(*_resnet_stem(spec), *blocks, *_resnet_head(spec))


# --- building, init, copying -------------------------------------------------------------------

# The constructors per (architecture, style): PyTorch's default init, before build_model's Kaiming init.
BUILDERS = {
    ("mlp", "module"): MLP,
    ("mlp", "sequential"): mlp_sequential,
    ("lenet", "module"): LeNet5,
    ("lenet", "sequential"): lenet_sequential,
    ("resnet50", "module"): ResNet50,
    ("resnet50", "sequential"): resnet_sequential,
}


def build_model(spec: ModelSpec, style: Style = "module", seed: int | None = None) -> nn.Module:
    """Build the net ``spec`` describes in the given construction style, Kaiming-initialised
    (and, for a ResNet, with every residual branch starting at zero: see :func:`zero_init_residuals`).

    With ``seed`` the initial weights come from a private generator: the same seed gives the same
    net whatever else the process does with the global random state.
    """
    try:
        builder = BUILDERS[(spec.arch, style)]
    except KeyError:
        raise SpecError(f"style must be 'module' or 'sequential'; got {style!r}") from None
    model = builder(spec)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return zero_init_residuals(init_kaiming(model, generator))


def init_kaiming(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Kaiming-normal weights and zero biases for every conv and linear layer.

    The tutorial loops over ``model.parameters()`` and tests ``isinstance(p, nn.Linear)``, which is
    never true for a tensor, so its init silently does nothing; iterating *modules* finds them.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def zero_init_residuals(model: nn.Module) -> nn.Module:
    """Zero the scale of each bottleneck's last batch norm, so every residual block starts as the
    identity (Goyal et al. 2017; timm's ``zero_init_last``).

    The 50-layer net then begins as a shallow one and deepens as the scales grow, and reaches a
    clearly better test accuracy on SIGNS with the same recipe (figures: README, "The nets").
    Every submodule with a ``zero_init_last()`` method (as :class:`Bottleneck` has) gets it called,
    so any residual block can take part by defining one. Nets without such blocks, or blocks
    without batch norm, are left as they are.
    """
    for m in model.modules():
        zero_init_last = getattr(m, "zero_init_last", None)
        if callable(zero_init_last):
            zero_init_last()
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements), optionally only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy every parameter and buffer of ``src`` into ``dst`` in registration order.

    Works across construction styles because both register tensors in forward order; shapes are
    checked pair by pair so two different nets are refused, not silently mixed.
    """
    src_state, dst_state = src.state_dict(), dst.state_dict()
    if len(src_state) != len(dst_state):
        raise ValueError(f"the nets differ: {len(src_state)} tensors vs {len(dst_state)}")
    new_state = {}
    for (sk, sv), (dk, dv) in zip(src_state.items(), dst_state.items()):
        if sv.shape != dv.shape:
            raise ValueError(f"the nets differ at {sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}")
        new_state[dk] = sv.detach().clone()
    dst.load_state_dict(new_state)
    return dst


# --- features and head: the seam fine-tuning and freezing use -----------------------------------

FREEZE: dict[str, str] = {
    "none": "all layers train",
    "features": "the last layers only: the head trains, the feature layers (weights and batch-norm statistics) stay as they were",
}


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without children, in registration order (which is forward order in every net here)."""
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def _head_start(leaves: list[tuple[str, nn.Module]]) -> int:
    """Index of the first head leaf: the first linear layer after the last convolution (the fully
    connected part of a conv net), or the final linear layer of a net without convolutions."""
    linear = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError("the net has no linear classifier to split off")
    conv = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    if conv:
        after = [i for i in linear if i > conv[-1]]
        if after:
            return after[0]
    return linear[-1]


def _holds_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def feature_head_split(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Split any net built here (either style) into its features and its head.

    Returns two lists of the modules that hold weights or buffers, in forward order:

    * the **head** is the fully connected part after the last convolution, the layers that
      "train the last layers only" trains: LeNet-5's 400-120-84 stack with its batch norms and
      the classifier; ResNet-50's classifier after the global average pool (2048 → classes). A
      net without convolutions (the MLP) has only its classifier as head. The head's last module
      is always the classifier, the final ``nn.Linear`` (see :func:`classifier`).
    * the **features** are every module before it: the convolutions and their batch norms (the
      MLP: its hidden layers).

    Parameter-free modules (ReLU, pooling, dropout, flatten) belong to neither: they have nothing
    to train or freeze. The split is found by position (registration order is forward order in
    every net here), not by name, so it is the same for an ``nn.Module`` subclass and its
    ``nn.Sequential`` twin. Why LeNet's head is its whole fully connected stack and not only the
    classifier was measured on the real fine-tuning case (see the README's fine-tuning section).
    """
    leaves = _leaves(model)
    i = _head_start(leaves)
    features = [m for _, m in leaves[:i] if _holds_tensors(m)]
    head = [m for _, m in leaves[i:] if _holds_tensors(m)]
    return features, head


def classifier(model: nn.Module) -> nn.Linear:
    """The net's classifier: its final ``nn.Linear``, one output per class."""
    leaves = _leaves(model)
    linear = [m for _, m in leaves if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError("the net has no linear classifier")
    return linear[-1]


# --- the last spatial feature map: the seam explanations use --------------------------------------

# Layers that end the spatial part of a net: what follows them has no image layout left.
_UNSPATIAL = (nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(sub, nn.Conv2d) for sub in m.modules())


def _spatial_end(model: nn.Sequential) -> int:
    """Index of the first top-level layer of a Sequential that leaves the image layout behind (a
    flatten, global pool or linear layer after the last convolution); 0 without convolutions."""
    children = list(model)
    convs = [i for i, m in enumerate(children) if _has_conv(m)]
    if not convs:
        return 0
    return next((i for i in range(convs[-1] + 1, len(children)) if isinstance(children[i], _UNSPATIAL)), len(children))


def _out_channels(m: nn.Module) -> int | None:
    """Channels a layer outputs if it has convolutions (its last one's, in registration = forward
    order; a bottleneck's shortcut conv has the block's output width too), else None."""
    convs = [sub for sub in m.modules() if isinstance(sub, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


def _sequential_stages(model: nn.Sequential) -> list[FeatureStage]:
    """The conv stages of a Sequential, by position: a new stage starts where the channel count
    changes (LeNet's conv1 and conv2; ResNet's stem and the four stages, whose first block widens),
    and layers before the first convolution (ResNet's padding) join the first stage."""
    groups: list[list[nn.Module]] = []
    channels: int | None = None
    for m in list(model)[: _spatial_end(model)]:
        out = _out_channels(m)
        if not groups or (out is not None and channels is not None and out != channels):
            groups.append([m])
        else:
            groups[-1].append(m)
        if out is not None:
            channels = out
    has_blocks = any(next(m.children(), None) is not None for g in groups for m in g)
    stages, n_block_stages = [], 0
    for i, group in enumerate(groups, start=1):
        seq = nn.Sequential(*group)  # shares the layers; builds nothing new to train
        if not has_blocks:
            name = f"conv{i}"
        elif any(next(m.children(), None) is not None for m in group):
            n_block_stages += 1
            name = f"stage {n_block_stages}"
        else:
            name = "stem"
        stages.append(FeatureStage(name, seq))
    return stages


def feature_stages(model: nn.Module) -> list[FeatureStage]:
    """The conv stages of a net, in forward order; applied one after the other they compute
    :func:`forward_features`. Empty for a net without convolutions (the MLP).

    LeNet-5: ``conv1`` (conv → BN → ReLU → max-pool, 6 maps) and ``conv2`` (16 maps). ResNet-50:
    the ``stem`` (7×7 conv → BN → ReLU → max-pool) and ``stage 1`` … ``stage 4``. An
    ``nn.Module`` net names its own stages (a ``feature_stages()`` method); an ``nn.Sequential``
    is cut by position (see :func:`_sequential_stages`), so both styles give the same stages with
    the same names. Calling a stage only runs layers the net already has: nothing is registered,
    hooked or changed.
    """
    own = getattr(model, "feature_stages", None)
    if callable(own):
        return list(own())
    if isinstance(model, nn.Sequential):
        return _sequential_stages(model)
    return []


def has_spatial_features(model: nn.Module) -> bool:
    """Whether the net has a conv part, so :func:`forward_features` (and Grad-CAM) apply."""
    return bool(feature_stages(model))


def _no_spatial_features(model: nn.Module) -> ValueError:
    return ValueError(
        f"{type(model).__name__} has no convolution layer, so it has no spatial feature map "
        "(for the MLP use an input-gradient saliency map instead)"
    )


def forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The net's last spatial feature map for input ``x``: N×C×h×w, the output of its last conv
    stage, just before the layer that flattens or globally pools it.

    LeNet-5: after conv2 → BN → ReLU → max-pool (16×13×13 for a 64-px input: exactly what its
    fully connected part reads). ResNet-50: after the last stage (2048×2×2 for 64 px), before the
    global average pool. ``forward_head(model, forward_features(model, x))`` is ``model(x)``,
    bit for bit, in both styles. Raises ``ValueError`` for a net without convolutions.
    """
    own = getattr(model, "forward_features", None)
    if callable(own):
        return own(x)
    if isinstance(model, nn.Sequential) and _spatial_end(model) > 0:
        return model[: _spatial_end(model)](x)
    raise _no_spatial_features(model)


def forward_head(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The logits from the last spatial feature map (:func:`forward_features`): the rest of the net."""
    own = getattr(model, "forward_head", None)
    if callable(own):
        return own(features)
    if isinstance(model, nn.Sequential) and _spatial_end(model) > 0:
        return model[_spatial_end(model):](features)
    raise _no_spatial_features(model)


def replace_head(model: nn.Module, spec: ModelSpec, num_classes: int, generator: torch.Generator | None = None) -> ModelSpec:
    """Put a fresh classifier for ``num_classes`` classes on ``model`` (in place); returns the new spec.

    Only the classifier (the final ``nn.Linear``) is replaced; the rest of the head keeps its
    weights. The new layer takes the same input features as the old one and is Kaiming-initialised
    like every layer :func:`build_model` makes (from ``generator`` when given, so a seeded run gets
    the same head every time). It takes the old classifier's place in the registration order, so the
    state_dict keeps its order and :func:`copy_weights` still works across styles.
    """
    new_spec = spec.replace(num_classes=num_classes)  # validates the class count
    old = classifier(model)
    name = next(n for n, m in model.named_modules() if m is old)
    head = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    init_kaiming(head, generator)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, head)  # an existing key keeps its place in _modules
    return new_spec


class FrozenBatchNorm1d(nn.BatchNorm1d):
    """A batch norm frozen by :func:`freeze_features`: it stays in ``eval()`` mode whatever
    ``train()`` asks, so it normalises with its running statistics and never updates them."""

    def train(self, mode: bool = True) -> "FrozenBatchNorm1d":
        return super().train(False)


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """The 2-d twin of :class:`FrozenBatchNorm1d`."""

    def train(self, mode: bool = True) -> "FrozenBatchNorm2d":
        return super().train(False)


_FROZEN_NORMS: dict[type, type] = {nn.BatchNorm1d: FrozenBatchNorm1d, nn.BatchNorm2d: FrozenBatchNorm2d}
_THAWED_NORMS: dict[type, type] = {v: k for k, v in _FROZEN_NORMS.items()}


def freeze_features(model: nn.Module) -> nn.Module:
    """Freeze the features (see :func:`feature_head_split`), in place: only the head trains.

    The feature layers stop taking gradients (``requires_grad=False``), and their batch norms are
    switched to :class:`FrozenBatchNorm1d`/``2d``, which stay in eval mode through any later
    ``model.train()``: in train mode a batch norm would still normalise with the batch's statistics
    and overwrite its running ones, so a "frozen" net would change under a few batches of new
    photos. The state_dict (names, order, tensors) is unchanged.
    """
    features, _ = feature_head_split(model)
    for m in features:
        m.requires_grad_(False)
        frozen = _FROZEN_NORMS.get(type(m))
        if frozen is not None:
            m.__class__ = frozen
            m.train(False)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Undo :func:`freeze_features`: every parameter trains and batch norms follow ``train()`` again."""
    for m in model.modules():
        thawed = _THAWED_NORMS.get(type(m))
        if thawed is not None:
            m.__class__ = thawed
    model.requires_grad_(True)
    return model

