"""The Train page."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.checkpoint import load_checkpoint
from core.spec import ModelSpec, default_spec


from tests.apptest import assert_clean, button, disabled, errors, plotly_keys, table, wait_for_job


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


