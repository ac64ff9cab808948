"""The Build page."""
from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import save_checkpoint
from core.data import load_dataset
from core.nets import build_model, count_parameters
from core.spec import ModelSpec
from core.tensors import images_to_tensor
from tests.apptest import assert_clean, button, errors, metrics, table


def net_code(at) -> list[str]:
    """The net's code in its two styles (not the look-inside snippet further down)."""
    return [c.value for c in at.code if "feature_stages" not in c.value]


def gray(at):
    """The Build page's net with gray input, as the tutorial's LeNet has it (the default is RGB)."""
    at.radio(key="b_channels").set_value("Gray")
    at.run()
    return at


# --- Build ----------------------------------------------------------------------------------------


def test_build_default_lenet(env, apps):
    at = apps("pages/build.py")
    assert at.title[0].value == "Build a net"
    assert metrics(at)["Parameters"] == "1,144,918"  # RGB: the first conv has 3 × 150 weights
    assert any("Both styles give identical outputs" in s.value for s in at.success)
    assert metrics(gray(at))["Parameters"] == "1,144,618"  # the tutorial's gray LeNet
    assert any("nn.Conv2d" in c.value for c in at.code)
    assert_clean(at)


def test_the_layer_table_says_trainable_as_yes_or_no(env, apps):
    import json

    at = apps("pages/build.py")
    layers = next(d for d in at.dataframe if "layer" in d.value.columns)
    assert layers.value["trainable"].dtype == bool and layers.value["trainable"].all()
    # Drawn as a tick box, not as the number 1.
    assert json.loads(layers.proto.columns)["trainable"]["type_config"]["type"] == "checkbox"


def test_build_mlp_hidden_sizes_change_code_and_summary(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    assert_clean(at)
    at.text_input(key="b_hidden").set_value("32, 16")
    at.run()
    assert_clean(at)
    spec = ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16))  # with batch norm, the default
    assert metrics(at)["Parameters"] == f"{count_parameters(build_model(spec)):,}"
    module_code, sequential_code = net_code(at)
    for code in (module_code, sequential_code):
        assert "nn.Linear(12288, 32)" in code and "nn.Linear(32, 16)" in code and "nn.Linear(16, 6)" in code
        assert "nn.Linear(12288, 20)" not in code and "nn.Linear(20, 7)" not in code  # the old widths are gone
    layers = table(at, "layer")
    assert list(layers["type"]).count("Linear") == 3
    assert any("Both styles give identical outputs" in s.value for s in at.success)


def test_build_refuses_hidden_sizes_that_are_not_numbers(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    for text, expected in (("abc, 5", "whole numbers separated by commas, like `20, 7, 5` — not `abc`"),
                           ("20, -7", "not `-7`"), ("0", "don't make a valid net")):
        at.text_input(key="b_hidden").set_value(text)
        at.run()
        assert_clean(at)
        assert any(expected in e for e in errors(at)), (text, errors(at))
        assert not any("invalid literal" in e for e in errors(at))  # Python's own words are no help here
        assert not at.code  # the page stopped before drawing the code
    at.text_input(key="b_hidden").set_value("20, 7, 5")
    at.run()
    assert not errors(at) and len(net_code(at)) == 2


def test_build_use_this_net_sets_the_spec_and_opens_train(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    at.text_input(key="b_hidden").set_value("32, 16")
    at.run()
    button(at, "Use this net").click()
    at.run()
    assert_clean(at)
    spec = at.session_state["spec"]
    assert spec == ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16))
    assert at.session_state["spec_dataset"] == "synthetic"
    assert at.title[0].value == "Train"
    assert any("MLP, hidden 32-16" in c.value for c in at.caption)




# --- Look inside --------------------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """The pictures the page sent, by URL: decoded from the bytes Streamlit stored for each image."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)

    def picture(url: str) -> np.ndarray:
        file_id = url.rsplit("/", 1)[-1].split(".")[0]
        return np.asarray(Image.open(io.BytesIO(stored[file_id])))

    return picture


def images(at) -> dict[str, str]:
    """Every drawn image's caption → its URL."""
    return {c: u for im in at.image for c, u in zip(im.captions, im.value)}


def captioned(at, prefix: str) -> tuple[str, str]:
    found = [(c, u) for c, u in images(at).items() if c.startswith(prefix)]
    assert len(found) == 1, (prefix, list(images(at)))
    return found[0]


def compare_box(at):
    return next((s for s in at.selectbox if s.key == "b_compare"), None)


def columns_of(at, heading: str) -> list[str]:
    """Captions of the images in the column under ``heading`` (a markdown h5)."""
    for col in at.columns:
        if any(heading in m.value for m in col.markdown):
            return [c for im in col.image for c in im.captions]
    raise AssertionError(f"no column headed {heading!r}")


