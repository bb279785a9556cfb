"""``svf bench val-cache``: a frozen cell's validation pass with and without the feature cache, in one run.

A demo-scale frozen baseline cell (or any method) on a synthetic PASCAL written to a temporary directory; the
uncached pass (the model's full forward on freshly loaded episodes, as every epoch did before) and the cached pass
(the head on the kept backbone inputs) alternate, and the ratio of their medians is reported with the scores, which
must be equal.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from ...pipeline.cells import Cell
from ...pipeline.specs import build_cell_spec, merge_configs
from ..tasks.build import build_cell_model
from ..loop.device import setup_process
from ..tasks.feature_cache import ValidationCache, backbone_is_frozen
from ..tasks.loaders import eval_loader, fold_novel_classes
from ..tasks.scoring import score_episodes
from ..tasks.protocols import PROTOCOLS
from ...files import REPO_ROOT

ROOT = REPO_ROOT


def demo_config() -> dict:
    """config/config.yaml with config/demo.yaml over it."""
    import yaml

    return merge_configs([yaml.safe_load((ROOT / "config" / name).read_text()) for name in ("config.yaml",
                                                                                          "demo.yaml")])


def synthetic_pascal(directory: Path) -> tuple[str, str]:
    """The demo's synthetic PASCAL, prepared and split, under ``directory``: (dataset root, splits)."""
    from ...data.datasets import open_dataset
    from ...data.pascal import PascalRaw, prepare_pascal
    from ...data.splits import make_splits
    from ...synthetic.raw import SynthConfig, synth

    synth(directory / "raw", SynthConfig("pascal"))
    prepare_pascal(PascalRaw.under(directory / "raw"), directory / "data", progress=False)
    make_splits(open_dataset(directory / "data"), directory / "splits", progress=False)
    return str(directory / "data"), str(directory / "splits")


def run_val_cache(method: str = "baseline", episodes: int = 200, repeats: int = 5, threads: int | None = 1,
                  device: str = "auto", root: str | None = None, splits: str | None = None) -> dict:
    dev = setup_process(threads, device)
    with tempfile.TemporaryDirectory() as tmp:
        if root is None:
            root, splits = synthetic_pascal(Path(tmp))
        config = demo_config()
        spec = build_cell_spec(config, Cell("pascal", "resnet50", method, "dagger", "frozen", "svf-code", 1, 0))
        if method == "bam":
            raise ValueError("the benchmark builds no base learner: use baseline or pfenet")
        model, policy = build_cell_model(spec, None)
        model = model.to(dev).eval()
        assert backbone_is_frozen(model, policy)
        loader = eval_loader(spec, root, splits, n_episodes=episodes, seed=PROTOCOLS["svf-code"].seeds[0])
        classes = fold_novel_classes(spec)
        cache = ValidationCache()
        first = cache.score(model, loader, dev, classes, "skip").miou()  # fills the cache
        times = {"uncached": [], "cached": []}
        scores = {"uncached": None, "cached": None}
        for _ in range(repeats):
            for name in ("uncached", "cached"):
                started = time.perf_counter()
                if name == "cached":
                    value = cache.score(model, loader, dev, classes, "skip").miou()
                else:
                    value = score_episodes(model, loader, dev, classes, "skip").miou()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                times[name].append(time.perf_counter() - started)
                scores[name] = value
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"method": method, "episodes": episodes, "repeats": repeats, "device": str(dev),
            "median_s": medians, "cached_over_uncached": medians["cached"] / medians["uncached"],
            "miou": scores, "first_pass_miou": first, "equal": scores["cached"] == scores["uncached"] == first,
            "cache_mb": cache.used / 2**20}


__all__ = ["run_val_cache"]
