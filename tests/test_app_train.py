"""The Train page."""
from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.capture import CaptureSet
from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.spec import ModelSpec, default_spec
from core.trainer import TrainConfig, Trainer, finetune_recipe, recipe
from tests.apptest import assert_clean, button, disabled, errors, hand_photo, plotly_keys, table, wait_for_job
from tests.test_app_predict import check_exports, downloaded, quiet_exporter, record_downloads

MLP = default_spec("mlp")


def _train_page(apps, spec: ModelSpec, **settings) -> AppTest:
    """The Train page with ``spec`` chosen and widgets set (number inputs, selects, toggles)."""
    at = apps("pages/train.py", spec=spec, spec_dataset="synthetic")
    kinds = {  # element lists are looked up after each run: a list from an earlier run is stale
        "t_optimizer": "selectbox", "t_schedule": "selectbox", "t_lr": "number_input",
        "t_epochs": "number_input", "t_batch": "select_slider", "t_augment": "toggle", "t_generated": "number_input",
    }
    for key, value in settings.items():
        if key == "t_lr":  # the optimizer's own widgets appear once it is chosen
            at.run()
        getattr(at, kinds[key])(key=key).set_value(value)
    at.run()
    assert_clean(at)
    return at


def _start_and_finish(at: AppTest):
    """Press Start, wait for the run to end, and return its job (it must have finished cleanly)."""
    button(at, "Start").click()
    at.run()
    assert_clean(at)
    assert not errors(at)
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.message
    return job


def test_train_start_finish_save(env, apps):
    at = _train_page(apps, MLP, t_epochs=1, t_batch=64, t_augment=False)
    assert any("press **Start**" in i.value for i in at.info)
    job = _start_and_finish(at)
    runs = table(at, "run")
    assert len(runs) == 1
    assert runs.iloc[0]["status"] == "finished" and runs.iloc[0]["epochs"] == 1
    # Accuracies in percent, drawn with one decimal in every row (the "percent" format gave 43.8 %, 68.33 %, 70 %).
    assert runs.iloc[0]["test acc"] == pytest.approx(100 * job.trainer.history.epochs[-1].test_acc)
    columns = json.loads(next(d for d in at.dataframe if "run" in d.value.columns).proto.columns)
    assert columns["test acc"]["type_config"]["format"] == columns["train acc"]["type_config"]["format"] == "%.1f %%"
    assert runs.iloc[0]["run"].startswith("#1 MLP")
    assert {"live_steps", "live_epochs", "compare", "confusion"} <= set(plotly_keys(at))

    at.text_input(key=f"t_name_{runs.iloc[0]['run']}").set_value("my mlp")
    at.run()
    button(at, "Save checkpoint").click()
    at.run()
    assert_clean(at)
    path = env.ckpt / "my-mlp.pt"
    assert any("Saved `my-mlp.pt`: the Predict page opens with it." in s.value for s in at.success)
    assert at.session_state["p_pick"] == "my-mlp.pt"
    assert [p.name for p in env.ckpt.iterdir()] == ["my-mlp.pt"]
    ckpt = load_checkpoint(path)
    assert ckpt.spec == MLP and ckpt.classes == tuple("012345")
    assert ckpt.metrics["epochs"] == 1 and ckpt.dataset["key"] == "synthetic"
    at.run()  # the Runs table is drawn above the Save button: it shows the name from the next run on
    assert table(at, "run").iloc[0]["saved as"] == "my-mlp.pt"
    assert any(b.label == "Download checkpoint (.pt)" for b in at.get("download_button"))
    assert not any("set aside from the same photos" in c.value for c in at.caption)  # a built-in set's own split


def test_another_net_brings_its_recipe_and_the_page_says_so(env, apps):
    # The user set RMSprop and 5 epochs, then chose another net on Build: the settings became that
    # net's recipe without a word before.
    at = _train_page(apps, default_spec("lenet"), t_optimizer="rmsprop", t_epochs=5)
    assert not any("recipe of the" in i.value for i in at.info)
    at.session_state["spec"] = MLP  # what Build's "Use this net" does
    at.run()
    assert_clean(at)
    assert any("now the recipe of the MLP" in i.value for i in at.info), [i.value for i in at.info]
    mlp = recipe("mlp")
    assert (at.selectbox(key="t_optimizer").value, at.number_input(key="t_epochs").value) == (mlp.optimizer, mlp.epochs)
    at.run()
    assert not any("recipe of the" in i.value for i in at.info)  # said once


