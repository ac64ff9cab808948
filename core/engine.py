"""The engine: a model, its optimizer and how they run on one device — one training step at a time.

:class:`Engine` owns what a step needs and nothing about a run: the model, the optimizer, the
learning rate as a device tensor, and the device's execution policy (precision, memory format,
faster kernels). :meth:`Engine.step` returns device tensors and never waits for the device, so a
loop can queue steps back to back and read the figures once per epoch or per refresh of a chart
(:class:`core.trainer.Trainer` is that loop). Batches can have one static shape: a short last
batch is padded and its padding masked out of the loss, so every image counts once.

Per-architecture choices live in :data:`POLICIES`, one row per net, not in branches.

On CUDA, ``capture=True`` records the whole step — forward, backward and the optimizer's update —
in a CUDA graph the first time it runs and replays it for every later batch: one launch instead of
hundreds, for batches of one static shape. Where capture is impossible the engine stays eager and
:attr:`Engine.capture_note` says why in one line.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

EVAL_BATCH = 256


@dataclass(frozen=True)
class Policy:
    """How one architecture runs best; measured in ``bench/bench_train.py`` (README, "Performance")."""

    channels_last: bool  # activations in channels-last memory format (oneDNN and cuDNN convs prefer it)
    onednn_pool: bool  # on the CPU, non-overlapping max-pools through oneDNN (ATen's NCHW kernel is slower)
    rgb_conv_channels_last: bool = False  # on the CPU, a convolution of an RGB input in channels-last


POLICIES: dict[str, Policy] = {
    "mlp": Policy(channels_last=False, onednn_pool=False),
    # Channels-last activations gain LeNet nothing (its 6-channel batch norm is slower that way), but
    # oneDNN's NCHW kernels for a 3-channel input are: only the first convolution switches layout.
    "lenet": Policy(channels_last=False, onednn_pool=True, rgb_conv_channels_last=True),
    "resnet50": Policy(channels_last=True, onednn_pool=False),
}


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    predictions: torch.Tensor  # N class indices, on the CPU
    probabilities: torch.Tensor  # N×classes, on the CPU


class Engine:
    """A model and its optimizer on one device, with one :meth:`step` that never syncs with the host.

    ``precision`` is ``auto`` (bf16 autocast where the hardware computes it natively), ``bf16`` or
    ``fp32``; weights and optimizer state stay fp32 either way. A convolution on one input channel
    (gray LeNet's first layer) stays fp32 on the CPU: oneDNN's bf16 kernel for it is slower.
    """

    def __init__(self, model: nn.Module, optimizer_config: Any, device: torch.device, arch: str,
                 precision: str = "auto", capture: bool = False) -> None:
        self.device, self.policy = device, POLICIES[arch]
        self.memory_format = torch.channels_last if self.policy.channels_last else torch.contiguous_format
        self.model = model.to(device).to(memory_format=self.memory_format)
        self.net = self.model  # what a training step calls: the model, or its DDP wrapper (see distribute)
        self.autocast_dtype = autocast_dtype(precision, device)
        self.fp32_layers = [
            m for m in self.model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 1
        ] if self.autocast_dtype is not None and device.type == "cpu" else []
        onednn = device.type == "cpu" and torch.backends.mkldnn.is_available()  # both measured with oneDNN
        self.onednn_pool = self.policy.onednn_pool and onednn
        self.rgb_conv_channels_last = self.policy.rgb_conv_channels_last and onednn
        # The rate is a tensor the optimizer reads on the device: setting it queues a write, never a sync.
        # float64 on the CPU, where the fused kernels then compute exactly as with a Python float.
        self.lr = torch.tensor(optimizer_config.lr, device=device,
                               dtype=torch.float64 if device.type == "cpu" else torch.float32)
        self._optimizer_config = optimizer_config
        self.capture_note = capture_obstacle(device) if capture else "eager (capture not asked for)"
        self.capture = capture and not self.capture_note
        self.capture_seconds = 0.0  # recording the graph (warm-up included), apart from training
        self._graph: _GraphStep | None = None
        self.optimizer = make_optimizer(self.model, optimizer_config, lr=self.lr, capturable=self.capture)

    def rebuild_optimizer(self) -> None:
        """A fresh optimizer for the parameters that train now (after freezing some)."""
        self.optimizer = make_optimizer(self.model, self._optimizer_config, lr=self.lr, capturable=self.capture)

    def distribute(self) -> None:
        """Train as one of several processes (the process group is up): ``DistributedDataParallel``
        averages the gradients over the processes inside ``backward``. On CUDA the batch norms
        become ``SyncBatchNorm`` (statistics over the global batch); PyTorch's needs an accelerator,
        so CPU processes keep per-process batch norm. :attr:`model` stays the plain net."""
        from torch.nn.parallel import DistributedDataParallel

        if self.capture:
            self.capture, self.capture_note = False, "eager: DDP's gradient all-reduce is not captured here"
        if self.device.type == "cuda":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # the same parameters, re-housed
        self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state dict with the learning rate as a plain number, as any optimizer saves it."""
        state = self.optimizer.state_dict()
        for group in state["param_groups"]:
            group["lr"] = float(self.lr)
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:  # the loaded number would replace the shared tensor
            group["lr"] = self.lr

    @contextlib.contextmanager
    def running(self, autocast: bool = True) -> Iterator[None]:
        """The device's execution context for forward passes: autocast (for training) and the faster kernels."""
        with contextlib.ExitStack() as stack:
            if autocast and self.autocast_dtype is not None:
                # No cast cache: each weight is cast once per step anyway, and a graph must not keep one.
                stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False))
                stack.enter_context(outside_autocast(self.fp32_layers))
            if self.onednn_pool or self.rgb_conv_channels_last:
                stack.enter_context(CpuKernels(pool=self.onednn_pool, rgb_conv=self.rgb_conv_channels_last))
            yield

    def step(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
             denominator: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch; returns (mean loss, correct count) as device tensors.

        ``weight`` (N, 1 or 0) masks a padded batch: padding adds nothing to the loss, the
        gradients or the count, and the mean is over the real images — or over ``denominator``
        of them: a process of a distributed run divides by the global batch's images per process,
        so that DDP's average over processes is the global batch's mean.

        With capture on, the first call records the step as a CUDA graph and every call with
        batches of the same shape replays it (``weight`` and ``denominator`` become inputs of the
        graph); a batch of another shape runs eagerly.
        """
        if self.capture and weight is not None:
            if self._graph is None:
                self._capture(x, y, weight, denominator)
            if self._graph is not None and self._graph.fits(x):
                return self._graph.replay(x, y, weight, denominator)
        return self._eager_step(x, y, weight, denominator)

    def _capture(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, denominator: float | None) -> None:
        t0 = time.perf_counter()
        try:
            self._graph = _GraphStep(self, x, y, weight, denominator)
            self.capture_note = f"captured: one CUDA graph per step, batches of {len(x)}"
        except RuntimeError as e:  # an op or optimizer that cannot be captured: eager, and say why
            self.capture, self.capture_note = False, f"eager: capture failed ({_first_line(e)})"
        self.capture_seconds = time.perf_counter() - t0

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None,
                    denominator: float | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with self.running():
            logits = self.net(x)  # N, classes
        losses = F.cross_entropy(logits.float(), y, reduction="none")  # N
        hits = (logits.argmax(1) == y).float()  # N
        if weight is None:
            loss, correct = losses.mean(), hits.sum()
        else:
            total = weight.sum() if denominator is None else denominator
            loss, correct = (losses * weight).sum() / total, (hits * weight).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), correct

    @torch.no_grad()
    def evaluate_sums(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count over ``x`` in ``eval()`` mode, as device tensors (no sync)."""
        was_training = self.model.training
        self.model.eval()
        try:
            loss, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
            for i in range(0, len(x), batch_size):
                with self.running(autocast=False):
                    logits = self.model(x[i : i + batch_size]).float()
                loss += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
                correct += (logits.argmax(1) == y[i : i + batch_size]).sum()
            return loss, correct
        finally:
            self.model.train(was_training)


class _GraphStep:
    """:meth:`Engine._eager_step` recorded once as a CUDA graph, replayed on static input buffers.

    Capture needs a few eager steps first (on a side stream, so kernels and the allocator settle);
    they would train, so the weights, batch-norm statistics, optimizer state and random state they
    touch are put back before recording. Recording runs nothing: the first replay is the first step.
    """

    def __init__(self, engine: Engine, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                 denominator: float | None) -> None:
        self.engine = engine
        self.x, self.y, self.weight = x.clone(), y.clone(), weight.clone()
        self.denominator = torch.tensor(float(denominator) if denominator is not None else 0.0, device=x.device)
        self.by_weight = denominator is None  # divide by the batch's real images, or by the given count
        saved = _snapshot(engine)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        _restore(engine, saved)
        self.graph = torch.cuda.CUDAGraph()
        engine.optimizer.zero_grad(set_to_none=True)  # backward then allocates the grads from the graph's pool
        with torch.cuda.graph(self.graph):
            self.loss, self.correct = self._step()
        torch.cuda.synchronize()

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.engine._eager_step(self.x, self.y, self.weight, None if self.by_weight else self.denominator)

    def fits(self, x: torch.Tensor) -> bool:
        return x.shape == self.x.shape and x.dtype == self.x.dtype

    def replay(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
               denominator: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.x.copy_(x)
        self.y.copy_(y)
        self.weight.copy_(weight)
        if denominator is not None:
            self.denominator.fill_(denominator)
        self.graph.replay()
        return self.loss.clone(), self.correct.clone()  # the graph overwrites its outputs next time


def _snapshot(engine: Engine) -> dict[str, Any]:
    state = engine.optimizer.state
    return {
        "model": [t.detach().clone() for t in (*engine.model.parameters(), *engine.model.buffers())],
        "optimizer": {id(t): t.clone() for s in state.values() for t in s.values() if isinstance(t, torch.Tensor)},
        "rng": torch.cuda.get_rng_state(engine.device),
    }


@torch.no_grad()
def _restore(engine: Engine, saved: dict[str, Any]) -> None:
    for t, value in zip((*engine.model.parameters(), *engine.model.buffers()), saved["model"]):
        t.copy_(value)
    for s in engine.optimizer.state.values():
        for t in s.values():
            if isinstance(t, torch.Tensor):
                # State the warm-up created did not exist: zero is what a first step starts from
                # (Adam's moments and step, RMSprop's averages, SGD's momentum buffer).
                t.copy_(saved["optimizer"][id(t)]) if id(t) in saved["optimizer"] else t.zero_()
    torch.cuda.set_rng_state(saved["rng"], engine.device)


def capture_obstacle(device: torch.device) -> str:
    """Why a training step cannot be captured in a CUDA graph on ``device``, or "" if it can."""
    if device.type != "cuda":
        return f"eager: CUDA graphs need a CUDA device, not {device.type}"
    return ""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:160] if lines else type(e).__name__


def make_optimizer(model: nn.Module, cfg: Any, lr: float | torch.Tensor | None = None,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` (a :class:`~core.trainer.TrainConfig`) names, with its settings; L2 through ``weight_decay``.

    SGD and Adam use PyTorch's fused kernels (one kernel per step for all tensors) where the
    device has them: on the CPU the step is much shorter than with the default per-tensor loop
    (figures: README, "Performance"; ``bench/bench_train.py``). RMSprop has no fused kernel and
    keeps PyTorch's default. Frozen parameters (``requires_grad=False``) are left out, so weight
    decay never moves them either. ``lr`` (a float or a tensor the caller updates) replaces ``cfg.lr``;
    ``capturable`` keeps Adam's and RMSprop's step counts on the device, as a CUDA graph needs.
    """
    params, wd = [p for p in model.parameters() if p.requires_grad], cfg.weight_decay
    lr = cfg.lr if lr is None else lr
    graph = {"capturable": True} if capturable else {}
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, weight_decay=wd, **graph)
    if cfg.optimizer == "adam":
        cls, settings = torch.optim.Adam, dict(lr=lr, betas=cfg.betas, weight_decay=wd, **graph)
    else:
        momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
        cls, settings = torch.optim.SGD, dict(lr=lr, momentum=momentum, weight_decay=wd)
    try:
        return cls(params, fused=True, **settings)
    except RuntimeError:  # a device without fused kernels
        return cls(params, **settings)


def class_probabilities(model: nn.Module, x: torch.Tensor, mirror: bool = False) -> torch.Tensor:
    """Softmax over the classes for a batch ``x`` (N×classes, float32), the model as it is (the
    caller sets ``eval()`` and ``no_grad``).

    With ``mirror``: the mean of the softmax for ``x`` and for ``x`` mirrored left-right, both in one
    forward pass. A hand sign means the same from either side, and a net trained on mirrored images
    as often as not answers a little differently for each; their mean reads strangers' hands better
    (README, "Fine-tuning"). In ``eval()`` mode the images of a batch do not affect each other, so
    the doubled batch gives each image the answer it would get alone.
    """
    if not mirror:
        return torch.softmax(model(x).float(), dim=1)
    p = torch.softmax(model(torch.cat([x, x.flip(-1)])).float(), dim=1)  # 2N, classes
    return (p[: len(x)] + p[len(x) :]) / 2


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH,
             mirror: bool = False) -> EvalResult:
    """Loss, accuracy, predictions and probabilities in ``eval()`` mode under ``no_grad``, in batches.

    Batches keep memory flat: the tutorial ran out of GPU memory pushing the whole ResNet test set
    through at once. The results come back to the host in one transfer. The model's previous
    train/eval mode is restored. ``mirror`` averages each image's answer with its mirror image's
    (:func:`class_probabilities`); the loss is then the cross-entropy of the averaged probabilities.
    """
    was_training = model.training
    model.eval()
    try:
        rows = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            if mirror:
                p = class_probabilities(model, xb, mirror=True)
                loss = F.nll_loss(p.clamp_min(torch.finfo(p.dtype).tiny).log(), yb, reduction="none")
            else:
                logits = model(xb).float()
                p, loss = torch.softmax(logits, dim=1), F.cross_entropy(logits, yb, reduction="none")
            rows.append(torch.cat([p, loss[:, None]], dim=1))  # N, classes + 1
        table = torch.cat(rows).cpu()
        p, losses = table[:, :-1], table[:, -1]
        pred = p.argmax(dim=1)
        acc = (pred == y.cpu()).float().mean().item()
        return EvalResult(losses.double().mean().item(), acc, pred, p)
    finally:
        model.train(was_training)


class CpuKernels(TorchFunctionMode):
    """Faster CPU kernels for two layers while active, computing what PyTorch's defaults compute.

    - ``pool``: non-overlapping 2-D max-pools on contiguous tensors computed by oneDNN — the same
      values and gradients as ``F.max_pool2d`` (a test compares them), but ATen's CPU kernel for
      NCHW tensors is much slower than oneDNN's, forward + backward, on LeNet's first activation.
    - ``rgb_conv``: a 2-D convolution of a contiguous (NCHW) 3-channel input computed in
      channels-last, its output handed back in NCHW. oneDNN's NCHW kernels for three input channels
      are several times slower, most of all the weight gradient in bf16; the layers after it (a
      6-channel batch norm, the pool) are faster in NCHW, so only this one layer switches. The
      values agree with the NCHW convolution to rounding (another summation order; tested).

    An execution detail of the CPU engine: the nets themselves call plain ``F.max_pool2d`` /
    ``nn.MaxPool2d`` and ``nn.Conv2d``, so exported and compiled models are plain PyTorch.
    """

    def __init__(self, pool: bool = True, rgb_conv: bool = False) -> None:
        super().__init__()
        self.pool, self.rgb_conv = pool, rgb_conv

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.pool and (func is F.max_pool2d or func is torch.max_pool2d):
            size = _onednn_pool_size(*args, **kwargs)
            if size is not None:
                return torch.mkldnn_max_pool2d(args[0].to_mkldnn(), size, size).to_dense()
        elif self.rgb_conv and func is F.conv2d and _nchw_rgb(args[0]):
            x, weight = (t.contiguous(memory_format=torch.channels_last) for t in args[:2])
            return func(x, weight, *args[2:], **kwargs).contiguous()
        return func(*args, **kwargs)


def _nchw_rgb(x: Any) -> bool:
    return (isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dim() == 4 and x.shape[1] == 3
            and x.is_contiguous())


def _onednn_pool_size(x: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                      ceil_mode: bool = False, return_indices: bool = False) -> list[int] | None:
    """The window of a pool oneDNN computes the same, or None to leave it to PyTorch."""
    k = [kernel_size] * 2 if isinstance(kernel_size, int) else list(kernel_size)
    s = k if stride is None or stride == [] or stride == () else ([stride] * 2 if isinstance(stride, int) else list(stride))
    plain = padding in (0, (0, 0), [0, 0]) and dilation in (1, (1, 1), [1, 1]) and not ceil_mode and not return_indices
    fits = (isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous()
            and x.dtype in (torch.float32, torch.bfloat16))
    return k if plain and fits and s == k else None


@contextlib.contextmanager
def outside_autocast(layers: list[nn.Module]) -> Iterator[None]:
    """Run ``layers`` in fp32 with autocast off while the block lasts (their other calls are untouched).

    Hooks switch autocast off around each layer's forward and back on after it, even if it raises;
    the layer's backward then runs in fp32 too, as autograd follows the forward's dtypes.
    """
    saved: list[bool] = []

    def before(module: nn.Module, args: tuple) -> tuple:
        device_type = next(module.parameters()).device.type
        saved.append(torch.is_autocast_enabled(device_type))
        torch.set_autocast_enabled(device_type, False)
        return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    def after(module: nn.Module, args: tuple, output: Any) -> Any:
        device_type = next(module.parameters()).device.type
        enabled = saved.pop()
        torch.set_autocast_enabled(device_type, enabled)
        if enabled and isinstance(output, torch.Tensor):
            return output.to(torch.get_autocast_dtype(device_type))
        return output

    handles = [h for m in layers for h in (m.register_forward_pre_hook(before),
                                            m.register_forward_hook(after, always_call=True))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32.

    ``auto`` picks bf16 where the hardware computes it natively: a GPU that supports it, or a CPU
    with AVX-512 BF16 / AMX, where it trains faster than fp32 (README, "Performance";
    ``bench/bench_train.py``). Where bf16 would be emulated it is slower than fp32, so ``auto``
    stays in fp32.
    """
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (x86 AVX-512 BF16 or AMX), read from Linux's cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
