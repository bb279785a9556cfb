"""``svf <command>``: the command line every Snakemake rule calls, with explicit arguments.

Each command is declared by a ``_add_<command>(subparsers)`` function below that defines its arguments and points
``func`` at the code that runs it. Heavy modules (torch, pandas, matplotlib) are imported inside the command
functions only, so ``svf --help`` and light commands start fast; per-job start-up time matters for the demo DAG.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import __version__
from .tables_config import DEFAULT_SEED

CommandAdder = Callable[[argparse._SubParsersAction], None]
_COMMANDS: list[CommandAdder] = []


def command(adder: CommandAdder) -> CommandAdder:
    """Register a ``_add_<command>`` function."""
    _COMMANDS.append(adder)
    return adder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"svf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for adder in _COMMANDS:
        adder(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process (the ``svf`` program, svf/__main__.py, first offers it to a warm server)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("svf: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


# --- commands -----------------------------------------------------------------------------------------------------


# --- engine: training, evaluation (owner: engine) ---------------------------------------------------------------


def _code_version() -> str:
    """The git commit of the source tree when there is one, else the package version."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"svf-{__version__}"


def _add_cell_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True,
                        help="cell specification: JSON text or a JSON file (the Snakefile passes it)")
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--splits", required=True, help="fold splits directory (svf splits)")
    parser.add_argument("--weights", help="ImageNet (or demo stand-in) backbone weights file")
    parser.add_argument("--base-learner", help="BAM only: the stage-1 PSPNet base learner (svf train-base)")
    parser.add_argument("--config-hash", default="", help="hash of the run's config, recorded in the outputs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto (a free CUDA GPU, else CPU) or a torch device")


@command
def _add_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one table cell (checkpoints every epoch, resumes)")
    _add_cell_arguments(parser)
    parser.add_argument("--out-dir", required=True, help="cell directory: model.pt, train_log.csv, ...")
    parser.add_argument("--checkpoint-dir", required=True,
                        help="where last.pt lives (outside the rule outputs so a killed job resumes)")

    def run(args):
        from .engine.spec import load_spec
        from .engine.train import train_cell

        train_cell(load_spec(args.spec), args.dataset_root, args.splits, args.weights, args.out_dir,
                   args.checkpoint_dir, base_learner=args.base_learner, config_hash=args.config_hash,
                   threads=args.threads, device=args.device, code_version=_code_version())

    parser.set_defaults(func=run)


@command
def _add_train_base(subparsers) -> None:
    parser = subparsers.add_parser("train-base", help="BAM stage 1: train the PSPNet base learner of a fold")
    parser.add_argument("--spec", required=True, help="base-learner specification (JSON text or file)")
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--splits", help="fold splits directory (unused: the stage reads the whole lists)")
    parser.add_argument("--weights", help="ImageNet (or demo stand-in) backbone weights file")
    parser.add_argument("--out", required=True, help="model.pt to write (full PSPNet state dict)")
    parser.add_argument("--checkpoint-dir", required=True, help="where last.pt lives (resume after a kill)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")

    def run(args):
        from .engine.base_learner import train_base_learner
        from .engine.spec import load_spec

        train_base_learner(load_spec(args.spec), args.dataset_root, args.weights, args.out, args.checkpoint_dir,
                           threads=args.threads, device=args.device)

    parser.set_defaults(func=run)


