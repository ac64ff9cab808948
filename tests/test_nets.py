"""The nets, their spec, the per-layer summary and the generated source code.

ResNet-50 takes ~0.2 s to build, so library models are built once per (spec, style) and shared by
every test that only reads them; tests that change a model work on a deep copy.
"""
from __future__ import annotations

import ast
import copy
import functools
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.codegen import generate_code
from core.nets import (
    BUILDERS,
    LENET_FC,
    build_model,
    copy_weights,
    count_parameters,
    Bottleneck,
    FrozenBatchNorm1d,
    FrozenBatchNorm2d,
    classifier,
    feature_head_split,
    feature_stages,
    forward_features,
    forward_head,
    freeze_features,
    has_spatial_features,
    init_kaiming,
    lenet_flat_features,
    replace_head,
    unfreeze,
    zero_init_residuals,
)
from core.spec import ModelSpec, SpecError, default_spec
from core.summary import summarize

ARCHS = ("mlp", "lenet", "resnet50")
STYLES = ("module", "sequential")
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)

# The tutorial's three nets with the parameter counts its notebooks print.
TUTORIAL = {
    "mlp": (default_spec("mlp", 2).replace(batchnorm=False), 245_979),  # cat / non-cat, 12288-20-7-5-2, no BN
    "lenet": (default_spec("lenet", 6).replace(in_channels=1), 1_144_618),  # SIGNS, gray as the tutorial has it
    "resnet50": (default_spec("resnet50", 6), 23_546_886),  # SIGNS, RGB
}

# Off-default specs: every option moved at least once per arch (BN off, dropout on, gray/RGB,
# other input sizes and class counts).
VARIANTS = {
    "mlp": ModelSpec("mlp", num_classes=3, in_channels=1, input_size=32, hidden=(16, 8), dropout=0.3, batchnorm=True),
    "lenet": ModelSpec("lenet", num_classes=10, in_channels=3, input_size=48, dropout=0.5, batchnorm=False),
    "resnet50": ModelSpec("resnet50", num_classes=3, in_channels=1, input_size=32, dropout=0.2, batchnorm=False),
}


@functools.lru_cache(maxsize=None)
def library_model(spec: ModelSpec, style: str) -> nn.Module:
    """A seeded, Kaiming-initialised library net in eval mode. Shared: never modify it."""
    torch.manual_seed(0)
    return build_model(spec, style).eval()


# The raw constructors: PyTorch's default init, before build_model's Kaiming init.
RAW_BUILDERS = BUILDERS


def default_init_model(spec: ModelSpec, style: str = "module") -> nn.Module:
    return RAW_BUILDERS[(spec.arch, style)](spec)


def randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, so eval-mode BN is not ≈ identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BN_TYPES):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@functools.lru_cache(maxsize=None)
def library_summary(spec: ModelSpec, style: str):
    return summarize(library_model(spec, style), spec)


def batch(spec: ModelSpec, n: int = 2, seed: int = 0) -> torch.Tensor:
    """Random input; ResNet-50 forwards dominate the runtime, so it gets one 64×64 image (two smaller)."""
    if spec.arch == "resnet50":
        n = min(n, 1 if spec.input_size >= 64 else 2)
    return torch.randn(n, *spec.input_shape, generator=torch.Generator().manual_seed(seed))


def exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# --- parameter counts, shapes, structure ---------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ARCHS)
def test_tutorial_parameter_counts_and_output_shape(arch: str, style: str) -> None:
    spec, expected = TUTORIAL[arch]
    model = library_model(spec, style)
    assert count_parameters(model) == expected
    assert count_parameters(model, trainable_only=True) == expected
    x = batch(spec)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (len(x), spec.num_classes)
    assert torch.isfinite(out).all()


def test_mlp_parameter_count_by_hand() -> None:
    spec = VARIANTS["mlp"]  # 1×32×32 → 16 → 8 → 3, BatchNorm1d after each hidden layer
    linear = (1024 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)
    bn = 2 * 16 + 2 * 8
    assert count_parameters(build_model(spec, "module")) == linear + bn


def test_parameter_count_follows_the_options() -> None:
    lenet = TUTORIAL["lenet"][0]
    with_bn = count_parameters(library_model(lenet, "module"))
    # BatchNorm: 2 affine parameters per channel/feature of 6, 16, 400, 120, 84.
    assert with_bn - count_parameters(build_model(lenet.replace(batchnorm=False))) == 2 * (6 + 16 + 400 + 120 + 84)
    # RGB input adds 2 more input planes to conv1's 6 filters of 5×5.
    assert count_parameters(build_model(lenet.replace(in_channels=3))) - with_bn == 6 * 2 * 25
    # More classes only widen the head.
    assert count_parameters(build_model(lenet.replace(num_classes=10))) - with_bn == 4 * (84 + 1)
    # Dropout has no parameters.
    assert count_parameters(build_model(lenet.replace(dropout=0.5))) == with_bn


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ARCHS)
def test_variant_output_shape(arch: str, style: str) -> None:
    spec = VARIANTS[arch]
    model = library_model(spec, style)
    x = batch(spec, 3)
    with torch.no_grad():
        assert model(x).shape == (len(x), spec.num_classes)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ARCHS)
