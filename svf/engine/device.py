"""Device choice at run time: CUDA when present (one GPU per process), else CPU. Never hard-coded."""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch

_LOCKS: list = []  # keep lock files open for the life of the process


def _claim_gpu(count: int) -> int:
    """Index of a GPU no other local `svf` process holds, by an exclusive lock file per visible GPU.

    Snakemake does not assign GPU ids to local jobs; with `resources: gpu=N` up to N jobs run at once and each
    takes the first free slot. Under SLURM (or a single visible GPU) this is always 0.
    """
    lock_dir = Path(os.environ.get("SVF_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "svf-gpu-locks"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count))))
    for index, physical in enumerate(visible.split(",")[:count]):
        handle = open(lock_dir / f"gpu{physical.strip()}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _LOCKS.append(handle)
        return index
    return 0  # more jobs than GPUs: share the first one rather than fail


def select_device(requested: str = "auto") -> torch.device:
    """``auto``: a free CUDA device if any, else CPU; or an explicit torch device string."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
        return device
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        index = _claim_gpu(count) if count > 1 else 0
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads = the rule's threads, so parallel jobs do not oversubscribe the cores."""
    if threads:
        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def configure_determinism(deterministic: bool) -> None:
    """CPU runs are deterministic as they are. On CUDA, cuDNN picks the fastest convolution algorithms
    (``benchmark``), some of which accumulate in a nondeterministic order, so two GPU runs of a cell can differ in
    the last digits; ``deterministic: true`` in the config trades speed for bitwise-repeatable GPU runs."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def setup_process(threads: int | None, device: str = "auto", deterministic: bool = False) -> torch.device:
    """Per-process set-up of every `svf` compute command: threads, device, determinism."""
    set_threads(threads)
    configure_determinism(deterministic)
    return select_device(device)