def test_look_inside_default_lenet(env, apps, drawn):
    at = apps("pages/build.py")
    assert_clean(at)
    assert any(s.value == "Look inside" for s in at.subheader)
    shown = images(at)
    assert "what the net gets: RGB, 3×64×64" in shown
    assert any(c == "Filters: first conv layer: 6 filters of 3×5×5" for c in shown)
    shown = images(gray(at))
    assert any(c.startswith("test image 0: “") for c in shown)
    assert "what the net gets: gray, 1×64×64" in shown
    _, filters_url = captioned(at, "Filters: first conv layer: 6 filters of 1×5×5")
    _, conv1_url = captioned(at, "out of conv1 — 6×30×30")
    _, conv2_url = captioned(at, "out of conv2 — 16×13×13")
    # Sharp, enlarged, as the section says: a 5×5 filter drawn as 5×5 blocks of one value each.
    grid = drawn(filters_url)
    assert grid.ndim == 2 and grid.shape[0] == 55
    first = grid[:55, :55]
    assert (first == np.kron(first[::11, ::11], np.ones((11, 11), dtype=np.uint8))).all()
    # The picture is the seeded build's first filter, on the symmetric scale (mid-gray = 0).
    w = build_model(ModelSpec("lenet", 6), seed=0).conv1.weight.detach()
    expected = np.round((0.5 + 0.5 * w / w.abs().max())[0, 0].numpy() * 255)
    assert np.abs(first[::11, ::11].astype(int) - expected).max() <= 1
    assert compare_box(at) is None and any("No saved checkpoint of this net" in i.value for i in at.info)

    at.number_input(key="b_sample").set_value(5)
    at.run()
    assert_clean(at)
    ds = load_dataset("synthetic")
    assert any(c.startswith(f"test image 5: “{ds.classes[ds.y_test[5]]}”") for c in images(at))
    assert captioned(at, "Filters: ")[1] == filters_url  # the same net …
    assert captioned(at, "out of conv1 — ")[1] != conv1_url  # … sees another image
    assert captioned(at, "out of conv2 — ")[1] != conv2_url