def test_a_run_opened_by_its_address_shows_its_own_net_and_settings(env, apps):
    # A refresh or a second tab is a new session on the run's URL: the form showed that session's
    # defaults (LeNet, 40 epochs) beside the run, not the run's own net and settings.
    one = _train_page(apps, MLP, t_optimizer="rmsprop", t_epochs=3)
    button(one, "Start").click()
    one.run()
    wait_for_job(one)
    run = one.session_state["runs"].current
    two = apps("pages/train.py")  # another browser session, on the LeNet by default
    assert two.number_input(key="t_epochs").value == recipe("lenet").epochs
    two.query_params["run"] = run.id
    two.run()
    assert_clean(two)
    assert two.session_state["runs"].current is run
    assert two.session_state["spec"] == MLP
    assert (two.selectbox(key="t_optimizer").value, two.number_input(key="t_epochs").value) == ("rmsprop", 3)
    assert not any("recipe of the" in i.value for i in two.info)  # the run's settings stay; no recipe replaced them


def test_a_save_never_replaces_another_checkpoint_unasked(env, apps):
    # Run numbers start at #1 in every session, so the suggested name of a new session's first run
    # was the name of the last session's first run: one click saved over a good net.
    first = _train_page(apps, MLP, t_epochs=1, t_batch=128, t_augment=False)
    button(first, "Start").click()
    first.run()
    wait_for_job(first)
    button(first, "Save checkpoint").click()
    first.run()
    [good] = env.ckpt.glob("*.pt")
    kept = good.read_bytes()

    second = _train_page(apps, MLP, t_epochs=1, t_batch=128, t_augment=False)  # another browser session
    button(second, "Start").click()
    second.run()
    wait_for_job(second)
    key = f"t_name_{second.selectbox(key='t_pick').value}"
    assert second.text_input(key=key).value == f"{good.stem}-2"  # a free name is suggested
    second.text_input(key=key).set_value(good.stem)  # the user types the taken one
    second.run()
    assert any(f"called **{good.name}** exists already" in w.value for w in second.warning)
    assert button(second, "Save checkpoint").proto.disabled
    assert good.read_bytes() == kept
    replace = next(c for c in second.checkbox if c.label == f"Replace the saved {good.name}")
    replace.check()
    second.run()
    assert not any("exists already" in w.value for w in second.warning)
    button(second, "Save checkpoint").click()
    second.run()
    assert_clean(second)
    assert good.read_bytes() != kept and load_checkpoint(good).metrics["epochs"] == 1
    # Saving this run again goes over its own file without asking; nothing is left ticked.
    assert not any(c.label.startswith("Replace the saved") and c.value for c in second.checkbox)
    assert not button(second, "Save checkpoint").proto.disabled


def test_save_and_inspect_follows_the_run_that_ended_last(env, apps):
    # After a second run, Save would otherwise still point at the first: the user saves the wrong net.
    at = _train_page(apps, MLP, t_epochs=1, t_batch=128, t_augment=False)
    for number in (1, 2):
        button(at, "Start").click()
        at.run()
        wait_for_job(at)
        assert at.selectbox(key="t_pick").value.startswith(f"#{number} "), number
    at.selectbox(key="t_pick").set_value(at.selectbox(key="t_pick").options[1])  # the user looks at #1 again
    at.run()
    assert at.selectbox(key="t_pick").value.startswith("#1 ")  # a choice of theirs stays until a run ends


