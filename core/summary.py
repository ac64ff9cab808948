"""A per-layer summary of a net, Keras-``summary()`` style: output shape, parameters, multiply-adds.

The shapes are not computed by formula but observed: forward hooks on every leaf module record what
a real forward pass produces, so the table cannot drift from the code it describes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from core.nets import count_parameters
from core.spec import ModelSpec

# Probe batch size: BatchNorm1d refuses a batch of one in train mode, and two costs nothing.
_PROBE_BATCH = 2


@dataclass(frozen=True)
class LayerRow:
    """One call of one leaf module during a forward pass.

    ``output_shape`` leaves out the batch dimension. ``parameters`` counts the module's own tensors,
    and only on its first call, so a module used twice (the MLP's shared dropout) is not counted
    twice. ``trainable`` is true when every one of those tensors requires grad (so also for layers
    without any).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    parameters: int
    trainable: bool
    mult_adds: int = 0


@dataclass(frozen=True)
class ModelSummary:
    """Rows in execution order plus totals for one input image of ``input_shape`` (C×H×W)."""

    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    mult_adds: int
    input_shape: tuple[int, ...] = field(default=())
    output_shape: tuple[int, ...] = field(default=())

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (one per table row); shapes become lists of ints."""
        records = []
        for row in self.rows:
            d = asdict(row)
            d["output_shape"] = list(row.output_shape)
            records.append(d)
        return records


def _mult_adds(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds per image: every output element of a conv/linear is one dot product.

    BN, pooling and activations are left at 0: they are a rounding error next to the convs and
    matmuls, and counting them would need a convention per layer type.
    """
    per_image = out.numel() // max(out.shape[0], 1)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def _probe_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters(), None)
    if p is None:
        return torch.float32, torch.device("cpu")
    return (p.dtype if p.is_floating_point() else torch.float32), p.device


def summarize(model: nn.Module, spec: ModelSpec) -> ModelSummary:
    """Run a zero batch through ``model`` and tabulate every leaf module it passes through.

    The pass runs in eval mode under ``no_grad`` so BatchNorm statistics are left untouched, and
    each module's training flag is restored afterwards. ``nn.Identity`` leaves (a switched-off BN,
    a plain shortcut) are skipped: they hold nothing and change nothing. Work done by functional
    calls (``F.relu``, ``torch.flatten``) has no module and so no row.
    """
    rows: list[LayerRow] = []
    seen: set[int] = set()
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, out: Any) -> None:
            if isinstance(module, nn.Identity):
                return
            own = list(module.parameters(recurse=False))
            first = id(module) not in seen
            seen.add(id(module))
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            macs = _mult_adds(module, out) if isinstance(out, torch.Tensor) else 0
            rows.append(
                LayerRow(
                    name=name or type(module).__name__,
                    type=type(module).__name__,
                    output_shape=shape,
                    parameters=sum(p.numel() for p in own) if first else 0,
                    trainable=all(p.requires_grad for p in own),
                    mult_adds=macs,
                )
            )

        return hook

    dtype, device = _probe_dtype_device(model)
    x = torch.zeros(_PROBE_BATCH, *spec.input_shape, dtype=dtype, device=device)
    flags = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(make_hook(name)) for name, m in leaves]
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in flags:
            m.training = training

    # A leaf with weights that the forward never touched still owns parameters: list it, so the
    # rows always add up to the total.
    for name, m in leaves:
        own = list(m.parameters(recurse=False))
        if id(m) not in seen and own:
            rows.append(LayerRow(name, type(m).__name__, (), sum(p.numel() for p in own),
                                 all(p.requires_grad for p in own)))

    return ModelSummary(
        rows=rows,
        total_params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        mult_adds=sum(r.mult_adds for r in rows),
        input_shape=tuple(spec.input_shape),
        output_shape=tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else (),
    )
