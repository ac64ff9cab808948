"""Training and checkpoints on a CUDA GPU (skipped where there is none)."""
from __future__ import annotations

import math

import pytest
import torch

from core.checkpoint import export_full_model, load_checkpoint
from core.device import pick_device
from core.spec import ModelSpec
from core.trainer import TrainConfig, Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

SPEC = ModelSpec("lenet", 3, in_channels=1, input_size=16, dropout=0.2)
CONFIG = TrainConfig(optimizer="adam", lr=0.01, schedule="onecycle", augment=True, batch_size=16, epochs=3, device="cuda")


@pytest.fixture
def cuda_trainer(tiny_dataset) -> Trainer:
    trainer = Trainer(SPEC, tiny_dataset, CONFIG)
    for _ in trainer.run():
        pass
    return trainer


def test_auto_picks_cuda():
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("cuda").type == "cuda"


def test_a_short_run_on_cuda(cuda_trainer):
    t = cuda_trainer
    assert t.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in t.model.parameters())
    assert t.x_train.device.type == t.y_train.device.type == t.x_test.device.type == "cuda"
    assert t.finished and len(t.history.step_losses) == 9
    assert all(math.isfinite(v) for v in t.history.step_losses)
    assert all(math.isfinite(e.test_loss) and 0 <= e.test_acc <= 1 for e in t.history.epochs)
    assert t.final_metrics()["device"].startswith("cuda")


def test_a_cuda_checkpoint_loads_on_the_cpu(cuda_trainer, tmp_path, monkeypatch):
    ckpt = load_checkpoint(cuda_trainer.save(tmp_path / "cuda.pt"))
    assert all(p.device.type == "cpu" for p in ckpt.model.parameters())
    for key, value in cuda_trainer.model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[key], value.cpu()), key  # the very same weights
    # Full fp32 on the GPU too (no TF32 convolutions / matmuls), so the outputs can be compared.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    x = cuda_trainer.x_test
    cuda_trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x.cpu()), cuda_trainer.model(x).cpu(), rtol=1e-5, atol=1e-5)


def test_export_leaves_the_model_on_the_gpu(cuda_trainer):
    data = export_full_model(cuda_trainer.model)
    assert isinstance(data, bytes)
    assert all(p.device.type == "cuda" for p in cuda_trainer.model.parameters())


# --- CUDA graphs (--cuda-graph) -------------------------------------------------------------------

MLP = ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(32, 16), batchnorm=False)


def _run(trainer: Trainer, until=None) -> Trainer:
    for _ in trainer.run(until or (lambda: False)):
        pass
    return trainer


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_a_captured_step_trains_as_the_eager_one(tiny_dataset, monkeypatch, optimizer):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    config = CONFIG.replace(optimizer=optimizer, lr=0.01, precision="fp32", augment=False, batch_size=20)
    captured = _run(Trainer(MLP, tiny_dataset, config.replace(cuda_graph=True)))
    eager = _run(Trainer(MLP, tiny_dataset, config, pad_batches=True))  # the same padded batches
    assert captured.engine.capture and captured.engine.capture_note.startswith("captured"), captured.engine.capture_note
    assert captured.engine.capture_seconds > 0
    torch.testing.assert_close(torch.tensor(captured.history.step_losses), torch.tensor(eager.history.step_losses),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(captured.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_default_lenet_recipe_trains_captured_with_batch_norm_dropout_and_augmentation(tiny_dataset):
    trainer = _run(Trainer(SPEC, tiny_dataset, CONFIG.replace(cuda_graph=True, epochs=6)))
    assert trainer.engine.capture, trainer.engine.capture_note
    losses = [e.train_loss for e in trainer.history.epochs]
    assert all(math.isfinite(v) for v in trainer.history.step_losses) and losses[-1] < 0.8 * losses[0]
    assert all(e.images_per_second > 0 for e in trainer.history.epochs)


def test_a_captured_run_stopped_saved_and_resumed_ends_as_one_that_never_stopped(tiny_dataset, tmp_path):
    config = CONFIG.replace(cuda_graph=True, epochs=4)
    straight = _run(Trainer(SPEC, tiny_dataset, config))
    half = Trainer(SPEC, tiny_dataset, config)
    _run(half, lambda: half.epoch >= 2)
    resumed = _run(Trainer.resume(load_checkpoint(half.save(tmp_path / "half.pt")), tiny_dataset))
    assert resumed.engine.capture
    assert resumed.history.step_losses == straight.history.step_losses
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