@quiet_exporter
def test_train_exports_the_saved_checkpoint(env, apps):
    at = _train_page(apps, MLP, t_epochs=1, t_batch=128, t_augment=False)
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    assert not [b for b in at.button if b.label == "Export ONNX"]  # nothing to export before it is saved
    button(at, "Save checkpoint").click()
    at.run()
    assert_clean(at)
    [path] = env.ckpt.glob("*.pt")
    served = record_downloads(env.monkeypatch)
    # The saved file itself is the full checkpoint's download; the exports are the other formats.
    assert not [b for b in at.button if b.label == "Export full checkpoint"]
    check_exports(at, served, path, formats=("onnx", "state_dict"))
    name, data = downloaded(at, "Download checkpoint (.pt)", served)
    assert name == path.name and data == path.read_bytes()


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
    trainer = job.trainer
    (bar,) = [p.text for p in at.progress]
    if trainer.at_epoch_boundary:
        assert bar.startswith(f"Stopped: epoch {trainer.epoch}/10 ·") and "done)" not in bar
    else:  # inside an epoch: that epoch's number, the finished ones said apart, and the report's weights explained
        assert bar.startswith(f"Stopped: epoch {trainer.epoch + 1}/10 · step {trainer.step}/") and \
            f"({trainer.epoch} done)" in bar, bar
        explained = any(c.value.startswith(f"Stopped inside epoch {trainer.epoch + 1}: the matrix reads the weights")
                        for c in at.caption)
        assert explained == (trainer.epoch > 0)  # the report is offered once an epoch has ended
    # Runs compared by their epochs: before the first one ends there is nothing to draw, and it says so.
    waiting = any(c.value.startswith("The comparison draws itself once") for c in at.caption)
    assert waiting == (trainer.epoch == 0) and ("compare" in plotly_keys(at)) == (trainer.epoch > 0)
    assert not disabled(button(at, "Resume")) and disabled(button(at, "Stop"))

    button(at, "Resume").click()
    at.run()
    wait_for_job(at)
    assert job.status == "finished" and job.trainer.epoch == 10 and job.trainer.step > stopped_at
    assert table(at, "run").iloc[0]["status"] == "finished"
    assert disabled(button(at, "Resume"))
    assert len(job.history().epochs) == 10


def test_generated_hands_join_a_lenet_run_on_finger_counts_and_not_on_other_classes(env, apps):
    # The LeNet's recipe for hand signs adds generated hands; the user sets how many, and the run
    # trains on its photos and those.
    _own_set(env, ("rock", "paper", "scissors", "lizard", "spock", "well"))
    at = _train_page(apps, default_spec("lenet"), t_epochs=1, t_augment=False)
    field = at.number_input(key="t_generated")
    assert field.value == recipe("lenet", tuple("012345")).generated_hands == 1200 and not field.disabled
    field.set_value(60)
    at.run()
    job = _start_and_finish(at)
    assert job.trainer.config.generated_hands == 60 and len(job.trainer.x_train) == 1200 + 60
    assert "+ 60 generated hands" in table(at, "run").iloc[0]["settings"]

    # A data set of other classes: the field is off, and the run has none.
    other = apps("pages/train.py", spec=default_spec("lenet", 6), spec_dataset="my-hand")
    other.selectbox(key="t_dataset").set_value("my-hand")
    other.number_input(key="t_epochs").set_value(1)
    other.select_slider(key="t_batch").set_value(0)  # full batch: a few photos
    other.run()
    field = other.number_input(key="t_generated")
    assert field.disabled and "Only for data sets whose classes are 0–5" in field.help
    assert field.value == 0  # shows what the run gets, not the recipe's 1,200
    job = _start_and_finish(other)
    assert job.trainer.config.generated_hands == 0 and len(job.trainer.x_train) == len(job.trainer.dataset.x_train)
    # Back on a set of finger counts, the field has the number the user had there.
    other.selectbox(key="t_dataset").set_value("synthetic")
    other.run()
    field = other.number_input(key="t_generated")
    assert field.value == 1200 and not field.disabled


