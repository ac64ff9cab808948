"""The training engine: optimizers, schedules, batching, stop/resume, reproducibility, divergence,
config validation, evaluation and background jobs.

Everything runs on the tiny in-memory data set from ``conftest.py`` (48 train / 24 test 16×16
images, 3 classes) with small nets, so each test takes well under a second.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import CheckpointError
from core.engine import make_optimizer, outside_autocast
from core.jobs import DIVERGED, FAILED, FINISHED, READY, STOPPED, STOPPING, TrainingJob
from core.spec import ModelSpec
from core.trainer import (
    COMPUTE_TURNS,
    OPTIMIZERS,
    ConfigError,
    EpochEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    _batch_bounds,
    evaluate,
    lr_at,
    recipe,
    spare_core,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# RGB MLP without batch norm, and the tutorial's gray LeNet (with batch norm) at 16×16.
MLP_SPEC = ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(16, 8), batchnorm=False)
LENET_SPEC = ModelSpec("lenet", 3, in_channels=1, input_size=16)

# A good learning rate per optimizer for the tiny set.
GOOD_LR = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 0.003, "adam": 0.01}


def cfg(**changes) -> TrainConfig:
    """A small, fast config on the CPU; tests override what they exercise."""
    base = TrainConfig(
        optimizer="adam", lr=0.01, schedule="constant", augment=False, batch_size=16, epochs=3, seed=0, device="cpu"
    )
    return base.replace(**changes)


def train(spec: ModelSpec, dataset, config: TrainConfig, style: str = "module") -> Trainer:
    trainer = Trainer(spec, dataset, config, style)
    for _ in trainer.run():
        pass
    return trainer


def assert_same_tensors(a, b, where: str = "") -> None:
    """Exact equality of nested dicts/lists of tensors and plain values (state_dicts, optimizer state)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def epoch_figures(history) -> list[tuple]:
    """Everything in the epoch events except the timings."""
    return [(e.epoch, e.step, e.train_loss, e.train_acc, e.test_loss, e.test_acc, e.lr) for e in history.epochs]


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a guard against hanging, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def throttle(model: nn.Module, seconds: float):
    """Slow every training forward down (numerics unchanged), so a stop surely lands mid-run."""

    def hook(module, args):
        if module.training:
            time.sleep(seconds)

    return model.register_forward_pre_hook(hook)


# --- optimizers --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_make_optimizer_builds_the_named_optimizer_with_its_settings(name):
    config = cfg(optimizer=name, lr=0.02, momentum=0.8, alpha=0.95, betas=(0.85, 0.995), weight_decay=0.003)
    model = nn.Linear(4, 3)
    opt = make_optimizer(model, config)
    group = opt.param_groups[0]
    assert group["lr"] == 0.02
    assert group["weight_decay"] == 0.003
    assert len(group["params"]) == 2  # weight and bias
    if name == "sgd":
        assert type(opt) is torch.optim.SGD and group["momentum"] == 0
    elif name == "momentum":
        assert type(opt) is torch.optim.SGD and group["momentum"] == 0.8
    elif name == "rmsprop":
        assert type(opt) is torch.optim.RMSprop and group["alpha"] == 0.95
    else:
        assert type(opt) is torch.optim.Adam and tuple(group["betas"]) == (0.85, 0.995)


# --- precision ---------------------------------------------------------------------------------