@command
def _add_import_base_learner(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-base-learner", help="convert a published BAM base learner (best.pth) to this project's layout")
    parser.add_argument("--source", required=True, help="BAM's initmodel/PSPNet/<dataset>/split<k>/<backbone>/best.pth")
    parser.add_argument("--out", required=True, help="model.pt to write")

    def run(args):
        from .files import torch_save
        from .models.checkpoints import to_pspnet_state

        state = to_pspnet_state(args.source)
        torch_save(args.out, state)
        print(f"{args.source}: {len(state)} tensors -> {args.out}")

    parser.set_defaults(func=run)


@command
def _add_pretrain(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="demo only: pretrain a tiny backbone on synthetic object images (ImageNet stand-in)")
    parser.add_argument("--spec", required=True,
                        help='JSON: {"model": {"backbone", "width", "depths", "stem"}, "steps", "size", '
                             '"batch_size", "lr", "classes", "seed"}')
    parser.add_argument("--out", required=True, help="backbone weights file to write")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")

    def run(args):
        from .engine.pretrain import pretrain_backbone
        from .engine.spec import load_spec

        pretrain_backbone(load_spec(args.spec), args.out, threads=args.threads, device=args.device)

    parser.set_defaults(func=run)


@command
def _add_figure4(subparsers) -> None:
    parser = subparsers.add_parser(
        "figure4", help="Figure 4: cues of the singular components that changed most in a trained SVF cell")
    _add_cell_arguments(parser)
    parser.add_argument("--model", required=True, help="the cell's model.pt (singular_values.json beside it)")
    parser.add_argument("--images", type=int, default=4, help="query images to show")
    parser.add_argument("--out", required=True, help="figure path (.png)")

    def run(args):
        from .engine.spec import load_spec
        from .report.figure4 import figure4

        figure4(load_spec(args.spec), args.dataset_root, args.splits, args.weights, args.model, args.out,
                n_images=args.images, base_learner=args.base_learner, threads=args.threads)

    parser.set_defaults(func=run)


@command
def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a trained cell on its test episodes")
    _add_cell_arguments(parser)
    parser.add_argument("--model", required=True, help="the cell's model.pt")
    parser.add_argument("--out", required=True, help="metrics.json to write")

    def run(args):
        from .engine.evaluate import evaluate_cell
        from .engine.spec import load_spec

        evaluate_cell(load_spec(args.spec), args.dataset_root, args.splits, args.weights, args.model, args.out,
                      base_learner=args.base_learner, config_hash=args.config_hash, threads=args.threads,
                      device=args.device, code_version=_code_version())

    parser.set_defaults(func=run)




# --- data: downloads, synthetic data, preparation, splits (owner: data) -------------------------------------------


def _data_fail(command_name: str, exc: Exception) -> int:
    print(f"svf {command_name}: error: {exc}", file=sys.stderr)
    return 1


def _add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """The dataset as a positional (``svf prepare pascal``) or as ``--dataset pascal``."""
    parser.add_argument("dataset", nargs="?", choices=("pascal", "coco"), help="pascal or coco")
    parser.add_argument("--dataset", dest="dataset_option", choices=("pascal", "coco"), help="same as the positional")


def _dataset_of(args, parser_name: str) -> str:
    if args.dataset and args.dataset_option and args.dataset != args.dataset_option:
        raise SystemExit(f"svf {parser_name}: error: dataset given twice ({args.dataset} and {args.dataset_option})")
    name = args.dataset or args.dataset_option
    if name is None:
        raise SystemExit(f"svf {parser_name}: error: name the dataset (pascal or coco)")
    return name


@command
def _add_download(subparsers) -> None:
    parser = subparsers.add_parser("download", help="download raw datasets / backbone weights (verified, resumable)")
    parser.add_argument("items", nargs="*", default=["pascal"],
                        help="artifact keys or groups: pascal, coco, weights, all (see --list); default: pascal")
    parser.add_argument("--dest", "--out-dir", dest="dest", default="resources/downloads",
                        help="download and extraction directory")
    parser.add_argument("--copy-to", help="also place the (single) downloaded file here, e.g. a weights path")
    parser.add_argument("--mirror", action="append", default=None,
                        help="directory with pre-downloaded files, used instead of the URL (repeatable; "
                             "default: $SVF_MIRROR, os.pathsep-separated)")
    parser.add_argument("--no-extract", action="store_true", help="keep archives packed")
    parser.add_argument("--list", action="store_true", help="print the artifact registry and exit")
    parser.add_argument("--retries", type=int, default=3, help="retries (with resume) per URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        from .data.download import GROUPS, REGISTRY, DownloadError, download

        if args.list:
            for key, a in REGISTRY.items():
                check = f"md5 {a.md5}" if a.md5 else f"sha256 {a.sha256_prefix}..." if a.sha256_prefix else \
                    "sha256 recorded at first download"
                src = a.urls[0] if a.urls else f"Google Drive folder {a.gdrive_folder}"
                print(f"{key:22s} {a.filename:32s} {a.size:>7s}  {check}\n{'':22s} {src}")
            print("groups: " + "; ".join(f"{g} = {' '.join(k)}" for g, k in GROUPS.items()))
            return 0
        try:
            paths = download(args.items, args.dest, mirror=args.mirror, do_extract=not args.no_extract,
                             progress=not args.quiet, retries=args.retries, timeout=args.timeout)
            if args.copy_to:
                if len(paths) != 1:
                    raise ValueError(f"--copy-to needs exactly one artifact, got {len(paths)}")
                from .data.datasets import place_file

                place_file(paths[0], args.copy_to, "hardlink")
        except (DownloadError, ValueError, OSError) as exc:
            return _data_fail("download", exc)
        for path in paths:
            print(path)
        return 0

    parser.set_defaults(func=run)


@command
def _add_synth(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="generate a synthetic raw dataset in the real VOC+SBD / COCO layout")
    _add_dataset_argument(parser)
    parser.add_argument("--out", required=True, help="raw directory to write (then: svf prepare --raw OUT)")
    parser.add_argument("--train-per-class", type=int, default=None,
                        help="train images per primary class (default 8: >= 6 images in every train pool)")
    parser.add_argument("--val-per-class", type=int, default=None,
                        help="val images per primary class (default 6: >= 6 images in every val pool)")
    parser.add_argument("--train", type=int, default=None,
                        help="alternatively: total train images, rounded up to whole rounds over the classes")
    parser.add_argument("--val", type=int, default=None, help="alternatively: total val images (rounded up)")
    parser.add_argument("--image-size", "--size", dest="image_size", type=int, default=128,
                        help="square image side in pixels (>= 128 for --min-pixels 2048)")
    parser.add_argument("--min-pixels", type=int, default=2048,
                        help="the split rule's threshold the objects are sized for (use the same in svf splits)")
    parser.add_argument("--seed", type=int, default=0)

    def run(args):
        import json

        from .data.datasets import NUM_CLASSES
        from .data.synthetic import SynthConfig, guaranteed_pool_size, synth

        dataset = _dataset_of(args, "synth")
        n = NUM_CLASSES[dataset]

        def per_class(per, total, default):
            if per is not None and total is not None:
                raise SystemExit("svf synth: error: give a per-class count or a total, not both")
            return per if per is not None else -(-total // n) if total is not None else default

        config = SynthConfig(dataset, train_per_class=per_class(args.train_per_class, args.train, 8),
                             val_per_class=per_class(args.val_per_class, args.val, 6),
                             image_size=args.image_size, min_pixels=args.min_pixels, seed=args.seed)
        try:
            manifest = synth(args.out, config)
        except ValueError as exc:
            return _data_fail("synth", exc)
        print(json.dumps({"counts": manifest["counts"], "guaranteed_pool_size": manifest["guaranteed_pool_size"]}))
        smallest = min(guaranteed_pool_size(config, s) for s in ("train", "val"))
        if smallest < 6:
            print(f"svf synth: warning: support pools are only guaranteed {smallest} images; 5-shot episodes "
                  "need 6 (raise --train-per-class / --val-per-class)", file=sys.stderr)
        return 0

    parser.set_defaults(func=run)


@command
def _add_prepare(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="build a prepared dataset (masks + lists) from raw files")
    _add_dataset_argument(parser)
    parser.add_argument("--raw", help="download dir: PASCAL VOCdevkit/, benchmark_RELEASE/, train_noval.txt; "
                                      "COCO train2014/, val2014/, annotations/")
    parser.add_argument("--out", required=True, help="prepared dataset directory to write")
    parser.add_argument("--voc", help="PASCAL: VOCdevkit/VOC2012 folder (default RAW/VOCdevkit/VOC2012)")
    parser.add_argument("--sbd", help="PASCAL: SBD dataset folder (default RAW/benchmark_RELEASE/dataset)")
    parser.add_argument("--sbd-list", help="PASCAL: SBD train_noval.txt (default RAW/train_noval.txt)")
    parser.add_argument("--segmentation-class-aug", help="PASCAL: use this ready-made SegmentationClassAug folder")
    parser.add_argument("--prefer", default="voc", choices=("voc", "sbd"),
                        help="PASCAL: mask source for images annotated by both (default voc)")
    parser.add_argument("--link", default="hardlink", choices=("hardlink", "symlink", "copy"),
                        help="how images enter the prepared tree (hardlink falls back to copy across devices)")
    parser.add_argument("--workers", type=int, default=1, help="processes for mask conversion")
    parser.add_argument("--reference", help="reference lists dir (default: config/reference_splits; synthetic "
                                            "data: none unless given)")
    parser.add_argument("--coco-val-order", default="reference", choices=("reference", "sorted"),
                        help="COCO: val list in PFENet's val.txt order (default; the authors' test queries are its "
                             "first ~1000 images) or sorted by id")
    parser.add_argument("--strict-reference", action="store_true",
                        help="exit 3 when the lists of the real data differ from PFENet's")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        import json

        from .data.splits import DEFAULT_REFERENCE_DIR
        from .data.synthetic import is_synthetic

        dataset = _dataset_of(args, "prepare")
        raw = args.raw
        if raw is None and not (dataset == "pascal" and args.voc):
            return _data_fail("prepare", ValueError("--raw is required (or --voc for PASCAL)"))
        source = "synthetic" if raw is not None and is_synthetic(raw) else None
        reference = args.reference or DEFAULT_REFERENCE_DIR
        try:
            if dataset == "pascal":
                from .data.pascal import PascalRaw, prepare_pascal

                layout = PascalRaw.under(raw, args.voc, args.sbd, args.sbd_list, args.segmentation_class_aug)
                summary = prepare_pascal(layout, args.out, link=args.link, prefer=args.prefer, workers=args.workers,
                                         progress=not args.quiet, reference_dir=reference,
                                         source=source or "voc2012+sbd")
            else:
                from .data.coco import prepare_coco

                # synthetic ids are not PFENet's: no reference order unless a reference is named explicitly
                order_reference = args.reference if source == "synthetic" else reference
                summary = prepare_coco(raw, args.out, link=args.link, workers=args.workers, progress=not args.quiet,
                                       reference_dir=order_reference, source=source or "coco2014",
                                       val_order=args.coco_val_order)
        except (FileNotFoundError, ValueError) as exc:
            return _data_fail("prepare", exc)
        print(json.dumps(summary))
        if summary.get("reference_problems") and args.strict_reference:
            print("svf prepare: lists differ from the reference (--strict-reference)", file=sys.stderr)
            return 3
        return 0

    parser.set_defaults(func=run)


@command
def _add_splits(subparsers) -> None:
    parser = subparsers.add_parser("splits", help="scan masks once and write the per-fold lists and support pools")
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--out", required=True, help="splits directory to write")
    parser.add_argument("--settings", nargs="+", default=["dagger", "original"], choices=("dagger", "original"))
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3], choices=(0, 1, 2, 3))
    parser.add_argument("--coco-split", default="interleaved", choices=("interleaved", "contiguous"),
                        help="COCO fold classes: every 4th class (PFENet/BAM/SVF) or blocks of 20 (PANet)")
    parser.add_argument("--min-pixels", type=int, default=2048, help="pixels a class needs to count (2*32*32)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the mask scan")
    parser.add_argument("--reference", help="reference lists dir (default: config/reference_splits; synthetic "
                                            "data: none unless given)")
    parser.add_argument("--coco-val-order", default="reference", choices=("reference", "sorted"),
                        help="COCO: val list in PFENet's val.txt order (default; the authors' test queries are its "
                             "first ~1000 images) or sorted by id")
    parser.add_argument("--strict-reference", action="store_true",
                        help="exit 3 when real PASCAL lists differ from the authors' published ones")
    parser.add_argument("--min-pool-size", type=int, default=0,
                        help="exit 4 if an image list or a support pool has fewer images (e.g. 6 = 5-shot + query)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        from .data.datasets import open_dataset
        from .data.splits import DEFAULT_REFERENCE_DIR, make_splits

        try:
            dataset = open_dataset(args.dataset_root)
            summary, check = make_splits(dataset, args.out, settings=args.settings, folds=args.folds,
                                         coco_split=args.coco_split, min_pixels=args.min_pixels,
                                         workers=args.workers, reference_dir=args.reference or DEFAULT_REFERENCE_DIR,
                                         progress=not args.quiet)
        except (FileNotFoundError, ValueError) as exc:
            return _data_fail("splits", exc)
        for name, info in summary["files"].items():
            pools = info["pool_sizes"].values()
            print(f"{name:24s} {info['images']:6d} images  pools {min(pools)}..{max(pools)}")
        if not check.applicable:
            print(f"reference check skipped: {check.reason}")
        elif check.ok:
            print(f"reference check: identical to the authors' lists ({check.files_compared} files)")
        else:
            print(f"WARNING: {len(check.mismatches)} differences from the authors' published lists:", file=sys.stderr)
            for line in check.mismatches:
                print(f"WARNING:   {line}", file=sys.stderr)
            if args.strict_reference:
                return 3
        small = [f"{name}: {info['images']} images" for name, info in summary["files"].items()
                 if info["images"] < args.min_pool_size]
        small += [f"{name}: class {c} pool has {n} images" for name, info in summary["files"].items()
                  for c, n in info["pool_sizes"].items() if n < args.min_pool_size]
        if small:
            print(f"svf splits: error: below --min-pool-size {args.min_pool_size}:\n  " + "\n  ".join(small),
                  file=sys.stderr)
            return 4
        return 0

    parser.set_defaults(func=run)


# --- report: results.csv, tables, figures (owner: report) ---------------------------------------------------------


def _report_call(name: str, fn, *args, **kwargs) -> int:
    """Run a report function; its input errors (ValueError subclasses naming the file/key) become one line."""
    from .report.collect import CollectError
    from .report.figures import FigureError
    from .report.study import StudyError
    from .report.tables import TablesError
    from .tables_config import TablesConfigError

    try:
        fn(*args, **kwargs)
    except (CollectError, TablesError, FigureError, StudyError, TablesConfigError, KeyError) as exc:
        print(f"svf {name}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, nargs="+",
                        help="results.csv written by `svf collect` (several: combined, a shared cell once)")
    parser.add_argument("--tables", required=True, help="config/tables.yaml")
    parser.add_argument("--paper", required=True, help="config/paper_results.csv")
    parser.add_argument("--only", nargs="+", metavar="TABLE", help="only these tables (default: all)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="|reproduced - paper| in mIoU points that counts as reproduced (default 1.0)")
    parser.add_argument("--demo", action="store_true", help="mark titles 'demo scale — not comparable'")
    parser.add_argument("--shots", nargs="+", type=int, help="restrict the tables to these shots")
    parser.add_argument("--folds", nargs="+", type=int, help="restrict the tables to these folds (means then "
                        "cover only these folds and are not compared with the paper)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED],
                        help=f"training seeds of every cell (default {DEFAULT_SEED}); several: mean ± std")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept results of different config hashes")


def _load_table_inputs(args):
    from .report.collect import check_config_hashes, read_results
    from .report.tables import read_paper
    from .tables_config import load_tables

    import pandas as pd

    tables = load_tables(args.tables)
    results = pd.concat([read_results(path) for path in args.results], ignore_index=True)
    results = results.drop_duplicates("cell_id").reset_index(drop=True)
    if "config_hash" in results.columns and len(results):
        check_config_hashes(results, args.allow_mixed_config)
    return tables, results, read_paper(args.paper)


@command
def _add_collect(subparsers) -> None:
    parser = subparsers.add_parser("collect", help="per-cell metrics.json + benchmarks -> results.csv")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--benchmarks", required=True, help="Snakemake benchmark directory (train/, evaluate/)")
    parser.add_argument("--out", required=True, help="results.csv to write")
    parser.add_argument("--cells", nargs="+", metavar="CELL_ID",
                        help="collect these cells (default: every metrics.json under --cells-root)")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept cells of different config hashes")

    def run(args):
        from .report.collect import collect, write_results

        def go():
            results = collect(args.cells_root, args.benchmarks, args.cells, args.allow_mixed_config)
            write_results(results, args.out)
            print(f"svf collect: {len(results)} cells -> {args.out}")

        return _report_call("collect", go)

    parser.set_defaults(func=run)


@command
def _add_tables(subparsers) -> None:
    parser = subparsers.add_parser("tables", help="results.csv -> tableN.{csv,md,tex} beside the paper's numbers")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (results/tables)")
    parser.add_argument("--summary", help="summary markdown to write (default: <out>/summary.md unless --only)")
    parser.add_argument("--comparison", help="long comparison csv to write (default: <out>/comparison.csv "
                        "unless --only)")

    def run(args):
        from pathlib import Path

        from .report.tables import write_tables

        def go():
            tables, results, paper = _load_table_inputs(args)
            whole = args.only is None
            summary = args.summary or (Path(args.out) / "summary.md" if whole else None)
            comparison = args.comparison or (Path(args.out) / "comparison.csv" if whole else None)
            written = write_tables(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                                   demo=args.demo, shots=args.shots, folds=args.folds, summary=summary,
                                   comparison=comparison, seeds=args.seeds)
            print(f"svf tables: wrote {len(written)} files to {args.out}")

        return _report_call("tables", go)

    parser.set_defaults(func=run)


@command
def _add_figure6(subparsers) -> None:
    parser = subparsers.add_parser("figure6", help="Figure 6: layer3's top singular values before/after SVF")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--cells", nargs="+", required=True, metavar="CELL_ID",
                        help="SVF cells with singular_values.json (the paper: R50 baseline†+SVF 1-shot, one per fold)")
    parser.add_argument("--out", required=True, help="figure path (.png); a .pdf is written next to it")
    parser.add_argument("--top", type=int, default=30, help="how many of the largest initial values (default 30)")
    parser.add_argument("--data", help="also write the plotted numbers to this csv")
    parser.add_argument("--title", default="", help="figure title")

    def run(args):
        from .report.figures import write_figure6

        return _report_call("figure6", write_figure6, args.cells_root, args.cells, args.out, top=args.top,
                            data_csv=args.data, title=args.title)

    parser.set_defaults(func=run)


@command
def _add_curves(subparsers) -> None:
    parser = subparsers.add_parser("curves", help="training loss and validation mIoU per epoch of a set of cells")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--cells", nargs="*", default=[], metavar="CELL_ID", help="cells whose train_log.csv to plot")
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")
    parser.add_argument("--title", default="training curves", help="figure title (e.g. the table name)")

    def run(args):
        from .report.figures import write_curves

        return _report_call("curves", write_curves, args.cells_root, args.cells, args.out, args.title)

    parser.set_defaults(func=run)


@command
def _add_overview(subparsers) -> None:
    parser = subparsers.add_parser("overview", help="reproduced vs paper, one panel per table")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")

    def run(args):
        from .report.figures import write_overview

        def go():
            tables, results, paper = _load_table_inputs(args)
            write_overview(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                           demo=args.demo, shots=args.shots, folds=args.folds, seeds=args.seeds)

        return _report_call("overview", go)

    parser.set_defaults(func=run)


@command
def _add_estimate(subparsers) -> None:
    parser = subparsers.add_parser(
        "estimate", help="time every kind of cell on this device (synthetic tensors) and project device-hours")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", nargs="+", help="config YAML files, merged in order as Snakemake does")
    source.add_argument("--config-json", help="the merged config as JSON (what the Snakemake rule passes)")
    parser.add_argument("--tables", nargs="+", help="tables to estimate (default: the config's tables.build)")
    parser.add_argument("--splits", nargs="*", default=[], metavar="DATASET=DIR",
                        help="prepared splits to count training images (default: PASCAL's published lists, COCO "
                             "assumed)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per kind (after one warm-up)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results", help="directory for estimate.csv and estimate.md")

    def run(args):
        import json

        from .engine.estimate import estimate, write_estimate

        if args.configfile:
            import yaml

            from .engine.spec import merge_configs

            config = merge_configs([yaml.safe_load(open(path)) for path in args.configfile])
        else:
            config = json.loads(args.config_json)
        splits = dict(item.split("=", 1) for item in args.splits)
        result = estimate(config, args.tables, device=args.device, steps=args.steps, splits=splits or None,
                          threads=args.threads, progress=lambda line: print(line, flush=True))
        for path in write_estimate(result, args.out):
            print(f"svf estimate: wrote {path}")
        return 0

    parser.set_defaults(func=run)


@command
def _add_study(subparsers) -> None:
    parser = subparsers.add_parser(
        "study", help="Tables 4-8 over several seeds: 95%% intervals, differences to the reference rows, claims")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="directory for study.md and study.csv")
    parser.add_argument("--figures-dir", required=True, help="directory for study_<table>.png")
    parser.add_argument("--references", nargs="*", default=[], metavar="TABLE=ROW",
                        help="reference row of a table (defaults: frozen for tables 4-6, svf for 7-8)")

    def run(args):
        from .report.study import write_study

        def go():
            references = dict(item.split("=", 1) for item in args.references)
            tables, results, paper = _load_table_inputs(args)
            names = args.only or ["table4", "table5", "table6", "table7", "table8"]
            written = write_study(tables, results, paper, args.out, args.figures_dir, names, seeds=args.seeds,
                                  folds=args.folds, references=references, demo=args.demo)
            print(f"svf study: wrote {len(written)} files")

        return _report_call("study", go)

    parser.set_defaults(func=run)


@command
def _add_bench_loader(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench-loader", help="episodes/second of the training episode loader (writes results/benchmarks/loader.json)")
    parser.add_argument("--root", help="prepared dataset (default: write a synthetic 500x375 one in a temp dir)")
    parser.add_argument("--splits", help="its splits directory (required with --root)")
    parser.add_argument("--setting", default="original", choices=["dagger", "original"])
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100, help="episodes per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = one DataLoader worker)")
    parser.add_argument("--crop", type=int, default=473)
    parser.add_argument("--out", default="results/benchmarks/loader.json")

    def run(args):
        import json
        from pathlib import Path

        from .data.loader_bench import bench_loader

        result = bench_loader(args.root, args.splits, args.setting, args.fold, args.shot, args.episodes,
                              args.repeats, args.threads, args.crop)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        rate = result["episodes_per_s"]
        print(f"bench-loader: {rate['median']:.1f} episodes/s (median; wall), "
              f"{result['cpu_episodes_per_s']['median']:.1f} per CPU-second -> {out}")
        return 0

    parser.set_defaults(func=run)


# --- core: SVF benchmarks (owner: core) --------------------------------------------------------------------------


@command
def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks of the SVF core (see `svf bench svf-step -h`)")
    benches = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    step = benches.add_parser(
        "svf-step", help="time an SVF training step vs frozen / full fine-tune, and merged vs plain evaluation")
    step.add_argument("--out", default="results/benchmarks/svf_step.json", help="JSON file to write")
    step.add_argument("--size", type=int, default=224, help="square input size")
    step.add_argument("--batch", type=int, default=1)
    step.add_argument("--repeats", type=int, default=5, help="timed round-robin repeats (median is reported)")
    step.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    step.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    step.add_argument("--backbone", default="resnet50", choices=["resnet50", "vgg16"])
    step.add_argument("--width", type=float, default=1.0, help="channel width multiplier (tiny runs)")
    step.add_argument("--depths", type=int, nargs=4, metavar="N", help="ResNet blocks per stage (tiny runs)")
    step.add_argument("--channels-last", action="store_true", help="channels_last memory format for all variants")
    step.add_argument("--no-flops", action="store_true", help="skip the FLOP count of each variant")
    step.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU) or a torch device")

    def run(args):
        from .bench import run_svf_step, write_json

        result = run_svf_step(size=args.size, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                              threads=args.threads, backbone=args.backbone, width=args.width, depths=args.depths,
                              channels_last=args.channels_last, count_flops=not args.no_flops, device=args.device)
        out = write_json(result, args.out)
        print("svf-step: " + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()) + f" -> {out}")
        return 0

    step.set_defaults(func=run)

    cache = benches.add_parser(
        "val-cache", help="a frozen cell's validation with and without the backbone feature cache (same run)")
    cache.add_argument("--out", default="results/benchmarks/val_cache.json", help="JSON file to write")
    cache.add_argument("--method", default="baseline", choices=["baseline", "pfenet"])
    cache.add_argument("--episodes", type=int, default=200, help="validation episodes per pass")
    cache.add_argument("--repeats", type=int, default=5, help="alternating timed passes of each")
    cache.add_argument("--threads", type=int, default=1)
    cache.add_argument("--device", default="auto")

    def run_cache(args):
        from .bench import write_json
        from .engine.val_bench import run_val_cache

        result = run_val_cache(args.method, args.episodes, args.repeats, args.threads, args.device)
        out = write_json(result, args.out)
        print(f"val-cache: cached / uncached {result['cached_over_uncached']:.3f}, same scores: {result['equal']} "
              f"-> {out}")
        return 0 if result["equal"] else 1

    cache.set_defaults(func=run_cache)


