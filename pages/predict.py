"""Predict: a checkpoint, a photo or the webcam, and what the net makes of it."""
import contextlib
import hashlib
from pathlib import Path

import streamlit as st

from core.checkpoint import Checkpoint, CheckpointError, checkpoint_dir, list_checkpoints, load_checkpoint
from core.data import DatasetError
from core.explain import GRAD_CAM, GRADCAM_CODE, ExplainError, colorbar, enlarge, explain
from core.inference import evaluate_checkpoint, predict_image
from core.live import LivePredictor, SettingError
from core.preprocess import ImageError, load_image
from core.spec import default_spec
from core.tensors import tensor_to_image
from core.trainer import EpochEvent, Trainer, recipe
from streamlit_app import (
    SAME_SITTING_NOTE, IMAGE_TYPES, LiveVideo, best_hand_dataset, data_dir, dataset_title, datasets_here, export_downloads,
    get_checkpoint, get_dataset, get_peek, live_rtc_configuration, page_setup, plotting, show_error,
)

page_setup("Predict")
go, _ = plotting()
LIVE_REFRESH_S = 0.5  # how often the live answer beside the video is redrawn


@st.cache_resource(show_spinner="Checking the uploaded checkpoint…", max_entries=4)
def uploaded_checkpoint(digest: str, name: str, _data: bytes) -> Checkpoint:
    """An uploaded checkpoint, loaded safely once per distinct content (``digest``)."""
    return load_checkpoint(_data, name=name)


def train_default() -> Path:
    """One click: the default LeNet recipe on the best hand data here, saved as a checkpoint."""
    key = best_hand_dataset(data_dir())
    ds = get_dataset(key, data_dir())
    trainer = Trainer(default_spec("lenet", ds.num_classes), ds, recipe("lenet", ds.classes))
    bar = st.progress(0.0, text="Training the default LeNet…")
    # Closed however the script ends (a click elsewhere stops it inside the loop): the run's end then
    # frees its worker and its place among the runs going on now, rather than whenever it is collected.
    with contextlib.closing(trainer.run()) as events:
        for event in events:
            if isinstance(event, EpochEvent):
                bar.progress(event.epoch / trainer.config.epochs,
                             text=f"Epoch {event.epoch}/{trainer.config.epochs} · test accuracy {event.test_acc:.1%}")
    return trainer.save(checkpoint_dir() / f"lenet-{key}-default.pt")


def photo_to_show(data: bytes, name: str):
    """The photo as decoded for the net (upright RGB), at most 1024 px: st.image cannot re-encode
    every file the net accepts (a 16-bit PNG raises), and browsers show neither TIFF nor CMYK JPEG."""
    image = load_image(data, name, min_side=512)  # big JPEGs decode at a reduced scale
    image.thumbnail((1024, 1024))
    return image


# Six bars need no zoom or pan, and on a phone the tool bar covered the chart's title.
BARS_CONFIG = {"displayModeBar": False}


def probability_chart(probabilities: dict[str, float], label: str):
    """The softmax probability of each class as bars, the predicted one in the accent colour."""
    labels = list(probabilities)
    values = [probabilities[k] for k in labels]
    colors = ["#EE4C2C" if k == label else "#9ab" for k in labels]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colors, text=[f"{v:.1%}" for v in values],
                           textposition="outside"))
    fig.update_layout(title="Probability of each class (softmax)", yaxis={"range": [0, 1.1], "tickformat": ".0%"},
                      xaxis_title="class", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_type="category")  # names like "0"–"5" are labels, each bar its own, not numbers
    return fig


CONFIDENCE_NOTE = ("Confidence is the net's softmax probability for the class it reads: its own figure, not a "
                   "promise. On hands unlike the photos it learnt from it is often sure and wrong (README, "
                   "\"Robustness\", has the figures); teaching it your hand is what makes it right.")
MIRROR_NOTE = ("This net trained on photos mirrored left-right as often as not (the fine-tuning recipe), so it "
               "reads each photo twice, as it is and mirrored, and answers with the mean of the two: either hand, "
               "either side. It reads other people's hands better so (README, \"Fine-tuning\").")