def test_batchnorm_off_means_no_batchnorm_modules(arch: str, style: str) -> None:
    spec = VARIANTS[arch].replace(batchnorm=False)
    assert not any(isinstance(m, BN_TYPES) for m in library_model(spec, style).modules())
    assert any(isinstance(m, BN_TYPES) for m in library_model(TUTORIAL["lenet"][0], style).modules())


def test_build_model_refuses_unknown_style() -> None:
    with pytest.raises(SpecError, match="style"):
        build_model(TUTORIAL["mlp"][0], "functional")  # type: ignore[arg-type]


# --- module vs sequential ----------------------------------------------------------------------

EQUALITY_SPECS = [
    TUTORIAL["mlp"][0],
    VARIANTS["mlp"],
    ModelSpec("mlp", num_classes=4, in_channels=3, input_size=16, hidden=(32,), dropout=0.0, batchnorm=False),
    TUTORIAL["lenet"][0],
    VARIANTS["lenet"],
    ModelSpec("lenet", num_classes=2, in_channels=1, input_size=32, dropout=0.25, batchnorm=True),
    TUTORIAL["resnet50"][0],
    VARIANTS["resnet50"],
]


@pytest.mark.parametrize("spec", EQUALITY_SPECS, ids=lambda s: s.describe())
def test_module_and_sequential_agree_after_copy_weights(spec: ModelSpec) -> None:
    src = randomize_bn(copy.deepcopy(library_model(spec, "module")))
    dst = copy_weights(src, default_init_model(spec, "sequential")).eval()
    for sv, dv in zip(src.state_dict().values(), dst.state_dict().values()):
        exact(dv, sv)
    x = batch(spec, 3)
    with torch.no_grad():
        expected = src(x)
        exact(dst(x), expected)
    assert torch.isfinite(expected).all()


def test_copy_weights_works_back_from_sequential() -> None:
    spec = VARIANTS["lenet"]
    src = randomize_bn(copy.deepcopy(library_model(spec, "sequential")), seed=7)
    dst = copy_weights(src, build_model(spec, "module")).eval()
    x = batch(spec)
    with torch.no_grad():
        exact(dst(x), src(x))


@pytest.mark.parametrize(
    "src_spec, dst_spec, message",
    [
        (TUTORIAL["mlp"][0], TUTORIAL["lenet"][0], "the nets differ"),
        (TUTORIAL["lenet"][0], TUTORIAL["lenet"][0].replace(batchnorm=False), r"\d+ tensors vs \d+"),
        (TUTORIAL["lenet"][0], TUTORIAL["lenet"][0].replace(input_size=32), "differ at"),
        (TUTORIAL["mlp"][0], TUTORIAL["mlp"][0].replace(num_classes=3), "differ at"),
    ],
)
def test_copy_weights_refuses_different_nets(src_spec: ModelSpec, dst_spec: ModelSpec, message: str) -> None:
    src, dst = build_model(src_spec), build_model(dst_spec)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        copy_weights(src, dst)
    for k, v in dst.state_dict().items():  # refused before anything was written
        exact(v, before[k])


# --- a hand-written twin of the tutorial's LeNet -------------------------------------------------


def tutorial_lenet(x: torch.Tensor, tensors: list[torch.Tensor], batchnorm: bool) -> torch.Tensor:
    """The tutorial's LeNet-5 in plain functional ops, eval mode, reading the tensors in order."""
    it = iter(tensors)

    def bn(x: torch.Tensor) -> torch.Tensor:
        weight, bias, mean, var, _num_batches = (next(it) for _ in range(5))
        return F.batch_norm(x, mean, var, weight, bias, training=False, eps=1e-5)

    def maybe_bn(x: torch.Tensor) -> torch.Tensor:
        return bn(x) if batchnorm else x

    for _ in range(2):  # CONV2D(5×5) → BN → RELU → MAXPOOL(2)
        w, b = next(it), next(it)
        x = F.max_pool2d(F.relu(maybe_bn(F.conv2d(x, w, b))), kernel_size=2, stride=2)
    x = x.reshape(x.shape[0], -1)
    for _ in range(3):  # FC 400 → 120 → 84, each with BN and ReLU
        w, b = next(it), next(it)
        x = F.relu(maybe_bn(F.linear(x, w, b)))
    w, b = next(it), next(it)
    out = F.linear(x, w, b)
    assert next(it, None) is None, "the twin must use every tensor of the net"
    return out


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "spec",
    [TUTORIAL["lenet"][0], VARIANTS["lenet"].replace(dropout=0.0), ModelSpec("lenet", 5, 3, 40)],
    ids=lambda s: s.describe(),
)
def test_lenet_matches_hand_written_twin(spec: ModelSpec, style: str) -> None:
    model = randomize_bn(copy.deepcopy(library_model(spec, style)), seed=3)
    x = batch(spec, 4)
    with torch.no_grad():
        expected = tutorial_lenet(x, list(model.state_dict().values()), spec.batchnorm)
        torch.testing.assert_close(model(x), expected)