def test_a_run_that_learnt_nothing_says_so_and_why(env, apps):
    # Plain SGD at 10 with batch norm does not overflow: it ends at chance (1 in 6), silently before.
    at = _train_page(apps, default_spec("lenet"), t_optimizer="sgd", t_schedule="constant", t_lr=10.0, t_epochs=2,
                     t_batch=64, t_augment=False, t_generated=0)
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    assert at.session_state["job"].status == "finished"
    (warning,) = [w.value for w in at.warning if "learnt nothing" in w.value]
    assert "a guess among 6 classes is right 17%" in warning and "SGD at 10" in warning, warning
    assert "too large" in warning or "overshoot" in warning
    # The warning's remedy, "Reset to recipe", puts the recipe back into every setting.
    button(at, "Reset to recipe").click()
    at.run()
    assert_clean(at)
    usual = recipe("lenet", tuple("012345"))
    assert (at.selectbox(key="t_optimizer").value, at.number_input(key="t_lr").value, at.number_input(key="t_epochs").value,
            at.selectbox(key="t_schedule").value, at.number_input(key="t_generated").value) == (
        usual.optimizer, usual.lr, usual.epochs, usual.schedule, usual.generated_hands)
    # A run that learnt something says nothing of the kind.
    at.selectbox(key="t_optimizer").set_value("sgd")
    at.selectbox(key="t_schedule").set_value("constant")
    at.toggle(key="t_augment").set_value(False)
    at.number_input(key="t_epochs").set_value(2)
    at.number_input(key="t_generated").set_value(0)
    at.run()
    at.number_input(key="t_lr").set_value(0.01)
    at.run()
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    assert not [w for w in at.warning if "learnt nothing" in w.value]


def test_the_default_mlp_learns_and_the_tutorials_says_why_it_does_not(env, apps):
    # The tutorial's MLP (no batch norm) stays at chance on the built-in set under the recipe — every
    # ReLU dead — and the old advice ("reset to the recipe") pointed at the settings already in use.
    tutorial = _train_page(apps, MLP.replace(batchnorm=False), t_epochs=10)
    button(tutorial, "Start").click()
    tutorial.run()
    wait_for_job(tutorial)
    (warning,) = [w.value for w in tutorial.warning if "learnt nothing" in w.value]
    assert "without batch norm" in warning and "Turn batch norm on" in warning, warning
    # The default MLP has batch norm, and the same recipe teaches it.
    assert MLP.batchnorm
    default = _train_page(apps, MLP, t_epochs=10)
    button(default, "Start").click()
    default.run()
    wait_for_job(default)
    assert not [w for w in default.warning if "learnt nothing" in w.value]
    assert default.session_state["job"].trainer.history.epochs[-1].test_acc > 0.5


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




# --- starting from a saved checkpoint ---------------------------------------------------------------


def _saved_mlp(env, epochs: int, planned: int, name: str, dataset_key: str | None = None) -> str:
    """An MLP trained ``epochs`` of ``planned`` epochs on the synthetic set, saved in the checkpoint dir."""
    trainer = Trainer(MLP, load_dataset("synthetic"), TrainConfig(epochs=planned, batch_size=128, augment=False))
    for _ in trainer.run(lambda: trainer.epoch >= epochs):
        pass
    path = trainer.save(env.ckpt / name)
    if dataset_key is not None:  # stands in for a run on other data (only the menus read it)
        import torch

        payload = torch.load(path, weights_only=True)
        payload["dataset"]["key"] = dataset_key
        torch.save(payload, path)
    return path.name


def _own_set(env, classes: tuple[str, ...], per_class: int = 3, name: str = "my-hand") -> None:
    cs = CaptureSet(list(classes))
    for k, c in enumerate(classes):
        for i in range(per_class):
            cs.add(c, hand_photo(96, index=(k * per_class + i) % 100), f"{c}{i}.jpg")
    cs.save(name, env.data)


def _from_checkpoint(at: AppTest, name: str, mode: str) -> None:
    at.radio(key="t_start").set_value("checkpoint")
    at.run()
    at.selectbox(key="t_ckpt").set_value(name)
    at.radio(key="t_mode").set_value(mode)
    at.run()
    assert_clean(at)


