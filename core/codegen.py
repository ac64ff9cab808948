"""Readable PyTorch source for a model spec, written the way a tutorial would write it.

The code is generated from the same :class:`~core.spec.ModelSpec` and the same helpers
(:func:`~core.nets.mlp_sizes`, :func:`~core.nets.lenet_flat_features`, the ResNet-50 stage
constants) that :mod:`core.nets` builds from, so the numbers cannot disagree. Executing the code
leaves a ``model`` whose parameters and buffers come in the same order and shapes as
``build_model(spec, style)``: :func:`core.nets.copy_weights` moves weights across, and the outputs
match. Layers a spec switches off (BatchNorm, a dropout of 0) are left out rather than written as
``nn.Identity()`` or ``nn.Dropout(0.0)``, because a reader should only see what the net does.
"""
from __future__ import annotations

from core.nets import LENET_FC, lenet_flat_features, mlp_sizes
from core.spec import (
    RESNET50_BLOCKS,
    RESNET50_WIDTHS,
    RESNET_EXPANSION,
    STYLES,
    ModelSpec,
    SpecError,
    Style,
)

_IMPORTS = ["import torch", "from torch import nn", "import torch.nn.functional as F"]

# LeNet-5's conv part, as core.nets writes it: (out channels, kernel) per stage, 2×2 max-pool after each.
_LENET_CONV = ((6, 5), (16, 5))


def generate_code(spec: ModelSpec, style: Style) -> str:
    """Python source defining the net ``spec`` describes in ``style``, ending in ``model = ...``."""
    if style not in STYLES:
        raise SpecError(f"style must be 'module' or 'sequential'; got {style!r}")
    body = _GENERATORS[spec.arch](spec, style)
    # Imports first, then a one-line caption right above the first definition it describes.
    lines = [*_IMPORTS, "", "", f"# {_title(spec, style)}", *body]
    return "\n".join(lines) + "\n"


def _title(spec: ModelSpec, style: Style) -> str:
    c, s = spec.in_channels, spec.input_size
    colour = "RGB" if c == 3 else "gray"
    return f"{spec.name} for {c}×{s}×{s} {colour} images, {spec.num_classes} classes, as an {STYLES[style]}."


def _p(p: float) -> str:
    return repr(float(p))


def _shape(*dims: int | str) -> str:
    return "N, " + ", ".join(map(str, dims))


# --- MLP ---------------------------------------------------------------------------------------


