"""TorchLab: learn PyTorch by doing. Entry point and navigation (`streamlit run streamlit_app.py`).

Run by Streamlit as ``__main__`` it builds the navigation; imported by a page it only provides the
shared shell (sidebar, cached data and models, per-session state), so every page works the same
whether it was reached through the navigation or opened first by its own URL.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import streamlit as st

from core.data import (
    Dataset, DatasetPeek, best_hand_dataset, list_datasets, load_dataset, peek_dataset, resolve_data_dir,
)
from core.spec import ModelSpec, default_spec

if TYPE_CHECKING:  # torch-backed modules load in the background (see start_warm_up)
    import av

    from core.capture import FrameRecorder
    from core.checkpoint import Checkpoint
    from core.jobs import Run, RunHistory
    from core.live import LivePredictor

ROOT = Path(__file__).resolve().parent
PAGES = [
    ("pages/home.py", "Overview", ":material/home:"),
    ("pages/data.py", "Data", ":material/photo_library:"),
    ("pages/build.py", "Build", ":material/construction:"),
    ("pages/train.py", "Train", ":material/monitoring:"),
    ("pages/predict.py", "Predict", ":material/back_hand:"),
]
IMAGE_TYPES = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]  # what core.preprocess decodes
# Under a test figure of a set whose test photos were split off the user's own (Train and Predict).
SAME_SITTING_NOTE = ("The test photos were set aside from the same photos as the training ones, and photos taken "
                     "in one sitting look alike: another room, light or person reads lower than this. Photos from "
                     "a few places and days make the figure honest and the net better.")
MAX_RUNS = 12  # run history kept per browser session; older runs are dropped with their tensors
KEEP_MODELS = 4  # runs whose trained model stays in memory (to save or inspect); older keep curves only


# --- start-up ----------------------------------------------------------------------------------

# A training thread gives the GIL up at every torch op and waits to get it back whenever a page
# script or the server holds it, by default up to 5 ms each time: a fragment drawing the live chart
# then slowed training by more than the work it did itself. A shorter switch interval hands the GIL
# back in time (README, "Performance").
sys.setswitchinterval(0.0005)

# Importing torch and the nets takes about 1.5 s, which the Overview does not need: they load in a
# background thread once the first page has rendered, so that page comes at once and the others
# find them ready. A page that imports them sooner simply waits on Python's import lock.
_warm_up = threading.Thread(target=lambda: (__import__("core.inference"), share_cores()), name="torchlab-warm-up",
                            daemon=True)
_warm_up_lock = threading.Lock()
_pending = threading.local()  # this script run's device slot in the sidebar, while torch is loading


def start_warm_up() -> None:
    """Start loading torch and ``core``'s nets in the background (once per process)."""
    with _warm_up_lock:
        if _warm_up.ident is None:  # not started yet
            _warm_up.start()


def _torch_ready() -> bool:
    """Whether torch is fully imported (by the warm-up or by the page now running)."""
    torch = sys.modules.get("torch")
    return torch is not None and not getattr(torch.__spec__, "_initializing", False)


def page_setup(title: str) -> None:
    """Call first on every page: page config, deep-link repair, and the shared sidebar."""
    st.set_page_config(page_title=f"{title} · TorchLab", page_icon="🔥", layout="wide")
    _repair_deep_link()
    if title != "Train":  # (the Train page shows its run itself)
        _keep_the_run()
    render_sidebar()


def _repair_deep_link() -> None:
    # On a fresh server, Streamlit's legacy pages/ discovery runs a page opened by its URL on its own,
    # before streamlit_app.py has registered the navigation. Switch discovery off and rerun: the
    # rerun goes through streamlit_app.py, whose st.navigation resolves the same URL to this page.
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# --- cached, read-only resources ---------------------------------------------------------------


