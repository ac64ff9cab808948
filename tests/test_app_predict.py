"""The Predict page."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import io
import json

import numpy as np
import onnxruntime as ort
import torch
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

import core.export
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data import load_dataset
from core.nets import build_model
from core.spec import ModelSpec, default_spec
from core.tensors import images_to_tensor
from core.trainer import TrainConfig, Trainer
from tests.bad_input_corpus import checkpoint_cases, image_cases
from tests.apptest import assert_clean, button, errors, metrics, plotly_keys, hand_photo, mime


# --- Predict --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """A checkpoint dir holding one LeNet trained for an epoch on the synthetic set."""
    d = tmp_path_factory.mktemp("trained")
    trainer = Trainer(default_spec("lenet"), load_dataset("synthetic"), TrainConfig(epochs=1, batch_size=64, augment=False))
    for _ in trainer.run():
        pass
    trainer.save(d / "lenet-synthetic-test.pt")
    return d


@pytest.fixture
def predict(env, apps, trained_dir):
    env.monkeypatch.setenv("TORCHLAB_CHECKPOINT_DIR", str(trained_dir))
    return apps("pages/predict.py")


def test_predict_without_a_checkpoint_offers_to_train(env, apps):
    at = apps("pages/predict.py")
    assert any("No saved checkpoint yet" in i.value for i in at.info)
    assert button(at, "Train the default LeNet now")
    assert not at.file_uploader  # the page stops before the photo input
    assert_clean(at)


@pytest.mark.slow
def test_predict_train_the_default_lenet_now(env, apps):
    at = apps("pages/predict.py")
    button(at, "Train the default LeNet now").click()
    at.run(timeout=600)
    assert_clean(at)
    assert [p.name for p in env.ckpt.glob("*.pt")] == ["lenet-synthetic-default.pt"]
    assert at.selectbox(key="p_checkpoint").value == "lenet-synthetic-default.pt"
    assert metrics(at)["Classes"] == "6"


def test_a_net_just_saved_on_the_train_page_is_the_one_predict_opens_with(env, apps, trained_dir):
    import os
    import shutil

    for name, age in (("old.pt", 200), ("other.pt", 100)):
        shutil.copy(trained_dir / "lenet-synthetic-test.pt", env.ckpt / name)
        os.utime(env.ckpt / name, (os.path.getmtime(env.ckpt / name) - age,) * 2)
    at = apps("pages/predict.py")
    at.selectbox(key="p_checkpoint").set_value("old.pt")  # the user's earlier choice
    at.run()
    assert at.selectbox(key="p_checkpoint").value == "old.pt"
    at.session_state["p_pick"] = "other.pt"  # what the Train page hands over when it saves one
    at.run()
    assert_clean(at)
    assert at.selectbox(key="p_checkpoint").value == "other.pt"
    at.selectbox(key="p_checkpoint").set_value("old.pt")  # handed over once: the user's next choice stands
    at.run()
    assert at.selectbox(key="p_checkpoint").value == "old.pt"


def _assert_prediction(at: AppTest, classes: tuple[str, ...]) -> None:
    assert_clean(at)
    assert not errors(at), errors(at)
    assert metrics(at)["Prediction"] in classes
    assert "probs" in plotly_keys(at)


def test_predict_a_photo(predict):
    at = predict
    assert metrics(at)["Classes"] == "6"
    # The saved accuracy says how many test images it rests on (a small set makes a coarse figure).
    (saved,) = [m for m in at.metric if m.label == "Test accuracy when saved"]
    assert saved.value.endswith("%") and saved.proto.delta == "on 120 test images", saved.proto.delta
    at.file_uploader(key="p_photo").set_value(("hand.jpg", hand_photo(480), "image/jpeg"))
    at.run()
    _assert_prediction(at, tuple("012345"))
    bars = next(c for c in at.get("plotly_chart") if c.key == "probs")
    assert json.loads(bars.proto.config)["displayModeBar"] is False  # a phone's tool bar covered the title
    # Class names are labels: as numbers, Plotly labelled only 0, 2 and 4 and the answer "5" had none.
    assert json.loads(bars.proto.spec)["layout"]["xaxis"]["type"] == "category"
    captions = [c for im in at.image for c in im.captions]
    assert "Your photo" in captions and "What the net sees: 64×64, RGB" in captions
    # a wrong answer points to the remedy: the user's own photos
    links = [(e.proto.page, e.proto.label) for e in at.get("page_link")]
    assert any(page in ("data", "pages/data.py") and label.startswith("Wrong? Teach it your hand") for page, label in links), links


def test_the_page_shows_how_the_training_data_shows_each_class(predict):
    # A stranger learns SIGNS' conventions (a 3 is thumb, index and middle finger) from the examples.
    at = predict
    [box] = [e for e in at.expander if "What each class looks like" in e.label]
    assert box.label.startswith("What each class looks like in built-in synthetic finger counts")
    shown = [im for im in box.image]
    assert len(shown) == 6 and all(len(im.value) == 2 for im in shown)  # a column per class, two photos each
    assert [c.value for c in box.caption][:6] == [f"**{i}**" for i in range(6)]
    assert_clean(at)


def test_training_data_that_can_no_longer_be_read_is_a_message_not_a_traceback(env, apps, trained_dir, monkeypatch):
    # The net's data set is listed but its files broke since: no examples, and Evaluate says why.
    import streamlit_app
    from core.data import DatasetError

    def broken(*args, **kwargs):
        raise DatasetError("train_signs.h5: not an HDF5 file — put the tutorial's file back")

    env.monkeypatch.setenv("TORCHLAB_CHECKPOINT_DIR", str(trained_dir))
    at = apps("pages/predict.py")
    assert [e for e in at.expander if "What each class looks like" in e.label]
    monkeypatch.setattr(streamlit_app, "get_dataset", broken)
    at.run()
    assert_clean(at)
    assert not [e for e in at.expander if "What each class looks like" in e.label]
    button(at, "Evaluate").click()
    at.run()
    assert_clean(at)
    assert any("Could not evaluate" in e and "not an HDF5 file" in e for e in errors(at)), errors(at)


def test_predict_from_the_camera(predict):
    at = predict
    png = hand_photo(480, "PNG", index=1)
    assert png.startswith(b"\x89PNG")
    at.camera_input(key="p_camera").set_value(("snap.jpg", png, "image/jpeg"))  # AppTest wants a .jpg name
    at.run()
    _assert_prediction(at, tuple("012345"))


def test_the_live_tab_refuses_a_malformed_ice_setting_with_a_message(predict, env):
    # The Live tab itself needs a browser (WebRTC): tests/test_live.py and tests/e2e/test_live_webcam.py.
    env.monkeypatch.setenv("TORCHLAB_ICE_SERVERS", "stun:stun.example.org")
    at = predict
    at.session_state["p_input"] = "Live"
    at.run()
    assert_clean(at)
    assert errors(at) == [("Live video can't start: $TORCHLAB_ICE_SERVERS is not valid JSON (Expecting value at "
                           'character 0); expected a list such as [{"urls": "stun:stun.example.org:3478"}]')]
    assert not at.camera_input  # the snapshot camera is off while the Live tab is open


def test_predict_every_image_of_the_corpus(predict):
    at = predict
    for case in image_cases():
        at.file_uploader(key="p_photo").set_value((case.filename, case.data, mime(case.filename)))
        at.run()
        assert_clean(at)
        if case.ok:
            assert not errors(at), (case.name, errors(at))
            assert metrics(at)["Prediction"] in tuple("012345"), case.name
        else:
            shown = errors(at)
            assert len(shown) == 1 and case.filename in shown[0], (case.name, shown)
            assert "Prediction" not in metrics(at), case.name


def _upload_checkpoint(at: AppTest, filename: str, data: bytes) -> None:
    if at.radio(key="p_source").value != "Upload a checkpoint":
        at.radio(key="p_source").set_value("Upload a checkpoint")
        at.run()
        assert any("Upload a `.pt` checkpoint" in i.value for i in at.info)
    at.file_uploader(key="p_ckpt_upload").set_value((filename, data, "application/octet-stream"))
    at.run()
    assert_clean(at)


def test_predict_refuses_bad_checkpoints_and_runs_nothing(predict, env):
    at = predict
    cases = checkpoint_cases(env.tmp)
    for case in cases:
        _upload_checkpoint(at, case.filename, case.data)
        if case.ok:
            assert not errors(at), (case.name, errors(at))
            assert metrics(at)["Classes"] == str(len(case.classes)), case.name
        else:
            shown = errors(at)
            assert len(shown) == 1 and shown[0].startswith("Refused: ") and case.filename in shown[0], (case.name, shown)
            assert "Classes" not in metrics(at)
    for name in ("malicious_pickle", "malicious_zip_checkpoint"):
        case = next(c for c in cases if c.name == name)
        assert case.marker is not None and not case.marker.exists(), f"{name}: the pickled code ran"
    refusals = {c.name for c in cases if not c.ok}
    assert {"malicious_pickle", "random_bytes", "truncated_checkpoint", "whole_pickled_module"} <= refusals


def test_predict_with_an_uploaded_checkpoint_of_other_classes(predict, env):
    at = predict
    case = next(c for c in checkpoint_cases(env.tmp) if c.name == "another_class_count")
    _upload_checkpoint(at, case.filename, case.data)
    assert metrics(at)["Classes"] == "3"
    at.file_uploader(key="p_photo").set_value(("hand.jpg", hand_photo(480), "image/jpeg"))
    at.run()
    _assert_prediction(at, case.classes)
    assert any("No data set here has this checkpoint's classes" in c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Evaluate"]


def test_predict_evaluate_on_the_test_split(predict):
    at = predict
    assert at.selectbox(key="p_eval_data").value == "synthetic"
    button(at, "Evaluate").click()
    at.run()
    assert_clean(at)
    m = metrics(at)
    assert m["Test accuracy"].endswith("%") and 0 <= float(m["Test accuracy"][:-1]) <= 100
    assert m["Misclassified"].endswith("of 120")
    assert "p_confusion" in plotly_keys(at)


def _trained_and_shown_a_photo(env, apps, arch: str, config: TrainConfig) -> tuple[Trainer, AppTest]:
    """A net trained on the synthetic set, saved as the only checkpoint, and the Predict page with
    a hand photo uploaded and predicted."""
    trainer = Trainer(default_spec(arch), load_dataset("synthetic"), config)
    for _ in trainer.run():
        pass
    trainer.save(env.ckpt / f"{arch}.pt")
    at = apps("pages/predict.py")
    at.file_uploader(key="p_photo").set_value(("hand.jpg", hand_photo(480), "image/jpeg"))
    at.run()
    _assert_prediction(at, tuple("012345"))
    # The confidence is explained where it is shown: the net's own figure, often sure and wrong on unfamiliar hands.
    (answer,) = [m for m in at.metric if m.label == "Prediction"]
    assert "not a promise" in answer.proto.help and "sure and wrong" in answer.proto.help
    return trainer, at


def test_a_test_figure_from_the_users_own_photos_says_what_it_is_worth(env, apps, make_tiny_dataset):
    # A set saved on the Data page is split here, so its test photos come from the same sitting:
    # "100 %" on 12 of them promised more than strangers' photos then gave (80 %).
    own = replace(make_tiny_dataset(), split_made=True, title="my-hand")
    for name, dataset in (("signs-like.pt", make_tiny_dataset()), ("mine.pt", own)):
        trainer = Trainer(default_spec("mlp", 3).replace(input_size=16), dataset,
                          TrainConfig(epochs=1, batch_size=16, augment=False))
        for _ in trainer.run():
            pass
        trainer.save(env.ckpt / name)
        at = apps("pages/predict.py")
        at.selectbox(key="p_checkpoint").set_value(name)
        at.run()
        assert_clean(at)
        said = any("set aside from the same photos" in c.value for c in at.caption)
        assert said == (name == "mine.pt"), name


def test_a_net_fine_tuned_on_mirrored_photos_says_it_reads_the_mirror_too(env, apps):
    # The fine-tuning recipe mirrors half the photos; such a net answers with the mean of the photo's
    # and its mirror image's answers, and the page says so where it shows the answer and the test report.
    trainer, at = _trained_and_shown_a_photo(env, apps, "lenet", TrainConfig(epochs=1, batch_size=64, augmentation="mirrored"))
    assert any("Read with its mirror image too" in c.value for c in at.caption)
    (answer,) = [m for m in at.metric if m.label == "Prediction"]
    assert "mirrored" in answer.proto.help and "not a promise" in answer.proto.help
    assert any("sum of both maps" in c.value for c in at.caption)  # Grad-CAM of both views
    button(at, "Evaluate").click()
    at.run()
    assert_clean(at)
    alone = f"{trainer.evaluate_test().accuracy:.1%}"
    assert any(f"Read alone, as the Train page measured it: {alone}" in c.value for c in at.caption)


def test_predict_uploaded_two_class_checkpoint_evaluates_on_cats(env, apps, cats_data_dir):
    env.monkeypatch.setenv("TORCHLAB_DATA_DIR", str(cats_data_dir))
    cats = load_dataset("cats", cats_data_dir)
    spec = ModelSpec("mlp", 2, in_channels=3, input_size=64, hidden=(8,), batchnorm=False)
    path = save_checkpoint(env.tmp / "cat.pt", build_model(spec, seed=0), spec, "module", cats.classes,
                           dataset={"key": "cats", "title": cats.title})
    at = apps("pages/predict.py")
    _upload_checkpoint(at, "cat-mlp.pt", path.read_bytes())
    assert metrics(at)["Classes"] == "2"
    assert at.selectbox(key="p_eval_data").value == "cats"
    button(at, "Evaluate").click()
    at.run()
    assert_clean(at)
    assert metrics(at)["Misclassified"].endswith("of 50")
    assert "p_confusion" in plotly_keys(at)


# --- look inside ----------------------------------------------------------------------------------


def _image(at: AppTest, caption_start: str):
    """The image element (and its URL) whose caption starts with ``caption_start``."""
    for element in at.image:
        for caption, img in zip(element.captions, element.proto.imgs):
            if caption.startswith(caption_start):
                return img.url
    raise AssertionError(f"no image captioned {caption_start!r}: {[c for e in at.image for c in e.captions]}")


def test_look_inside_a_photo_grad_cam_for_any_class_feature_maps_and_filters(predict):
    at = predict
    at.file_uploader(key="p_photo").set_value(("hand.jpg", hand_photo(480), "image/jpeg"))
    at.run()
    _assert_prediction(at, tuple("012345"))
    predicted = metrics(at)["Prediction"]
    first = _image(at, f"Grad-CAM for class {predicted}")
    _image(at, "no evidence → most evidence")  # the colour map's legend
    assert any("GRAD" in c.value or "grad_cam" in c.value for c in at.code)  # the PyTorch behind it
    # Feature maps of LeNet's two conv stages, with their shapes, and conv1's 6 filters.
    assert any("out of **conv1** — 6×30×30" in m.value for m in at.markdown)
    assert any("**conv2** — 16×13×13" in m.value for m in at.markdown)
    assert any(e.captions == [f"ch {i}" for i in range(16)] for e in at.image)
    assert any("6 filters of 3×5×5" in c.value for c in at.caption)
    # "Why not 3?": another class gets its own map; the opacity changes the drawing.
    other = next(c for c in "012345" if c != predicted)
    why = next(s for s in at.selectbox if s.key and s.key.startswith("p_why_"))
    why.set_value(other)
    at.run()
    assert_clean(at)
    assert metrics(at)["Prediction"] == predicted  # the answer stays; only the explanation changes
    second = _image(at, f"Grad-CAM for class {other}")
    assert second != first
    at.slider(key="p_opacity").set_value(0.9)
    at.run()
    assert _image(at, f"Grad-CAM for class {other}") != second


def test_look_inside_from_the_camera(predict):
    at = predict
    at.camera_input(key="p_camera").set_value(("snap.jpg", hand_photo(480, "PNG", index=2), "image/jpeg"))
    at.run()
    _assert_prediction(at, tuple("012345"))
    _image(at, f"Grad-CAM for class {metrics(at)['Prediction']}")


def test_look_inside_an_mlp_is_an_input_gradient_saliency_map(env, apps):
    _, at = _trained_and_shown_a_photo(env, apps, "mlp", TrainConfig(epochs=1, batch_size=128, augment=False))
    _image(at, f"input-gradient saliency for class {metrics(at)['Prediction']}")
    assert any("no convolution" in c.value for c in at.caption)
    assert not any("Feature maps" in e.label for e in at.expander)
    assert any("its 20 units, each as a 3×64×64 image" in c.value for c in at.caption)


# --- export ---------------------------------------------------------------------------------------
# The export buttons live in streamlit_app.export_downloads, shared with the Train page, whose test
# uses these helpers too.

FORMATS = {"onnx": "ONNX", "state_dict": "weights (state_dict)", "full": "full checkpoint"}
SUFFIXES = {"onnx": ".onnx", "state_dict": "-weights.pth", "full": "-full.pt"}


def quiet_exporter(test):
    """What core.export silences for its users (the deprecated exporter it chooses), pytest would
    show again: each test starts from pytest's own warning filters."""
    for message in ("You are using the legacy TorchScript-based ONNX export", "The feature will be removed"):
        test = pytest.mark.filterwarnings(f"ignore:{message}:DeprecationWarning")(test)
    return test