def test_bf16_autocast_trains_and_keeps_gray_first_conv_in_fp32(tiny_dataset):
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(precision="bf16", epochs=8, lr=0.01))
    assert trainer.engine.autocast_dtype == torch.bfloat16
    assert trainer.engine.fp32_layers == [trainer.model.conv1]  # the one conv on a single channel
    dtypes = {}

    def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:  # runs before the trainer's hook
        dtypes.setdefault("conv1" if module is trainer.model.conv1 else "conv2", out.dtype)

    for m in (trainer.model.conv1, trainer.model.conv2):
        m.register_forward_hook(record)
    for _ in trainer.run():
        pass
    assert dtypes == {"conv1": torch.float32, "conv2": torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay fp32
    losses = [e.train_loss for e in trainer.history.epochs]
    assert losses[-1] < 0.7 * losses[0]
    assert not torch.is_autocast_enabled("cpu")
    for m in trainer.model.modules():  # the trainer's hooks were removed after every step
        assert not m._forward_pre_hooks
    rgb = Trainer(LENET_SPEC.replace(in_channels=3), tiny_dataset, cfg(precision="bf16"))
    fp32 = Trainer(LENET_SPEC, tiny_dataset, cfg(precision="fp32"))
    assert rgb.engine.fp32_layers == [] and fp32.engine.fp32_layers == [] and fp32.engine.autocast_dtype is None


def test_outside_autocast_restores_autocast_even_when_the_layer_fails():
    conv = nn.Conv2d(1, 4, 3)
    net = nn.Sequential(conv, nn.Conv2d(4, 2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with outside_autocast([conv]):
            out = net(torch.rand(2, 1, 8, 8))
            assert torch.is_autocast_enabled("cpu")
            with pytest.raises(RuntimeError):
                net(torch.rand(2, 3, 8, 8))  # wrong channel count: conv raises inside the hooks
            assert torch.is_autocast_enabled("cpu")  # switched back on in spite of the error
        assert out.dtype == torch.bfloat16
        assert not conv._forward_hooks and not conv._forward_pre_hooks
    reference = net[1](conv(torch.rand(2, 1, 8, 8)))  # outside the block: plain fp32, no hooks left
    assert reference.dtype == torch.float32


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_match_pytorchs_reference_loop(name):
    """Fused kernels where PyTorch has them, the same updates as the textbook per-tensor loop."""
    config = cfg(optimizer=name, lr=0.01, momentum=0.8, alpha=0.95, weight_decay=0.01)
    torch.manual_seed(0)
    ours, ref = nn.Linear(20, 5), nn.Linear(20, 5)
    ref.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    opt = make_optimizer(ours, config)
    ref_opt = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.01, weight_decay=0.01, foreach=False),
        "momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.8, weight_decay=0.01, foreach=False),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, weight_decay=0.01, foreach=False),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01, foreach=False),
    }[name](ref.parameters())
    assert opt.param_groups[0].get("fused") is (name != "rmsprop" or None)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    for _ in range(10):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (ours.weight - start).abs().max() > 1e-3  # the steps did move the weights


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_reduces_the_loss(tiny_dataset, name):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(optimizer=name, lr=GOOD_LR[name], epochs=10))
    before = evaluate(trainer.model, trainer.x_train, trainer.y_train).loss
    for _ in trainer.run():
        pass
    after = evaluate(trainer.model, trainer.x_train, trainer.y_train).loss
    assert after < 0.5 * before
    assert trainer.history.epochs[-1].train_loss < trainer.history.epochs[0].train_loss
    assert type(trainer.optimizer) is type(make_optimizer(nn.Linear(1, 1), cfg(optimizer=name)))


def test_weight_decay_shrinks_the_weights(tiny_dataset):
    def weight_norm(model: nn.Module) -> float:
        return sum(float(m.weight.detach().norm() ** 2) for m in model.modules() if isinstance(m, nn.Linear))

    plain = Trainer(MLP_SPEC, tiny_dataset, cfg(optimizer="sgd", lr=0.1, epochs=5, weight_decay=0.0))
    decayed = Trainer(MLP_SPEC, tiny_dataset, cfg(optimizer="sgd", lr=0.1, epochs=5, weight_decay=0.1))
    assert_same_tensors(plain.model.state_dict(), decayed.model.state_dict())  # same start
    for trainer in (plain, decayed):
        for _ in trainer.run():
            pass
    assert weight_norm(decayed.model) < 0.9 * weight_norm(plain.model)


