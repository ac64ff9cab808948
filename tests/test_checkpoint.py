"""Checkpoints: round trips in both construction styles, atomic writes, refusing unsafe or broken
files, fitting checks, the full-module export and the checkpoint list.

The unsafe files are real exploits: their pickles would create a marker file if unpickled (a
control test proves it), and the tests check that loading them leaves no marker behind.
"""
from __future__ import annotations

import io
import os
import pathlib
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import core.checkpoint as checkpoint_module
from core.checkpoint import (
    CHECKPOINT_DIR_ENV,
    FORMAT,
    VERSION,
    Checkpoint,
    CheckpointError,
    atomic_write,
    check_fits,
    checkpoint_bytes,
    checkpoint_dir,
    export_full_model,
    list_checkpoints,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from core.engine import evaluate
from core.nets import FrozenBatchNorm2d, build_model, freeze_features
from core.spec import ModelSpec
from core.trainer import History, TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SPEC = ModelSpec("lenet", 3, in_channels=1, input_size=16, dropout=0.2)  # batch norm on: buffers too
MLP_SPEC = ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(16, 8), batchnorm=False)
CONFIG = TrainConfig(optimizer="adam", lr=0.01, schedule="constant", augment=True, batch_size=16, epochs=2, device="cpu")


def make_trainer(dataset, spec: ModelSpec = SPEC, style: str = "module", epochs_done: int = 2) -> Trainer:
    trainer = Trainer(spec, dataset, CONFIG, style)
    for _ in trainer.run(lambda: trainer.epoch >= epochs_done):
        pass
    return trainer


@pytest.fixture
def trained(tiny_dataset) -> Trainer:
    return make_trainer(tiny_dataset)


@pytest.fixture
def saved(trained, tmp_path) -> pathlib.Path:
    return trained.save(tmp_path / "run.pt")


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


def assert_same_net(loaded: nn.Module, live: nn.Module, x: torch.Tensor) -> None:
    """The very same weights, and the same outputs up to float rounding.

    The trainer keeps conv nets in channels-last memory format and a loaded checkpoint is
    contiguous, so their convolutions may round differently in the last bits.
    """
    a, b = loaded.state_dict(), live.state_dict()
    assert len(a) == len(b)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert va.shape == vb.shape and torch.equal(va, vb.to(va.device)), (ka, kb)
    torch.testing.assert_close(outputs(loaded, x), outputs(live, x), rtol=1e-5, atol=1e-5)


def only_file(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- round trip --------------------------------------------------------------------------------


def test_save_load_round_trip(trained, tmp_path, tiny_dataset):
    path = trained.save(tmp_path / "new" / "run.pt")  # the folder is created
    assert path == tmp_path / "new" / "run.pt" and path.is_file()
    ckpt = load_checkpoint(path)

    assert isinstance(ckpt, Checkpoint)
    assert not ckpt.model.training
    assert_same_net(ckpt.model, trained.model, trained.x_test)
    assert ckpt.spec == SPEC and ckpt.style == "module"
    assert ckpt.classes == tiny_dataset.classes
    assert ckpt.training == CONFIG.to_dict() and TrainConfig.from_dict(ckpt.training) == CONFIG
    assert ckpt.metrics == trained.final_metrics() and ckpt.metrics["epochs"] == 2
    history = History.from_dict(ckpt.history)
    assert history.step_losses == trained.history.step_losses and len(history.step_losses) == 6
    assert history.epochs == trained.history.epochs
    assert ckpt.dataset == {"key": "tiny", "title": tiny_dataset.title, "synthetic": True, "kind": "synthetic",
                            "train": 48, "test": 24, "image_size": 16, "split_made": False}
    assert ckpt.preprocessing["channels"] == 1 and ckpt.preprocessing["size"] == 16
    assert ckpt.preprocessing["image_size"] == 16 and ckpt.image_size == 16 and ckpt.source == "run.pt"
    assert ckpt.origin == {"init_from": None, "freeze": "none", "new_head": False, "resumed_from": None}
    assert ckpt.resume["epoch_boundary"] is True and (ckpt.resume["step"], ckpt.resume["epoch"]) == (6, 2)
    assert {"color", "scale", "crop"} <= set(ckpt.preprocessing)
    assert ckpt.versions["torch"] == str(torch.__version__)
    assert {"python", "torchlab"} <= set(ckpt.versions)
    assert ckpt.optimizer_state is not None and {"state", "param_groups"} <= set(ckpt.optimizer_state)
    assert "3 classes" in ckpt.describe() and "test accuracy" in ckpt.describe()

    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data: loads safely as-is
    assert raw["format"] == FORMAT and raw["version"] == VERSION
    assert raw["preprocessing"] == ckpt.preprocessing
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())


