"""Build: choose a net and its options; read its code in both styles, its summary, and check the
two styles compute the same thing. Then look inside it: its first layer's filters and its feature
maps for a sample image, untrained and, when a checkpoint of the same net is saved, trained."""
from typing import NamedTuple

import numpy as np
import streamlit as st
import torch
from torch import nn

from core.checkpoint import checkpoint_dir
from core.codegen import generate_code
from core.explain import enlarge, feature_maps, learned_filters
from core.nets import build_model, copy_weights
from core.spec import ARCHS, ModelSpec, default_spec
from core.summary import summarize
from core.tensors import images_to_tensor, tensor_to_image
from streamlit_app import (
    current_dataset_key, current_spec, data_dir, dataset_title, datasets_here, get_checkpoint, get_dataset, page_setup,
    saved_checkpoints, show_error,
)

page_setup("Build")


@st.cache_data(show_spinner="Building both styles…", max_entries=32)
def inspect(spec_dict: dict, dataset_key: str) -> dict:
    """Code, summary and the style-equality check for one spec (pure function of its inputs)."""
    spec = ModelSpec.from_dict(spec_dict)
    module, sequential = build_model(spec, "module", seed=0), build_model(spec, "sequential", seed=1)
    copy_weights(module, sequential)
    ds = get_dataset(dataset_key, data_dir())
    x = images_to_tensor(ds.x_test[:8].copy(), spec.in_channels, spec.input_size)
    module.eval()
    sequential.eval()
    with torch.no_grad():
        a, b = module(x), sequential(x)
    summary = summarize(module, spec)
    return {
        "module_code": generate_code(spec, "module"),
        "sequential_code": generate_code(spec, "sequential"),
        "rows": summary.to_records(),
        "total": summary.total_params,
        "trainable": summary.trainable_params,
        "mult_adds": summary.mult_adds,
        "max_diff": float((a - b).abs().max()),
        "equal": bool(torch.equal(a, b)),
        "batch": tuple(x.shape),
        "out_shape": tuple(a.shape),
    }


# --- look inside: helpers ------------------------------------------------------------------------

SAMPLES = 24  # the first test images offered as the sample
MAX_FILTERS = 20  # first-layer filters drawn (ResNet-50 has 64; the MLP one per unit of its first layer)
TILE = 56  # each map or filter is enlarged to about this many pixels, by a whole factor
GRID_WIDTH = 440  # the widest a grid is drawn: half of the wide layout's main area on a laptop
GAP = 2  # white pixels between the tiles of a grid

LOOK_CODE = """\
import torch
from torch import nn
from core.nets import feature_stages  # the net's conv stages, the same in both styles

model.eval()                            # batch norm uses its running statistics, not this image's
x = images[:1]                          # one image: 1×C×H×W floats in [0, 1]
with torch.no_grad():                   # only looking: no graph, no gradients
    for stage in feature_stages(model): # LeNet-5: conv1, conv2; ResNet-50: stem, stage 1 … 4
        x = stage.forward(x)            # the stage's output: 1×C×h×w activations
        print(stage.name, tuple(x.shape))
first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
print(tuple(first.weight.shape))        # the filters: out × in × k × k
"""


