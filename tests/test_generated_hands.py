"""Generated hands trained on beside real photos: the other way of showing three, the data-level
helper (size, class order, refusals), the trainer (more images, same record of the data, resume
bit-exact), the recipe that adds them for finger counts only, and the command line."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import core.synthetic as synthetic
import core.train
from core.checkpoint import load_checkpoint
from core.data import DatasetError, generated_hands, shows_finger_counts
from core.spec import ModelSpec
from core.synthetic import SYNTHETIC_CLASSES, generate_finger_set
from core.trainer import ConfigError, TrainConfig, Trainer, finetune_recipe, recipe
from tests.conftest import make_tiny_dataset
from tests.test_finetune import run, state
from tests.test_trainer import assert_same_tensors, epoch_figures

THREE_SIGNS = [True, True, True, False, False]  # thumb, index, middle
THREE_OTHER = [False, True, True, True, False]  # index, middle, ring


def finger_dataset(order: tuple[str, ...] = tuple(SYNTHETIC_CLASSES), size: int = 16):
    """A tiny data set whose classes are the finger counts, in ``order``."""
    return dataclasses.replace(make_tiny_dataset(n_train=36, n_test=12, size=size, num_classes=6),
                               key="fingers", title="tiny fingers", classes=order)


# --- the renderer ---------------------------------------------------------------------------------


def poses(monkeypatch, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The digits raised for each image of a generated train split, and its labels."""
    seen = []
    real = synthetic._sample_hands
    monkeypatch.setattr(synthetic, "_sample_hands", lambda rng, raised, size: seen.append(raised.copy()) or real(rng, raised, size))
    _, y, _, _ = generate_finger_set(n_train=240, n_test=0, size=16, **kwargs)
    return seen[0], y


def test_other_threes_show_index_middle_and_ring_and_leave_the_other_counts_alone(monkeypatch):
    raised, y = poses(monkeypatch, other_threes=0.5)
    threes = raised[y == 3].tolist()
    other = threes.count(THREE_OTHER)
    assert other + threes.count(THREE_SIGNS) == len(threes) == 40
    assert 10 <= other <= 30  # about half
    assert (raised.sum(axis=1) == y).all()  # every pose raises as many digits as its label
    assert (raised[y != 3] == synthetic._RAISED[y[y != 3]]).all()

    raised, y = poses(monkeypatch, other_threes=1.0)
    assert all(r == THREE_OTHER for r in raised[y == 3].tolist())
    raised, y = poses(monkeypatch)
    assert all(r == THREE_SIGNS for r in raised[y == 3].tolist())


def test_without_other_threes_the_built_in_set_is_unchanged():
    a = generate_finger_set(n_train=30, n_test=6, seed=2, size=16)
    b = generate_finger_set(n_train=30, n_test=6, seed=2, size=16, other_threes=0.0)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    c = generate_finger_set(n_train=30, n_test=6, seed=2, size=16, other_threes=0.5)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_of_threes_outside_0_to_1_is_refused(share):
    with pytest.raises(ValueError, match="other_threes is a share in 0–1"):
        generate_finger_set(n_train=6, n_test=0, other_threes=share)


# --- the data-level helper ------------------------------------------------------------------------


