"""Fine-tuning from a checkpoint, freezing, and resuming a run from its file.

A LeNet-5 (16×16, gray, batch norm) trained for two epochs on the tiny in-memory set of
``conftest.py`` is the starting checkpoint. The references are the checkpoint's own tensors (a
fine-tune starts from them; a frozen layer ends with them) and an uninterrupted run (a run resumed
from its file must end bit-identical to it).
"""
from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
from torch import nn

from core.checkpoint import CheckpointError, load_checkpoint
from core.jobs import FINISHED, TrainingJob
from core.nets import FrozenBatchNorm1d, FrozenBatchNorm2d, classifier, feature_head_split
from core.spec import ModelSpec
from core.trainer import ConfigError, StepEvent, TrainConfig, Trainer, finetune_recipe, lr_at, recipe
from tests.test_trainer import assert_same_tensors, epoch_figures

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SPEC = ModelSpec("lenet", 3, in_channels=1, input_size=16)
CONFIG = TrainConfig(optimizer="adam", lr=0.01, schedule="constant", augment=False, batch_size=16, epochs=2,
                     seed=0, device="cpu")


def run(trainer: Trainer, should_stop=lambda: False) -> Trainer:
    for _ in trainer.run(should_stop):
        pass
    return trainer


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def resave(path, **changes) -> bytes:
    """The checkpoint's bytes with top-level keys changed (None deletes a key)."""
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The starting checkpoint: LeNet-5 trained 2 epochs on the tiny set (bar, column, diagonal)."""
    from tests.conftest import make_tiny_dataset

    path = tmp_path_factory.mktemp("source") / "base.pt"
    run(Trainer(SPEC, make_tiny_dataset(), CONFIG)).save(path)
    return path


@pytest.fixture
def ckpt(source):
    return load_checkpoint(source)


# --- fine-tuning: the head ---------------------------------------------------------------------


def test_same_classes_keep_the_head_and_start_from_the_checkpoint(ckpt, tiny_dataset):
    trainer = Trainer(None, tiny_dataset, CONFIG, init_from=ckpt)
    assert not trainer.new_head and trainer.spec == ckpt.spec
    assert trainer.head_note == "keeps the checkpoint's head: the same 3 classes (bar, column, diagonal)"
    assert_same_tensors(state(trainer.model), state(ckpt.model), "start")  # weights and BN statistics
    assert trainer.init_from == {"file": "base.pt", "classes": ["bar", "column", "diagonal"],
                                 "dataset": tiny_dataset.title, "dataset_key": "tiny", "net": ckpt.spec.describe()}
    run(trainer)
    assert not torch.equal(trainer.model.head.weight, ckpt.model.head.weight)  # and it did train


def test_the_data_takes_the_checkpoints_class_order_by_name(ckpt, tiny_dataset, tmp_path):
    shuffled = tiny_dataset.with_class_order(("diagonal", "bar", "column"))
    assert shuffled.classes != ckpt.classes
    trainer = Trainer(None, shuffled, CONFIG, init_from=ckpt)
    assert not trainer.new_head
    assert trainer.dataset.classes == ckpt.classes
    assert torch.equal(trainer.y_test.cpu(), torch.tensor(tiny_dataset.y_test))  # labels renumbered back
    # The kept head still means what it meant: the same predictions as the checkpoint on the same images.
    start = trainer.evaluate_test()
    ref = Trainer(SPEC, tiny_dataset, CONFIG)
    ref.model.load_state_dict(ckpt.model.state_dict())
    assert start.accuracy == ref.evaluate_test().accuracy
    run(trainer)
    assert load_checkpoint(trainer.save(tmp_path / "ft.pt")).classes == ckpt.classes


def test_new_classes_get_a_new_head_and_keep_the_features(ckpt, make_tiny_dataset):
    four = make_tiny_dataset(num_classes=4, seed=5)
    trainer = Trainer(None, four, CONFIG, init_from=ckpt)
    assert trainer.new_head and trainer.spec == ckpt.spec.replace(num_classes=4)
    assert trainer.head_note == (
        "new head for 4 classes (bar, column, diagonal, ring); the checkpoint had 3 (bar, column, diagonal)"
    )
    got, ref = state(trainer.model), state(ckpt.model)
    assert list(got) == list(ref)  # the same tensors in the same order
    for key in got:
        if key.startswith("head."):
            assert got[key].shape[0] == 4
        else:
            assert torch.equal(got[key], ref[key]), key
    assert torch.all(trainer.model.head.bias == 0)
    assert float(trainer.model.head.weight.detach().std()) == pytest.approx(math.sqrt(2 / 84), rel=0.25)  # Kaiming, fan-in 84
    run(trainer)
    assert trainer.history.epochs[-1].train_acc > 0


def test_same_count_other_names_is_a_new_head_too(ckpt, tiny_dataset):
    rps = dataclasses.replace(tiny_dataset, classes=("rock", "paper", "scissors"))
    a = Trainer(None, rps, CONFIG, init_from=ckpt)
    b = Trainer(None, rps, CONFIG, init_from=ckpt)
    assert a.new_head
    assert a.head_note == "new head for 3 classes (rock, paper, scissors); the checkpoint had 3 (bar, column, diagonal)"
    assert not torch.equal(a.model.head.weight, ckpt.model.head.weight)
    assert torch.equal(a.model.head.weight, b.model.head.weight)  # seeded: the same new head every time
    c = Trainer(None, rps, CONFIG.replace(seed=1), init_from=ckpt)
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_fine_tuning_works_across_construction_styles(ckpt, tiny_dataset):
    seq = Trainer(None, tiny_dataset, CONFIG, "sequential", init_from=ckpt)
    x = seq.x_test
    seq.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(seq.model(x), ckpt.model.eval()(x))
    four = Trainer(None, dataclasses.replace(tiny_dataset, classes=("a", "b", "c")), CONFIG, "sequential", init_from=ckpt)
    assert classifier(four.model) is four.model[-1] and four.model[-1].out_features == 3
    run(four)


def test_the_checkpoints_net_wins_and_a_conflicting_spec_is_refused(ckpt, tiny_dataset):
    Trainer(SPEC.replace(num_classes=3), tiny_dataset, CONFIG, init_from=ckpt)  # the same net: fine
    for changes, expected in (({"in_channels": 3}, "input channels 1 vs 3"), ({"batchnorm": False}, "batch norm True vs False"),
                              ({"dropout": 0.5}, "dropout 0.0 vs 0.5"), ({"input_size": 32}, "input size 16 vs 32")):
        with pytest.raises(ConfigError) as info:
            Trainer(SPEC.replace(**changes), tiny_dataset, CONFIG, init_from=ckpt)
        message = str(info.value)
        assert message.startswith("base.pt is a LeNet-5, gray, 16px, BN net") and expected in message
    with pytest.raises(ConfigError, match="architecture LeNet-5 vs MLP"):
        Trainer(ModelSpec("mlp", 3, in_channels=1, input_size=16), tiny_dataset, CONFIG, init_from=ckpt)
    with pytest.raises(ConfigError, match="give its spec, or a checkpoint"):
        Trainer(None, tiny_dataset, CONFIG)


def test_the_finetune_recipe_is_a_valid_config_for_any_number_of_photos():
    for arch in ("mlp", "lenet", "resnet50"):
        config = finetune_recipe(arch)
        config.validate(2)  # one photo of two classes still fits its batch (the whole set)
        assert config != recipe(arch) and config.batch_size == 0
        assert finetune_recipe(arch, 64).batch_size == 0 and finetune_recipe(arch, 65).batch_size == 64
        finetune_recipe(arch, 65).validate(65)
    with pytest.raises(ConfigError, match="no recipe"):
        finetune_recipe("vgg")


def test_the_finetune_recipe_mirrors_the_few_photos_for_60_epochs():
    # A user shows a left or a right hand, and a selfie view is mirrored: measured 3.5–6 points
    # more on webcam-hands with 5–10 photos per class than 30 unmirrored epochs (bench/bench_finetune.py).
    from core.augment import augment_for

    for arch in ("mlp", "lenet", "resnet50"):
        config = finetune_recipe(arch)
        assert config.augment and config.augmentation == "mirrored" and config.epochs == 60
        assert augment_for(arch, config.augmentation).mirror


# --- freezing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["module", "sequential"])
def test_frozen_features_stay_bit_identical_and_the_head_trains(ckpt, make_tiny_dataset, style):
    data = make_tiny_dataset(num_classes=4, seed=3)  # a new head, augmentation and weight decay on
    config = CONFIG.replace(augment=True, epochs=3, weight_decay=0.01)
    trainer = Trainer(None, data, config, style, init_from=ckpt, freeze="features")
    features, head = feature_head_split(trainer.model)
    owner = {id(t): m for m in trainer.model.modules() for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]}
    tensors = trainer.model.state_dict(keep_vars=True)
    frozen_keys = {k for k, t in tensors.items() if any(owner[id(t)] is m for m in features)}
    head_keys = {k for k, t in tensors.items() if any(owner[id(t)] is m for m in head)}
    assert frozen_keys and head_keys and frozen_keys | head_keys == set(tensors)
    assert [type(m).__name__ for m in features] == ["Conv2d", "FrozenBatchNorm2d", "Conv2d", "FrozenBatchNorm2d"]
    head_params = sum(p.numel() for m in head for p in m.parameters())
    assert trainer.trainable_parameters == head_params
    assert sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"]) == head_params
    start = state(trainer.model)
    run(trainer)
    end = state(trainer.model)
    for key in frozen_keys:  # every frozen weight and bias, and every batch-norm buffer (running stats, count)
        assert torch.equal(start[key], end[key]), key
    for key in head_keys:  # the head's weights moved (and its batch norms' statistics with them)
        assert not torch.equal(start[key], end[key]), key
    norms = [m for m in features if isinstance(m, nn.BatchNorm2d)]
    trainer.model.train()  # as run() and evaluate() do
    assert trainer.model.training and all(not m.training for m in norms)
    assert all(m.training for m in head)
    assert f"{head_params:,} of {trainer.parameters:,} parameters" in trainer.describe_freeze()


def test_without_freezing_the_features_change(ckpt, tiny_dataset):
    trainer = run(Trainer(None, tiny_dataset, CONFIG, init_from=ckpt))
    end = state(trainer.model)
    assert not torch.equal(end["conv1.weight"], ckpt.model.conv1.weight)
    assert not torch.equal(end["bn1.running_mean"], ckpt.model.bn1.running_mean)
    assert trainer.describe_freeze().startswith("all layers train")


def test_freezing_needs_a_checkpoint_and_a_known_setting(ckpt, tiny_dataset):
    with pytest.raises(ConfigError, match="needs a checkpoint to start from"):
        Trainer(SPEC, tiny_dataset, CONFIG, freeze="features")
    with pytest.raises(ConfigError, match="freeze must be one of none, features; got 'all'"):
        Trainer(None, tiny_dataset, CONFIG, init_from=ckpt, freeze="all")


# --- what a checkpoint records ------------------------------------------------------------------


def test_a_fine_tuned_checkpoint_says_where_it_came_from(ckpt, make_tiny_dataset, tmp_path):
    data = make_tiny_dataset(num_classes=4, size=24)
    trainer = run(Trainer(None, data, CONFIG, init_from=ckpt, freeze="features"))
    saved = load_checkpoint(trainer.save(tmp_path / "ft.pt"))
    assert saved.origin == {
        "init_from": {"file": "base.pt", "classes": ["bar", "column", "diagonal"], "dataset": "tiny patterns (tiny)",
                      "dataset_key": "tiny", "net": ckpt.spec.describe()},
        "freeze": "features", "new_head": True, "resumed_from": None,
    }
    assert saved.image_size == 24 and saved.preprocessing["image_size"] == 24 and saved.preprocessing["size"] == 16
    assert saved.dataset["image_size"] == 24 and saved.dataset["kind"] == "synthetic"
    assert saved.source == "ft.pt"
    # The saved net has the new head and plain batch norms (freezing is a training matter).
    assert saved.model.head.out_features == 4
    assert not any(isinstance(m, (FrozenBatchNorm1d, FrozenBatchNorm2d)) for m in saved.model.modules())


def test_a_checkpoint_written_before_these_keys_still_loads(source, tiny_dataset):
    payload = torch.load(source, weights_only=True)
    del payload["preprocessing"]["image_size"]
    for key in ("origin", "resume"):
        payload.pop(key)
    buf = io.BytesIO()
    torch.save(payload, buf)
    old = load_checkpoint(buf.getvalue(), name="old.pt")
    assert old.image_size is None and old.train_image_size == 16 and old.preprocessing["image_size"] == 16
    assert old.origin == {} and old.resume is None and old.source == "old.pt"
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(old, tiny_dataset)
    assert "old.pt: holds no training state to resume" in str(info.value) and "--init-from" in str(info.value)


# --- resuming from the file ---------------------------------------------------------------------


RESUME_SPEC = SPEC.replace(dropout=0.3)
RESUME_CONFIG = CONFIG.replace(augment=True, batch_size=10, epochs=4, schedule="onecycle", seed=3)


@pytest.mark.parametrize("stop_after", [1, 3])
def test_a_run_resumed_from_its_file_ends_bit_identical_to_an_uninterrupted_run(tiny_dataset, tmp_path, stop_after):
    # Augmentation and dropout on, 48 images in batches of 10: the shuffle, augmentation and dropout
    # streams, the optimizer state and the schedule position must all come back from the file.
    straight = run(Trainer(RESUME_SPEC, tiny_dataset, RESUME_CONFIG))

    first = Trainer(RESUME_SPEC, tiny_dataset, RESUME_CONFIG)
    run(first, lambda: first.epoch >= stop_after)
    assert first.epoch == stop_after and first.at_epoch_boundary and not first.finished
    path = first.save(tmp_path / "half.pt")
    del first
    torch.manual_seed(99)  # whatever the process did meanwhile
    torch.rand(10)

    resumed = Trainer.resume(load_checkpoint(path), tiny_dataset)
    assert (resumed.epoch, resumed.step, resumed.resumed_from) == (stop_after, stop_after * 5, "half.pt")
    run(resumed)
    assert resumed.finished and resumed.step == straight.step == 20
    assert_same_tensors(state(resumed.model), state(straight.model), "model")
    assert_same_tensors(resumed.optimizer.state_dict(), straight.optimizer.state_dict(), "optimizer")
    assert resumed.history.step_losses == straight.history.step_losses
    assert epoch_figures(resumed.history) == epoch_figures(straight.history)


def test_a_frozen_fine_tune_resumes_bit_exactly_and_stays_frozen(ckpt, make_tiny_dataset, tmp_path):
    data = make_tiny_dataset(num_classes=4, seed=2)
    config = RESUME_CONFIG.replace(epochs=3)
    straight = run(Trainer(None, data, config, init_from=ckpt, freeze="features"))
    first = Trainer(None, data, config, init_from=ckpt, freeze="features")
    run(first, lambda: first.epoch >= 1)
    resumed = Trainer.resume(load_checkpoint(first.save(tmp_path / "ft.pt")), data)
    assert resumed.freeze == "features" and resumed.new_head and resumed.init_from["file"] == "base.pt"
    assert resumed.trainable_parameters == straight.trainable_parameters
    run(resumed)
    assert_same_tensors(state(resumed.model), state(straight.model), "model")
    assert_same_tensors(state(resumed.model)["conv1.weight"], state(ckpt.model)["conv1.weight"])
    saved = load_checkpoint(resumed.save(tmp_path / "done.pt"))
    assert saved.origin["resumed_from"] == "ft.pt" and saved.origin["freeze"] == "features" and saved.origin["new_head"]


def test_a_resumed_run_is_reordered_to_its_own_class_order(tiny_dataset, tmp_path):
    first = Trainer(RESUME_SPEC, tiny_dataset, RESUME_CONFIG)
    run(first, lambda: first.epoch >= 2)
    path = first.save(tmp_path / "half.pt")
    shuffled = tiny_dataset.with_class_order(("column", "diagonal", "bar"))
    resumed = run(Trainer.resume(load_checkpoint(path), shuffled))
    straight = run(Trainer(RESUME_SPEC, tiny_dataset, RESUME_CONFIG))
    assert resumed.dataset.classes == tiny_dataset.classes
    assert_same_tensors(state(resumed.model), state(straight.model))


def test_a_job_runs_a_resumed_and_a_fine_tuning_trainer(ckpt, tiny_dataset, tmp_path):
    first = Trainer(RESUME_SPEC, tiny_dataset, RESUME_CONFIG)
    run(first, lambda: first.epoch >= 2)
    resumed = Trainer.resume(load_checkpoint(first.save(tmp_path / "half.pt")), tiny_dataset)
    finetune = Trainer(None, tiny_dataset, CONFIG, init_from=ckpt, freeze="features")
    for trainer in (resumed, finetune):
        job = TrainingJob(trainer)
        assert job.can_resume and 0 <= job.progress().fraction < 1
        job.start()
        job.join(timeout=120)
        assert job.status == FINISHED, job.message
        assert job.progress().fraction == 1.0 and job.progress().epoch == trainer.config.epochs
    assert len(resumed.history.epochs) == 4 and len(resumed.history.step_losses) == 20


def stopped_at(dataset, tmp_path, steps: int, name: str = "run.pt", config: TrainConfig = RESUME_CONFIG):
    trainer = Trainer(RESUME_SPEC, dataset, config)
    run(trainer, lambda: trainer.step >= steps)
    return load_checkpoint(trainer.save(tmp_path / name))


def test_a_checkpoint_saved_mid_epoch_is_refused(tiny_dataset, tmp_path):
    ckpt = stopped_at(tiny_dataset, tmp_path, 7, "mid.pt")
    assert ckpt.resume == {"epoch_boundary": False, "step": 7, "epoch": 1, "schedule_start": 0, "device": "cpu",
                           "world_size": 1}
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(ckpt, tiny_dataset)
    message = str(info.value)
    assert message.startswith("mid.pt: saved in the middle of epoch 2 (after step 7)") and "--init-from" in message


def test_a_finished_run_is_refused_unless_extended(tiny_dataset, tmp_path):
    ckpt = stopped_at(tiny_dataset, tmp_path, 10**6, "done.pt")
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(ckpt, tiny_dataset)
    message = str(info.value)
    assert message.startswith("done.pt: this run already finished its 4 epochs")
    assert "--init-from" in message and "--epochs more than 4" in message
    with pytest.raises(ConfigError, match="needs more than 4; got 3"):
        Trainer.resume(ckpt, tiny_dataset, epochs=3)
    unfinished = stopped_at(tiny_dataset, tmp_path, 10, "half.pt")
    with pytest.raises(CheckpointError, match="half.pt: this run has 2 of its 4 epochs left"):
        Trainer.resume(unfinished, tiny_dataset, epochs=6)
    Trainer.resume(unfinished, tiny_dataset, epochs=4)  # its own count is no change


def test_extending_a_constant_schedule_equals_the_longer_run(tiny_dataset, tmp_path):
    config = RESUME_CONFIG.replace(schedule="constant", epochs=2)
    done = stopped_at(tiny_dataset, tmp_path, 10**6, "two.pt", config)
    extended = run(Trainer.resume(done, tiny_dataset, epochs=4))
    longer = run(Trainer(RESUME_SPEC, tiny_dataset, config.replace(epochs=4)))
    assert_same_tensors(state(extended.model), state(longer.model))
    assert extended.history.step_losses == longer.history.step_losses


def test_extending_a_onecycle_run_runs_the_schedule_again_over_the_extra_epochs(tiny_dataset, tmp_path):
    done = stopped_at(tiny_dataset, tmp_path, 10**6, "four.pt")
    extended = Trainer.resume(done, tiny_dataset, epochs=6)
    lrs = [e.lr for e in extended.run() if isinstance(e, StepEvent)]
    extra = RESUME_CONFIG.replace(epochs=2)
    assert lrs == [lr_at(extra, s, 10) for s in range(10)]  # warm-up from lr/25 again, then decay
    assert lrs[0] == pytest.approx(RESUME_CONFIG.lr / 25)


def test_other_data_is_refused(tiny_dataset, make_tiny_dataset, tmp_path):
    ckpt = stopped_at(tiny_dataset, tmp_path, 10, "half.pt")
    cases = [
        (make_tiny_dataset(num_classes=4), "the run trained on 3 classes (bar, column, diagonal), but tiny patterns (tiny) has 4"),
        (dataclasses.replace(tiny_dataset, classes=("a", "b", "c")), "has 3 (a, b, c)"),
        (make_tiny_dataset(n_train=50), "other data — train 48 vs 50"),
        (make_tiny_dataset(size=24), "image_size 16 vs 24"),
        (make_tiny_dataset(seed=8), "the same classes and sizes but not the same images"),
    ]
    for data, expected in cases:
        with pytest.raises(CheckpointError) as info:
            Trainer.resume(ckpt, data)
        assert expected in str(info.value) and "--init-from" in str(info.value), str(info.value)


def test_a_run_from_another_kind_of_device_is_refused(tiny_dataset, tmp_path):
    ckpt = stopped_at(tiny_dataset, tmp_path, 10, "gpu.pt")
    ckpt.resume["device"] = "cuda"
    with pytest.raises(CheckpointError, match="gpu.pt: saved on cuda.*--device cuda"):
        Trainer.resume(ckpt, tiny_dataset)


def test_a_damaged_training_state_is_refused(tiny_dataset, tmp_path):
    good = stopped_at(tiny_dataset, tmp_path, 10, "half.pt")
    path = tmp_path / "half.pt"
    broken = dict(good.resume)
    broken["shuffle_rng"] = torch.zeros(3, dtype=torch.uint8)
    with pytest.raises(CheckpointError, match="bad.pt: damaged training state"):
        Trainer.resume(load_checkpoint(resave(path, resume=broken), name="bad.pt"), tiny_dataset)
    with pytest.raises(CheckpointError, match="damaged training state"):
        Trainer.resume(load_checkpoint(resave(path, resume={"step": 1}), name="bad.pt"), tiny_dataset)
