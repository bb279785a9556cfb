"""The looks of the synthetic classes (svf/synthetic/raw.py writes them into datasets, svf/synthetic/objects.py into
the stand-in pretraining): shapes, textures, colours, rotation, rasterisation and painting.

A class is one of 5 shapes, one of 6 textures and one of 6 colours, each attribute shared by many classes (two
neighbouring classes share a colour), only the combination unique over all 80 (docs/data.md, "Looks"). The study's
second world (config ``data.synthetic.looks: fold_private``) redraws PASCAL's 20 classes so that what sets each
fold's novel classes apart never occurs among that fold's base classes (docs/study.md, "Second world").
"""
from __future__ import annotations

import colorsys
import functools

import numpy as np

SHAPES = ("square", "disc", "octagon", "plus", "hexagon")
TEXTURES = ("solid", "hstripes", "vstripes", "checker", "diagonal", "dots")
# Six well-separated colours, each worn by several classes.
PALETTE = np.array([(220, 50, 50), (50, 175, 70), (50, 90, 220), (230, 200, 40), (190, 60, 200), (40, 190, 200)],
                   np.float32)
MAX_ROTATION = 45.0  # degrees either way (discs look the same at any angle)

#: How classes look (config ``data.synthetic.looks``): ``shared``, the demo's (above); ``fold_private``, the study's
#: second world: the five classes of PASCAL fold f (classes 5f+1..5f+5) share shape f and texture f, which no other
#: PASCAL class wears, and differ only in hue, 18 degrees apart within the fold's own quarter of the hue circle
#: (fold f: 90f .. 90f+72 degrees). So a fold's novel classes look like none of its base classes, and only features
#: that base training never needs tell them apart. COCO's classes 21-80 keep their shared looks (the stand-in
#: pretraining still sees all 80, PASCAL's 20 in their fold-private looks).
LOOK_SCHEMES = ("shared", "fold_private")
FOLD_PRIVATE_CLASSES = 20  # PASCAL-5i: 4 folds of 5 classes
FOLD_PRIVATE_HUES = np.array([[(90 * f + 18 * j) / 360 for j in range(5)] for f in range(4)]).ravel()
# The 20 fold-private colours after PALETTE's 6: saturation 0.75, value 219 (RGB scale; as bright and saturated as
# PALETTE's).
FULL_PALETTE = np.concatenate([PALETTE, np.array([colorsys.hsv_to_rgb(h, 0.75, 219.0) for h in FOLD_PRIVATE_HUES],
                                                 np.float32)])


def check_scheme(scheme: str) -> str:
    if scheme not in LOOK_SCHEMES:
        raise ValueError(f"unknown looks {scheme!r}; choose one of {', '.join(LOOK_SCHEMES)}")
    return scheme


@functools.lru_cache(maxsize=None)
def class_look(c: int, scheme: str = "shared") -> tuple[str, str, int]:
    """(shape, texture, colour index into FULL_PALETTE) of class c (k = c - 1) under the look ``scheme``.

    ``shared``: shape ``k % 5`` and texture ``k % 6`` (so each PASCAL fold's five novel classes take all five shapes
    and five textures) and colour ``(k // 2 + k // 30) % 6`` (pairs of neighbouring classes share one; classes 30
    apart share shape and texture but not colour): every look is unique among 80 classes while each attribute is
    shared. ``fold_private``: PASCAL's classes as LOOK_SCHEMES' comment says, the others as ``shared``."""
    k = c - 1
    if check_scheme(scheme) == "fold_private" and k < FOLD_PRIVATE_CLASSES:
        return SHAPES[k // 5], TEXTURES[k // 5], len(PALETTE) + k
    return SHAPES[k % len(SHAPES)], TEXTURES[k % len(TEXTURES)], (k // 2 + k // 30) % len(PALETTE)


def object_colour(c: int, rng: np.random.Generator, scheme: str = "shared") -> np.ndarray:
    """Class c's colour, brightness jittered by 0.85-1.1 (RGB float)."""
    return np.clip(FULL_PALETTE[class_look(c, scheme)[2]] * rng.uniform(0.85, 1.1), 0, 255).astype(np.float32)


def paint_object(image: np.ndarray, mask: np.ndarray, c: int, rng: np.random.Generator, scheme: str = "shared"
                 ) -> None:
    """Fill the pixels of ``mask`` in ``image`` (float32 HxWx3) with class c's texture in one of its colours."""
    ys, xs = np.nonzero(mask)
    image[ys, xs] = texture_pattern(class_look(c, scheme)[1], ys, xs, rng)[:, None] * object_colour(c, rng, scheme)


def unit_polygons(shape: str) -> list[np.ndarray]:
    """Polygons of a shape filling the box [-1, 1]^2 (each (N, 2), x then y)."""
    def regular(n, phase):
        t = phase + 2 * np.pi * np.arange(n) / n
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        return pts / np.abs(pts).max(0)  # stretch to touch every side of the box

    if shape == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)]
    if shape == "disc":
        return [regular(32, 0.0)]
    if shape == "octagon":
        return [regular(8, np.pi / 8)]
    if shape == "hexagon":
        return [regular(6, 0.0)]
    if shape == "plus":  # two overlapping bars: two polygons of one annotation
        a = 0.5
        return [np.array([[-1, -a], [1, -a], [1, a], [-1, a]], float),
                np.array([[-a, -1], [a, -1], [a, 1], [-a, 1]], float)]
    raise ValueError(f"unknown shape {shape!r}")


