"""Exports (``core.export``): ONNX checked against PyTorch with onnxruntime, the weights-only
state_dict, the full checkpoint, the command line and its refusals, and the README's onnxruntime
snippet run exactly as written.

Every ONNX file is opened here with onnx and onnxruntime directly, not through ``core.export``'s own
check, and compared with the checkpoint's PyTorch net on images of the built-in synthetic set.
"""
from __future__ import annotations

import errno
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import core.export as export_module
from core.checkpoint import Checkpoint, atomic_write, load_checkpoint, save_checkpoint
from core.codegen import generate_code
from core.data import load_dataset
from core.export import TOLERANCE, ExportError, export_bytes, main, write_export
from core.inference import predict_image
from core.nets import build_model
from core.preprocess import preprocess_image
from core.spec import ModelSpec
from core.tensors import images_to_tensor
from core.trainer import TrainConfig, Trainer
from tests.test_nets import randomize_bn

# What core.export silences for its users (the deprecated TorchScript-based exporter it chooses, and
# notices from inside it), pytest would show again: each test starts from pytest's own filters.
QUIET_EXPORTER = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1:UserWarning"),
]
pytestmark = [pytest.mark.usefixtures("torch_single_thread"), *QUIET_EXPORTER]

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = {"key": "synthetic", "title": "built-in synthetic finger counts (0–5)", "synthetic": True}
CLASSES = ("zero", "one", "two", "three", "four", "five")


def make_checkpoint(path: Path, spec: ModelSpec, style: str = "module", seed: int = 0, **saved) -> Checkpoint:
    """A saved and reloaded checkpoint of ``spec`` with non-trivial batch-norm statistics, so an
    export that ran batch norm in training mode (or not at all) would give other logits."""
    model = randomize_bn(build_model(spec, style, seed=seed), seed=seed + 1)
    saved = {"dataset": SYNTHETIC, **saved}
    save_checkpoint(path, model, spec, style, CLASSES[: spec.num_classes], **saved)
    return load_checkpoint(path)


def net_inputs(spec: ModelSpec, n: int) -> torch.Tensor:
    """``n`` synthetic test images as the net's input (N×C×S×S float in [0, 1])."""
    x = load_dataset("synthetic").x_test[:n]
    return images_to_tensor(torch.tensor(x), spec.in_channels, spec.input_size)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def assert_same_logits(got: np.ndarray, ref: np.ndarray) -> None:
    """Within the export's tolerance (1e-4, relatively beyond logits of 1) and the same class."""
    assert got.shape == ref.shape
    np.testing.assert_array_less(np.abs(got - ref), TOLERANCE * np.maximum(1.0, np.abs(ref)) + 1e-12)
    assert (got.argmax(1) == ref.argmax(1)).all()


# --- ONNX, every net ------------------------------------------------------------------------------

