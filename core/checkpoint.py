"""Checkpoints: one file with the weights and everything needed to use them, saved atomically and
loaded without ever unpickling code.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts written with
``torch.save`` and read back with ``torch.load(weights_only=True)``, which refuses any pickled
object other than those. The tutorial's other way — pickling the whole module — is offered only as
an export (:func:`export_full_model`), never loaded from a file someone hands us.

Besides the weights, a checkpoint records where the net came from (``origin``: the checkpoint it was
fine-tuned from, what was frozen, whether its head is new, the file a run was resumed from), the
side of the images it trained on (``preprocessing["image_size"]``), and, when saved at the end of
an epoch, everything a run needs to continue bit-exactly from the file (``resume``: the step and
epoch, the schedule position and the random generators' states, next to the optimizer state).
These keys were added without changing the format version: files written before them load as
before (no origin, image size = the net's input size, nothing to resume).
"""
from __future__ import annotations

import copy
import io
import os
import pickle
import pickletools
import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from core.augment import mirrors
from core.nets import build_model, copy_weights, unfreeze
from core.spec import ARCHS, ModelSpec, SpecError

FORMAT = "torchlab-checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode, on the CPU unless moved) and its metadata."""

    model: nn.Module
    spec: ModelSpec
    style: str
    classes: tuple[str, ...]
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    source: str = ""  # the file's name (no directories), or the name it was loaded under
    image_size: int | None = None  # side of the training images; None: the net's input size (older files)
    origin: dict[str, Any] = field(default_factory=dict)  # init_from, freeze, new_head, resumed_from
    resume: dict[str, Any] | None = None  # training state to continue from (see Trainer.resume)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return preprocessing_of(self.spec, self.image_size)

    @property
    def train_image_size(self) -> int:
        """The side of the images it trained on: how a photo is prepared before the net's resize."""
        return self.image_size or self.spec.input_size

    @property
    def mirror_average(self) -> bool:
        """Whether the net reads a photo as the mean of its answers for the photo and its mirror
        image: for nets trained on images mirrored as often as not (the fine-tuning recipe's
        ``mirrored`` augmentation), which read other people's hands better so. Prediction, the test
        report, the heat maps and the live view all follow it."""
        t = self.training
        try:
            return bool(t.get("augment")) and mirrors(self.spec.arch, str(t.get("augmentation", "standard")))
        except ValueError:  # an augmentation this TorchLab does not know: read the photo alone
            return False

    def describe(self) -> str:
        acc = self.metrics.get("test_acc")
        acc_text = f", test accuracy {acc:.1%}" if isinstance(acc, float) else ""
        data = self.dataset.get("title", "unknown data")
        return f"{self.spec.describe()} — {len(self.classes)} classes ({data}){acc_text}"


def preprocessing_of(spec: ModelSpec, image_size: int | None = None) -> dict[str, Any]:
    """How an image must be prepared for a net: the same recipe training used.

    ``image_size`` is the side of the training images (a photo is center-cropped and resized to it
    first, then converted and resized to the net's ``size`` as the training images were); it
    defaults to the net's input size.
    """
    return {
        "channels": spec.in_channels,
        "size": spec.input_size,
        "image_size": int(image_size or spec.input_size),
        "color": "gray (0.299 R + 0.587 G + 0.114 B)" if spec.in_channels == 1 else "RGB",
        "scale": "pixel / 255 → [0, 1]",
        "crop": "center square",
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    spec: ModelSpec,
    style: str,
    classes: tuple[str, ...] | list[str],
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    image_size: int | None = None,
    origin: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a temp file beside the target, flushed, synced, renamed.

    A crash or full disk mid-save leaves any earlier file at ``path`` intact. Refuses weights that
    are not finite (a diverged run), so a broken net never replaces a good one. ``image_size`` is
    the side of the training images (default: the net's input size); ``origin`` and ``resume`` are
    stored as given (plain data and tensors only).
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"not saved: tensor {k} holds NaN or infinite values (the run diverged)")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec.to_dict(),
        "style": style,
        "classes": [str(c) for c in classes],
        "preprocessing": preprocessing_of(spec, image_size),
        "training": training or {},
        "metrics": metrics or {},
        "dataset": dataset or {},
        "history": history or {},
        "versions": {"torch": str(torch.__version__), "python": platform.python_version(), "torchlab": str(VERSION)},
        "state_dict": state,
    }
    if optimizer_state is not None:
        payload["optimizer"] = optimizer_state
    if origin:
        payload["origin"] = origin
    if resume is not None:
        payload["resume"] = resume
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def atomic_write(path: Path, write: Any) -> None:
    """Write a file so that it is either all there or not changed at all: ``write(f)`` fills a
    temp file beside ``path`` (binary), which is flushed, synced and renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide a shared export from other users
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, for a download button."""
    return Path(path).read_bytes()


