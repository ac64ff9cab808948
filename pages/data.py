"""Data: every data set TorchLab can train on, and your own, made from your camera or your files."""
from pathlib import Path

import streamlit as st

from core.capture import (
    MAX_CLASSES, MAX_PER_CLASS, MAX_TOTAL_BYTES, MIN_SIDE, RECORD_DELAY_S, RECORD_INTERVAL_S, CaptureError,
    CaptureSet, FrameRecorder,
)
from core.data import DatasetError, h5_bytes, install_dataset_file, load_dataset, user_set_path, zip_folder
from core.live import SettingError
from core.preprocess import ImageError
from streamlit_app import (
    IMAGE_TYPES, RecordVideo, data_dir, dataset_peeks, forget_data_caches, kind_label, live_rtc_configuration,
    page_setup, show_error,
)

THUMBS_PER_ROW = 6
RECORD_DEFAULT = 30  # photos a recording keeps unless the user asks otherwise (README, "Fine-tuning")
RECORD_MOST = 100  # 30 s of recording; kept frames hold at most 512 px a side until collected
RECORD_REFRESH_S = 0.5  # how often the recording's progress is redrawn

page_setup("Data")


def captures() -> CaptureSet:
    """This browser session's photos; another session never sees them."""
    return st.session_state.setdefault("d_captures", CaptureSet())


def fresh_key(name: str) -> str:
    """A widget key that changes after each use, so the camera goes live again and the uploader empties."""
    return f"{name}_{st.session_state.get(name + '_n', 0)}"


def renew(name: str) -> None:
    st.session_state[name + "_n"] = st.session_state.get(name + "_n", 0) + 1


def add_photos(cs: CaptureSet, target: str, files: list) -> None:
    added, refused = 0, []
    for f in files:
        try:
            cs.add(target, f.getvalue(), f.name)
            added += 1
        except (ImageError, CaptureError) as e:
            refused.append(str(e))
    st.session_state["d_flash"] = (added, target, refused)


def apply_classes() -> None:
    cs, text = captures(), st.session_state["d_classes_text"]
    names = [n.strip() for n in text.split(",") if n.strip()]
    if dropped := cs.dropped_by(names):
        st.session_state["d_class_error"] = (f"Class {', '.join(dropped)} still has photos: delete them first, "
                                             "or keep the class.")
        st.session_state["d_classes_text"] = ", ".join(cs.classes)
        return
    try:
        cs.set_classes(names)
    except CaptureError as e:
        st.session_state["d_class_error"] = str(e)
    st.session_state["d_classes_text"] = ", ".join(cs.classes)  # the list in force, as the set normalised it


st.title("Data")
st.caption("The data sets TorchLab can train on — the built-in one, the tutorial's files when they are here, "
           "and your own photos.")

# --- what is here ------------------------------------------------------------------------------
peeks = dataset_peeks(include_broken=True)
st.dataframe([{
    "data set": p.title,
    "kind": kind_label(p),
    "train": p.n_train, "test": p.n_test, "classes": ", ".join(p.classes), "source": p.source,
    "notes": p.error or (f"{len(p.skipped)} files skipped" if p.skipped else ""),
} for p in peeks], hide_index=True, width="stretch")
for p in peeks:
    if p.error:
        st.warning(f"**{p.title}** can't be used: {p.error}", icon=":material/warning:")
    elif p.skipped:
        with st.expander(f"{p.title}: {len(p.skipped)} files skipped"):
            st.text("\n".join(p.skipped[:200]))
peeks = [p for p in peeks if p.usable]


def recorder() -> FrameRecorder:
    """This browser session's recorder: kept in the session (the video's thread holds it too), so
    frames recorded just before the video stops are still collected."""
    return st.session_state.setdefault("d_recorder", FrameRecorder())


