"""Using a trained net: one photo's class probabilities, and a report on a whole test split.

Prediction must prepare a photo exactly as training prepared the data set: the same
``core.tensors.images_to_tensor`` conversion, so an image the net saw in training gives the same
output through ``predict_image``.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import load_checkpoint
from core.inference import confusion_matrix, evaluate_checkpoint, predict_image
from core.preprocess import ImageError
from core.spec import ModelSpec
from core.tensors import images_to_tensor
from core.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SPECS = {
    "lenet-gray": ModelSpec("lenet", 3, in_channels=1, input_size=16),
    "mlp-rgb": ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(16, 8), batchnorm=False),
}
CONFIG = TrainConfig(optimizer="adam", lr=0.01, schedule="constant", augment=False, batch_size=16, epochs=3, device="cpu")


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(params=list(SPECS))
def run(request, tiny_dataset, tmp_path):
    """A trained trainer and its checkpoint, loaded back from disk."""
    trainer = Trainer(SPECS[request.param], tiny_dataset, CONFIG)
    for _ in trainer.run():
        pass
    return trainer, load_checkpoint(trainer.save(tmp_path / "run.pt"))


@torch.no_grad()
def net_probabilities(ckpt, images: np.ndarray) -> torch.Tensor:
    """The training path: uint8 N×H×W×3 → images_to_tensor → net → softmax."""
    x = images_to_tensor(torch.from_numpy(images), ckpt.spec.in_channels, ckpt.spec.input_size)
    return torch.softmax(ckpt.model.eval()(x), dim=1)


def test_prediction_is_a_distribution_over_the_checkpoint_classes(run, tiny_dataset):
    _, ckpt = run
    pred = predict_image(ckpt, png(tiny_dataset.x_test[0]))
    assert list(pred.probabilities) == list(ckpt.classes) == ["bar", "column", "diagonal"]
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= p <= 1.0 for p in pred.probabilities.values())
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
    assert pred.confidence == pred.probabilities[pred.label]
    assert pred.seen.shape == (16, 16, 3) and pred.seen.dtype == np.uint8
    assert pred.to_dict() == {"label": pred.label, "confidence": pred.confidence, "probabilities": pred.probabilities,
                              "mirror_average": False}


def test_prediction_uses_the_training_conversion(run, tiny_dataset):
    _, ckpt = run
    for i in range(6):
        image = tiny_dataset.x_test[i]
        pred = predict_image(ckpt, png(image))
        assert np.array_equal(pred.seen, image)  # already square and at the net's size: unchanged
        expected = net_probabilities(ckpt, image[None])[0]
        got = torch.tensor([pred.probabilities[c] for c in ckpt.classes])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
        assert pred.label == ckpt.classes[int(expected.argmax())]


def test_a_bigger_photo_is_cropped_and_resized_then_converted_the_same_way(run, tmp_path):
    _, ckpt = run
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # landscape, not the net's size
    path = tmp_path / "photo.png"
    path.write_bytes(png(photo))
    pred = predict_image(ckpt, path)
    assert pred.seen.shape == (16, 16, 3) and pred.seen.dtype == np.uint8
    expected = net_probabilities(ckpt, pred.seen[None])[0]
    got = torch.tensor([pred.probabilities[c] for c in ckpt.classes])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    # The same file as a path, as bytes and as a file object gives the same answer.
    assert predict_image(ckpt, str(path)).probabilities == pred.probabilities
    assert predict_image(ckpt, io.BytesIO(path.read_bytes())).probabilities == pred.probabilities


def test_evaluate_checkpoint_matches_the_trainer(run, tiny_dataset):
    trainer, ckpt = run
    report = evaluate_checkpoint(ckpt, tiny_dataset)
    reference = trainer.evaluate_test()
    assert report.accuracy == reference.accuracy
    assert report.loss == pytest.approx(reference.loss, rel=1e-5)  # channels-last vs contiguous rounding
    assert report.classes == tiny_dataset.classes

    n = len(tiny_dataset.y_test)
    assert report.confusion.shape == (3, 3) and report.confusion.sum() == n
    assert np.trace(report.confusion) / n == pytest.approx(report.accuracy)
    assert report.confusion.sum(axis=1).tolist() == np.bincount(tiny_dataset.y_test, minlength=3).tolist()

    wrong = int((reference.predictions.numpy() != tiny_dataset.y_test).sum())
    assert len(report.misclassified) == wrong == n - np.trace(report.confusion)
    for m in report.misclassified:
        assert m.true_label == tiny_dataset.classes[tiny_dataset.y_test[m.index]]
        assert m.predicted != m.true_label
        assert m.predicted == tiny_dataset.classes[int(reference.predictions[m.index])]
        assert 0.0 < m.confidence <= 1.0


def test_evaluate_checkpoint_lists_every_mistake_of_an_untrained_net(tiny_dataset, tmp_path):
    # A fresh net gets many wrong, so the misclassified list is really exercised.
    trainer = Trainer(SPECS["mlp-rgb"], tiny_dataset, CONFIG)
    ckpt = load_checkpoint(trainer.save(tmp_path / "fresh.pt"))
    report = evaluate_checkpoint(ckpt, tiny_dataset)
    n = len(tiny_dataset.y_test)
    assert 0 < len(report.misclassified) == n - np.trace(report.confusion) == round((1 - report.accuracy) * n)
    assert report.accuracy == trainer.evaluate_test().accuracy


def test_evaluate_checkpoint_refuses_other_classes(run, make_tiny_dataset):
    _, ckpt = run
    with pytest.raises(ValueError, match="classes"):
        evaluate_checkpoint(ckpt, make_tiny_dataset(num_classes=4))


def test_confusion_matrix_counts_pairs():
    m = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m.dtype == np.int64


@pytest.mark.parametrize(
    "data, name",
    [(b"this is not an image", "notes.png"), (b"", "empty.jpg"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "broken.png")],
    ids=["text", "empty", "broken-png"],
)
def test_a_non_image_raises_image_error(run, data, name):
    _, ckpt = run
    with pytest.raises(ImageError) as info:
        predict_image(ckpt, data, name=name)
    assert name in str(info.value)


def test_a_checkpoint_is_not_an_image(run, tmp_path):
    trainer, ckpt = run
    path = trainer.save(tmp_path / "again.pt")
    with pytest.raises(ImageError):
        predict_image(ckpt, path)


# --- the side of the training images (checkpoint's preprocessing image_size) --------------------


@pytest.fixture
def small_net_big_images(make_tiny_dataset, tmp_path):
    """A 16-px LeNet trained on 32×32 images (the trainer resizes them, antialiased)."""
    data = make_tiny_dataset(size=32)
    trainer = Trainer(SPECS["lenet-gray"], data, CONFIG)
    for _ in trainer.run():
        pass
    return data, trainer.save(tmp_path / "big.pt")


def test_a_photo_is_made_at_the_training_image_size_then_resized_like_training(small_net_big_images):
    data, path = small_net_big_images
    ckpt = load_checkpoint(path)
    assert ckpt.image_size == 32 and ckpt.spec.input_size == 16
    for i in range(4):
        image = data.x_test[i]  # a training-sized image: prediction must match the training path exactly
        pred = predict_image(ckpt, png(image))
        assert pred.seen.shape == (32, 32, 3) and np.array_equal(pred.seen, image)
        expected = net_probabilities(ckpt, image[None])[0]  # images_to_tensor(..., size=16), as the trainer
        got = torch.tensor([pred.probabilities[c] for c in ckpt.classes])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    big = np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    assert predict_image(ckpt, png(big)).seen.shape == (32, 32, 3)


def test_a_checkpoint_without_the_image_size_prepares_photos_at_the_input_size(small_net_big_images, tmp_path):
    data, path = small_net_big_images
    payload = torch.load(path, weights_only=True)
    del payload["preprocessing"]["image_size"]  # as files saved before it was recorded
    buf = io.BytesIO()
    torch.save(payload, buf)
    old = load_checkpoint(buf.getvalue())
    pred = predict_image(old, png(data.x_test[0]))
    assert pred.seen.shape == (16, 16, 3)
    expected = net_probabilities(old, pred.seen[None])[0]
    torch.testing.assert_close(torch.tensor([pred.probabilities[c] for c in old.classes]), expected, rtol=0, atol=1e-7)


def test_the_prediction_carries_exactly_what_the_net_was_given(run, tiny_dataset):
    """The Predict page shows "what the net sees" from this tensor: it must be the net's real input."""
    from core.tensors import tensor_to_image

    _, ckpt = run
    pred = predict_image(ckpt, png(np.asarray(Image.fromarray(tiny_dataset.x_test[0]).resize((96, 96)))))
    x = pred.net_input
    assert x.shape == (1, *ckpt.spec.input_shape) and x.dtype == torch.float32
    probs = torch.softmax(ckpt.model.eval()(x), dim=1)[0]
    assert torch.allclose(probs, torch.tensor([pred.probabilities[c] for c in ckpt.classes]), atol=1e-6)
    shown = tensor_to_image(x[0])
    assert shown.dtype == np.uint8 and shown.shape[:2] == (ckpt.spec.input_size,) * 2
    # Shown as 8-bit pixels, it converts back to the same tensor (to rounding).
    back = images_to_tensor(np.repeat(shown[..., None], 3, -1)[None] if shown.ndim == 2 else shown[None], 3)
    assert torch.allclose(back[:, :1] if shown.ndim == 2 else back, x, atol=1 / 255)


