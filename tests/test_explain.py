"""Looking inside the net: Grad-CAM, saliency, feature maps, filters (core/explain.py).

Grad-CAM is checked against a computation written out here from the net's own layers (no seam,
no hooks), the way the paper defines it; the rest checks what the app relies on: one cached model
serves every session, so an explanation must leave it exactly as it was, and two at once must not
disturb each other.
"""
from __future__ import annotations

import copy
import io
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from core.checkpoint import load_checkpoint, save_checkpoint
from core.explain import (
    GRAD_CAM,
    GRADCAM_CODE,
    SALIENCY,
    ExplainError,
    colorbar,
    colorize,
    explain,
    feature_maps,
    grad_cam,
    learned_filters,
    overlay_heatmap,
    saliency,
)
from core.inference import predict_image
from core.nets import build_model, copy_weights, freeze_features, init_kaiming
from core.spec import ModelSpec
from core.tensors import images_to_tensor
from core.trainer import TrainConfig, Trainer
from tests.test_nets import randomize_bn

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LENET = ModelSpec("lenet", 3, in_channels=3, input_size=32)
RESNET = ModelSpec("resnet50", 3, in_channels=3, input_size=32)
MLP = ModelSpec("mlp", 3, in_channels=3, input_size=16, hidden=(8, 4))




def net(spec: ModelSpec, style: str = "module", seed: int = 0) -> nn.Module:
    return randomize_bn(build_model(spec, style, seed=seed), seed + 1).eval()


def image(spec: ModelSpec, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, *spec.input_shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet trained on 32-px tiny patterns (perfect test accuracy), saved and loaded back."""
    from tests.conftest import make_tiny_dataset

    data = make_tiny_dataset(n_train=120, n_test=24, size=32, num_classes=3)
    config = TrainConfig(optimizer="adam", lr=0.01, schedule="constant", augment=False, batch_size=32, epochs=5, device="cpu")
    trainer = Trainer(LENET, data, config)
    for _ in trainer.run():
        pass
    return load_checkpoint(trainer.save(tmp_path_factory.mktemp("ckpt") / "lenet.pt")), data


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


# --- Grad-CAM against an independent computation ------------------------------------------------


def manual_split(model: nn.Module, spec: ModelSpec):
    """The features/head split written out from the layers themselves, with PyTorch's own max pool."""
    if isinstance(model, nn.Sequential):
        cut = {"lenet": 8, "resnet50": 5 + 16}[spec.arch]  # 8 conv-part layers; stem + 16 blocks
        return model[:cut], model[cut:]
    if spec.arch == "lenet":
        def features(x):
            x = F.max_pool2d(F.relu(model.bn1(model.conv1(x))), 2)
            return F.max_pool2d(F.relu(model.bn2(model.conv2(x))), 2)

        def head(f):
            f = torch.flatten(f, 1)
            for fc, bn in ((model.fc1, model.bn3), (model.fc2, model.bn4), (model.fc3, model.bn5)):
                f = F.relu(bn(fc(f)))
            return model.head(f)
        return features, head
    return (lambda x: model.stages(model.stem(x))), model.head


def reference_cam(model: nn.Module, spec: ModelSpec, x: torch.Tensor, c: int) -> torch.Tensor:
    cam = reference_raw_cam(model, spec, x, c)
    return cam / cam.max() if cam.max() > 0 else cam  # no evidence for the class anywhere: all 0


def reference_raw_cam(model: nn.Module, spec: ModelSpec, x: torch.Tensor, c: int) -> torch.Tensor:
    features, head = manual_split(model, spec)
    with torch.enable_grad():
        f = features(x).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head(f)[0, c], f)
    alpha = g.mean(dim=(2, 3))[0]  # one weight per channel
    cam = torch.relu(torch.einsum("k,khw->hw", alpha, f.detach()[0]))
    return F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("style", ["module", "sequential"])
@pytest.mark.parametrize("spec", [LENET, RESNET.replace(input_size=64)], ids=["lenet", "resnet50-64"])
def test_grad_cam_equals_an_independent_computation(spec, style):
    model, x = net(spec, style), image(spec)
    peaks = []
    for c in range(spec.num_classes):
        cam = grad_cam(model, x, c)
        assert cam.shape == (spec.input_size, spec.input_size) and cam.dtype == torch.float32
        assert float(cam.min()) >= 0 and float(cam.max()) in (0.0, pytest.approx(1.0))
        torch.testing.assert_close(cam, reference_cam(model, spec, x, c), rtol=1e-5, atol=1e-6)
        peaks.append(float(cam.max()))
    assert peaks.count(0.0) < len(peaks)  # the comparison is not all zeros