def test_finetune_a_checkpoint_on_own_classes_with_the_last_layers_only(env, apps):
    source = _saved_mlp(env, 1, 1, "mlp-synthetic.pt")
    _own_set(env, ("rock", "paper"))
    at = apps("pages/train.py")
    _from_checkpoint(at, source, "finetune")
    at.radio(key="t_freeze").set_value("features")
    at.selectbox(key="t_dataset").set_value("my-hand")
    at.run()
    # The fine-tuning recipe is in the widgets, and the page says what happens to the head.
    ft = finetune_recipe("mlp")
    assert at.number_input(key="t_epochs").value == ft.epochs and at.number_input(key="t_lr").value == ft.lr
    assert at.selectbox(key="t_augmentation").value == "mirrored"
    assert any("new head" in i.value and "paper, rock" in i.value for i in at.info)
    at.number_input(key="t_epochs").set_value(3)
    at.run()
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.message
    assert job.trainer.freeze == "features" and job.trainer.new_head
    assert job.trainer.dataset.classes == ("paper", "rock")
    assert any("new head for 2 classes" in c.value for c in at.caption)
    assert "fine-tuned from mlp-synthetic.pt (last layers)" in table(at, "run").iloc[0]["run"]
    # The test report under the run reads each photo as Predict will (with its mirror image, for a
    # net trained on mirrored photos), and gives the curves' figure (each photo alone) beside it.
    alone = f"{job.trainer.evaluate_test().accuracy:.1%}"
    assert any("read with its mirror image, as Predict reads this net" in c.value and f"Read alone, as the curves "
               f"above: {alone}" in c.value for c in at.caption), [c.value for c in at.caption]
    # Saved, it says where it came from and predicts the user's classes.
    button(at, "Save checkpoint").click()
    at.run()
    assert_clean(at)
    saved = [p for p in env.ckpt.iterdir() if p.name != source]
    assert len(saved) == 1
    ckpt = load_checkpoint(saved[0])
    assert ckpt.classes == ("paper", "rock") and ckpt.origin["init_from"]["file"] == source
    assert ckpt.origin["freeze"] == "features"


def test_one_click_finetunes_the_best_signs_net_on_the_newest_own_set(env, apps):
    _saved_mlp(env, 1, 1, "weak-signs.pt", dataset_key="signs")
    _own_set(env, tuple("012345"), per_class=2)
    at = apps("pages/train.py")
    quick = [m for m in at.markdown if "Teach it your hand" in m.value]
    assert quick and "weak-signs.pt" in quick[0].value and "newest image folder here, **my-hand**" in quick[0].value
    button(at, "Fine-tune now").click()
    at.run()
    assert_clean(at)
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.message
    assert job.trainer.init_from["file"] == "weak-signs.pt" and not job.trainer.new_head  # 0–5: the head stays
    assert job.trainer.config.epochs == finetune_recipe("mlp").epochs and job.trainer.dataset.key == "my-hand"
    assert job.trainer.config.augmentation == "mirrored"  # the fine-tuning recipe, not a new net's
    assert job.trainer.config.generated_hands == finetune_recipe("mlp", 12, tuple("012345")).generated_hands == 120
    assert any("keeps the checkpoint's head" in c.value for c in at.caption)
    # Its test photos were split off the user's own photos: the report says what that figure is worth.
    assert any(c.value.startswith("The test photos were set aside from the same photos") for c in at.caption)


def test_continue_a_saved_run_from_its_file(env, apps):
    name = _saved_mlp(env, 2, 4, "half.pt")
    at = apps("pages/train.py")
    _from_checkpoint(at, name, "resume")
    assert any("2 of 4 epochs done" in c.value for c in at.caption)
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished" and job.trainer.epoch == 4 and len(job.history().epochs) == 4
    assert "continued from half.pt" in table(at, "run").iloc[0]["run"]
    # A finished run offers to extend it instead.
    done = _saved_mlp(env, 2, 2, "done.pt")
    _from_checkpoint(at, done, "resume")
    assert [n.label for n in at.number_input] == ["Extend to this many epochs"]


def test_a_checkpoint_whose_data_is_gone_cannot_continue(env, apps):
    name = _saved_mlp(env, 1, 3, "elsewhere.pt", dataset_key="signs")  # SIGNS isn't in the empty data dir
    at = apps("pages/train.py")
    _from_checkpoint(at, name, "resume")
    assert any("is not here" in m for m in errors(at))
    assert not [b for b in at.button if b.label == "Start"]