# --- initialisation ----------------------------------------------------------------------------


def _rel_tolerance(n: int) -> float:
    # The sample std of n draws is off by ~1/sqrt(2n) relative; allow 4 of those plus a margin.
    return 0.05 + 4 / math.sqrt(2 * n)


@pytest.mark.parametrize("arch", ARCHS)
def test_kaiming_init_statistics(arch: str) -> None:
    spec = TUTORIAL[arch][0]
    checked = 0
    for m in weight_layers(library_model(spec, "module")):
        w = m.weight.detach()
        fan_in = w[0].numel()
        assert torch.count_nonzero(m.bias) == 0
        if w.numel() >= 100:  # too few weights say nothing about their spread
            assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=_rel_tolerance(w.numel()))
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("arch", ["mlp", "lenet"])
def test_default_init_differs_from_kaiming(arch: str) -> None:
    spec = TUTORIAL[arch][0]
    torch.manual_seed(0)
    model = default_init_model(spec)
    for m in weight_layers(model):
        w = m.weight.detach()
        if w.numel() < 100:
            continue
        fan_in = w[0].numel()
        # PyTorch's default: uniform(±1/sqrt(fan_in)), std 1/sqrt(3·fan_in) — √6 ≈ 2.45× below Kaiming.
        assert w.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=_rel_tolerance(w.numel()))
        assert w.abs().max().item() <= 1 / math.sqrt(fan_in) + 1e-7
        assert torch.count_nonzero(m.bias) > 0
    init_kaiming(model)
    for m in weight_layers(model):
        if m.weight.numel() >= 100:
            fan_in = m.weight[0].numel()
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=_rel_tolerance(m.weight.numel()))
        assert torch.count_nonzero(m.bias) == 0


def test_tutorial_init_loop_changes_nothing() -> None:
    torch.manual_seed(0)
    model = default_init_model(TUTORIAL["mlp"][0])
    before = {k: v.clone() for k, v in model.state_dict().items()}

    # The tutorial's loop: parameters are tensors, never nn.Linear, so the body never runs.
    for p in model.parameters():
        if isinstance(p, nn.Linear):
            nn.init.kaiming_normal_(p.weight)
            nn.init.zeros_(p.bias)

    for k, v in model.state_dict().items():
        exact(v, before[k])
    init_kaiming(model)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("style", ["module", "sequential"])
def test_resnet_blocks_start_as_identity(style: str) -> None:
    model = build_model(TUTORIAL["resnet50"][0], style, seed=0).train()
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    x = torch.rand(2, 256, 8, 8)  # non-negative, as after the ReLU that feeds every block
    identity = next(b for b in blocks if isinstance(b.shortcut, nn.Identity))
    with torch.no_grad():
        exact(identity(x), x)  # residual branch is exactly zero: the block passes its input through
    for b in blocks:
        assert torch.count_nonzero(b.bn3.weight) == 0
        assert torch.count_nonzero(b.bn2.weight) == b.bn2.weight.numel()  # only the last BN of a branch
    # The projection shortcut's BN keeps its scale, so the stage changes width from the start.
    assert all(torch.count_nonzero(b.shortcut[1].weight) > 0 for b in blocks if not isinstance(b.shortcut, nn.Identity))
    # Without batch norm there is no scale to zero: the net is built as before.
    no_bn = build_model(VARIANTS["resnet50"], style, seed=0)
    assert all(isinstance(b.bn3, nn.Identity) for b in no_bn.modules() if isinstance(b, Bottleneck))


