"""Overview: what TorchLab does and what data it is using."""
import streamlit as st

from streamlit_app import data_dir, datasets_here, get_dataset, page_setup

page_setup("Overview")

st.title("🔥 TorchLab")
st.markdown(
    "Learn PyTorch by doing. **Build** a net in both of PyTorch's construction styles and read its code, "
    "**train** it with the optimizer and regularization you choose while the curves move, then **predict** "
    "hand signs (digits 0–5) from a photo or your webcam."
)

c1, c2, c3 = st.columns(3)
with c1.container(border=True):
    st.markdown("#### 1 · Build")
    st.write("An MLP, a LeNet-5 or a ResNet-50 — as an `nn.Module` subclass and as `nn.Sequential`, side by side.")
    st.page_link("pages/build.py", label="Open Build", icon=":material/construction:")
with c2.container(border=True):
    st.markdown("#### 2 · Train")
    st.write("SGD, momentum, RMSprop or Adam; dropout, L2 and batch norm; live loss and accuracy curves.")
    st.page_link("pages/train.py", label="Open Train", icon=":material/monitoring:")
with c3.container(border=True):
    st.markdown("#### 3 · Predict")
    st.write("Upload a hand photo or use the camera; see what the net sees and how sure it is.")
    st.page_link("pages/predict.py", label="Open Predict", icon=":material/back_hand:")

st.subheader("Data in use")
rows = []
for key in datasets_here():
    ds = get_dataset(key, data_dir())
    rows.append({
        "data set": ds.title,
        "kind": "synthetic (generated)" if ds.synthetic else "real photos",
        "train": len(ds.x_train),
        "test": len(ds.x_test),
        "classes": ", ".join(ds.classes),
        "source": ds.source,
    })
st.dataframe(rows, hide_index=True, width="stretch")
if len(rows) == 1:
    st.info(
        "Only the built-in **synthetic** finger-count set is available: rendered hands, not photos. "
        f"To use the tutorial's real data, put `train_signs.h5` and `test_signs.h5` (and "
        f"`train_catvnoncat.h5`, `test_catvnoncat.h5`) in `{data_dir()}` — or point `TORCHLAB_DATA_DIR` at "
        "their folder — and restart.",
        icon=":material/info:",
    )