def record_downloads(monkeypatch) -> dict[str, tuple[str | None, bytes]]:
    """From now on, every file the app hands to the browser (download buttons), by media file id:
    (its file name, its bytes)."""
    files: dict[str, tuple[str | None, bytes]] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        media = self._files_by_id[file_id]
        files[file_id] = (media.filename, media.content)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files


def downloaded(at: AppTest, label: str, served: dict) -> tuple[str | None, bytes]:
    """The file name and bytes the download button ``label`` gives the browser."""
    found = [b for b in at.get("download_button") if b.proto.label == label]
    assert found, f"no download button {label!r}: {[b.proto.label for b in at.get('download_button')]}"
    return served[Path(found[0].proto.url).stem]


def check_exports(at: AppTest, served: dict, checkpoint: Path, formats=tuple(FORMATS)) -> None:
    """Press each export button: in the same run it becomes the download of a valid export of
    ``checkpoint``, and the file's name and size are shown."""
    ckpt = load_checkpoint(checkpoint)
    for fmt in formats:
        assert not [b for b in at.get("download_button") if b.proto.label == f"Download {FORMATS[fmt]}"]
        button(at, f"Export {FORMATS[fmt]}").click()
        at.run()
        assert_clean(at)
        assert not errors(at), errors(at)
        assert not [b for b in at.button if b.label == f"Export {FORMATS[fmt]}"]  # replaced by the download
        name, data = downloaded(at, f"Download {FORMATS[fmt]}", served)
        assert name == checkpoint.stem + SUFFIXES[fmt]
        assert any(c.value.startswith(f"{name}: ") for c in at.caption)
        x = images_to_tensor(torch.tensor(load_dataset("synthetic").x_test[:5]), ckpt.spec.in_channels,
                             ckpt.spec.input_size)
        with torch.no_grad():
            ref = ckpt.model(x)
        if fmt == "onnx":
            session = ort.InferenceSession(data)
            got = session.run(None, {"input": x.numpy()})[0]
            np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)
            assert json.loads(session.get_modelmeta().custom_metadata_map["classes"]) == list(ckpt.classes)
            assert any("checked with onnxruntime on 32 test images of the built-in synthetic set" in c.value
                       for c in at.caption)
        elif fmt == "state_dict":
            net = build_model(ckpt.spec, ckpt.style)
            net.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
            with torch.no_grad():
                assert torch.equal(net.eval()(x), ref)
        else:
            full = load_checkpoint(data)
            assert (full.spec, full.style, full.classes) == (ckpt.spec, ckpt.style, ckpt.classes)
            assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                         ckpt.model.state_dict().values()))