def record_mode(cs: CaptureSet, target: str) -> None:
    """Photos from the live video: a burst of frames of one class while the hand moves."""
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        rtc = live_rtc_configuration()
    except SettingError as e:
        show_error(f"Live video can't start: {e}")
        return
    rec = recorder()
    ctx = webrtc_streamer(
        key="d_live", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc,
        media_stream_constraints={"video": True, "audio": False},
        video_processor_factory=lambda: RecordVideo(rec),
        translations={"start": "Start the camera", "stop": "Stop"},
    )
    if not ctx.state.playing:
        rec.stop()  # the video stopped mid-recording: what it kept joins the class below
        st.info("Start the camera, then record a burst: a photo every "
                f"{RECORD_INTERVAL_S:.1f} s while you move your hand — nearer, farther, tilted, left and right — "
                "so that the photos differ as a stranger's would. No camera, or no WebRTC? Use the Camera tab.",
                icon=":material/videocam:")
        return
    a, b = st.columns([1, 2], vertical_alignment="bottom")
    # The input exists only while the video plays: its value lives on in a plain key.
    asked = a.number_input("Photos", 1, RECORD_MOST, st.session_state.get("d_rec_n", RECORD_DEFAULT),
                           key="d_rec_count", on_change=keep_record_count,
                           help=f"Frames to keep, one every {RECORD_INTERVAL_S:.1f} s, after a "
                                f"{RECORD_DELAY_S:.0f}-second pause to bring your hand into view.")
    room = cs.room(target)
    count = min(int(asked), room)
    running = rec.status().running
    label = (f"Record {count} photo{'s' * (count != 1)} of class {target}" if room
             else f"Record photos of class {target}")
    if b.button(label, type="primary", icon=":material/radio_button_checked:", disabled=room == 0 or running,
                width="stretch"):
        if not rec.status().running:  # a click that raced the recording's start counts once
            rec.start(target, count)
        st.rerun()  # drawn again with the button off while the recording runs
    if room == 0:
        st.caption(f"Class {target} is full ({MAX_PER_CLASS} photos): delete some, or record another class.")
    st.caption("What counts is inside the square: the net reads that, as it will in Predict.")
    # Polled only while a recording runs: every way it ends leads to a full run that collects it.
    st.fragment(run_every=RECORD_REFRESH_S if running else None)(recording_progress)(cs)


def keep_record_count() -> None:
    st.session_state["d_rec_n"] = st.session_state["d_rec_count"]


def collect_recording(cs: CaptureSet) -> bool:
    """Move the frames the recorder kept into this session's photos. True when a recording has just
    ended: what it added (and refused) is then the page's flash message."""
    done = recorder().collect_into(cs)
    if done is None:
        return False
    note = f"the recording stopped after {done.kept} of {done.asked}" if done.kept < done.asked else ""
    if done.added and not note:  # on to the next class without a photo: a tour of the classes
        i = cs.classes.index(done.class_name) if done.class_name in cs.classes else -1
        empty = [c for c in cs.classes[i + 1:] + cs.classes[:i + 1] if not cs.images[c]]
        if empty:
            st.session_state["d_next_target"] = empty[0]
            note = f"next: class {empty[0]}"
    st.session_state["d_flash"] = (done.added, done.class_name, list(done.refused), note)
    return True


def recording_progress(cs: CaptureSet) -> None:
    """The running recording's progress and its Stop; when it ends, the whole page shows the new photos."""
    if collect_recording(cs):
        st.rerun()
    status = recorder().status()
    if status.running:
        text = (f"Get ready to show class {status.class_name}…" if status.waiting else
                f"Recording class {status.class_name}: {status.kept} of {status.asked} — keep moving your hand")
        st.progress(status.kept / status.asked, text=text)
        if st.button("Stop recording", icon=":material/stop_circle:", key="d_rec_stop"):
            recorder().stop()
            collect_recording(cs)
            st.rerun()


# --- teach it your hand ------------------------------------------------------------------------
cs = captures()
st.subheader("Teach it your hand")
st.markdown(
    "Show the net **your** hand: **record** a burst of photos per class from the live camera while you move your "
    "hand, take them one by one with the **camera**, or **upload** them; save the set, then fine-tune a saved net "
    "on it from the **Train** page. More photos read better: fine-tuned on 5, 10, 20 or 30 photos per class of "
    "other people's hands, the default LeNet read 85, 89, 91 and 92 % of photos it had never seen (README, "
    "\"Fine-tuning\"). Keep the classes `0`–`5` (fingers raised) and a SIGNS net keeps its trained head — or name "
    "your own classes (rock, paper, scissors…)."
)
st.session_state.setdefault("d_classes_text", ", ".join(cs.classes))
st.text_input("Classes, separated by commas", key="d_classes_text", on_change=apply_classes,
              help=f"2–{MAX_CLASSES} names; letters, digits, spaces, - and _.")