def live_mode(ckpt: Checkpoint, what: str) -> None:
    """The webcam, predicted frame after frame: the video (with the square the net reads) on the
    left, the answer on the right, redrawn while the video plays."""
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        rtc = live_rtc_configuration()
    except SettingError as e:
        show_error(f"Live video can't start: {e}")
        return
    video, answer = st.columns([1, 1])
    with video:
        explain_live = st.toggle("Grad-CAM overlay", key="p_live_cam",
                                 help="Colour the square by where the net finds evidence for the class it reads "
                                      "(Grad-CAM; input-gradient saliency for the MLP). Costs a second pass "
                                      "through the conv layers per frame.")
        ctx = webrtc_streamer(
            key="p_live", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc,
            media_stream_constraints={"video": True, "audio": False},
            video_processor_factory=lambda: LiveVideo(LivePredictor(ckpt, explain_live)),
            translations={"start": "Start live prediction", "stop": "Stop"},
        )
        st.caption(f"Show {what} inside the orange square: that is what the net reads. Frames go to this "
                   "TorchLab server and nowhere else." + (" Each frame is read with its mirror image."
                                                          if ckpt.mirror_average else ""))
    processor = ctx.video_processor
    if processor is not None:  # the page's choices reach the video thread from the next frame on
        processor.predictor.configure(ckpt, explain_live)
    with answer:
        if not ctx.state.playing:
            st.info("Press **Start live prediction** and allow the camera: the label and the bars follow your "
                    "hand, frame after frame. No camera, or a browser without WebRTC? Use the **Camera** tab.",
                    icon=":material/videocam:")
            return
        st.fragment(run_every=LIVE_REFRESH_S)(live_answer)(processor)
        st.page_link("pages/data.py", label="Wrong? Teach it your hand on the Data page: record it class by class",
                     icon=":material/back_hand:")


def live_answer(processor: LiveVideo | None) -> None:
    """The newest frame's answer, how fast frames are read, and what the net sees."""
    result = processor.predictor.latest if processor is not None else None
    if result is None:
        error = processor.predictor.error if processor is not None else None
        if error:
            show_error(error)
        else:
            st.info("Waiting for the first frame…", icon=":material/hourglass_top:")
        return
    a, b, c = st.columns([1, 1, 1])
    a.metric("Prediction", result.label, f"{result.confidence:.1%} confident", delta_color="off", delta_arrow="off",
             help=CONFIDENCE_NOTE)
    b.metric("Frames per second", f"{result.fps:.1f}",
             help="Frames the net has read per second over the last two seconds. When the net is slower than "
                  "the camera, only the newest frame is read and the ones in between are skipped; while a "
                  "training run computes, frames take turns with its steps and keep to a quarter of the time.")
    c.image(result.seen, width=96, caption="What the net sees")
    st.plotly_chart(probability_chart(result.probabilities, result.label), width="stretch", key="p_live_probs",
                    config=BARS_CONFIG)
    if result.method:
        st.caption(f"Overlay: {result.method} for class {result.label}, bright = where the net found evidence for it.")
    waited = f" · waited {result.waited * 1000:.0f} ms for its turn" if result.waited >= 0.001 else ""
    st.caption(f"{result.seconds * 1000:.0f} ms per frame{waited} · {result.frames} frames read, {result.skipped} "
               f"of {result.frames + result.skipped} skipped (stale, or yielding to a training run)")


