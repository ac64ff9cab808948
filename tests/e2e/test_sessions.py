"""End-to-end reliability of one server shared by several browser sessions (headless Chromium).

* Four sessions at once on one server: two train LeNet-5 on SIGNS (different optimizers, learning
  rates and seeds), two predict an uploaded hand photo with a checkpoint saved beforehand; each
  ends with its own result: its own run alone in its Runs table, its own prediction.
* Closing a tab while its run trains leaves the server usable: a new session opens Train and
  Predict, trains and predicts, with no traceback anywhere; a checkpoint saved before is unchanged
  and loads.
* A run stopped in the middle of an epoch saves a checkpoint that loads (weights of the last step,
  metrics of the last whole epoch, no optimizer state).
* A restarted server (same checkpoint folder) lists every saved checkpoint on Predict and loads each.

Run: ``.venv/bin/python -m pytest tests/e2e/test_sessions.py -q``. Helpers come from
``test_browser.py``; the server and browser fixtures from ``conftest.py``.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import load_checkpoint
from core.inference import predict_image
from core.trainer import recipe
from tests.e2e.conftest import VIEWPORT, import_expect, start_server, train_signs_lenet
from tests.e2e.test_browser import (
    assert_clean,
    button,
    choose,
    main,
    metric,
    open_page,
    progress_step,
    progress_text,
    runs_table,
    set_number,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = import_expect()

SAVED_BEFORE = "lenet-signs-before.pt"
# SIGNS' 1,080 training photos and the generated hands the LeNet's recipe adds to them.
STEPS_PER_EPOCH = math.ceil((1080 + recipe("lenet", tuple("012345")).generated_hands) / recipe("lenet").batch_size)


# --- a checkpoint saved beforehand, and photos it tells apart --------------------------------------


@pytest.fixture(scope="module")
def saved_before(app, signs_data_dir) -> Path:
    """A LeNet-5 trained in this process (2 epochs on SIGNS), saved in the server's checkpoint folder."""
    return train_signs_lenet(signs_data_dir, 2, app.checkpoint_dir / SAVED_BEFORE)


