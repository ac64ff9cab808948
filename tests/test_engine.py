"""The engine/loop split: a step that never waits for the device, the learning rate as a device
tensor, padded batches of one shape, faster CPU kernels as an execution detail, one policy table.

Everything here runs on the CPU; capture in a CUDA graph is the GPU's part (``tests/test_cuda.py``).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from core.engine import POLICIES, CpuKernels, Engine, make_optimizer
from core.nets import build_model
from core.spec import ARCHS, ModelSpec, default_spec
from core.trainer import EpochEvent, StepEvent, Trainer, TrainingDiverged, lr_at
from tests.test_nets import exact
from tests.test_trainer import LENET_SPEC, MLP_SPEC, assert_same_tensors, cfg

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# Every way a tensor's value reaches Python: each one waits for the device on a GPU.
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts reads of tensor values into Python, by method name, while a test runs."""
    counts: dict[str, int] = {}
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


# --- the step never syncs -------------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "augmentation"), [
    ("sgd", "standard"), ("momentum", "standard"), ("rmsprop", "standard"), ("adam", "standard"),
    ("adam", "mixed"),  # the default recipe's: webcam-like blur (per-image sigmas), JPEG, cluttered rooms
    ("adam", "webcam"), ("adam", "mirrored"),
])
def test_training_reads_the_device_once_per_epoch(tiny_dataset, host_reads, optimizer, augmentation):
    config = cfg(optimizer=optimizer, schedule="onecycle", augment=True, augmentation=augmentation, epochs=2)
    trainer = Trainer(LENET_SPEC, tiny_dataset, config)
    trainer.report_seconds = math.inf  # no live chart to feed
    host_reads.clear()
    steps = 0
    for event in trainer.run():
        if isinstance(event, StepEvent):
            steps += 1
            assert host_reads == {}, f"step {steps} read the device: {host_reads}"
        else:
            assert sum(host_reads.values()) == 1, host_reads  # the epoch's figures, in one read
            host_reads.clear()
    assert steps == 6 and len(trainer.history.step_losses) == 6 and len(trainer.history.epochs) == 2


def test_a_watched_run_reads_step_losses_as_often_as_the_chart_refreshes(tiny_dataset, host_reads):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(batch_size=8, epochs=1))
    trainer.report_seconds = 0.0  # every step
    seen = []
    for event in trainer.run():
        if isinstance(event, StepEvent) and event.step < 5:
            seen.append(len(trainer.history_snapshot().step_losses))
    assert seen == [0, 1, 2, 3, 4]  # each step's loss is in the history by the next step's event
    assert len(trainer.history.step_losses) == 6


def test_a_stopped_run_keeps_every_loss_it_took(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(batch_size=8, epochs=2))
    trainer.report_seconds = math.inf
    for _ in trainer.run(lambda: trainer.step >= 4):
        pass
    assert trainer.step == 4 and len(trainer.history.step_losses) == 4
    for _ in trainer.run(lambda: trainer.step >= 9):
        pass
    assert len(trainer.history.step_losses) == 9


def test_divergence_is_found_at_the_next_read_and_names_the_first_bad_step(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(batch_size=8, epochs=3))  # 6 steps per epoch
    trainer.report_seconds = math.inf
    for _ in trainer.run(lambda: trainer.step >= 8):
        pass
    with torch.no_grad():
        trainer.model.head.weight.fill_(math.nan)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 9 "):
        for _ in trainer.run():
            pass
    assert len(trainer.history.step_losses) == 8  # the good ones, nothing after


# --- the learning rate as a device tensor -----------------------------------------------------------


class _FloatLR(Engine):
    """The engine as it was: a Python float written into the optimizer's groups before each step."""

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_tensor_learning_rate_trains_exactly_as_the_float_schedule(tiny_dataset, optimizer, schedule):
    config = cfg(optimizer=optimizer, schedule=schedule, epochs=2, lr=0.01)
    ours = Trainer(LENET_SPEC, tiny_dataset, config)
    floats = Trainer(LENET_SPEC, tiny_dataset, config)
    floats.engine.__class__ = _FloatLR
    floats.engine.optimizer = make_optimizer(floats.model, config)  # plain float rates
    rates = []
    for event in ours.run():
        if isinstance(event, StepEvent):
            rates.append(float(ours.engine.lr))
            assert rates[-1] == lr_at(config, event.step, ours.total_steps) == event.lr
    for _ in floats.run():
        pass
    assert len(set(rates)) > 3  # the schedule moved
    assert_same_tensors(ours.model.state_dict(), floats.model.state_dict(), "weights")
    assert ours.history.step_losses == floats.history.step_losses


def test_a_saved_optimizer_state_holds_a_plain_rate_and_the_loaded_one_follows_the_schedule(tiny_dataset, tmp_path):
    from core.checkpoint import load_checkpoint

    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(schedule="cosine", epochs=3))
    for _ in trainer.run(lambda: trainer.epoch >= 1):
        pass
    ckpt = load_checkpoint(trainer.save(tmp_path / "half.pt"))
    assert isinstance(ckpt.optimizer_state["param_groups"][0]["lr"], float)
    resumed = Trainer.resume(ckpt, tiny_dataset)
    assert resumed.optimizer.param_groups[0]["lr"] is resumed.engine.lr  # one shared tensor, updated in place
    event = next(e for e in resumed.run() if isinstance(e, StepEvent))
    assert float(resumed.engine.lr) == event.lr == lr_at(resumed.config, 3, resumed.total_steps)