# --- dropout, batch norm -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [MLP_SPEC.replace(dropout=0.5), LENET_SPEC.replace(dropout=0.5)], ids=["mlp", "lenet"])
def test_dropout_is_random_in_train_mode_only(tiny_dataset, spec):
    model = Trainer(spec, tiny_dataset, cfg()).model
    x = torch.rand(8, spec.in_channels, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_without_dropout_train_mode_is_deterministic(tiny_dataset):
    model = Trainer(MLP_SPEC, tiny_dataset, cfg()).model.train()
    x = torch.rand(8, 3, 16, 16)
    assert torch.equal(model(x), model(x))


def test_batchnorm_switch_changes_the_modules(tiny_dataset):
    def kinds(spec: ModelSpec) -> set[type]:
        return {type(m) for m in Trainer(spec, tiny_dataset, cfg()).model.modules()}

    with_bn = kinds(LENET_SPEC.replace(batchnorm=True))
    without_bn = kinds(LENET_SPEC.replace(batchnorm=False))
    assert {nn.BatchNorm1d, nn.BatchNorm2d} <= with_bn
    assert not without_bn & {nn.BatchNorm1d, nn.BatchNorm2d}
    assert with_bn - without_bn == {nn.BatchNorm1d, nn.BatchNorm2d}
    mlp_bn = kinds(MLP_SPEC.replace(batchnorm=True))
    assert nn.BatchNorm1d in mlp_bn and nn.BatchNorm1d not in kinds(MLP_SPEC)


# --- batches -----------------------------------------------------------------------------------


def test_full_batch_is_one_step_per_epoch(tiny_dataset):
    trainer = train(MLP_SPEC, tiny_dataset, cfg(batch_size=0, epochs=3))
    assert trainer.batches == [(0, 48)]
    assert trainer.total_steps == 3
    assert len(trainer.history.step_losses) == 3
    assert [e.step for e in trainer.history.epochs] == [1, 2, 3]


@pytest.mark.parametrize(
    "n, batch_size, expected",
    [
        (48, 16, [(0, 16), (16, 32), (32, 48)]),
        (49, 16, [(0, 16), (16, 32), (32, 49)]),  # the last batch of one joins the one before
        (50, 16, [(0, 16), (16, 32), (32, 48), (48, 50)]),
        (17, 16, [(0, 17)]),
        (5, 0, [(0, 5)]),
        (5, 100, [(0, 5)]),
    ],
)
def test_batch_bounds(n, batch_size, expected):
    assert _batch_bounds(n, batch_size) == expected


@pytest.mark.parametrize("n", [2, 3, 17, 33, 49, 64, 65])
@pytest.mark.parametrize("batch_size", [0, 1, 2, 4, 16, 32])
def test_batch_bounds_cover_everything_once_and_never_leave_one_alone(n, batch_size):
    bounds = _batch_bounds(n, batch_size)
    covered = [i for lo, hi in bounds for i in range(lo, hi)]
    assert covered == list(range(n))
    if batch_size != 1:
        assert all(hi - lo >= 2 for lo, hi in bounds)


def test_a_last_batch_of_one_is_merged_so_batch_norm_trains(make_tiny_dataset):
    # 49 images in batches of 16 would leave one image alone, which BatchNorm cannot normalise.
    dataset = make_tiny_dataset(n_train=49)
    trainer = train(LENET_SPEC, dataset, cfg(batch_size=16, epochs=1))
    assert trainer.batches[-1] == (32, 49)
    assert len(trainer.history.step_losses) == 3
    assert trainer.history.epochs[0].step == 3


# --- learning-rate schedules -------------------------------------------------------------------


def test_constant_schedule_is_flat():
    config = cfg(schedule="constant", lr=0.02)
    assert {lr_at(config, s, 100) for s in range(100)} == {0.02}


@pytest.mark.parametrize("schedule, warm, start_div", [("cosine", 10, 10), ("onecycle", 50, 25)])
def test_warmup_then_decay_to_zero_peaking_at_lr(schedule, warm, start_div):
    config = cfg(schedule=schedule, lr=0.02)
    rates = [lr_at(config, s, 200) for s in range(200)]
    assert rates[0] == pytest.approx(0.02 / start_div)
    assert max(rates) == pytest.approx(0.02)
    assert rates.index(max(rates)) == warm
    assert all(a < b for a, b in zip(rates[:warm], rates[1 : warm + 1]))  # warm-up rises
    assert all(a >= b for a, b in zip(rates[warm:], rates[warm + 1 :]))  # then decays
    assert 0 <= rates[-1] < 0.02 * 1e-3  # to ~0
    assert all(0 < r <= 0.02 for r in rates)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_a_single_step_run_uses_the_full_rate(schedule):
    assert lr_at(cfg(schedule=schedule, lr=0.02), 0, 1) == 0.02


def test_the_trainer_follows_the_schedule(tiny_dataset):
    config = cfg(schedule="onecycle", epochs=4)
    trainer = Trainer(MLP_SPEC, tiny_dataset, config)
    steps = [e for e in trainer.run() if isinstance(e, StepEvent)]
    assert [e.lr for e in steps] == [lr_at(config, s, trainer.total_steps) for s in range(trainer.total_steps)]
    assert [e.step for e in steps] == list(range(12))
    assert [e.epoch for e in steps] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3


# --- stop / resume and reproducibility ---------------------------------------------------------


@pytest.mark.parametrize("stops", [(3,), (5,), (4, 7, 11, 12)], ids=["mid-epoch", "epoch-boundary", "several"])
def test_stop_and_resume_equals_an_uninterrupted_run(tiny_dataset, stops):
    # Augmentation and dropout on, so the shuffling, augmentation and dropout random streams must
    # all be carried over a stop. 48 images in batches of 10 → 5 steps per epoch, 20 in all.
    spec = LENET_SPEC.replace(dropout=0.3)
    config = cfg(augment=True, batch_size=10, epochs=4, schedule="onecycle", seed=3)

    straight = train(spec, tiny_dataset, config)

    resumed = Trainer(spec, tiny_dataset, config)
    for k in stops:
        events = list(resumed.run(lambda: resumed.step >= k))
        assert resumed.step == k and not resumed.finished
        assert isinstance(events[-1], StepEvent) or k % 5 == 0
        torch.rand(100)  # the rest of the process using the global RNG between stretches
        nn.Dropout(0.5)(torch.ones(100))
    for _ in resumed.run():
        pass

    assert resumed.finished and resumed.step == straight.step == 20
    assert resumed.history.step_losses == straight.history.step_losses
    assert epoch_figures(resumed.history) == epoch_figures(straight.history)
    assert_same_tensors(resumed.model.state_dict(), straight.model.state_dict(), "model")
    assert_same_tensors(resumed.optimizer.state_dict(), straight.optimizer.state_dict(), "optimizer")


@pytest.mark.parametrize("turns,beside", [(1, False), (2, False), (2, True)],
                         ids=["one-turn", "two-turns", "beside-another-run"])
def test_batches_made_ahead_train_exactly_as_batches_made_inline(tiny_dataset, monkeypatch, turns, beside):
    # With one intra-op thread on a machine with more cores, the next batch is augmented on a worker
    # while the step runs. The same numbers in the same order: the same run, bit for bit — with the
    # compute turns letting both in at once or only one (where a wait inside a turn would deadlock),
    # and when another run goes on for a stretch (batches are then made in turn, none ahead).
    monkeypatch.setattr(COMPUTE_TURNS, "slots", turns)
    spec = LENET_SPEC.replace(dropout=0.3)
    config = cfg(augment=True, batch_size=10, epochs=3, schedule="onecycle", seed=5)
    inline = Trainer(spec, tiny_dataset, config)
    ahead = Trainer(spec, tiny_dataset, config)
    inline.augment_ahead, ahead.augment_ahead = False, True
    made_by = []  # (step, made on the worker) for each batch made in a turn of its own
    make = ahead._make_batch_in_turn

    def recorded(k: int):
        made_by.append((ahead.step, threading.current_thread().name.startswith("torchlab-augment")))
        return make(k)

    ahead._make_batch_in_turn = recorded
    for t in (inline, ahead):
        for _ in t.run(lambda t=t: t.step == 7):  # a stop with a batch made ahead, then on to the end
            pass
        assert t.step == 7
        with COMPUTE_TURNS.run_going() if beside else contextlib.nullcontext():
            for _ in t.run(lambda t=t: t.step == 11):
                pass
        for _ in t.run():
            pass
    on_worker = {step for step, worker in made_by if worker}
    if turns == 1:  # the worker's turn would only wait for the step's: every batch is made in the step's turn
        assert made_by == []
    else:
        assert on_worker and (not beside or not on_worker & set(range(7, 11)))  # none ahead beside another run
    assert ahead.history.step_losses == inline.history.step_losses
    assert epoch_figures(ahead.history) == epoch_figures(inline.history)
    assert_same_tensors(ahead.model.state_dict(), inline.model.state_dict(), "model")
    assert torch.equal(ahead.augment_gen.get_state(), inline.augment_gen.get_state())
    assert ahead._pool is None  # no worker thread left behind by a finished run


def test_a_runs_time_leaves_out_its_wait_for_another_runs_turn(tiny_dataset, monkeypatch):
    # The images/s a user reads count the run's own work: a batch made in a turn of its own (ahead of
    # the step) is timed inside the turn, as a step is, not from when it queued behind another
    # run's steps or a live stream's frames.
    monkeypatch.setattr(COMPUTE_TURNS, "slots", 2)
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(augment=True, batch_size=16, epochs=1))
    trainer.augment_ahead = True
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with COMPUTE_TURNS:  # two turns held for a while (two slots), as two steps of other runs would
            with COMPUTE_TURNS:
                held.set()
                release.wait(10)

    holder = threading.Thread(target=other_run, daemon=True)
    holder.start()
    held.wait(10)
    threading.Timer(1.5, release.set).start()
    started = time.perf_counter()
    events = [e for e in trainer.run() if isinstance(e, EpochEvent)]
    assert time.perf_counter() - started >= 1.5  # the run did wait for the turns
    assert events[0].seconds < 1.0


