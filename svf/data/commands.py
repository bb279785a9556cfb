"""``svf`` commands of the data layer: download, synth, prepare, splits, and the loader benchmark (``svf bench
loader``, registered by the engine's ``bench`` command); arguments here, the work in svf.data, heavy imports inside
the command functions."""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from .. import console
from ..commands import Run, add_command
from ..errors import DataError, SvfError, UsageError


@contextmanager
def _as(kind: type, *plain: type):
    """Plain ``ValueError``s of the data code are mistakes of this kind (the arguments, the data)."""
    try:
        yield
    except plain as exc:
        if isinstance(exc, SvfError):
            raise
        raise kind(str(exc)) from exc


def _add_dataset_command(subparsers, name: str, run: Run, help: str) -> argparse.ArgumentParser:
    """A command on one dataset, named as a positional (``svf prepare pascal``) or as ``--dataset pascal``."""
    parser = add_command(subparsers, name, run, help=help)
    parser.add_argument("dataset", nargs="?", choices=("pascal", "coco"), help="pascal or coco")
    parser.add_argument("--dataset", dest="dataset_option", choices=("pascal", "coco"), help="same as the positional")
    return parser


def _dataset_of(args) -> str:
    if args.dataset and args.dataset_option and args.dataset != args.dataset_option:
        raise UsageError(f"dataset given twice ({args.dataset} and {args.dataset_option})")
    name = args.dataset or args.dataset_option
    if name is None:
        raise UsageError("name the dataset (pascal or coco)")
    return name


def _add_download(subparsers) -> None:
    parser = add_command(subparsers, "download", _run_download,
                         help="download raw datasets / backbone weights (verified, resumable)")
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


def _run_download(args):
    from ..data.download import GROUPS, REGISTRY, download

    if args.list:
        for key, a in REGISTRY.items():
            check = f"md5 {a.md5}" if a.md5 else f"sha256 {a.sha256_prefix}..." if a.sha256_prefix else \
                "sha256 recorded at first download"
            src = a.urls[0] if a.urls else f"Google Drive folder {a.gdrive_folder}"
            print(f"{key:22s} {a.filename:32s} {a.size:>7s}  {check}\n{'':22s} {src}")
        print("groups: " + "; ".join(f"{g} = {' '.join(k)}" for g, k in GROUPS.items()))
        return 0
    with _as(UsageError, ValueError):
        paths = download(args.items, args.dest, mirror=args.mirror, do_extract=not args.no_extract,
                         progress=not args.quiet, retries=args.retries, timeout=args.timeout)
        if args.copy_to:
            if len(paths) != 1:
                raise ValueError(f"--copy-to needs exactly one artifact, got {len(paths)}")
    if args.copy_to:
        from ..data.datasets import place_file

        place_file(paths[0], args.copy_to, "hardlink")
    for path in paths:
        print(path)
    console.result(f"{len(paths)} file(s) verified -> {args.copy_to or args.dest}")
    return 0


def _add_synth(subparsers) -> None:
    from ..synthetic.looks import LOOK_SCHEMES

    parser = _add_dataset_command(subparsers, "synth", _run_synth,
                                  help="generate a synthetic raw dataset in the real VOC+SBD / COCO layout")
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
    parser.add_argument("--seed", type=int, default=0, help="random seed of the images (default 0)")
    parser.add_argument("--looks", choices=LOOK_SCHEMES, default="shared",
                        help="how classes look: shared (the demo's) or fold_private (PASCAL only: each fold's "
                             "classes look like no other fold's; docs/study.md, \"Second world\")")