def look_inside(ckpt: Checkpoint, data: bytes, name: str, predicted: str) -> None:
    """Where the net looked for a class (Grad-CAM), what its conv stages computed, its first filters."""
    st.subheader("Look inside: why this answer?")
    a, b = st.columns([1, 1])
    # One choice per photo: a new photo starts from its own prediction.
    key = "p_why_" + hashlib.sha1(data).hexdigest()[:12]
    why = a.selectbox("Explain the class", list(ckpt.classes), index=list(ckpt.classes).index(predicted), key=key,
                      help="The predicted class by default. Pick another to ask: why not this one?")
    opacity = b.slider("Heat map opacity", 0.0, 1.0, 0.5, 0.05, key="p_opacity")
    try:
        ex = explain(ckpt, data, name=name, class_name=why)
    except (ImageError, ExplainError) as e:
        show_error(str(e))
        return
    left, mid, right = st.columns([1, 1, 2])
    left.image(ex.overlay(opacity, size=256), width="stretch",
               caption=f"{ex.method} for class {ex.class_name}: bright = where the net found evidence for it")
    left.image(colorbar(256, 14), width="stretch", caption="no evidence → most evidence")
    with mid:
        side = ex.feature_maps[-1].shape[1] if ex.feature_maps else None
        if ex.heatmap.max() == 0 and ex.class_name == predicted:
            st.info(f"No part of this photo raises the score of class {ex.class_name}: the positive sum is zero "
                    f"everywhere. The net answered {ex.class_name} because the other classes scored lower still, "
                    f"not because something here looks like {ex.class_name}.", icon=":material/info:")
        elif ex.heatmap.max() == 0:
            st.info(f"Nothing in this photo speaks for class {ex.class_name}: the map is empty.", icon=":material/info:")
        both = (" The net read the photo and its mirror image: this is the sum of both maps, the mirror's "
                "mirrored back.") if ex.prediction.mirrored else ""
        if ex.method == GRAD_CAM:
            st.caption(f"Grad-CAM weighs each channel of the last conv stage ({side}×{side} here) by how much it "
                       f"raises the score of class {ex.class_name}, then keeps the positive sum. A coarse guide to "
                       "where the net looked, not an outline of the hand."
                       + (" At this input size ResNet-50's last stage is tiny, so the map is very coarse." if side and side <= 2 else "")
                       + both)
        else:
            st.caption("The MLP has no convolution, so this is an input-gradient saliency map: how much each pixel, "
                       f"changed a little, would change the score of class {ex.class_name}." + both)
    if ex.method == GRAD_CAM:  # (the MLP's saliency map is another computation)
        with right.expander("The PyTorch behind Grad-CAM", expanded=False):
            st.code(GRADCAM_CODE, language="python")
    if ex.feature_maps:
        with st.expander("Feature maps: what each conv stage computed for this photo"):
            for fm in ex.feature_maps:
                c, h, w = fm.shape
                shown = "" if len(fm.channels) == c else f", the {len(fm.channels)} strongest of {c} channels"
                st.markdown(f"out of **{fm.name}** — {c}×{h}×{w}{shown}")
                st.image([enlarge(m, 72) for m in fm.maps], width=72, caption=[f"ch {i}" for i in fm.channels])
    with st.expander("Learned filters of the first layer"):
        st.caption(ex.learned.description + ". Mid-gray is a zero weight, brighter positive, darker negative.")
        st.image([enlarge(f, 56) for f in ex.learned.images[:64]], width=56)


st.title("Predict a hand sign")

# --- the checkpoint ----------------------------------------------------------------------------
saved = list_checkpoints()
source = st.radio("Checkpoint", ["Saved runs", "Upload a checkpoint"], horizontal=True, key="p_source",
                  label_visibility="collapsed")
ckpt: Checkpoint | None = None
if source == "Saved runs":
    if not saved:
        best = dataset_title(best_hand_dataset(data_dir()))
        st.info(f"No saved checkpoint yet. Train one on the Train page — or train the default LeNet-5 on {best} "
                "right here (about a minute on a laptop CPU).", icon=":material/info:")
        if st.button("Train the default LeNet now", type="primary", icon=":material/bolt:"):
            path = train_default()
            st.session_state["p_checkpoint"] = path.name
            st.rerun()
        st.stop()
    names = [p.name for p in saved]
    if (picked := st.session_state.pop("p_pick", None)) in names:  # just saved on the Train page
        st.session_state["p_checkpoint"] = picked
    if st.session_state.get("p_checkpoint") not in names:
        st.session_state["p_checkpoint"] = names[0]
    name = st.selectbox("Saved checkpoint", names, key="p_checkpoint", help=f"Files in {checkpoint_dir()}")
    path = checkpoint_dir() / name
    try:
        mtime = path.stat().st_mtime
        ckpt = get_checkpoint(str(path), mtime)
        ckpt_id = f"{name}@{mtime}"  # names this checkpoint's content for the evaluation memo below
        export_id = f"{path}@{mtime}"
    except (CheckpointError, OSError) as e:
        show_error(f"This checkpoint can't be used: {e}")
        st.stop()