def test_look_inside_code_runs_and_gives_the_shapes_drawn(env, apps):
    at = apps("pages/build.py")
    (code,) = [c.value for c in at.code if "feature_stages" in c.value]
    ds = load_dataset("synthetic")
    model = build_model(ModelSpec("lenet", 6), seed=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # The snippet the page shows, run as shown: the code the learner reads is code that works.
        exec(code, {"model": model, "images": images_to_tensor(ds.x_test[:2].copy(), 1, 64)})  # noqa: S102
    printed = out.getvalue().splitlines()
    assert printed == ["conv1 (1, 6, 30, 30)", "conv2 (1, 16, 13, 13)", "(6, 1, 5, 5)"]
    assert not model.training  # the snippet puts the net in eval mode, as it says


def test_look_inside_mlp(env, apps, drawn):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    assert_clean(at)
    _, url = captioned(at, "Filters: first linear layer: the weights of its 20 units, each as a 3×64×64 image")
    assert drawn(url).shape[-1] == 3  # RGB weights, one image per hidden unit
    assert drawn(url).shape[0] > 64  # 20 of them: more than one row
    assert not any(re.match(r"(conv|stem|stage)", c) for c in images(at))
    assert any("has no conv layers, so no feature maps" in c.value for c in at.caption)
    at.text_input(key="b_hidden").set_value("64, 8")
    at.run()
    assert_clean(at)
    assert captioned(at, "Filters: ")[0].endswith("its 64 units, each as a 3×64×64 image (the first 20 shown)")


def test_look_inside_resnet50(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("resnet50")
    at.run()
    at.selectbox(key="b_size").set_value(32)
    at.run()
    assert_clean(at)
    assert captioned(at, "Filters: ")[0] == "Filters: first conv layer: 64 filters of 3×7×7 (the first 20 shown)"
    stages = [c for c in images(at) if re.match(r"out of (stem|stage \d) — ", c)]
    assert stages == [
        "out of stem — 64×7×7 · the 16 strongest of 64 channels",
        "out of stage 1 — 256×7×7 · the 16 strongest of 256 channels",
        "out of stage 2 — 512×4×4 · the 16 strongest of 512 channels",
        "out of stage 3 — 1024×2×2 · the 16 strongest of 1024 channels",
        "out of stage 4 — 2048×1×1 · the 16 strongest of 2048 channels",
    ]


def test_look_inside_compares_with_a_checkpoint_of_the_same_net(env, apps, drawn):
    lenet = ModelSpec("lenet", 6)  # gray
    at = gray(apps("pages/build.py"))
    untrained = {c: drawn(u) for c, u in images(at).items() if c.startswith(("Filters", "out of conv"))}

    ds = load_dataset("synthetic")
    trained = build_model(lenet, seed=7)  # weights other than the page's seed-0 build
    save_checkpoint(env.ckpt / "lenet-trained.pt", trained.eval(), lenet, "module", ds.classes)
    # Not the same net up to the head: RGB input, another size, no batch norm, another arch.
    for name, other in [("lenet-rgb.pt", ModelSpec("lenet", 6, in_channels=3)),
                        ("lenet-32.pt", ModelSpec("lenet", 6, input_size=32)),
                        ("lenet-nobn.pt", ModelSpec("lenet", 6, batchnorm=False)),
                        ("mlp.pt", ModelSpec("mlp", 6, in_channels=1, batchnorm=False))]:
        save_checkpoint(env.ckpt / name, build_model(other, seed=0), other, "module", ds.classes)
    # Only the head differs (2 classes, dropout): the same filters and feature maps, so offered.
    two = ModelSpec("lenet", 2, dropout=0.3)
    save_checkpoint(env.ckpt / "lenet-2-classes.pt", build_model(two, "sequential", seed=3), two, "sequential", ("a", "b"))

    at.run()
    assert_clean(at)
    box = compare_box(at)
    assert box is not None and sorted(box.options) == ["lenet-2-classes.pt", "lenet-trained.pt"]
    box.set_value("lenet-trained.pt")
    at.run()
    assert_clean(at)
    left = columns_of(at, "untrained (as built)")
    right = columns_of(at, "trained: lenet-trained.pt")
    assert left == right == ["Filters: first conv layer: 6 filters of 1×5×5", "out of conv1 — 6×30×30", "out of conv2 — 16×13×13"]
    urls = {col: [u for im in c.image for u in im.value] for col, c in
            (("left", next(c for c in at.columns if any("untrained" in m.value for m in c.markdown))),
             ("right", next(c for c in at.columns if any("trained: " in m.value for m in c.markdown))))}
    for caption, left_url, right_url in zip(left, urls["left"], urls["right"]):
        a, b = drawn(left_url), drawn(right_url)
        assert np.array_equal(a, untrained[caption]), caption  # the untrained net is still the page's
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 5, caption
    # The trained column draws the checkpoint's own weights.
    w = trained.conv1.weight.detach()
    expected = np.round((0.5 + 0.5 * w / w.abs().max())[0, 0].numpy() * 255)
    assert np.abs(drawn(urls["right"][0])[:55:11, :55:11].astype(int) - expected).max() <= 1

    box = compare_box(at)
    box.set_value("lenet-2-classes.pt")  # another style and class count: still drawn
    at.run()
    assert_clean(at)
    assert columns_of(at, "trained: lenet-2-classes.pt")[1:] == ["out of conv1 — 6×30×30", "out of conv2 — 16×13×13"]


def test_look_inside_offers_no_checkpoint_of_another_net(env, apps):
    ds = load_dataset("synthetic")
    one = ModelSpec("lenet", 6, in_channels=1)
    save_checkpoint(env.ckpt / "lenet-gray.pt", build_model(one, seed=0), one, "module", ds.classes)
    at = apps("pages/build.py")  # RGB
    assert_clean(at)
    assert compare_box(at) is None
    assert not any("trained: " in m.value for m in at.markdown)
    gray(at)  # now it is the same net
    assert_clean(at)
    assert compare_box(at) is not None and compare_box(at).options == ["lenet-gray.pt"]
    assert columns_of(at, "trained: lenet-gray.pt")[0] == "Filters: first conv layer: 6 filters of 1×5×5"


def test_look_inside_says_how_far_a_run_from_seed_0_moved_the_first_layer(env, apps):
    lenet = ModelSpec("lenet", 6)
    ds = load_dataset("synthetic")
    model = build_model(lenet, seed=0)  # what a new run with seed 0 starts from: the untrained column
    with torch.no_grad():
        start = model.conv1.weight.clone()
        model.conv1.weight.mul_(1.25)  # "training" moved the first layer by exactly 25 %
    new_run = {"init_from": None, "freeze": "none", "new_head": False, "resumed_from": None}  # as the Trainer writes
    save_checkpoint(env.ckpt / "from-seed-0.pt", model.eval(), lenet, "module", ds.classes, training={"seed": 0},
                    origin=new_run)
    save_checkpoint(env.ckpt / "fine-tuned.pt", model.eval(), lenet, "module", ds.classes, training={"seed": 0},
                    origin={**new_run, "init_from": "other.pt"})  # started from another net's weights
    save_checkpoint(env.ckpt / "from-seed-3.pt", build_model(lenet, seed=3).eval(), lenet, "module", ds.classes,
                    training={"seed": 3})
    assert torch.equal(start, build_model(lenet, seed=0).conv1.weight)
    at = gray(apps("pages/build.py"))
    at.selectbox(key="b_compare").set_value("from-seed-0.pt")
    at.run()
    assert_clean(at)
    assert any("its first layer moved by 25% (‖W − W₀‖ / ‖W₀‖)" in c.value for c in at.caption)
    for other in ("from-seed-3.pt", "fine-tuned.pt"):  # another start: nothing to measure against
        at.selectbox(key="b_compare").set_value(other)
        at.run()
        assert_clean(at)
        assert not any("moved by" in c.value for c in at.caption), other