def test_load_from_bytes_file_objects_and_paths(trained, saved):
    data = checkpoint_bytes(saved)
    assert data == saved.read_bytes()
    expected = outputs(load_checkpoint(saved).model, trained.x_test)
    for source in (saved, str(saved), data, io.BytesIO(data)):
        assert torch.equal(outputs(load_checkpoint(source).model, trained.x_test), expected)


def test_saved_mid_epoch_has_no_optimizer_state(tiny_dataset, tmp_path):
    trainer = Trainer(SPEC, tiny_dataset, CONFIG)
    for _ in trainer.run(lambda: trainer.step >= 2):
        pass
    ckpt = load_checkpoint(trainer.save(tmp_path / "mid.pt"))
    assert ckpt.optimizer_state is None
    assert len(ckpt.history["step_losses"]) == 2


def test_a_checkpoint_saved_mid_epoch_states_its_own_weights_test_figures(tiny_dataset, tmp_path):
    # Stopped a few steps into an epoch: the file's test accuracy is that of the weights it holds,
    # as Predict's Evaluate measures them, not that of the last finished epoch.
    trainer = Trainer(SPEC, tiny_dataset, CONFIG)
    for _ in trainer.run(lambda: trainer.epoch == 1 and trainer.step == len(trainer.batches) + 2):
        pass
    assert not trainer.at_epoch_boundary
    ckpt = load_checkpoint(trainer.save(tmp_path / "mid.pt"))
    measured = evaluate(ckpt.model, trainer.x_test, trainer.y_test)
    assert ckpt.metrics["test_acc"] == measured.accuracy and ckpt.metrics["test_loss"] == pytest.approx(measured.loss)
    assert ckpt.metrics["steps"] == trainer.step and ckpt.metrics["epochs"] == 1
    assert ckpt.metrics["test_acc"] != trainer.history.epochs[-1].test_acc or ckpt.metrics["test_loss"] != pytest.approx(
        trainer.history.epochs[-1].test_loss)  # two steps moved the weights: the epoch's figures are not theirs


@pytest.mark.parametrize("style", ["module", "sequential"])
def test_round_trip_in_both_styles(tiny_dataset, tmp_path, style):
    trainer = make_trainer(tiny_dataset, style=style)
    ckpt = load_checkpoint(trainer.save(tmp_path / f"{style}.pt"))
    assert ckpt.style == style
    assert isinstance(ckpt.model, nn.Sequential) == (style == "sequential")
    assert_same_net(ckpt.model, trainer.model, trainer.x_test)


@pytest.mark.parametrize("src_style, dst_style", [("module", "sequential"), ("sequential", "module")])
def test_load_into_copies_across_styles(tiny_dataset, tmp_path, src_style, dst_style):
    trainer = make_trainer(tiny_dataset, style=src_style)
    ckpt = load_checkpoint(trainer.save(tmp_path / "run.pt"))
    target = build_model(SPEC, dst_style, seed=99)
    assert load_into(ckpt, target, SPEC) is target
    x = trainer.x_test
    assert torch.equal(outputs(target, x), outputs(ckpt.model, x))  # both plain fp32, contiguous
    assert_same_net(target, trainer.model, x)


