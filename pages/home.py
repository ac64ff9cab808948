"""Overview: what TorchLab does and what data it is using."""
import streamlit as st

from streamlit_app import best_hand_dataset, data_dir, dataset_peeks, get_dataset, kind_label, page_setup

page_setup("Overview")

st.title("🔥 TorchLab")
st.markdown(
    "Learn PyTorch by doing. **Build** a net in both of PyTorch's construction styles and read its code, "
    "**train** it with the optimizer and regularization you choose while the curves move, then **predict** "
    "hand signs (digits 0–5) from a photo or your webcam."
)

c1, c2, c3, c4 = st.columns(4)
with c1.container(border=True, height="stretch"):
    st.markdown("#### 1 · Build")
    st.write("An MLP, a LeNet-5 or a ResNet-50 — as an `nn.Module` subclass and as `nn.Sequential`, side by side.")
    st.page_link("pages/build.py", label="Open Build", icon=":material/construction:")
with c2.container(border=True, height="stretch"):
    st.markdown("#### 2 · Train")
    st.write("SGD, momentum, RMSprop or Adam; dropout, L2 and batch norm; live loss and accuracy curves.")
    st.page_link("pages/train.py", label="Open Train", icon=":material/monitoring:")
with c3.container(border=True, height="stretch"):
    st.markdown("#### 3 · Predict")
    st.write("Upload a hand photo or use the camera; see what the net sees and how sure it is.")
    st.page_link("pages/predict.py", label="Open Predict", icon=":material/back_hand:")
with c4.container(border=True, height="stretch"):
    st.markdown("#### 4 · Teach it your hand")
    st.write("Misread? Record your own hand per class from the camera and fine-tune the net on it in seconds.")
    st.page_link("pages/data.py", label="Open Data", icon=":material/photo_library:")

best = get_dataset(best_hand_dataset(data_dir()), data_dir())
st.subheader("The task")
st.write(f"Count the raised fingers: six classes, 0 to 5. A few training images of **{best.title}**"
         + (" — *synthetic*, rendered by TorchLab:" if best.synthetic else ":"))
picks = [int(next(i for i, y in enumerate(best.y_train) if y == c)) for c in range(best.num_classes)]
for col, i in zip(st.columns(len(picks)), picks):
    col.image(best.x_train[i], caption=f"class {best.classes[best.y_train[i]]}", width="stretch")

st.subheader("Data in use")
rows = []
for ds in dataset_peeks():
    rows.append({
        "data set": ds.title,
        "kind": kind_label(ds),
        "train": ds.n_train,
        "test": ds.n_test,
        "classes": ", ".join(ds.classes),
        "source": ds.source,
    })
st.dataframe(rows, hide_index=True, width="stretch")
st.caption("Besides a set's photos of 0–5 fingers, the LeNet's recipe also trains on hands drawn "
           "by TorchLab (half their 3s raised as index, middle and ring finger, as many people show three): it then "
           "reads more photos of hands unlike SIGNS'. The Train page's *Generated hands* sets how many; 0 trains on "
           "the photos alone.")
if len(rows) == 1:
    st.info(
        "Only the built-in **synthetic** finger-count set is available: rendered hands, not photos. "
        f"To use the tutorial's real data, put `train_signs.h5` and `test_signs.h5` (and "
        f"`train_catvnoncat.h5`, `test_catvnoncat.h5`) in `{data_dir()}` — or point `TORCHLAB_DATA_DIR` at "
        "their folder — or upload them on the Data page.",
        icon=":material/info:",
    )

st.page_link("pages/data.py", label=("Add the tutorial's files, or teach it your own hand, on the Data page"
                                     if len(rows) == 1 else "Teach it your own hand, or add more data, on the Data page"),
             icon=":material/photo_library:")
