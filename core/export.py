"""Taking a trained net out of TorchLab: ``python -m core.export --checkpoint CKPT --format FMT --out PATH``.

Three formats, each one self-contained file:

* ``onnx`` — the net as an ONNX graph of standard operators, for onnxruntime or any other ONNX
  runtime: input ``input``, N×C×H×W float32 in [0, 1] exactly as
  :func:`core.tensors.images_to_tensor` makes it (any batch size N); output ``logits``,
  N×classes. The class names, the input's size and channels and the preprocessing recipe are in
  the model's metadata (``metadata_props``). Every export is checked with onnxruntime against
  PyTorch on images of the checkpoint's own data before it is handed out, and refused if they
  disagree (:data:`TOLERANCE`).
* ``state_dict`` — the weights alone, a plain ``{name: tensor}`` dictionary: loads with
  ``torch.load(weights_only=True)`` into ``build_model(spec, style)`` (the spec and style are in
  the JSON line the command prints, and in the checkpoint).
* ``full`` — the complete TorchLab checkpoint (spec, style, classes, preprocessing, settings,
  metrics, history, origin, optimizer and resume state), loaded, checked and written again. It is
  *not* the tutorial's pickled ``nn.Module``: loading that runs code from the file (see
  :func:`core.checkpoint.export_full_model`), while this file holds only tensors and plain data.

Files are written atomically: a failed export or write leaves no partial file. A bad checkpoint, an
output path that cannot be written or a failed check gives one ``error: …`` line on stderr and exit
status 2; success prints one JSON line on stdout.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)
from core.data import load_dataset
from core.nets import BUILDERS
from core.tensors import GRAY_WEIGHTS, images_to_tensor

FORMATS: dict[str, str] = {"onnx": "ONNX", "state_dict": "weights (state_dict)", "full": "full checkpoint"}
FORMAT_HELP: dict[str, str] = {
    "onnx": "the net as an ONNX graph, for onnxruntime and other runtimes, without PyTorch; class names "
            "and preprocessing in its metadata; checked with onnxruntime against PyTorch",
    "state_dict": "the weights only, a plain PyTorch state_dict: torch.load(weights_only=True) into the net "
                  "rebuilt from its spec",
    "full": "the complete TorchLab checkpoint (net, classes, preprocessing, training state), checked and "
            "written again: tensors and plain data only, no pickled code",
}
SUFFIXES = {"onnx": ".onnx", "state_dict": "-weights.pth", "full": "-full.pt"}
MIME = "application/octet-stream"  # what a browser needs to save each of them as a file

# Opset 17 is read by every current onnxruntime (1.14 and later) and by most other runtimes; the
# nets use nothing newer.
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# onnxruntime must agree with PyTorch within this much per logit: absolutely for logits up to 1 in
# size, relatively beyond (float32 keeps about 7 digits, so a logit of 300 cannot agree to 1e-4
# absolutely when the two runtimes sum in another order).
TOLERANCE = 1e-4
VERIFY_IMAGES = 32

# The TorchScript-based exporter is deprecated in favour of the torch.export-based one, and warns on
# every call. It is the one used here on purpose (see onnx_bytes), so its notice is not shown.
warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                        category=DeprecationWarning)
# ResNet's zero padding is exported with a reversing Slice that the exporter can't fold; the graph is
# right as it is (onnxruntime checks it), and the notice would be the only output of a good export.
warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded",
                        category=UserWarning)


_ONE_EXPORT_AT_A_TIME = threading.Lock()


class ExportError(ValueError):
    """An export that cannot be made or written; the message says why and what to do."""


@dataclass(frozen=True)
class Verification:
    """How an ONNX export was checked: onnxruntime against PyTorch on ``images`` net inputs."""

    images: int
    source: str  # which images, e.g. "32 test images of SIGNS hand signs (0–5)"
    max_abs_diff: float  # largest |onnxruntime − PyTorch| over every logit checked
    same_argmax: int  # images whose predicted class is the same in both
    batch_sizes: tuple[int, ...]  # the batch sizes run through onnxruntime (the batch axis is dynamic)

    def describe(self) -> str:
        return (f"checked with onnxruntime on {self.source}: logits within {self.max_abs_diff:.1e} of PyTorch's, "
                f"same class for {self.same_argmax} of {self.images}")


@dataclass(frozen=True)
class Export:
    """One exported file, in memory: its bytes, a file name, and how it was checked."""

    format: str
    data: bytes
    file_name: str
    mime: str = MIME
    verification: Verification | None = None

    def describe(self) -> str:
        size = len(self.data)
        text = f"{self.file_name}: {size / 2**20:.1f} MB" if size >= 2**20 else f"{self.file_name}: {size / 2**10:.0f} KB"
        return text + (f"; {self.verification.describe()}" if self.verification else "")


def export_name(ckpt: Checkpoint, fmt: str) -> str:
    """The file name an export gets: the checkpoint's name with the format's suffix."""
    stem = Path(ckpt.source).stem if ckpt.source else f"{ckpt.spec.arch}-export"
    return stem + SUFFIXES[fmt]


def export_bytes(ckpt: Checkpoint, fmt: str, data_dir: str | os.PathLike | None = None) -> Export:
    """Export a loaded checkpoint as ``fmt`` (``onnx``, ``state_dict`` or ``full``), in memory.

    Every format is read back before it is returned: the ONNX graph is run by onnxruntime on test
    images of the checkpoint's data set (found in ``data_dir``, by default the data directory;
    without it, the built-in synthetic images) and must give PyTorch's logits within
    :data:`TOLERANCE` and the same class for every image; the state_dict must load into the rebuilt
    net; the full checkpoint must load as a checkpoint with the same weights. Raises
    :class:`ExportError` saying what failed. The checkpoint's model is not changed.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    name = export_name(ckpt, fmt)
    if fmt == "onnx":
        data = onnx_bytes(ckpt)
        return Export(fmt, data, name, MIME, verify_onnx(ckpt, data, data_dir))
    if fmt == "state_dict":
        data = _state_dict_bytes(ckpt)
    else:
        data = _full_bytes(ckpt)
    return Export(fmt, data, name, MIME)