@st.cache_resource(show_spinner="Loading data…", max_entries=8)
def get_dataset(key: str, data_dir: str, image_size: int | None = None) -> Dataset:
    """A data set, loaded once per process and shared read-only by all sessions. ``image_size``
    is the side its photos are made at when it is an image folder (a net's input size)."""
    return load_dataset(key, data_dir, image_size=image_size)


@st.cache_data(ttl=30, show_spinner=False)
def get_peek(key: str, data_dir: str) -> DatasetPeek:
    """A data set's classes and sizes from the file headers: cheap, for menus and tables."""
    return peek_dataset(key, data_dir)


@st.cache_resource(show_spinner="Loading checkpoint…", max_entries=8)
def get_checkpoint(path: str, mtime: float) -> Checkpoint:
    """A saved checkpoint's model (eval mode), shared read-only; ``mtime`` invalidates on re-save."""
    from core.checkpoint import load_checkpoint

    return load_checkpoint(path, name=Path(path).name)


@st.cache_resource(show_spinner=False, max_entries=4, ttl=900)
def _export(ident: str, fmt: str, data_dir: str, _ckpt: Checkpoint):
    """One export of a checkpoint, made once per content (``ident``) and format and shared: ONNX
    export of a ResNet-50 takes seconds, which no rerun of a page should pay again."""
    from core.export import export_bytes

    return export_bytes(_ckpt, fmt, data_dir)


def export_downloads(ckpt: Checkpoint, ident: str, key: str, side_by_side: bool = True,
                     formats: tuple[str, ...] | None = None) -> None:
    """A button per export format (README, "Export"; ``formats``, default all), side by side or one
    under the other. Pressed, it exports the checkpoint (checked, and cached per ``ident``, the
    checkpoint's content: path and mtime, or an upload's digest) and becomes the file's download
    button. ``key`` prefixes the widget keys."""
    from core.export import FORMAT_HELP, FORMATS, ExportError

    labels = {fmt: FORMATS[fmt] for fmt in (formats or FORMATS)}
    asked = st.session_state.setdefault(f"{key}_exports", set())  # (ident, format) pairs this session made
    places = st.columns(len(labels)) if side_by_side else [st.container() for _ in labels]
    width = "stretch" if side_by_side else "content"  # one under the other: like the buttons above them
    for place, (fmt, label) in zip(places, labels.items()):
        slot = place.empty()  # the button, then (in the same run) the download that replaces it
        if (ident, fmt) not in asked and not slot.button(f"Export {label}", key=f"{key}_export_{fmt}",
                                                         help=FORMAT_HELP[fmt], icon=":material/ios_share:",
                                                         width=width):
            continue
        try:
            with slot.container(), st.spinner(f"Exporting {label}…"):
                result = _export(ident, fmt, data_dir(), ckpt)
        except ExportError as e:
            asked.discard((ident, fmt))
            with slot.container():
                show_error(f"Not exported: {e}")
            continue
        asked.add((ident, fmt))
        with slot.container():
            st.download_button(f"Download {label}", result.data, file_name=result.file_name, mime=result.mime,
                               key=f"{key}_download_{fmt}", on_click="ignore", icon=":material/download:",
                               width=width)
            st.caption(result.describe())


@st.cache_data(ttl=30, show_spinner=False)
def _list_datasets(data_dir: str, include_broken: bool) -> list[DatasetPeek]:
    return list_datasets(data_dir, include_broken=include_broken)


def forget_data_caches() -> None:
    """After a data set was added or replaced: every session must see the files as they are now."""
    get_dataset.clear()
    get_peek.clear()
    _list_datasets.clear()


def data_dir() -> str:
    return str(resolve_data_dir())


@dataclass(frozen=True)
class SavedCheckpoint:
    """What the Train page's menus need to know of a saved checkpoint, without holding its model."""

    name: str
    arch: str = ""
    dataset_key: str = ""
    test_acc: float | None = None
    describe: str = ""
    error: str | None = None
    spec: dict | None = None  # ModelSpec.to_dict(): which net it is, for menus that match nets


