"""``svf`` commands of the engine: train, train-base, import-base-learner, pretrain, evaluate, probe, estimate, bench,
check-checkpoint. Each ``_add_<command>`` defines its arguments and registers ``_run_<command>``, the code; torch
and the engine are imported inside the command functions only, so ``svf --help`` starts fast."""
from __future__ import annotations

import argparse
import re

from .. import __version__, console
from ..commands import add_command

#: What --device accepts (checked before torch starts, so a typo costs no start-up and gives a usage error).
DEVICE_PATTERN = re.compile(r"^(?:auto|cpu|cuda(?::\d+)?|mps|xpu(?::\d+)?)$")
SPEC_HELP = ("the cell's specification: JSON text or a JSON file with everything a run needs besides paths "
             "(cell, model, resolved recipe, evaluation, data, validation seed), as svf.pipeline.specs.cell_spec "
             "builds it from the config; each Snakemake job passes its own, and a run can be repeated by hand with it")


def _code_version() -> str:
    """The git commit of the source tree when there is one, else the package version."""
    import subprocess
    from ..files import REPO_ROOT as root

    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"svf-{__version__}"


def _add_cell_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help=SPEC_HELP)
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--splits", required=True, help="fold splits directory (svf splits)")
    parser.add_argument("--weights", help="ImageNet (or demo stand-in) backbone weights file")
    parser.add_argument("--base-learner", help="BAM only: the stage-1 PSPNet base learner (svf train-base)")
    parser.add_argument("--config-hash", default="", help="hash of the run's config, recorded in the outputs")
    _add_device_arguments(parser)


def device_argument(value: str) -> str:
    if not DEVICE_PATTERN.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device: use auto (a free CUDA GPU, else the CPU), "
                                         f"cpu, cuda or cuda:N")
    return value


def _add_device_arguments(parser: argparse.ArgumentParser, threads: int | None = None) -> None:
    default = f"default {threads}" if threads else "default: torch's choice"
    parser.add_argument("--threads", type=int, default=threads, help=f"torch CPU threads ({default})")
    parser.add_argument("--device", default="auto", type=device_argument,
                        help="auto (default: a free CUDA GPU, else the CPU), cpu, cuda or cuda:N")


def _add_train(subparsers) -> None:
    parser = add_command(subparsers, "train", _run_train,
                         help="train one table cell (checkpoints every epoch, resumes)")
    _add_cell_arguments(parser)
    parser.add_argument("--out-dir", required=True, help="cell directory: model.pt, train_log.csv, ...")
    parser.add_argument("--checkpoint-dir", required=True,
                        help="where last.pt lives (outside the rule outputs so a killed job resumes)")


def _run_train(args):
    """Train one table cell: the model, policy, recipe and seed of --spec on the fold's training episodes,
    validating after every epoch (recipe val_every) on the fold's test episodes (the authors'; recipe val_source:
    holdout uses its held-out list instead) and keeping the best epoch (the authors' selection; recipe select: last
    keeps the final one). Writes model.pt (the trained tensors), train_log.csv, singular_values.json and
    train_summary.json to --out-dir and prints the best validation mIoU. A killed run resumes from
    --checkpoint-dir/last.pt; a finished one is not retrained."""
    from ..pipeline.spec_types import CellSpec
    from ..pipeline.specs import load_spec
    from .tasks.train import train_cell

    s = train_cell(CellSpec.from_json(load_spec(args.spec)), args.dataset_root, args.splits, args.weights, args.out_dir,
                   args.checkpoint_dir, base_learner=args.base_learner, config_hash=args.config_hash,
                   threads=args.threads, device=args.device, code_version=_code_version())
    console.result(f"{s['cell_id']}: validation mIoU {s['best_val_miou']:.2f} at epoch {s['best_epoch']} of "
                   f"{s['epochs_run']} (kept epoch {s['selected_epoch']}, select {s['select']}), "
                   f"{s['train_wall_time_s']:.0f} s on {s['device']}")


def _add_train_base(subparsers) -> None:
    parser = add_command(subparsers, "train-base", _run_train_base,
                         help="BAM stage 1: train the PSPNet base learner of a fold")
    parser.add_argument("--spec", required=True, help="base-learner specification (JSON text or file)")
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--splits", help="fold splits directory (unused: the stage reads the whole lists)")
    parser.add_argument("--weights", help="ImageNet (or demo stand-in) backbone weights file")
    parser.add_argument("--out", required=True, help="model.pt to write (full PSPNet state dict)")
    parser.add_argument("--checkpoint-dir", required=True, help="where last.pt lives (resume after a kill)")
    _add_device_arguments(parser)