def test_a_released_run_lets_go_of_the_batch_it_made_ahead(tiny_dataset, monkeypatch):
    monkeypatch.setattr(COMPUTE_TURNS, "slots", 2)
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(augment=True, batch_size=10, epochs=2))
    trainer.augment_ahead = True
    for _ in trainer.run(lambda: trainer.step == 2):  # stopped mid-epoch: batch 2 was made ahead
        pass
    assert trainer._ahead is not None and trainer._ahead[:2] == (0, 2) and trainer._pool is None
    trainer.release_data()
    assert trainer._ahead is None and trainer.x_train.numel() == 0


def test_batches_are_made_ahead_only_where_a_core_is_spare(tiny_dataset, monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert spare_core(cpu) and not spare_core(cpu, world=2) and not spare_core(torch.device("cuda"))
    assert Trainer(LENET_SPEC, tiny_dataset, cfg(augment=True)).augment_ahead
    assert not Trainer(LENET_SPEC, tiny_dataset, cfg(augment=False)).augment_ahead  # nothing to make ahead
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the command line: every core steps
    assert not spare_core(cpu) and not Trainer(LENET_SPEC, tiny_dataset, cfg(augment=True)).augment_ahead


def test_run_leaves_the_global_rng_as_it_was(tiny_dataset):
    trainer = Trainer(LENET_SPEC.replace(dropout=0.5), tiny_dataset, cfg(augment=True, epochs=2))
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    for _ in trainer.run(lambda: trainer.step >= 4):
        pass
    assert torch.equal(torch.get_rng_state(), before)
    for _ in trainer.run():
        pass
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_history_whatever_the_global_rng(tiny_dataset):
    spec = LENET_SPEC.replace(dropout=0.3)
    config = cfg(augment=True, epochs=2, seed=7)
    torch.manual_seed(1)
    a = train(spec, tiny_dataset, config)
    torch.manual_seed(2)
    b = train(spec, tiny_dataset, config)
    assert a.history.step_losses == b.history.step_losses
    assert epoch_figures(a.history) == epoch_figures(b.history)
    assert_same_tensors(a.model.state_dict(), b.model.state_dict())


def test_different_seed_different_history(tiny_dataset):
    spec = LENET_SPEC.replace(dropout=0.3)
    a = train(spec, tiny_dataset, cfg(augment=True, epochs=2, seed=7))
    b = train(spec, tiny_dataset, cfg(augment=True, epochs=2, seed=8))
    assert a.history.step_losses != b.history.step_losses
    assert not torch.equal(a.model.head.weight, b.model.head.weight)


def test_events_and_history(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(epochs=2))
    events = list(trainer.run())
    kinds = [type(e) for e in events]
    assert kinds == [StepEvent] * 3 + [EpochEvent] + [StepEvent] * 3 + [EpochEvent]
    last = events[-1]
    assert (last.epoch, last.step) == (2, 6)
    assert 0 <= last.train_acc <= 1 and 0 <= last.test_acc <= 1
    assert last.images_per_second > 0
    assert len(trainer.history.step_losses) == 6 and all(math.isfinite(v) for v in trainer.history.step_losses)
    m = trainer.final_metrics()
    assert m["epochs"] == 2 and m["steps"] == 6 and m["test_acc"] == last.test_acc
    assert m["best_test_acc"] == max(e.test_acc for e in trainer.history.epochs)
    assert m["device"] == "cpu"
    assert trainer.finished
    assert list(trainer.run()) == []  # a finished run has nothing left to do


# --- divergence --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_loss_raises_and_refuses_to_save(tiny_dataset, tmp_path, bad):
    # An absurd learning rate does not reliably overflow a small ReLU net (the units die and the
    # loss plateaus), so the blow-up is injected into the weights, as a diverged step would leave them.
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(epochs=3, lr=0.5, optimizer="sgd"))
    for _ in trainer.run(lambda: trainer.step >= 3):  # one good epoch
        pass
    good = tmp_path / "run.pt"
    trainer.save(good)
    good_bytes = good.read_bytes()

    with torch.no_grad():
        trainer.model.fc1.weight[0] = bad
    with pytest.raises(TrainingDiverged) as info:
        for _ in trainer.run():
            pass
    message = str(info.value)
    assert "nan" in message.lower() or "inf" in message.lower()
    assert "smaller learning rate" in message
    assert trainer.diverged == message
    assert len(trainer.history.step_losses) == 3 and all(math.isfinite(v) for v in trainer.history.step_losses)

    with pytest.raises(CheckpointError, match="not saved"):
        trainer.save(good)
    assert good.read_bytes() == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temp file left behind
    with pytest.raises(TrainingDiverged):  # it cannot be resumed either
        next(trainer.run())


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, n_train, expected",
    [
        ({"lr": -0.1}, None, "learning rate must be in 1e-07–10; got -0.1"),
        ({"lr": math.nan}, None, "learning rate must be in 1e-07–10; got nan"),
        ({"lr": math.inf}, None, "learning rate must be in 1e-07–10"),
        ({"lr": 0.0}, None, "learning rate must be in 1e-07–10"),
        ({"epochs": 0}, None, "epochs must be in 1–10000; got 0"),
        ({"batch_size": 100}, 48, "batch size must be 1–48 (the number of training images), or 0 for full batch; got 100"),
        ({"batch_size": -1}, 48, "batch size must be 1–48"),
        ({"optimizer": "lbfgs"}, None, "optimizer must be one of sgd, momentum, rmsprop, adam; got 'lbfgs'"),
        ({"schedule": "step"}, None, "schedule must be one of constant, cosine, onecycle; got 'step'"),
        ({"momentum": 1.5}, None, "momentum must be in 0–0.999; got 1.5"),
        ({"alpha": -0.1}, None, "RMSprop alpha must be in 0–0.9999"),
        ({"betas": (0.9, 1.0)}, None, "Adam beta2 must be in 0–0.99999"),
        ({"betas": (0.9,)}, None, "Adam betas must be two numbers"),
        ({"weight_decay": -1e-4}, None, "weight decay must be in 0–1"),
        ({"seed": -1}, None, "seed must be in 0–2.14748e+09"),
    ],
)
def test_validate_refuses_bad_values_naming_the_range(changes, n_train, expected):
    with pytest.raises(ConfigError) as info:
        cfg(**changes).validate(n_train)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validate_accepts_the_recipes_and_edges():
    for arch in ("mlp", "lenet", "resnet50"):
        recipe(arch).validate(1000)
    cfg(batch_size=48).validate(48)
    cfg(batch_size=0).validate(48)
    cfg(lr=10.0, epochs=1, momentum=0.0).validate()
    with pytest.raises(ConfigError, match="no recipe"):
        recipe("vgg")


