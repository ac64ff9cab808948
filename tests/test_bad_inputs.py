"""Every file of the bad-input corpus (tests/bad_input_corpus.py) and a corpus of bad settings, through core.

Images go through ``preprocess_image``, HDF5 uploads through ``install_dataset_file`` under their
canonical names, checkpoints through ``load_checkpoint`` + ``check_fits``; training settings through
``TrainConfig.validate`` and the trainer, model settings through ``ModelSpec``. Each case must be
accepted or refused exactly as the corpus says, a refusal must be a ``ValueError`` subclass whose
message names the file (or the setting and its valid range), and nothing in a file may ever run.
"""
from __future__ import annotations

import math
import pickle
import tempfile
from pathlib import Path

import pytest
import torch

import core.data
from core.checkpoint import CheckpointError, check_fits, load_checkpoint
from core.data import DatasetError, install_dataset_file, load_dataset, load_h5_split
from core.jobs import DIVERGED, TrainingJob
from core.preprocess import ImageError, preprocess_image
from core.spec import ModelSpec, SpecError
from core.trainer import ConfigError, TrainConfig, Trainer, TrainingDiverged
from tests.bad_input_corpus import (
    CkptCase,
    H5Case,
    checkpoint_cases,
    chosen_spec,
    hdf5_cases,
    image_cases,
    malicious_checkpoint,
    malicious_pickle,
)

# The corpora are built once at collection for the test ids; the HDF5 bytes need no directory
# afterwards. Checkpoint cases are rebuilt per test session in a pytest tmp dir (their markers
# must live somewhere the test can look).
with tempfile.TemporaryDirectory() as _d:
    H5_CASES = hdf5_cases(Path(_d))
    CKPT_NAMES = [c.name for c in checkpoint_cases(Path(_d))]
IMAGE_CASES = image_cases()


@pytest.fixture(scope="module")
def ckpt_corpus(tmp_path_factory) -> dict[str, CkptCase]:
    return {c.name: c for c in checkpoint_cases(tmp_path_factory.mktemp("ckpt"))}


def test_the_corpus_is_big_enough_and_names_are_unique(ckpt_corpus):
    sizes = {"image": len(IMAGE_CASES), "hdf5": len(H5_CASES), "checkpoint": len(ckpt_corpus)}
    assert sum(sizes.values()) >= 30, sizes
    for cases in (IMAGE_CASES, H5_CASES, list(ckpt_corpus.values())):
        names = [c.name for c in cases]
        assert len(names) == len(set(names))
        assert any(c.ok for c in cases) and any(not c.ok for c in cases)


# --- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_image_case(case):
    if case.ok:
        x, seen = preprocess_image(case.data, size=64, channels=1, name=case.filename)
        assert x.shape == (1, 1, 64, 64) and x.dtype == torch.float32
        assert torch.isfinite(x).all() and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert seen.shape == (64, 64, 3)
    else:
        with pytest.raises(ImageError) as info:
            preprocess_image(case.data, size=64, channels=1, name=case.filename)
        assert isinstance(info.value, ValueError)
        assert case.filename in str(info.value)
        assert "Traceback" not in str(info.value)


# --- HDF5 data files ------------------------------------------------------------------------------


def _install(case: H5Case, data_dir: Path, monkeypatch) -> Path:
    if case.upload_limit is not None:
        monkeypatch.setattr(core.data, "MAX_UPLOAD_BYTES", case.upload_limit)
    return install_dataset_file(case.filename, case.data, data_dir)


@pytest.mark.parametrize("case", H5_CASES, ids=lambda c: c.name)
def test_hdf5_case(case, tmp_path, monkeypatch):
    if case.ok:
        target = _install(case, tmp_path, monkeypatch)
        assert target == tmp_path / "signs" / case.filename
        assert target.read_bytes() == case.data
        x, y, classes = load_h5_split(target, case.split)
        assert len(x) == len(y) > 0 and len(classes) >= 2
    else:
        with pytest.raises(DatasetError) as info:
            _install(case, tmp_path, monkeypatch)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert message.startswith(case.filename), message  # names the file, by its own name
        assert ".tmp" not in message and str(tmp_path) not in message  # not the temp file's path
        assert not (tmp_path / "signs" / case.filename).exists()
    leftovers = [p.name for p in (tmp_path / "signs").iterdir()] if (tmp_path / "signs").exists() else []
    assert leftovers == ([case.filename] if case.ok else []), "no temp file may stay behind"


