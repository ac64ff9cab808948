"""More than one process: what ``torchrun`` tells each process, and the few collectives the loop needs.

``torchrun --nproc-per-node N -m core.train …`` starts N copies of the command line, each with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment. :func:`from_env` reads them,
:func:`start` joins the process group (gloo on the CPU, NCCL on CUDA, one GPU per process), and
:class:`~core.trainer.Trainer` does the rest: each process trains its share of every global batch
of one seeded order, ``DistributedDataParallel`` averages the gradients, and the loop sums its
figures over the processes when it reads them.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist

# A process blocked on a collective whose peer hangs (not crashes: torchrun stops the others then)
# gives up after this long, with a message, instead of gloo's default 30 minutes.
TIMEOUT_SECONDS = 300


class DistributedError(RuntimeError):
    """This process cannot go on because the run's process group failed; the message says why."""


@dataclass(frozen=True)
class Dist:
    """One process of a distributed run."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and saves."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device of the kind asked for: its own GPU (``cuda:LOCAL_RANK``), or the CPU."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def describe(self) -> str:
        return f"process {self.rank} of {self.world_size}"


def from_env(environ: dict[str, str] | None = None) -> Dist | None:
    """The process's place in a ``torchrun`` launch, or None when it runs alone (no ``WORLD_SIZE``
    or a world of one). Raises :class:`DistributedError` if the variables are malformed."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise DistributedError(f"torchrun's environment is malformed ({e}): start the run with torchrun") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"torchrun's environment is inconsistent: RANK {rank}, WORLD_SIZE {world}")
    return Dist(rank, local, world) if world > 1 else None


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(dist: Dist, device: torch.device) -> None:
    """Join the run's process group (torchrun's rendezvous: ``MASTER_ADDR``/``MASTER_PORT`` are set)."""
    if device.type == "cuda":
        if dist.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"{dist.describe()} needs GPU {dist.local_rank}, but this machine has {torch.cuda.device_count()}: "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(dist.local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group(backend_for(device), timeout=timedelta(seconds=TIMEOUT_SECONDS))


def finish() -> None:
    """Leave the process group (a no-op when there is none)."""
    if tdist.is_initialized():
        tdist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all processes, in place."""
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


@torch.no_grad()
def average_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over all processes, in one collective."""
    if tensors:
        flat = torch.cat([t.flatten().float() for t in tensors])
        all_reduce_sum(flat).div_(tdist.get_world_size())
        for t, mean in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(mean.view_as(t))


@contextlib.contextmanager
def peer_failures() -> Iterator[None]:
    """Turn a collective that failed because a peer went away (gloo: "Connection closed by peer";
    NCCL and timeouts: ``DistBackendError``) into a :class:`DistributedError` that says so.
    Other errors pass through as they are."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        if isinstance(e, tdist.DistBackendError) or any(k in text for k in ("gloo", "Gloo", "NCCL", "closed by peer")):
            raise DistributedError(f"another process of this run stopped ({_first_line(e)})") from None
        raise


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    if line.startswith("[") and "] " in line:  # gloo's source location
        line = line.split("] ", 1)[1]
    return line[:160]
