"""What one kind of cell costs on a device, measured on synthetic tensors: the timings `svf estimate` projects and
`make gpu-check` reports.

* :func:`time_kind`: a cell's model with random weights (no download; :class:`ModelBuilds`) stepped exactly as
  ``svf train`` steps it: the recipe's precision and memory format, the policy's BatchNorm modes (frozen ones in eval
  mode), loss groups, micro-batches and :func:`svf.engine.loop.fit.train_step`, on random episodes at the recipe's crop
  and batch; then validation batches at ``val_size``, split into the backbone part and the head (what the validation
  cache keeps and what it still runs). Records the peak device memory, the bytes one episode's cached backbone inputs
  take and, on request, the FLOPs of one step (``torch.utils.flop_counter``: forward and backward).
* :func:`time_base_learner`: the same for BAM's stage 1 (a PSPNet on whole images).
* :class:`LoadingCosts`: CPU seconds per image of the loaders' own read + augmentation code on a few synthetic
  images of a given size (one thread, as a DataLoader worker has).
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...backbones.base import STAGES
from ...models import build_base_learner, build_model
from ...pipeline.spec_types import BaseLearnerSpec, CellSpec
from ...policy import Policy, apply_policy, parse_policy, set_bn_mode
from ..loop.batching import Grouping
from ..tasks.feature_cache import backbone_is_frozen, nbytes
from ..loop.fit import train_step
from ..tasks.metrics import FewShotScore
from ..loop.precision import PRECISIONS, Precision
from ..tasks.scoring import score_logits
from ..tasks.base_learner import base_step
from ..tasks.train import cell_step, head_parameters

CHANNELS_LAST_SUFFIX = "-cl"


def precision_label(precision: Precision) -> str:
    """``tf32``, ``bf16-cl`` (channels_last), ...: a precision as one word, as the estimate's columns name it."""
    return precision.name + (CHANNELS_LAST_SUFFIX if precision.channels_last else "")


