"""The GPU check (`make gpu-check`): what only a CUDA device can show, in a few minutes, written to one JSON file.

Runs with the repository on PYTHONPATH and only torch (>= 2.4), torchvision, numpy, scipy, pandas, opencv, pillow,
pyyaml, tqdm and matplotlib installed (no Snakemake, no install of this package), so it runs wherever a GPU is lent:

1. one synthetic cell (the demo's data, backbone and schedule) pretrains, trains and evaluates on CUDA;
2. fp32 and bf16 autocast agree (losses, logits) on the GPU;
3. the authors' 4 GPUs x 2 arithmetic: micro-batches and loss groups equal an explicit 4-replica simulation;
4. with ``deterministic: true`` the same cell gives identical metrics twice;
5. ``svf estimate`` of the R50 SVF 1-shot and 5-shot cells at 473 px in fp32 and in bf16 + channels_last: seconds
   per step, peak memory, and the step ratio (target: bf16 + channels_last <= 0.5 x fp32).

``python tests/gpu/gpu_check.py --out gpu_check.json`` (``--cpu`` runs the same code on the CPU at toy sizes, for
the test suite); the pytest wrapper is tests/gpu/test_gpu.py (marker ``gpu``, skipped without CUDA).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402


def _config(*names: str, **overlay) -> dict:
    from svf.pipeline.specs import merge_configs

    return merge_configs([yaml.safe_load((ROOT / "config" / n).read_text()) for n in names] + [overlay])


def check_cell(directory: Path, device: str, small: bool) -> dict:
    """Pretrain the stand-in, train and evaluate one R50 baseline SVF cell; twice with deterministic: true."""
    from svf.engine.evaluate import evaluate_cell
    from svf.engine.pretrain import pretrain_backbone
    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import cell_spec, pretrain_spec
    from svf.engine.train import train_cell

    from svf.engine.val_bench import synthetic_pascal

    root, splits = synthetic_pascal(directory)
    small_run = {"epochs": 1, "max_episodes_per_epoch": 16, "val_episodes": 8}
    overlay = {"recipe_overrides": small_run if small else {}, "evaluation": {"episodes": 16 if small else 300},
               "weights": {"pretrain": {"steps": 10 if small else 1200}}}
    config = _config("config.yaml", "demo.yaml", **overlay)
    weights = directory / "resnet50.pth"
    started = time.perf_counter()
    pretrain_backbone(pretrain_spec(config, "resnet50"), str(weights), device=device)
    pretrain_s = time.perf_counter() - started
    results = {}
    for name, deterministic in (("first", True), ("second", True)):
        config["deterministic"] = deterministic
        spec = cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
        out = directory / f"cell_{name}"
        started = time.perf_counter()
        summary = train_cell(spec, root, splits, str(weights), str(out), str(out / "ckpt"), device=device)
        metrics = evaluate_cell(spec, root, splits, str(weights), str(out / "model.pt"), str(out / "metrics.json"),
                                device=device)
        results[name] = {"miou": metrics["miou"], "fb_iou": metrics["fb_iou"], "device": metrics["device"],
                         "train_s": summary["train_wall_time_s"], "wall_s": time.perf_counter() - started,
                         "versions": metrics["versions"]}
    from svf.engine.device import configure_determinism

    configure_determinism(False)  # what follows is timed: back to cuDNN's fastest algorithms
    torch.use_deterministic_algorithms(False)
    return {"pretrain_s": pretrain_s, **results,
            "deterministic_identical": results["first"]["miou"] == results["second"]["miou"]
            and results["first"]["fb_iou"] == results["second"]["fb_iou"]}


def _tiny_model(device):
    from svf.engine.build import build_cell_model
    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import cell_spec

    config = _config("config.yaml", "demo.yaml", recipe_overrides={"batch_size": 8, "loss_groups": 4})
    torch.manual_seed(0)
    model, _ = build_cell_model(cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf",
                                                       "svf-code", 1, 0)), None)
    return model.to(device).eval()


def _episodes(n, size, device):
    g = torch.Generator().manual_seed(0)
    label = (torch.rand(n, size, size, generator=g) > 0.6).long()
    for i in range(n):
        label[i, : 3 * i] = 255
    batch = {"query": torch.randn(n, 3, size, size, generator=g), "supports": torch.randn(n, 1, 3, size, size,
                                                                                          generator=g),
             "support_labels": (torch.rand(n, 1, size, size, generator=g) > 0.5).long(), "query_label": label,
             "class_id": torch.ones(n, dtype=torch.long)}
    return {k: v.to(device) for k, v in batch.items()}


def check_precision(device: str) -> dict:
    from svf.engine.precision import Precision
    from svf.engine.train import forward

    dev = torch.device(device)
    Precision("fp32").configure()
    model, batch = _tiny_model(dev), _episodes(4, 65, dev)
    with torch.no_grad():
        out32 = forward(model, batch)
        loss32 = float(model.loss(out32, batch)[0])
        with Precision("bf16").autocast(dev):
            out16 = forward(model, batch)
            loss16 = float(model.loss(out16, batch)[0])
    spread = float(out32["logits"].std())
    diff = (out16["logits"].float() - out32["logits"]).abs()
    result = {"loss_fp32": loss32, "loss_bf16": loss16, "loss_rel_diff": abs(loss16 - loss32) / abs(loss32),
              "logits_max_diff_over_spread": float(diff.max()) / spread,
              "logits_mean_diff_over_spread": float(diff.mean()) / spread}
    result["within_tolerance"] = (result["loss_rel_diff"] < 0.01 and result["logits_max_diff_over_spread"] < 0.10
                                  and result["logits_mean_diff_over_spread"] < 0.02)
    Precision("tf32").configure()
    return result


def check_micro_batches(device: str) -> dict:
    from svf.engine.batching import check_grouping, grouped_loss, micro_batches, slice_batch
    from svf.engine.precision import Precision
    from svf.engine.train import forward

    dev = torch.device(device)
    Precision("fp32").configure()  # exact float32: TF32 would differ between the two summation orders
    model, batch = _tiny_model(dev), _episodes(8, 33, dev)

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


def check_estimate(device: str, small: bool) -> dict:
    from svf.engine.estimate import time_kind
    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import cell_spec

    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        for shot in (1, 5):
            for label, precision in (("fp32", {"precision": "fp32"}),
                                     ("bf16_channels_last", {"precision": "bf16", "channels_last": True})):
                overlay = {"recipe_overrides": precision}
                if small:
                    overlay["recipe_overrides"].update(crop=65, val_size=65)
                    config = _config("config.yaml", "demo.yaml", **overlay)
                else:
                    config = _config("config.yaml", **overlay)
                spec = cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", shot, 0))
                timing = time_kind(spec, torch.device(device), steps=1 if small else 3, val_batches=1 if small else 2,
                                   scratch=Path(scratch))
                out[f"{shot}shot_{label}"] = {**timing, "crop": spec["recipe"]["crop"],
                                              "batch_size": spec["recipe"]["batch_size"]}
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        for shot in (1, 5):
            out[f"{shot}shot_bf16_cl_over_fp32_step"] = (out[f"{shot}shot_bf16_channels_last"]["step_s"]
                                                         / out[f"{shot}shot_fp32"]["step_s"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--cpu", action="store_true", help="the same checks on the CPU at toy sizes (tests)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check (use --cpu for the toy run)")
        return 0
    device = "cpu" if args.cpu else "cuda"
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__,
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    total = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("precision", lambda: check_precision(device)),
                            ("micro_batches", lambda: check_micro_batches(device)),
                            ("cell", lambda: check_cell(Path(tmp), device, args.cpu)),
                            ("estimate", lambda: check_estimate(device, args.cpu))):
            started = time.perf_counter()
            try:
                report[name] = check()
            except Exception as exc:  # noqa: BLE001 - record and go on: one JSON with everything that ran
                report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            report[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"gpu-check {name}: {json.dumps(report[name], default=str)[:400]}", flush=True)
            Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["total_s"] = round(time.perf_counter() - total, 1)
    report["passed"] = (report["precision"].get("within_tolerance") is True
                        and report["micro_batches"].get("equal") is True
                        and report["cell"].get("deterministic_identical") is True
                        and "error" not in report["estimate"])
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"gpu-check: {'passed' if report['passed'] else 'FAILED'} in {report['total_s']} s -> {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