def test_the_webcam_augmentation_can_be_chosen_and_settings_survive_continuing_a_run(env, apps):
    _saved_mlp(env, 1, 3, "half.pt")
    at = _train_page(apps, MLP, t_epochs=1, t_augment=True)
    assert at.selectbox(key="t_augmentation").value == "standard"
    at.selectbox(key="t_augmentation").set_value("webcam")
    at.run()
    # Continuing a saved run draws none of the settings; back on a new net they are all there again.
    at.session_state["t_mode"] = "resume"  # straight there (fine-tuning would load its own recipe)
    at.radio(key="t_start").set_value("checkpoint")
    at.run()
    assert any("1 of 3 epochs done" in c.value for c in at.caption) and not at.get("number_input")
    at.radio(key="t_start").set_value("new")
    at.run()
    assert_clean(at)
    button(at, "Start").click()
    at.run()
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.message
    config = job.trainer.config
    assert (config.augment, config.augmentation, config.epochs) == (True, "webcam", 1)
    assert isinstance(job.trainer.augment_config, type(job.trainer.augment_config)) and job.trainer.augment_config.clutter_p > 0


# --- the run model: addressable runs, a session's history, the compute gate ----------------------------


def _short_run(number: int, epochs: int = 1):
    from core.jobs import Run

    trainer = Trainer(MLP, load_dataset("synthetic"), TrainConfig(epochs=epochs, batch_size=256, augment=False))
    return Run(number, f"#{number} MLP", MLP, trainer.config, "synthetic"), trainer


def test_a_run_is_found_by_its_id_and_attaches_to_another_sessions_history():
    from core.jobs import RunHistory, find_run

    run, trainer = _short_run(1)
    mine, other = RunHistory(), RunHistory()
    mine.add(run)
    run.start(trainer)
    run.job.join(120)
    assert find_run(run.id) is run and find_run("not-a-run") is None
    assert other.attach(find_run(run.id)) is run
    assert other.current is run and list(other) == [run] and mine.current is run  # one run, shown in both
    assert run.status == "finished" and run.metrics()["epochs"] == 1


def test_a_run_is_watched_while_any_session_showing_it_is_connected():
    run, _ = _short_run(1)
    assert run.watched()  # nobody registered (no server): nothing says it is unwatched
    alive = {"a": True, "b": True}
    run.watch("a", lambda: alive["a"])
    run.watch("b", lambda: alive["b"])
    alive["a"] = False  # the first tab was refreshed away: the second still shows it
    assert run.watched()
    alive["b"] = False
    assert not run.watched()


def test_a_run_history_keeps_a_running_run_and_lets_old_models_go():
    from core.jobs import RunHistory

    history = RunHistory(keep_runs=3, keep_models=2)
    made = []
    for n in range(1, 6):
        run, trainer = _short_run(n)
        history.add(run)
        run.start(trainer)
        run.job.join(120)
        made.append(run)
    assert [r.number for r in history] == [3, 4, 5] and history.current is made[-1]
    assert [r.job is not None for r in history] == [False, True, True]  # curves only for the oldest
    assert history[0].history().epochs and history[0].metrics()["epochs"] == 1
    assert made[3].job.trainer.x_train.numel() == 0 and made[4].job.trainer.x_train.numel() > 0

    long_run, trainer = _short_run(6, epochs=500)
    history.add(long_run)
    long_run.start(trainer)
    try:
        for n in range(7, 10):  # more runs than kept while #6 still trains: #6 is never let go of
            history.add(_short_run(n)[0])
        assert long_run in list(history) and long_run.job is not None and long_run.running
    finally:
        long_run.job.stop()


def test_the_compute_gate_lets_as_many_steps_in_as_it_has_slots():
    import threading

    from core.trainer import _TurnLock

    gate = _TurnLock()
    gate.slots = 2
    inside, entered = threading.Event(), []

    def step(name: str) -> None:
        with gate:
            entered.append(name)
            inside.wait(10)

    first = [threading.Thread(target=step, args=(n,)) for n in ("a", "b")]
    for t in first:
        t.start()
    third = threading.Thread(target=step, args=("c",))
    deadline = time.monotonic() + 10
    while len(entered) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    third.start()
    time.sleep(0.2)
    assert sorted(entered) == ["a", "b"]  # two at once; the third waits for a slot
    inside.set()
    for t in (*first, third):
        t.join(10)
    assert entered[-1] == "c"
