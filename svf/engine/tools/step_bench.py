"""Benchmark of one SVF training step against a frozen and a fully fine-tuned backbone (``svf bench svf-step``).

All variants are built from the same randomly initialised ResNet-50 and timed in one process, round-robin (the
order rotates every repeat), so that load from other jobs on a shared machine hits them alike. Ratios use wall-clock
medians; the process CPU time (``median_cpu_s``, ``cpu_ratios``) is recorded too because, with ``threads=1``, it is
barely affected by other jobs taking the cores. FLOPs per variant come from ``torch.utils.flop_counter``.
A training step is forward + backward + SGD step of a 1x1 conv head on the layer4 output with a squared loss; the
backbone runs in train mode with BatchNorm frozen (eval), as in the authors' code.

Variants: ``frozen_train`` (policy frozen, only the head trains), ``full_train`` (policy full: every conv weight of
layer1-4), ``svf_train`` (policy svf, rank full; frozen SVD layers run merged, see ``SVDConv2d.merge_frozen``),
``svf_train_three_step`` (the same with every SVD layer in the three-step form, as in the authors' code),
``plain_eval`` and ``merged_eval`` (forward under ``inference_mode`` of the plain model and of the SVF model after
:func:`svf.decompose.merge`), ``svf_eval`` (the SVF model without merge, under ``inference_mode``).
"""
from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...backbones import build_backbone
from ...decompose import SVD_TYPES, SVDConv2d, SVDLinear, decompose, merge
from ..loop.device import select_device
from .timing import count_flops as flops_of, sync
from ...policy import apply_policy, param_groups, set_bn_mode

TARGETS = {"svf_over_full": 0.85, "svf_over_frozen": 1.10, "merged_over_plain": 1.05}
RATIOS = {"svf_over_full": ("svf_train", "full_train"), "svf_over_frozen": ("svf_train", "frozen_train"),
          "merged_over_plain": ("merged_eval", "plain_eval"),
          "three_step_over_full": ("svf_train_three_step", "full_train"),
          "three_step_over_frozen": ("svf_train_three_step", "frozen_train"),
          "svf_eval_over_plain": ("svf_eval", "plain_eval")}


@contextmanager
def _merge_frozen(enabled: bool):
    saved = SVDConv2d.merge_frozen, SVDLinear.merge_frozen
    SVDConv2d.merge_frozen = SVDLinear.merge_frozen = enabled
    try:
        yield
    finally:
        SVDConv2d.merge_frozen, SVDLinear.merge_frozen = saved


class _Trainer:
    """One backbone + head + SGD for a policy; ``step()`` runs one training step."""

    def __init__(self, backbone: nn.Module, policy: str, x: torch.Tensor, fmt: torch.memory_format,
                 merge_frozen: bool = True):
        self.backbone, self.policy, self.x, self.merge_frozen = backbone, policy, x, merge_frozen
        apply_policy(backbone, policy)
        torch.manual_seed(1)  # same head in every variant
        self.head = nn.Conv2d(backbone.channels["layer4"], 2, 1).to(x.device, memory_format=fmt)
        groups = param_groups(backbone, policy, lr=1e-3, head_params=self.head.parameters())
        self.optimizer = torch.optim.SGD(groups, lr=1e-3, momentum=0.9)
        backbone.train()
        set_bn_mode(backbone, policy)

    def step(self) -> float:
        with _merge_frozen(self.merge_frozen):
            self.optimizer.zero_grad(set_to_none=True)
            feat = self.backbone(self.x)[-1]
            loss = self.head(feat).float().pow(2).mean()
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def trainable(self) -> int:
        return sum(p.numel() for g in self.optimizer.param_groups for p in g["params"])


