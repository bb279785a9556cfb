"""The GPU check (`make gpu-check`): the one prepared command for a lent GPU. Does every kind of paper cell fit, how
long is a step at the paper's sizes in the default precision and in bf16, what does the whole paper cost?

Needs the repository on the path and torch, numpy, OpenCV, Pillow, pandas, scipy and matplotlib, nothing else (no
install of this package). PyYAML, tqdm, torchvision, jsonschema, Snakemake and pycocotools are optional: the
configs come from tests/gpu/config_snapshot.json without PyYAML, tqdm's progress bars become a pass-through, the
rest is not needed; what a missing package changes is written under "optional". Every check is independent and
writes its part of the JSON as soon as it ends (a result, an error, "skipped" with the reason, or "timed out"), so
an interrupted run still leaves the numbers so far; the determinism switches are reset after every check. Checks, in
order, within ``--budget-s`` (default 400 s: with Python and CUDA start-up, under 8 minutes on one H100/H200):

1. device: name, memory, versions, and the measured peak of a large matmul in TF32 and in bf16;
2. precision: fp32 and bf16 autocast agree (logits, loss) and no SVD layer writes a float32 activation under bf16;
3. micro_batches: the authors' 4 GPUs x 2 arithmetic equals an explicit 4-replica simulation;
4. heavy: the heaviest kinds of the paper, COCO 5-shot at 641 px (baseline, PFENet, BAM and BAM's base learner; R50
   and VGG; SVF) and PASCAL R50 SVF 1- and 5-shot at 473 px, each in the default tf32 and in bf16 + channels_last:
   training-step time, peak memory, FLOPs (``torch.utils.flop_counter``), achieved TFLOP/s and share of the
   device's peak, a validation batch (whole and head alone) and how many episodes the 16 GB cache holds;
5. paper: the whole paper's device-hours (316 cells + 16 base learners, each precision) with `svf estimate`'s code
   in the budget left for it (kinds not timed in time are inferred and counted as such); estimate.{csv,md} beside
   the JSON;
6. cell: one synthetic demo cell trains (with validation passes) and evaluates on the device twice with
   ``deterministic: true``: identical metrics expected.

``python tests/gpu/gpu_check.py --out gpu_check.json``; ``--cpu`` runs the same code on the CPU at toy sizes (the
test suite does, with the optional packages unimportable); ``--write-config-snapshot`` refreshes the snapshot.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.machinery
import json
import math
import os
import signal
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OPTIONAL = ("yaml", "tqdm", "torchvision", "jsonschema", "snakemake", "pycocotools")
SNAPSHOT = Path(__file__).with_name("config_snapshot.json")
CONFIG_FILES = ("config/config.yaml", "config/demo.yaml", "config/tables.yaml")
DEFAULT_BUDGET_S = {"cuda": 400.0, "cpu": 900.0}
#: Dense tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, by a part of the device name: TF32 and BF16.
SPEC_PEAKS = (("H200 NVL", {"tf32": 417.5, "bf16": 835.5}), ("H200", {"tf32": 494.7, "bf16": 989.4}),
              ("GH200", {"tf32": 494.7, "bf16": 989.4}), ("H100 PCIe", {"tf32": 378.0, "bf16": 756.0}),
              ("H100", {"tf32": 494.7, "bf16": 989.4}), ("A100", {"tf32": 156.0, "bf16": 312.0}))
#: The heaviest kinds of the paper, (dataset, backbone, method, policy, shot); PASCAL's R50 SVF cells first (the
#: commonest kind, and the bf16 target's), then COCO 5-shot at 641 px and BAM's COCO base learners.
HEAVY = (("pascal", "resnet50", "baseline", "svf", 1), ("pascal", "resnet50", "baseline", "svf", 5)) + tuple(
    ("coco", b, m, "svf", 5) for m in ("baseline", "pfenet", "bam") for b in ("resnet50", "vgg16")) + (
    ("coco", "resnet50", "base-learner", "", 0), ("coco", "vgg16", "base-learner", "", 0))
PRECISIONS = ("tf32", "bf16-cl")


class Skipped(Exception):
    """A check that cannot run here (a missing package, no time left): the reason is recorded."""


class OutOfTime(Exception):
    pass


# --- optional packages and the configs ------------------------------------------------------------------------------

def available(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def tqdm_stand_in() -> str:
    """tqdm draws progress bars only: without it, a pass-through module (data preparation imports it)."""
    if available("tqdm"):
        return "installed"
    module = types.ModuleType("tqdm")
    module.__spec__ = importlib.machinery.ModuleSpec("tqdm", None)  # torch._dynamo looks modules up by spec
    module.tqdm = lambda iterable=None, *args, **kwargs: iterable
    sys.modules["tqdm"] = module
    return "missing: a pass-through stand-in (progress bars only)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_config_snapshot() -> Path:
    import yaml

    files = {name: {"sha256": _sha256(ROOT / name), "document": yaml.safe_load((ROOT / name).read_text())}
             for name in CONFIG_FILES}
    SNAPSHOT.write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    return SNAPSHOT


def load_documents() -> tuple[dict, str]:
    """The config files as parsed documents: with PyYAML from the files, else from the snapshot (said when it is
    older than a file)."""
    if available("yaml"):
        import yaml

        return {name: yaml.safe_load((ROOT / name).read_text()) for name in CONFIG_FILES}, "yaml"
    files = json.loads(SNAPSHOT.read_text())["files"]
    stale = [name for name in CONFIG_FILES if files[name]["sha256"] != _sha256(ROOT / name)]
    source = "snapshot (PyYAML missing)" + (f"; OLDER than {', '.join(stale)}" if stale else "")
    return {name: files[name]["document"] for name in CONFIG_FILES}, source


class Configs:
    def __init__(self):
        self.documents, self.source = load_documents()

    def merged(self, *names: str, **overlay) -> dict:
        from svf.pipeline.specs import merge_configs

        return merge_configs([copy.deepcopy(self.documents[f"config/{n}"]) for n in names] + [overlay])

    def tables(self) -> dict:
        from svf.pipeline.tables import tables_from_document

        return tables_from_document(copy.deepcopy(self.documents["config/tables.yaml"]), "config/tables.yaml")


# --- the report and the budget --------------------------------------------------------------------------------------

class Report:
    """gpu_check.json, rewritten (atomically) after every change."""

    def __init__(self, path: Path, head: dict):
        self.path, self.data = Path(path), dict(head)
        self.write()

    def part(self, name: str, value) -> None:
        self.data[name] = value
        self.write()

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_plain) + "\n")
        os.replace(tmp, self.path)


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _clean(value):
    """NaN -> None for JSON (json.dumps writes NaN, which is not JSON)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Budget:
    def __init__(self, seconds: float):
        self.total, self.started = float(seconds), time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.started)


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise OutOfTime in the main thread after ``seconds`` (between Python bytecodes: a running kernel finishes)."""
    def expire(signum, frame):
        raise OutOfTime()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def reset_determinism() -> None:
    from svf.engine.loop.device import configure_determinism

    configure_determinism(False)
    torch.use_deterministic_algorithms(False)


def run_check(report: Report, name: str, check, budget: Budget, needs_s: float) -> None:
    """Run one check within the budget; its result, error, skip or time-out goes into the report at once."""
    started = time.perf_counter()
    if budget.left() < needs_s:
        result = {"status": "skipped", "reason": f"{budget.left():.0f} s of the budget left, it needs ~{needs_s:.0f} s"}
    else:
        try:
            with deadline(budget.left()):
                result = {"status": "ok", **check()}
        except Skipped as why:
            result = {"status": "skipped", "reason": str(why)}
        except OutOfTime:
            result = {"status": "timed out", "reason": f"the budget of {budget.total:.0f} s ended in this check"}
        except Exception as exc:  # noqa: BLE001 - recorded, and the next check runs
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-3000:]}
        finally:
            reset_determinism()  # a check that set deterministic algorithms leaves them off for the next
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    partial = report.data.get(name)
    if result["status"] != "ok" and isinstance(partial, dict) and partial.get("status") == "running":
        result = {**partial, **result}  # what the check wrote before it stopped stays
    result["seconds"] = round(time.perf_counter() - started, 1)
    report.part(name, _clean(result))
    print(f"gpu-check {name}: {result['status']} ({result['seconds']} s)"
          + (f": {result.get('reason') or result.get('error')}" if result["status"] != "ok" else ""), flush=True)


# --- 1. the device --------------------------------------------------------------------------------------------------

def spec_peaks(name: str) -> dict | None:
    for part, peaks in SPEC_PEAKS:
        if part in name:
            return peaks
    return None


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, tf32: bool, repeats: int = 10) -> float:
    from svf.engine.tools.timing import sync

    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def check_device(device: torch.device, small: bool) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    n = 512 if small else 8192
    out["matmul_tflops"] = {"tf32": matmul_tflops(device, torch.float32, n, True),
                            "bf16": matmul_tflops(device, torch.bfloat16, n, False)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(name=props.name, memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported(), spec_peak_tflops=spec_peaks(props.name))
    return out


# --- 2. precision, 3. the 4 x 2 arithmetic (a tiny model) -----------------------------------------------------------

def _tiny_model(configs: Configs, device):
    from svf.engine.tasks.build import build_cell_model
    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import build_cell_spec

    config = configs.merged("config.yaml", "demo.yaml", recipe_overrides={"batch_size": 8, "loss_groups": 4})
    torch.manual_seed(0)
    model, _ = build_cell_model(build_cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf",
                                                             "svf-code", 1, 0)), None)
    return model.to(device).eval()


def _episodes(n, size, device):
    g = torch.Generator().manual_seed(0)
    label = (torch.rand(n, size, size, generator=g) > 0.6).long()
    for i in range(n):
        label[i, : 3 * i] = 255
    batch = {"query": torch.randn(n, 3, size, size, generator=g),
             "supports": torch.randn(n, 1, 3, size, size, generator=g),
             "support_labels": (torch.rand(n, 1, size, size, generator=g) > 0.5).long(), "query_label": label,
             "class_id": torch.ones(n, dtype=torch.long)}
    return {k: v.to(device) for k, v in batch.items()}


def check_precision(configs: Configs, device: torch.device) -> dict:
    from svf.decompose import SVDConv2d
    from svf.engine.loop.precision import Precision
    from svf.engine.tasks.train import forward

    Precision("fp32").configure()
    model, batch = _tiny_model(configs, device), _episodes(4, 65, device)
    float32 = []
    for name, layer in model.named_modules():
        if isinstance(layer, SVDConv2d):
            layer.conv_U.register_forward_pre_hook(
                lambda m, args, n=name: float32.append(n) if args[0].dtype == torch.float32 else None)
    with torch.no_grad():
        out32 = forward(model, batch)
        loss32 = float(model.loss(out32, batch)[0])
        float32.clear()
        with Precision("bf16").autocast(device):
            out16 = forward(model, batch)
            loss16 = float(model.loss(out16, batch)[0])
    spread = float(out32["logits"].std())
    diff = (out16["logits"].float() - out32["logits"]).abs()
    result = {"loss_fp32": loss32, "loss_bf16": loss16, "loss_rel_diff": abs(loss16 - loss32) / abs(loss32),
              "logits_max_diff_over_spread": float(diff.max()) / spread,
              "logits_mean_diff_over_spread": float(diff.mean()) / spread,
              "svd_layers_writing_float32_under_bf16": sorted(set(float32))}
    result["within_tolerance"] = (result["loss_rel_diff"] < 0.01 and result["logits_max_diff_over_spread"] < 0.10
                                  and result["logits_mean_diff_over_spread"] < 0.02 and not float32)
    Precision("tf32").configure()
    return result


def check_micro_batches(configs: Configs, device: torch.device) -> dict:
    from svf.engine.loop.batching import check_grouping, grouped_loss, micro_batches, slice_batch
    from svf.engine.loop.precision import Precision
    from svf.engine.tasks.train import forward

    Precision("fp32").configure()  # exact float32: TF32 would differ between the two summation orders
    model, batch = _tiny_model(configs, device), _episodes(8, 33, device)

    def grads(m):
        return {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    replicas = []
    for r in range(4):
        replica = copy.deepcopy(model)
        part = slice_batch(batch, 2 * r, 2 * r + 2)
        replica.loss(forward(replica, part), part)[0].backward()
        replicas.append(grads(replica))
    reference = {k: torch.stack([g[k] for g in replicas]).mean(0) for k in replicas[0]}
    worst = {}
    for micro in (8, 2):
        ours = copy.deepcopy(model)
        group, micro = check_grouping(8, 4, micro)
        for chunk in micro_batches(batch, micro):
            grouped_loss(lambda out, part: ours.loss(out, part)[0], forward(ours, chunk), chunk, group, 4).backward()
        got = grads(ours)
        worst[f"micro_batch_{micro}"] = max(float((got[k] - reference[k]).abs().max()
                                                  / (reference[k].abs().max() + 1e-20)) for k in reference)
    Precision("tf32").configure()
    return {"max_rel_grad_diff": worst, "equal": all(v < 1e-4 for v in worst.values())}


# --- 4. the heaviest kinds ------------------------------------------------------------------------------------------

def _heavy_spec(config: dict, kind: tuple):
    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import build_base_learner_spec, build_cell_spec

    dataset, backbone, method, policy, shot = kind
    if method == "base-learner":
        return build_base_learner_spec(config, dataset, backbone, 0)
    return build_cell_spec(config, Cell(dataset, backbone, method, "dagger", policy, "svf-code", shot, 0))


def heavy_config(configs: Configs, small: bool) -> dict:
    if small:  # toy sizes: the demo's backbones, 65 px
        return configs.merged("config.yaml", "demo.yaml", recipe_overrides={"crop": 65, "val_size": 65})
    return configs.merged("config.yaml")


def check_heavy(configs: Configs, device: torch.device, small: bool, report: Report, device_info: dict,
                budget: Budget, keep_s: float) -> dict:
    """The heavy kinds, each precision; a kind is not started when less than ``keep_s`` of the budget is left (the
    projection and the cell check need it)."""
    from svf.engine.tasks.build import random_base_learner
    from svf.engine.tools.timing import ModelBuilds, parse_precision, time_base_learner, time_kind
    from svf.pipeline.recipe import Recipe

    config, builds, rows = heavy_config(configs, small), ModelBuilds(), []
    peaks = (device_info or {}).get("spec_peak_tflops") or {}
    measured = (device_info or {}).get("matmul_tflops") or {}
    cache_budget = Recipe.of(config, "svf-code", "pascal").val_cache_gb * 2**30
    with tempfile.TemporaryDirectory() as scratch:
        for kind in HEAVY:
            spec = _heavy_spec(config, kind)
            for label in PRECISIONS:
                precision = parse_precision(label)
                row = {"kind": "/".join(str(k) for k in kind if k not in ("", 0)), "precision": label}
                if budget.left() < keep_s:
                    row["skipped"] = f"{budget.left():.0f} s of the budget left, {keep_s:.0f} s kept for the rest"
                    rows.append(row)
                    continue
                try:
                    if kind[2] == "base-learner":
                        timing = time_base_learner(spec, device, steps=1 if small else 3, flops=True,
                                                   precision=precision)
                    else:
                        base = random_base_learner(spec, scratch) if kind[2] == "bam" else None
                        timing = time_kind(spec, device, steps=1 if small else 3, val_batches=1 if small else 2,
                                           base_learner=base, builds=builds, flops=True, precision=precision)
                    recipe = spec.recipe
                    tflops = timing["step_flops"] / timing["step_s"] / 1e12
                    key = "bf16" if precision.name in ("bf16", "fp16") else "tf32"
                    per_episode = timing["cache_bytes_per_episode"]
                    row.update(timing, crop=recipe.crop, batch_size=recipe.batch_size,
                               step_tflop=timing["step_flops"] / 1e12, achieved_tflops=tflops,
                               share_of_spec_peak=tflops / peaks[key] if key in peaks else None,
                               share_of_matmul_peak=tflops / measured[key] if measured.get(key) else None,
                               cached_episodes_in_budget=(None if math.isnan(per_episode)
                                                          else int(cache_budget // per_episode)))
                except torch.cuda.OutOfMemoryError as exc:
                    row["error"] = f"out of memory: {str(exc)[:200]}"
                except OutOfTime:
                    raise
                except Exception as exc:  # noqa: BLE001 - one kind's failure is recorded, the others run
                    row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(_clean(row))
                report.part("heavy", {"status": "running", "rows": rows})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    ratios = {}
    for kind in {r["kind"] for r in rows}:
        by = {r["precision"]: r for r in rows if r["kind"] == kind and "step_s" in r}
        if len(by) == 2:
            ratios[kind] = by[PRECISIONS[1]]["step_s"] / by[PRECISIONS[0]]["step_s"]
    fitted = [r for r in rows if r.get("peak_gb") is not None]
    return {"rows": rows, "bf16_cl_over_tf32_step": ratios,
            "largest_peak_gb": max((r["peak_gb"] for r in fitted), default=None),
            "errors": [f"{r['kind']} {r['precision']}: {r['error']}" for r in rows if "error" in r],
            "not_timed": [f"{r['kind']} {r['precision']}" for r in rows if "skipped" in r]}


# --- 5. the whole paper ---------------------------------------------------------------------------------------------

def check_paper(configs: Configs, device: torch.device, small: bool, out_dir: Path, budget: Budget,
                reserve_s: float, report: Report) -> dict:
    from svf.engine.tools.estimate import estimate
    from svf.engine.tools.estimate_report import write_estimate

    if small:
        config = configs.merged("config.yaml", "demo.yaml")
        names, precisions = ["table4"], ["config", "bf16-cl"]
    else:
        config = configs.merged("config.yaml")
        names, precisions = None, ["config", "bf16-cl"]
    seconds = budget.left() - reserve_s
    if seconds < 20:
        raise Skipped(f"{budget.left():.0f} s left, {reserve_s:.0f} s kept for the cell check")
    timed = []
    result = estimate(config, names, device=str(device), steps=1 if small else 2, precisions=precisions,
                      threads=1 if small else None,
                      budget_s=seconds, tables=configs.tables(), progress=lambda line: None,
                      on_row=lambda row: (timed.append(_clean(row)),
                                          report.part("paper", {"status": "running", "timed": timed})))
    paths = write_estimate(result, out_dir)
    rows = result["rows"]
    totals = {}
    for p in dict.fromkeys(r["precision"] for r in rows):
        mine = [r for r in rows if r["precision"] == p]
        totals[p] = {"device_hours": sum(r["hours"] for r in mine),
                     "device_hours_early_stop": sum(r["early_stop_hours"] for r in mine),
                     "cells": sum(r["cells"] for r in mine if r["method"] != "base-learner"),
                     "base_learners": sum(r["cells"] for r in mine if r["method"] == "base-learner"),
                     "largest_peak_gb": max((r["peak_gb"] for r in mine if r["peak_gb"] == r["peak_gb"]), default=None),
                     "every_kind_fits": all(r["fits"] for r in mine)}
    return {"totals": totals, "kinds_timed": result["timed"], "kinds_inferred": result["inferred"],
            "timing_s": result["timing_s"], "budget_s": seconds, "files": [str(p) for p in paths],
            "base_learners": result["base_learners"]}


# --- 6. one cell, twice deterministic ---------------------------------------------------------------------------------

def check_cell(configs: Configs, directory: Path, device: str, small: bool) -> dict:
    """Pretrain the stand-in, train and evaluate one R50 baseline SVF cell; twice with deterministic: true."""
    from svf.engine.tasks.evaluate import evaluate_cell
    from svf.engine.tasks.pretrain import pretrain_backbone
    from svf.engine.tasks.train import train_cell
    from svf.engine.tools.val_bench import synthetic_pascal
    from svf.pipeline.cells import Cell
    from svf.pipeline.spec_types import PretrainSpec
    from svf.pipeline.specs import build_cell_spec, pretrain_spec

    root, splits = synthetic_pascal(directory)
    run = {"epochs": 1, "max_episodes_per_epoch": 16, "val_episodes": 8} if small else {"epochs": 5}
    overlay = {"recipe_overrides": run, "evaluation": {"episodes": 16 if small else 300},
               "weights": {"pretrain": {"steps": 10 if small else 300}}, "deterministic": True}
    config = configs.merged("config.yaml", "demo.yaml", **overlay)
    weights = directory / "resnet50.pth"
    started = time.perf_counter()
    pretrain_backbone(PretrainSpec.from_json(pretrain_spec(config, "resnet50")), str(weights), device=device)
    results = {"pretrain_s": time.perf_counter() - started}
    spec = build_cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    for name in ("first", "second"):
        out = directory / f"cell_{name}"
        started = time.perf_counter()
        summary = train_cell(spec, root, splits, str(weights), str(out), str(out / "ckpt"), device=device)
        metrics = evaluate_cell(spec, root, splits, str(weights), str(out / "model.pt"), str(out / "metrics.json"),
                                device=device)
        results[name] = {"miou": metrics["miou"], "fb_iou": metrics["fb_iou"], "device": metrics["device"],
                         "train_s": summary["train_wall_time_s"], "wall_s": time.perf_counter() - started,
                         "versions": metrics["versions"]}
    results["deterministic_identical"] = all(results["first"][k] == results["second"][k] for k in ("miou", "fb_iou"))
    return results


# --- the table at the end ---------------------------------------------------------------------------------------------

def summary_lines(data: dict) -> list[str]:
    lines = ["", f"GPU check on {data.get('device_name')} ({data.get('torch')})", "",
             f"{'check':<15} {'status':<10} {'s':>6}"]
    for name in ("device", "precision", "micro_batches", "heavy", "paper", "cell"):
        part = data.get(name) or {}
        lines.append(f"{name:<15} {part.get('status', '-'):<10} {part.get('seconds', 0):>6}")
    heavy = (data.get("heavy") or {}).get("rows") or []
    if heavy:
        lines += ["", f"{'kind':<32} {'precision':<8} {'step s':>8} {'peak GB':>8} {'TFLOP/s':>8} {'% peak':>7} "
                      f"{'val s/ep':>9}"]
        for r in heavy:
            if "error" in r or "skipped" in r:
                why = r.get("error") or "not timed: " + r["skipped"]
                lines.append(f"{r['kind']:<32} {r['precision']:<8} {why[:70]}")
                continue
            share = r.get("share_of_spec_peak") or r.get("share_of_matmul_peak")
            lines.append(f"{r['kind']:<32} {r['precision']:<8} {r['step_s']:>8.3f} {_num(r.get('peak_gb')):>8} "
                         f"{_num(r.get('achieved_tflops')):>8} {_num(share and 100 * share):>7} "
                         f"{r['val_episode_s']:>9.4f}")
    paper = data.get("paper") or {}
    if paper.get("totals"):
        lines += ["", f"whole paper ({paper['kinds_timed']} kinds timed, {paper['kinds_inferred']} inferred; BAM base "
                      f"learners {paper['base_learners']}):"]
    for precision, t in (paper.get("totals") or {}).items():
        lines.append(f"  {precision}: {_hours(t['device_hours'])} device-hours ({_hours(t['device_hours_early_stop'])} "
                     f"with early stop) for {t['cells']} cells + {t['base_learners']} base learners; every kind "
                     f"fits: {t['every_kind_fits']}, largest peak {_num(t['largest_peak_gb'])} GB")
    lines.append("% peak: of the data sheet's dense peak for the precision, or of the measured matmul peak where the "
                 "device is not in the table")
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--cpu", action="store_true", help="the same checks on the CPU at toy sizes (tests)")
    parser.add_argument("--budget-s", type=float, help="bound on the whole check (default: 400 on a GPU, 900 --cpu)")
    parser.add_argument("--write-config-snapshot", action="store_true",
                        help=f"refresh {SNAPSHOT.name} from the config files (needs PyYAML) and exit")
    args = parser.parse_args(argv)
    if args.write_config_snapshot:
        print(f"wrote {write_config_snapshot()}")
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check (use --cpu for the toy run)")
        return 0
    device = torch.device("cpu" if args.cpu else "cuda")
    small = args.cpu
    if small:
        torch.set_num_threads(1)  # toy tensors: on a shared CPU more threads mostly wait for each other
    budget = Budget(args.budget_s or DEFAULT_BUDGET_S[device.type])
    optional = {name: "installed" if available(name) else "missing" for name in OPTIONAL}
    optional["tqdm"] = tqdm_stand_in()
    configs = Configs()
    optional["yaml"] = f"{optional['yaml']}; configs from {configs.source}"
    out = Path(args.out)
    report = Report(out, {"device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                          "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "budget_s": budget.total, "toy_sizes": small, "optional": optional})
    run_check(report, "device", lambda: check_device(device, small), budget, 5)
    run_check(report, "precision", lambda: check_precision(configs, device), budget, 10)
    run_check(report, "micro_batches", lambda: check_micro_batches(configs, device), budget, 10)
    cell_reserve = 30 if small else 110
    run_check(report, "heavy", lambda: check_heavy(configs, device, small, report, report.data.get("device"),
                                                   budget, cell_reserve + (10 if small else 90)), budget, 60)
    estimate_dir = out.with_name(out.stem + "_estimate")
    run_check(report, "paper", lambda: check_paper(configs, device, small, estimate_dir, budget, cell_reserve, report),
              budget, 30)
    with tempfile.TemporaryDirectory() as tmp:
        run_check(report, "cell", lambda: check_cell(configs, Path(tmp), device.type, small), budget, 20)
    data = report.data
    report.part("total_s", round(budget.total - budget.left(), 1))
    ok = {"precision": (data["precision"].get("within_tolerance") is True),
          "micro_batches": data["micro_batches"].get("equal") is True,
          "heavy": data["heavy"].get("status") == "ok" and not data["heavy"].get("errors"),
          "paper": data["paper"].get("status") == "ok",
          "cell": data["cell"].get("status") == "skipped" or data["cell"].get("deterministic_identical") is True}
    report.part("passed", all(ok.values()))
    report.part("failed_checks", [k for k, v in ok.items() if not v])
    print("\n".join(summary_lines(report.data)))
    print(f"gpu-check: {'passed' if report.data['passed'] else 'FAILED ' + str(report.data['failed_checks'])} in "
          f"{report.data['total_s']} s -> {out}")
    return 0 if report.data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
