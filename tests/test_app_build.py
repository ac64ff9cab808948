"""The Build page."""
from __future__ import annotations

from core.nets import build_model, count_parameters
from core.spec import ModelSpec


from tests.apptest import assert_clean, button, errors, metrics, table


# --- Build ----------------------------------------------------------------------------------------


def test_build_default_lenet(env, apps):
    at = apps("pages/build.py")
    assert at.title[0].value == "Build a net"
    assert metrics(at)["Parameters"] == "1,144,618"
    assert any("Both styles give identical outputs" in s.value for s in at.success)
    assert any("nn.Conv2d" in c.value for c in at.code)
    assert_clean(at)


def test_build_mlp_hidden_sizes_change_code_and_summary(env, apps):
    at = apps("pages/build.py")
    at.selectbox(key="b_arch").set_value("mlp")
    at.run()
    assert_clean(at)
    at.text_input(key="b_hidden").set_value("32, 16")
    at.run()
    assert_clean(at)
    spec = ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16), batchnorm=False)
    assert metrics(at)["Parameters"] == f"{count_parameters(build_model(spec)):,}"
    module_code, sequential_code = (c.value for c in at.code)
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
    for text in ("abc", "20, -7", "0"):
        at.text_input(key="b_hidden").set_value(text)
        at.run()
        assert_clean(at)
        assert any("don't make a valid net" in e for e in errors(at)), (text, errors(at))
        assert not at.code  # the page stopped before drawing the code
    at.text_input(key="b_hidden").set_value("20, 7, 5")
    at.run()
    assert not errors(at) and len(at.code) == 2


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
    assert spec == ModelSpec("mlp", 6, in_channels=3, input_size=64, hidden=(32, 16), batchnorm=False)
    assert at.session_state["spec_dataset"] == "synthetic"
    assert at.title[0].value == "Train"
    assert any("MLP, hidden 32-16" in c.value for c in at.caption)