def _run_train_base(args):
    from ..pipeline.spec_types import BaseLearnerSpec
    from ..pipeline.specs import load_spec
    from .tasks.base_learner import train_base_learner

    spec = BaseLearnerSpec.from_json(load_spec(args.spec))
    result = train_base_learner(spec, args.dataset_root, args.weights, args.out, args.checkpoint_dir,
                                threads=args.threads, device=args.device)
    console.result(f"{spec.dataset}/{spec.backbone}/fold{spec.fold}: base-class mIoU "
                   f"{result['val_miou']:.2f} at epoch {result['epoch']} -> {args.out}")


def _add_import_base_learner(subparsers) -> None:
    # the run reports a missing --out as a usage error of this parser
    parser = add_command(subparsers, "import-base-learner", lambda args: _run_import_base_learner(args, parser),
                         help="convert a published BAM base learner (best.pth) to this project's layout")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", help="BAM's initmodel/PSPNet/<dataset>/split<k>/<backbone>/best.pth")
    what.add_argument("--missing", metavar="PATH",
                      help="say where BAM's published base learners come from and exit 1 (the workflow's rule for "
                           "a checkpoint that is not in place)")
    parser.add_argument("--out", help="model.pt to write (with --source)")


def _run_import_base_learner(args, parser: argparse.ArgumentParser):
    from ..files import torch_save
    from ..errors import ModelFileError
    from ..models.checkpoints import BAM_BASE_LEARNERS_URL, to_pspnet_state

    if args.missing:
        raise ModelFileError(
            f"{args.missing}: BAM's published base learner is not there. Download BAM's trained base learners "
            f"({BAM_BASE_LEARNERS_URL}, BAM's README) and put them in its layout "
            "<dir>/<dataset>/split<k>/<vgg|resnet50>/best.pth with <dir> = weights.bam_base_learner_dir, or set "
            "weights.bam_base_learner: train to train them in this DAG (BAM's stage 1).")
    if not args.out:
        parser.error("--out is required with --source")
    state = to_pspnet_state(args.source)
    torch_save(args.out, state)
    console.result(f"{args.source}: {len(state)} tensors -> {args.out}")


def _add_pretrain(subparsers) -> None:
    parser = add_command(
        subparsers, "pretrain", _run_pretrain,
        help="demo only: pretrain a tiny backbone on synthetic object images (ImageNet stand-in)")
    parser.add_argument("--spec", required=True,
                        help='JSON: {"backbone": {"name", "width", "depths", "stem", "vgg_stride"}, "steps", "size", '
                             '"batch_size", "lr", "classes", "seed"}')
    parser.add_argument("--out", required=True, help="backbone weights file to write")
    _add_device_arguments(parser)


def _run_pretrain(args):
    from ..pipeline.spec_types import PretrainSpec
    from ..pipeline.specs import load_spec
    from .tasks.pretrain import pretrain_backbone

    spec = PretrainSpec.from_json(load_spec(args.spec))
    result = pretrain_backbone(spec, args.out, threads=args.threads, device=args.device)
    console.result(f"{spec.backbone.name}: top-1 {result['top1']:.3f} over the last {result['tail_steps']} "
                   f"of {result['steps']} steps, {result['wall_time_s']:.0f} s -> {args.out}")


def _add_evaluate(subparsers) -> None:
    parser = add_command(subparsers, "evaluate", _run_evaluate, help="evaluate a trained cell on its test episodes")
    _add_cell_arguments(parser)
    parser.add_argument("--model", required=True, help="the cell's model.pt")
    parser.add_argument("--out", required=True, help="metrics.json to write")


def _run_evaluate(args):
    """Evaluate a trained cell (--model) on the test episodes of its protocol (svf-code: 1000 episodes with seed
    321; bam: 5 seeds x 1000; pfenet: 5000/20000), with its SVD layers merged back into plain convs. Writes
    metrics.json (mIoU, FB-IoU, per-class IoU, wall times, versions) and prints the mIoU."""
    from ..pipeline.spec_types import CellSpec
    from ..pipeline.specs import load_spec
    from .tasks.evaluate import evaluate_cell

    m = evaluate_cell(CellSpec.from_json(load_spec(args.spec)), args.dataset_root, args.splits, args.weights,
                      args.model, args.out, base_learner=args.base_learner, config_hash=args.config_hash,
                      threads=args.threads, device=args.device, code_version=_code_version())
    console.result(f"{m['cell_id']}: mIoU {m['miou']:.2f}, FB-IoU {m['fb_iou']:.2f} over {m['episodes']} test "
                   f"episodes ({m['protocol']} protocol), {m['eval_wall_time_s']:.0f} s on {m['device']}")