@quiet_exporter
def test_predict_exports_the_chosen_checkpoint(predict, env, trained_dir):
    at = predict
    served = record_downloads(env.monkeypatch)
    assert any(e.label.startswith("Export this net") for e in at.expander)
    check_exports(at, served, trained_dir / "lenet-synthetic-test.pt")
    # Each stays a download button on the next runs (exported once: cached).
    at.run()
    assert {b.proto.label for b in at.get("download_button")} == {f"Download {label}" for label in FORMATS.values()}
    assert not [b for b in at.button if b.label.startswith("Export ")]


@quiet_exporter
def test_predict_exports_an_uploaded_checkpoint(predict, env):
    at = predict
    served = record_downloads(env.monkeypatch)
    case = next(c for c in checkpoint_cases(env.tmp) if c.name == "another_class_count")
    _upload_checkpoint(at, case.filename, case.data)
    path = env.tmp / case.filename
    path.write_bytes(case.data)
    check_exports(at, served, path, formats=("state_dict", "onnx"))


@quiet_exporter
def test_predict_a_refused_export_is_a_message_not_a_download(predict, env):
    at = predict

    def refuse(ckpt, data, data_dir=None):
        raise core.export.ExportError("refused: onnxruntime's logits differ from PyTorch's by up to 1.00e-02")

    env.monkeypatch.setattr(core.export, "verify_onnx", refuse)
    button(at, "Export ONNX").click()
    at.run()
    assert_clean(at)
    assert errors(at) == ["Not exported: refused: onnxruntime's logits differ from PyTorch's by up to 1.00e-02"]
    assert not at.get("download_button")
    at.run()  # the message was for that click; the button is offered again
    assert not errors(at) and button(at, "Export ONNX")