else:
    upload = st.file_uploader("A checkpoint saved by TorchLab (.pt)", type=["pt", "pth", "ckpt"], key="p_ckpt_upload",
                              help="Loaded with weights_only=True: pickled code is refused, never run.")
    if upload is None:
        st.info("Upload a `.pt` checkpoint saved by TorchLab.", icon=":material/upload:")
        st.stop()
    data = upload.getvalue()
    ckpt_id = export_id = hashlib.sha256(data).hexdigest()
    try:
        ckpt = uploaded_checkpoint(ckpt_id, upload.name, data)
    except CheckpointError as e:
        show_error(f"Refused: {e}")
        st.stop()

with st.container(border=True):
    a, b, c = st.columns([2, 1, 1])
    a.markdown(f"**{ckpt.spec.describe()}**  \n{ckpt.dataset.get('title', 'unknown data')}"
               + (" — *synthetic*" if ckpt.dataset.get("synthetic") else ""))
    acc = ckpt.metrics.get("test_acc")
    n_test = ckpt.dataset.get("test")
    b.metric("Test accuracy when saved", f"{acc:.1%}" if isinstance(acc, float) else "—",
             f"on {n_test} test image{'s' * (n_test != 1)}" if isinstance(n_test, int) and isinstance(acc, float) else None,
             delta_color="off", delta_arrow="off",
             help="Measured when the run was saved, on its data set's test split. A few images make a coarse "
                  "figure: with 3, one image is 33 points.")
    c.metric("Classes", len(ckpt.classes), help=", ".join(ckpt.classes))
    if ckpt.dataset.get("split_made"):  # the user's own photos, split here: a test of one sitting
        st.caption(SAME_SITTING_NOTE)
with st.expander("Export this net: ONNX, weights only, or the full checkpoint", icon=":material/ios_share:"):
    export_downloads(ckpt, export_id, "p")

# --- the input ---------------------------------------------------------------------------------
# A SIGNS-style net reads finger counts; a net fine-tuned on the user's own classes reads those.
fingers = tuple(ckpt.classes) == tuple(str(i) for i in range(6))
what = "0–5 fingers" if fingers else ", ".join(ckpt.classes)
# A net knows each class only as its training photos show it (SIGNS' "3" is thumb, index and middle
# finger; its "0" an O): showing the examples is the cheapest help a stranger's hand can get.
here = [k for k in datasets_here() if get_peek(k, data_dir()).classes == tuple(ckpt.classes)]
saved_key = ckpt.dataset.get("key")
try:
    trained_on = get_dataset(saved_key, data_dir(), ckpt.train_image_size) if saved_key in here else None
except DatasetError:  # Evaluate, below, says what is wrong with it when asked
    trained_on = None
if trained_on is not None:
    with st.expander(f"What each class looks like in {trained_on.title} — show yours the same way",
                     icon=":material/school:"):
        examples = trained_on.class_examples(per_class=2)
        if len(trained_on.classes) <= 8:  # a column per class, its photos side by side
            for col, label in zip(st.columns(len(trained_on.classes)), trained_on.classes):
                col.image([image for c, image in examples if c == label], width=64)
                col.caption(f"**{label}**")
        else:
            st.image([image for _, image in examples], width=64, caption=[label for label, _ in examples])
        st.caption("The first two training photos of each class. The net learnt each class from photos like "
                   "these only: a hand shown another way (another finger for a 3, a fist for a 0) is read as "
                   "whatever it looks most like. Different? Teach it yours on the Data page.")
tab_upload, tab_camera, tab_live = st.tabs(["Upload a photo", "Camera", "Live"], key="p_input", on_change="rerun")
with tab_upload:
    photo = st.file_uploader(f"A photo of a hand showing {'' if fingers else 'one of: '}{what}", type=IMAGE_TYPES,
                             key="p_photo")
with tab_camera:  # the snapshot camera: one still at a time, in every browser
    snap = None if tab_live.open else st.camera_input(f"Show {'' if fingers else 'one of: '}{what} to the camera",
                                                      key="p_camera")
with tab_live:
    if tab_live.open:
        live_mode(ckpt, what)
image_file = snap if snap is not None else photo