def _add_probe(subparsers) -> None:
    parser = add_command(
        subparsers, "probe", _run_probe,
        help="the paper's mechanism: a linear probe of a fold's novel classes on a cell's backbone before and after "
             "base training")
    _add_cell_arguments(parser)
    parser.add_argument("--model", required=True, help="the cell's model.pt (the backbone after base training)")
    parser.add_argument("--out", required=True, help="JSON to write: probe mIoU per feature before and after")


def _run_probe(args):
    """Measure what base training did to the novel classes' features (docs/study.md): a linear segmentation probe
    (background and the fold's novel classes, per feature pixel) is fitted on the fold's held-out images and scored
    on its test images as the mean IoU over the novel classes, on the backbone the cell starts from (the weights
    with its policy applied) and on the trained backbone of --model. Writes both, per feature (layer2+3, layer4),
    and their change to --out."""
    from ..pipeline.spec_types import CellSpec
    from ..pipeline.specs import load_spec
    from .tasks.probe import probe_cell

    probe_cell(CellSpec.from_json(load_spec(args.spec)), args.dataset_root, args.splits, args.weights, args.model,
               args.out, base_learner=args.base_learner, threads=args.threads, device=args.device)


def _add_estimate(subparsers) -> None:
    parser = add_command(
        subparsers, "estimate", _run_estimate,
        help="time every kind of cell on this device (synthetic tensors) and project device-hours")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", nargs="+", help="config YAML files, merged in order as Snakemake does")
    source.add_argument("--config-json", help="the merged config as JSON (what the Snakemake rule passes)")
    parser.add_argument("--tables", nargs="+", help="tables to estimate (default: the config's tables.build)")
    parser.add_argument("--splits", nargs="*", default=[], metavar="DATASET=DIR",
                        help="prepared splits to count training images (default: PASCAL's and COCO's † lists as "
                             "published, COCO's original lists assumed)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per kind (after one warm-up)")
    parser.add_argument("--precisions", nargs="+",
                        help="precision columns: config (each recipe's own), fp32, tf32, bf16, fp16, with -cl for "
                             "channels_last (default: config, plus bf16-cl on a GPU)")
    parser.add_argument("--budget-s", type=float, help="stop timing after this many seconds; the kinds left are "
                                                       "inferred (marked in the 'timed' column)")
    parser.add_argument("--flops", action="store_true", help="count each step's FLOPs (achieved TFLOP/s)")
    parser.add_argument("--measured", metavar="DIR",
                        help="a <benchmarks> directory of finished jobs: compare the projection with them")
    _add_device_arguments(parser)
    parser.add_argument("--out", default="results", help="directory for estimate.csv and estimate.md")


def _run_estimate(args):
    import json

    from .tools.estimate import estimate
    from .tools.estimate_report import compare_measured, write_estimate

    if args.configfile:
        import yaml

        from ..pipeline.checks import check_config
        from ..pipeline.specs import merge_configs
        from ..pipeline.tables import DEFAULT_SCHEMA

        config = merge_configs([yaml.safe_load(open(path)) for path in args.configfile])
        check_config(config, DEFAULT_SCHEMA.with_name("config.schema.yaml"), args.configfile)
    else:
        config = json.loads(args.config_json)
    splits = dict(item.split("=", 1) for item in args.splits)
    result = estimate(config, args.tables, device=args.device, steps=args.steps, splits=splits or None,
                      threads=args.threads, progress=lambda line: print(line, flush=True),
                      precisions=args.precisions, budget_s=args.budget_s, flops=args.flops)
    comparison = compare_measured(result, args.measured) if args.measured else None
    console.result("wrote " + ", ".join(str(p) for p in write_estimate(result, args.out, comparison)))
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: an SVF training step, the validation feature cache, the episode loader",
        description="Benchmarks, each writing a JSON file: svf-step (an SVF training step against frozen and full "
                    "fine-tuning), val-cache (a frozen cell's validation with and without the feature cache), "
                    "loader (episodes per second of the training loader). See svf bench <benchmark> -h.")
    benches = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    step = add_command(
        benches, "svf-step", _run_svf_step,
        help="time an SVF training step vs frozen / full fine-tune, and merged vs plain evaluation")
    step.add_argument("--out", default="results/benchmarks/svf_step.json", help="JSON file to write")
    step.add_argument("--size", type=int, default=224, help="square input size")
    step.add_argument("--batch", type=int, default=1, help="images per step (default 1)")
    step.add_argument("--repeats", type=int, default=5, help="timed round-robin repeats (median is reported)")
    step.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    step.add_argument("--backbone", default="resnet50", choices=["resnet50", "vgg16"], help="default resnet50")
    step.add_argument("--width", type=float, default=1.0, help="channel width multiplier (tiny runs)")
    step.add_argument("--depths", type=int, nargs=4, metavar="N", help="ResNet blocks per stage (tiny runs)")
    step.add_argument("--channels-last", action="store_true", help="channels_last memory format for all variants")
    step.add_argument("--no-flops", action="store_true", help="skip the FLOP count of each variant")
    _add_device_arguments(step)

    cache = add_command(
        benches, "val-cache", _run_val_cache,
        help="a frozen cell's validation with and without the backbone feature cache (same run)")
    cache.add_argument("--out", default="results/benchmarks/val_cache.json", help="JSON file to write")
    cache.add_argument("--method", default="baseline", choices=["baseline", "pfenet"],
                       help="the frozen cell's method (default baseline)")
    cache.add_argument("--episodes", type=int, default=200, help="validation episodes per pass")
    cache.add_argument("--repeats", type=int, default=5, help="alternating timed passes of each")
    _add_device_arguments(cache, threads=1)

    from ..data.commands import add_loader_benchmark

    add_loader_benchmark(benches)