# --- padded batches of one shape ------------------------------------------------------------------


def _batch_sizes(trainer: Trainer) -> list[int]:
    sizes: list[int] = []
    trainer.model.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])) if m.training else None)
    return sizes


@pytest.mark.parametrize("batch", [20, 47])  # 48 images: a short last batch of 8, and one of 1
def test_padded_batches_train_exactly_as_unpadded_ones(tiny_dataset, batch):
    spec = MLP_SPEC  # no batch norm, no dropout: padding rows could only act through the loss
    config = cfg(batch_size=batch, epochs=3, optimizer="momentum", lr=0.05, schedule="onecycle")
    plain = Trainer(spec, tiny_dataset, config)
    padded = Trainer(spec, tiny_dataset, config, pad_batches=True)
    sizes = _batch_sizes(padded)
    for t in (plain, padded):
        for _ in t.run():
            pass
    assert set(sizes) == {batch}  # one static shape
    assert padded.total_steps == 3 * math.ceil(48 / batch)
    if batch == 20:  # the same batches, so the same run
        for a, b in zip(plain.model.parameters(), padded.model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(plain.history.epochs, padded.history.epochs):
            assert b.train_acc == a.train_acc and b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
            assert b.test_acc == a.test_acc
    else:  # unpadded merges the batch of one into the one before; padded keeps it, and counts it once
        assert padded.total_steps == plain.total_steps + 3
    assert all(e.train_acc <= 1.0 for e in padded.history.epochs)


def test_padding_counts_every_image_once_in_the_epochs_figures(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(batch_size=20, epochs=1, optimizer="sgd", lr=1e-7, precision="fp32"),
                      pad_batches=True)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in trainer.run():
        pass
    model = build_model(MLP_SPEC, seed=0)
    model.load_state_dict(before)
    x, y = trainer.x_train, trainer.y_train
    reference = F.cross_entropy(model(x), y).item()  # every image once, at (nearly) the start weights
    assert trainer.history.epochs[0].train_loss == pytest.approx(reference, rel=1e-4)


def test_padded_batches_with_batch_norm_train(tiny_dataset):
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(batch_size=20, epochs=6), pad_batches=True)
    sizes = _batch_sizes(trainer)
    for _ in trainer.run():
        pass
    assert set(sizes) == {20}
    losses = [e.train_loss for e in trainer.history.epochs]
    assert losses[-1] < 0.7 * losses[0]


# --- faster CPU kernels: the CPU engine's detail, not the net's ----------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(128, 6, 60, 60), (3, 16, 26, 26), (2, 1, 7, 9)])
def test_onednn_pooling_equals_pytorchs(shape, dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype).requires_grad_()  # distinct values in fp32: one max per window
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2).to(dtype)
    calls = []
    real = torch.mkldnn_max_pool2d

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    torch.mkldnn_max_pool2d = spy
    try:
        cl = x.detach().contiguous(memory_format=torch.channels_last)
        with CpuKernels():
            ours, module = F.max_pool2d(x, 2), nn.MaxPool2d(2)(x)
            pooled = len(calls)
            cl_ours = F.max_pool2d(cl, 2)  # channels-last: left to PyTorch (unless one channel: both layouts)
            overlapping = F.max_pool2d(x, 3, stride=2)  # ResNet's stem pool: left to PyTorch
    finally:
        torch.mkldnn_max_pool2d = real
    assert pooled == 2 and len(calls) == (3 if shape[1] == 1 else 2)
    theirs = F.max_pool2d(x, 2)
    exact(ours, theirs)
    exact(module, theirs)
    exact(cl_ours, F.max_pool2d(cl, 2))
    exact(overlapping, F.max_pool2d(x, 3, stride=2))
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    (g_theirs,) = torch.autograd.grad(theirs, x, grad)
    if dtype == torch.float32:
        exact(g_ours, g_theirs)
    else:  # bf16 has ties, where either position is a valid gradient: same total per window
        exact(F.avg_pool2d(g_ours.float(), 2), F.avg_pool2d(g_theirs.float(), 2))


