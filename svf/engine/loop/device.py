"""Device choice at run time: CUDA when present (one GPU per process), else CPU. Never hard-coded."""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from ...errors import DeviceError

_LOCKS: list = []  # keep lock files open for the life of the process


GPU_WAIT_ENV = "SVF_GPU_WAIT_S"  # how long a job waits for a free GPU before failing (default 24 h)


def _try_claim(lock_dir: Path, visible: list[str]) -> int | None:
    for index, physical in enumerate(visible):
        handle = open(lock_dir / f"gpu{physical.strip()}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _LOCKS.append(handle)
        return index
    return None


def _claim_gpu(count: int, wait_s: float | None = None, poll_s: float = 5.0) -> int:
    """Index of a GPU no other local `svf` process holds, by an exclusive lock file per visible GPU.

    Snakemake does not assign GPU ids to local jobs; with `resources: gpu=N` up to N jobs run at once and each
    takes the first free slot. Under SLURM (or a single visible GPU) this is always 0. When every GPU is held (more
    GPU jobs than GPUs, e.g. `--resources gpu` above the GPU count) the job waits for one to free up, saying so,
    and fails after ``wait_s`` seconds (``$SVF_GPU_WAIT_S``, default 24 h): two jobs never share a GPU silently.
    """
    lock_dir = Path(os.environ.get("SVF_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "svf-gpu-locks"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count)))).split(",")[:count]
    wait_s = float(os.environ.get(GPU_WAIT_ENV, 24 * 3600)) if wait_s is None else float(wait_s)
    deadline = time.monotonic() + wait_s
    index = _try_claim(lock_dir, visible)
    if index is None:
        print(f"svf: all {len(visible)} GPUs ({', '.join(visible)}) are held by other svf jobs (locks in "
              f"{lock_dir}); waiting up to {wait_s:.0f} s for one to free up", file=sys.stderr, flush=True)
    while index is None:
        if time.monotonic() >= deadline:
            raise DeviceError(
                f"no free GPU after {wait_s:.0f} s: all {len(visible)} visible GPUs ({', '.join(visible)}) are "
                f"held by other svf jobs (locks in {lock_dir}). Run at most one GPU job per GPU (Snakemake: "
                f"--resources gpu={len(visible)}) or raise ${GPU_WAIT_ENV}")
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        index = _try_claim(lock_dir, visible)
    return index


def select_device(requested: str = "auto") -> torch.device:
    """``auto``: a free CUDA device if any, else CPU; or an explicit torch device string."""
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise DeviceError(f"{requested!r} is not a device; use auto (a free CUDA GPU, else the CPU), cpu, cuda "
                              f"or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r} requested but CUDA is not available on this machine "
                              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})",
                              advice="Use --device auto or cpu, or run on a machine with a CUDA GPU.")
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


def library_versions(device: torch.device | None = None) -> dict:
    """The versions a result depends on, recorded in metrics.json and train_summary.json: Python, torch,
    torchvision (None where it is not installed: nothing here computes with it), numpy, and on CUDA the CUDA
    runtime, cuDNN and the GPU's name (None on the CPU)."""
    import platform

    import numpy

    try:
        import torchvision
    except ImportError:
        torchvision = None
    on_cuda = device is not None and device.type == "cuda"
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": getattr(torchvision, "__version__", None),
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda if on_cuda else None,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "gpu": torch.cuda.get_device_name(device) if on_cuda else None,
    }


def setup_process(threads: int | None, device: str = "auto", deterministic: bool = False) -> torch.device:
    """Per-process set-up of every `svf` compute command: threads, device, determinism."""
    set_threads(threads)
    configure_determinism(deterministic)
    return select_device(device)


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on ``device`` (asynchronous copies; other values as they are)."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