def _run_svf_step(args):
    from .tools.step_bench import run_svf_step, write_json

    result = run_svf_step(size=args.size, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                          threads=args.threads, backbone=args.backbone, width=args.width, depths=args.depths,
                          channels_last=args.channels_last, count_flops=not args.no_flops, device=args.device)
    out = write_json(result, args.out)
    console.result(", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()) + f" -> {out}")
    return 0


def _run_val_cache(args):
    from .tools.step_bench import write_json
    from .tools.val_bench import run_val_cache

    result = run_val_cache(args.method, args.episodes, args.repeats, args.threads, args.device)
    out = write_json(result, args.out)
    console.result(f"cached / uncached {result['cached_over_uncached']:.3f}, same scores: {result['equal']} "
                   f"-> {out}")
    return 0 if result["equal"] else 1


def _add_check_checkpoint(subparsers) -> None:
    parser = add_command(
        subparsers, "check-checkpoint", _run_check_checkpoint,
        help="load a published SVF-repo / PFENet / BAM checkpoint into our model and run a random episode (settings "
             "not given are read off the keys)")
    parser.add_argument("path", help="the .pth file ({'state_dict': ...}, 'module.' prefixes allowed)")
    parser.add_argument("--method", choices=["baseline", "pfenet", "bam"], help="default: read off the keys")
    parser.add_argument("--backbone", choices=["resnet50", "vgg16"], help="default: read off the keys")
    parser.add_argument("--shot", type=int, help="default: read off the keys (K-shot layers)")
    parser.add_argument("--dilation", choices=["pfenet", "torchvision"],
                        help="default per method: torchvision (SVF repo baseline/PFENet), pfenet (BAM); "
                             "original PFENet checkpoints need pfenet")
    parser.add_argument("--bins", help="PFENet FEM bins, comma-separated (default 60,30,15,8)")
    parser.add_argument("--dataset", choices=["pascal", "coco"], help="BAM: with --fold, the base classes")
    parser.add_argument("--fold", type=int, help="BAM: with --dataset, which classes are the base classes")
    parser.add_argument("--size", type=int, default=65, help="side of the random test episode")


def _run_check_checkpoint(args):
    import json

    from ..models.checkpoints import check_checkpoint
    from ..policy import apply_policy

    kwargs = {"dilation": args.dilation} if args.dilation else {}
    if args.dataset:  # BAM's base classes: the fold's, or (no fold) only their number
        from ..data.datasets import base_classes

        classes = base_classes(args.dataset, 0 if args.fold is None else args.fold)
        kwargs.update({"num_base_classes": len(classes)} if args.fold is None else {"base_classes": classes})
    if args.bins:
        kwargs["bins"] = tuple(float(b) if "." in b else int(b) for b in args.bins.split(","))
    result = check_checkpoint(args.path, method=args.method, backbone=args.backbone, shot=args.shot,
                              decompose=lambda m: apply_policy(m, "svf", rank="official"), size=args.size, **kwargs)
    print(json.dumps(result, indent=2, default=str))
    return 0


COMMANDS = (
    _add_train, _add_train_base, _add_import_base_learner, _add_pretrain, _add_evaluate, _add_probe, _add_estimate,
    _add_bench,
    _add_check_checkpoint,
)


def add_commands(subparsers) -> None:
    for adder in COMMANDS:
        adder(subparsers)