def test_a_mirror_reading_net_gets_the_evidence_behind_both_answers():
    # A net that reads a photo with its mirror image (Checkpoint.mirror_average) is explained by both
    # maps, the mirror's mirrored back, summed before the division by the peak.
    model, x = net(LENET), image(LENET)
    for c in range(LENET.num_classes):
        both = reference_raw_cam(model, LENET, x, c) + reference_raw_cam(model, LENET, x.flip(-1), c).flip(-1)
        expected = both / both.max() if both.max() > 0 else both
        cam = grad_cam(model, x, c, mirror=True)
        torch.testing.assert_close(cam, expected, rtol=1e-5, atol=1e-6)
        # It reads the photo and its mirror alike: the map of the mirror image is this map mirrored.
        torch.testing.assert_close(grad_cam(model, x.flip(-1), c, mirror=True), cam.flip(-1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(grad_cam(model, x, 0, mirror=True), grad_cam(model, x, 0), atol=1e-3)
    mlp, xm = net(MLP), image(MLP)
    torch.testing.assert_close(saliency(mlp, xm.flip(-1), 1, mirror=True), saliency(mlp, xm, 1, mirror=True).flip(-1))
    assert not torch.allclose(saliency(mlp, xm, 1, mirror=True), saliency(mlp, xm, 1), atol=1e-3)


def test_the_shown_code_runs_and_gives_grad_cam():
    namespace: dict = {}
    exec(compile(GRADCAM_CODE, "GRADCAM_CODE", "exec"), namespace)
    assert 8 <= len(GRADCAM_CODE.strip().splitlines()) <= 16
    for spec in (LENET, RESNET):
        model, x = net(spec, "sequential"), image(spec)
        for c in range(spec.num_classes):
            with torch.no_grad():  # as the app calls it
                shown = namespace["grad_cam"](model, x, c)
            torch.testing.assert_close(shown.detach(), grad_cam(model, x, c), rtol=0, atol=0)


def test_both_styles_give_the_same_maps():
    for spec in (LENET, RESNET):
        module = net(spec, "module")
        seq = copy_weights(module, build_model(spec, "sequential", seed=9)).eval()
        x = image(spec, seed=3)
        for c in range(spec.num_classes):
            torch.testing.assert_close(grad_cam(seq, x, c), grad_cam(module, x, c), rtol=0, atol=0)
        for a, b in zip(feature_maps(module, x), feature_maps(seq, x)):
            assert (a.name, a.shape, a.channels) == (b.name, b.shape, b.channels)
            np.testing.assert_array_equal(a.maps, b.maps)


def test_each_class_gets_its_own_map(trained):
    ckpt, data = trained
    x = images_to_tensor(torch.from_numpy(data.x_test[:4]), 3, 32)
    for i in range(4):
        maps = [grad_cam(ckpt.model, x[i:i + 1], c) for c in range(3)]
        assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])


def test_randomising_the_weights_changes_the_map(trained):
    """Adebayo et al. 2018, "Sanity checks for saliency maps": a map that survives randomising the
    weights shows the image, not what the net learned. Cascading from the top: the classifier
    alone, then every layer."""
    ckpt, data = trained
    x = images_to_tensor(torch.from_numpy(data.x_test[:3]), 3, 32)
    top, every = copy.deepcopy(ckpt.model), copy.deepcopy(ckpt.model)
    g = torch.Generator().manual_seed(123)
    nn.init.normal_(top.head.weight, generator=g)
    init_kaiming(every, g)
    for i in range(3):
        c = int(data.y_test[i])
        original = grad_cam(ckpt.model, x[i:i + 1], c)
        for randomised in (top, every):
            changed = grad_cam(randomised, x[i:i + 1], c)
            assert (changed - original).abs().mean() > 0.05


# --- the model is left exactly as it was --------------------------------------------------------


def hooks(model: nn.Module) -> int:
    attrs = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_state_dict_hooks", "_load_state_dict_pre_hooks")
    return sum(len(getattr(m, a, {})) for m in model.modules() for a in attrs)


def global_hooks() -> int:
    from torch.nn.modules import module as mod

    return sum(len(getattr(mod, name)) for name in dir(mod) if name.startswith("_global_") and name.endswith("hooks"))