def test_map_location_cpu_loads_a_saved_file(saved):
    raw = torch.load(saved, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())
    raw = torch.load(saved, map_location=torch.device("cpu"), weights_only=True)
    assert raw["classes"] == ["bar", "column", "diagonal"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_saved_on_cuda_loads_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 on both sides
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = build_model(SPEC, seed=0).cuda().eval()
    path = save_checkpoint(tmp_path / "cuda.pt", model, SPEC, "module", ["a", "b", "c"])
    ckpt = load_checkpoint(path)
    assert next(ckpt.model.parameters()).device.type == "cpu"
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), model(x.cuda()).cpu(), rtol=1e-5, atol=1e-5)


# --- atomic writes -----------------------------------------------------------------------------


def _fail_torch_save_halfway(monkeypatch, error: BaseException) -> None:
    real_save = torch.save

    def half_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # some bytes are on disk already
        raise error

    monkeypatch.setattr(torch, "save", half_save)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk-full", "interrupt"])
def test_a_failed_write_leaves_the_previous_file_intact(trained, saved, monkeypatch, error):
    before = saved.read_bytes()
    for _ in trained.run():  # train on, so the new file would differ
        pass
    _fail_torch_save_halfway(monkeypatch, error)
    with pytest.raises(type(error)):
        trained.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert only_file(saved.parent) == ["run.pt"]  # no temp file left behind
    load_checkpoint(saved)


def test_a_written_file_is_readable_by_others(tmp_path):
    # The temp file behind an atomic write is private (0600); the file it becomes must not be, or an
    # exported net meant to be shared is unreadable by anyone else (as the data directory's files).
    atomic_write(tmp_path / "net.onnx", lambda f: f.write(b"x"))
    assert (tmp_path / "net.onnx").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failure_after_writing_leaves_the_previous_file_intact(trained, saved, monkeypatch, step):
    before = saved.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(5, f"{step} failed")

    monkeypatch.setattr(checkpoint_module.os, step, fail)
    with pytest.raises(OSError, match=f"{step} failed"):
        trained.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert only_file(saved.parent) == ["run.pt"]


def test_a_failed_first_write_leaves_nothing(trained, tmp_path, monkeypatch):
    _fail_torch_save_halfway(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        trained.save(tmp_path / "first.pt")
    monkeypatch.undo()
    assert only_file(tmp_path) == []


def test_save_refuses_non_finite_weights(tmp_path):
    model = build_model(MLP_SPEC, seed=0)
    with torch.no_grad():
        model.head.bias[1] = float("inf")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "bad.pt", model, MLP_SPEC, "module", ["a", "b", "c"])
    assert only_file(tmp_path) == []


# --- refusing unsafe and broken files ----------------------------------------------------------


