"""Evaluation of a trained cell on the deterministic test episodes of its protocol; writes metrics.json.

Protocols: ``svf-code`` (1000 episodes, seed 321: the authors' validation, whose best epoch their code keeps),
``bam`` (5 seeds x 1000 episodes, mean: BAM's test.py), ``pfenet`` (5000 PASCAL / 20000 COCO episodes).
Evaluation runs the model with its SVD layers merged back into plain convs (same outputs, faster).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ... import files as atomic
from ...decompose import merge
from ...pipeline.paths import TRAIN_SUMMARY
from ...pipeline.spec_types import CellSpec
from .build import load_cell_model
from ..loop.device import library_versions, setup_process
from .loaders import eval_loader, fold_novel_classes, protocol_runs
from ..loop.precision import Precision
from ..loop.fit import out_of_memory
from .metrics import FewShotScore
from .scoring import score_episodes


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def evaluate_cell(spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None, model_file: str, out: str,
                  base_learner: str | None = None, config_hash: str = "", threads: int | None = None,
                  device: str = "auto", code_version: str = "") -> dict:
    dev = setup_process(threads, device, spec.deterministic)
    started = time.time()
    model, _, saved = load_cell_model(spec, model_file, weights, base_learner)
    precision = Precision.of(spec.recipe)
    model = precision.place(merge(model), dev)
    evaluation = spec.evaluation
    classes = fold_novel_classes(spec)
    per_seed = []
    class_ious: dict[str, list] = {}
    for seed, episodes in protocol_runs(spec):
        loader = eval_loader(spec, dataset_root, splits_dir, n_episodes=episodes, seed=seed)
        try:
            trivial = FewShotScore(classes, evaluation.absent_class)
            score = score_episodes(model, loader, dev, classes, evaluation.absent_class,
                                   f"{spec.cell_id} seed {seed}", precision, trivial).summary()
        except torch.cuda.OutOfMemoryError:
            raise out_of_memory(spec.cell_id, dev, f"lower evaluation.batch_size (now {evaluation.batch_size})"
                                ) from None
        per_seed.append({"seed": seed, "miou": score["miou"], "fb_iou": score["fb_iou"],
                         "episodes": score["episodes"], "all_foreground_miou": 100.0 * trivial.miou()})
        for c, v in score["class_iou"].items():
            class_ious.setdefault(c, []).append(v)
    summary_file = Path(model_file).with_name(TRAIN_SUMMARY)
    train = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    metrics = {
        "cell": spec.cell.as_dict(),
        "cell_id": spec.cell_id,
        "miou": _mean([s["miou"] for s in per_seed]),
        "fb_iou": _mean([s["fb_iou"] for s in per_seed]),
        # the all-foreground predictor on the same episodes: a cell at or below it has learnt nothing
        "all_foreground_miou": _mean([s["all_foreground_miou"] for s in per_seed]),
        "class_iou": {c: _mean(v) for c, v in class_ious.items()},
        "episodes": sum(s["episodes"] for s in per_seed),
        "seeds": [s["seed"] for s in per_seed],
        "protocol": evaluation.protocol,
        "per_seed": per_seed,
        "epochs_run": train.get("epochs_run"),
        "best_epoch": train.get("best_epoch"),
        "selected_epoch": saved.get("epoch"),
        "train_wall_time_s": train.get("train_wall_time_s"),
        "eval_wall_time_s": round(time.time() - started, 3),
        "trainable_params": train.get("trainable_params"),
        "config_hash": config_hash,
        "code_version": code_version,
        "versions": library_versions(dev),
        "device": dev.type,
    }
    atomic.write_json(out, metrics)
    return metrics