def test_zero_init_reaches_any_block_with_a_zero_init_last() -> None:
    class Residual(nn.Module):  # not a Bottleneck: the method is what counts
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def zero_init_last(self) -> None:
            nn.init.zeros_(self.bn.weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.bn(self.conv(x))

    outside = nn.BatchNorm2d(4)  # a batch norm in no block keeps its scale
    net = nn.Sequential(Residual(), nn.ReLU(), nn.Sequential(Residual()), outside)
    assert zero_init_residuals(net) is net
    blocks = [m for m in net.modules() if isinstance(m, Residual)]
    assert len(blocks) == 2 and all(torch.count_nonzero(b.bn.weight) == 0 for b in blocks)
    assert torch.count_nonzero(outside.weight) == 4
    x = torch.rand(2, 4, 6, 6)
    with torch.no_grad():
        exact(blocks[1](x), x)  # the nested block starts as the identity too


def test_the_resnet_zero_inits_through_the_blocks_method(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[Bottleneck] = []
    monkeypatch.setattr(Bottleneck, "zero_init_last", lambda self: called.append(self))
    model = build_model(TUTORIAL["resnet50"][0], "module", seed=0)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(called) == 16 and {id(b) for b in called} == {id(b) for b in blocks}
    assert all(torch.count_nonzero(b.bn3.weight) > 0 for b in blocks)  # the method alone zeroes them


# --- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [TUTORIAL["mlp"][0].replace(dropout=0.5), TUTORIAL["lenet"][0].replace(dropout=0.5), VARIANTS["resnet50"]],
    ids=lambda s: s.arch,
)
def test_dropout_random_in_train_fixed_in_eval(spec: ModelSpec) -> None:
    model = build_model(spec, "sequential")
    x = batch(spec, 4)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        exact(model(x), model(x))


def test_no_dropout_is_deterministic_in_train_mode() -> None:
    model = build_model(TUTORIAL["lenet"][0], "module").train()
    x = batch(TUTORIAL["lenet"][0], 4)
    with torch.no_grad():
        exact(model(x), model(x))  # BN uses batch statistics: same batch, same output


# --- ModelSpec -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"arch": "vgg"}, "architecture"),
        ({"num_classes": 1}, "number of classes"),
        ({"num_classes": 1001}, "number of classes"),
        ({"in_channels": 2}, "input channels"),
        ({"in_channels": 4}, "input channels"),
        ({"arch": "mlp", "input_size": 3}, "input size for MLP"),
        ({"arch": "lenet", "input_size": 15}, "input size for LeNet-5"),
        ({"arch": "resnet50", "input_size": 31}, "input size for ResNet-50"),
        ({"input_size": 513}, "input size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"arch": "mlp", "hidden": ()}, "hidden layers"),
        ({"arch": "mlp", "hidden": (8,) * 9}, "hidden layers"),
        ({"arch": "mlp", "hidden": (0,)}, "hidden layer sizes"),
        ({"arch": "mlp", "hidden": (10, 4097)}, "hidden layer sizes"),
    ],
)
def test_spec_validation_names_the_setting(kwargs: dict, names: str) -> None:
    with pytest.raises(SpecError, match=names):
        ModelSpec(**kwargs)


def test_spec_error_is_a_value_error_and_replace_validates() -> None:
    assert issubclass(SpecError, ValueError)
    with pytest.raises(SpecError, match="dropout"):
        TUTORIAL["lenet"][0].replace(dropout=2.0)
    with pytest.raises(SpecError, match="architecture"):
        default_spec("vgg")


@pytest.mark.parametrize("spec", [*(s for s, _ in TUTORIAL.values()), *VARIANTS.values()], ids=lambda s: s.describe())
def test_spec_dict_round_trip(spec: ModelSpec) -> None:
    d = spec.to_dict()
    assert isinstance(d["hidden"], list)
    back = ModelSpec.from_dict(json.loads(json.dumps(d)))
    assert back == spec
    assert hash(back) == hash(spec)
    assert isinstance(back.hidden, tuple)


def test_from_dict_refuses_unknown_settings() -> None:
    d = TUTORIAL["mlp"][0].to_dict() | {"learning_rate": 0.01}
    with pytest.raises(SpecError, match="learning_rate"):
        ModelSpec.from_dict(d)


def test_from_dict_validates() -> None:
    with pytest.raises(SpecError, match="number of classes"):
        ModelSpec.from_dict(TUTORIAL["lenet"][0].to_dict() | {"num_classes": 0})


# --- summary -----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ARCHS)
def test_summary_totals_equal_count_parameters(arch: str, style: str) -> None:
    spec, expected = TUTORIAL[arch]
    model = library_model(spec, style)
    s = library_summary(spec, style)
    assert s.total_params == count_parameters(model) == expected
    assert s.trainable_params == count_parameters(model, trainable_only=True)
    assert sum(r.parameters for r in s.rows) == s.total_params
    assert s.output_shape == (spec.num_classes,)
    assert all(not r.type == "Identity" for r in s.rows)


