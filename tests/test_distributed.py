"""More than one process: DDP over gloo on the CPU, two processes, as ``torchrun`` runs them.

The core tests start two processes with ``torch.multiprocessing`` and a file rendezvous, each
running a :class:`Trainer` with its ``Dist``; the command-line tests run ``torchrun`` itself.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from core.checkpoint import CheckpointError, load_checkpoint
from core.trainer import TrainConfig, Trainer
from tests.conftest import make_tiny_dataset
from tests.test_trainer import LENET_SPEC, MLP_SPEC, cfg

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
WORLD = 2


# --- two processes in this test, through the core ----------------------------------------------------


def _run_cases(rank: int, init: str, out: str, cases: list[str]) -> None:
    """One process: join the group, then run each case, writing what it saw to ``out/<case>-<rank>.pt``."""
    import torch.distributed as tdist

    from core.distributed import Dist, finish

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=WORLD)
    dist = Dist(rank, rank, WORLD)
    try:
        for case in cases:
            result: dict = {}
            try:
                trainer = _case_trainer(case, dist)
                for _ in trainer.run():
                    if case == "raise" and rank == 1 and trainer.step == 2:
                        raise ValueError("injected failure")
                    if case == "nan" and trainer.step == 4:
                        with torch.no_grad():
                            trainer.model.head.weight.fill_(math.nan)
                result = {"state": trainer.model.state_dict(), "history": trainer.history.to_dict()}
            except Exception as e:  # the case's outcome, for the test to judge
                result = {"error": f"{type(e).__name__}: {e}"}
            torch.save(result, Path(out) / f"{case}-{rank}.pt")
            if "error" in result and case == "raise":
                return  # this process is gone; the other must notice
    finally:
        finish()


def _case_trainer(case: str, dist) -> Trainer:
    data = make_tiny_dataset()
    if case == "same_weights":  # batch norm, augmentation and dropout: each process draws its own
        return Trainer(LENET_SPEC.replace(dropout=0.2), data, cfg(batch_size=8, epochs=2, augment=True), dist=dist)
    if case == "global_batch":  # 48 images, 10 per process: global batches of 20, 20 and 8
        return Trainer(MLP_SPEC, data, _global_batch_config(10), dist=dist)
    return Trainer(MLP_SPEC, data, cfg(batch_size=8, epochs=2), dist=dist)  # raise, nan


def _global_batch_config(batch: int) -> TrainConfig:
    return cfg(batch_size=batch, epochs=3, optimizer="momentum", lr=0.05, schedule="onecycle", precision="fp32")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Runs every core case once in two processes (starting them is the slow part); returns a reader."""
    out = tmp_path_factory.mktemp("ddp")
    cases = ["same_weights", "global_batch", "nan", "raise"]
    ctx = mp.start_processes(_run_cases, args=(str(out / "init"), str(out), cases), nprocs=WORLD,
                             start_method="spawn", join=False)
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):
        assert time.monotonic() < deadline, "the two processes did not finish: a failure left one waiting"
    return lambda case, rank: torch.load(out / f"{case}-{rank}.pt", weights_only=True)


def test_both_processes_hold_the_same_weights_after_training(two_processes):
    a, b = two_processes("same_weights", 0), two_processes("same_weights", 1)
    assert "error" not in a and "error" not in b, (a.get("error"), b.get("error"))
    for key in a["state"]:
        assert torch.equal(a["state"][key], b["state"][key]), key
    # The figures are the sums over both, not each one's share (the clocks are each its own).
    assert a["history"]["step_losses"] == b["history"]["step_losses"]
    untimed = [[{k: v for k, v in e.items() if k not in ("seconds", "images_per_second")} for e in h["history"]["epochs"]]
               for h in (a, b)]
    assert untimed[0] == untimed[1] and len(untimed[0]) == 2


def test_two_processes_follow_one_process_with_the_global_batch(two_processes):
    """Batch norm off: 2 processes × 10 images per step train as 1 process × 20, to float rounding."""
    ddp = two_processes("global_batch", 0)
    assert "error" not in ddp, ddp.get("error")
    alone = Trainer(MLP_SPEC, make_tiny_dataset(), _global_batch_config(20))
    for _ in alone.run():
        pass
    np.testing.assert_allclose(ddp["history"]["step_losses"], alone.history.step_losses, rtol=1e-5)
    assert len(ddp["history"]["step_losses"]) == 9  # 3 global batches (20, 20, 8) per epoch
    for key, value in alone.model.state_dict().items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(ddp["history"]["epochs"], alone.history.epochs):
        assert mine["train_acc"] == theirs.train_acc and mine["test_acc"] == theirs.test_acc  # all images counted
        assert mine["test_loss"] == pytest.approx(theirs.test_loss, rel=1e-5)