if tab_live.open:
    pass  # the live tab shows its own answer
elif image_file is None:
    st.info("Upload a photo or take one with the camera. Best results: one hand, fingers spread, plain background.",
            icon=":material/photo_camera:")
else:
    try:
        pred = predict_image(ckpt, image_file.getvalue(), name=image_file.name)
    except ImageError as e:
        show_error(str(e))
    else:
        left, mid, right = st.columns([1, 1, 2])
        left.image(photo_to_show(image_file.getvalue(), image_file.name), caption="Your photo", width="stretch")
        mid.image(tensor_to_image(pred.net_input[0]), width="stretch",
                  caption=f"What the net sees: {ckpt.spec.input_size}×{ckpt.spec.input_size}, "
                          f"{'gray' if ckpt.spec.in_channels == 1 else 'RGB'}")
        mid.metric("Prediction", pred.label, f"{pred.confidence:.1%} confident", delta_color="off",
                   delta_arrow="off", help=f"{CONFIDENCE_NOTE}\n\n{MIRROR_NOTE}" if pred.mirrored else CONFIDENCE_NOTE)
        if pred.mirrored:
            mid.caption("Read with its mirror image too (the ? beside the answer says why).")
        right.plotly_chart(probability_chart(pred.probabilities, pred.label), width="stretch", key="probs",
                           config=BARS_CONFIG)
        # A net trained on one set of photos misreads hands unlike them; the dependable remedy is the user's own.
        right.page_link("pages/data.py", label="Wrong? Teach it your hand on the Data page", icon=":material/back_hand:")
        look_inside(ckpt, image_file.getvalue(), image_file.name, pred.label)

# --- the test split ----------------------------------------------------------------------------
st.subheader("Evaluate on the test split")
if not here:
    st.caption("No data set here has this checkpoint's classes.")
    st.stop()
key = st.selectbox("Test data", here, index=here.index(saved_key) if saved_key in here else 0,
                   format_func=dataset_title, key="p_eval_data")
if st.button("Evaluate", icon=":material/fact_check:"):
    try:
        st.session_state["p_report"] = (ckpt_id, key, evaluate_checkpoint(ckpt, get_dataset(key, data_dir(), ckpt.train_image_size)))
    except DatasetError as e:
        show_error(f"Could not evaluate on {dataset_title(key)}: {e}")
stored = st.session_state.get("p_report")
if stored and stored[0] == ckpt_id and stored[1] == key:
    report = stored[2]
    ds = get_dataset(key, data_dir(), ckpt.train_image_size)
    m1, m2, m3 = st.columns(3)
    m1.metric("Test accuracy", f"{report.accuracy:.1%}", help=MIRROR_NOTE if report.mirrored else None)
    m2.metric("Misclassified", f"{len(report.misclassified)} of {len(ds.y_test)}")
    m3.metric("Test loss", f"{report.loss:.3f}")
    if report.mirrored:
        st.caption(f"Each image read with its mirror image, as a photo is predicted. Read alone, as the Train page "
                   f"measured it: {report.single_accuracy:.1%}.")
    heat = go.Figure(go.Heatmap(z=report.confusion, x=list(report.classes), y=list(report.classes), colorscale="Reds",
                                text=report.confusion, texttemplate="%{text}", showscale=False))
    heat.update_layout(title="Confusion matrix", xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                       xaxis_type="category", yaxis_type="category", height=380, margin=dict(l=10, r=10, t=40, b=10))
    c1, c2 = st.columns([1, 1])
    c1.plotly_chart(heat, width="stretch", key="p_confusion")
    with c2:
        wrong = report.misclassified[:24]
        st.markdown("**Misclassified images** (true → predicted, and how sure the net was of it)"
                    + (f" — the first {len(wrong)} of {len(report.misclassified)}" if len(wrong) < len(report.misclassified) else ""))
        for row in range(0, len(wrong), 6):  # a row of columns at a time: a phone stacks them in reading order
            for col, w in zip(st.columns(6), wrong[row:row + 6]):
                col.image(ds.x_test[w.index], caption=f"{w.true_label} → {w.predicted} ({w.confidence:.0%} sure)",
                          width="stretch")
        if not wrong:
            st.success("None — every test image is right.")