def parse_precision(label: str) -> Precision:
    name = label.removesuffix(CHANNELS_LAST_SUFFIX)
    if name not in PRECISIONS:
        raise ValueError(f"precision {label!r}: expected one of {PRECISIONS}, optionally with {CHANNELS_LAST_SUFFIX!r}")
    return Precision(name, label.endswith(CHANNELS_LAST_SUFFIX))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn: Callable[[], object]) -> int | None:
    """FLOPs of one call of ``fn`` (forward and backward ops alike) by ``torch.utils.flop_counter``."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover - torch < 2.1
        return None
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _same_state(state: dict, module: nn.Module) -> bool:
    own = module.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], v) for k, v in state.items())


class ModelBuilds:
    """Builds cell models with random weights for timing, as ``build_cell_model`` does (seeded construction, BAM's
    base learner, the policy). The SVD of a backbone stage is computed once per architecture, rank and weights: a
    later kind whose stage holds the same weights gets a copy (a ResNet-50's SVD takes seconds on the CPU, longer
    than timing a kind on a GPU). ``build`` also returns what a job pays to build its model: the measured time of a
    build that computed every SVD itself."""

    def __init__(self):
        self._stages: dict[tuple, tuple[dict, nn.Module]] = {}
        self._build_s: dict[tuple, float] = {}

    def build(self, spec: CellSpec, base_learner: str | None = None) -> tuple[nn.Module, Policy, float]:
        started = time.perf_counter()
        cell = spec.cell
        torch.manual_seed(spec.seed)
        model = build_model(cell.method, **spec.model.kwargs())
        if base_learner is not None:
            model.load_base_learner(base_learner)
        policy = parse_policy(cell.policy)
        arch = (json.dumps(model.backbone_config, sort_keys=True), spec.rank)
        fresh = {}
        if policy.uses_svd and not policy.include:
            for name in STAGES:
                known = self._stages.get((name, *arch))
                if known is not None and _same_state(known[0], getattr(model, name)):
                    setattr(model, name, copy.deepcopy(known[1]))
                else:
                    fresh[name] = {k: v.clone() for k, v in getattr(model, name).state_dict().items()}
        apply_policy(model, policy, rank=spec.rank)
        for name, plain in fresh.items():
            self._stages[(name, *arch)] = (plain, copy.deepcopy(getattr(model, name)))
        seconds = time.perf_counter() - started
        key = (*arch, cell.method, policy.uses_svd)
        if len(fresh) == len(STAGES) or not policy.uses_svd:
            self._build_s.setdefault(key, seconds)
        return model, policy, self._build_s.get(key, seconds)


def _episodes(n: int, shot: int, size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(n, size, size, dtype=torch.long)
    label[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return {"query": torch.randn(n, 3, size, size, generator=g).to(device),
            "supports": torch.randn(n, shot, 3, size, size, generator=g).to(device),
            "support_labels": label[:, None].expand(n, shot, size, size).contiguous().to(device),
            "query_label": label.to(device), "query_label_full": label.to(device),
            "class_id": torch.full((n,), 1, dtype=torch.long).to(device)}


def _timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + repeats):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_kind(spec: CellSpec, device: torch.device, steps: int = 3, warmup: int = 1, val_batches: int = 2,
              base_learner: str | None = None, builds: ModelBuilds | None = None, flops: bool = False,
              precision: Precision | None = None, label_size: int | None = None) -> dict:
    """Seconds per training step and per validation episode (whole, and the head alone; both with the scoring on a
    ``label_size`` original label, default val_size), peak memory, cache bytes per episode, build seconds and
    optionally FLOPs per step, for one cell spec (``precision``: instead of the recipe's)."""
    recipe, shot = spec.recipe, spec.cell.shot
    model, policy, build_s = (builds or ModelBuilds()).build(spec, base_learner)
    precision = precision or Precision.of(recipe)
    model = precision.place(model, device)
    if spec.cell.method == "bam":
        model.share_frozen_backbone()
    grouping = Grouping.of(recipe)
    step, scaler = cell_step(model, grouping), precision.scaler(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params or head_parameters(model), lr=1e-6, momentum=0.9)
    batch = precision.prepare_batch(_episodes(recipe.batch_size, shot, recipe.crop, device))
    _reset_peak(device)
    model.train()
    set_bn_mode(model, policy)  # frozen BatchNorms in eval mode, as training runs them

    def one_step():
        train_step(optimizer, batch, step, grouping.micro, precision, scaler, device)

    step_s = _timed(one_step, device, warmup, steps)
    step_flops = count_flops(one_step) if flops else None
    val_n = spec.evaluation.batch_size
    val = precision.prepare_batch(_episodes(val_n, shot, recipe.val_size, device))
    side = int(label_size or recipe.val_size)
    labels = [torch.zeros(side, side, dtype=torch.long) for _ in range(val_n)]  # original labels stay on the host
    model.eval()
    frozen = backbone_is_frozen(model, policy)
    with torch.no_grad():
        with precision.autocast(device):
            inputs = model.backbone_inputs(val["query"], val["supports"], val["support_labels"])

        def scored(backbone_inputs):
            with precision.autocast(device):
                logits = model.head(backbone_inputs, val["query"].shape[-2:], None)["logits"]
            score_logits(FewShotScore(classes=[1]), logits, labels, val["class_id"], device)

        def whole():
            scored(model.backbone_inputs(val["query"], val["supports"], val["support_labels"]))

        def head():
            scored(inputs)

        val_s = _timed(whole, device, 1, val_batches) / val_n
        head_s = _timed(head, device, 1, val_batches) / val_n if frozen else math.nan
    return {"step_s": step_s, "val_episode_s": val_s, "cached_val_episode_s": head_s,
            "cache_bytes_per_episode": nbytes(inputs) / val_n if frozen else math.nan,
            "peak_gb": _peak_gb(device), "micro_batch": grouping.micro, "precision": precision_label(precision),
            "build_s": build_s, "step_flops": float(step_flops) if step_flops is not None else math.nan}


def time_base_learner(spec: BaseLearnerSpec, device: torch.device, steps: int = 3, warmup: int = 1,
                      val_batches: int = 2, flops: bool = False, precision: Precision | None = None) -> dict:
    """BAM's stage 1 (``base_learner_spec``): seconds per training step and per validation image, peak memory."""
    recipe = spec.recipe
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    model = build_base_learner(**spec.model.kwargs())
    build_s = time.perf_counter() - started
    precision = precision or Precision.of(recipe)
    model = precision.place(model, device)
    grouping = Grouping.of(recipe)
    crop, n = recipe.crop, recipe.batch_size
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(n, crop, crop, dtype=torch.long)
    label[:, crop // 4: 3 * crop // 4, crop // 4: 3 * crop // 4] = 1
    batch = precision.prepare_batch({"image": torch.randn(n, 3, crop, crop, generator=g).to(device),
                                     "label": label.to(device)})
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    scaler = precision.scaler(device)

    step = base_step(model, grouping)

    def one_step():
        train_step(optimizer, batch, step, grouping.micro, precision, scaler, device)

    _reset_peak(device)
    model.train()
    step_s = _timed(one_step, device, warmup, steps)
    step_flops = count_flops(one_step) if flops else None
    size, val_n = recipe.val_size, 8
    images = precision.prepare_batch({"image": torch.randn(val_n, 3, size, size, generator=g).to(device)})["image"]
    model.eval()
    with torch.no_grad():
        def validate():
            with precision.autocast(device):
                model(images)
        val_s = _timed(validate, device, 1, val_batches) / val_n
    return {"step_s": step_s, "val_episode_s": val_s, "cached_val_episode_s": math.nan,
            "cache_bytes_per_episode": math.nan, "peak_gb": _peak_gb(device), "micro_batch": grouping.micro,
            "precision": precision_label(precision), "build_s": build_s,
            "step_flops": float(step_flops) if step_flops is not None else math.nan}


class LoadingCosts:
    """CPU seconds per image of the loaders' read + augmentation (``read_pair`` then ``train_transform`` or
    ``eval_transform``), measured once per (image size, transform) on a few synthetic JPEG + PNG pairs written to
    a scratch directory, with one thread (what a DataLoader worker has). An episode reads 1 + K images."""

    def __init__(self, scratch: str | Path | None = None, images: int = 6, repeats: int = 2):
        self._tmp = None if scratch is not None else tempfile.TemporaryDirectory(prefix="svf-loading-")
        self.scratch = Path(scratch if scratch is not None else self._tmp.name)
        self.images, self.repeats = int(images), int(repeats)
        self._sources: dict[tuple, object] = {}
        self._costs: dict[tuple, float] = {}

    def _source(self, image_hw: tuple[int, int]):
        if image_hw not in self._sources:
            from ...data.datasets import open_dataset
            from ...data.loader_bench import write_bench_dataset

            root = self.scratch / f"images_{image_hw[0]}x{image_hw[1]}"
            write_bench_dataset(root, None, n_train=self.images, n_val=0, size_hw=image_hw)
            self._sources[image_hw] = open_dataset(root)
        return self._sources[image_hw]

    def _measure(self, key: tuple, image_hw: tuple[int, int], transform: Callable) -> float:
        if key not in self._costs:
            from ...data.images import read_pair

            source = self._source(image_hw)
            ids = source.ids("train")
            saved = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                rng = np.random.default_rng(0)
                for image_id in ids:  # warm-up: file cache, lazy imports
                    transform(*read_pair(source, image_id), rng)
                started = time.process_time()
                for _ in range(self.repeats):
                    for image_id in ids:
                        transform(*read_pair(source, image_id), rng)
                self._costs[key] = (time.process_time() - started) / (self.repeats * len(ids))
            finally:
                torch.set_num_threads(saved)
        return self._costs[key]

    def train_image_s(self, image_hw: tuple[int, int], aug) -> float:
        from ...data.transforms import train_transform
        from ...labels import IGNORE_LABEL

        def transform(image, label, rng):
            present = label[(label > 0) & (label < IGNORE_LABEL)]
            train_transform(image, label, rng, aug, protect=int(present[0]) if present.size else None)
        key = ("train", tuple(image_hw), tuple(aug.crop), tuple(aug.scale), tuple(aug.rotate))
        return self._measure(key, tuple(image_hw), transform)

    def val_image_s(self, image_hw: tuple[int, int], size: int) -> float:
        from ...data.transforms import eval_transform

        return self._measure(("val", tuple(image_hw), int(size)), tuple(image_hw),
                             lambda image, label, rng: eval_transform(image, label, int(size)))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


__all__ = ["LoadingCosts", "ModelBuilds", "count_flops", "parse_precision", "precision_label", "sync",
           "time_base_learner", "time_kind"]
