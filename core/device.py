"""Which device to compute on: CUDA, then Apple's MPS, then the CPU."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device that was asked for but is not available here."""


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """Devices this machine can train on, best first (always ends with ``cpu``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return [*found, "cpu"]


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; a named device must exist or :class:`DeviceError`."""
    if name not in DEVICES:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "auto":
        return torch.device(available_devices()[0])
    if name not in available_devices():
        raise DeviceError(f"device {name!r} is not available on this machine; available: {', '.join(available_devices())}")
    return torch.device(name)


def describe_device(device: torch.device | str) -> str:
    """A human name: the GPU's model, or the CPU with its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"