def load_checkpoint(source: str | os.PathLike | bytes | BinaryIO, name: str | None = None) -> Checkpoint:
    """Load a checkpoint safely onto the CPU and rebuild its model in ``eval()`` mode.

    Only tensors and plain data are unpickled (``weights_only=True``); a file that carries pickled
    code, a whole pickled module, random bytes, a truncated file or a dictionary of the wrong shape
    raises :class:`CheckpointError` saying which. Checkpoints saved on a GPU load on the CPU.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the uploaded file")
    raw = _read_source(source, label)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch words a refused global "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y".
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found and not _looks_pickled(raw):
            # Random or foreign bytes also end here ("Unsupported operand 95"): not pickled code.
            raise CheckpointError(
                f"{label}: not a PyTorch checkpoint — is it the right file? "
                "Choose a checkpoint saved by TorchLab."
            ) from None
        what = f" (it asks for {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{label}: refused — the file contains pickled Python objects or code{what}, which TorchLab never "
            "loads. Use a checkpoint saved by TorchLab (Train page → Save, or python -m core.train)."
        ) from None
    except Exception as e:  # torch raises a zoo of types for damaged zip/pickle data
        raise CheckpointError(
            f"{label}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)}) — "
            "is the file complete? Save it again or choose another file."
        ) from None
    ckpt = _from_payload(payload, label)
    if name is not None:
        ckpt.source = name
    elif isinstance(source, (str, os.PathLike)):
        ckpt.source = Path(source).name
    return ckpt


def _read_source(source: str | os.PathLike | bytes | BinaryIO, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise CheckpointError(f"{label}: file not found")
        if p.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{label}: {p.stat().st_size / 2**20:.0f} MB is larger than the {MAX_CHECKPOINT_BYTES // 2**20} MB limit")
        raw = p.read_bytes()
    else:
        raw = source.getvalue() if hasattr(source, "getvalue") else source.read()
    if not raw:
        raise CheckpointError(f"{label}: the file is empty (0 bytes)")
    return raw


def _looks_pickled(raw: bytes) -> bool:
    """A zip archive (torch.save's format) or a well-formed pickle stream.

    ``pickletools.genops`` only decodes the opcodes; nothing in the stream is executed.
    """
    if raw.startswith(b"PK\x03\x04"):
        return True
    try:
        for _ in pickletools.genops(raw):
            pass
    except Exception:
        return False
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _from_payload(payload: Any, label: str) -> Checkpoint:
    if isinstance(payload, dict) and payload.get("format") != FORMAT and _looks_like_state_dict(payload):
        raise CheckpointError(
            f"{label}: this is a bare state_dict with no model spec or classes — TorchLab cannot tell which net it "
            "belongs to. Use a checkpoint saved by TorchLab (Train page → Save, or python -m core.train --out)."
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{label}: not a TorchLab checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{label}: checkpoint format version {payload.get('version')} is not supported (expected {VERSION})")
    try:
        spec = ModelSpec.from_dict(dict(payload["spec"]))
        style = str(payload.get("style", "module"))
        classes = tuple(str(c) for c in payload["classes"])
        state = payload["state_dict"]
    except (KeyError, TypeError, SpecError) as e:
        raise CheckpointError(f"{label}: damaged checkpoint metadata ({_first_line(e)})") from None
    if len(classes) != spec.num_classes:
        raise CheckpointError(f"{label}: lists {len(classes)} class names for a net with {spec.num_classes} outputs")
    if style not in ("module", "sequential"):
        raise CheckpointError(f"{label}: unknown construction style {style!r}")
    model = build_model(spec, style)  # type: ignore[arg-type]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{label}: the weights do not fit a {spec.describe()} net ({_first_line(e)})") from None
    model.eval()
    image_size = (payload.get("preprocessing") or {}).get("image_size") if isinstance(payload.get("preprocessing"), dict) else None
    if not (isinstance(image_size, int) and not isinstance(image_size, bool) and 1 <= image_size <= 4096):
        image_size = None  # older files, or a value we cannot use: the net's input size, as before
    resume = payload.get("resume")
    return Checkpoint(
        model=model,
        spec=spec,
        style=style,
        classes=classes,
        training=dict(payload.get("training") or {}),
        metrics=dict(payload.get("metrics") or {}),
        dataset=dict(payload.get("dataset") or {}),
        history=dict(payload.get("history") or {}),
        versions=dict(payload.get("versions") or {}),
        optimizer_state=payload.get("optimizer"),
        image_size=image_size,
        origin=dict(payload.get("origin") or {}) if isinstance(payload.get("origin"), dict) else {},
        resume=dict(resume) if isinstance(resume, dict) else None,
    )


def _looks_like_state_dict(payload: dict) -> bool:
    return bool(payload) and all(isinstance(v, torch.Tensor) for v in payload.values())


def check_fits(ckpt: Checkpoint, spec: ModelSpec) -> None:
    """Refuse a checkpoint that is not the chosen net, saying what differs."""
    diffs = []
    if ckpt.spec.arch != spec.arch:
        diffs.append(f"architecture {ARCHS[ckpt.spec.arch]} vs {ARCHS[spec.arch]}")
    if ckpt.spec.num_classes != spec.num_classes:
        diffs.append(f"{ckpt.spec.num_classes} classes vs {spec.num_classes}")
    for attr, what in (("in_channels", "input channels"), ("input_size", "input size"), ("hidden", "hidden sizes"), ("batchnorm", "batch norm")):
        a, b = getattr(ckpt.spec, attr), getattr(spec, attr)
        if a != b:
            diffs.append(f"{what} {a} vs {b}")
    if diffs:
        raise CheckpointError("the checkpoint does not fit the chosen net: " + "; ".join(diffs) + " (checkpoint vs chosen)")


def load_into(ckpt: Checkpoint, model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Copy a checkpoint's weights into ``model`` (any construction style) after :func:`check_fits`."""
    check_fits(ckpt, spec)
    return copy_weights(ckpt.model, model)


EXPORT_WARNING = (
    "This file pickles the whole Python module (the tutorial's torch.save(model)). Loading it runs "
    "arbitrary code from the file, and it breaks when the code changes: share it only with people who "
    "trust you, and never load one you were sent. TorchLab itself will not load it."
)


def export_full_model(model: nn.Module) -> bytes:
    """The tutorial's other way of saving: the whole pickled module, as bytes to download.

    See :data:`EXPORT_WARNING`. TorchLab never loads such a file from an upload.
    """
    model = unfreeze(copy.deepcopy(model).cpu())  # a copy: the live model stays on its device (and frozen)
    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


CHECKPOINT_DIR_ENV = "TORCHLAB_CHECKPOINT_DIR"


def checkpoint_dir() -> Path:
    """Where saved runs live: ``$TORCHLAB_CHECKPOINT_DIR``, else ``checkpoints/`` in the project."""
    env = os.environ.get(CHECKPOINT_DIR_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent.parent / "checkpoints"


def list_checkpoints(directory: str | os.PathLike | None = None) -> list[Path]:
    """Saved checkpoints, newest first."""
    d = Path(directory) if directory else checkpoint_dir()
    if not d.is_dir():
        return []
    return sorted(d.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