# --- models: published checkpoints (owner: models) ----------------------------------------------------------------


@command
def _add_check_checkpoint(subparsers) -> None:
    parser = subparsers.add_parser(
        "check-checkpoint", help="load a published SVF-repo / PFENet / BAM checkpoint into our model and run a "
                                 "random episode (settings not given are read off the keys)")
    parser.add_argument("path", help="the .pth file ({'state_dict': ...}, 'module.' prefixes allowed)")
    parser.add_argument("--method", choices=["baseline", "pfenet", "bam"])
    parser.add_argument("--backbone", choices=["resnet50", "vgg16"])
    parser.add_argument("--shot", type=int)
    parser.add_argument("--dilation", choices=["pfenet", "torchvision"],
                        help="default per method: torchvision (SVF repo baseline/PFENet), pfenet (BAM); "
                             "original PFENet checkpoints need pfenet")
    parser.add_argument("--bins", help="PFENet FEM bins, comma-separated (default 60,30,15,8)")
    parser.add_argument("--dataset", choices=["pascal", "coco"], help="BAM: with --fold, the base classes")
    parser.add_argument("--fold", type=int)
    parser.add_argument("--size", type=int, default=65, help="side of the random test episode")

    def run(args):
        import json

        from .models.checkpoints import check_checkpoint
        from .policy import apply_policy

        kwargs = {k: v for k, v in {"dilation": args.dilation, "dataset": args.dataset, "fold": args.fold}.items()
                  if v is not None}
        if args.bins:
            kwargs["bins"] = tuple(float(b) if "." in b else int(b) for b in args.bins.split(","))
        result = check_checkpoint(args.path, method=args.method, backbone=args.backbone, shot=args.shot,
                                  decompose=lambda m: apply_policy(m, "svf", rank="official"), size=args.size,
                                  **kwargs)
        print(json.dumps(result, indent=2, default=str))
        return 0

    parser.set_defaults(func=run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