@pytest.mark.parametrize("style", ["module", "sequential"])
def test_nets_are_plain_pytorch_and_the_cpu_engine_pools_through_onednn(tiny_dataset, style):
    model = build_model(default_spec("lenet"), style, seed=0)
    assert all(type(m).__module__.startswith("torch.nn") for m in model.modules() if type(m).__name__ == "MaxPool2d")
    calls = []
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(epochs=1), style)
    real = torch.mkldnn_max_pool2d
    torch.mkldnn_max_pool2d = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        for _ in trainer.run():
            pass
    finally:
        torch.mkldnn_max_pool2d = real
    assert trainer.engine.onednn_pool and len(calls) == 2 * (3 + 1)  # two pools per training step and per test pass
    assert not torch._C._is_torch_function_mode_enabled()  # the mode ends with each step


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
class ConvLayouts(TorchFunctionMode):
    """Records, for each 2-D convolution that reaches it, whether its input was channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.channels_last: list[bool] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.conv2d:
            self.channels_last.append(args[0].is_contiguous(memory_format=torch.channels_last) and args[0].shape[1] > 1)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("in_channels", "switched"), [(3, True), (1, False), (6, False)])
def test_an_rgb_convolution_runs_channels_last_with_pytorchs_results(dtype, in_channels, switched):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, 6, kernel_size=5).to(dtype)
    x = torch.randn(8, in_channels, 20, 20).to(dtype).requires_grad_()
    with ConvLayouts() as layouts, CpuKernels(pool=False, rgb_conv=True):  # the spy sees what CpuKernels passes on
        ours = conv(x)
    assert layouts.channels_last == [switched]
    theirs = conv(x)
    assert ours.is_contiguous() and ours.shape == theirs.shape  # handed back in NCHW
    grad = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, [x, conv.weight, conv.bias], grad)
    g_theirs = torch.autograd.grad(theirs, [x, conv.weight, conv.bias], grad)
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 0.1, "rtol": 0.02}
    torch.testing.assert_close(ours, theirs, **tol)
    for ours_g, theirs_g in zip(g_ours, g_theirs):
        torch.testing.assert_close(ours_g, theirs_g, **tol)


@pytest.mark.parametrize(("in_channels", "expected"), [(3, [True, False]), (1, [False, False])])
def test_the_cpu_engine_switches_only_an_rgb_lenets_first_convolution(tiny_dataset, in_channels, expected):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("the switch is made where oneDNN computes the convolutions")
    trainer = Trainer(LENET_SPEC.replace(in_channels=in_channels), tiny_dataset, cfg(epochs=1))
    assert trainer.engine.rgb_conv_channels_last
    with ConvLayouts() as layouts:
        for _ in trainer.run():
            pass
    assert layouts.channels_last == expected * (3 + 1)  # conv1 and conv2, each step and the test pass


# --- one policy table -----------------------------------------------------------------------------


def test_every_net_has_a_policy_and_the_engine_follows_it(tiny_dataset):
    assert set(POLICIES) == set(ARCHS)
    for arch, policy in POLICIES.items():
        spec = ModelSpec(arch, 3, in_channels=3, input_size=32 if arch == "resnet50" else 16)
        engine = Engine(build_model(spec, seed=0), cfg(), torch.device("cpu"), arch)
        expected = torch.channels_last if policy.channels_last else torch.contiguous_format
        assert engine.memory_format == expected
        conv = next((m for m in engine.model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            assert conv.weight.is_contiguous(memory_format=expected)
        assert engine.onednn_pool == (policy.onednn_pool and torch.backends.mkldnn.is_available())
        assert engine.rgb_conv_channels_last == (policy.rgb_conv_channels_last and torch.backends.mkldnn.is_available())


def test_a_masked_step_ignores_the_padding(tiny_dataset):
    """Engine.step with a weight: the padding rows change neither the loss nor the gradient."""
    spec = MLP_SPEC
    a = Engine(build_model(spec, seed=0), cfg(optimizer="sgd", lr=0.1), torch.device("cpu"), "mlp")
    b = Engine(build_model(spec, seed=0), cfg(optimizer="sgd", lr=0.1), torch.device("cpu"), "mlp")
    x = torch.rand(6, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    junk = torch.rand(4, 3, 16, 16) * 100
    loss_a, correct_a = a.step(x, y)
    loss_b, correct_b = b.step(torch.cat([x, junk]), torch.cat([y, y[:4]]), torch.tensor([1.0] * 6 + [0.0] * 4))
    torch.testing.assert_close(loss_b, loss_a)
    assert correct_a == correct_b
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q)


def test_epoch_events_still_report_speed_and_the_rate(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(schedule="cosine", epochs=2))
    events = [e for e in trainer.run() if isinstance(e, EpochEvent)]
    assert [e.epoch for e in events] == [1, 2]
    assert all(e.images_per_second > 0 and e.seconds > 0 for e in events)
    assert events[-1].lr == lr_at(trainer.config, trainer.total_steps - 1, trainer.total_steps)


# --- CUDA graphs: asked for where there is no CUDA ------------------------------------------------


def test_a_cuda_graph_asked_for_on_the_cpu_trains_eagerly_and_says_why(tiny_dataset):
    config = cfg(cuda_graph=True, schedule="onecycle", epochs=2)
    asked = Trainer(LENET_SPEC, tiny_dataset, config)
    plain = Trainer(LENET_SPEC, tiny_dataset, config.replace(cuda_graph=False))
    for t in (asked, plain):
        for _ in t.run():
            pass
    assert not asked.engine.capture and asked.engine.capture_note == "eager: CUDA graphs need a CUDA device, not cpu"
    assert not asked.pad_batches and asked.engine.capture_seconds == 0.0
    assert asked.history.step_losses == plain.history.step_losses
    assert "CUDA graph" in config.describe()
