"""The model spec: one description of a net from which both construction styles, the per-layer
summary and the generated source code are all built."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any, Literal

Arch = Literal["mlp", "lenet", "resnet50"]
Style = Literal["module", "sequential"]

ARCHS: dict[str, str] = {"mlp": "MLP", "lenet": "LeNet-5", "resnet50": "ResNet-50"}
STYLES: dict[str, str] = {"module": "nn.Module subclass", "sequential": "nn.Sequential"}

# Bottleneck widths and block counts per ResNet-50 stage: one projection block then identity blocks.
RESNET50_WIDTHS = (64, 128, 256, 512)
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET_EXPANSION = 4


class SpecError(ValueError):
    """A model setting outside its valid range; the message names the setting and the range."""


@dataclass(frozen=True)
class ModelSpec:
    """What a net is, independent of how it is written down.

    ``in_channels`` is 1 for gray input (the tutorial's LeNet) or 3 for RGB; ``hidden`` is used by
    the MLP only. ``dropout`` is applied after each hidden activation of the MLP and LeNet's fully
    connected part, and before the ResNet's classifier.
    """

    arch: Arch = "lenet"
    num_classes: int = 6
    in_channels: int = 1
    input_size: int = 64
    hidden: tuple[int, ...] = field(default=(20, 7, 5))
    dropout: float = 0.0
    batchnorm: bool = True

    def __post_init__(self) -> None:
        # A list from JSON or a form must still hash and compare like the tuple it stands for.
        # Anything else (a string, None, sizes that are not whole numbers) is left for validate()
        # to refuse with a SpecError instead of a TypeError or a silent int() truncation.
        if isinstance(self.hidden, (list, tuple)) and all(_is_whole(h) for h in self.hidden):
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first setting outside its valid range (or of the wrong type)."""
        if not isinstance(self.arch, str) or self.arch not in ARCHS:
            raise SpecError(f"architecture must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        for name, value, valid in (
            ("number of classes", self.num_classes, "a whole number 2–1000"),
            ("input channels", self.in_channels, "1 (gray) or 3 (RGB)"),
            ("input size", self.input_size, "a whole number of pixels"),
        ):
            if not _is_whole(value):
                raise SpecError(f"{name} must be {valid}; got {value!r} ({type(value).__name__})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, Real) or not math.isfinite(self.dropout):
            raise SpecError(f"dropout p must be a number in [0, 1); got {self.dropout!r} ({type(self.dropout).__name__})")
        if not isinstance(self.batchnorm, bool):
            raise SpecError(f"batch norm must be True or False; got {self.batchnorm!r} ({type(self.batchnorm).__name__})")
        if not isinstance(self.hidden, tuple) or not all(_is_whole(h) for h in self.hidden):
            raise SpecError(f"hidden layer sizes must be whole numbers such as (20, 7, 5); got {self.hidden!r}")
        if not 2 <= self.num_classes <= 1000:
            raise SpecError(f"number of classes must be 2–1000; got {self.num_classes}")
        if self.in_channels not in (1, 3):
            raise SpecError(f"input channels must be 1 (gray) or 3 (RGB); got {self.in_channels}")
        low = {"mlp": 4, "lenet": 16, "resnet50": 32}[self.arch]
        if not low <= self.input_size <= 512:
            raise SpecError(f"input size for {ARCHS[self.arch]} must be {low}–512 pixels; got {self.input_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"dropout p must be in [0, 1); got {self.dropout}")
        if self.arch == "mlp":
            if not 1 <= len(self.hidden) <= 8:
                raise SpecError(f"the MLP needs 1–8 hidden layers; got {len(self.hidden)}")
            if any(not 1 <= h <= 4096 for h in self.hidden):
                raise SpecError(f"hidden layer sizes must be 1–4096; got {list(self.hidden)}")

    @property
    def name(self) -> str:
        return ARCHS[self.arch]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C×H×W of one input image."""
        return (self.in_channels, self.input_size, self.input_size)

    def replace(self, **changes: Any) -> "ModelSpec":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (stored in checkpoints)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`; unknown keys are refused so a foreign file is caught early."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**d)

    def describe(self) -> str:
        """One line for sidebars and run lists."""
        parts = [self.name]
        if self.arch == "mlp":
            parts.append("hidden " + "-".join(map(str, self.hidden)))
        parts.append("RGB" if self.in_channels == 3 else "gray")
        parts.append(f"{self.input_size}px")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        parts.append("BN" if self.batchnorm else "no BN")
        return ", ".join(parts)


def _is_whole(value: Any) -> bool:
    """An int (or numpy integer), not a bool, float or string that merely looks like one."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def default_spec(arch: str, num_classes: int = 6) -> ModelSpec:
    """Each net as TorchLab builds it by default: the tutorial's nets, all three seeing RGB, and the
    MLP with batch norm.

    The tutorial's LeNet sees gray (``in_channels=1``, ``--channels 1``); in colour, trained with
    the ``mixed`` augmentation, it reads far more webcam photos of other people's hands at the same
    SIGNS accuracy (README, "Robustness"), so colour is the default.
    """
    if arch == "mlp":
        # With batch norm: the tutorial's MLP (no batch norm, ``batchnorm=False``) stays at chance on
        # SIGNS and on the built-in set under every recipe measured (README, "The nets").
        return ModelSpec("mlp", num_classes, in_channels=3)
    if arch == "lenet":
        return ModelSpec("lenet", num_classes, in_channels=3)
    if arch == "resnet50":
        return ModelSpec("resnet50", num_classes, in_channels=3)
    raise SpecError(f"architecture must be one of {', '.join(ARCHS)}; got {arch!r}")