def test_summary_lenet_shapes() -> None:
    spec = TUTORIAL["lenet"][0]
    module_rows = {r.name: r for r in library_summary(spec, "module").rows}
    assert module_rows["conv1"].output_shape == (6, 60, 60)
    assert module_rows["conv1"].type == "Conv2d"
    assert module_rows["conv1"].parameters == 6 * 25 + 6
    assert module_rows["conv2"].output_shape == (16, 26, 26)
    assert module_rows["fc1"].output_shape == (400,)
    assert module_rows["head"].output_shape == (6,)

    seq_rows = library_summary(spec, "sequential").rows
    assert seq_rows[0].name == "0" and seq_rows[0].output_shape == (6, 60, 60)
    flatten = [r for r in seq_rows if r.type == "Flatten"]
    assert [r.output_shape for r in flatten] == [(2704,)]
    assert [r.output_shape for r in seq_rows if r.type == "MaxPool2d"] == [(6, 30, 30), (16, 13, 13)]


def test_summary_resnet_shapes() -> None:
    spec = TUTORIAL["resnet50"][0]
    rows = {r.name: r for r in library_summary(spec, "module").rows}
    assert rows["stem.4"].output_shape == (64, 15, 15)  # after the stem's max-pool
    assert rows["stages.0.2.bn3"].output_shape == (256, 15, 15)
    assert rows["stages.3.0.shortcut.0"].output_shape == (2048, 2, 2)
    assert rows["stages.3.2.bn3"].output_shape == (2048, 2, 2)  # final stage
    assert rows["head.0"].output_shape == (2048, 1, 1)
    assert rows["head.3"].output_shape == (6,)


def test_summary_lenet_mult_adds_by_hand() -> None:
    spec = TUTORIAL["lenet"][0]  # gray 64×64
    conv1 = (6 * 60 * 60) * (1 * 5 * 5)
    conv2 = (16 * 26 * 26) * (6 * 5 * 5)
    fcs = 2704 * 400 + 400 * 120 + 120 * 84 + 84 * 6
    expected = conv1 + conv2 + fcs
    assert expected == 3_302_584
    for style in STYLES:
        s = library_summary(spec, style)
        assert s.mult_adds == expected
        assert [r.mult_adds for r in s.rows if r.type == "Conv2d"] == [conv1, conv2]
        assert all(r.mult_adds == 0 for r in s.rows if r.type not in ("Conv2d", "Linear"))


def test_summary_mlp_mult_adds_and_shared_dropout() -> None:
    spec = TUTORIAL["mlp"][0].replace(dropout=0.2)
    model = build_model(spec, "module")
    s = summarize(model, spec)
    assert s.mult_adds == 12288 * 20 + 20 * 7 + 7 * 5 + 5 * 2
    # One Dropout module, applied after each of the three hidden layers: three rows, no params.
    dropout_rows = [r for r in s.rows if r.type == "Dropout"]
    assert [r.output_shape for r in dropout_rows] == [(20,), (7,), (5,)]
    assert sum(r.parameters for r in s.rows) == count_parameters(model)


def test_summary_restores_mode_and_leaves_bn_statistics_alone() -> None:
    spec = TUTORIAL["lenet"][0]
    model = build_model(spec, "module").train()
    model.bn1.eval()  # a mixed state must come back as it was, module by module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, spec)
    assert model.training and not model.bn1.training and model.bn2.training
    for k, v in model.state_dict().items():
        exact(v, before[k])
    assert all(p.grad is None for p in model.parameters())

    model.eval()
    summarize(model, spec)
    assert not any(m.training for m in model.modules())


def test_summary_counts_frozen_parameters() -> None:
    spec = TUTORIAL["lenet"][0]
    model = build_model(spec, "module")
    model.conv1.requires_grad_(False)
    s = summarize(model, spec)
    assert s.total_params == 1_144_618
    assert s.trainable_params == 1_144_618 - 156 == count_parameters(model, trainable_only=True)
    rows = {r.name: r for r in s.rows}
    assert rows["conv1"].trainable is False and rows["conv2"].trainable is True


def test_summary_records() -> None:
    spec = TUTORIAL["mlp"][0]
    s = library_summary(spec, "sequential")
    records = s.to_records()
    assert len(records) == len(s.rows)
    assert set(records[0]) >= {"name", "type", "output_shape", "parameters", "trainable", "mult_adds"}
    assert records[0]["type"] == "Flatten" and records[0]["output_shape"] == [12288]
    json.dumps(records)  # plain data, ready for a table


# --- generated code ----------------------------------------------------------------------------

CODEGEN_CASES = [(spec, style) for spec in [*(s for s, _ in TUTORIAL.values()), *VARIANTS.values()] for style in STYLES]


def run_code(code: str) -> nn.Module:
    namespace: dict = {}
    exec(compile(code, "<generated>", "exec"), namespace)
    return namespace["model"]