NETS = [  # every architecture, both construction styles, gray and RGB, input sizes other than 64
    pytest.param(ModelSpec("mlp", 4, in_channels=3, hidden=(16, 8), batchnorm=True, dropout=0.3), "module",
                 id="mlp-rgb64-bn-dropout-module"),
    pytest.param(ModelSpec("mlp", 2, in_channels=1, input_size=24, hidden=(8,), batchnorm=False), "sequential",
                 id="mlp-gray24-sequential"),
    pytest.param(ModelSpec("lenet", 6, in_channels=1), "module", id="lenet-gray64-module"),
    pytest.param(ModelSpec("lenet", 6, in_channels=1), "sequential", id="lenet-gray64-sequential"),
    pytest.param(ModelSpec("lenet", 3, in_channels=3, input_size=40, dropout=0.2), "module",
                 id="lenet-rgb40-dropout-module"),
    pytest.param(ModelSpec("lenet", 3, in_channels=3, input_size=100, batchnorm=False), "sequential",
                 id="lenet-rgb100-nobn-sequential"),
    pytest.param(ModelSpec("resnet50", 6, in_channels=3), "module", id="resnet50-rgb64-module"),
    pytest.param(ModelSpec("resnet50", 3, in_channels=1, input_size=48), "sequential",
                 id="resnet50-gray48-sequential", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spec, style", NETS)
def test_onnx_export_is_the_same_net_in_onnxruntime(tmp_path, spec, style):
    ckpt = make_checkpoint(tmp_path / "net.pt", spec, style)
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    result = export_bytes(ckpt, "onnx")
    assert result.file_name == "net.onnx"

    model = onnx.load_from_string(result.data)
    onnx.checker.check_model(model, full_check=True)
    # Plain ONNX: every node an operator of the standard domain that onnx knows; no dropout left.
    ops = {node.op_type for node in model.graph.node}
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    assert all(onnx.defs.has(op) for op in ops), ops
    assert "Dropout" not in ops
    assert {"Gemm"} <= ops and ("Conv" in ops) == (spec.arch != "mlp")
    # Self-contained: every weight inside the file.
    assert model.graph.initializer and all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    # The input and output, with a free batch axis.
    [inp], [out] = model.graph.input, model.graph.output
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(inp) == ["N", spec.in_channels, spec.input_size, spec.input_size]
    assert out.name == "logits" and dims(out) == ["N", spec.num_classes]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == list(CLASSES[: spec.num_classes])
    assert (meta["input_size"], meta["channels"], meta["image_size"]) == (str(spec.input_size), str(spec.in_channels),
                                                                          str(spec.input_size))
    assert json.loads(meta["preprocessing"])["channels"] == spec.in_channels and meta["input_range"] == "[0, 1]"
    assert ModelSpec.from_dict(json.loads(meta["model_spec"])) == spec and meta["style"] == style
    assert meta["mirror_average"] == ("true" if ckpt.mirror_average else "false") and "mirror" in meta["mirror_average_means"]

    # The file alone, in a folder of its own, run by onnxruntime, at several batch sizes.
    alone = tmp_path / "alone" / "net.onnx"
    alone.parent.mkdir()
    alone.write_bytes(result.data)
    session = ort.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    x = net_inputs(spec, 12)
    for n in (1, 5, 12):
        with torch.no_grad():
            ref = ckpt.model(x[:n]).numpy()
        got = session.run(None, {"input": x[:n].numpy()})[0]
        assert_same_logits(got, ref)

    v = result.verification
    assert v.images == 32 and v.same_argmax == 32 and v.batch_sizes == (32, 1)
    assert v.source == "32 test images of the built-in synthetic set"
    assert np.isfinite(v.max_abs_diff)
    # The checkpoint's own net is untouched: same mode, same weights.
    assert not ckpt.model.training
    assert all(torch.equal(v, before[k]) for k, v in ckpt.model.state_dict().items())


def test_the_metadata_says_how_a_photo_becomes_the_input_of_a_net_of_another_size(tmp_path):
    ckpt = make_checkpoint(tmp_path / "net.pt", ModelSpec("lenet", 6, in_channels=1, input_size=32), image_size=64)
    meta = {p.key: p.value for p in onnx.load_from_string(export_bytes(ckpt, "onnx").data).metadata_props}
    assert (meta["input_size"], meta["image_size"], meta["channels"]) == ("32", "64", "1")
    steps = json.loads(meta["preprocessing"])["steps"]
    assert steps[2:] == ["resize to 64×64 (antialiased, Lanczos)", "divide by 255 → float32 in [0, 1]",
                         "gray = 0.299 R + 0.587 G + 0.114 B", "resize to 32×32 (bilinear, antialiased)",
                         "arrange as N×1×32×32 (batch, channel, row, column)"]


def test_the_metadata_says_when_torchlab_reads_the_mirror_image_too(tmp_path):
    ckpt = make_checkpoint(tmp_path / "net.pt", ModelSpec("lenet", 6, in_channels=1, input_size=32))
    ckpt.training = {**ckpt.training, "augment": True, "augmentation": "mirrored"}  # the fine-tuning recipe's
    meta = {p.key: p.value for p in onnx.load_from_string(export_bytes(ckpt, "onnx").data).metadata_props}
    assert meta["mirror_average"] == "true"


def test_two_styles_of_one_net_export_the_same_function(tmp_path):
    spec = ModelSpec("lenet", 6, in_channels=1, input_size=32)
    module = make_checkpoint(tmp_path / "m.pt", spec, "module", seed=3)
    sequential = make_checkpoint(tmp_path / "s.pt", spec, "sequential", seed=3)
    x = net_inputs(spec, 8).numpy()
    outs = [ort.InferenceSession(export_bytes(c, "onnx").data).run(None, {"input": x})[0] for c in (module, sequential)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)


def test_verification_uses_the_checkpoints_own_data(tmp_path, data_dir):
    signs = load_dataset("signs", data_dir)
    ckpt = make_checkpoint(tmp_path / "signs.pt", ModelSpec("lenet", 6, in_channels=1, input_size=32),
                           dataset={"key": "signs", "title": signs.title})
    v = export_bytes(ckpt, "onnx", data_dir).verification
    assert v.source == f"32 test images of {signs.title}" and v.same_argmax == 32


def test_verification_falls_back_to_synthetic_images_and_says_why(tmp_path):
    ckpt = make_checkpoint(tmp_path / "gone.pt", ModelSpec("mlp", 3, hidden=(8,)),
                           dataset={"key": "my-hand", "title": "my hand"})
    v = export_bytes(ckpt, "onnx", tmp_path / "no-data-here").verification
    assert v.source.startswith("32 test images of the built-in synthetic set (its data set 'my hand' is not here: ")


def test_an_onnx_file_that_disagrees_with_pytorch_is_refused(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "net.pt", ModelSpec("mlp", 3, hidden=(8,)))
    real = export_module.onnx_bytes

    def off_by_a_little(c):
        model = onnx.load_from_string(real(c))
        bias = next(t for t in model.graph.initializer if t.name == "head.bias")
        values = onnx.numpy_helper.to_array(bias) + np.float32(0.01)
        bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
        return model.SerializeToString()

    monkeypatch.setattr(export_module, "onnx_bytes", off_by_a_little)
    with pytest.raises(ExportError, match=r"refused: onnxruntime's logits differ from PyTorch's by up to \d\.\d\de-0[23]"):
        export_bytes(ckpt, "onnx")


# --- the README's onnxruntime snippet, run as written --------------------------------------------


def readme_snippet() -> str:
    """The first Python block of the README's Export section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Export\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.parametrize("spec", [ModelSpec("lenet", 6, in_channels=1), ModelSpec("mlp", 6, in_channels=3, hidden=(32,))],
                         ids=["gray-lenet", "rgb-mlp"])
def test_the_readme_snippet_runs_the_export_with_onnxruntime_alone(tmp_path, spec):
    code = readme_snippet()
    model_name = re.search(r'InferenceSession\("([^"]+)"\)', code).group(1)
    photo_name = re.search(r'Image\.open\("([^"]+)"\)', code).group(1)
    ckpt = make_checkpoint(tmp_path / "net.pt", spec)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / model_name).write_bytes(export_bytes(ckpt, "onnx").data)
    # A photo that is not square (the centre crop matters) and small enough that TorchLab decodes
    # and resizes it exactly as the snippet does (README: larger JPEGs differ by a few gray levels).
    hand = Image.fromarray(load_dataset("synthetic").x_test[7]).resize((120, 100), Image.Resampling.BICUBIC)
    hand.save(work / photo_name, quality=92)

    check = '\nimport sys\nnp.save("x.npy", x)\nnp.save("logits.npy", logits)\nprint("torch" in sys.modules)\n'
    run = subprocess.run([sys.executable, "-c", code + check], cwd=work, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=False)
    assert run.returncode == 0, run.stderr
    label, torch_imported = run.stdout.split()
    assert torch_imported == "False"  # onnxruntime alone

    x_ref, _ = preprocess_image(work / photo_name, spec.input_size, spec.in_channels)
    np.testing.assert_allclose(np.load(work / "x.npy"), x_ref.numpy(), rtol=0, atol=1e-6)
    with torch.no_grad():
        ref = ckpt.model(x_ref).numpy()
    assert_same_logits(np.load(work / "logits.npy"), ref)
    assert label == predict_image(ckpt, work / photo_name).label


# --- state_dict and full ---------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["module", "sequential"])
def test_state_dict_loads_with_weights_only_into_the_net_rebuilt_from_the_spec(tmp_path, style, capsys):
    spec = ModelSpec("lenet", 3, in_channels=3, input_size=32, dropout=0.1)
    ckpt = make_checkpoint(tmp_path / "net.pt", spec, style)
    assert main(["--checkpoint", str(tmp_path / "net.pt"), "--format", "state_dict", "--out", str(tmp_path / "w.pth")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["verified"] is None and line["bytes"] == (tmp_path / "w.pth").stat().st_size
    # As the README says: the spec and style from the JSON line, the weights with weights_only=True.
    state = torch.load(tmp_path / "w.pth", weights_only=True)
    assert list(state) == list(ckpt.model.state_dict())
    net = build_model(ModelSpec(**line["spec"]), line["style"])
    net.load_state_dict(state)
    net.eval()
    x = net_inputs(spec, 4)
    with torch.no_grad():
        assert torch.equal(net(x), ckpt.model(x))


@pytest.mark.parametrize("arch, style", [("mlp", "sequential"), ("lenet", "sequential"), ("resnet50", "module"),
                                         ("lenet", "module")])
def test_state_dict_loads_into_the_build_pages_code_without_torchlab(tmp_path, arch, style, capsys):
    # The way out of TorchLab with nothing of it installed: the Build page's code for the net, and the
    # exported weights loaded in order (the README's line). Names can differ — the generated code
    # leaves out a dropout of 0 and names the ResNet's stages stage1–4 — order and shapes cannot.
    spec = {"mlp": ModelSpec("mlp", 6, in_channels=3, input_size=16), "lenet": ModelSpec("lenet", 6, in_channels=3),
            "resnet50": ModelSpec("resnet50", 6, in_channels=3, input_size=32)}[arch]
    ckpt = make_checkpoint(tmp_path / "net.pt", spec, style)
    assert main(["--checkpoint", str(tmp_path / "net.pt"), "--format", "state_dict", "--out", str(tmp_path / "w.pth")]) == 0
    capsys.readouterr()
    namespace: dict = {}
    exec(generate_code(spec, style), namespace)  # what the user copied from the Build page
    model = namespace["model"]
    weights = torch.load(tmp_path / "w.pth", weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict(), weights.values())))
    model.eval()
    x = net_inputs(spec, 4)
    with torch.no_grad():
        assert torch.equal(model(x), ckpt.model(x))


def test_full_is_the_complete_checkpoint_and_resumes_like_it(tmp_path, tiny_dataset):
    spec = ModelSpec("lenet", 3, in_channels=1, input_size=16, dropout=0.2)
    config = TrainConfig(optimizer="adam", lr=0.01, schedule="constant", augment=True, batch_size=16, epochs=1,
                         device="cpu")
    trainer = Trainer(spec, tiny_dataset, config)
    for _ in trainer.run():
        pass
    original = load_checkpoint(trainer.save(tmp_path / "run.pt"))
    data = export_bytes(original, "full").data
    assert isinstance(torch.load(io.BytesIO(data), weights_only=True), dict)  # tensors and plain data only
    full = load_checkpoint(data, name="run-full.pt")
    for field in ("spec", "style", "classes", "preprocessing", "training", "metrics", "dataset", "history", "origin",
                  "image_size"):
        assert getattr(full, field) == getattr(original, field), field
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), original.model.state_dict().values()))
    assert full.optimizer_state is not None and full.resume is not None
    # It continues a run exactly as the original does: bit-identical weights after one more epoch.
    ends = []
    for ckpt in (original, full):
        resumed = Trainer.resume(ckpt, tiny_dataset, epochs=2)
        for _ in resumed.run():
            pass
        ends.append(resumed.model.state_dict())
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in ends[0])


# --- the command line -------------------------------------------------------------------------------


def run_cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.export", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TORCHLAB_DATA_DIR": str(data_dir)}, check=False)


def test_cli_onnx_export_prints_one_json_line_and_nothing_else(tmp_path):
    make_checkpoint(tmp_path / "lenet.pt", ModelSpec("lenet", 6, in_channels=1))
    out = tmp_path / "exports" / "lenet.onnx"  # a folder that does not exist yet
    run = run_cli(["--checkpoint", str(tmp_path / "lenet.pt"), "--format", "onnx", "--out", str(out)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no exporter notices on a good export
    [line] = run.stdout.splitlines()
    result = json.loads(line)
    assert result["out"] == str(out) and result["bytes"] == out.stat().st_size
    assert result["classes"] == list(CLASSES) and result["spec"]["arch"] == "lenet" and result["style"] == "module"
    assert result["verified"]["images"] == 32 and result["verified"]["same_argmax"] == 32
    assert result["verified"]["max_abs_diff"] <= TOLERANCE
    ort.InferenceSession(str(out))
    assert sorted(p.name for p in out.parent.iterdir()) == ["lenet.onnx"]  # no temp file left


def test_cli_a_bad_checkpoint_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    out = tmp_path / "out.onnx"
    run = run_cli(["--checkpoint", str(tmp_path / "notes.pt"), "--format", "onnx", "--out", str(out)], tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert "not a PyTorch checkpoint" in run.stderr
    assert not out.exists()


def bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not usable checkpoints, each with a phrase its message must contain."""
    good = tmp_path / "good.pt"
    make_checkpoint(good, ModelSpec("mlp", 3, hidden=(8,)))
    files = {
        "missing": (tmp_path / "nowhere.pt", "file not found"),
        "empty": (tmp_path / "empty.pt", "empty"),
        "random bytes": (tmp_path / "random.pt", "not a PyTorch checkpoint"),
        "an image": (tmp_path / "photo.png", "not a PyTorch checkpoint"),
        "an ONNX file": (tmp_path / "model.onnx", "not a PyTorch checkpoint"),
        "truncated": (tmp_path / "truncated.pt", "not a readable PyTorch checkpoint"),
        "an exported state_dict": (tmp_path / "weights.pth", "bare state_dict"),
    }
    files["empty"][0].write_bytes(b"")
    files["random bytes"][0].write_bytes(np.random.default_rng(0).bytes(5000))
    Image.new("RGB", (32, 32), "red").save(files["an image"][0])
    files["an ONNX file"][0].write_bytes(export_bytes(load_checkpoint(good), "onnx").data)
    files["truncated"][0].write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    files["an exported state_dict"][0].write_bytes(export_bytes(load_checkpoint(good), "state_dict").data)
    return files


@pytest.mark.parametrize("fmt", ["onnx", "state_dict", "full"])
def test_cli_refuses_what_is_not_a_checkpoint_and_leaves_the_output_alone(tmp_path, capsys, fmt):
    out = tmp_path / "out" / "previous.bin"
    out.parent.mkdir()
    out.write_bytes(b"an earlier export")
    for name, (path, phrase) in bad_checkpoints(tmp_path).items():
        capsys.readouterr()
        assert main(["--checkpoint", str(path), "--format", fmt, "--out", str(out)]) == 2, name
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and phrase in err, (name, err)
        assert out.read_bytes() == b"an earlier export" and len(list(out.parent.iterdir())) == 1, name


def test_cli_refuses_an_output_path_it_cannot_write(tmp_path, capsys):
    ckpt = tmp_path / "net.pt"
    make_checkpoint(ckpt, ModelSpec("mlp", 3, hidden=(8,)))
    before = ckpt.read_bytes()
    (tmp_path / "a-file").write_text("x")
    cases = {
        "inside a file": (tmp_path / "a-file" / "net.onnx", "is a file, not a folder"),
        "a folder": (tmp_path, "it is a folder"),
        "the checkpoint itself": (ckpt, "it is the checkpoint itself"),
        "a name too long": (tmp_path / ("n" * 300 + ".onnx"), "File name too long"),
    }
    for name, (out, phrase) in cases.items():
        capsys.readouterr()
        assert main(["--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)]) == 2, name
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: cannot write ") and phrase in err, (name, err)
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "net.pt"]


def test_a_write_that_fails_halfway_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "net.pt"
    make_checkpoint(ckpt, ModelSpec("mlp", 3, hidden=(8,)))
    out = tmp_path / "out" / "net.onnx"
    out.parent.mkdir()

    def disk_full_halfway(path, write):
        def half(f):
            buf = io.BytesIO()
            write(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic_write(path, half)

    monkeypatch.setattr(export_module, "atomic_write", disk_full_halfway)
    assert main(["--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write {out}: No space left on device — give a path in a folder you can write to\n"
    assert list(out.parent.iterdir()) == []
    # write_export itself: the same refusal as an ExportError.
    with pytest.raises(ExportError, match="No space left on device"):
        write_export(export_bytes(load_checkpoint(ckpt), "state_dict"), out)
    assert list(out.parent.iterdir()) == []


def test_cli_a_refused_onnx_export_writes_nothing(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "net.pt"
    make_checkpoint(ckpt, ModelSpec("mlp", 3, hidden=(8,)))
    real = export_module.onnx_bytes

    def other_class(c):  # a big bias on one class: every image gets that class in onnxruntime
        model = onnx.load_from_string(real(c))
        bias = next(t for t in model.graph.initializer if t.name == "head.bias")
        values = onnx.numpy_helper.to_array(bias).copy()
        values[0] += 100.0
        bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
        return model.SerializeToString()

    monkeypatch.setattr(export_module, "onnx_bytes", other_class)
    out = tmp_path / "net.onnx"
    assert main(["--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refused: onnxruntime's logits differ") and "nothing was written" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
