"""Train: choose the optimizer and regularization, train in the background, watch the curves."""
import re
import time
from pathlib import Path

import streamlit as st

from core.checkpoint import EXPORT_WARNING, Checkpoint, CheckpointError, checkpoint_dir, export_full_model
from core.inference import confusion_matrix
from core.augment import AUGMENTATIONS
from core.jobs import RUNNING, STOPPING, Run, TrainingJob
from core.spec import ARCHS
from core.data import shows_finger_counts
from core.synthetic import SYNTHETIC_CLASSES
from core.trainer import MAX_GENERATED_HANDS, OPTIMIZERS, SCHEDULES, TrainConfig, Trainer, finetune_recipe, recipe
from streamlit_app import (
    SAME_SITTING_NOTE, current_dataset_key, current_spec, data_dir, dataset_peeks, dataset_title, datasets_here, device_options,
    export_downloads, get_checkpoint, get_dataset, get_peek, newest_first, page_setup, plotting, run_from_url, runs,
    saved_checkpoints, share_cores, show_error, show_run,
)

BATCH_SIZES = [8, 16, 32, 64, 128, 256, 0]  # 0: the whole training set, the largest batch of all
CHART_POINTS = 500  # points per curve of the live loss chart at most (a long run's curve is sampled)

START_LABELS = {"new": "a new net", "checkpoint": "a saved checkpoint"}
MODE_LABELS = {"finetune": "fine-tune it on a data set", "resume": "continue its own training"}
FREEZE_LABELS = {"none": "all layers", "features": "the last layers only"}
# The settings' widget keys and the TrainConfig fields they hold (Adam's betas are two widgets).
WIDGETS = {"t_optimizer": "optimizer", "t_lr": "lr", "t_momentum": "momentum", "t_alpha": "alpha", "t_wd": "weight_decay",
           "t_schedule": "schedule", "t_augment": "augment", "t_augmentation": "augmentation", "t_batch": "batch_size",
           "t_generated": "generated_hands",
           "t_epochs": "epochs", "t_seed": "seed", "t_beta1": None, "t_beta2": None}
OPTIMIZER_WIDGETS = ("t_momentum", "t_alpha", "t_beta1", "t_beta2")
RECOMMENDED_FREEZE = "features"  # as accurate as all layers and faster: README, "Fine-tuning"

page_setup("Train")
go, make_subplots = plotting()


def _load_recipe(arch: str, finetune: bool = False, n_train: int | None = None) -> None:
    """Put the default recipe for ``arch`` (or its fine-tuning recipe, which depends on the size of
    the training split ``n_train``) into the widgets."""
    # The recipe as it is for hand signs: the page turns generated hands off for other data.
    cfg = finetune_recipe(arch, n_train, SYNTHETIC_CLASSES) if finetune else recipe(arch, SYNTHETIC_CLASSES)
    st.session_state.update({key: getattr(cfg, name) for key, name in WIDGETS.items() if name})
    st.session_state.update({"t_beta1": cfg.betas[0], "t_beta2": cfg.betas[1], "t_recipe_for": _recipe_key(arch, finetune)})


def _remember_settings() -> None:
    """Copy the settings into a plain key: Streamlit forgets the state of widgets a run did not
    draw, and none of them is drawn while a saved run is continued."""
    st.session_state["t_settings"] = {k: st.session_state[k] for k in WIDGETS if k in st.session_state}


def _restore_settings() -> bool:
    """Put back settings Streamlit forgot; False if some have no value at all (a new session).
    The optimizers' own sliders are left out: they are refilled from the recipe further down."""
    for key, value in st.session_state.get("t_settings", {}).items():
        st.session_state.setdefault(key, value)
    return all(k in st.session_state for k in WIDGETS if k not in OPTIMIZER_WIDGETS)