@pytest.mark.parametrize("spec, style", CODEGEN_CASES, ids=lambda v: v.describe() if isinstance(v, ModelSpec) else v)
def test_generated_code_builds_the_same_net(spec: ModelSpec, style: str) -> None:
    code = generate_code(spec, style)
    model = run_code(code)
    lib = randomize_bn(copy.deepcopy(library_model(spec, style)), seed=5)
    assert count_parameters(model) == count_parameters(lib)
    assert [v.shape for v in model.state_dict().values()] == [v.shape for v in lib.state_dict().values()]
    copy_weights(lib, model).eval()
    x = batch(spec, 3)
    with torch.no_grad():
        exact(model(x), lib(x))


@pytest.mark.parametrize("spec, style", CODEGEN_CASES, ids=lambda v: v.describe() if isinstance(v, ModelSpec) else v)
def test_generated_code_reads_like_the_spec(spec: ModelSpec, style: str) -> None:
    code = generate_code(spec, style)
    tree = ast.parse(code)
    assert code.splitlines()[:3] == ["import torch", "from torch import nn", "import torch.nn.functional as F"]
    last = tree.body[-1]
    assert isinstance(last, ast.Assign) and [t.id for t in last.targets] == ["model"]  # type: ignore[attr-defined]

    assert ("BatchNorm" in code) == spec.batchnorm
    if spec.dropout:
        assert f"nn.Dropout({spec.dropout!r})" in code
    else:
        assert "ropout" not in code
    assert "Identity" not in code or spec.arch == "resnet50"  # only the ResNet's identity shortcut

    if style == "module":
        assert {"mlp": "class MLP(nn.Module)", "lenet": "class LeNet5(nn.Module)", "resnet50": "class ResNet50(nn.Module)"}[
            spec.arch
        ] in code
    else:
        assert "model = nn.Sequential(" in code

    c = spec.in_channels
    if spec.arch == "mlp":
        sizes = [c * spec.input_size**2, *spec.hidden, spec.num_classes]
        for n_in, n_out in zip(sizes, sizes[1:]):
            assert f"nn.Linear({n_in}, {n_out})" in code
    elif spec.arch == "lenet":
        assert f"nn.Conv2d({c}, 6, kernel_size=5)" in code
        assert f"nn.Linear({lenet_flat_features(spec)}, {LENET_FC[0]})" in code
        assert f"nn.Linear({LENET_FC[-1]}, {spec.num_classes})" in code
    else:
        assert f"nn.Conv2d({c}, 64, 7, stride=2)" in code
        assert f"nn.Linear(2048, {spec.num_classes})" in code
        assert "class Bottleneck(nn.Module)" in code
    if spec.arch != "resnet50":
        # Tutorial style: literal layer sizes, no loops or comprehensions.
        assert not any(isinstance(n, (ast.For, ast.While, ast.comprehension)) for n in ast.walk(tree))


def test_generated_code_numbers_match_the_spec_options() -> None:
    spec = ModelSpec("mlp", num_classes=7, in_channels=1, input_size=20, hidden=(64, 32, 16), batchnorm=False)
    code = generate_code(spec, "module")
    assert "nn.Linear(400, 64)" in code and "1·20·20 = 400" in code
    assert "self.fc3 = nn.Linear(32, 16)" in code and "nn.Linear(16, 7)" in code
    assert "self.fc4" not in code


_SHAPE_COMMENT = re.compile(r"nn\.(\w+)\(.*\),\s+# N, ([\d, ]+?)(?: \(|\s*$| class)")


@pytest.mark.parametrize("spec", [TUTORIAL["lenet"][0], VARIANTS["lenet"]], ids=lambda s: s.describe())
def test_generated_lenet_shape_comments_match_the_summary(spec: ModelSpec) -> None:
    commented = [
        (m.group(1), tuple(int(d) for d in m.group(2).split(", ")))
        for line in generate_code(spec, "sequential").splitlines()
        if (m := _SHAPE_COMMENT.search(line))
    ]
    rows = library_summary(spec, "sequential").rows
    observed = [(r.type, r.output_shape) for r in rows if r.type in ("Conv2d", "MaxPool2d", "Flatten", "Linear")]
    assert commented == observed


@pytest.mark.parametrize("spec", [TUTORIAL["resnet50"][0], VARIANTS["resnet50"]], ids=lambda s: s.describe())
def test_generated_resnet_stage_comments_match_the_summary(spec: ModelSpec) -> None:
    code = generate_code(spec, "module")
    commented = [
        tuple(int(d) for d in m.group(1).split(", "))
        for m in re.finditer(r"self\.stage\d = .*# N, ([\d, ]+)$", code, flags=re.M)
    ]
    rows = library_summary(spec, "module").rows
    last_block = {int(r.name.split(".")[1]): r.output_shape for r in rows if re.fullmatch(r"stages\.\d+\.\d+\.conv3", r.name)}
    assert commented == [last_block[i] for i in range(4)]