def test_size_guard_refuses_before_writing(tmp_path, monkeypatch):
    big = next(c for c in H5_CASES if c.upload_limit)
    assert len(big.data) > big.upload_limit
    monkeypatch.setattr(core.data, "MAX_UPLOAD_BYTES", big.upload_limit)
    with pytest.raises(DatasetError, match="larger than the 1 MB limit"):
        install_dataset_file(big.filename, big.data, tmp_path)
    assert not (tmp_path / "signs").exists() or not any((tmp_path / "signs").iterdir())
    # The same file passes under the real (200 MB) limit.
    monkeypatch.setattr(core.data, "MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
    assert install_dataset_file(big.filename, big.data, tmp_path).read_bytes() == big.data


def test_a_bad_upload_never_replaces_a_good_file(tmp_path, monkeypatch):
    good = next(c for c in H5_CASES if c.name == "valid_small_set")
    target = install_dataset_file(good.filename, good.data, tmp_path)
    assert target.stat().st_mode & 0o777 == 0o644  # not the private temp file's 0600
    for case in H5_CASES:
        if case.ok or case.filename != good.filename:
            continue
        with pytest.raises(DatasetError):
            _install(case, tmp_path, monkeypatch)
        monkeypatch.setattr(core.data, "MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
        assert target.read_bytes() == good.data, f"{case.name} changed the installed file"
    assert [p.name for p in target.parent.iterdir()] == [good.filename]


def test_installed_train_and_test_files_make_a_data_set(tmp_path, monkeypatch):
    for name in ("valid_small_set", "valid_test_split"):
        _install(next(c for c in H5_CASES if c.name == name), tmp_path, monkeypatch)
    ds = load_dataset("signs", tmp_path)
    assert ds.num_classes == 6 and len(ds.x_train) == 12 and len(ds.x_test) == 6


@pytest.mark.parametrize("name", ["evil.h5", "train_signs.h5.exe", "", "train_cats.h5"])
def test_unknown_file_names_are_refused(name, tmp_path):
    good = H5_CASES[0]
    with pytest.raises(DatasetError, match="not a file TorchLab knows"):
        install_dataset_file(name, good.data, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["../../train_signs.h5", "/etc/train_signs.h5", "C:\\Users\\x\\train_signs.h5"])
def test_a_path_in_the_name_cannot_leave_the_data_dir(name, tmp_path):
    good = H5_CASES[0]
    data_dir = tmp_path / "data"
    target = install_dataset_file(name, good.data, data_dir)
    assert target == data_dir / "signs" / "train_signs.h5"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [target]


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CKPT_NAMES)
def test_checkpoint_case(name, ckpt_corpus, tmp_path):
    case = ckpt_corpus[name]
    spec = chosen_spec()
    # Both ways the app and the CLI load: the uploaded bytes, and a file on disk.
    path = tmp_path / case.filename
    path.write_bytes(case.data)
    for source in (case.data, path):
        if case.ok:
            ckpt = load_checkpoint(source, name=case.filename)
            assert ckpt.classes == case.classes
            assert not ckpt.model.training
            if case.fits:
                check_fits(ckpt, spec)
            else:
                with pytest.raises(CheckpointError, match="does not fit the chosen net"):
                    check_fits(ckpt, spec)
        else:
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(source, name=case.filename)
            assert isinstance(info.value, ValueError)
            assert case.filename in str(info.value)
            assert "Traceback" not in str(info.value)
        if case.marker is not None:
            assert not Path(case.marker).exists(), f"{case.name}: the pickled code ran"


def test_malicious_files_say_they_were_refused_for_code(ckpt_corpus):
    for name in ("malicious_pickle", "malicious_zip_checkpoint", "whole_pickled_module"):
        case = ckpt_corpus[name]
        with pytest.raises(CheckpointError, match="refused — the file contains pickled Python objects or code"):
            load_checkpoint(case.data, name=case.filename)
    assert not any(Path(c.marker).exists() for c in ckpt_corpus.values() if c.marker)


def test_the_malicious_payloads_are_live(tmp_path):
    """The refusal tests mean something: loaded unsafely, each payload does create its marker.

    (Our own payloads, writing a file in a pytest tmp dir: safe to run here.)
    """
    raw_marker, zip_marker = tmp_path / "raw", tmp_path / "zip"
    pickle.loads(malicious_pickle(raw_marker))
    assert raw_marker.exists()
    import io

    torch.load(io.BytesIO(malicious_checkpoint(zip_marker)), weights_only=False)
    assert zip_marker.exists()


# --- training settings ----------------------------------------------------------------------------

N_TRAIN = 1200  # the synthetic set's size


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"lr": -0.1}, "learning rate must be in 1e-07–10"),
        ({"lr": 0.0}, "learning rate must be in 1e-07–10"),
        ({"lr": 1e6}, "learning rate must be in 1e-07–10"),
        ({"lr": math.nan}, "learning rate must be in 1e-07–10"),
        ({"lr": math.inf}, "learning rate must be in 1e-07–10"),
        ({"momentum": math.nan}, "momentum must be in 0–0.999"),
        ({"momentum": 1.0}, "momentum must be in 0–0.999"),
        ({"alpha": 2.0}, "RMSprop alpha must be in 0–0.9999"),
        ({"betas": (0.9, math.nan)}, "Adam beta2 must be in 0–0.99999"),
        ({"betas": (-0.5, 0.999)}, "Adam beta1 must be in 0–0.9999"),
        ({"weight_decay": -0.01}, "weight decay must be in 0–1"),
        ({"weight_decay": 100.0}, "weight decay must be in 0–1"),
        ({"epochs": 0}, "epochs must be in 1–10000"),
        ({"epochs": -3}, "epochs must be in 1–10000"),
        ({"epochs": 10**9}, "epochs must be in 1–10000"),
        ({"epochs": 2.5}, "epochs must be a whole number in 1–10000"),
        ({"seed": -1}, "seed must be in 0–2.14748e+09"),
        ({"batch_size": N_TRAIN + 1}, f"batch size must be 1–{N_TRAIN}"),
        ({"batch_size": -64}, f"batch size must be 1–{N_TRAIN}"),
        ({"batch_size": math.nan}, f"batch size must be 1–{N_TRAIN}"),
        ({"batch_size": 2.5}, f"batch size must be 1–{N_TRAIN}"),
        ({"batch_size": "64"}, f"batch size must be 1–{N_TRAIN}"),
        ({"optimizer": "nadam"}, "optimizer must be one of sgd, momentum, rmsprop, adam"),
        ({"schedule": "exponential"}, "schedule must be one of constant, cosine, onecycle"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_bad_training_settings_name_the_valid_range(changes, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**changes).validate(N_TRAIN)
    assert isinstance(info.value, ValueError)
    assert expected in str(info.value)


def test_valid_edges_are_accepted():
    TrainConfig(lr=10.0, batch_size=N_TRAIN, epochs=1).validate(N_TRAIN)
    TrainConfig(lr=1e-7, batch_size=0, epochs=10_000, seed=2**31 - 1).validate(N_TRAIN)


def test_a_batch_larger_than_the_set_is_refused_by_the_trainer(make_tiny_dataset):
    ds = make_tiny_dataset()
    with pytest.raises(ConfigError, match=f"batch size must be 1–{len(ds.x_train)}"):
        Trainer(ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(8,)), ds, TrainConfig(batch_size=len(ds.x_train) + 1))


