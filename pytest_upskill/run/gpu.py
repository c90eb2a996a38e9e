"""GPUs under xdist: one GPU per worker where there are several, a lock where they share one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from filelock import FileLock, Timeout

from ..errors import SampleError
from ..paths import lock_dir

__all__ = [
    "current_device",
    "device_lock",
    "pin_worker_gpu",
    "visible_gpus",
    "worker_gpu",
    "worker_host",
]


def visible_gpus(environ: MutableMapping[str, str]) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (or nvidia-smi counts)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [gpu.strip() for gpu in environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):  # no driver: no GPU
        return []
    return [str(i) for i, _ in enumerate(ln for ln in listing.splitlines() if ln.startswith("GPU"))]


def worker_gpu(worker: int, gpus: list[str]) -> str | None:
    """The I-th xdist worker of a host gets its GPU I mod n; None when there are not several
    to share out."""
    if len(gpus) < 2:
        return None
    return gpus[worker % len(gpus)]


def worker_host(spec: Any) -> str:
    """The machine an xdist worker's gateway spec starts it on: its ssh or socket host (no
    user, no port), or '' for this one."""
    where = str(spec.ssh or spec.socket or getattr(spec, "vagrant_ssh", None) or "")
    host = where.rpartition("@")[2]
    return host.rpartition(":")[0] or host


def pin_worker_gpu(worker: int, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Show CUDA only the GPU of its host's `worker`-th xdist worker. Runs before collection, so
    before anything in the process (a test module's `torch.cuda.is_available()`) initializes
    CUDA."""
    gpu = worker_gpu(worker, visible_gpus(environ))
    if gpu is not None:
        environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def current_device() -> str:
    """The current CUDA device's UUID: the same GPU has the same name in every process."""
    import torch

    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


@contextmanager
def device_lock(device: str, timeout_s: float) -> Iterator[None]:
    """Hold `device` for this process, so tests sharing one GPU (xdist workers, parallel
    sessions) do not run their kernels at the same time and disturb each other's timings."""
    path = lock_dir() / f"gpu-{device}.lock"
    lock = FileLock(str(path), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise SampleError(
            "check", f"waited {timeout_s:g} s for GPU {device}, held by another test"
        ) from None
    try:
        yield
    finally:
        lock.release()