def _show_settings_of(run: Run) -> None:
    """Fill the form with ``run``'s net, data and settings: a run opened from its address (a refresh,
    a second tab) shows what it trains with, as the session that started it did."""
    cfg, trainer = run.config, run.job.trainer if run.job is not None else None
    st.session_state.update({key: getattr(cfg, name) for key, name in WIDGETS.items() if name})
    st.session_state.update({"t_beta1": cfg.betas[0], "t_beta2": cfg.betas[1], "t_device": cfg.device,
                             "t_dataset": run.dataset})
    init_from = trainer.init_from if trainer is not None else None
    resumed = trainer.resumed_from if trainer is not None else None
    if init_from or resumed:  # started from a saved checkpoint: that one, fine-tuned or continued
        source = Path(str((init_from or {}).get("file") or resumed)).name
        st.session_state.update({"t_start": "checkpoint", "t_mode": "finetune" if init_from else "resume",
                                 "t_freeze": trainer.freeze, "t_ckpt": source})
    else:
        st.session_state.update({"t_start": "new", "spec": run.spec, "spec_dataset": run.dataset})
    st.session_state["t_recipe_for"] = _recipe_key(run.spec.arch, bool(init_from))
    _remember_settings()


def _recipe_key(arch: str, finetune: bool) -> str:
    return f"finetune:{arch}" if finetune else arch


def _config_from_widgets(finger_counts: bool) -> TrainConfig:
    """The settings as the widgets show them; generated hands only for a data set of finger counts."""
    s = st.session_state
    config = TrainConfig(**{name: s[key] for key, name in WIDGETS.items() if name},
                         betas=(float(s["t_beta1"]), float(s["t_beta2"])), device=s["t_device"])
    return config if finger_counts else config.replace(generated_hands=0)


def _show_generated_hands_for(finger_counts: bool) -> None:
    """The Generated hands field shows 0 while the data set's classes are not finger counts (the run
    gets none), and the user's number again when they are: it is kept aside meanwhile."""
    s = st.session_state
    if not finger_counts and s.get("t_generated"):
        s["t_generated_kept"], s["t_generated"] = s["t_generated"], 0
    elif finger_counts and "t_generated_kept" in s:
        kept = s.pop("t_generated_kept")
        if not s.get("t_generated"):
            s["t_generated"] = kept


def _new_trainer(start: str, spec, dataset, config: TrainConfig, ckpt: Checkpoint | None, freeze: str) -> Trainer:
    """The run the user asked for: a new net, a saved one fine-tuned, or a saved run continued."""
    if start == "finetune":
        return Trainer(None, dataset, config, ckpt.style, init_from=ckpt, freeze=freeze)
    if start == "resume":
        return Trainer.resume(ckpt, dataset, epochs=st.session_state.get("t_extend") or None)
    return Trainer(spec, dataset, config, st.session_state.get("style", "module"))


def _start_run(trainer: Trainer, dataset_key: str) -> None:
    spec, config = trainer.spec, trainer.config
    history = runs()
    number = history.next_number()
    name = f"#{number} {spec.name}"
    if trainer.resumed_from:
        name += f" · continued from {trainer.resumed_from}"
    elif trainer.init_from:
        name += f" · fine-tuned from {trainer.init_from['file']}" + (" (last layers)" if trainer.freeze != "none" else "")
    name += f" · {OPTIMIZERS[config.optimizer]} lr {config.lr:g}"
    if config.weight_decay:
        name += f" · L2 {config.weight_decay:g}"
    if spec.dropout:
        name += f" · drop {spec.dropout:g}"
    run = history.add(Run(number, name, spec, config, dataset_key, note=trainer.head_note))
    show_run(run)  # this session watches it (before it starts: an unwatched run stops itself)
    share_cores()
    run.start(trainer)
    st.session_state["job"] = run.job