def test_tensor_to_image_inverts_images_to_tensor():
    from core.tensors import tensor_to_image

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_image(images_to_tensor(rgb[None])[0]), rgb)
    gray = tensor_to_image(images_to_tensor(rgb[None], channels=1)[0])
    expected = np.rint(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert gray.shape == (5, 7) and np.abs(gray.astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match="C×H×W"):
        tensor_to_image(torch.zeros(2, 4, 4))


# --- a net trained on mirrored images reads a photo with its mirror image -------------------------


@pytest.fixture
def mirrored_run(tiny_dataset, tmp_path):
    """A LeNet trained with the fine-tuning recipe's ``mirrored`` augmentation, saved and loaded."""
    trainer = Trainer(SPECS["lenet-gray"], tiny_dataset, CONFIG.replace(augment=True, augmentation="mirrored"))
    for _ in trainer.run():
        pass
    return trainer, load_checkpoint(trainer.save(tmp_path / "mirrored.pt"))


@pytest.mark.parametrize(("augment", "preset", "expected"), [
    (True, "mirrored", True), (True, "standard", False), (True, "mixed", False), (True, "webcam", False),
    (False, "mirrored", False),  # the preset is kept in the settings, but nothing was mirrored
    (True, "from a newer TorchLab", False),
])
def test_only_a_net_trained_on_mirrored_images_reads_the_mirror_too(run, augment, preset, expected):
    _, ckpt = run
    ckpt.training = {**ckpt.training, "augment": augment, "augmentation": preset}
    assert ckpt.mirror_average is expected


def test_the_trainer_and_its_saved_checkpoint_agree_on_reading_the_mirror(run, mirrored_run):
    for trainer, ckpt in (run, mirrored_run):
        assert trainer.mirror_average is ckpt.mirror_average
    assert mirrored_run[0].mirror_average and not run[0].mirror_average


def test_a_mirror_trained_net_answers_the_mean_for_the_photo_and_its_mirror(mirrored_run, tiny_dataset):
    _, ckpt = mirrored_run
    assert ckpt.mirror_average
    images = tiny_dataset.x_test[:6]
    plain, mirrored = net_probabilities(ckpt, images), net_probabilities(ckpt, images[:, :, ::-1].copy())
    expected = (plain + mirrored) / 2
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the two views really differ: the test can fail
    for i, image in enumerate(images):
        pred = predict_image(ckpt, png(image))
        assert pred.mirrored and pred.to_dict()["mirror_average"] is True
        torch.testing.assert_close(torch.tensor(list(pred.probabilities.values())), expected[i], rtol=1e-4, atol=1e-6)
        assert pred.label == ckpt.classes[int(expected[i].argmax())]
        # What the net was given is the photo itself; its mirror is made inside.
        torch.testing.assert_close(pred.net_input, images_to_tensor(torch.from_numpy(image[None]), 1))


def test_a_net_trained_without_mirroring_reads_the_photo_alone(run, tiny_dataset):
    _, ckpt = run
    pred = predict_image(ckpt, png(tiny_dataset.x_test[0]))
    assert not pred.mirrored and pred.to_dict()["mirror_average"] is False
    expected = net_probabilities(ckpt, tiny_dataset.x_test[:1])[0]
    torch.testing.assert_close(torch.tensor(list(pred.probabilities.values())), expected, rtol=1e-4, atol=1e-6)


def test_the_test_report_of_a_mirror_trained_net_reads_as_prediction_does(mirrored_run, tiny_dataset):
    trainer, ckpt = mirrored_run
    report = evaluate_checkpoint(ckpt, tiny_dataset)
    p = (net_probabilities(ckpt, tiny_dataset.x_test) + net_probabilities(ckpt, tiny_dataset.x_test[:, :, ::-1].copy())) / 2
    y = torch.from_numpy(tiny_dataset.y_test)
    assert report.mirrored
    assert report.accuracy == pytest.approx((p.argmax(1) == y).float().mean().item())
    assert report.loss == pytest.approx(-p[torch.arange(len(y)), y].log().mean().item(), rel=1e-4)
    assert report.confusion.sum() == len(y) and np.trace(report.confusion) == round(report.accuracy * len(y))
    # Beside it, the figure training measured: each image alone.
    assert report.single_accuracy == trainer.evaluate_test().accuracy


def test_the_test_report_of_a_net_trained_without_mirroring_has_no_second_figure(run, tiny_dataset):
    _, ckpt = run
    report = evaluate_checkpoint(ckpt, tiny_dataset)
    assert not report.mirrored and report.single_accuracy is None