@st.cache_data(max_entries=64, show_spinner=False)
def _checkpoint_info(path: str, mtime: float) -> SavedCheckpoint:
    from core.checkpoint import CheckpointError, load_checkpoint

    name = Path(path).name
    try:
        c = load_checkpoint(path, name=name)
    except CheckpointError as e:
        return SavedCheckpoint(name, error=str(e))
    acc = c.metrics.get("test_acc")
    return SavedCheckpoint(name, c.spec.arch, str(c.dataset.get("key", "")), acc if isinstance(acc, float) else None,
                           c.describe(), spec=c.spec.to_dict())


def saved_checkpoints() -> list[SavedCheckpoint]:
    """The checkpoints folder, newest first; a file that can't be loaded carries its ``error``."""
    from core.checkpoint import list_checkpoints

    found = []
    for p in list_checkpoints():
        try:
            found.append(_checkpoint_info(str(p), p.stat().st_mtime))
        except OSError:  # deleted meanwhile
            continue
    return found


def newest_first(peeks: list[DatasetPeek]) -> list[DatasetPeek]:
    """Data sets with a folder, the most recently saved first."""
    def mtime(p: DatasetPeek) -> float:
        try:
            return p.path.stat().st_mtime if p.path else 0.0
        except OSError:
            return 0.0
    return sorted(peeks, key=mtime, reverse=True)


def dataset_peeks(include_broken: bool = False) -> list[DatasetPeek]:
    """Every data set here: the tutorial's files, the user's own sets, the built-in synthetic one
    (and, with ``include_broken``, folders that cannot be used, each with its ``error``)."""
    return _list_datasets(data_dir(), include_broken)


def datasets_here() -> list[str]:
    return [p.key for p in dataset_peeks()]


def kind_label(peek: DatasetPeek) -> str:
    """What a data set is, in the words of the data tables."""
    return {"synthetic": "synthetic (generated)", "hdf5": "real photos (tutorial HDF5)",
            "folder": "real photos (image folder)"}.get(peek.kind, peek.kind)


def dataset_title(key: str) -> str:
    return next((p.title for p in dataset_peeks() if p.key == key), key)


# --- per-session state -------------------------------------------------------------------------


def current_spec() -> ModelSpec:
    """The net chosen on the Build page (the default LeNet for the best hand data until then)."""
    if "spec" not in st.session_state:
        ds = get_peek(best_hand_dataset(data_dir()), data_dir())
        st.session_state["spec"] = default_spec("lenet", len(ds.classes))
        st.session_state["spec_dataset"] = ds.key
    return st.session_state["spec"]


def current_dataset_key() -> str:
    key = st.session_state.get("spec_dataset")
    return key if key in datasets_here() else best_hand_dataset(data_dir())


def runs() -> RunHistory:
    """This session's run history (newest last): :data:`MAX_RUNS` runs, the models of the newest
    :data:`KEEP_MODELS` (see :class:`core.jobs.RunHistory`)."""
    from core.jobs import RunHistory

    if not isinstance(st.session_state.get("runs"), RunHistory):
        st.session_state["runs"] = RunHistory(MAX_RUNS, KEEP_MODELS)
    return st.session_state["runs"]


# --- compute budget: intra-op threads per training step, steps at once --------------------------

SMALL_CPU = 4  # cores up to which a run leaves one core to the server and the browser
_shared = threading.Lock()