def test_trainer_validates_against_the_data(tiny_dataset):
    with pytest.raises(ConfigError, match="batch size must be 1–48"):
        Trainer(MLP_SPEC, tiny_dataset, cfg(batch_size=49))


def test_trainer_refuses_a_class_count_mismatch(tiny_dataset):
    with pytest.raises(ConfigError) as info:
        Trainer(MLP_SPEC.replace(num_classes=4), tiny_dataset, cfg())
    assert "4 output classes" in str(info.value) and "has 3" in str(info.value)


def test_config_round_trips_through_a_dict():
    config = cfg(optimizer="rmsprop", betas=[0.8, 0.9], weight_decay=0.01)
    assert config.betas == (0.8, 0.9)
    d = config.to_dict()
    assert d["betas"] == [0.8, 0.9]
    assert TrainConfig.from_dict({**d, "unknown": 1}) == config
    assert "RMSprop" in config.describe() and "batch 16" in config.describe()
    assert "full batch" in cfg(batch_size=0).describe()


# --- evaluation --------------------------------------------------------------------------------


def test_evaluate_runs_in_eval_mode_without_grad_and_restores_the_mode(tiny_dataset):
    trainer = train(LENET_SPEC.replace(dropout=0.5), tiny_dataset, cfg(epochs=1))
    model = trainer.model
    seen: list[tuple[bool, bool]] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append((m.training, torch.is_grad_enabled())))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        for mode in (True, False):
            model.train(mode)
            result = evaluate(model, trainer.x_test, trainer.y_test, batch_size=7)
            assert model.training is mode
            assert all(m.training is mode for m in model.modules())
            assert not result.probabilities.requires_grad
    finally:
        handle.remove()
    assert seen == [(False, False)] * 8  # 24 images in batches of 7 → 4 forwards per call
    assert_same_tensors(model.state_dict(), state)  # batch-norm statistics untouched