# Area of each shape as a fraction of its bounding box (polygon area / 4).
FILL = {"square": 1.0, "disc": 0.78, "octagon": 0.82, "hexagon": 0.75, "plus": 0.75}


def rotated_polygons(shape: str, degrees: float) -> list[np.ndarray]:
    """The unit polygons of ``shape`` rotated by ``degrees`` and stretched back to fill the box [-1, 1]^2."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    polys = [p @ rot.T for p in unit_polygons(shape)]
    extent = np.abs(np.concatenate(polys)).max(0)
    return [p / extent for p in polys]


def polygons_at(shape: str, cx: float, cy: float, box_h: float, box_w: float, degrees: float = 0.0
                 ) -> list[np.ndarray]:
    scale = np.array([box_w / 2 - 0.5, box_h / 2 - 0.5])
    return [p * scale + [cx, cy] for p in rotated_polygons(shape, degrees)]


def rasterise(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """The polygons' pixels as pycocotools draws COCO polygons (so synthetic COCO json and masks agree). Without
    pycocotools (the dependency-light GPU check) OpenCV fills them instead; borders may then differ by a pixel."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        import cv2

        mask = np.zeros((h, w), np.uint8)
        for p in polygons:  # one call each: a single call leaves the overlap of two polygons empty
            cv2.fillPoly(mask, [np.round((p - 0.5) * 16).astype(np.int32)], 1, shift=4)
        return mask.astype(bool)
    import warnings

    rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in polygons], h, w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def texture_pattern(name: str, ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness factors in [0.5, 1] of a class texture at pixel coordinates (ys, xs)."""
    period = int(rng.integers(5, 8))
    ph = int(rng.integers(0, period))
    half = period // 2
    yy, xx = ys + ph, xs + ph
    if name == "solid":
        pattern = np.ones(ys.shape, bool)
    elif name == "hstripes":
        pattern = yy % period < half
    elif name == "vstripes":
        pattern = xx % period < half
    elif name == "checker":
        pattern = (yy // half + xx // half) % 2 == 0
    elif name == "diagonal":
        pattern = (xx + yy) % period < half
    elif name == "dots":
        pattern = (yy % period < half) & (xx % period < half)
    else:
        raise ValueError(f"unknown texture {name!r}")
    return 0.5 + 0.5 * pattern.astype(np.float32)


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A tinted vertical gradient (float32 HxWx3), the canvas objects are painted on."""
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    grad = np.linspace(-25, 25, h, dtype=np.float32)[:, None, None] * rng.choice([-1, 1])
    return base + grad + np.zeros((1, w, 1), np.float32)


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel noise over the whole image, then uint8."""
    image += rng.standard_normal(image.shape, dtype=np.float32) * 6
    return np.clip(image, 0, 255).astype(np.uint8)


__all__ = ["FILL", "FULL_PALETTE", "LOOK_SCHEMES", "MAX_ROTATION", "PALETTE", "SHAPES", "TEXTURES", "background",
           "check_scheme", "class_look", "finish", "object_colour", "paint_object", "polygons_at", "rasterise",
           "rotated_polygons", "texture_pattern", "unit_polygons"]