def test_a_nan_loss_stops_every_process_at_the_same_step(two_processes):
    errors = [two_processes("nan", r).get("error", "") for r in range(WORLD)]
    assert all(e.startswith("TrainingDiverged") and "step 5 " in e for e in errors), errors


def test_a_process_that_raises_ends_the_run_on_the_other_with_a_message(two_processes):
    assert two_processes("raise", 1)["error"] == "ValueError: injected failure"
    other = two_processes("raise", 0)["error"]
    assert other.startswith("DistributedError: another process of this run stopped"), other


# --- torchrun and the command line --------------------------------------------------------------------


def _torchrun(args: list[str], tmp_path: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TORCHLAB_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    return subprocess.Popen([*TORCHRUN, "-m", "core.train", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _ours(stderr: str) -> list[str]:
    """core.train's own lines (torchrun's launcher adds its log lines and a failure report)."""
    return [line for line in stderr.splitlines() if not line.startswith(("W1", "I1", "E1", " ", "[", "*"))]


def test_torchrun_trains_on_two_processes_and_process_0_alone_writes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = _torchrun(["--dataset", "synthetic", "--model", "lenet", "--epochs", "1", "--batch-size", "32",
                     "--out", str(out / "ddp.pt")], tmp_path)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    lines = _ours(stderr)
    assert sum(line.startswith("epoch   1/1") for line in lines) == 1, lines  # process 0 alone prints
    assert any("2 processes (torchrun), 32 images each per step: global batch 64" in line for line in lines), lines
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1
    result = results[0]
    assert result["world_size"] == 2 and result["global_batch"] == 64 and result["images_per_second"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["ddp.pt"]  # one file, no temp files

    ckpt = load_checkpoint(out / "ddp.pt")  # unwrapped: loads like any checkpoint
    assert not any(k.startswith("module.") for k in ckpt.model.state_dict())
    assert ckpt.metrics["world_size"] == 2
    photo = tmp_path / "sign.png"
    from PIL import Image

    from core.data import load_dataset

    Image.fromarray(load_dataset("synthetic").x_test[0]).save(photo)
    predicted = subprocess.run([sys.executable, "-m", "core.predict", "--checkpoint", str(out / "ddp.pt"), str(photo)],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    assert str(photo) in predicted.stdout or "sign.png" in predicted.stdout
    with pytest.raises(CheckpointError, match="2 processes"):  # its random streams were spread over two
        Trainer.resume(ckpt, load_dataset("synthetic"))


def _worker_pid(torchrun_pid: int, local_rank: int) -> int | None:
    for child in Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(child)
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker through Linux's /proc")
def test_a_killed_process_ends_the_run_with_a_message_and_no_checkpoint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = _torchrun(["--dataset", "synthetic", "--model", "lenet", "--epochs", "200", "--out", str(out / "x.pt")],
                    tmp_path)
    lines = []
    for line in run.stderr:  # wait until training is under way
        lines.append(line)
        if line.startswith("epoch   1/"):
            break
    else:
        pytest.fail("".join(lines)[-3000:])
    pid = _worker_pid(run.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, rest = run.communicate(timeout=120)
    stderr = "".join(lines) + rest
    assert run.returncode != 0
    ours = _ours(stderr)
    assert any(line.startswith("error (process 0 of 2): ") and "nothing was saved" in line for line in ours), ours
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("flags", "message"), [
    (["--lr", "-1"], "learning rate must be in"),
    (["--resume", "whatever.pt"], "--resume continues a one-process run"),
])
def test_a_bad_flag_fails_on_every_process_before_training(tmp_path, flags, message):
    run = _torchrun(["--dataset", "synthetic", "--model", "lenet", *flags], tmp_path)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode != 0
    errors = [line for line in _ours(stderr) if line.startswith("error")]
    assert len(errors) == 2 and all(message in e for e in errors), errors
    assert not any(line.startswith("epoch") for line in _ours(stderr))
    assert not (tmp_path / "ckpt").exists()