def test_generated_hands_follow_the_data_sets_size_and_class_order():
    order = ("5", "3", "1", "0", "2", "4")
    ds = finger_dataset(order, size=24)
    x, y = generated_hands(ds, 30, seed=4)
    assert x.shape == (30, 24, 24, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    # The same images as the renderer's, each labelled with its own count in the data set's order.
    raw_x, raw_y, _, _ = generate_finger_set(30, 0, seed=4, size=24, other_threes=0.5)
    assert np.array_equal(x, raw_x)
    assert [order[i] for i in y] == [SYNTHETIC_CLASSES[i] for i in raw_y]
    again_x, again_y = generated_hands(ds, 30, seed=4)
    assert np.array_equal(x, again_x) and np.array_equal(y, again_y)
    assert not np.array_equal(x, generated_hands(ds, 30, seed=5)[0])


def test_generated_hands_are_refused_for_other_classes():
    cats = make_tiny_dataset(num_classes=2)
    assert not shows_finger_counts(cats.classes) and shows_finger_counts(("2", "0", "1", "3", "5", "4"))
    assert not shows_finger_counts(("0", "1", "2", "3", "4")) and not shows_finger_counts(("0", "1", "2", "3", "4", "4"))
    with pytest.raises(DatasetError) as info:
        generated_hands(cats, 10, seed=0)
    assert "tiny patterns (tiny) has other classes (bar, column)" in str(info.value)
    assert "set generated hands to 0" in str(info.value)


# --- the trainer ----------------------------------------------------------------------------------

SPEC = ModelSpec("lenet", 6, in_channels=3, input_size=16)
CONFIG = TrainConfig(optimizer="adam", lr=0.01, schedule="onecycle", augment=True, batch_size=16, epochs=3, seed=3,
                     generated_hands=24)


def test_a_run_trains_on_its_photos_and_the_generated_hands_and_records_only_the_photos(tmp_path):
    ds = finger_dataset()
    trainer = Trainer(SPEC, ds, CONFIG)
    assert len(trainer.x_train) == 36 + 24 and len(trainer.batches) == 4  # 60 images in batches of 16
    x, y = generated_hands(ds, 24, seed=3)
    assert torch.equal(trainer.y_train[36:].cpu(), torch.from_numpy(y))
    run(trainer)
    ckpt = load_checkpoint(trainer.save(tmp_path / "run.pt"))
    assert ckpt.dataset["train"] == 36 and ckpt.training["generated_hands"] == 24
    assert "+ 24 generated hands" in TrainConfig.from_dict(ckpt.training).describe()


def test_a_run_with_generated_hands_resumes_bit_exactly_from_its_file(tmp_path):
    ds = finger_dataset()
    straight = run(Trainer(SPEC, ds, CONFIG))
    first = Trainer(SPEC, ds, CONFIG)
    run(first, lambda: first.epoch >= 1)
    path = first.save(tmp_path / "half.pt")
    resumed = Trainer.resume(load_checkpoint(path), ds)
    assert len(resumed.x_train) == 60
    run(resumed)
    assert resumed.step == straight.step == 12
    assert_same_tensors(state(resumed.model), state(straight.model), "model")
    assert epoch_figures(resumed.history) == epoch_figures(straight.history)


def test_generated_hands_for_a_data_set_of_other_classes_are_a_config_error():
    with pytest.raises(ConfigError, match="has other classes .* set generated hands to 0"):
        Trainer(SPEC.replace(num_classes=3), make_tiny_dataset(), CONFIG)


@pytest.mark.parametrize("value, message", [(-1, "generated hands must be in 0–20000; got -1"),
                                            (2.5, "generated hands must be a whole number"),
                                            (20_001, "generated hands must be in 0–20000")])
def test_absurd_generated_hand_counts_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        CONFIG.replace(generated_hands=value).validate(36)


def test_a_batch_may_be_as_large_as_photos_and_generated_hands_together():
    CONFIG.replace(batch_size=60).validate(36)
    with pytest.raises(ConfigError, match="batch size must be 1–60"):
        CONFIG.replace(batch_size=61).validate(36)


def test_the_lenet_recipe_adds_generated_hands_for_finger_counts_only():
    assert recipe("lenet", SYNTHETIC_CLASSES).generated_hands == 1200
    assert recipe("lenet", ("5", "4", "3", "2", "1", "0")).generated_hands == 1200
    assert recipe("lenet", ("non-cat", "cat")).generated_hands == 0
    assert recipe("lenet").generated_hands == 0  # the data set unknown: nothing that could be refused
    assert recipe("resnet50", SYNTHETIC_CLASSES).generated_hands == 0  # measured for the LeNet only
    # A fine-tune learns the user's few photos with 20 drawn hands per class beside them.
    assert finetune_recipe("lenet", 30, SYNTHETIC_CLASSES).generated_hands == 120
    assert finetune_recipe("lenet", 30, ("rock", "paper")).generated_hands == finetune_recipe("lenet", 30).generated_hands == 0
    assert finetune_recipe("lenet", 30, SYNTHETIC_CLASSES).batch_size == 0  # full batch: 30 photos and 120 hands
    assert "+ 1,200 generated hands" in recipe("lenet", SYNTHETIC_CLASSES).describe()


# --- the command line -----------------------------------------------------------------------------


def test_the_cli_adds_generated_hands_for_finger_counts_and_refuses_them_for_others(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHLAB_CHECKPOINT_DIR", str(tmp_path / "ck"))
    out = tmp_path / "ck" / "run.pt"
    assert core.train.main(["--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--generated-hands", "64",
                            "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["config"]["generated_hands"] == 64 and load_checkpoint(out).dataset["train"] == 1200

    folder = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (40 * i, 90, 200)).save(folder / cls / f"{i}.png")
    code = core.train.main(["--dataset", str(folder), "--model", "lenet", "--epochs", "1", "--generated-hands", "100"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "has other classes (cat, dog): set generated hands to 0" in err
    # Without the flag the LeNet recipe leaves them out for such a set, and trains.
    assert core.train.main(["--dataset", str(folder), "--model", "lenet", "--epochs", "1", "--batch-size", "2",
                            "--out", str(tmp_path / "pets.pt")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["config"]["generated_hands"] == 0