def _mlp(spec: ModelSpec, style: Style) -> list[str]:
    sizes = mlp_sizes(spec)
    c, s = spec.in_channels, spec.input_size
    flat_note = f"{c}·{s}·{s} = {sizes[0]}"
    hidden = list(zip(sizes[:-2], sizes[1:-1]))
    if style == "sequential":
        out = ["model = nn.Sequential(", f"    nn.Flatten(),  # {_shape(sizes[0])} ({flat_note})"]
        for i, (n_in, n_out) in enumerate(hidden, start=1):
            out.append(f"    # hidden layer {i}: {_shape(n_out)}")
            out.append(f"    nn.Linear({n_in}, {n_out}),")
            if spec.batchnorm:
                out.append(f"    nn.BatchNorm1d({n_out}),")
            out.append("    nn.ReLU(),")
            if spec.dropout:
                out.append(f"    nn.Dropout({_p(spec.dropout)}),")
        out.append(f"    nn.Linear({sizes[-2]}, {sizes[-1]}),  # {_shape(sizes[-1])} class scores")
        return [*out, ")"]

    arrows = " → ".join(map(str, sizes))
    out = [
        "class MLP(nn.Module):",
        f'    """Fully connected net: {arrows} (flattened image → hidden layers → classes)."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    for i, (n_in, n_out) in enumerate(hidden, start=1):
        note = f"  # {flat_note} input features" if i == 1 else ""
        out.append(f"        self.fc{i} = nn.Linear({n_in}, {n_out}){note}")
        if spec.batchnorm:
            out.append(f"        self.bn{i} = nn.BatchNorm1d({n_out})")
    if spec.dropout:
        out.append(f"        self.dropout = nn.Dropout({_p(spec.dropout)})")
    out += [
        f"        self.head = nn.Linear({sizes[-2]}, {sizes[-1]})",
        "",
        "    def forward(self, x):",
        f"        x = torch.flatten(x, 1)  # {_shape(sizes[0])}",
    ]
    for i, (_, n_out) in enumerate(hidden, start=1):
        out.append(f"        x = {_act(f'self.fc{i}(x)', f'self.bn{i}', spec)}  # {_shape(n_out)}")
    out += [f"        return self.head(x)  # {_shape(sizes[-1])}", "", "", "model = MLP()"]
    return out


def _act(expr: str, bn: str, spec: ModelSpec) -> str:
    """``dropout(relu(bn(expr)))`` with the parts the spec switches off left out."""
    if spec.batchnorm:
        expr = f"{bn}({expr})"
    expr = f"F.relu({expr})"
    return f"self.dropout({expr})" if spec.dropout else expr


# --- LeNet-5 -----------------------------------------------------------------------------------


def _lenet_sides(spec: ModelSpec) -> list[tuple[int, int]]:
    """(after conv, after pool) side length for each conv stage."""
    sides, side = [], spec.input_size
    for _, k in _LENET_CONV:
        conv = side - k + 1
        side = conv // 2
        sides.append((conv, side))
    return sides


def _lenet(spec: ModelSpec, style: Style) -> list[str]:
    flat = lenet_flat_features(spec)
    sides = _lenet_sides(spec)
    last_ch, last_side = _LENET_CONV[-1][0], sides[-1][1]
    # The side is recomputed here only for the comments; the layer size itself comes from core.nets.
    assert flat == last_ch * last_side * last_side, "codegen's LeNet shapes drifted from core.nets"
    flat_note = f"{last_ch}·{last_side}·{last_side} = {flat}"
    fc = list(zip((flat, *LENET_FC[:-1]), LENET_FC))

    if style == "sequential":
        out = ["model = nn.Sequential("]
        n_in = spec.in_channels
        for (n_out, k), (conv, pooled) in zip(_LENET_CONV, sides):
            out.append(f"    nn.Conv2d({n_in}, {n_out}, kernel_size={k}),  # {_shape(n_out, conv, conv)}")
            if spec.batchnorm:
                out.append(f"    nn.BatchNorm2d({n_out}),")
            out += ["    nn.ReLU(),", f"    nn.MaxPool2d(2),  # {_shape(n_out, pooled, pooled)}"]
            n_in = n_out
        out.append(f"    nn.Flatten(),  # {_shape(flat)} ({flat_note})")
        for n_in, n_out in fc:
            out.append(f"    nn.Linear({n_in}, {n_out}),  # {_shape(n_out)}")
            if spec.batchnorm:
                out.append(f"    nn.BatchNorm1d({n_out}),")
            out.append("    nn.ReLU(),")
            if spec.dropout:
                out.append(f"    nn.Dropout({_p(spec.dropout)}),")
        out.append(f"    nn.Linear({LENET_FC[-1]}, {spec.num_classes}),  # {_shape(spec.num_classes)} class scores")
        return [*out, ")"]

    fc_text = " → ".join(map(str, (*LENET_FC, spec.num_classes)))
    conv_text = "conv → BN → ReLU → max-pool" if spec.batchnorm else "conv → ReLU → max-pool"
    out = [
        "class LeNet5(nn.Module):",
        f'    """LeNet-5: two {conv_text} stages, then fully connected {fc_text}."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    n_in = spec.in_channels
    for i, (n_out, k) in enumerate(_LENET_CONV, start=1):
        out.append(f"        self.conv{i} = nn.Conv2d({n_in}, {n_out}, kernel_size={k})")
        if spec.batchnorm:
            out.append(f"        self.bn{i} = nn.BatchNorm2d({n_out})")
        n_in = n_out
    n_conv = len(_LENET_CONV)
    for i, (n_in, n_out) in enumerate(fc, start=1):
        note = f"  # {flat_note} features after the conv part" if i == 1 else ""
        out.append(f"        self.fc{i} = nn.Linear({n_in}, {n_out}){note}")
        if spec.batchnorm:
            out.append(f"        self.bn{n_conv + i} = nn.BatchNorm1d({n_out})")
    if spec.dropout:
        out.append(f"        self.dropout = nn.Dropout({_p(spec.dropout)})")
    out += [
        f"        self.head = nn.Linear({LENET_FC[-1]}, {spec.num_classes})",
        "",
        f"    def forward(self, x):  # x: {_shape(*spec.input_shape)}",
    ]
    for i, ((n_out, _), (_, pooled)) in enumerate(zip(_LENET_CONV, sides), start=1):
        y = f"self.conv{i}(x)"
        if spec.batchnorm:
            y = f"self.bn{i}({y})"
        out.append(f"        x = F.max_pool2d(F.relu({y}), 2)  # {_shape(n_out, pooled, pooled)}")
    out.append(f"        x = torch.flatten(x, 1)  # {_shape(flat)}")
    for i, (_, n_out) in enumerate(fc, start=1):
        out.append(f"        x = {_act(f'self.fc{i}(x)', f'self.bn{n_conv + i}', spec)}  # {_shape(n_out)}")
    out += [f"        return self.head(x)  # {_shape(spec.num_classes)}", "", "", "model = LeNet5()"]
    return out


# --- ResNet-50 ---------------------------------------------------------------------------------


def _resnet_sides(spec: ModelSpec) -> tuple[int, int, list[int]]:
    """Side length after the stem conv, after the stem pool, and after each stage."""
    conv = (spec.input_size + 2 * 3 - 7) // 2 + 1  # zero-pad 3, 7×7 stride 2
    pooled = (conv - 3) // 2 + 1  # 3×3 max-pool, stride 2
    stages, side = [], pooled
    for i in range(len(RESNET50_WIDTHS)):
        if i > 0:
            side = (side - 1) // 2 + 1  # the projection block's strided 1×1 conv
        stages.append(side)
    return conv, pooled, stages


def _bottleneck(spec: ModelSpec) -> list[str]:
    bn = spec.batchnorm
    e = RESNET_EXPANSION
    shortcut = (
        "nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), nn.BatchNorm2d(out_ch))"
        if bn
        else "nn.Conv2d(in_ch, out_ch, 1, stride=stride)"
    )
    out = [
        "class Bottleneck(nn.Module):",
        f'    """1×1 reduce → 3×3 → 1×1 expand (×{e}), added to the shortcut, then ReLU.',
        "",
        f"    With project=True the shortcut is a strided 1×1 conv{' + BN' if bn else ''} that matches the new shape",
        '    (the "convolutional block"); otherwise it is the input itself (the "identity block").',
        '    """',
        "",
        "    def __init__(self, in_ch, width, stride=1, project=False):",
        "        super().__init__()",
        f"        out_ch = width * {e}",
        "        self.conv1 = nn.Conv2d(in_ch, width, 1, stride=stride)",
        *(["        self.bn1 = nn.BatchNorm2d(width)"] if bn else []),
        "        self.conv2 = nn.Conv2d(width, width, 3, padding=1)",
        *(["        self.bn2 = nn.BatchNorm2d(width)"] if bn else []),
        "        self.conv3 = nn.Conv2d(width, out_ch, 1)",
        *(["        self.bn3 = nn.BatchNorm2d(out_ch)"] if bn else []),
        "        if project:",
        f"            self.shortcut = {shortcut}",
        "        else:",
        "            self.shortcut = nn.Identity()",
        "",
        "    def forward(self, x):",
        f"        y = F.relu({'self.bn1(self.conv1(x))' if bn else 'self.conv1(x)'})  # N, width, H/stride, W/stride",
        f"        y = F.relu({'self.bn2(self.conv2(y))' if bn else 'self.conv2(y)'})  # N, width, H/stride, W/stride",
        f"        y = {'self.bn3(self.conv3(y))' if bn else 'self.conv3(y)'}  # N, {e}·width, H/stride, W/stride",
        "        return F.relu(y + self.shortcut(x))",
        "",
        "",
        "def make_stage(in_ch, width, n_blocks, stride):",
        '    """One projection block (new width; stride 2 halves H and W), then identity blocks."""',
        "    blocks = [Bottleneck(in_ch, width, stride, project=True)]",
        f"    blocks += [Bottleneck(width * {e}, width) for _ in range(n_blocks - 1)]",
        "    return blocks",
    ]
    return out


def _resnet(spec: ModelSpec, style: Style) -> list[str]:
    conv_side, pool_side, stage_sides = _resnet_sides(spec)
    stem = [
        "nn.ZeroPad2d(3),",
        f"nn.Conv2d({spec.in_channels}, 64, 7, stride=2),  # {_shape(64, conv_side, conv_side)}",
        *(["nn.BatchNorm2d(64),"] if spec.batchnorm else []),
        "nn.ReLU(),",
        f"nn.MaxPool2d(3, stride=2),  # {_shape(64, pool_side, pool_side)}",
    ]
    stages, in_ch = [], 64
    for i, (width, n_blocks, side) in enumerate(zip(RESNET50_WIDTHS, RESNET50_BLOCKS, stage_sides)):
        out_ch = width * RESNET_EXPANSION
        call = f"make_stage({in_ch}, {width}, {n_blocks}, stride={1 if i == 0 else 2})"
        stages.append((call, _shape(out_ch, side, side)))
        in_ch = out_ch
    feats = in_ch

    out = _bottleneck(spec)
    if style == "sequential":
        out += ["", "", "model = nn.Sequential(", "    # stem", *(f"    {line}" for line in stem)]
        for i, (call, shape) in enumerate(stages, start=1):
            out.append(f"    *{call},  # stage {i}: {shape}")
        out += [
            "    # head: global average pool, so the classifier fits any input size",
            f"    nn.AdaptiveAvgPool2d(1),  # {_shape(feats, 1, 1)}",
            f"    nn.Flatten(),  # {_shape(feats)}",
            *([f"    nn.Dropout({_p(spec.dropout)}),"] if spec.dropout else []),
            f"    nn.Linear({feats}, {spec.num_classes}),  # {_shape(spec.num_classes)} class scores",
            ")",
        ]
        return out

    blocks = " + ".join(map(str, RESNET50_BLOCKS))
    out += [
        "",
        "",
        "class ResNet50(nn.Module):",
        f'    """ResNet-50: stem, four bottleneck stages ({blocks} blocks), global-average-pooled classifier."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.stem = nn.Sequential(",
        *(f"            {line}" for line in stem),
        "        )",
    ]
    for i, (call, shape) in enumerate(stages, start=1):
        out.append(f"        self.stage{i} = nn.Sequential(*{call})  # {shape}")
    out.append("        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pool: fits any input size")
    if spec.dropout:
        out.append(f"        self.dropout = nn.Dropout({_p(spec.dropout)})")
    out += [
        f"        self.fc = nn.Linear({feats}, {spec.num_classes})",
        "",
        f"    def forward(self, x):  # x: {_shape(*spec.input_shape)}",
        f"        x = self.stem(x)  # {_shape(64, pool_side, pool_side)}",
    ]
    for i, (_, shape) in enumerate(stages, start=1):
        out.append(f"        x = self.stage{i}(x)  # {shape}")
    out.append(f"        x = torch.flatten(self.pool(x), 1)  # {_shape(feats)}")
    if spec.dropout:
        out.append("        x = self.dropout(x)")
    out += [f"        return self.fc(x)  # {_shape(spec.num_classes)}", "", "", "model = ResNet50()"]
    return out


_GENERATORS = {"mlp": _mlp, "lenet": _lenet, "resnet50": _resnet}