def test_generate_code_refuses_unknown_style() -> None:
    with pytest.raises(SpecError, match="style"):
        generate_code(TUTORIAL["mlp"][0], "functional")  # type: ignore[arg-type]


# --- the feature / head seam -----------------------------------------------------------------------


def tensor_owners(model: nn.Module) -> dict[str, nn.Module]:
    """state_dict key → the module that registered the tensor."""
    owner = {id(t): m for m in model.modules() for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]}
    return {k: owner[id(t)] for k, t in model.state_dict(keep_vars=True).items()}


# The head each net trains when its features are frozen, as layer types in forward order.
HEADS = {
    "mlp": ["Linear"],
    "lenet": ["Linear", "BatchNorm1d", "Linear", "BatchNorm1d", "Linear", "BatchNorm1d", "Linear"],
    "resnet50": ["Linear"],
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ARCHS)
def test_feature_head_split_covers_every_tensor_once_in_both_styles(arch: str, style: str) -> None:
    spec = TUTORIAL[arch][0]
    model = library_model(spec, style)
    features, head = feature_head_split(model)
    assert [type(m).__name__ for m in head] == HEADS[arch]
    assert head[-1] is classifier(model) and head[-1].out_features == spec.num_classes
    owners = tensor_owners(model)
    in_features = [k for k, m in owners.items() if any(m is f for f in features)]
    in_head = [k for k, m in owners.items() if any(m is h for h in head)]
    keys = list(owners)
    assert keys == in_features + in_head  # every tensor once, features first
    if arch != "mlp":
        assert all(not isinstance(m, nn.Linear) for m in features)  # the conv part only
        assert isinstance(features[-1], (nn.Conv2d, nn.BatchNorm2d))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_split_is_the_same_in_both_styles(arch: str) -> None:
    spec = VARIANTS[arch]
    shapes = {}
    for style in STYLES:
        features, head = feature_head_split(library_model(spec, style))
        shapes[style] = ([tuple(p.shape) for m in features for p in m.parameters()],
                         [tuple(p.shape) for m in head for p in m.parameters()])
    assert shapes["module"] == shapes["sequential"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", ["lenet", "mlp"])
def test_replace_head_puts_a_fresh_kaiming_classifier_in_the_same_place(arch: str, style: str) -> None:
    spec = VARIANTS[arch]
    model = copy.deepcopy(library_model(spec, style))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old = classifier(model)
    new_spec = replace_head(model, spec, 7, torch.Generator().manual_seed(3))
    assert new_spec == spec.replace(num_classes=7)
    new = classifier(model)
    assert new is not old and new.out_features == 7 and new.in_features == old.in_features
    after = model.state_dict()
    assert list(after) == list(before)  # same names, same order: copy_weights still pairs them up
    head_keys = [k for k, m in tensor_owners(model).items() if m is new]
    for k in after:
        if k in head_keys:
            assert after[k].shape[0] == 7
        else:
            exact(after[k], before[k])
    assert torch.all(new.bias == 0)
    twin = copy.deepcopy(library_model(spec, style))
    replace_head(twin, spec, 7, torch.Generator().manual_seed(3))
    exact(classifier(twin).weight, new.weight)  # the generator decides the new weights
    other_style = build_model(new_spec, "sequential" if style == "module" else "module", seed=1)
    copy_weights(model, other_style)
    model.eval(), other_style.eval()
    with torch.no_grad():
        x = batch(spec)
        assert model(x).shape == (len(x), 7)
        torch.testing.assert_close(other_style(x), model(x))


def test_replace_head_on_a_resnet_keeps_the_pool_and_dropout() -> None:
    spec = VARIANTS["resnet50"]
    model = copy.deepcopy(library_model(spec, "module"))
    replace_head(model, spec, 5)
    assert [type(m) for m in model.head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear]
    assert model.head[-1].out_features == 5 and model(batch(spec)).shape[1] == 5
    with pytest.raises(SpecError, match="number of classes"):
        replace_head(model, spec, 1)


@pytest.mark.parametrize("style", STYLES)
def test_frozen_batch_norms_stay_in_eval_mode_and_keep_their_statistics(style: str) -> None:
    spec = TUTORIAL["lenet"][0]
    model = randomize_bn(copy.deepcopy(library_model(spec, style)))
    assert freeze_features(model) is model
    features, head = feature_head_split(model)
    assert all(not p.requires_grad for m in features for p in m.parameters())
    assert all(p.requires_grad for m in head for p in m.parameters())
    frozen = [m for m in features if isinstance(m, BN_TYPES)]
    assert [type(m) for m in frozen] == [FrozenBatchNorm2d, FrozenBatchNorm2d]
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert model.training and all(not m.training for m in frozen)
    assert all(m.training for m in head if isinstance(m, BN_TYPES))
    x = batch(spec, n=4)
    model(x).sum().backward()
    for m in features:
        assert all(p.grad is None for p in m.parameters())
    owners = tensor_owners(model)
    for k, v in model.state_dict().items():
        if any(owners[k] is m for m in features):
            exact(v, stats[k])  # running statistics untouched by a training-mode forward
    assert summarize(model, spec).trainable_params == count_parameters(model, trainable_only=True)
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, (FrozenBatchNorm1d, FrozenBatchNorm2d)) for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_freezing_changes_no_output() -> None:
    spec = TUTORIAL["lenet"][0]
    model = randomize_bn(copy.deepcopy(library_model(spec, "module"))).eval()
    x = batch(spec, n=4)
    with torch.no_grad():
        before = model(x)
        after = freeze_features(model).eval()(x)
    exact(after, before)