DIVERGING = TrainConfig(optimizer="sgd", lr=10.0, schedule="constant", augment=False, batch_size=16, epochs=3)
NO_BN_LENET = ModelSpec("lenet", 3, in_channels=1, input_size=16, batchnorm=False)


def test_a_diverging_learning_rate_is_valid_but_stops_training(make_tiny_dataset, tmp_path):
    DIVERGING.validate(48)  # in range: only training can tell it diverges
    trainer = Trainer(NO_BN_LENET, make_tiny_dataset(), DIVERGING)
    with pytest.raises(TrainingDiverged) as info:
        for _ in trainer.run():
            pass
    message = str(info.value)
    assert "learning rate" in message and "smaller" in message and "nan" in message.lower()
    assert trainer.diverged == message
    with pytest.raises(TrainingDiverged):  # the run cannot be continued
        next(trainer.run())
    with pytest.raises(CheckpointError, match="not saved"):  # nor saved over a good file
        trainer.save(tmp_path / "diverged.pt")
    assert not (tmp_path / "diverged.pt").exists()


def test_a_diverging_background_job_reports_instead_of_raising(make_tiny_dataset):
    job = TrainingJob(Trainer(NO_BN_LENET, make_tiny_dataset(), DIVERGING))
    job.start()
    job.join(120)
    assert not job.running
    assert job.status == DIVERGED
    assert "learning rate" in job.message
    assert not job.can_resume
    with pytest.raises(RuntimeError, match="cannot continue"):
        job.start()