@pytest.fixture(scope="module")
def photos(saved_before, signs_data_dir, tmp_path_factory) -> list[tuple[Path, str]]:
    """Two phone-sized JPEGs of SIGNS test photos to which the checkpoint gives different labels
    (each one it gets right, where it can), with those labels."""
    import h5py
    from PIL import Image

    with h5py.File(signs_data_dir / "signs" / "test_signs.h5", "r") as f:
        x, y = np.asarray(f["test_set_x"]), np.asarray(f["test_set_y"]).reshape(-1)
    ckpt = load_checkpoint(saved_before)
    folder = tmp_path_factory.mktemp("photos")
    by_label: dict[str, tuple[bool, bytes]] = {}
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(x[i]).resize((800, 800), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        label = predict_image(ckpt, buf.getvalue(), name="hand.jpg").label
        right = label == ckpt.classes[int(y[i])]
        if label not in by_label or (right and not by_label[label][0]):
            by_label[label] = (right, buf.getvalue())
    assert len(by_label) >= 2, f"the checkpoint gives every photo the same label: {list(by_label)}"
    chosen = sorted(by_label.items(), key=lambda kv: (not kv[1][0], kv[0]))[:2]
    out = []
    for n, (label, (_, data)) in enumerate(chosen):
        path = folder / f"hand-{n}.jpg"
        path.write_bytes(data)
        out.append((path, label))
    return out


def assert_log_clean(server) -> None:
    """The server logged no exception (an error in a fragment or a thread never reaches the page)."""
    log = server.log_tail(1_000_000)
    assert "Traceback" not in log and "Uncaught app execution" not in log, log[-6000:]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload_photo(page, photo: Path) -> None:
    main(page).locator('input[type="file"]').set_input_files(str(photo))


def open_predict(page, server, checkpoint: str = SAVED_BEFORE) -> None:
    open_page(page, server, "/predict", "Predict a hand sign")
    box = main(page).get_by_role("combobox", name="Saved checkpoint")
    if box.input_value() != checkpoint:
        choose(page, "Saved checkpoint", checkpoint)
    expect(box).to_have_value(checkpoint)


def prepare_training(page, server, epochs: int, optimizer: str | None = None, lr: str | None = None,
                     seed: str | None = None) -> None:
    open_page(page, server, "/train", "Train")
    if optimizer:
        choose(page, "Optimizer", optimizer)
    if lr:
        set_number(page, "Learning rate", lr)
    set_number(page, "Epochs", str(epochs))
    if seed:
        set_number(page, "Seed", seed)
    expect(main(page).get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value(str(epochs))


def saved_checkpoint_options(page) -> list[str]:
    main(page).get_by_role("combobox", name="Saved checkpoint").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    names = [t.strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


# --- tests -------------------------------------------------------------------------------------


def test_four_sessions_at_once_each_get_their_own_results(app, new_page, saved_before, photos):
    epochs = 4  # long enough that both runs are still training when the predictions come
    trainers = [(new_page(), "Adam", "0.01000", "1"), (new_page(), "RMSprop", "0.00100", "2")]
    predictors = [(new_page(), photo, label) for photo, label in photos]
    for page, optimizer, lr, seed in trainers:
        prepare_training(page, app, epochs, optimizer, lr, seed)
    for page, _, _ in predictors:
        open_predict(page, app)

    for page, *_ in trainers:
        button(page, "Start").click()
    wait_for(lambda: all(progress_text(p).startswith("Training:") for p, *_ in trainers), 60,
             "both training sessions to show their run training", poll_s=0.2)
    for page, photo, _ in predictors:  # both predictions asked for while both runs train
        upload_photo(page, photo)
    for page, _, label in predictors:
        expect(metric(page, "Prediction")).to_have_text(label, timeout=60_000)
    still_training = [progress_text(p).startswith("Training:") for p, *_ in trainers]
    assert any(still_training), "the runs ended before the predictions came: make them longer"

    for page, *_ in trainers:
        wait_finished(page)
    total = epochs * STEPS_PER_EPOCH
    for page, optimizer, lr, _ in trainers:
        header, *rows = runs_table(page)
        assert len(rows) == 1, rows  # its own run only
        name = rows[0][header.index("run")]
        assert name.startswith("#1 LeNet-5") and f"{optimizer} lr {float(lr):g}" in name, rows
        others = [o for _, o, _, _ in trainers if o != optimizer]
        assert not any(o in " ".join(rows[0]) for o in others), rows
        assert rows[0][header.index("status")] == "finished"
        assert f"step {total}/{total}" in progress_text(page)
        assert_clean(page)
    for page, _, label in predictors:  # still their own prediction, after the runs are over
        expect(metric(page, "Prediction")).to_have_text(label)
        expect(main(page).get_by_text("Your photo", exact=True)).to_have_count(1)
        expect(main(page).get_by_text(f"Grad-CAM for class {label}:")).to_be_visible()  # its own explanation
        assert_clean(page)
    assert len({label for _, _, label in predictors}) == 2
    assert_log_clean(app)


def test_closing_a_tab_while_it_trains_leaves_the_server_usable(app, browser, new_page, saved_before, photos):
    before = digest(saved_before)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    doomed = context.new_page()
    prepare_training(doomed, app, epochs=2)
    button(doomed, "Start").click()
    wait_for(lambda: progress_step(doomed) > 0, 60, "the run in the tab to be closed to take steps", poll_s=0.2)
    context.close()  # the tab goes away mid-run

    page = new_page()
    prepare_training(page, app, epochs=1)
    expect(main(page).get_by_test_id("stAlertContentInfo").filter(has_text="press")).to_be_visible()  # no job here
    button(page, "Start").click()
    wait_finished(page)
    header, *rows = runs_table(page)
    assert len(rows) == 1 and rows[0][header.index("status")] == "finished", rows
    assert_clean(page)

    open_predict(page, app)
    photo, label = photos[0]
    upload_photo(page, photo)
    expect(metric(page, "Prediction")).to_have_text(label, timeout=60_000)
    assert_clean(page)

    assert digest(saved_before) == before
    assert load_checkpoint(saved_before).metrics["epochs"] == 2
    assert app.process.poll() is None
    assert_log_clean(app)


def test_a_run_stopped_mid_epoch_saves_a_checkpoint_that_loads(app, page, photos):
    epochs = 6  # long enough that Stop lands mid-run
    prepare_training(page, app, epochs)
    button(page, "Start").click()
    # At least one whole epoch (Save is offered from then on), then stop inside the next one.
    wait_for(lambda: progress_step(page) > STEPS_PER_EPOCH + 1, 120, "the second epoch to begin", poll_s=0.1)
    button(page, "Stop").click()
    expect(main(page).get_by_test_id("stProgress")).to_contain_text("Stopped:", timeout=60_000)
    stopped_at = progress_step(page)
    assert STEPS_PER_EPOCH < stopped_at < epochs * STEPS_PER_EPOCH, progress_text(page)
    # The bar names the epoch the last step was in, and the finished ones apart ("epoch 3/12 · … (2 done)").
    text = progress_text(page)
    shown = int(re.search(r"epoch (\d+)/", text).group(1))
    done = re.search(r"\((\d+) done\)", text)
    whole_epochs = int(done.group(1)) if done else shown
    assert whole_epochs == stopped_at // STEPS_PER_EPOCH, text
    assert shown == (whole_epochs + 1 if stopped_at % STEPS_PER_EPOCH else whole_epochs), text

    # Saved under the name suggested, which no earlier session's checkpoint has (run numbers restart per session).
    before = {p.name for p in app.checkpoint_dir.glob("*.pt")}
    button(page, "Save checkpoint").click()
    saved = main(page).get_by_test_id("stAlertContentSuccess").filter(has_text="Saved")
    expect(saved).to_contain_text("lenet-signs-run1", timeout=60_000)
    assert_clean(page)
    name = re.search(r"Saved (\S+\.pt)", saved.inner_text()).group(1)
    assert name not in before, (name, before)
    ckpt = load_checkpoint(app.checkpoint_dir / name)
    # The epochs finished, and the test figures of the weights saved: those after the last step taken.
    assert ckpt.metrics["epochs"] == whole_epochs and ckpt.metrics["steps"] == stopped_at
    assert len(ckpt.history["step_losses"]) == stopped_at
    assert ckpt.optimizer_state is None  # mid-epoch: no resumable optimizer state is claimed
    assert predict_image(ckpt, photos[0][0].read_bytes(), name="hand.jpg").label in ckpt.classes
    assert_log_clean(app)


def test_a_restarted_server_lists_and_loads_the_saved_checkpoints(app, signs_data_dir, new_page, saved_before,
                                                                   photos):
    saved = {p.name: digest(p) for p in app.checkpoint_dir.glob("*.pt")}
    assert SAVED_BEFORE in saved
    app.stop()
    assert app.process.poll() is not None
    server = start_server(signs_data_dir, app.checkpoint_dir.parent)  # the same checkpoint folder
    try:
        assert server.checkpoint_dir == app.checkpoint_dir
        page = new_page()
        open_page(page, server, "/predict", "Predict a hand sign")
        assert sorted(saved_checkpoint_options(page)) == sorted(saved)
        for name in saved:
            choose(page, "Saved checkpoint", name)
            expect(main(page).get_by_role("combobox", name="Saved checkpoint")).to_have_value(name)
            expect(metric(page, "Classes")).to_have_text("6")
            expect(main(page).get_by_test_id("stAlertContentError")).to_have_count(0)
            assert_clean(page)
        choose(page, "Saved checkpoint", SAVED_BEFORE)
        photo, label = photos[0]
        upload_photo(page, photo)
        expect(metric(page, "Prediction")).to_have_text(label, timeout=60_000)
        assert_clean(page)
        assert {p.name: digest(p) for p in server.checkpoint_dir.glob("*.pt")} == saved
        assert_log_clean(server)
    finally:
        server.stop()
