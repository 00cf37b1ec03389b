"""torch.distributed set-up from torchrun's environment or SLURM's (one node or many), the device,
and small collectives."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from .errors import ConfigError

DEVICE_HELP = "auto (the GPU when CUDA works, else the CPU), cuda, cuda:N or cpu"


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """The device ``requested`` names (see DEVICE_HELP); under torchrun 'cuda' means this process's
    GPU. Asking for CUDA where there is none is an error, never a silent fall-back to the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available here (torch {torch.__version__}, "
                              f"{'no GPU found' if torch.version.cuda else 'a CPU-only build'}); use --device cpu "
                              f"or --device auto")
        index_text = requested.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ConfigError(f"--device {requested!r}: expected {DEVICE_HELP}")
        if index_text and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"--device {requested}: under torchrun each process takes the GPU of its local rank; "
                              f"pass --device cuda (or auto)")
        index = int(index_text) if index_text else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    raise ConfigError(f"--device {requested!r}: expected {DEVICE_HELP}")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ('gpu[03-05,09],cpu1' -> 'gpu03'); written here because
    scontrol, which expands lists, is often missing inside the containers jobs run in."""
    head = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if head is None:
        raise ConfigError(f"cannot read the SLURM node list {nodelist!r}: set MASTER_ADDR to the first node's address")
    prefix, ranges = head.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def launch_environment() -> None:
    """Make torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) describe this
    process: torchrun's own, else SLURM's when srun started the processes without torchrun. A process
    that is one of several but finds neither refuses to start: alone, each would write its own copy
    of the run into one folder."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        if "MASTER_ADDR" not in env:
            env["MASTER_ADDR"] = first_host(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", ""))
        # every task of the job computes the same port, away from torchrun's default
        env.setdefault("MASTER_PORT", str(29600 + int(env.get("SLURM_JOB_ID", "0")) % 10000))
        return
    for variable in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "LOCAL_WORLD_SIZE"):
        if int(env.get(variable, "1")) > 1:
            raise ConfigError(f"this process is one of {env[variable]} ({variable}) but has no torchrun or SLURM "
                              f"rank (RANK / SLURM_PROCID): start the processes with torchrun "
                              f"(tools/dist_train.sh) or srun (tools/slurm_train.sh)")


def init_distributed(requested_device: str) -> DistInfo:
    """Join the process group that torchrun, or srun without torchrun, describes (see
    :func:`launch_environment`); NCCL on GPUs, gloo on CPU. Without either this is a single process."""
    launch_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(parameters: List[torch.Tensor]) -> None:
    """Average the gradients of parameters DDP does not manage over the processes (no host sync). A
    parameter an update did not use gets a zero gradient, in one process as in many (as DDP treats unused
    parameters), so that every process joins every call and one process trains as N do."""
    distributed = dist.is_available() and dist.is_initialized()
    for parameter in parameters:
        gradient = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        if distributed:
            dist.all_reduce(gradient)
            gradient = gradient / dist.get_world_size()
        parameter.grad = gradient


def all_gather_objects(obj: Any) -> List[Any]:
    if dist.is_available() and dist.is_initialized():
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