class Exploit:
    """Unpickling this calls ``fn(*args)``: the classic pickle code-execution trick."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def exploits(marker: pathlib.Path) -> dict[str, Exploit]:
    return {
        "os.system": Exploit(os.system, (f"touch '{marker}'",)),
        "builtins.exec": Exploit(exec, (f"open({str(marker)!r}, 'w').write('pwned')",)),
        "pathlib.write_text": Exploit(pathlib.Path.write_text, (marker, "pwned")),
    }


def disguised(payload: object) -> dict:
    """A dictionary that looks like a TorchLab checkpoint, with the exploit in its weights."""
    return {"format": FORMAT, "version": VERSION, "spec": SPEC.to_dict(), "style": "module",
            "classes": ["a", "b", "c"], "state_dict": payload}


def serialise(obj: object, how: str) -> bytes:
    if how == "torch.save":
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()
    return pickle.dumps(obj, protocol=int(how.removeprefix("pickle-")))


SERIALISERS = ["torch.save", "pickle-0", "pickle-2", "pickle-4", "pickle-5"]


@pytest.mark.parametrize("how", SERIALISERS)
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "pathlib.write_text"])
def test_the_exploits_are_live(tmp_path, kind, how):
    # Control: unpickled the unsafe way, each crafted file really does create its marker.
    marker = tmp_path / "control-marker"
    data = serialise(disguised(exploits(marker)[kind]), how)
    if how == "torch.save":
        torch.load(io.BytesIO(data), weights_only=False)
    else:
        pickle.loads(data)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's, about pickle-4/5
@pytest.mark.parametrize("how", SERIALISERS)
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "pathlib.write_text"])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, kind, how):
    marker = tmp_path / "pwned-marker"
    path = tmp_path / "evil.pt"
    path.write_bytes(serialise(disguised(exploits(marker)[kind]), how))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "pickled Python objects or code" in message and str(path) in message
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(path.read_bytes(), name="upload.pt")
    assert not marker.exists()


def test_the_refusal_names_what_the_pickle_asks_for(tmp_path):
    data = serialise(disguised(exploits(tmp_path / "m")["os.system"]), "torch.save")
    with pytest.raises(CheckpointError, match=r"it asks for (posix|nt)\.system"):
        load_checkpoint(data)


def test_a_whole_pickled_module_is_refused(trained):
    data = export_full_model(trained.model)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(data, name="model.pt")
    assert "model.pt: refused" in str(info.value)
    assert "pickled Python objects or code (it asks for core.nets.LeNet5)" in str(info.value)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused_clearly(seed):
    data = np.random.default_rng(seed).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(data, name="noise.pt")
    message = str(info.value)
    assert message.startswith("noise.pt: not a")
    assert "PyTorch checkpoint" in message
    assert "pickled" not in message  # random bytes are not code


@pytest.mark.parametrize("data", [b"", b"hello, this is a text file\n"], ids=["empty", "text"])
def test_empty_and_text_files_are_refused(tmp_path, data):
    path = tmp_path / "x.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    if not data:
        assert "empty (0 bytes)" in message


def test_a_truncated_checkpoint_is_refused(saved):
    data = saved.read_bytes()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(data[: len(data) // 2], name="half.pt")
    assert str(info.value).startswith("half.pt: not a readable PyTorch checkpoint")
    assert "is the file complete?" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bare_state_dict_is_refused_with_an_explanation(trained):
    buf = io.BytesIO()
    torch.save(trained.model.state_dict(), buf)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(buf.getvalue(), name="weights.pth")
    message = str(info.value)
    assert "bare state_dict" in message and "no model spec or classes" in message


def _resave(path: pathlib.Path, **changes) -> bytes:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del payload[key]
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"format": "something-else"}, "not a TorchLab checkpoint"),
        ({"version": 99}, "format version 99 is not supported"),
        ({"classes": None}, "damaged checkpoint metadata"),
        ({"spec": {"arch": "lenet", "bogus": 1}}, "damaged checkpoint metadata (unknown model settings: bogus)"),
        ({"classes": ["a", "b"]}, "lists 2 class names for a net with 3 outputs"),
        ({"style": "functional"}, "unknown construction style"),
        ({"spec": MLP_SPEC.to_dict()}, "the weights do not fit a MLP"),
    ],
)
def test_wrongly_shaped_checkpoints_are_refused(saved, changes, expected):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_resave(saved, **changes), name="odd.pt")
    assert expected in str(info.value) and str(info.value).startswith("odd.pt: ")


def test_missing_and_oversized_files(tmp_path, saved, monkeypatch):
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="larger than"):
        load_checkpoint(saved)


# --- fitting checks ----------------------------------------------------------------------------


def test_check_fits_accepts_the_same_net(saved):
    check_fits(load_checkpoint(saved), SPEC)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (ModelSpec("mlp", 3, in_channels=1, input_size=16), "architecture LeNet-5 vs MLP"),
        (SPEC.replace(num_classes=4), "3 classes vs 4"),
        (SPEC.replace(in_channels=3), "input channels 1 vs 3"),
        (SPEC.replace(input_size=32), "input size 16 vs 32"),
        (SPEC.replace(batchnorm=False), "batch norm True vs False"),
    ],
)
def test_check_fits_names_what_differs(saved, spec, expected):
    ckpt = load_checkpoint(saved)
    with pytest.raises(CheckpointError) as info:
        check_fits(ckpt, spec)
    assert expected in str(info.value)
    target = build_model(spec, seed=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_into(ckpt, target, spec)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched


# --- export ------------------------------------------------------------------------------------


def test_export_full_model_is_bytes_and_leaves_the_live_model_alone(trained):
    model = trained.model.train()
    params = [p for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = export_full_model(model)
    assert isinstance(data, bytes) and len(data) > 1000
    assert [p for p in model.parameters()] == params and all(p.device.type == "cpu" for p in params)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # The tutorial's way of loading it (trusted files only) gives the same net.
    copy = torch.load(io.BytesIO(data), weights_only=False)
    assert torch.equal(outputs(copy, trained.x_test), outputs(model, trained.x_test))
    assert copy is not model


def test_an_exported_sequential_net_needs_only_torch_to_load(trained):
    model = build_model(SPEC, "sequential", seed=0).eval()
    data = export_full_model(model)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    modules = {arg.split(" ")[0] for op, arg, _ in pickletools.genops(pickled) if op.name == "GLOBAL"}
    assert modules and all(m.startswith(("torch", "collections", "__builtin__")) for m in modules), modules
    copy = torch.load(io.BytesIO(data), weights_only=False)
    assert [type(m) for m in copy] == [type(m) for m in model]
    assert torch.equal(outputs(copy, trained.x_test), outputs(model, trained.x_test))


def test_an_exported_frozen_net_is_plain_torch_and_the_live_one_stays_frozen(trained):
    model = build_model(SPEC, "sequential", seed=0)
    freeze_features(model)
    data = export_full_model(model)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    modules = {arg.split(" ")[0] for op, arg, _ in pickletools.genops(pickled) if op.name == "GLOBAL"}
    assert all(m.startswith(("torch", "collections", "__builtin__")) for m in modules), modules
    copy = torch.load(io.BytesIO(data), weights_only=False)
    assert type(copy[1]) is nn.BatchNorm2d and all(p.requires_grad for p in copy.parameters())
    assert type(model[1]) is FrozenBatchNorm2d and not model[0].weight.requires_grad  # the live net is untouched
    assert torch.equal(outputs(copy, trained.x_test), outputs(model, trained.x_test))


# --- what checkpoints written before fine-tuning and resuming look like ------------------------


def test_a_version_1_file_without_the_new_keys_loads_as_before(saved):
    payload = torch.load(saved, weights_only=True)
    payload["preprocessing"] = {k: v for k, v in payload["preprocessing"].items() if k != "image_size"}
    for key in ("origin", "resume"):
        del payload[key]
    buf = io.BytesIO()
    torch.save(payload, buf)
    ckpt = load_checkpoint(buf.getvalue())
    assert ckpt.image_size is None and ckpt.train_image_size == SPEC.input_size
    assert ckpt.preprocessing["image_size"] == SPEC.input_size
    assert ckpt.origin == {} and ckpt.resume is None and ckpt.source == ""


@pytest.mark.parametrize("value", [True, 0, -3, "64", 1e9, None])
def test_an_unusable_image_size_falls_back_to_the_input_size(saved, value):
    payload = torch.load(saved, weights_only=True)
    payload["preprocessing"]["image_size"] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    assert load_checkpoint(buf.getvalue()).train_image_size == SPEC.input_size


def test_save_checkpoint_records_the_training_image_size(tmp_path):
    model = build_model(SPEC, seed=0)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, SPEC, "module", ["a", "b", "c"], image_size=48))
    assert ckpt.image_size == 48 and ckpt.preprocessing["image_size"] == 48 and ckpt.preprocessing["size"] == 16
    assert ckpt.origin == {} and ckpt.resume is None


# --- the checkpoint list -----------------------------------------------------------------------


def test_list_checkpoints_newest_first(tmp_path):
    names_by_age = {"old.pt": 1_000_000, "newest.pt": 3_000_000, "middle.pt": 2_000_000}
    for name, mtime in names_by_age.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["newest.pt", "middle.pt", "old.pt"]
    assert list_checkpoints(tmp_path / "missing") == []


def test_checkpoint_dir_follows_the_environment(tmp_path, monkeypatch, trained):
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    assert checkpoint_dir() == tmp_path
    trained.save(checkpoint_dir() / "a.pt")
    assert list_checkpoints() == [tmp_path / "a.pt"]
    monkeypatch.delenv(CHECKPOINT_DIR_ENV)
    assert checkpoint_dir() == pathlib.Path(checkpoint_module.__file__).resolve().parent.parent / "checkpoints"
