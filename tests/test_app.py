"""The app's four pages through Streamlit's AppTest: what a user sees, clicks, uploads.

Every test starts the real entry point (``streamlit_app.py``: navigation + shared shell), switches
to a page and drives its widgets. Data come from ``$TORCHLAB_DATA_DIR`` (an empty tmp dir → the
built-in synthetic set; the ``data_dir`` fixture → the tutorial's real files) and checkpoints go to
``$TORCHLAB_CHECKPOINT_DIR`` (a tmp dir). Every page must render without an exception element and
without "Traceback" in any element.

Uploads: Streamlit 1.67's AppTest supports both input widgets directly —
``at.file_uploader[...].set_value((name, bytes, mime))`` (or a list of such tuples) and
``at.camera_input[...].set_value(("x.jpg", bytes, "image/jpeg"))``. The camera element only
accepts a ``.jpg`` name and the ``image/jpeg`` type (what a browser's camera produces); the bytes
themselves are free, so the camera test sends PNG bytes under that name: the app decodes by
content, not by name.

Page discovery: before every run AppTest resets Streamlit's legacy ``pages/`` discovery flag
(``PagesManager.uses_pages_directory``), so each run starts as the very first run of a fresh server
would: the page runs alone, ``page_setup``'s deep-link repair switches discovery off and reruns —
and that rerun drops any button click of the run. A real server pays this once per process. The
``apps`` fixture therefore puts each run in that steady state (flag off, as ``st.navigation`` leaves
it), by wrapping ``PagesManager.__init__``; ``test_fresh_server_renders_every_page`` covers the
first-run path without the wrapper.

Training happens on a background thread: tests press Start, then poll
``at.session_state["job"].running`` with a deadline, re-running the script now and then as the
page's live fragment would, and run it once more when the job is done.
"""
from __future__ import annotations

import mimetypes
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.checkpoint import load_checkpoint, save_checkpoint
from core.data import load_dataset
from core.nets import build_model, count_parameters
from core.spec import ModelSpec, default_spec
from core.trainer import TrainConfig, Trainer
from tests.bad_inputs import H5Case, checkpoint_cases, encode, hdf5_cases, image_cases

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 120  # seconds per script run (generous: the CPU is shared)
JOB_TIMEOUT = 180  # seconds for a background training run to end


# --- helpers --------------------------------------------------------------------------------------


def _clear_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty data dir (→ synthetic set) and an empty checkpoint dir, with fresh Streamlit caches."""
    data, ckpt = tmp_path / "data", tmp_path / "checkpoints"
    data.mkdir()
    ckpt.mkdir()
    monkeypatch.setenv("TORCHLAB_DATA_DIR", str(data))
    monkeypatch.setenv("TORCHLAB_CHECKPOINT_DIR", str(ckpt))
    _clear_caches()
    yield SimpleNamespace(data=data, ckpt=ckpt, tmp=tmp_path, monkeypatch=monkeypatch)
    _clear_caches()


@pytest.fixture
def steady_server(monkeypatch):
    """Every AppTest run as on a server where ``st.navigation`` already ran (see the module doc)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def apps(steady_server):
    """Makes AppTests; stops any training job they left running when the test ends."""
    made: list[AppTest] = []

    def make(page: str | None = None, **state) -> AppTest:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=RUN_TIMEOUT)
        for key, value in state.items():
            at.session_state[key] = value
        made.append(at)
        at.run()
        assert_clean(at)
        if page is not None:
            at.switch_page(page)
            at.run()
        return at

    yield make
    for at in made:
        for run in _state(at, "runs", []):
            if run.get("job") is not None:
                run["job"].stop(timeout=60)


def _state(at: AppTest, key: str, default=None):
    try:
        return at.session_state[key]
    except KeyError:
        return default


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def assert_clean(at: AppTest) -> None:
    """No exception element, and no element anywhere (main or sidebar) mentions a traceback."""
    assert not at.exception, [e.message for e in at.exception]
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            assert "Traceback" not in str(proto), f"a {node.type} element shows a traceback"


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[0]


def disabled(widget) -> bool:
    return bool(widget.proto.disabled)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def plotly_keys(at: AppTest) -> list[str | None]:
    return [c.key for c in at.get("plotly_chart")]