if class_error := st.session_state.pop("d_class_error", None):
    show_error(class_error)

left, right = st.columns([5, 6], gap="large")
with left:
    # Plain class names as options: a label that changed with each photo would make Streamlit see a new
    # widget and jump back to the first class between two snapshots.
    if (after := st.session_state.pop("d_next_target", None)) in cs.classes:  # a recording just ended
        st.session_state["d_target"] = after
    target = st.radio("Add photos to class", cs.classes, horizontal=True, key="d_target")
    # Record first: the recommended way, and its camera starts only when asked (the snapshot camera
    # would ask for the webcam the moment the page opened).
    tab_record, tab_camera, tab_upload = st.tabs(["Record", "Camera", "Upload"], key="d_input", on_change="rerun")
    with tab_camera:  # one camera at a time: the snapshot camera only while its tab is open
        snap = None
        if tab_camera.open:
            snap = st.camera_input(f"Show class {target} to the camera", key=fresh_key("d_camera"))
        if snap is not None:
            add_photos(cs, target, [snap])
            renew("d_camera")
            st.rerun()
    with tab_record:
        if tab_record.open:
            record_mode(cs, target)
        else:
            recorder().stop()  # the video closes with its tab
    collect_recording(cs)  # frames a recording kept before it ended, wherever the user is now
    with tab_upload:
        files = st.file_uploader(f"Photos of class {target}", type=IMAGE_TYPES, accept_multiple_files=True,
                                 key=fresh_key("d_upload"))
        if files and st.button(f"Add {len(files)} photo{'s' * (len(files) != 1)} to class {target}", type="primary",
                               icon=":material/add_photo_alternate:"):
            add_photos(cs, target, files)
            renew("d_upload")
            st.rerun()
    if flash := st.session_state.pop("d_flash", None):
        added, to, refused, *note = flash  # a recording adds a note when it was stopped early
        if added:
            note = f" ({note[0]})" if note and note[0] else ""
            st.success(f"Added {added} photo{'s' * (added != 1)} to class {to}{note}.", icon=":material/check:")
        for message in refused:
            show_error(f"Not added: {message}")
    st.caption(f"Limits: {MAX_PER_CLASS} photos per class, {MAX_TOTAL_BYTES // 2**20} MB per session, photos at "
               f"least {MIN_SIDE}×{MIN_SIDE} px (stored at most 512 px a side). Until you save them, your photos "
               "live in this browser tab only.")

with right:
    st.markdown(f"**Your photos** — {cs.total} in this session")
    for c in cs.classes:
        items = cs.images[c]
        # Open: the class being added to, and any of one row; a long class is a click away (recordings
        # make 30 at a time, and the Save box below should stay within reach).
        open_ = bool(items) and (c == target or len(items) <= THUMBS_PER_ROW)
        with st.expander(f"Class {c} — {len(items)} photo{'s' * (len(items) != 1)}", expanded=open_):
            if not items:
                st.caption("No photo yet.")
            for row in range(0, len(items), THUMBS_PER_ROW):
                for col, item in zip(st.columns(THUMBS_PER_ROW), items[row:row + THUMBS_PER_ROW]):
                    col.image(item.thumbnail, width="stretch")
                    if col.button("", key=f"d_del_{item.id}", icon=":material/delete:", type="tertiary",
                                  help=f"Delete this photo of class {c}"):
                        cs.remove(c, item.id)
                        st.rerun()

