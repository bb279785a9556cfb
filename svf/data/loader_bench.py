"""``svf bench loader``: episodes per second of the training episode loader, in one process.

Without ``--root`` the benchmark writes its own dataset of realistic size (PASCAL layout, 500 x 375 JPEGs, grey
PNG masks with 1-3 objects of random classes and a 255 ring around each) and its fold-0 splits with
``svf.data.splits``, so it measures decoding and augmentation at paper scale without the real data.
Episodes are read straight from the dataset (no DataLoader), with ``torch.set_num_threads(threads)``: one thread
is what each DataLoader worker gets (OpenCV, which decodes and resamples, always runs on one thread: see
``svf.data.transforms.cv2_module``). Both wall-clock and process-CPU rates are reported.
"""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..labels import IGNORE_LABEL


def _draw_scene(rng: np.random.Generator, h: int, w: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with 1-3 filled ellipses; returns (uint8 H x W x 3 image, uint8 H x W mask)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    grad = rng.uniform(-0.2, 0.2, size=(2, 3)).astype(np.float32)
    img = base + yy[..., None] * grad[0] + xx[..., None] * grad[1]
    img += rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, num_classes + 1))
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.08, 0.35) * h, rng.uniform(0.08, 0.35) * w
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask[(d >= 1.0) & (d < 1.15)] = IGNORE_LABEL  # void ring, like VOC object boundaries
        inside = d < 1.0
        mask[inside] = cls
        img[inside] = img[inside] * 0.3 + rng.uniform(0, 255, size=3).astype(np.float32) * 0.7
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_bench_dataset(root, splits, n_train: int = 120, n_val: int = 40, size_hw=(375, 500), seed: int = 0) -> None:
    """A PASCAL-layout dataset at ``root`` (ids ``tr00000``..., ``va00000``...) and its fold-0 splits (none when
    ``splits`` is None)."""
    from PIL import Image

    from .datasets import open_dataset, write_dataset_json, write_id_list, write_mask
    from .splits import make_splits

    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for split, prefix, n in (("train", "tr", n_train), ("val", "va", n_val)):
        ids = [f"{prefix}{i:05d}" for i in range(n)]
        for name in ids:
            img, mask = _draw_scene(rng, size_hw[0], size_hw[1], 20)
            Image.fromarray(img).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
            write_mask(root / "SegmentationClassAug" / f"{name}.png", mask)
        write_id_list(root / "lists" / f"{split}.txt", ids)
    write_dataset_json(root, "pascal", source="bench-loader")
    if splits is not None:
        make_splits(open_dataset(root), splits, folds=[0], progress=False)


def bench_loader(root=None, splits=None, setting: str = "original", fold: int = 0, shot: int = 1,
                 episodes: int = 100, repeats: int = 3, threads: int = 1, crop: int = 473, seed: int = 0) -> dict:
    """Time ``episodes`` training episodes ``repeats`` times (first pass = warm-up of the file cache, not timed)."""
    import torch

    from .episodes import train_episodes
    from .transforms import TrainAug, cv2_module

    tmp = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="svf-bench-loader-")
        root, splits = Path(tmp.name) / "data", Path(tmp.name) / "splits"
        write_bench_dataset(root, splits)
    elif splits is None:
        raise ValueError("--splits is required with --root")
    saved_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        # Every pass reads and decodes its images, as PFENet's loader does (the cache would time memory reads).
        ds = train_episodes(root, splits, setting, fold, shot, TrainAug(crop=(crop, crop)), seed=seed, cache_bytes=0)
        n = len(ds)
        for i in range(min(n, episodes)):  # warm-up: file cache, lazy imports
            ds[i]
        rates, cpu_rates = [], []
        for r in range(repeats):
            ds.set_epoch(r + 1)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(episodes):
                if i % n == 0 and i:
                    ds.set_epoch(ds.epoch + 100)
                ds[i % n]
            rates.append(episodes / (time.perf_counter() - t0))
            cpu_rates.append(episodes / (time.process_time() - c0))
        return {
            "loader": "svf.data.episodes.TrainEpisodes", "setting": setting, "fold": fold, "shot": shot,
            "crop": crop, "scale": list(ds.aug.scale), "episodes_per_repeat": episodes, "repeats": repeats,
            "threads": threads, "list_images": n, "dataset": "synthetic 500x375" if tmp else str(root),
            "episodes_per_s": {"median": statistics.median(rates), "max": max(rates), "all": rates},
            # CPU time of this process: less sensitive than wall time to other jobs on a shared machine.
            "cpu_episodes_per_s": {"median": statistics.median(cpu_rates), "all": cpu_rates},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "opencv": cv2_module().__version__},
        }
    finally:
        torch.set_num_threads(saved_threads)
        if tmp is not None:
            tmp.cleanup()