def _curve_figures(run: Run) -> tuple[go.Figure, go.Figure]:
    h = run.history()
    steps = go.Figure()
    losses = h.step_losses
    # The smoothed curve is computed over every step; both are drawn at no more than CHART_POINTS
    # evenly spaced steps, so a refresh costs the same at step 100 and at step 100,000 (README,
    # "Performance"). SVG lines, not WebGL: a browser without a GPU renders WebGL in software.
    smooth, acc = [], losses[0] if losses else 0.0
    for v in losses:  # a moving average makes the trend readable through mini-batch noise
        acc = 0.9 * acc + 0.1 * v
        smooth.append(acc)
    stride = max(1, -(-len(losses) // CHART_POINTS))
    xs = list(range(0, len(losses), stride))
    if losses and xs[-1] != len(losses) - 1:
        xs.append(len(losses) - 1)
    steps.add_trace(go.Scatter(x=xs, y=[losses[i] for i in xs], mode="lines", name="loss per step",
                               line=dict(color="#9ab", width=1)))
    if len(losses) > 5:
        steps.add_trace(go.Scatter(x=xs, y=[smooth[i] for i in xs], mode="lines", name="smoothed",
                                   line=dict(color="#EE4C2C", width=2)))
    steps.update_layout(title="Training loss per step", xaxis_title="step", yaxis_title="cross-entropy",
                        height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    epochs = make_subplots(rows=1, cols=2, subplot_titles=("Loss per epoch", "Accuracy per epoch"))
    ep = [e.epoch for e in h.epochs]
    for col, (train_key, test_key) in enumerate((("train_loss", "test_loss"), ("train_acc", "test_acc")), start=1):
        epochs.add_trace(go.Scatter(x=ep, y=[getattr(e, train_key) for e in h.epochs], name="train",
                                    mode="lines+markers", line=dict(color="#1f77b4"), showlegend=col == 1), 1, col)
        epochs.add_trace(go.Scatter(x=ep, y=[getattr(e, test_key) for e in h.epochs], name="test",
                                    mode="lines+markers", line=dict(color="#EE4C2C"), showlegend=col == 1), 1, col)
    epochs.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=2)
    epochs.update_xaxes(title_text="epoch", dtick=max(1, len(ep) // 8))
    epochs.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return steps, epochs


def _warn_if_it_learnt_nothing(run: Run) -> None:
    """A run that ended no better than guessing gets a word on why: usually the learning rate (with
    batch norm a far too large rate need not overflow; it just leaves the net at chance)."""
    m, classes = run.metrics(), run.spec.num_classes
    chance = 1 / classes
    if m.get("epochs", 0) < 1 or max(m["train_acc"], m["test_acc"]) > 1.25 * chance:
        return
    cfg = run.config
    usual = recipe(run.spec.arch, get_peek(run.dataset, data_dir()).classes if run.dataset in datasets_here() else None)
    why = ("a learning rate this large makes steps that overshoot, so the weights thrash or the ReLUs die"
           if cfg.lr >= 10 * usual.lr else "a learning rate this small barely moves the weights"
           if cfg.lr <= usual.lr / 100 else "the learning rate, optimizer or schedule may not suit this net")
    if run.spec.arch == "mlp" and not run.spec.batchnorm:
        # Measured: at chance on SIGNS and the built-in set under every rate and optimizer tried (README, "The nets").
        why = ("an MLP without batch norm on raw pixels is fragile: every input is positive, so a step moves "
               "all 12,288 weights of a unit the same way, its ReLU soon outputs 0 for every image and the net "
               "answers the same for all. Turn batch norm on (Build page): with it this recipe learns")
    st.warning(f"The net learnt nothing: after {m['epochs']} epoch{'s' * (m['epochs'] != 1)} it is right as often as "
               f"a guess ({m['train_acc']:.0%} of training images, {m['test_acc']:.0%} of test images; a guess among "
               f"{classes} classes is right {chance:.0%} of the time). With {OPTIMIZERS[cfg.optimizer]} at "
               f"{cfg.lr:g}, {why}. The recipe for this net: {usual.describe()} (**Reset to recipe**).",
               icon=":material/warning:")


def _free_name(stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``…: the first that names no saved checkpoint."""
    name, n = stem, 1
    while (checkpoint_dir() / f"{name}.pt").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    return f"{seconds:.0f} s left" if seconds < 90 else f"{seconds / 60:.1f} min left"


spec = current_spec()
st.title("Train")
# The run this page shows: the one its URL names (a refresh, a second tab, a shared link), else this
# session's current run; the URL is kept pointing at it.
_known, _adopted = {r.id for r in runs()}, st.session_state.pop("t_adopted", None)
_linked, _gone = run_from_url()
if _gone:
    st.info("The run in this page's address is no longer on this server (the server restarted, or its tab "
            "was closed long ago). Its checkpoint, if it was saved, is listed below and on Predict.",
            icon=":material/info:")
shown: Run | None = _linked or runs().current
if shown is not None and (shown.id not in _known or shown.id == _adopted):  # another session's run, refreshed
    _show_settings_of(shown)
    spec = current_spec()  # the run's net, for a run of a new net
if shown is not None:
    show_run(shown)
job: TrainingJob | None = shown.job if shown is not None else None
busy = job is not None and job.running

# --- the recommended path: fine-tune the best SIGNS net on the user's own photos ---------------------
signs_runs = [c for c in saved_checkpoints() if c.dataset_key == "signs" and c.error is None]
own_sets = newest_first([p for p in dataset_peeks() if p.kind == "folder"])
if signs_runs and own_sets and not busy:
    best = max(signs_runs, key=lambda c: c.test_acc or 0.0)
    mine = own_sets[0]
    with st.container(border=True):
        t1, t2 = st.columns([3, 1], vertical_alignment="center")
        # "Newest" is all the page knows: any image folder in the data directory counts, not only the Data page's.
        t1.markdown(f"**Teach it your hand** — fine-tune **{best.name}** ({best.describe}) on the newest image "
                    f"folder here, **{mine.title}** ({mine.n_train + mine.n_test} photos, classes {', '.join(mine.classes)}), "
                    f"training {FREEZE_LABELS[RECOMMENDED_FREEZE]}.")
        if t2.button("Fine-tune now", type="primary", icon=":material/back_hand:", width="stretch"):
            st.session_state.update({"t_start": "checkpoint", "t_mode": "finetune", "t_ckpt": best.name,
                                     "t_freeze": RECOMMENDED_FREEZE, "t_dataset": mine.key})
            _load_recipe(best.arch, finetune=True, n_train=mine.n_train)
            st.session_state["t_quick"] = True
            st.rerun()

# --- where the run starts ------------------------------------------------------------------------
ckpt: Checkpoint | None = None
freeze = "none"
r1, r2, r3 = st.columns([1.2, 1.6, 1.6])
origin = r1.radio("Start from", list(START_LABELS), format_func=START_LABELS.get, key="t_start", disabled=busy)
if origin == "checkpoint":
    saved = [c for c in saved_checkpoints() if c.error is None]
    if not saved:
        st.info("No saved checkpoint yet: train a new net and save it below, or on the Predict page.",
                icon=":material/info:")
        st.stop()
    names = [c.name for c in saved]
    if st.session_state.get("t_ckpt") not in names:
        st.session_state["t_ckpt"] = names[0]
    ckpt_name = r2.selectbox("Checkpoint", names, key="t_ckpt", disabled=busy,
                             format_func=lambda n: f"{n} — {next(c.describe for c in saved if c.name == n)}")
    mode = r3.radio("Then", list(MODE_LABELS), format_func=MODE_LABELS.get, key="t_mode", disabled=busy)
    try:
        path = checkpoint_dir() / ckpt_name
        ckpt = get_checkpoint(str(path), path.stat().st_mtime)
    except (CheckpointError, OSError) as e:
        show_error(f"This checkpoint can't be used: {e}")
        st.stop()
    spec = ckpt.spec
    start = mode
    if start == "finetune":
        freeze = r3.radio("Train", list(FREEZE_LABELS), format_func=FREEZE_LABELS.get, key="t_freeze", disabled=busy,
                          help="All layers: every weight moves. The last layers only: the convolutional features "
                               "the net learned stay as they are (weights and batch-norm statistics) and only the "
                               "fully connected layers after them learn your classes — as accurate here, and faster.")
else:
    start = "new"

if start == "resume":
    # A saved run continues on its own data with its own settings: nothing to choose but how far.
    saved_on = ckpt.dataset.get("key")
    config = TrainConfig.from_dict(ckpt.training)
    done = int(ckpt.metrics.get("epochs", 0))
    st.caption(f"Net: **{spec.describe()}**, {done} of {config.epochs} epochs done on "
               f"**{dataset_title(saved_on) if saved_on in datasets_here() else ckpt.dataset.get('title', saved_on)}** "
               f"with {config.describe()}.")
    if saved_on not in datasets_here():
        show_error(f"The data this run trained on ({ckpt.dataset.get('title', saved_on)}) is not here, so it can't "
                   "continue. Put its files back, or fine-tune the checkpoint on another data set.")
        st.stop()
    dataset_key = saved_on
    st.session_state["t_extend"] = 0
    if done >= config.epochs:
        st.session_state["t_extend"] = int(st.number_input(
            "Extend to this many epochs", min_value=config.epochs + 1, max_value=10_000, value=config.epochs + 10,
            disabled=busy, help="The run finished its epochs; the extra ones run its schedule again."))
else:
    if start == "new":
        st.caption(f"Net: **{spec.describe()}** — change it on the Build page.")
        choices = [k for k in datasets_here() if len(get_peek(k, data_dir()).classes) == spec.num_classes]
        choices_help = "Only data sets with as many classes as the net's outputs are offered."
        if not choices:
            show_error(f"No data set here has {spec.num_classes} classes for this net. Choose a data set on the Build page.")
            st.stop()
    else:
        st.caption(f"Net: **{ckpt.describe()}**, from `{ckpt.source}`.")
        choices = datasets_here()
        choices_help = ("Any data set: with the checkpoint's classes its head is kept, with other classes it gets "
                        "a new head for them.")
    if not _restore_settings() or st.session_state.get("t_recipe_for") != _recipe_key(spec.arch, start == "finetune"):
        if st.session_state.get("t_recipe_for") is not None:  # settings of another net (or start) were showing
            st.info(f"The settings below are now the {'fine-tuning ' if start == 'finetune' else ''}recipe of the "
                    f"{ARCHS[spec.arch]}: each net has its own, measured to train it well. Change them as you like.",
                    icon=":material/tune:")
        _load_recipe(spec.arch, finetune=start == "finetune")
    # Only the chosen optimizer's sliders are drawn, and Streamlit drops the state of a keyed widget that a
    # run did not draw: after switching optimizers the others' settings would be gone (a KeyError below).
    # Put the recipe's values back, so every setting always has one and a slider shown again starts there.
    _defaults = recipe(spec.arch)
    for _key, _value in (("t_momentum", _defaults.momentum), ("t_alpha", _defaults.alpha),
                         ("t_beta1", _defaults.betas[0]), ("t_beta2", _defaults.betas[1])):
        st.session_state.setdefault(_key, _value)

    with st.container(border=True):
        c1, c2, c3, c4 = st.columns([1.6, 1, 1, 1])  # data set names are long
        st.session_state.setdefault("t_dataset", current_dataset_key())
        if st.session_state["t_dataset"] not in choices:
            st.session_state["t_dataset"] = choices[0]
        dataset_key = c1.selectbox("Data set", choices, format_func=dataset_title, key="t_dataset", disabled=busy,
                                   help=choices_help)
        optimizer = c2.selectbox("Optimizer", list(OPTIMIZERS), format_func=OPTIMIZERS.get, key="t_optimizer", disabled=busy,
                                 help="How the gradient turns into a weight update.")
        c3.number_input("Learning rate", min_value=1e-6, max_value=10.0, format="%.5f", step=0.0005, key="t_lr", disabled=busy,
                        help="Step size of each update. Too large and the loss explodes; too small and nothing moves.")
        c4.selectbox("Schedule", list(SCHEDULES), key="t_schedule", disabled=busy, help="; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()))
        o1, o2, c7, c8, g1 = st.columns([1.6, 1, 1, 1, 1])
        if optimizer == "momentum":
            o1.slider("Momentum", 0.0, 0.99, step=0.01, key="t_momentum", disabled=busy,
                      help="Fraction of the previous update carried into the next: smooths and speeds up SGD.")
        elif optimizer == "rmsprop":
            o1.slider("RMSprop alpha", 0.8, 0.999, step=0.001, format="%.3f", key="t_alpha", disabled=busy,
                      help="Decay of the running average of squared gradients.")
        elif optimizer == "adam":
            o1.slider("Adam β1", 0.5, 0.99, step=0.01, key="t_beta1", disabled=busy, help="Decay of the gradient's running mean.")
            o2.slider("Adam β2", 0.9, 0.9999, step=0.0001, format="%.4f", key="t_beta2", disabled=busy,
                      help="Decay of the squared gradient's running mean.")
        else:
            o1.caption("Plain SGD: `w -= lr * grad`.")
        c7.number_input("L2 weight decay", min_value=0.0, max_value=1.0, format="%.5f", step=0.0001, key="t_wd", disabled=busy,
                        help="Pulls weights toward zero each step: less overfitting, smaller weights.")
        c8.select_slider("Batch size", BATCH_SIZES, key="t_batch", disabled=busy,
                         format_func=lambda b: "full" if b == 0 else str(b),
                         help="Images per step; 'full' uses the whole training set per step (the tutorial's first example).")
        finger_counts = shows_finger_counts(get_peek(dataset_key, data_dir()).classes)
        _show_generated_hands_for(finger_counts)
        g1.number_input("Generated hands", min_value=0, max_value=MAX_GENERATED_HANDS, step=100, key="t_generated",
                        disabled=busy or not finger_counts,
                        help="Drawn hands with 0–5 raised fingers, added to the training photos: they show poses and "
                             "framings SIGNS lacks (a three as index, middle and ring finger), so the net reads more "
                             "photos of other people's hands (README, \"Robustness\")." + (
                                 "" if finger_counts else " Only for data sets whose classes are 0–5."))
        c9, c10, c10b, c11, c12, c13 = st.columns([1, 1.05, 1.2, 0.9, 0.95, 1.1], vertical_alignment="bottom")
        c9.number_input("Epochs", min_value=1, max_value=500, step=1, key="t_epochs", disabled=busy,
                        help="Passes over the training set.")
        augment = c10.toggle("Augment", key="t_augment", disabled=busy,
                             help="Random changes to every training image each step (zoom, shift, tilt, light, "
                                  "backdrop): makes the net robust to real photos.")
        c10b.selectbox("Augmentation", list(AUGMENTATIONS), key="t_augmentation", disabled=busy or not augment,
                       help="; ".join(f"{k}: {v}" for k, v in AUGMENTATIONS.items()))
        c11.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="t_seed", disabled=busy,
                         help="Same seed, same settings, same device → the same curves.")
        st.session_state.setdefault("t_device", "auto")
        c12.selectbox("Device", device_options(), key="t_device", disabled=busy,
                      help="auto picks a CUDA GPU, then Apple MPS, then the CPU.")
        # A callback: it runs before the widgets are drawn again (setting them after they are drawn raises).
        c13.button("Reset to recipe", disabled=busy, help="The default settings that train this net well.",
                   on_click=_load_recipe, args=(spec.arch,), kwargs={"finetune": start == "finetune"})
        st.caption(f"Dropout {spec.dropout:g} and batch norm {'on' if spec.batchnorm else 'off'} come from the net "
                   + ("(Build page)." if start == "new" else "(the checkpoint)."))
    config = _config_from_widgets(finger_counts)
    _remember_settings()
    if start == "finetune":
        peek = get_peek(dataset_key, data_dir())
        same = set(peek.classes) == set(ckpt.classes) and len(peek.classes) == len(ckpt.classes)
        st.info(f"{dataset_title(dataset_key)} has " + (
            f"the checkpoint's classes ({', '.join(ckpt.classes)}): its head is kept." if same else
            f"other classes ({', '.join(peek.classes)}) than the checkpoint ({', '.join(ckpt.classes)}): it gets a "
            "new head for them."), icon=":material/info:")

b1, b2, _ = st.columns([1, 1, 4])  # Stop is drawn with the progress bar, in live_view
quick = st.session_state.pop("t_quick", False)
if b1.button("Start", type="primary", icon=":material/play_arrow:", disabled=busy, width="stretch") or quick:
    try:
        # An image folder's photos are made at the size the net reads (for a resumed run, the size it trained on).
        size = ckpt.train_image_size if start == "resume" else spec.input_size
        dataset = get_dataset(dataset_key, data_dir(), size)
        config.validate(len(dataset.x_train))
        _start_run(_new_trainer(start, spec, dataset, config, ckpt, freeze), dataset_key)
        st.rerun()
    except (ValueError, RuntimeError) as e:
        show_error(f"Could not start: {e}")
if b2.button("Resume", icon=":material/resume:", disabled=job is None or not job.can_resume, width="stretch"):
    job.start()
    st.rerun()


@st.fragment(run_every=1.0 if busy else None)
def live_view() -> None:
    run = runs().current
    job = run.job if run is not None else None
    if job is None:
        st.info("Choose the settings and press **Start**. The curves draw themselves while the net trains — "
                "you can visit other pages meanwhile.", icon=":material/info:")
        return
    p = job.progress()
    label = {RUNNING: "Training", STOPPING: "Stopping"}.get(p.status, p.status.capitalize())
    text = f"{label}: epoch {p.current_epoch}/{p.epochs} · step {p.step}/{p.total_steps}"
    if p.mid_epoch and not job.running:
        text += f" ({p.epoch} done)"  # stopped inside an epoch: the curves end at the last finished one
    if p.images_per_second:
        text += f" · {p.images_per_second:,.0f} images/s"
    if job.running:
        text += f" · {_fmt_eta(p.eta_seconds)}"
    elif seconds := run.metrics().get("seconds"):
        text += f" · trained in {seconds:.1f} s"
    # Stop sits in this fragment, beside the progress it acts on: a click reruns the fragment alone,
    # its callback stops the run (after the step under way) and the bar is drawn stopped at once; the
    # rest of the page follows (st.rerun below). From outside the fragment a click reran the whole
    # page first, which a loaded machine took over a second to show (README, "What TorchLab accepts").
    stop_col, bar_col = st.columns([1, 5], vertical_alignment="center")
    stop_col.button("Stop", icon=":material/stop:", disabled=not job.running, width="stretch", on_click=job.stop)
    bar_col.progress(min(1.0, p.fraction), text=text)
    if run.note:
        st.caption(f"Fine-tuning {run.note}.")
    if p.status in ("diverged", "failed"):
        show_error(p.message)
    elif not job.running:
        _warn_if_it_learnt_nothing(run)
    steps_fig, epochs_fig = _curve_figures(run)
    a, b = st.columns(2)
    a.plotly_chart(steps_fig, width="stretch", key="live_steps")
    b.plotly_chart(epochs_fig, width="stretch", key="live_epochs")
    if busy and not job.running:  # the buttons were drawn for a running job: refresh them once it ended
        st.rerun(scope="app")


live_view()

history = runs()
if history:
    st.subheader("Runs")
    table = []
    for r in history:
        m = r.metrics()
        table.append({
            "run": r.name, "status": r.status, "epochs": m.get("epochs", 0), "train acc": _percent(m.get("train_acc")),
            "test acc": _percent(m.get("test_acc")), "seconds": m.get("seconds", 0.0), "saved as": r.checkpoint or "",
            "settings": r.config.describe(), "data": dataset_title(r.dataset),
        })
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "train acc": st.column_config.ProgressColumn(
            format="%.1f %%", min_value=0, max_value=100,  # one decimal in every row
            help="Running accuracy over the last epoch's mini-batches, in train mode (augmented, with dropout)."),
        "test acc": st.column_config.ProgressColumn(format="%.1f %%", min_value=0, max_value=100),
        "seconds": st.column_config.NumberColumn(format="%.1f"),
    })

    names = [r.name for r in history]
    chosen = st.multiselect("Compare runs", names, default=names[-min(3, len(names)):],
                            help="Overlay the test accuracy and training loss of several runs.")
    with_epochs = [r for r in history if r.name in chosen and r.history().epochs]
    if chosen and not with_epochs:
        st.caption("The comparison draws itself once a chosen run has finished an epoch.")
    if with_epochs:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("Test accuracy", "Training loss (per epoch)"))
        for i, r in enumerate(with_epochs):
            h = r.history()
            ep = [e.epoch for e in h.epochs]
            color = f"hsl({(i * 67) % 360},70%,45%)"
            fig.add_trace(go.Scatter(x=ep, y=[e.test_acc for e in h.epochs], name=r.name, mode="lines+markers",
                                     line=dict(color=color), legendgroup=r.name), 1, 1)
            fig.add_trace(go.Scatter(x=ep, y=[e.train_loss for e in h.epochs], name=r.name, mode="lines",
                                     line=dict(color=color), legendgroup=r.name, showlegend=False), 1, 2)
        fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=1)
        fig.update_xaxes(title_text="epoch", dtick=max(1, max(r.config.epochs for r in history) // 8))
        fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(fig, width="stretch", key="compare")

    keep = [r for r in history if r.job is not None and not r.job.running and r.job.trainer.epoch > 0
            and not r.job.trainer.diverged]
    if keep:
        st.subheader("Save and inspect")
        ended = [r.name for r in keep][::-1]  # newest first
        if st.session_state.get("t_pick_newest") != ended[0]:  # a run ended since: inspect that one
            st.session_state["t_pick"] = st.session_state["t_pick_newest"] = ended[0]
        pick = st.selectbox("Run", ended, key="t_pick")
        run = next(r for r in keep if r.name == pick)
        trainer = run.job.trainer
        c1, c2 = st.columns([1, 1])
        with c1:
            default_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run.spec.arch}-{run.dataset}-run{pick.split()[0][1:]}")
            if f"t_name_{pick}" not in st.session_state:  # run numbers start at 1 in every session: a free name
                st.session_state[f"t_name_{pick}"] = _free_name(default_name)
            fname = st.text_input("Checkpoint name", key=f"t_name_{pick}", help="Saved to the checkpoints folder; listed on Predict.")
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", fname).strip(".-") or default_name
            path = checkpoint_dir() / f"{safe.removesuffix('.pt')}.pt"
            try:
                taken = path.is_file() and run.checkpoint != path.name  # (this run's own file is saved over freely)
            except OSError:
                taken = False  # a name the file system refuses: saving says so
            if "t_saved" in st.session_state:
                st.session_state.pop(f"t_replace_{pick}", None)  # a replace is ticked for one save, never left armed
            replace = taken and st.checkbox(f"Replace the saved {path.name}", key=f"t_replace_{pick}",
                                            help="Saving over it deletes that net for good; another name keeps both.")
            if taken and not replace:
                saved_at = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
                st.warning(f"A checkpoint called **{path.name}** exists already (saved {saved_at}). Choose another "
                           "name, or tick **Replace** to save this run in its place.", icon=":material/warning:")
            if st.button("Save checkpoint", type="primary", icon=":material/save:", disabled=taken and not replace):
                try:
                    trainer.save(path)
                    run.checkpoint = path.name
                    st.session_state["t_saved"] = f"Saved `{path.name}`: the Predict page opens with it."
                    st.session_state["p_pick"] = path.name  # a hand-over, read (once) by the Predict page
                    st.rerun()  # so the Runs table above shows where it was saved
                except (OSError, CheckpointError) as e:
                    show_error(f"Not saved: {e}")
            if saved_message := st.session_state.pop("t_saved", None):
                st.success(saved_message, icon=":material/check:")
                st.page_link("pages/predict.py", label="Open Predict", icon=":material/back_hand:")
            if run.checkpoint:
                path = checkpoint_dir() / run.checkpoint
                if path.is_file():
                    st.download_button("Download checkpoint (.pt)", path.read_bytes(), file_name=path.name,
                                       mime="application/octet-stream", icon=":material/download:",
                                       help="The saved file as it is: net, classes, preprocessing and training "
                                            "state. TorchLab (Predict, --init-from, --resume) reads it back.")
                    st.markdown("**Export** it for use outside TorchLab:")
                    try:
                        mtime = path.stat().st_mtime
                        # The full checkpoint is the download above: only the other formats here.
                        export_downloads(get_checkpoint(str(path), mtime), f"{path}@{mtime}", "t", side_by_side=False,
                                         formats=("onnx", "state_dict"))
                    except (CheckpointError, OSError) as e:
                        show_error(f"Can't export {path.name}: {e}")
            with st.expander("Export the whole pickled module (the tutorial's torch.save(model))"):
                st.warning(EXPORT_WARNING, icon=":material/warning:")
                if st.button("Prepare the pickled module"):
                    run.export = export_full_model(trainer.model)
                if run.export:
                    st.download_button("Download pickled module", run.export,
                                       file_name=f"{default_name}-full-module.pt", mime="application/octet-stream")
        with c2:
            if run.eval_step != trainer.step or run.eval is None:  # once per state of the model, not per rerun
                # As Predict will read the saved net: a net trained on mirrored photos with the mirror image too.
                mirror = trainer.mirror_average
                alone = trainer.evaluate_test()
                run.eval, run.eval_step = (trainer.evaluate_test(mirror=True) if mirror else alone, alone), trainer.step
            result, alone = run.eval
            cm = confusion_matrix(trainer.y_test.cpu().numpy(), result.predictions.numpy(), len(trainer.dataset.classes))
            classes = list(trainer.dataset.classes)
            heat = go.Figure(go.Heatmap(z=cm, x=classes, y=classes, colorscale="Reds", text=cm, texttemplate="%{text}",
                                        showscale=False))
            heat.update_layout(title=f"Test confusion matrix — accuracy {result.accuracy:.1%}", height=360,
                               xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                               xaxis_type="category", yaxis_type="category", margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(heat, width="stretch", key="confusion")
            if not trainer.at_epoch_boundary:
                st.caption(f"Stopped inside epoch {trainer.epoch + 1}: the matrix reads the weights as they are now, "
                           f"after step {trainer.step}; the curves and the table end with epoch {trainer.epoch}.")
            if trainer.mirror_average:
                st.caption(f"Each test photo read with its mirror image, as Predict reads this net (it trained on "
                           f"mirrored photos too). Read alone, as the curves above: {alone.accuracy:.1%}.")
            if trainer.dataset.split_made:
                st.caption(SAME_SITTING_NOTE)
