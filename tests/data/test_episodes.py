"""Episode sampling, batches, determinism, BAM base data and loud failures (tiny files)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from svf.data.datasets import write_dataset_json
from svf.data.episodes import (
    BaseSegmentation, Episode, EvalEpisodes, PoolInfo, base_datasets, collate_episodes, draw_supports,
    eval_episodes, load_episode_list, make_episode_list, save_episode_list, train_episodes,
)
from svf.data.images import PairCache, read_pair
from svf.engine.tasks.protocols import protocol_runs
from svf.data.transforms import TrainAug

H, W = 30, 40
AUG = TrainAug(crop=(25, 25), scale=(0.9, 1.1))
# PASCAL fold 0: novel 1..5, base 6..20.
TRAIN = {"tr0": [6], "tr1": [6, 7], "tr2": [7], "tr3": [6, 8], "tr4": [8, 2], "tr5": [7, 8]}
VAL = {"va0": [1, 3], "va1": [1, 2], "va2": [2], "va3": [1, 3], "va4": [14]}
TRAIN_POOLS = {"6": ["tr0", "tr1", "tr3"], "7": ["tr1", "tr2", "tr5"], "8": ["tr3", "tr4", "tr5"]}
VAL_POOLS = {"1": ["va0", "va1", "va3"], "2": ["va1", "va2"], "3": ["va0", "va3"], "4": [], "5": []}


def _mask(classes, h=H, w=W):
    """Vertical stripes, one per class, after a background stripe; a 255 line under the stripes."""
    m = np.zeros((h, w), np.uint8)
    step = w // (len(classes) + 1)
    for i, c in enumerate(classes):
        m[2:h - 4, (i + 1) * step:(i + 2) * step] = c
    m[h - 3] = 255
    return m


def _write_image(path, h=H, w=W, seed=0):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def make_tiny(tmp: Path, val_pools=VAL_POOLS) -> tuple[Path, Path]:
    root, splits = tmp / "data", tmp / "splits"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir(parents=True)
    (root / "lists").mkdir()
    image_classes = {}
    for i, (name, classes) in enumerate({**TRAIN, **VAL}.items()):
        _write_image(root / "JPEGImages" / f"{name}.jpg", seed=i)
        m = _mask(classes)
        Image.fromarray(m, mode="L").save(root / "SegmentationClassAug" / f"{name}.png")
        counts = np.bincount(m.ravel(), minlength=256)
        image_classes[name] = {str(c): int(counts[c]) for c in classes}
    (root / "lists" / "train.txt").write_text("".join(f"{n}\n" for n in TRAIN))
    (root / "lists" / "val.txt").write_text("".join(f"{n}\n" for n in VAL))
    write_dataset_json(root, "pascal")
    (splits / "dagger" / "train").mkdir(parents=True)
    (splits / "dagger" / "val").mkdir(parents=True)
    (splits / "image_classes.json").write_text(json.dumps(image_classes))
    (splits / "dagger" / "train" / "fold0_images.txt").write_text("tr0\ntr1\ntr2\ntr3\ntr5\n")
    (splits / "dagger" / "train" / "fold0_support_pools.json").write_text(json.dumps(TRAIN_POOLS))
    (splits / "dagger" / "val" / "fold0_images.txt").write_text("va0\nva1\nva2\nva3\n")
    (splits / "dagger" / "val" / "fold0_support_pools.json").write_text(json.dumps(val_pools))
    return root, splits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def _episodes(ds):
    return [ds.episode(i)[0] for i in range(len(ds))]


def test_training_batch_has_the_documented_keys_shapes_and_labels(tiny):
    ds = train_episodes(*tiny, "dagger", 0, shot=2, aug=AUG, seed=3)
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_episodes)))
    assert set(batch) == {"query", "query_label", "query_label_full", "supports", "support_labels", "class_id"}
    assert batch["query"].shape == (2, 3, 25, 25) and batch["query"].dtype == torch.float32
    assert batch["supports"].shape == (2, 2, 3, 25, 25)
    assert batch["support_labels"].shape == (2, 2, 25, 25) and batch["support_labels"].dtype == torch.long
    assert batch["query_label"].dtype == torch.long and batch["class_id"].shape == (2,)
    for b in range(2):
        c = int(batch["class_id"][b])
        full, binary = batch["query_label_full"][b], batch["query_label"][b]
        assert set(binary.unique().tolist()) <= {0, 1, 255}
        assert torch.equal(binary == 1, full == c) and torch.equal(binary == 255, full == 255)
        assert set(batch["support_labels"][b].unique().tolist()) <= {0, 1, 255}
        assert (batch["support_labels"][b] == 1).any()


def test_training_episodes_follow_the_sampling_rules(tiny):
    ds = train_episodes(*tiny, "dagger", 0, shot=2, aug=AUG, seed=0)
    seen_classes = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        eps = _episodes(ds)
        assert sorted(e.query_id for e in eps) == ["tr0", "tr1", "tr2", "tr3", "tr5"]  # one item per query
        for e in eps:
            assert e.class_id in TRAIN[e.query_id]  # a base class present in the query
            assert len(set(e.support_ids)) == 2 and e.query_id not in e.support_ids
            assert set(e.support_ids) <= set(TRAIN_POOLS[str(e.class_id)])
            seen_classes.add((e.query_id, e.class_id))
    assert {("tr1", 6), ("tr1", 7)} <= seen_classes  # both classes of a two-class query get chosen


def test_training_episodes_are_independent_of_workers_and_resumable(tiny):
    def run(workers, epoch):
        ds = train_episodes(*tiny, "dagger", 0, shot=1, aug=AUG, seed=11)
        ds.set_epoch(epoch)
        dl = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_episodes)
        return [b for b in dl]

    a, b = run(0, 4), run(2, 4)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k]), k
    c = run(0, 5)
    assert any(not torch.equal(x["query"], y["query"]) for x, y in zip(a, c))  # another epoch, other episodes


def test_epoch_order_and_max_episodes(tiny):
    ds = train_episodes(*tiny, "dagger", 0, shot=1, aug=AUG, seed=1, max_episodes=3)
    assert len(ds) == 3
    orders = set()
    for e in range(8):
        ds.set_epoch(e)
        orders.add(tuple(ds.order.tolist()))
    assert len(orders) > 1
    with pytest.raises(IndexError):
        ds[3]


# The expected list was produced once by this algorithm; a change of the sampling code must show here.
EXPECTED_EPISODES = [
    Episode("va0", 1, ("va1",)), Episode("va1", 1, ("va3",)), Episode("va2", 2, ("va1",)),
    Episode("va3", 1, ("va1",)), Episode("va0", 3, ("va3",)), Episode("va1", 2, ("va2",)),
    Episode("va2", 2, ("va1",)),
]


def test_episode_list_is_fixed_by_the_seed():
    ic = {k: {str(c): 100 for c in v} for k, v in VAL.items()}
    got = make_episode_list(["va0", "va1", "va2", "va3"], ic, VAL_POOLS, [1, 2, 3, 4, 5], 7, seed=321, shot=1)
    assert got == EXPECTED_EPISODES
    again = make_episode_list(["va0", "va1", "va2", "va3"], ic, VAL_POOLS, [1, 2, 3, 4, 5], 7, seed=321, shot=1)
    assert again == got
    five = make_episode_list(["va0", "va1", "va2", "va3"], ic, VAL_POOLS, [1, 2, 3, 4, 5], 40, seed=5, shot=1)
    assert [e.query_id for e in five[:8]] == ["va0", "va1", "va2", "va3"] * 2  # list order, repeated
    assert all(e.class_id in VAL[e.query_id] and e.query_id not in e.support_ids for e in five)
    assert {e.class_id for e in five if e.query_id == "va1"} == {1, 2}
    pools = {"1": ["va0", "va1", "va3", "va2"], "2": ["va1", "va2", "va0", "va3"], "3": ["va0", "va3", "va1"]}
    two = make_episode_list(["va0", "va1", "va2", "va3"], ic, pools, [1, 2, 3], 3, seed=7, shot=2)
    assert two == [Episode("va0", 3, ("va3", "va1")), Episode("va1", 2, ("va0", "va3")),
                   Episode("va2", 2, ("va3", "va1"))]


def test_evaluation_dataset_and_original_label(tiny, tmp_path):
    ds = eval_episodes(*tiny, "dagger", 0, shot=1, seed=321, n_episodes=4, size=33)
    assert isinstance(ds, EvalEpisodes) and len(ds) == 4
    batch = collate_episodes([ds[0], ds[1]])
    assert batch["query"].shape == (2, 3, 33, 33) and batch["supports"].shape == (2, 1, 3, 33, 33)
    assert isinstance(batch["query_label_orig"], list) and batch["query_label_orig"][0].shape == (H, W)
    ep = ds.episodes[0]
    orig = batch["query_label_orig"][0]
    raw = torch.from_numpy(np.array(Image.open(tiny[0] / "SegmentationClassAug" / f"{ep.query_id}.png")))
    assert torch.equal(orig == 1, raw == ep.class_id) and torch.equal(orig == 255, raw == 255)
    assert (batch["query_label"][0][24:] == 255).all()  # 30x40 -> 24x32 content, padded with 255
    save_episode_list(tmp_path / "eps.json", ds.episodes)
    assert load_episode_list(tmp_path / "eps.json") == ds.episodes


def test_the_decoded_pair_cache_changes_no_batch_and_keeps_the_cached_arrays_as_read(tiny):
    cached = train_episodes(*tiny, "dagger", 0, shot=2, aug=AUG, seed=5)
    plain = train_episodes(*tiny, "dagger", 0, shot=2, aug=AUG, seed=5, cache_bytes=0)  # every pair from disk
    for epoch in range(3):
        cached.set_epoch(epoch), plain.set_epoch(epoch)
        for i in range(len(cached)):
            a, b = cached[i], plain[i]
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert cached.read.pairs and not plain.read.pairs
    for image_id, (image, label) in cached.read.pairs.items():  # no transform wrote into a cached array
        disk_image, disk_label = read_pair(cached.source, image_id)
        assert np.array_equal(image, disk_image) and np.array_equal(label, disk_label)
    test = eval_episodes(*tiny, "dagger", 0, shot=1, seed=321, n_episodes=6, size=33)
    again = eval_episodes(*tiny, "dagger", 0, shot=1, seed=321, n_episodes=6, size=33, cache_bytes=0)
    for i in range(len(test)):
        a, b = test[i], again[i]
        assert all(torch.equal(a[k], b[k]) for k in ("query", "query_label", "supports", "support_labels"))
    assert len(test.read.pairs) == len({e.query_id for e in test.episodes} | {s for e in test.episodes
                                                                                for s in e.support_ids})


def test_the_decoded_pair_cache_keeps_pairs_only_within_its_budget(tiny):
    source = train_episodes(*tiny, "dagger", 0, shot=1, aug=AUG).source
    pair_bytes = H * W * 3 + H * W  # RGB image + label
    cache = PairCache(source, max_bytes=2 * pair_bytes)
    for image_id in ["tr0", "tr1", "tr2", "tr0", "tr2"]:
        image, label = cache(image_id)
        assert image.shape == (H, W, 3) and label.shape == (H, W)
    assert list(cache.pairs) == ["tr0", "tr1"] and cache.used == 2 * pair_bytes  # the first two; tr2 from disk


def test_protocols():
    assert protocol_runs("svf-code", "pascal") == [(321, 1000)]
    assert protocol_runs("bam", "coco") == [(s, 1000) for s in (510, 365, 382, 322, 988)]
    assert protocol_runs("pfenet", "coco") == [(321, 20000)] and protocol_runs("pfenet", "pascal") == [(321, 5000)]
    assert protocol_runs("bam", "pascal", n_episodes=20)[0] == (510, 20)
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        protocol_runs("nope", "pascal")


def test_base_learner_data_remaps_base_classes(tiny):
    train, val = base_datasets(tiny[0], 0, TrainAug(crop=(25, 25), scale=(0.5, 2.0)), val_size=33, seed=0)
    assert len(train) == len(TRAIN) and len(val) == len(VAL)  # whole dataset lists, as BAM's train_base.py
    # tr4 holds base class 8 (-> 3: base list 6..20) and novel class 2 (-> background).
    item = BaseSegmentation(train.source, ["tr4"], list(range(6, 21)), None, size=33)[0]
    assert set(item["label_orig"].unique().tolist()) == {0, 3, 255}
    assert set(item["label"].unique().tolist()) == {0, 3, 255}
    for i in range(len(train)):
        lab = train[i]["label"]
        assert lab.shape == (25, 25) and set(lab.unique().tolist()) <= {0, 1, 2, 3, 9, 255}
    batch = collate_episodes([val[0], val[1]])
    assert batch["image"].shape == (2, 3, 33, 33) and isinstance(batch["label_orig"], list)


# --- loud failures ------------------------------------------------------------------------------------------------


def test_corrupt_jpeg_names_the_file(tmp_path):
    root, splits = make_tiny(tmp_path)
    bad = root / "JPEGImages" / "va0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    ds = eval_episodes(root, splits, "dagger", 0, shot=1, seed=0, n_episodes=1, size=33)
    with pytest.raises(ValueError, match="va0.jpg"):
        ds[0]


def test_mask_with_unknown_class_names_the_file(tmp_path):
    root, splits = make_tiny(tmp_path)
    m = _mask([1, 3])
    m[0, 0] = 42
    Image.fromarray(m, mode="L").save(root / "SegmentationClassAug" / "va0.png")
    ds = eval_episodes(root, splits, "dagger", 0, shot=1, seed=0, n_episodes=1, size=33)
    with pytest.raises(ValueError, match=r"va0.png: values \[42\]"):
        ds[0]


def test_size_mismatch_names_both_files(tmp_path):
    root, splits = make_tiny(tmp_path)
    _write_image(root / "JPEGImages" / "va0.jpg", h=H + 2)
    ds = eval_episodes(root, splits, "dagger", 0, shot=1, seed=0, n_episodes=1, size=33)
    with pytest.raises(ValueError, match=r"va0.jpg is 40x32 but mask .*va0.png is 40x30"):
        ds[0]


def test_missing_files_are_named(tmp_path):
    root, splits = make_tiny(tmp_path)
    (root / "SegmentationClassAug" / "va0.png").unlink()
    ds = eval_episodes(root, splits, "dagger", 0, shot=1, seed=0, n_episodes=1, size=33)
    with pytest.raises(FileNotFoundError, match="va0.png"):
        ds[0]
    (root / "JPEGImages" / "va1.jpg").unlink()
    ds = eval_episodes(root, splits, "dagger", 0, shot=1, seed=0, n_episodes=2, size=33)
    with pytest.raises(FileNotFoundError, match="va1.jpg"):
        ds[1]


def test_empty_support_pool_names_class_fold_split_and_file(tmp_path):
    root, splits = make_tiny(tmp_path, val_pools={**VAL_POOLS, "3": []})
    with pytest.raises(ValueError, match=r"empty support pool for class 3 \(fold 0, split dagger/val, pool file .*fold0_support_pools"):
        eval_episodes(root, splits, "dagger", 0, shot=1, seed=321, n_episodes=4)
    pools = dict(TRAIN_POOLS, **{"7": []})
    (splits / "dagger" / "train" / "fold0_support_pools.json").write_text(json.dumps(pools))
    with pytest.raises(ValueError, match=r"empty support pool for class 7 \(fold 0, split dagger/train"):
        train_episodes(root, splits, "dagger", 0, shot=1)


def test_pool_too_small_for_the_shot():
    info = PoolInfo(2, "dagger/train", "p.json")
    with pytest.raises(ValueError, match="class 9 .*fold 2.*p.json.*1 image.*2 needed"):
        draw_supports(np.random.default_rng(0), ["a", "b"], "a", 2, 9, info)


def test_bench_loader_command_writes_its_json(tiny, tmp_path):
    from svf.cli import main

    out = tmp_path / "loader.json"
    rc = main(["bench", "loader", "--root", str(tiny[0]), "--splits", str(tiny[1]), "--setting", "dagger",
               "--episodes", "3", "--repeats", "2", "--crop", "25", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["list_images"] == 5 and result["crop"] == 25 and result["threads"] == 1
    assert len(result["episodes_per_s"]["all"]) == 2 and result["episodes_per_s"]["median"] > 0
    assert result["cpu_episodes_per_s"]["median"] > 0


# --- decoding: OpenCV for plain JPEGs and 8-bit grey PNGs, PIL for everything else --------------------------------


def test_fast_decoders_give_the_pixels_pil_gives(tmp_path):
    from PIL import ImageOps

    from svf.data.images import _decode_grey_png, _decode_rgb, read_image, read_label

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": applied by default, as the authors' cv2.imread (PIL: ImageOps.exif_transpose)
    jpegs = {
        "q75_420.jpg": (Image.fromarray(base), {"quality": 75}),
        "q95_444.jpg": (Image.fromarray(base), {"quality": 95, "subsampling": 0}),
        "progressive.jpg": (Image.fromarray(base), {"quality": 90, "progressive": True}),
        "grey.jpg": (Image.fromarray(base[..., 0]), {"quality": 90}),
        "exif.jpg": (Image.fromarray(base), {"quality": 90, "exif": exif.tobytes()}),
        "cmyk.jpg": (Image.fromarray(base).convert("CMYK"), {"quality": 90}),  # PIL path: OpenCV rounds otherwise
    }
    for name, (img, kw) in jpegs.items():
        path = tmp_path / name
        img.save(path, **kw)
        with Image.open(path) as im:
            want = np.array(ImageOps.exif_transpose(im).convert("RGB"))
        got = read_image(path)
        shape = (53, 37, 3) if name == "exif.jpg" else (37, 53, 3)
        assert got.dtype == np.uint8 and got.shape == shape and np.array_equal(got, want), name
        assert (_decode_rgb(path.read_bytes()) is None) == (name == "cmyk.jpg"), name
    trailing = tmp_path / "trailing.jpg"  # bytes after the end-of-image marker: PIL path, still read
    trailing.write_bytes((tmp_path / "q75_420.jpg").read_bytes() + b"\0" * 7)
    assert np.array_equal(read_image(trailing), read_image(tmp_path / "q75_420.jpg"))

    mask = _mask([6, 7])
    Image.fromarray(mask, mode="L").save(tmp_path / "grey.png")
    pal = Image.fromarray(mask, mode="P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    pal.save(tmp_path / "palette.png")  # OpenCV would give colours: PIL path, indices
    for name, fast in (("grey.png", True), ("palette.png", False)):
        assert np.array_equal(read_label(tmp_path / name, 20), mask), name
        assert (_decode_grey_png((tmp_path / name).read_bytes()) is not None) == fast, name
    Image.fromarray(mask.astype(np.uint16) * 300).save(tmp_path / "wide.png")  # 16-bit: rejected as before
    with pytest.raises(ValueError, match="wide.png"):
        read_label(tmp_path / "wide.png", 20)
    # A PNG without its end chunk goes to PIL, which reads or rejects it exactly as before.
    assert _decode_grey_png((tmp_path / "grey.png").read_bytes()[:-20]) is None
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "grey.png").read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated.png"):
        read_label(truncated, 20)


def test_exif_orientation_is_applied_as_cv2_imread_does_unless_ignored(tmp_path):
    """The authors read images with cv2.imread(path, IMREAD_COLOR), which turns a JPEG by its EXIF orientation."""
    from PIL import Image, ImageOps

    from svf.data.images import read_image

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "tagged.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    applied, ignored = read_image(path), read_image(path, exif_orientation="ignore")
    assert ignored.shape == (20, 40, 3) and applied.shape == (40, 20, 3)
    assert applied[:10].mean() > 200 and applied[-10:].mean() < 50  # the band is now on top
    with Image.open(path) as img:
        reference = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert np.abs(applied.astype(int) - reference).max() <= 1  # as PIL's exif_transpose
    with pytest.raises(ValueError, match="exif_orientation must be one of"):
        read_image(path, exif_orientation="upright")
