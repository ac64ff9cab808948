"""Build: choose a net and its options; read its code in both styles, its summary, and check the
two styles compute the same thing."""
import streamlit as st
import torch

from core.codegen import generate_code
from core.nets import build_model, copy_weights
from core.spec import ARCHS, ModelSpec, default_spec
from core.summary import summarize
from core.tensors import images_to_tensor
from streamlit_app import (
    current_dataset_key, current_spec, data_dir, dataset_title, datasets_here, get_dataset, page_setup, show_error,
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


def _on_arch_change() -> None:
    # A new architecture starts from the tutorial's settings for it (e.g. LeNet sees gray input).
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
                          help="Normalise each layer's activations over the mini-batch; usually trains faster.")
    hidden_text = c7.text_input("Hidden sizes (MLP)", key="b_hidden", disabled=arch != "mlp",
                                help="Comma-separated widths of the hidden layers; the tutorial uses 20, 7, 5.")

ds = get_dataset(data_key, data_dir())
try:
    hidden = tuple(int(h) for h in hidden_text.replace(" ", "").split(",") if h)
    spec = ModelSpec(arch, ds.num_classes, in_channels=3 if channels == "RGB" else 1, input_size=int(size),
                     hidden=hidden or (20, 7, 5), dropout=float(dropout), batchnorm=bool(batchnorm))
except ValueError as e:  # SpecError is a ValueError; so is a hidden size that is not a number
    show_error(f"These options don't make a valid net: {e}. Hidden sizes are whole numbers like `20, 7, 5`.")
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
st.dataframe(
    [{"layer": r["name"], "type": r["type"], "output shape": "×".join(map(str, r["output_shape"])),
      "parameters": r["parameters"], "trainable": r["trainable"]} for r in info["rows"]
     if not (r["type"] == "Dropout" and spec.dropout == 0)],  # p = 0 does nothing; the code omits it too
    hide_index=True, width="stretch", height=min(420, 38 + 35 * len(info["rows"])),
)

if spec == st.session_state.get("spec") and data_key == st.session_state.get("spec_dataset"):
    st.info("This is the net the Train page uses.", icon=":material/check:")
if st.button("Use this net", type="primary", icon=":material/arrow_forward:"):
    st.session_state["spec"] = spec
    st.session_state["spec_dataset"] = data_key
    st.switch_page("pages/train.py")