def _run_synth(args):
    import json

    from ..data.datasets import NUM_CLASSES
    from ..synthetic.raw import SynthConfig, guaranteed_pool_size, synth

    dataset = _dataset_of(args)
    n = NUM_CLASSES[dataset]

    def per_class(per, total, default):
        if per is not None and total is not None:
            raise UsageError("give a per-class count or a total, not both")
        return per if per is not None else -(-total // n) if total is not None else default

    config = SynthConfig(dataset, train_per_class=per_class(args.train_per_class, args.train, 8),
                         val_per_class=per_class(args.val_per_class, args.val, 6),
                         image_size=args.image_size, min_pixels=args.min_pixels, seed=args.seed,
                         looks=args.looks)
    with _as(UsageError, ValueError):
        manifest = synth(args.out, config)
    print(json.dumps({"counts": manifest["counts"], "guaranteed_pool_size": manifest["guaranteed_pool_size"]}))
    smallest = min(guaranteed_pool_size(config, s) for s in ("train", "val"))
    if smallest < 6:
        print(f"svf synth: warning: support pools are only guaranteed {smallest} images; 5-shot episodes "
              "need 6 (raise --train-per-class / --val-per-class)", file=sys.stderr)
    images = sum(c["images"] if isinstance(c, dict) else c for c in manifest["counts"].values())  # COCO: per split
    console.result(f"{dataset}: {images} synthetic images -> {args.out}")
    return 0


def _add_prepare(subparsers) -> None:
    parser = _add_dataset_command(subparsers, "prepare", _run_prepare,
                                  help="build a prepared dataset (masks + lists) from raw files")
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


def _run_prepare(args):
    import json

    from ..data.splits import DEFAULT_REFERENCE_DIR
    from ..synthetic.raw import is_synthetic

    dataset = _dataset_of(args)
    raw = args.raw
    if raw is None and not (dataset == "pascal" and args.voc):
        raise UsageError("--raw is required (or --voc for PASCAL)")
    source = "synthetic" if raw is not None and is_synthetic(raw) else None
    reference = args.reference or DEFAULT_REFERENCE_DIR
    with _as(DataError, ValueError):
        if dataset == "pascal":
            from ..data.pascal import PascalRaw, prepare_pascal

            layout = PascalRaw.under(raw, args.voc, args.sbd, args.sbd_list, args.segmentation_class_aug)
            summary = prepare_pascal(layout, args.out, link=args.link, prefer=args.prefer, workers=args.workers,
                                     progress=not args.quiet, reference_dir=reference,
                                     source=source or "voc2012+sbd")
        else:
            from ..data.coco import prepare_coco

            # synthetic ids are not PFENet's: no reference order unless a reference is named explicitly
            order_reference = args.reference if source == "synthetic" else reference
            summary = prepare_coco(raw, args.out, link=args.link, workers=args.workers, progress=not args.quiet,
                                   reference_dir=order_reference, source=source or "coco2014",
                                   val_order=args.coco_val_order)
    print(json.dumps(summary))
    console.result(f"{dataset} prepared -> {args.out}")
    if summary.get("reference_problems") and args.strict_reference:
        print("svf prepare: lists differ from the reference (--strict-reference)", file=sys.stderr)
        return 3
    return 0


def _add_splits(subparsers) -> None:
    parser = add_command(subparsers, "splits", _run_splits,
                         help="scan masks once and write the per-fold lists and support pools")
    parser.add_argument("--dataset-root", required=True, help="prepared dataset directory (svf prepare)")
    parser.add_argument("--out", required=True, help="splits directory to write")
    parser.add_argument("--settings", nargs="+", default=["dagger", "original"], choices=("dagger", "original"),
                        help="training-list settings to write (default both: BAM's † and PFENet's)")
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3], choices=(0, 1, 2, 3),
                        help="folds to write (default all four)")
    from .datasets import COCO_SPLITS, DEFAULT_COCO_SPLIT

    parser.add_argument("--coco-split", default=DEFAULT_COCO_SPLIT, choices=COCO_SPLITS,
                        help="COCO fold classes: every 4th class (PFENet/BAM/SVF) or blocks of 20 (PANet)")
    parser.add_argument("--min-pixels", type=int, default=2048, help="pixels a class needs to count (2*32*32)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the mask scan")
    parser.add_argument("--reference", help="reference lists dir (default: config/reference_splits)")
    parser.add_argument("--strict-reference", action="store_true",
                        help="exit 3 when real PASCAL lists differ from the authors' published ones")
    parser.add_argument("--min-pool-size", type=int, default=0,
                        help="exit 4 if an image list or a support pool has fewer images (e.g. 6 = 5-shot + query)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_splits(args):
    from ..data.datasets import open_dataset
    from ..data.splits import DEFAULT_REFERENCE_DIR, make_splits

    with _as(DataError, ValueError):
        dataset = open_dataset(args.dataset_root)
        summary, check = make_splits(dataset, args.out, settings=args.settings, folds=args.folds,
                                     coco_split=args.coco_split, min_pixels=args.min_pixels,
                                     workers=args.workers, reference_dir=args.reference or DEFAULT_REFERENCE_DIR,
                                     progress=not args.quiet)
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
    console.result(f"{len(summary['files'])} image lists with support pools -> {args.out}"
                   + ("" if not check.applicable else "; identical to the authors' lists" if check.ok else
                      f"; {len(check.mismatches)} differences from the authors' lists"))
    return 0


def add_loader_benchmark(benches) -> None:
    """``svf bench loader`` (a benchmark of the ``bench`` command)."""
    parser = add_command(
        benches, "loader", _run_loader_benchmark,
        help="episodes/second of the training episode loader (writes results/benchmarks/loader.json)")
    parser.add_argument("--root", help="prepared dataset (default: write a synthetic 500x375 one in a temp dir)")
    parser.add_argument("--splits", help="its splits directory (required with --root)")
    parser.add_argument("--setting", default="original", choices=["dagger", "original"],
                        help="training lists: dagger (BAM's †) or original (PFENet's; default)")
    parser.add_argument("--fold", type=int, default=0, help="fold (default 0)")
    parser.add_argument("--shot", type=int, default=1, help="supports per episode (default 1)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3; the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = one DataLoader worker)")
    parser.add_argument("--crop", type=int, default=473, help="training crop side (default 473, PASCAL's)")
    parser.add_argument("--out", default="results/benchmarks/loader.json", help="JSON file to write")


def _run_loader_benchmark(args):
    import json

    from ..data.loader_bench import bench_loader

    result = bench_loader(args.root, args.splits, args.setting, args.fold, args.shot, args.episodes,
                          args.repeats, args.threads, args.crop)
    from ..files import write_text

    out = write_text(args.out, json.dumps(result, indent=2) + "\n")
    rate = result["episodes_per_s"]
    console.result(f"{rate['median']:.1f} episodes/s (median; wall), "
                   f"{result['cpu_episodes_per_s']['median']:.1f} per CPU-second -> {out}")
    return 0


COMMANDS = (
    _add_download, _add_synth, _add_prepare, _add_splits,
)


def add_commands(subparsers) -> None:
    for adder in COMMANDS:
        adder(subparsers)