def share_cores() -> None:
    """Decide the process's compute budget once torch is imported (idempotent): on a small CPU
    each training step gets one core fewer than there are (unless ``OMP_NUM_THREADS`` says
    otherwise), and as many steps run at once as fit into the cores
    (:data:`core.trainer.COMPUTE_TURNS`).

    A step's intra-op threads wait on each other at every parallel op: when the browser drawing
    the live chart or the server's own work takes one of two cores, a two-thread step stalls for
    whole scheduler slices, and training ran at a quarter of its speed. One thread a step leaves
    that core free, and lets two sessions' runs train side by side. README, "Performance", has
    the measurements."""
    import torch

    from core.trainer import COMPUTE_TURNS

    with _shared:
        cores = os.cpu_count() or 1
        if cores <= SMALL_CPU and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, cores - 1))
        COMPUTE_TURNS.slots = max(1, cores // max(1, torch.get_num_threads()))


# --- runs: which session shows a run -----------------------------------------------------------


def session_liveness() -> tuple[str, Callable[[], bool]] | None:
    """This browser session's id and a check, safe from any thread, that it is still connected;
    None where there are no sessions to lose (AppTest, bare mode). A run shown by no connected
    session stops itself after a grace period (:class:`core.jobs.TrainingJob`)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime, session_id = Runtime.instance(), ctx.session_id
    return session_id, lambda: runtime.is_active_session(session_id)


def show_run(run: Run) -> None:
    """Make ``run`` this session's shown run: the session counts as its watcher, and the page's
    URL carries its id (``?run=…``), so a refresh or a copied link re-attaches to it."""
    watcher = session_liveness()
    if watcher is not None:
        run.watch(*watcher)
    st.session_state["job"] = run.job
    if st.query_params.get("run") != run.id:
        st.query_params["run"] = run.id


def _keep_the_run() -> None:
    """On every page, the URL names this session's running run, and a URL naming another session's
    run (a refresh here) brings that run into this session: a refresh on any page keeps the run
    watched, and the Train page shows it (and its settings, ``t_adopted``)."""
    history = st.session_state.get("runs")  # read, not made: without runs the Overview needs no torch
    wanted = st.query_params.get("run")
    if wanted and (history is None or history.find(wanted) is None):
        run, _ = run_from_url()
        if run is not None:
            st.session_state["t_adopted"] = run.id
            show_run(run)
    elif history is not None and history.current is not None and history.current.running:
        show_run(history.current)


def run_from_url() -> tuple[Run | None, bool]:
    """The run the URL names (``?run=…``), attached to this session's history if it came from
    another session; and whether the URL named one that this server no longer has."""
    from core.jobs import find_run

    wanted = st.query_params.get("run")
    if not wanted:
        return None, False
    history = runs()
    run = history.find(wanted) or find_run(wanted)
    if run is None:
        del st.query_params["run"]
        return None, True
    if history.current is not run:
        history.attach(run)
    return run, False


# --- live webcam (streamlit-webrtc) ------------------------------------------------------------


def live_rtc_configuration() -> dict:
    """The WebRTC configuration of the live webcam: ``$TORCHLAB_ICE_SERVERS`` (README, "Live
    webcam"), else no ICE server at all — streamlit-webrtc would otherwise fill in a public STUN
    server, and the app must work offline. Raises ``core.live.SettingError`` for a malformed
    setting."""
    from core.live import ICE_SERVERS_ENV, parse_ice_servers

    return {"iceServers": parse_ice_servers(os.environ.get(ICE_SERVERS_ENV))}


class LiveVideo:
    """streamlit-webrtc's video processor for one stream, run on that stream's own thread (never
    the script's, and never touching ``st.session_state``): it hands the newest frame to its
    :class:`core.live.LivePredictor` and sends the frame back with the square the net reads (and
    the heat map) drawn on it. The page reads the answers from ``predictor.latest``."""

    def __init__(self, predictor: LivePredictor) -> None:
        self.predictor = predictor

    async def recv_queued(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """The frames that arrived while the previous one was being predicted: only the newest is
        predicted, so a net slower than the camera answers for what it shows now."""
        return [self.answer(frames[-1], skipped=len(frames) - 1)]

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        return self.answer(frame, skipped=0)

    def answer(self, frame: av.VideoFrame, skipped: int) -> av.VideoFrame:
        """Predict ``frame`` (``skipped`` older ones left out for it) and return the frame to show."""
        from av import VideoFrame

        from core.live import annotate

        image = frame.to_ndarray(format="rgb24")
        # A frame not predicted (the stream yields to a training run) shows the newest answer's heat map.
        result = self.predictor.process(image, skipped) or self.predictor.latest
        return VideoFrame.from_ndarray(annotate(image, result), format="rgb24")


class RecordVideo:
    """streamlit-webrtc's video processor for the Data page's recordings, on the stream's own thread
    (never the script's, and never touching ``st.session_state``: the recorder is thread-safe, the
    session is not): it offers every frame to the session's :class:`core.capture.FrameRecorder` and
    sends it back with the square the net will read outlined and the recording's progress under it."""

    def __init__(self, recorder: FrameRecorder) -> None:
        self.recorder = recorder

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        from av import VideoFrame

        from core.live import annotate_recording

        image = frame.to_ndarray(format="rgb24")
        self.recorder.offer(image)
        return VideoFrame.from_ndarray(annotate_recording(image, self.recorder.status()), format="rgb24")


# --- sidebar -----------------------------------------------------------------------------------


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### 🔥 TorchLab")
        st.caption("Learn PyTorch by doing: build, train, predict.")
        st.markdown("**Data**")
        real = [p.title for p in dataset_peeks() if not p.synthetic]
        if real:
            st.success("Real data: " + ", ".join(real), icon=":material/database:")
        else:
            st.warning(
                "Using the **built-in synthetic** finger-count set (generated, not photos). For the real "
                f"SIGNS and cat sets put `train_signs.h5`, `test_signs.h5`, … in `{data_dir()}` "
                "or set `TORCHLAB_DATA_DIR`.",
                icon=":material/science:",
            )
        st.markdown("**Device**")
        slot = st.empty()
        _pending.slot = None if _torch_ready() else slot  # then filled once the page has rendered
        if _pending.slot is None:
            slot.caption(_describe_device())
        st.markdown("**Net to train**")  # (Predict uses a saved checkpoint, named on its page)
        spec = st.session_state.get("spec")
        st.caption(spec.describe() if spec else "LeNet-5 (default) — choose one on Build")


def _describe_device() -> str:
    from core.device import describe_device, pick_device

    share_cores()  # the threads a run gets, even when this page rendered before the warm-up set them
    return describe_device(pick_device("auto"))


def fill_pending_device() -> None:
    """Write the sidebar's device line if the page rendered before torch had loaded."""
    slot = getattr(_pending, "slot", None)
    _pending.slot = None
    if slot is not None:
        slot.caption(_describe_device())


def plotting():
    """Plotly's figure module and ``make_subplots``, for the pages that draw charts.

    Plotly looks pandas up in ``sys.modules`` without importing it: while another session's thread
    was still importing pandas (``st.dataframe`` does), building a figure raised "partially
    initialized module 'pandas' has no attribute 'Series'". Importing pandas first waits until that
    import is complete. Not at the top of this module: the Overview needs neither, and renders first.
    """
    import pandas  # noqa: F401
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    return go, make_subplots


def show_error(message: str) -> None:
    """The one way pages report a failure: what went wrong and what to do, no traceback."""
    st.error(message, icon=":material/error:")


def device_options() -> list[str]:
    from core.device import available_devices

    return ["auto", *available_devices()]


def main() -> None:
    import streamlit_app as shell  # the module the pages import: its state lasts as long as the process

    # The tab's icon is ours before the navigation names a page: a page's material icon would be the
    # favicon, fetched from Google's font server (a request to the internet on every page, offline or not).
    st.set_page_config(page_icon="🔥")
    nav = st.navigation([st.Page(str(ROOT / p), title=t, icon=i, default=(p == PAGES[0][0])) for p, t, i in PAGES])
    nav.run()
    shell.start_warm_up()  # after the page: the import would compete with it for the GIL
    shell.fill_pending_device()


if __name__ == "__main__":
    main()