with st.container(border=True):
    n1, n2, n3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = n1.text_input("Name of the set", key="d_name", placeholder="my-hand",
                         help="Saved as an image folder in the data directory: <name>/<class>/*.jpg.")
    if "d_saved" in st.session_state:
        st.session_state.pop("d_replace", None)  # a replace is ticked for one save, never left armed
    try:
        target_path = user_set_path(name, data_dir()) if name else None
    except DatasetError:
        target_path = None  # the save below says what is wrong with the name
    taken = target_path if target_path is not None and target_path.exists() else None
    if taken is not None:
        old = next((p for p in peeks if p.path is not None and Path(p.path).resolve() == taken.resolve()), None)
        size = f"{old.n_train + old.n_test:,} photos" if old is not None else "a folder"
        replace = n2.checkbox(f"Replace it ({size}, deleted)", key="d_replace",
                              help=f"A set called {taken.name} exists in the data directory. Saving over it "
                                   "deletes its photos for good; another name keeps both.")
        if not replace:
            st.warning(f"A data set called **{taken.name}** exists already ({size}). Choose another name, or "
                       "tick **Replace it** to delete it and save yours in its place.", icon=":material/warning:")
    else:
        replace = False
    problems = cs.problems()
    if n3.button("Save data set", type="primary", icon=":material/save:",
                 disabled=bool(problems) or not name or (taken is not None and not replace),
                 width="stretch"):
        try:
            folder = cs.save(name, data_dir(), overwrite=replace)
            forget_data_caches()
            st.session_state["d_saved"] = folder.name
            st.rerun()
        except (CaptureError, DatasetError, OSError) as e:
            show_error(f"Not saved: {e}")
    if not name:
        problems = [*problems, "name the set"]  # the grey "my-hand" is only an example
    if problems:
        st.caption("To save: " + "; ".join(problems) + ".")
    if saved := st.session_state.pop("d_saved", None):
        st.success(f"Saved **{saved}** in `{data_dir()}`. Fine-tune a net on it from the Train page.",
                   icon=":material/check:")
        st.page_link("pages/train.py", label="Open Train", icon=":material/monitoring:")

# --- take a set away ---------------------------------------------------------------------------
folders = [p for p in peeks if p.kind == "folder"]
if folders:
    st.subheader("Download a set")
    pick = st.selectbox("Data set", [p.key for p in folders], key="d_download_pick",
                        format_func=lambda k: next(p.title for p in folders if p.key == k))
    peek = next(p for p in folders if p.key == pick)
    d1, d2, d3 = st.columns(3)
    # Made on click (on Streamlit's download thread), from the files as they are then.
    d1.download_button("Image folder (.zip)", lambda path=peek.path: zip_folder(path), file_name=f"{pick}.zip",
                       mime="application/zip", icon=":material/folder_zip:", width="stretch")
    # The HDF5 pair is made from the loaded set: 64×64 images in the tutorial's layout, with the loader's split.
    d2.download_button(f"train_{pick}.h5", lambda k=pick: h5_bytes(load_dataset(k, data_dir()))[0],
                       file_name=f"train_{pick}.h5", mime="application/x-hdf5", icon=":material/download:",
                       width="stretch")
    d3.download_button(f"test_{pick}.h5", lambda k=pick: h5_bytes(load_dataset(k, data_dir()))[1],
                       file_name=f"test_{pick}.h5", mime="application/x-hdf5", icon=":material/download:",
                       width="stretch")
    st.caption("The HDF5 pair is the tutorial's layout (`train_set_x` N×64×64×3 uint8, `train_set_y`, "
               "`list_classes`): the tutorial's own code reads it as it reads SIGNS.")

# --- the tutorial's files ----------------------------------------------------------------------
with st.expander("Add the tutorial's HDF5 files", expanded=not any(p.kind == "hdf5" for p in peeks)):
    st.write(
        "Upload the tutorial's HDF5 files by their own names — `train_signs.h5`, `test_signs.h5`, "
        f"`train_catvnoncat.h5`, `test_catvnoncat.h5`. Each is checked before it is stored in `{data_dir()}`."
    )
    h5_files = st.file_uploader("HDF5 data files", type=["h5"], accept_multiple_files=True, key="h_data_upload")
    if h5_files and st.button("Check and add", type="primary", icon=":material/upload:"):
        added = []
        for f in h5_files:
            try:
                added.append(install_dataset_file(f.name, f.getvalue(), data_dir()).name)
            except DatasetError as e:
                show_error(f"Not added: {e}")
        if added:
            forget_data_caches()
            st.success(f"Added {', '.join(added)}. A data set appears once both its train and test files are here.",
                       icon=":material/check:")