def _grid(images: np.ndarray) -> np.ndarray:
    """N×h×w (gray) or N×h×w×3 (RGB) floats in [0, 1] → one uint8 picture of them, in rows that
    fit :data:`GRID_WIDTH`, separated by white lines."""
    tiles = [enlarge(t, TILE) for t in (np.clip(images, 0, 1) * 255).round().astype(np.uint8)]
    th, tw = tiles[0].shape[:2]
    per_row = max(1, min(len(tiles), (GRID_WIDTH + GAP) // (tw + GAP)))
    rows = -(-len(tiles) // per_row)
    out = np.full((rows * (th + GAP) - GAP, per_row * (tw + GAP) - GAP, *tiles[0].shape[2:]), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, per_row)
        out[r * (th + GAP):r * (th + GAP) + th, c * (tw + GAP):c * (tw + GAP) + tw] = tile
    return out


def _sample(dataset_key: str, index: int, spec: ModelSpec) -> torch.Tensor:
    """Test image ``index`` as the net gets it: 1×C×H×W (the training path's conversion)."""
    ds = get_dataset(dataset_key, data_dir())
    return images_to_tensor(ds.x_test[index:index + 1].copy(), spec.in_channels, spec.input_size)


def _inside(model: nn.Module, spec: ModelSpec, x: torch.Tensor) -> dict:
    """What the section draws of one net (eval mode), as plain arrays: nothing here holds the model."""
    f = learned_filters(model, spec.input_shape)
    n = f.images.shape[0]
    shown = f.images[:MAX_FILTERS]
    more = f" (the first {len(shown)} shown)" if len(shown) < n else ""
    stages = []
    for s in feature_maps(model, x):
        c, h, w = s.shape
        which = "" if len(s.channels) == c else f" · the {len(s.channels)} strongest of {c} channels"
        stages.append({"name": s.name, "grid": _grid(s.maps), "caption": f"out of {s.name} — {c}×{h}×{w}{which}"})
    return {"filters": _grid(shown), "filters_caption": f"{f.description}{more}", "stages": stages}


@st.cache_data(show_spinner="Looking inside the net…", max_entries=64)
def inside_untrained(spec_dict: dict, dataset_key: str, index: int) -> dict:
    """Filters and feature maps of the page's net as built (seed 0, as :func:`inspect`'s)."""
    spec = ModelSpec.from_dict(spec_dict)
    # Built afresh on every miss rather than kept in a cache: no one else can ever train or change it.
    model = build_model(spec, "module", seed=0).eval()
    return _inside(model, spec, _sample(dataset_key, index, spec))


def _first_weight(model: nn.Module) -> torch.Tensor:
    """The weights :func:`~core.explain.learned_filters` draws: the first conv layer's, else the first linear's."""
    layer = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    layer = layer or next(m for m in model.modules() if isinstance(m, nn.Linear))
    return layer.weight.detach().float().cpu()


@st.cache_data(show_spinner="Looking inside the trained net…", max_entries=64)
def inside_trained(path: str, mtime: float, dataset_key: str, index: int) -> dict:
    """Filters and feature maps of a saved checkpoint's net; for a new run trained from seed 0
    (the untrained column's weights) also how far its first layer moved: ‖W − W₀‖ / ‖W₀‖."""
    ckpt = get_checkpoint(path, mtime)  # shared by every session: core.explain only reads it
    drawn = _inside(ckpt.model, ckpt.spec, _sample(dataset_key, index, ckpt.spec))
    drawn["moved"] = None
    new_run = not ckpt.origin.get("init_from") and not ckpt.origin.get("resumed_from")
    if new_run and ckpt.training.get("seed") == 0:  # the Trainer builds a new run with its seed
        start = _first_weight(build_model(ckpt.spec, ckpt.style, seed=0))
        drawn["moved"] = float((_first_weight(ckpt.model) - start).norm() / start.norm())
    return drawn


def same_features(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs have the same layers up to the head: the same filters and feature maps.

    The class count only sizes the last layer, which neither picture passes through, and dropout
    has no weights and is off in eval mode; so a LeNet trained on 6 signs compares with the same
    LeNet built for 2 classes. Hidden sizes are the MLP's layers (the conv nets ignore them).
    """
    keys = ["arch", "in_channels", "input_size", "batchnorm"] + (["hidden"] if a.arch == "mlp" else [])
    return all(getattr(a, k) == getattr(b, k) for k in keys)


class Comparable(NamedTuple):
    """A saved checkpoint the section can draw beside the page's net."""

    name: str
    path: str
    mtime: float
    describe: str


def comparable_checkpoints(spec: ModelSpec) -> list[Comparable]:
    """The saved checkpoints whose net has the same features as ``spec``'s, newest first."""
    found = []
    for saved in saved_checkpoints():
        if saved.error is not None or saved.arch != spec.arch:  # reads no other arch's file
            continue
        path = checkpoint_dir() / saved.name
        try:
            mtime = path.stat().st_mtime
        except OSError:  # deleted meanwhile
            continue
        if saved.spec is not None and same_features(spec, ModelSpec.from_dict(saved.spec)):
            found.append(Comparable(saved.name, str(path), mtime, saved.describe))
    return found


def _draw(where, picture: np.ndarray, caption: str) -> None:
    # PNG, as JPEG would smear the enlarged pixels; at its own width (never past its column), or a caption
    # wider than the picture would stretch it (and the browser blur it).
    where.image(picture, caption=caption, width="content", output_format="PNG")


def draw_inside(drawn: dict, arch: str) -> None:
    """One net's filters and feature maps, in the current column."""
    _draw(st, drawn["filters"], f"Filters: {drawn['filters_caption']}")
    for stage in drawn["stages"]:
        _draw(st, stage["grid"], stage["caption"])
    if not drawn["stages"]:
        st.caption(f"The {ARCHS[arch]} has no conv layers, so no feature maps: every unit of its first layer "
                   "looks at the whole image at once, through the weights drawn above.")


def _on_arch_change() -> None:
    # A new architecture starts from TorchLab's default for it (core.spec.default_spec).
    d = default_spec(st.session_state["b_arch"])
    st.session_state["b_channels"] = "RGB" if d.in_channels == 3 else "Gray"
    st.session_state["b_batchnorm"] = d.batchnorm
    st.session_state["b_dropout"] = 0.0


spec0 = current_spec()
st.session_state.setdefault("b_arch", spec0.arch)
st.session_state.setdefault("b_data", current_dataset_key())
st.session_state.setdefault("b_channels", "RGB" if spec0.in_channels == 3 else "Gray")
st.session_state.setdefault("b_batchnorm", spec0.batchnorm)
st.session_state.setdefault("b_dropout", spec0.dropout)
st.session_state.setdefault("b_hidden", ", ".join(map(str, spec0.hidden)))
st.session_state.setdefault("b_size", spec0.input_size)

st.title("Build a net")
st.caption("One spec, two construction styles: change an option and the code, the summary and the check all follow.")

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([1.2, 1.6, 1, 1])
    arch = c1.selectbox("Architecture", list(ARCHS), format_func=ARCHS.get, key="b_arch", on_change=_on_arch_change,
                        help="MLP: fully connected, as in the cat/non-cat example. LeNet-5: two conv layers. "
                             "ResNet-50: 50 layers with bottleneck blocks and skip connections.")
    options = datasets_here()
    if st.session_state["b_data"] not in options:
        st.session_state["b_data"] = options[0]
    data_key = c2.selectbox("Data set (sets the classes)", options, format_func=dataset_title, key="b_data",
                            help="The net's last layer has one output per class of this data set.")
    channels = c3.radio("Input", ["Gray", "RGB"], key="b_channels", horizontal=True,
                        help="Gray: one channel (0.299 R + 0.587 G + 0.114 B), as the tutorial's LeNet. RGB: three.")
    size = c4.selectbox("Input size", [32, 64, 96, 128], key="b_size",
                        help="Images are resized to this many pixels square. The data sets are 64×64.")
    c5, c6, c7 = st.columns([1.2, 1.6, 2])
    dropout = c5.slider("Dropout p", 0.0, 0.8, step=0.05, key="b_dropout",
                        help="Probability of zeroing each hidden activation while training (not in eval mode).")
    batchnorm = c6.toggle("Batch norm", key="b_batchnorm",
                          help="Normalise each layer's activations over the mini-batch; usually trains faster. The "
                               "tutorial's MLP has none — and without it, on raw pixels, it learns nothing on SIGNS "
                               "(README, \"The nets\").")
    hidden_text = c7.text_input("Hidden sizes (MLP)", key="b_hidden", disabled=arch != "mlp",
                                help="Comma-separated widths of the hidden layers; the tutorial uses 20, 7, 5.")

ds = get_dataset(data_key, data_dir())
widths = [h for h in hidden_text.replace(" ", "").split(",") if h]
if not all(h.isdigit() for h in widths):
    bad = ", ".join(f"`{h}`" for h in widths if not h.isdigit())
    show_error(f"Hidden sizes are whole numbers separated by commas, like `20, 7, 5` — not {bad}.")
    st.stop()
try:
    spec = ModelSpec(arch, ds.num_classes, in_channels=3 if channels == "RGB" else 1, input_size=int(size),
                     hidden=tuple(map(int, widths)) or (20, 7, 5), dropout=float(dropout), batchnorm=bool(batchnorm))
except ValueError as e:  # SpecError names the setting and its range
    show_error(f"These options don't make a valid net: {e}.")
    st.stop()

info = inspect(spec.to_dict(), data_key)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Parameters", f"{info['total']:,}")
m2.metric("Trainable", f"{info['trainable']:,}")
m3.metric("Multiply-adds / image", f"{info['mult_adds'] / 1e6:,.1f} M")
m4.metric("Classes", ds.num_classes, help=", ".join(ds.classes))

if info["equal"]:
    st.success(
        f"Both styles give identical outputs: with the same weights, on {info['batch'][0]} {ds.title} test images "
        f"(batch {info['batch']} → {info['out_shape']}), max |module − sequential| = {info['max_diff']:.1e}.",
        icon=":material/check_circle:",
    )
else:
    st.warning(f"The two styles differ by up to {info['max_diff']:.2e} on the sample batch.")

left, right = st.columns(2)
with left:
    st.markdown("##### `nn.Module` subclass")
    st.code(info["module_code"], language="python", line_numbers=True, wrap_lines=False)
with right:
    st.markdown("##### `nn.Sequential`")
    st.code(info["sequential_code"], language="python", line_numbers=True, wrap_lines=False)

st.markdown("##### Layer by layer")
layer_rows = [{"layer": r["name"], "type": r["type"], "output shape": "×".join(map(str, r["output_shape"])),
               "parameters": r["parameters"], "trainable": r["trainable"]} for r in info["rows"]
              if not (r["type"] == "Dropout" and spec.dropout == 0)]  # p = 0 does nothing; the code omits it too
st.dataframe(layer_rows, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(layer_rows)),
             column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                            "trainable": st.column_config.CheckboxColumn(
                                help="Whether the layer's weights learn (a layer without weights counts as yes).")})

if spec == st.session_state.get("spec") and data_key == st.session_state.get("spec_dataset"):
    st.info("This is the net the Train page uses.", icon=":material/check:")
if st.button("Use this net", type="primary", icon=":material/arrow_forward:"):
    st.session_state["spec"] = spec
    st.session_state["spec_dataset"] = data_key
    st.switch_page("pages/train.py")

# --- look inside -----------------------------------------------------------------------------------
st.divider()
st.subheader("Look inside")
st.caption(
    "A first-layer **filter** is the pattern one unit looks for: mid-gray is a zero weight, lighter "
    "positive, darker negative. Untrained they are random noise; training shapes them into edge and blob "
    "detectors. A **feature map** shows where in the sample image a filter responds: bright where it "
    "fires, black where it stays silent (one scale per stage). Deeper stages are smaller and respond to "
    "larger patterns. Often the maps show what the net learned more clearly than the small filters do."
)
n_samples = min(SAMPLES, len(ds.x_test))
if n_samples == 0:
    st.info(f"{ds.title} has no test images to look at: pick another data set.", icon=":material/info:")
    st.stop()
if st.session_state.get("b_sample", 0) >= n_samples:  # a data set with fewer test images
    st.session_state["b_sample"] = 0
pick, seen, compare = st.columns([1, 1.2, 2.4])
index = int(pick.number_input(f"Sample image (test image 0–{n_samples - 1} of {len(ds.x_test)})", 0, n_samples - 1, step=1, key="b_sample"))
_draw(pick, enlarge(ds.x_test[index], 128), f"test image {index}: “{ds.classes[int(ds.y_test[index])]}”")
net_input = _sample(data_key, index, spec)[0]
_draw(seen, enlarge(tensor_to_image(net_input), 128),
      f"what the net gets: {'gray' if spec.in_channels == 1 else 'RGB'}, {'×'.join(map(str, net_input.shape))}")

trained = comparable_checkpoints(spec)
chosen = None
if trained:
    names = [t.name for t in trained]
    if st.session_state.get("b_compare") not in names:
        st.session_state["b_compare"] = names[0]
    pick_name = compare.selectbox(
        "Compare with a trained net", names, key="b_compare",
        help="Saved checkpoints of this same net (the class count and dropout may differ: neither changes "
             "the layers drawn here).")
    chosen = next(t for t in trained if t.name == pick_name)
    compare.caption(chosen.describe)
else:
    compare.info("No saved checkpoint of this net yet: train it (**Use this net**, then Train) and save it, "
                 "and its trained filters appear here beside the untrained ones.", icon=":material/info:")

untrained_col, trained_col = st.columns(2)
with untrained_col:
    st.markdown("##### untrained (as built)")
    try:
        draw_inside(inside_untrained(spec.to_dict(), data_key, index), spec.arch)
    except ValueError as e:  # ExplainError, SpecError: said in words, no traceback
        show_error(f"Can't look inside this net: {e}")
if chosen is not None:
    with trained_col:
        st.markdown(f"##### trained: {chosen.name}")
        try:
            drawn = inside_trained(chosen.path, chosen.mtime, data_key, index)
            if drawn["moved"] is not None:  # up there, so the two columns' pictures stay side by side
                compare.caption(f"Trained from the very weights drawn on the left (seed 0): its first layer "
                                f"moved by {drawn['moved']:.0%} (‖W − W₀‖ / ‖W₀‖).")
            draw_inside(drawn, spec.arch)
        except (ValueError, OSError) as e:  # CheckpointError, ExplainError; a file deleted meanwhile
            show_error(f"Can't look inside {chosen.name}: {e}. Pick another checkpoint, or train and save this net again.")

with st.expander("The PyTorch that gets a layer's activations"):
    st.code(LOOK_CODE, language="python")
    st.caption("`feature_stages` is TorchLab's seam: the `nn.Module` nets list their own stages, the "
               "`nn.Sequential` ones are cut at the same places. No hooks, and nothing in the net changes.")