def table(at: AppTest, column: str):
    """The first dataframe that has ``column``."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no dataframe with a {column!r} column")


def wait_for_job(at: AppTest, timeout: float = JOB_TIMEOUT) -> None:
    """Poll the session's training job until it is no longer running, then re-run the page."""
    job = at.session_state["job"]
    deadline = time.monotonic() + timeout
    last_run = time.monotonic()
    while job.running:
        assert time.monotonic() < deadline, f"training did not end within {timeout} s: {job.progress()}"
        time.sleep(0.25)
        if time.monotonic() - last_run > 3:  # as the page's live fragment would, now and then
            at.run()
            assert_clean(at)
            last_run = time.monotonic()
    at.run()
    assert_clean(at)


def hand_photo(size: int = 480, fmt: str = "JPEG", index: int = 0) -> bytes:
    """A synthetic test image of a hand, enlarged to ``size``×``size``, as a photo file."""
    ds = load_dataset("synthetic")
    image = Image.fromarray(np.asarray(ds.x_test[index])).resize((size, size), Image.Resampling.BICUBIC)
    return encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def mime(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


# --- every page -----------------------------------------------------------------------------------

PAGE_TITLES = {"pages/home.py": "🔥 TorchLab", "pages/build.py": "Build a net", "pages/train.py": "Train",
               "pages/predict.py": "Predict a hand sign"}


@pytest.mark.parametrize("page", list(PAGE_TITLES))
def test_fresh_server_renders_every_page(env, page):
    """Without the steady-server wrapper: each run goes through the deep-link repair and still
    renders the page asked for (what a user opening a page's URL on a fresh server sees)."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=RUN_TIMEOUT)
    at.run()
    assert_clean(at)
    at.switch_page(page)
    at.run()
    assert_clean(at)
    assert at.title[0].value == PAGE_TITLES[page]


# --- Overview -------------------------------------------------------------------------------------


def test_overview_with_no_data_files_says_synthetic(env, apps):
    at = apps()
    assert at.title[0].value == "🔥 TorchLab"
    rows = table(at, "data set")
    assert len(rows) == 1
    assert rows.iloc[0]["kind"] == "synthetic (generated)"
    assert "synthetic" in rows.iloc[0]["data set"]
    assert any("synthetic" in i.value for i in at.info)
    assert any("built-in synthetic" in w.value for w in at.sidebar.warning)
    assert [e.label for e in at.expander] == ["Add the real data files"]
    assert_clean(at)


def test_overview_lists_signs_when_the_real_files_are_there(env, apps, data_dir):
    env.monkeypatch.setenv("TORCHLAB_DATA_DIR", str(data_dir))
    at = apps()
    rows = table(at, "data set")
    assert "SIGNS hand signs (0–5)" in list(rows["data set"])
    signs = rows[rows["data set"] == "SIGNS hand signs (0–5)"].iloc[0]
    assert signs["kind"] == "real photos" and signs["train"] == 1080 and signs["classes"] == "0, 1, 2, 3, 4, 5"
    assert not any("Only the built-in" in i.value for i in at.info)
    assert any("SIGNS" in s.value for s in at.sidebar.success)
    assert_clean(at)


def _upload_h5(at: AppTest, files: list[tuple[str, bytes]]) -> None:
    at.file_uploader(key="h_data_upload").set_value([(n, d, "application/x-hdf5") for n, d in files])
    at.run()
    assert_clean(at)
    button(at, "Check and add").click()
    at.run()
    assert_clean(at)


def test_overview_upload_adds_the_real_files(env, apps, data_dir):
    at = apps()
    real = {n: (data_dir / "signs" / n).read_bytes() for n in ("train_signs.h5", "test_signs.h5")}
    _upload_h5(at, [("train_signs.h5", real["train_signs.h5"])])
    assert not errors(at)
    assert any("Added train_signs.h5" in s.value for s in at.success)
    assert (env.data / "signs" / "train_signs.h5").read_bytes() == real["train_signs.h5"]
    # With its test file too, SIGNS appears in the table.
    _upload_h5(at, [("test_signs.h5", real["test_signs.h5"])])
    at.run()
    assert "SIGNS hand signs (0–5)" in list(table(at, "data set")["data set"])
    assert_clean(at)


def test_overview_upload_refuses_bad_files_and_keeps_a_good_one(env, apps, data_dir):
    good = (data_dir / "signs" / "train_signs.h5").read_bytes()
    target = env.data / "signs" / "train_signs.h5"
    target.parent.mkdir()
    shutil.copyfile(data_dir / "signs" / "train_signs.h5", target)
    cases: list[H5Case] = [c for c in hdf5_cases(env.tmp) if not c.ok]
    big = next(c for c in cases if c.upload_limit)
    env.monkeypatch.setattr("core.data.MAX_UPLOAD_BYTES", big.upload_limit)
    at = apps()
    _upload_h5(at, [(c.filename, c.data) for c in cases])
    shown = errors(at)
    assert len(shown) == len(cases), shown
    for message in shown:
        assert message.startswith("Not added: train_signs.h5: "), message
    assert any("larger than the 1 MB limit" in m for m in shown)
    assert not at.success
    assert target.read_bytes() == good
    assert sorted(p.name for p in target.parent.iterdir()) == ["train_signs.h5"]


# --- Build ----------------------------------------------------------------------------------------


def test_build_default_lenet(env, apps):
    at = apps("pages/build.py")
    assert at.title[0].value == "Build a net"
    assert metrics(at)["Parameters"] == "1,144,618"
    assert any("Both styles give identical outputs" in s.value for s in at.success)
    assert any("nn.Conv2d" in c.value for c in at.code)
    assert_clean(at)


def test_build_mlp_hidden_sizes_change_code_and_summary(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    assert_clean(at)
    at.text_input(key="b_hidden").set_value("32, 16")
    at.run()
    assert_clean(at)
    spec = ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16), batchnorm=False)
    assert metrics(at)["Parameters"] == f"{count_parameters(build_model(spec)):,}"
    module_code, sequential_code = (c.value for c in at.code)
    for code in (module_code, sequential_code):
        assert "nn.Linear(12288, 32)" in code and "nn.Linear(32, 16)" in code and "nn.Linear(16, 6)" in code
        assert "nn.Linear(12288, 20)" not in code and "nn.Linear(20, 7)" not in code  # the old widths are gone
    layers = table(at, "layer")
    assert list(layers["type"]).count("Linear") == 3
    assert any("Both styles give identical outputs" in s.value for s in at.success)


def test_build_refuses_hidden_sizes_that_are_not_numbers(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    for text in ("abc", "20, -7", "0"):
        at.text_input(key="b_hidden").set_value(text)
        at.run()
        assert_clean(at)
        assert any("don't make a valid net" in e for e in errors(at)), (text, errors(at))
        assert not at.code  # the page stopped before drawing the code
    at.text_input(key="b_hidden").set_value("20, 7, 5")
    at.run()
    assert not errors(at) and len(at.code) == 2


def test_build_use_this_net_sets_the_spec_and_opens_train(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    at.text_input(key="b_hidden").set_value("32, 16")
    at.run()
    button(at, "Use this net").click()
    at.run()
    assert_clean(at)
    spec = at.session_state["spec"]
    assert spec == ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16), batchnorm=False)
    assert at.session_state["spec_dataset"] == "synthetic"
    assert at.title[0].value == "Train"
    assert any("MLP, hidden 32-16" in c.value for c in at.caption)


# --- Train ----------------------------------------------------------------------------------------

MLP = default_spec("mlp")


def _train_page(apps, spec: ModelSpec, **settings) -> AppTest:
    """The Train page with ``spec`` chosen and widgets set (number inputs, selects, toggles)."""
    at = apps("pages/train.py", spec=spec, spec_dataset="synthetic")
    kinds = {  # element lists are looked up after each run: a list from an earlier run is stale
        "t_optimizer": "selectbox", "t_schedule": "selectbox", "t_lr": "number_input",
        "t_epochs": "number_input", "t_batch": "select_slider", "t_augment": "toggle",
    }
    for key, value in settings.items():
        if key == "t_lr":  # the optimizer's own widgets appear once it is chosen
            at.run()
        getattr(at, kinds[key])(key=key).set_value(value)
    at.run()
    assert_clean(at)
    return at


def test_train_start_finish_save(env, apps):
    at = _train_page(apps, MLP, t_epochs=1, t_batch=64, t_augment=False)
    assert any("press **Start**" in i.value for i in at.info)
    button(at, "Start").click()
    at.run()
    assert_clean(at)
    assert not errors(at)
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.message
    runs = table(at, "run")
    assert len(runs) == 1
    assert runs.iloc[0]["status"] == "finished" and runs.iloc[0]["epochs"] == 1
    assert runs.iloc[0]["run"].startswith("#1 MLP")
    assert {"live_steps", "live_epochs", "compare", "confusion"} <= set(plotly_keys(at))

    at.text_input(key=f"t_name_{runs.iloc[0]['run']}").set_value("my mlp")
    at.run()
    button(at, "Save checkpoint").click()
    at.run()
    assert_clean(at)
    path = env.ckpt / "my-mlp.pt"
    assert any("Saved `my-mlp.pt`" in s.value for s in at.success)
    assert [p.name for p in env.ckpt.iterdir()] == ["my-mlp.pt"]
    ckpt = load_checkpoint(path)
    assert ckpt.spec == MLP and ckpt.classes == tuple("012345")
    assert ckpt.metrics["epochs"] == 1 and ckpt.dataset["key"] == "synthetic"
    at.run()  # the Runs table is drawn above the Save button: it shows the name from the next run on
    assert table(at, "run").iloc[0]["saved as"] == "my-mlp.pt"
    assert any(b.label == "Download checkpoint" for b in at.get("download_button"))


def test_train_stop_and_resume(env, apps):
    at = _train_page(apps, MLP, t_epochs=10, t_batch=8, t_augment=False)
    button(at, "Start").click()
    at.run()
    button(at, "Stop").click()
    at.run()
    assert_clean(at)
    job = at.session_state["job"]
    assert job.status == "stopped" and not job.running
    assert not job.trainer.finished, "the run ended before Stop: make it longer"
    stopped_at = job.trainer.step
    assert table(at, "run").iloc[0]["status"] == "stopped"
    assert any(p.text.startswith("Stopped: epoch") for p in at.progress)
    assert not disabled(button(at, "Resume")) and disabled(button(at, "Stop"))

    button(at, "Resume").click()
    at.run()
    wait_for_job(at)
    assert job.status == "finished" and job.trainer.epoch == 10 and job.trainer.step > stopped_at
    assert table(at, "run").iloc[0]["status"] == "finished"
    assert disabled(button(at, "Resume"))
    assert len(job.history().epochs) == 10


def test_train_diverging_learning_rate_ends_with_an_error(env, apps):
    spec = default_spec("lenet").replace(batchnorm=False)
    # SGD with momentum at lr 10 overflows to NaN within an epoch (plain SGD merely kills the ReLUs).
    at = _train_page(apps, spec, t_optimizer="momentum", t_schedule="constant", t_lr=10.0, t_epochs=1, t_batch=16,
                     t_augment=False)
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    job = at.session_state["job"]
    assert (job.trainer.config.lr, job.trainer.config.optimizer, job.trainer.config.epochs) == (10.0, "momentum", 1)
    assert job.status == "diverged"
    shown = errors(at)
    assert len(shown) == 1 and "learning rate" in shown[0] and "smaller" in shown[0], shown
    assert table(at, "run").iloc[0]["status"] == "diverged"
    assert not [b for b in at.button if b.label == "Save checkpoint"]  # a diverged net is not offered
    assert disabled(button(at, "Resume"))
    assert_clean(at)


def test_train_switching_optimizers_keeps_every_setting(env, apps):
    """Regression: only the chosen optimizer's sliders are drawn, and Streamlit dropped the others'
    state, so after adam → sgd the next run raised KeyError 't_beta1' (an exception page)."""
    at = _train_page(apps, MLP)
    for optimizer in ("sgd", "momentum", "rmsprop", "adam", "sgd"):
        at.selectbox(key="t_optimizer").set_value(optimizer)
        at.run()
        at.run()  # the run after the one that stopped drawing a slider is where it broke
        assert_clean(at)
    at.selectbox(key="t_optimizer").set_value("momentum")
    at.run()
    assert at.slider(key="t_momentum").value == 0.9  # the recipe's, not the slider's minimum


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


def _assert_prediction(at: AppTest, classes: tuple[str, ...]) -> None:
    assert_clean(at)
    assert not errors(at), errors(at)
    assert metrics(at)["Prediction"] in classes
    assert "probs" in plotly_keys(at)


def test_predict_a_photo(predict):
    at = predict
    assert metrics(at)["Classes"] == "6"
    at.file_uploader(key="p_photo").set_value(("hand.jpg", hand_photo(480), "image/jpeg"))
    at.run()
    _assert_prediction(at, tuple("012345"))
    captions = [c for im in at.image for c in im.captions]
    assert "Your photo" in captions and "What the net sees: 64×64, gray" in captions


def test_predict_from_the_camera(predict):
    at = predict
    png = hand_photo(480, "PNG", index=1)
    assert png.startswith(b"\x89PNG")
    at.camera_input(key="p_camera").set_value(("snap.jpg", png, "image/jpeg"))  # AppTest wants a .jpg name
    at.run()
    _assert_prediction(at, tuple("012345"))


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