@pytest.mark.parametrize("spec", [LENET, RESNET, MLP], ids=["lenet", "resnet50", "mlp"])
def test_explaining_leaves_the_model_as_it_was(spec):
    model = net(spec, "sequential")
    if spec.arch == "lenet":
        freeze_features(model)  # mixed requires_grad flags, as a fine-tuned net has
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    n_hooks, n_global = hooks(model), global_hooks()
    x = image(spec)
    for grad_mode in (torch.no_grad, torch.enable_grad):
        with grad_mode():
            if spec.arch != "mlp":
                grad_cam(model, x, 1)
            saliency(model, x, 2)
            feature_maps(model, x)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes and not any(modes)
    assert all(p.grad is None for p in model.parameters())
    assert hooks(model) == n_hooks == 0 and global_hooks() == n_global


def test_a_net_in_training_mode_is_refused_and_left_in_training_mode():
    model = net(LENET).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for fn in (grad_cam, saliency):
        with pytest.raises(ExplainError, match=r"model\.eval\(\)"):
            fn(model, image(LENET), 0)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_requests_name_what_was_wrong():
    model = net(LENET)
    with pytest.raises(ExplainError, match="out of range: the net has 3 classes"):
        grad_cam(model, image(LENET), 3)
    with pytest.raises(ExplainError, match="one image"):
        grad_cam(model, torch.rand(2, 3, 32, 32), 0)
    with pytest.raises(ValueError, match="no convolution layer.*saliency"):
        grad_cam(net(MLP), image(MLP), 0)


def test_two_threads_explaining_at_once_get_what_each_gets_alone():
    model = net(LENET)
    jobs = [(image(LENET, seed=s), c) for s in range(3) for c in range(3)]
    alone = [(grad_cam(model, x, c), saliency(model, x, c)) for x, c in jobs]
    results: dict[int, list] = {}
    start = threading.Barrier(2)

    def work(k: int) -> None:
        order = list(range(len(jobs)))
        order = order if k == 0 else order[::-1]  # the two threads explain different things at once
        start.wait()
        results[k] = [(j, grad_cam(model, *jobs[j]), saliency(model, *jobs[j])) for _ in range(4) for j in order]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1]
    for k in (0, 1):
        assert len(results[k]) == 4 * len(jobs)
        for j, cam, sal in results[k]:
            assert torch.equal(cam, alone[j][0]) and torch.equal(sal, alone[j][1])


# --- ResNet-50, the MLP -------------------------------------------------------------------------


def test_resnet50_at_32_px_explains():
    model, x = net(RESNET), image(RESNET)
    cam = grad_cam(model, x, 0)
    assert cam.shape == (32, 32) and 0 <= float(cam.min()) and float(cam.max()) <= 1
    stages = feature_maps(model, x)
    assert [s.name for s in stages] == ["stem", "stage 1", "stage 2", "stage 3", "stage 4"]
    assert [s.shape for s in stages] == [(64, 7, 7), (256, 7, 7), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)]
    for s in stages:
        assert s.maps.shape == (16, *s.shape[1:]) and s.maps.dtype == np.float32
        assert 0 <= s.maps.min() and s.maps.max() <= 1


def test_wide_stages_show_their_strongest_channels():
    model, x = net(RESNET), image(RESNET)
    stem = feature_maps(model, x)[0]
    with torch.no_grad():
        a = model.stem(x)[0]  # the independent stem output
    strength = a.mean(dim=(1, 2))
    assert set(stem.channels) == set(strength.topk(16).indices.tolist())
    shown = a[list(stem.channels)]
    np.testing.assert_allclose(stem.maps, (shown / shown.max()).numpy(), rtol=1e-6, atol=1e-7)


def test_lenet_feature_maps_are_conv1s_6_and_conv2s_16():
    model, x = net(LENET), image(LENET)
    conv1, conv2 = feature_maps(model, x)
    assert (conv1.name, conv1.shape, conv1.channels) == ("conv1", (6, 14, 14), tuple(range(6)))
    assert (conv2.name, conv2.shape, conv2.channels) == ("conv2", (16, 5, 5), tuple(range(16)))
    with torch.no_grad():
        a = F.max_pool2d(F.relu(model.bn1(model.conv1(x))), 2)[0]
    np.testing.assert_allclose(conv1.maps, (a / a.max()).numpy(), rtol=1e-6, atol=1e-7)


def test_the_mlp_gets_an_input_gradient_saliency_map():
    model, x = net(MLP), image(MLP)
    assert feature_maps(model, x) == []
    with torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xx)[0, 1], xx)
    expected = g.abs().amax(dim=1)[0]
    torch.testing.assert_close(saliency(model, x, 1), expected / expected.max())