def _evaluator(model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    model.eval()

    def run() -> float:
        with torch.inference_mode():
            return float(model(x)[-1].float().mean())
    return run


def run_svf_step(size: int = 224, batch: int = 1, repeats: int = 5, warmup: int = 1, threads: int | None = None,
                 backbone: str = "resnet50", width: float = 1.0, depths=None, channels_last: bool = False,
                 count_flops: bool = True, device: str | None = None, seed: int = 0,
                 log: Callable[[str], None] | None = print) -> dict:
    """Time the variants (see the module docstring); return a JSON-ready dict with medians and ratios."""
    if repeats < 1 or warmup < 0 or size < 8 or batch < 1:
        raise ValueError(f"bench: need repeats >= 1, warmup >= 0, size >= 8, batch >= 1 "
                         f"(got {repeats}, {warmup}, {size}, {batch})")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(size, batch, repeats, warmup, backbone, width, depths, channels_last, count_flops,
                    select_device(device or "auto"), seed, log)
    finally:
        torch.set_num_threads(saved_threads)


def _run(size, batch, repeats, warmup, backbone, width, depths, channels_last, count_flops, dev, seed, log) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(seed)
    plain = build_backbone(backbone, width=width, depths=depths).to(dev, memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    svf_model = decompose(copy.deepcopy(plain))  # all of layer0..4, rank full
    runs, trainable = _variants(plain, svf_model, x, fmt)
    flops = {name: flops_of(fn) for name, fn in runs.items()} if count_flops else {}
    for name, fn in runs.items():
        for _ in range(warmup):
            fn()
    times, cpu = _round_robin(runs, repeats, dev, log)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    median_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    ratios = {key: median[a] / median[b] for key, (a, b) in RATIOS.items()}
    result = {
        "benchmark": "svf_step",
        "config": {"backbone": backbone, "width": width, "depths": list(depths) if depths else None, "size": size,
                   "batch": batch, "repeats": repeats, "warmup": warmup, "threads": torch.get_num_threads(),
                   "channels_last": channels_last, "device": str(dev), "torch": torch.__version__,
                   "machine": platform.machine(), "seed": seed,
                   "svd_layers": sum(isinstance(m, SVD_TYPES) for m in svf_model.modules())},
        "median_s": median,
        "times_s": times,
        "ratios": ratios,
        # process CPU time: robust to other jobs taking the cores (best read with threads=1 on a shared machine)
        "median_cpu_s": median_cpu,
        "cpu_ratios": {key: median_cpu[a] / median_cpu[b] for key, (a, b) in RATIOS.items()},
        # median over repeats of the ratio within a repeat: the two steps ran seconds apart, under similar load
        "paired_ratios": {key: statistics.median(x / y for x, y in zip(times[a], times[b]))
                          for key, (a, b) in RATIOS.items()},
        "targets": TARGETS,
        "meets_target": {key: ratios[key] <= limit for key, limit in TARGETS.items()},
        "trainable_params": trainable,
    }
    if flops:
        result["gflops"] = {name: f / 1e9 for name, f in flops.items() if f is not None}
        fr = result["gflops"]
        if fr.get("full_train") and fr.get("frozen_train"):
            result["flop_ratios"] = {key: fr[a] / fr[b] for key, (a, b) in RATIOS.items() if fr.get(a) and fr.get(b)}
    return result


def _variants(plain: nn.Module, svf_model: nn.Module, x: torch.Tensor, fmt: torch.memory_format
              ) -> tuple[dict[str, Callable[[], float]], dict[str, int]]:
    """The timed variants (name -> one call) and the trainable parameters of the training ones."""
    trainers = {
        "frozen_train": _Trainer(copy.deepcopy(plain), "frozen", x, fmt),
        "full_train": _Trainer(copy.deepcopy(plain), "full", x, fmt),
        "svf_train": _Trainer(copy.deepcopy(svf_model), "svf", x, fmt),
        "svf_train_three_step": _Trainer(copy.deepcopy(svf_model), "svf", x, fmt, merge_frozen=False),
    }
    runs: dict[str, Callable[[], float]] = {name: t.step for name, t in trainers.items()}
    merged = merge(copy.deepcopy(svf_model))
    runs.update(plain_eval=_evaluator(plain, x), merged_eval=_evaluator(merged, x), svf_eval=_evaluator(svf_model, x))
    return runs, {name: t.trainable() for name, t in trainers.items()}


def _round_robin(runs: dict[str, Callable[[], float]], repeats: int, dev: torch.device, log
                 ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process CPU seconds of every variant per repeat, the order rotating every repeat."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            sync(dev)
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            sync(dev)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
        if log:
            log(f"repeat {rep + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in names))
    return times, cpu


def write_json(result: dict, path: str | Path) -> Path:
    from ...files import write_text

    return write_text(path, json.dumps(result, indent=2, sort_keys=False) + "\n")


__all__ = ["TARGETS", "RATIOS", "run_svf_step", "write_json"]
