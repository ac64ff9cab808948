"""Using a trained net: class probabilities for a photo, and a report on a whole test split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.checkpoint import Checkpoint
from core.data import Dataset
from core.preprocess import PhotoSource, preprocess_image
from core.tensors import images_to_tensor
from core.engine import class_probabilities, evaluate


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    seen: np.ndarray  # image_size×image_size×3 uint8: the photo as a training image (before gray conversion and the net's resize)
    net_input: torch.Tensor  # 1×C×S×S float on the CPU: exactly what the net was given
    mirrored: bool = False  # the answer is the mean of the net's for the photo and its mirror image

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities,
                "mirror_average": self.mirrored}


@torch.no_grad()
def predict_image(ckpt: Checkpoint, source: PhotoSource, name: str | None = None) -> Prediction:
    """Class probabilities (softmax) for one image, prepared exactly as in training.

    ``source`` is a photo file (bytes, path, file object) or a decoded picture: an H×W×3 uint8 RGB
    array such as a video frame (``core.live``), or a PIL image.

    The photo is made at the side of the checkpoint's training images (``image_size``; for files
    saved before it was recorded, the net's input size) and then resized to the net's input as the
    training batches were. A net trained on mirrored images answers with the mean of its answers
    for the photo and its mirror image (:attr:`Checkpoint.mirror_average`). Raises
    :class:`core.preprocess.ImageError` for a file that is not a usable image (or a picture of the
    wrong shape).
    """
    x, seen = preprocess_image(source, size=ckpt.spec.input_size, channels=ckpt.spec.in_channels, name=name,
                               image_size=ckpt.train_image_size)
    model = ckpt.model.eval()
    device = next(model.parameters()).device
    probs = class_probabilities(model, x.to(device), ckpt.mirror_average)[0].cpu()
    best = int(probs.argmax())
    return Prediction(
        label=ckpt.classes[best],
        confidence=float(probs[best]),
        probabilities={c: float(p) for c, p in zip(ckpt.classes, probs)},
        seen=seen,
        net_input=x.cpu(),
        mirrored=ckpt.mirror_average,
    )


@dataclass(frozen=True)
class Misclassified:
    index: int
    true_label: str
    predicted: str
    confidence: float


@dataclass(frozen=True)
class TestReport:
    accuracy: float
    loss: float
    confusion: np.ndarray  # rows: true class, columns: predicted class
    misclassified: list[Misclassified]
    classes: tuple[str, ...]
    mirrored: bool = False  # each image read with its mirror image, as predictions are
    single_accuracy: float | None = None  # with mirrored: the accuracy reading each image alone


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs as an n×n integer matrix."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def evaluate_checkpoint(ckpt: Checkpoint, dataset: Dataset) -> TestReport:
    """Accuracy, confusion matrix and the misclassified images of ``ckpt`` on ``dataset``'s test split.

    The images go through the same tensor conversion as in training; the classes must match. They
    are read as a photo is predicted (with its mirror image for a net trained so); the report then
    also gives the accuracy of the net reading each image alone, as training measured it.
    """
    if tuple(ckpt.classes) != tuple(dataset.classes):
        raise ValueError(
            f"the checkpoint's classes {list(ckpt.classes)} are not {dataset.title}'s {list(dataset.classes)}"
        )
    device = next(ckpt.model.parameters()).device
    # torch.tensor copies: the cached data set's arrays are read-only and shared.
    x = images_to_tensor(torch.tensor(dataset.x_test), ckpt.spec.in_channels, ckpt.spec.input_size)
    y = torch.tensor(dataset.y_test)
    mirror = ckpt.mirror_average
    result = evaluate(ckpt.model, x.to(device), y.to(device), mirror=mirror)
    single = evaluate(ckpt.model, x.to(device), y.to(device)).accuracy if mirror else None
    pred = result.predictions.numpy()
    wrong = np.flatnonzero(pred != dataset.y_test)
    return TestReport(
        accuracy=result.accuracy,
        loss=result.loss,
        confusion=confusion_matrix(dataset.y_test, pred, len(ckpt.classes)),
        misclassified=[
            Misclassified(int(i), ckpt.classes[int(dataset.y_test[i])], ckpt.classes[int(pred[i])],
                          float(result.probabilities[i, pred[i]]))
            for i in wrong
        ],
        classes=tuple(ckpt.classes),
        mirrored=mirror,
        single_accuracy=single,
    )