def write_export(result: Export, out: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Path:
    """Write an export to ``out`` atomically (a temp file beside it, renamed over it): ``out`` ends
    up either the whole export or as it was. Raises :class:`ExportError` for a path that can't be
    written, or that is ``checkpoint`` itself."""
    out = Path(out)
    check_out(out, checkpoint)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: f.write(result.data))
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e} — give a path in a folder you can write to") from None
    return out


def check_out(out: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> None:
    """Refuse an output path that can't become the file (a folder, a path through a file, a folder
    without write permission, the checkpoint itself), before any work is done."""
    out = Path(out)
    try:
        if out.is_dir():
            raise ExportError(f"cannot write {out}: it is a folder — give a file name, e.g. {out / 'model.onnx'}")
        if checkpoint is not None and out.exists() and out.resolve() == Path(checkpoint).resolve():
            raise ExportError(f"cannot write {out}: it is the checkpoint itself — give another file name")
        parent = next(p for p in out.absolute().parents if p.exists())
        if not parent.is_dir():
            raise ExportError(f"cannot write {out}: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ExportError(f"cannot write {out}: no permission to write in {parent}")
    except OSError as e:  # a name too long, a loop of links, …
        raise ExportError(f"cannot write {out}: {e.strerror or e} — give a path in a folder you can write to") from None


# --- ONNX --------------------------------------------------------------------------------------------


def onnx_bytes(ckpt: Checkpoint) -> bytes:
    """The checkpoint's net as a self-contained ONNX model (weights inside, batch axis dynamic),
    with the class names, input and preprocessing in its metadata. Not yet verified: see
    :func:`export_bytes`."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxruntime packages: pip install -r requirements.txt") from None
    net = plain_copy(ckpt)
    example = torch.rand((2, *ckpt.spec.input_shape), generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    try:
        # The TorchScript-based exporter, not the torch.export-based default: the latter sets
        # process-wide "compiling" flags while it traces, and in the app another session's
        # training thread reads them (torch.optim takes its compile-time code paths then). The
        # TorchScript tracer keeps its state per thread; only the exporter's own settings are
        # global, hence one export at a time. (It is faster too: README, "Export".)
        with _ONE_EXPORT_AT_A_TIME:
            torch.onnx.export(
                net, (example,), buf, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            )
    except Exception as e:  # noqa: BLE001 — the exporter raises many types; the message is what helps
        raise ExportError(f"ONNX export of {ckpt.spec.describe()} failed ({type(e).__name__}: {_first_line(e)})") from None
    model = onnx.load_from_string(buf.getvalue())
    del model.metadata_props[:]
    for key, value in onnx_metadata(ckpt).items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"{ckpt.spec.describe()} exported by TorchLab from {ckpt.source or 'a checkpoint'}: "
                        f"{INPUT_NAME} N×{ckpt.spec.in_channels}×{ckpt.spec.input_size}×{ckpt.spec.input_size} "
                        f"float32 in [0, 1] → {OUTPUT_NAME} N×{len(ckpt.classes)}")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"refused: the exported graph is not valid ONNX ({_first_line(e)})") from None
    return model.SerializeToString()


def plain_copy(ckpt: Checkpoint) -> nn.Module:
    """A copy of the checkpoint's net, in its own construction style, in eval mode, on the CPU.

    The exporter traces the copy, so the checkpoint's model, which the app shares between
    sessions, is never switched between modes or traced while another session uses it. The copy is
    built on the meta device and takes the weights as they are: no initialisation to throw away.
    """
    with torch.device("meta"):
        net = BUILDERS[(ckpt.spec.arch, ckpt.style)](ckpt.spec)
    state = {k: v.detach().to("cpu", copy=True) for k, v in ckpt.model.state_dict().items()}
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def onnx_metadata(ckpt: Checkpoint) -> dict[str, str]:
    """What a program needs to feed the ONNX model and read its answer, as ``metadata_props``
    (strings; lists and dicts as JSON)."""
    spec, pre = ckpt.spec, ckpt.preprocessing
    steps = [
        "decode the photo, apply its EXIF orientation, convert to RGB",
        "crop the centre square",
        f"resize to {pre['image_size']}×{pre['image_size']} (antialiased, Lanczos)",
        "divide by 255 → float32 in [0, 1]",
    ]
    if spec.in_channels == 1:
        steps.append("gray = {} R + {} G + {} B".format(*GRAY_WEIGHTS))
    if pre["image_size"] != spec.input_size:
        steps.append(f"resize to {spec.input_size}×{spec.input_size} (bilinear, antialiased)")
    steps.append(f"arrange as N×{spec.in_channels}×{spec.input_size}×{spec.input_size} (batch, channel, row, column)")
    return {
        "classes": json.dumps(list(ckpt.classes)),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": json.dumps(["N", spec.in_channels, spec.input_size, spec.input_size]),
        "input_size": str(spec.input_size),
        "channels": str(spec.in_channels),
        "image_size": str(pre["image_size"]),
        "color": pre["color"],
        "input_range": "[0, 1]",
        "output": "logits, one per class in the order of 'classes'; softmax gives probabilities",
        # A net trained on mirrored images: TorchLab's answer is the mean of two softmaxes.
        "mirror_average": "true" if ckpt.mirror_average else "false",
        "mirror_average_means": "when true, TorchLab's probabilities are the mean of the softmax for the input "
                                "and for the input mirrored left-right (reversed along its last axis)",
        "preprocessing": json.dumps({**pre, "steps": steps}, ensure_ascii=False),
        "model": spec.describe(),
        "model_spec": json.dumps(spec.to_dict()),
        "style": ckpt.style,
        "source_checkpoint": ckpt.source,
        "exported_by": "TorchLab (python -m core.export)",
    }


def verify_onnx(ckpt: Checkpoint, data: bytes, data_dir: str | os.PathLike | None = None) -> Verification:
    """Run the ONNX model with onnxruntime on images of the checkpoint's data and compare with
    PyTorch; raise :class:`ExportError` unless every logit agrees within :data:`TOLERANCE` and
    every image gets the same class."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxruntime packages: pip install -r requirements.txt") from None
    images, source = verification_images(ckpt, data_dir)
    x = images_to_tensor(torch.as_tensor(images), ckpt.spec.in_channels, ckpt.spec.input_size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the share of the CPU this process was given
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 — onnxruntime's own exception types
        raise ExportError(f"refused: onnxruntime cannot load the exported model ({_first_line(e)})") from None
    model = ckpt.model
    device = next(model.parameters()).device
    worst, agree = 0.0, 0
    batches = (x, x[:1])  # the whole batch and one image: the batch axis must really be free
    for batch in batches:
        with torch.inference_mode():
            ref = model(batch.to(device)).float().cpu().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"refused: onnxruntime gave logits of shape {got.shape}, PyTorch {ref.shape}")
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        bad = diff > TOLERANCE * np.maximum(1.0, np.abs(ref))
        if not np.isfinite(got).all() or bad.any():
            raise ExportError(
                f"refused: onnxruntime's logits differ from PyTorch's by up to {float(diff.max()):.2e} "
                f"(allowed {TOLERANCE:g} per logit of size ≤ 1, relatively beyond) on {source} — the export is not "
                "the same net; nothing was written"
            )
        # The same class, unless PyTorch's top two are tied within the tolerance (either answer is PyTorch's).
        chosen = ref[np.arange(len(ref)), got.argmax(1)]
        same = chosen >= ref.max(1) - TOLERANCE * np.maximum(1.0, np.abs(ref.max(1)))
        if not same.all():
            raise ExportError(f"refused: onnxruntime picks another class than PyTorch for {int((~same).sum())} of "
                              f"{len(ref)} images of {source} — nothing was written")
        if batch is x:
            agree = int(same.sum())
    return Verification(len(x), source, worst, agree, tuple(len(b) for b in batches))


def verification_images(ckpt: Checkpoint, data_dir: str | os.PathLike | None = None,
                        n: int = VERIFY_IMAGES) -> tuple[np.ndarray, str]:
    """Up to ``n`` test images (N×H×W×3 uint8, spread over the split) of the data set the checkpoint
    trained on, and a line saying which they are. Where that set is not here or can't be loaded,
    the built-in synthetic set's test images, with the reason."""
    key = ckpt.dataset.get("key")
    title = ckpt.dataset.get("title") or key
    reason = "" if key == "synthetic" else "the checkpoint names no data set"
    if key and key != "synthetic":
        try:
            ds = load_dataset(str(key), data_dir, image_size=ckpt.train_image_size)
        except Exception as e:  # noqa: BLE001 — whatever keeps the set from loading, synthetic images still do
            reason = f"its data set {title!r} is not here: {_first_line(e)}"
        else:
            return _spread(ds.x_test, n), f"{min(n, len(ds.x_test))} test images of {ds.title}"
    ds = load_dataset("synthetic")
    what = f"{min(n, len(ds.x_test))} test images of the built-in synthetic set"
    return _spread(ds.x_test, n), what + (f" ({reason})" if reason else "")


def _spread(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` images evenly spread over the split (a split is often sorted by class)."""
    idx = np.unique(np.linspace(0, len(x) - 1, num=min(n, len(x))).round().astype(int))
    return np.array(x[idx])  # a writable copy: the cached sets' arrays are read-only


# --- state_dict and full checkpoint ------------------------------------------------------------------


def _state_dict_bytes(ckpt: Checkpoint) -> bytes:
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in ckpt.model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    # Read back as a user will: weights_only, into the net rebuilt from the spec.
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        with torch.device("meta"):
            net = BUILDERS[(ckpt.spec.arch, ckpt.style)](ckpt.spec)
        net.load_state_dict(loaded, strict=True, assign=True)
    except Exception as e:  # noqa: BLE001 — torch.load and load_state_dict raise many types
        raise ExportError(f"refused: the state_dict does not load back into the net ({_first_line(e)})") from None
    if any(not torch.equal(loaded[k], v) for k, v in state.items()):
        raise ExportError("refused: the state_dict read back differs from the checkpoint's weights")
    return data


def _full_bytes(ckpt: Checkpoint) -> bytes:
    with tempfile.TemporaryDirectory(prefix="torchlab-export-") as tmp:
        path = save_checkpoint(
            Path(tmp) / "full.pt", ckpt.model, ckpt.spec, ckpt.style, ckpt.classes,
            training=ckpt.training, metrics=ckpt.metrics, dataset=ckpt.dataset, history=ckpt.history,
            optimizer_state=ckpt.optimizer_state, image_size=ckpt.image_size, origin=ckpt.origin,
            resume=ckpt.resume,
        )
        data = path.read_bytes()
    try:
        again = load_checkpoint(data, name=ckpt.source or "the export")
    except CheckpointError as e:
        raise ExportError(f"refused: the full checkpoint does not load back ({e})") from None
    theirs, ours = again.model.state_dict(), ckpt.model.state_dict()
    if theirs.keys() != ours.keys() or any(not torch.equal(theirs[k], ours[k].cpu()) for k in ours):
        raise ExportError("refused: the full checkpoint read back differs from the original's weights")
    return data


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


# --- the command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint saved by TorchLab")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items()))
    p.add_argument("--out", required=True, help="the file to write (replaced atomically if it exists)")
    p.add_argument("--data-dir", default=None,
                   help="where the checkpoint's data set is, for checking an ONNX export (default: $TORCHLAB_DATA_DIR)")
    args = p.parse_args(argv)
    try:
        check_out(args.out, args.checkpoint)
        ckpt = load_checkpoint(args.checkpoint)
        result = export_bytes(ckpt, args.format, args.data_dir)
        out = write_export(result, args.out, args.checkpoint)
    except (CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({
        "checkpoint": args.checkpoint, "format": args.format, "out": str(out), "bytes": len(result.data),
        "spec": ckpt.spec.to_dict(), "style": ckpt.style, "classes": list(ckpt.classes),
        "verified": asdict(result.verification) if result.verification else None,
    }, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