# --- model settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"num_classes": "6"}, "number of classes must be a whole number 2–1000"),
        ({"num_classes": 2.5}, "number of classes must be a whole number 2–1000"),
        ({"num_classes": True}, "number of classes must be a whole number 2–1000"),
        ({"num_classes": None}, "number of classes must be a whole number 2–1000"),
        ({"num_classes": 0}, "number of classes must be 2–1000"),
        ({"num_classes": -6}, "number of classes must be 2–1000"),
        ({"num_classes": 10**6}, "number of classes must be 2–1000"),
        ({"in_channels": 1.0}, "input channels must be 1 (gray) or 3 (RGB)"),
        ({"in_channels": True}, "input channels must be 1 (gray) or 3 (RGB)"),
        ({"in_channels": "3"}, "input channels must be 1 (gray) or 3 (RGB)"),
        ({"in_channels": 4}, "input channels must be 1 (gray) or 3 (RGB)"),
        ({"input_size": "64"}, "input size must be a whole number of pixels"),
        ({"input_size": 64.5}, "input size must be a whole number of pixels"),
        ({"input_size": -64}, "input size for LeNet-5 must be 16–512 pixels"),
        ({"input_size": 100_000}, "input size for LeNet-5 must be 16–512 pixels"),
        ({"dropout": "0.1"}, "dropout p must be a number in [0, 1)"),
        ({"dropout": math.nan}, "dropout p must be a number in [0, 1)"),
        ({"dropout": math.inf}, "dropout p must be a number in [0, 1)"),
        ({"dropout": 1.0}, "dropout p must be in [0, 1)"),
        ({"dropout": -0.5}, "dropout p must be in [0, 1)"),
        ({"batchnorm": "yes"}, "batch norm must be True or False"),
        ({"batchnorm": None}, "batch norm must be True or False"),
        ({"arch": "vgg"}, "architecture must be one of mlp, lenet, resnet50"),
        ({"arch": ["mlp"]}, "architecture must be one of mlp, lenet, resnet50"),
        ({"arch": None}, "architecture must be one of mlp, lenet, resnet50"),
        ({"arch": "mlp", "hidden": ("a",)}, "hidden layer sizes must be whole numbers"),
        ({"arch": "mlp", "hidden": "20"}, "hidden layer sizes must be whole numbers"),
        ({"arch": "mlp", "hidden": None}, "hidden layer sizes must be whole numbers"),
        ({"arch": "mlp", "hidden": (2.5,)}, "hidden layer sizes must be whole numbers"),
        ({"arch": "mlp", "hidden": (20, -7)}, "hidden layer sizes must be 1–4096"),
        ({"arch": "mlp", "hidden": (10**6,)}, "hidden layer sizes must be 1–4096"),
        ({"arch": "mlp", "hidden": ()}, "the MLP needs 1–8 hidden layers"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_bad_model_settings_raise_spec_error(kwargs, expected):
    with pytest.raises(SpecError) as info:
        ModelSpec(**kwargs)
    assert isinstance(info.value, ValueError)
    assert expected in str(info.value)


def test_spec_from_a_foreign_dict_is_refused_with_spec_error():
    good = ModelSpec("mlp", 6, in_channels=3, hidden=(20, 7, 5), batchnorm=False).to_dict()
    with pytest.raises(SpecError, match="unknown model settings: layers"):
        ModelSpec.from_dict({**good, "layers": 3})
    with pytest.raises(SpecError, match="number of classes"):
        ModelSpec.from_dict({**good, "num_classes": "6"})
    with pytest.raises(SpecError, match="hidden layer sizes"):
        ModelSpec.from_dict({**good, "hidden": "20,7,5"})
    assert ModelSpec.from_dict(good).hidden == (20, 7, 5)


def test_numpy_integers_and_lists_are_still_accepted():
    import numpy as np

    spec = ModelSpec("mlp", np.int64(6), in_channels=3, input_size=np.int32(32), hidden=[np.int64(8), 4],
                     dropout=0, batchnorm=False)
    assert spec.hidden == (8, 4) and isinstance(spec.hidden, tuple)
    assert spec == ModelSpec("mlp", 6, in_channels=3, input_size=32, hidden=(8, 4), batchnorm=False)