# --- the last spatial feature map: forward_features / forward_head / feature_stages --------------

SPATIAL_SPECS = [
    ModelSpec("lenet", num_classes=6, in_channels=1, input_size=64),
    VARIANTS["lenet"],
    ModelSpec("resnet50", num_classes=6, in_channels=3, input_size=64),
    VARIANTS["resnet50"],
]
# The last conv stage's output: LeNet after conv2 → BN → ReLU → max-pool; ResNet-50 after stage 4.
FEATURE_SHAPES = {
    SPATIAL_SPECS[0]: (16, 13, 13),
    SPATIAL_SPECS[1]: (16, 9, 9),
    SPATIAL_SPECS[2]: (2048, 2, 2),
    SPATIAL_SPECS[3]: (2048, 1, 1),
}
STAGE_NAMES = {"lenet": ["conv1", "conv2"], "resnet50": ["stem", "stage 1", "stage 2", "stage 3", "stage 4"]}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("spec", SPATIAL_SPECS, ids=lambda s: s.describe())
def test_features_then_head_is_the_whole_net_bit_for_bit(spec: ModelSpec, style: str) -> None:
    model = randomize_bn(copy.deepcopy(library_model(spec, style)))
    x = batch(spec, 2)
    with torch.no_grad():
        features = forward_features(model, x)
        assert tuple(features.shape) == (x.shape[0], *FEATURE_SHAPES[spec])
        exact(forward_head(model, features), model(x))
        staged = x
        for stage in feature_stages(model):
            staged = stage.forward(staged)
        exact(staged, features)
    assert [stage.name for stage in feature_stages(model)] == STAGE_NAMES[spec.arch]
    assert has_spatial_features(model)


@pytest.mark.parametrize("spec", SPATIAL_SPECS, ids=lambda s: s.describe())
def test_both_styles_give_the_same_features_and_stages(spec: ModelSpec) -> None:
    module = randomize_bn(copy.deepcopy(library_model(spec, "module")))
    seq = copy_weights(module, default_init_model(spec, "sequential")).eval()
    x = batch(spec, 2, seed=5)
    with torch.no_grad():
        exact(forward_features(seq, x), forward_features(module, x))
        a, b = x, x
        for sa, sb in zip(feature_stages(module), feature_stages(seq), strict=True):
            a, b = sa.forward(a), sb.forward(b)
            assert sa.name == sb.name
            exact(b, a)


def test_lenet_features_are_what_its_fully_connected_part_reads() -> None:
    spec = SPATIAL_SPECS[0]
    model = randomize_bn(copy.deepcopy(library_model(spec, "module")))
    x = batch(spec, 2)
    with torch.no_grad():
        expected = F.max_pool2d(F.relu(model.bn2(model.conv2(F.max_pool2d(F.relu(model.bn1(model.conv1(x))), 2)))), 2)
        exact(forward_features(model, x), expected)
        assert torch.flatten(expected, 1).shape[1] == model.fc1.in_features


@pytest.mark.parametrize("style", STYLES)
def test_the_mlp_has_no_spatial_features(style: str) -> None:
    model = library_model(VARIANTS["mlp"], style)
    assert feature_stages(model) == [] and not has_spatial_features(model)
    with pytest.raises(ValueError, match="no convolution layer"):
        forward_features(model, batch(VARIANTS["mlp"]))
    with pytest.raises(ValueError, match="no convolution layer"):
        forward_head(model, torch.zeros(1, 8))


def test_the_seam_leaves_a_frozen_nets_split_alone() -> None:
    """Fine-tuning's features/head split and freezing still see the same layers."""
    spec = SPATIAL_SPECS[1]
    for style in STYLES:
        model = copy.deepcopy(library_model(spec, style))
        features, head = feature_head_split(model)
        assert sum(isinstance(m, nn.Conv2d) for m in features) == 2 and isinstance(head[-1], nn.Linear)
        x = batch(spec, 2)
        with torch.no_grad():
            before = model(x)
            exact(forward_head(freeze_features(model).eval(), forward_features(model, x)), before)