def test_evaluate_restores_the_mode_after_an_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    assert model.training


def test_evaluate_does_not_depend_on_the_batch_size(tiny_dataset):
    trainer = train(LENET_SPEC, tiny_dataset, cfg(epochs=2))  # batch-norm statistics are non-trivial
    small = evaluate(trainer.model, trainer.x_test, trainer.y_test, batch_size=7)
    whole = evaluate(trainer.model, trainer.x_test, trainer.y_test, batch_size=1000)
    assert small.accuracy == whole.accuracy
    assert small.loss == pytest.approx(whole.loss, rel=1e-5, abs=1e-7)
    assert torch.equal(small.predictions, whole.predictions)
    torch.testing.assert_close(small.probabilities, whole.probabilities, rtol=1e-5, atol=1e-6)
    assert whole.probabilities.shape == (24, 3)
    torch.testing.assert_close(whole.probabilities.sum(1), torch.ones(24))
    expected = (whole.probabilities.argmax(1) == trainer.y_test).float().mean().item()
    assert whole.accuracy == pytest.approx(expected)
    assert trainer.evaluate_test().accuracy == whole.accuracy


# --- background jobs ---------------------------------------------------------------------------


def test_the_first_epoch_of_a_slow_net_already_gives_a_pace_and_an_estimate(tiny_dataset):
    # A ResNet-50 epoch on a CPU takes a quarter of a minute: the bar read "estimating…" and no
    # images/s until it ended. From the second step on, the steps so far give both.
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(epochs=2, batch_size=4))  # 12 steps an epoch
    handle = throttle(trainer.model, 0.05)  # each step ≥ 50 ms
    job = TrainingJob(trainer, "pace")
    job.start()
    try:
        wait_until(lambda: trainer.step >= 1)
        assert job.progress().eta_seconds is None  # one step says little (it carries the warm-up)
        wait_until(lambda: trainer.step >= 3)
        progress = job.progress()
        assert not trainer.history_snapshot().epochs  # still the first epoch
        left = trainer.total_steps - progress.step
        assert progress.eta_seconds is not None and progress.eta_seconds >= 0.05 * left  # each step sleeps 50 ms
        assert 0 < progress.images_per_second <= 4 / 0.05  # 4 images a step, a step ≥ 50 ms
    finally:
        job.stop()
        handle.remove()