# --- explain(): one photo from a checkpoint -----------------------------------------------------


def test_explain_a_photo_for_the_predicted_and_another_class(trained):
    ckpt, data = trained
    photo = png(data.x_test[0])
    exp = explain(ckpt, photo)
    pred = predict_image(ckpt, photo)
    assert exp.prediction.probabilities == pred.probabilities and exp.class_name == pred.label
    assert exp.method == GRAD_CAM
    assert exp.heatmap.shape == (32, 32) and exp.heatmap.dtype == np.float32
    np.testing.assert_array_equal(exp.heatmap, grad_cam(ckpt.model, pred.net_input, exp.class_index).numpy())
    other = next(c for c in ckpt.classes if c != pred.label)
    why_not = explain(ckpt, photo, class_name=other)
    assert why_not.class_name == other and why_not.class_index == list(ckpt.classes).index(other)
    assert not np.allclose(why_not.heatmap, exp.heatmap)
    assert [f.name for f in exp.feature_maps] == ["conv1", "conv2"]
    filters = exp.filters()
    assert filters.images.shape == (6, 5, 5, 3) and filters.shape == (6, 3, 5, 5)
    with pytest.raises(ExplainError, match="not one of this net's classes: bar, column, diagonal"):
        explain(ckpt, photo, class_name="cat")


def test_explaining_a_mirror_reading_net_shows_both_views(trained):
    ckpt, data = trained
    mirrored = copy.copy(ckpt)
    mirrored.training = {**ckpt.training, "augment": True, "augmentation": "mirrored"}
    assert mirrored.mirror_average and not ckpt.mirror_average
    photo = png(data.x_test[0])
    exp = explain(mirrored, photo)
    assert exp.prediction.mirrored and exp.prediction.probabilities == predict_image(mirrored, photo).probabilities
    expected = grad_cam(ckpt.model, exp.prediction.net_input, exp.class_index, mirror=True)
    np.testing.assert_array_equal(exp.heatmap, expected.numpy())


def test_explain_uses_saliency_for_an_mlp_checkpoint(tmp_path):
    model = net(MLP, "sequential")
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "mlp.pt", model, MLP, "sequential", ("a", "b", "c")))
    exp = explain(ckpt, png(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)))
    assert exp.method == SALIENCY == "input-gradient saliency" and exp.feature_maps == []
    assert exp.heatmap.shape == (16, 16)
    filters = exp.filters()  # the first layer's 8 units, each as a 16×16 RGB image
    assert filters.images.shape == (8, 16, 16, 3)
    w = model[1].weight.detach()
    np.testing.assert_allclose(filters.images[2], (0.5 + 0.5 * w[2] / w.abs().max()).reshape(3, 16, 16).permute(1, 2, 0).numpy(), atol=1e-6)


def test_filters_are_the_first_conv_layers_weights_with_zero_at_mid_gray():
    model = net(LENET.replace(in_channels=1))
    f = learned_filters(model, (1, 32, 32))
    w = model.conv1.weight.detach()[:, 0]
    assert f.images.shape == (6, 5, 5) and f.shape == (6, 1, 5, 5)
    np.testing.assert_allclose(f.images, (0.5 + 0.5 * w / w.abs().max()).numpy(), atol=1e-7)
    assert f.images.min() >= 0 and f.images.max() <= 1


# --- drawing ------------------------------------------------------------------------------------


def test_overlay_is_rgb_uint8_blending_the_colour_map_over_what_the_net_saw(trained):
    ckpt, data = trained
    exp = explain(ckpt, png(data.x_test[1]))
    for opacity in (0.0, 0.5, 1.0):
        out = exp.overlay(opacity)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(exp.overlay(0.0), exp.seen)
    np.testing.assert_array_equal(exp.overlay(1.0), colorize(exp.heatmap))
    big = exp.overlay(0.5, size=256)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    gray = overlay_heatmap(np.zeros((8, 8), np.uint8), np.ones((8, 8)), 0.5)
    assert gray.shape == (8, 8, 3)
    with pytest.raises(ExplainError, match="opacity"):
        exp.overlay(1.5)


def test_the_colour_map_gets_brighter_from_0_to_1():
    strip = colorbar(256, 4)
    assert strip.shape == (4, 256, 3) and strip.dtype == np.uint8
    luma = strip[0].astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) >= -0.6) and luma[-1] - luma[0] > 200  # monotone up to rounding