def test_the_pace_can_be_read_before_the_first_epoch_begins(tiny_dataset):
    # The live view polls from another thread, and a job is running before its trainer has opened
    # an epoch: that read raised AttributeError once (a traceback on the Train page in Chromium).
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(epochs=1, batch_size=4))
    assert trainer.epoch_pace() is None
    assert TrainingJob(trainer, "unstarted").progress().eta_seconds is None


def test_job_stops_mid_run_and_resumes_to_the_end(tiny_dataset):
    config = cfg(epochs=20, batch_size=8)  # 6 steps per epoch, 120 in all
    trainer = Trainer(MLP_SPEC, tiny_dataset, config)
    job = TrainingJob(trainer, "stop-resume")
    assert job.status == READY and job.progress().fraction == 0.0 and job.can_resume

    handle = throttle(trainer.model, 0.005)  # ≥ 0.6 s left to run when the stop comes
    job.start()
    wait_until(lambda: trainer.step >= 3)
    job.stop()
    assert job.status == STOPPED and not job.running
    progress = job.progress()
    assert 0.0 < progress.fraction < 1.0
    assert progress.step == trainer.step and progress.total_steps == 120 and progress.epochs == 20
    assert job.can_resume

    handle.remove()
    job.start()
    job.join(timeout=120)
    assert job.status == FINISHED and not job.running and not job.can_resume
    assert job.progress().fraction == 1.0 and job.progress().epoch == 20
    assert not job.progress().mid_epoch and job.progress().current_epoch == 20  # the last, not "21/20"
    assert job.history().step_losses == train(MLP_SPEC, tiny_dataset, config).history.step_losses

    job.start()  # nothing left: stays finished, starts no thread
    assert job.status == FINISHED and not job.running


def test_a_stop_asked_for_mid_epoch_ends_the_job_after_the_step_under_way(tiny_dataset):
    """Stop is checked before every step, not once an epoch (issue 16: Stop acts within one second):
    a stop asked for while a mid-epoch step is under way lets that step finish and starts no other."""
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg(epochs=50, batch_size=4))  # 12 steps an epoch
    per_epoch = len(trainer.batches)
    target = per_epoch + 4  # the fifth step of the second epoch
    inside, go_on = threading.Event(), threading.Event()

    def hold(module, args):  # holds step `target` inside its forward pass until the stop is asked for
        if module.training and trainer.step == target:
            inside.set()
            assert go_on.wait(60)

    trainer.model.register_forward_pre_hook(hold)
    job = TrainingJob(trainer, "stop-mid-epoch")
    job.start()
    assert inside.wait(60)
    stopper = threading.Thread(target=job.stop)  # stop() waits for the run to end: from another thread
    stopper.start()
    wait_until(lambda: job.status == STOPPING and job._stop.is_set())
    go_on.set()
    stopper.join(60)
    assert not stopper.is_alive() and not job.running and job.status == STOPPED
    assert trainer.step == target + 1  # the step under way, and no other
    assert trainer.epoch == 1 and not trainer.at_epoch_boundary  # mid-epoch: the epoch was not run out
    assert len(job.history().step_losses) == target + 1  # its curve reaches the last step taken
    # A person reads "epoch 2/50" for steps inside the second epoch, one finished ("1 done").
    progress = job.progress()
    assert progress.mid_epoch and (progress.epoch, progress.current_epoch) == (1, 2)


def test_concurrent_jobs_keep_separate_histories(make_tiny_dataset):
    # Without dropout: nn.Dropout draws from PyTorch's process-wide RNG, which two threads
    # training at once would share. Shuffling, augmentation and initialisation use each trainer's
    # own generators, so these two runs must each equal the same run done alone.
    runs = [
        (make_tiny_dataset(seed=1), cfg(seed=1, augment=True, epochs=3)),
        (make_tiny_dataset(seed=2), cfg(seed=2, augment=True, epochs=3, optimizer="momentum", lr=0.05)),
    ]
    alone = [train(LENET_SPEC, ds, config) for ds, config in runs]
    assert alone[0].history.step_losses != alone[1].history.step_losses

    trainers = [Trainer(LENET_SPEC, ds, config) for ds, config in runs]
    order: list[int] = []
    for i, t in enumerate(trainers):
        t.model.register_forward_pre_hook(lambda module, args, i=i: order.append(i) if module.training else None)
    jobs = [TrainingJob(t, f"job{i}") for i, t in enumerate(trainers)]
    # Hold the compute turn until both runs queue for it: from then on they take turns, step by step.
    with COMPUTE_TURNS:
        first_ticket = COMPUTE_TURNS._next_ticket
        for job in jobs:
            job.start()
        deadline = time.monotonic() + 60
        while COMPUTE_TURNS._next_ticket < first_ticket + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for job in jobs:
        job.join(timeout=120)

    # They really ran interleaved: turns are first come, first served, so the runs mostly alternate
    # (not strictly: a run may finish its bookkeeping and queue again before the other queues).
    steps_each = len(alone[0].history.step_losses)
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert sorted(order) == [0] * steps_each + [1] * steps_each
    assert switches >= steps_each // 2, order
    for job, ref in zip(jobs, alone):
        assert job.status == FINISHED, job.message
        history = job.history()
        assert history.step_losses == ref.history.step_losses
        assert epoch_figures(history) == epoch_figures(ref.history)
        assert_same_tensors(job.trainer.model.state_dict(), ref.model.state_dict())
    assert jobs[0].id != jobs[1].id


def test_a_diverging_job_ends_diverged_with_a_message(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg())
    with torch.no_grad():
        trainer.model.head.weight.fill_(math.nan)
    job = TrainingJob(trainer)
    job.start()
    job.join(timeout=60)
    assert job.status == DIVERGED
    assert "smaller learning rate" in job.message and job.message == trainer.diverged
    assert job.progress().status == DIVERGED and job.progress().message == job.message
    assert not job.can_resume
    with pytest.raises(RuntimeError, match="cannot continue"):
        job.start()


def test_a_failing_job_reports_the_error(tiny_dataset):
    trainer = Trainer(MLP_SPEC, tiny_dataset, cfg())

    def fail(module, args):
        raise ValueError("out of cheese")

    trainer.model.register_forward_pre_hook(fail)
    job = TrainingJob(trainer)
    job.start()
    job.join(timeout=60)
    assert job.status == FAILED
    assert job.message == "training failed: ValueError: out of cheese"
    assert np.isfinite(job.progress().fraction)


def test_an_unwatched_job_stops_itself_and_can_resume(tiny_dataset):
    watched = {"alive": True}
    trainer = Trainer(LENET_SPEC, tiny_dataset, cfg(epochs=10_000))  # far longer than the test
    job = TrainingJob(trainer, watched=lambda: watched["alive"], grace_seconds=0.2)
    job.start()
    time.sleep(0.3)
    assert job.running
    watched["alive"] = False  # the browser tab closed
    job.join(timeout=30)
    assert job.status == STOPPED and "session closed" in job.message
    assert 0 < trainer.step < trainer.total_steps
    watched["alive"] = True
    job.start()  # Resume still works, from where it stopped
    time.sleep(0.3)
    job.stop()
    assert job.status == STOPPED and job.message == "" and trainer.step > 0


def test_batches_of_one_image_are_refused_for_a_net_with_batch_norm(make_tiny_dataset):
    with pytest.raises(ConfigError, match="batch size 1 leaves batches of one image.*2 or more, or 0 for full batch"):
        Trainer(LENET_SPEC, make_tiny_dataset(), cfg(batch_size=1))
    one = make_tiny_dataset(n_train=1, num_classes=2)
    with pytest.raises(ConfigError, match="batch size 0 leaves batches of one image"):
        Trainer(LENET_SPEC.replace(num_classes=2), one, cfg(batch_size=0))
    train(MLP_SPEC, make_tiny_dataset(), cfg(batch_size=1, epochs=1))  # no batch norm: one image is a batch


def test_the_augmentation_is_chosen_by_name_and_checked(tiny_dataset):
    """``standard`` keeps each net's own augmentation; ``webcam`` is the one for photos unlike SIGNS."""
    from core.augment import WEBCAM, augment_for

    spec = ModelSpec("lenet", 3, in_channels=1, input_size=16)
    standard = Trainer(spec, tiny_dataset, TrainConfig(epochs=1, batch_size=16))
    webcam = Trainer(spec, tiny_dataset, TrainConfig(epochs=1, batch_size=16, augmentation="webcam"))
    assert standard.augment_config == augment_for("lenet") and standard.augment_config != WEBCAM
    assert webcam.augment_config == WEBCAM
    assert "augmented (webcam)" in webcam.config.describe() and "(webcam)" not in standard.config.describe()
    with pytest.raises(ConfigError, match="augmentation must be one of standard, webcam"):
        TrainConfig(augmentation="heavy").validate()
    # Checkpoints written before the setting existed read as the standard augmentation.
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "augmentation"}
    assert TrainConfig.from_dict(old).augmentation == "standard"
