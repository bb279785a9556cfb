"""Training and evaluation transforms of the PFENet/BAM/SVF code family, re-done for speed.

The authors' training chain (``util/transform.py``) is RandScale -> RandRotate (p 0.5) -> RandomGaussianBlur
(p 0.5) -> RandomHorizontalFlip (p 0.5) -> Crop (random, padded, 85% rule) -> ToTensor -> Normalize, each step
working on a float32 copy of the whole image. Here the same random choices are made, but scale, rotation, flip,
padding and crop are composed into one affine map, so the image is resampled once (OpenCV, uint8), and only where
the crop window meets the canvas: a plain ``cv2.resize(fx=fy=scale)`` of the canvas when there is no rotation, one
``cv2.warpAffine`` (on RGBA pixels) when there is. Planes are normalised by table lookup, or, with the blur,
filtered and normalised in one pass. The label is resampled once (nearest) onto the transformed canvas, where the
crop rule is checked.

Coordinates are continuous with pixel centres at ``i + 0.5`` (cv2.resize's and PIL's convention). Every random
number comes from the ``numpy.random.Generator`` passed in, and a call always makes the same number of draws, so
a transform is a pure function of (inputs, generator state). OpenCV is imported on first use and runs on one
thread (:func:`cv2_module`).

Deliberate differences to the authors' cv2 code (docs/episodes.md has the measured sizes):
- with rotation, one bilinear resampling instead of two (scale, then rotate);
- the resampled image is rounded to uint8 before the blur and the normalisation (the authors work on float32),
  and the rotation border is the mean rounded to uint8 (124, 116, 104);
- the training label uses centre-aligned nearest sampling (cv2.resize's INTER_NEAREST floors; evaluation keeps
  the authors' floor rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import IGNORE_LABEL

MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
_MEAN_T = torch.tensor(MEAN).view(3, 1, 1)
_INV_STD_T = torch.tensor([1.0 / s for s in STD]).view(3, 1, 1)
_BLUR_MARGIN = 2  # half of the 5x5 kernel


@dataclass(frozen=True)
class TrainAug:
    """Training augmentation settings (defaults: the SVF/BAM PASCAL few-shot configs)."""

    crop: tuple[int, int] = (473, 473)  # (h, w)
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: tuple[float, float] = (-10.0, 10.0)
    rotate_p: float = 0.5
    blur_p: float = 0.5
    flip_p: float = 0.5
    keep_fraction: float = 0.85  # crop is re-drawn until it keeps this share of the protected label pixels
    crop_draws: int = 32  # 1 draw + up to 31 re-draws: the authors loop `while ... and crop_cnt <= 30`

    def __post_init__(self) -> None:
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise ValueError(f"TrainAug.crop must be two positive ints (h, w), got {self.crop!r}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"TrainAug.scale must satisfy 0 < min <= max, got {self.scale!r}")
        if self.rotate[0] > self.rotate[1]:
            raise ValueError(f"TrainAug.rotate must satisfy min <= max, got {self.rotate!r}")
        for name in ("rotate_p", "blur_p", "flip_p", "keep_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TrainAug.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.crop_draws < 1:
            raise ValueError(f"TrainAug.crop_draws must be >= 1, got {self.crop_draws!r}")


# The authors' settings (SVF/BAM configs): few-shot training crop and scale per dataset, evaluation size, and
# BAM's base-learner stage (``*_base.yaml``: 417 crop, scale 0.5-2.0, val_size 417, both datasets).
FEW_SHOT_AUG = {"pascal": TrainAug(crop=(473, 473), scale=(0.9, 1.1)),
                "coco": TrainAug(crop=(641, 641), scale=(0.8, 1.25))}
VAL_SIZE = {"pascal": 473, "coco": 641}
BASE_AUG = TrainAug(crop=(417, 417), scale=(0.5, 2.0))
BASE_VAL_SIZE = 417


@dataclass(frozen=True)
class _Geometry:
    """One draw of the augmentation: canvas = the scaled, rotated, flipped image before padding and crop."""

    scale: float
    angle: float  # degrees, 0 = no rotation
    blur: bool
    flip: bool
    hs: int  # canvas size
    ws: int
    pad_top: int  # centred padding of the canvas up to the crop size
    pad_left: int
    tops: np.ndarray  # candidate crop offsets in the padded canvas
    lefts: np.ndarray


def _draw(rng: np.random.Generator, h0: int, w0: int, aug: TrainAug) -> _Geometry:
    u = rng.random(5)  # always 5 + 2 * crop_draws numbers, whatever is used
    scale = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * float(u[0])
    angle = aug.rotate[0] + (aug.rotate[1] - aug.rotate[0]) * float(u[2]) if u[1] < aug.rotate_p else 0.0
    # cv2.resize(fx=fy=scale) output size; rotation keeps the canvas size (cv2.warpAffine).
    hs, ws = max(1, int(round(h0 * scale))), max(1, int(round(w0 * scale)))
    ch, cw = aug.crop
    hp, wp = max(hs, ch), max(ws, cw)
    tops = rng.integers(0, hp - ch + 1, size=aug.crop_draws)
    lefts = rng.integers(0, wp - cw + 1, size=aug.crop_draws)
    return _Geometry(scale, angle, bool(u[3] < aug.blur_p), bool(u[4] < aug.flip_p), hs, ws,
                     (hp - hs) // 2, (wp - ws) // 2, tops, lefts)


def _canvas_to_source(g: _Geometry) -> np.ndarray:
    """3x3 map from canvas coordinates back to source-image coordinates."""
    m = np.diag([1.0 / g.scale, 1.0 / g.scale, 1.0])
    if g.angle != 0.0:
        # cv2.getRotationMatrix2D about the canvas centre: dst - c = R (src - c), R = [[cos, sin], [-sin, cos]].
        th = math.radians(g.angle)
        cos, sin = math.cos(th), math.sin(th)
        cx, cy = g.ws / 2.0, g.hs / 2.0
        r_inv = np.array([[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy], [0, 0, 1.0]])
        m = m @ r_inv
    if g.flip:
        m = m @ np.array([[-1.0, 0.0, g.ws], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return m


_CV2 = None


def cv2_module():
    """OpenCV, imported on first use (only the data pipeline needs it) and set to one thread: DataLoader workers
    are separate processes already, and OpenCV's own pool would oversubscribe the cores."""
    global _CV2
    if _CV2 is None:
        import cv2

        cv2.setNumThreads(1)
        _CV2 = cv2
    return _CV2


def _index_map(m: np.ndarray, row0: float, col0: float) -> np.ndarray:
    """2x3 matrix for ``cv2.warpAffine(..., WARP_INVERSE_MAP)``: output pixel index (x, y) of a window whose top
    left is canvas pixel (row0, col0) -> source pixel index. ``m`` works on continuous coordinates (pixel centres at
    i + 0.5); pixel indices are those coordinates minus 0.5."""
    shift = np.array([[1.0, 0.0, col0 + 0.5], [0.0, 1.0, row0 + 0.5], [0.0, 0.0, 1.0]])
    out = (m @ shift)[:2].copy()
    out[:, 2] -= 0.5
    return out


def _warp_label(label: np.ndarray, g: _Geometry) -> np.ndarray:
    """The label on the whole canvas, nearest neighbour (the source pixel containing the mapped pixel centre),
    rotation border 255."""
    if g.angle == 0.0:  # scale and flip are separable: take source rows, then columns (exact, and cheaper)
        h0, w0 = label.shape
        rows = np.floor((np.arange(g.hs) + 0.5) / g.scale).astype(np.intp)
        x = np.arange(g.ws) + 0.5
        cols = np.floor((g.ws - x if g.flip else x) / g.scale).astype(np.intp)
        if rows[-1] < h0 and cols.min() >= 0 and cols.max() < w0:  # else a .5 size rounding: use the warp (255)
            return label.take(rows, axis=0).take(cols, axis=1)
    cv2 = cv2_module()
    return cv2.warpAffine(label, _index_map(_canvas_to_source(g), 0.0, 0.0), (g.ws, g.hs),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=IGNORE_LABEL)


def _pick_crop(protected: np.ndarray, g: _Geometry, ch: int, cw: int, keep_fraction: float) -> int:
    """Index of the first candidate crop keeping >= keep_fraction of the protected pixels, else the last one."""
    total = int(np.count_nonzero(protected))
    need = keep_fraction * total

    def kept(i: int) -> int:
        r0, c0 = int(g.tops[i]) - g.pad_top, int(g.lefts[i]) - g.pad_left
        return int(np.count_nonzero(protected[max(r0, 0):max(r0 + ch, 0), max(c0, 0):max(c0 + cw, 0)]))

    if kept(0) >= need:  # the common case: no integral image needed
        return 0
    ii = np.zeros((g.hs + 1, g.ws + 1), dtype=np.int32)
    np.cumsum(np.cumsum(protected, axis=0, dtype=np.int32), axis=1, out=ii[1:, 1:])
    r0 = np.clip(g.tops - g.pad_top, 0, g.hs)
    r1 = np.clip(g.tops - g.pad_top + ch, 0, g.hs)
    c0 = np.clip(g.lefts - g.pad_left, 0, g.ws)
    c1 = np.clip(g.lefts - g.pad_left + cw, 0, g.ws)
    counts = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    ok = counts >= need
    return int(np.argmax(ok)) if ok.any() else len(counts) - 1


def _normalize_into(u8_chw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = (x - mean) / std`` from a uint8 (3, H, W) view in one pass plus an in-place scale."""
    torch.sub(u8_chw, _MEAN_T, out=out)
    return out.mul_(_INV_STD_T)


def to_normalized_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W), ``(x - mean) / std`` with ImageNet mean/std x 255."""
    h, w = image.shape[:2]
    return _normalize_into(torch.from_numpy(image).permute(2, 0, 1), torch.empty(3, h, w))


# uint8 -> normalised float32, one 256-entry table per channel, computed with the same float32 operations as
# ``_normalize_into`` (so a table lookup gives bit-identical values).
_LUTS = [np.ascontiguousarray(v) for v in
         ((torch.arange(256, dtype=torch.float32).view(1, 1, 256) - _MEAN_T) * _INV_STD_T)[:, 0].numpy()]
# The rotation border in uint8 RGBA: the ImageNet mean rounded (within 0.5 grey levels of the authors' float mean).
_MEAN_RGBA = tuple(int(round(m)) for m in MEAN) + (0,)
_INV_STD = tuple(1.0 / s for s in STD)
_BLUR_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # cv2.GaussianBlur(ksize 5, sigma 0), per axis
_RESIZE_MAX_AREA = 2  # without rotation: resize the whole canvas when it is at most this many windows large


def _zero_outside(a: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
    """Zero (= the mean after normalisation) everything of a 2-D array outside rows [r0, r1) x cols [c0, c1)."""
    a[:r0] = 0
    a[r1:] = 0
    a[r0:r1, :c0] = 0
    a[r0:r1, c1:] = 0


def _canvas_planes(image: np.ndarray, g: _Geometry, top: int, left: int, hh: int, ww: int) -> list[np.ndarray]:
    """R, G, B uint8 planes (hh, ww), C-contiguous: canvas pixels [top, top + hh) x [left, left + ww) of the
    transformed image, all inside the canvas. One bilinear resampling of the source: a plain resize of the whole
    canvas when there is no rotation (cv2.resize(fx=fy=scale): half-pixel centres, clamped border, exactly the
    authors' RandScale), else one affine warp with the mean as border (the authors' RandRotate border)."""
    cv2 = cv2_module()
    if g.angle == 0.0 and g.hs * g.ws <= _RESIZE_MAX_AREA * hh * ww:
        canvas = cv2.resize(image, None, fx=g.scale, fy=g.scale, interpolation=cv2.INTER_LINEAR)
        if canvas.shape[:2] == (g.hs, g.ws):  # always, unless OpenCV rounded a .5 size otherwise than _draw
            if g.flip:
                return cv2.split(cv2.flip(np.ascontiguousarray(canvas[top:top + hh, g.ws - left - ww:g.ws - left]), 1))
            return cv2.split(np.ascontiguousarray(canvas[top:top + hh, left:left + ww]))
    # A warp of the window only, on 4-byte RGBA pixels: OpenCV's warpAffine is several times faster on them.
    src = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    m = _index_map(_canvas_to_source(g), top, left)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if g.angle == 0.0:  # a canvas much larger than the window: clamped border, as a resize
        warped = cv2.warpAffine(src, m, (ww, hh), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    else:
        warped = cv2.warpAffine(src, m, (ww, hh), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=_MEAN_RGBA)
    return cv2.split(warped)[:3]


def _lut_into(cv2, plane: np.ndarray, c: int, target: np.ndarray) -> None:
    """``target = normalised(plane)`` for channel ``c``; OpenCV writes straight into a C-contiguous target."""
    if target.flags.c_contiguous:
        res = cv2.LUT(plane, _LUTS[c], dst=target)
        if np.may_share_memory(res, target):
            return
    else:
        res = cv2.LUT(plane, _LUTS[c])
    np.copyto(target, res)


def _image_into(image: np.ndarray, g: _Geometry, top: int, left: int, ch: int, cw: int, dst: np.ndarray) -> None:
    """Write the normalised, augmented crop window [top, top + ch) x [left, left + cw) (canvas coordinates; the part
    outside the canvas is padding = the mean = 0) into ``dst``, a C-contiguous float32 (3, ch, cw) array.

    Only the canvas part of the window is resampled (uint8) and split into planes, which are normalised by table
    lookup, or, with the blur, resampled with a 2-px margin and filtered and normalised in one pass."""
    cv2 = cv2_module()
    m = _BLUR_MARGIN if g.blur else 0
    hh, ww = ch + 2 * m, cw + 2 * m
    # The canvas part of the (margin-extended) window, in window coordinates.
    r0, r1 = max(m - top, 0), min(g.hs - top + m, hh)
    c0, c1 = max(m - left, 0), min(g.ws - left + m, ww)
    planes = _canvas_planes(image, g, top - m + r0, left - m + c0, r1 - r0, c1 - c0)
    if not g.blur:
        for c in range(3):
            _lut_into(cv2, planes[c], c, dst[c, r0:r1, c0:c1])
    else:
        # The authors blur the whole canvas (cv2.GaussianBlur: reflect-101 at the canvas edges), then pad and crop.
        # The canvas part of the margin-extended window has the canvas edges where it has edges inside the window,
        # and 2 px of real neighbours elsewhere; the normalisation is folded into the filter (one pass from uint8).
        rows = slice(max(m - r0, 0), min(m + ch - r0, r1 - r0))  # window (no margin) rows in part coordinates
        cols = slice(max(m - c0, 0), min(m + cw - c0, c1 - c0))
        d_rows = slice(rows.start + r0 - m, rows.stop + r0 - m)
        d_cols = slice(cols.start + c0 - m, cols.stop + c0 - m)
        for c in range(3):
            blurred = cv2.sepFilter2D(planes[c], cv2.CV_32F, _BLUR_KERNEL, _BLUR_KERNEL * _INV_STD[c],
                                      delta=-MEAN[c] * _INV_STD[c], borderType=cv2.BORDER_REFLECT_101)
            np.copyto(dst[c, d_rows, d_cols], blurred[rows, cols])
    # Padding (outside the canvas) = the mean = 0 after normalisation.
    r0, r1 = max(-top, 0), max(min(g.hs - top, ch), 0)
    c0, c1 = max(-left, 0), max(min(g.ws - left, cw), 0)
    if r0 > 0 or c0 > 0 or r1 < ch or c1 < cw:
        for c in range(3):
            _zero_outside(dst[c], r0, r1, c0, c1)


def train_transform(image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, aug: TrainAug,
                    protect: int | None = None, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
    """Augment one image (uint8 H x W x 3, RGB) and its label (uint8 H x W of raw values, or None).

    ``protect`` is the label value whose pixels the crop rule keeps (the authors' ``label == 1`` after
    binarisation; pass the raw class id here since the label stays raw). Returns the normalised image (float32
    3 x crop_h x crop_w, written into ``out`` when given) and the transformed label in its raw values (uint8;
    rotation border and padding = 255), from which the caller derives binary / raw / remapped labels.
    """
    h0, w0 = image.shape[:2]
    if label is not None and label.shape != (h0, w0):
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} sizes differ")
    ch, cw = aug.crop
    g = _draw(rng, h0, w0, aug)
    pick = 0
    out_label = None
    if label is not None:
        canvas = _warp_label(label, g)
        if protect is not None and aug.crop_draws > 1:
            pick = _pick_crop(canvas == protect, g, ch, cw, aug.keep_fraction)
    # Crop window in canvas coordinates (may stick out of the canvas: that part is padding).
    top, left = int(g.tops[pick]) - g.pad_top, int(g.lefts[pick]) - g.pad_left
    if label is not None:
        out_label = np.full((ch, cw), IGNORE_LABEL, dtype=np.uint8)
        r0, r1, c0, c1 = max(top, 0), min(top + ch, g.hs), max(left, 0), min(left + cw, g.ws)
        out_label[r0 - top:r1 - top, c0 - left:c1 - left] = canvas[r0:r1, c0:c1]

    dst = torch.empty(3, ch, cw) if out is None or not out.is_contiguous() else out
    _image_into(image, g, top, left, ch, cw, dst.numpy())
    if out is not None and dst is not out:
        out.copy_(dst)
        dst = out
    return dst, out_label


def eval_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Resized (h, w) of the authors' evaluation Resize: longer side -> size, shorter side int(side * ratio),
    then both floored to a multiple of 8 (so 473 -> 472; a 375 x 500 image becomes 352 x 472)."""
    if h >= w:
        new_h, new_w = size, int(w * (size * 1.0 / h))
    else:
        new_h, new_w = int(h * (size * 1.0 / w)), size
    return max(8, new_h // 8 * 8), max(8, new_w // 8 * 8)


def eval_transform(image: np.ndarray, label: np.ndarray | None, size: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """Evaluation Resize: bilinear image / nearest label to ``eval_size``, placed top-left on a size x size square.

    The image padding is 0 in pixel space (-mean/std after normalisation, as the authors' zero ``back_crop``); the
    label padding is 255. Interpolation as cv2.resize (bilinear: half-pixel centres; nearest: floor). Returns
    (float32 3 x size x size, uint8 size x size raw label or None).
    """
    h0, w0 = image.shape[:2]
    if label is not None and label.shape != (h0, w0):
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} sizes differ")
    nh, nw = eval_size(h0, w0, size)
    src = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    resized = F.interpolate(src, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)[0]
    out = torch.empty(3, size, size)
    _normalize_into(resized, out[:, :nh, :nw])
    # Pixel value 0 after normalisation, as the authors normalise after padding with zeros.
    out[:, nh:] = (-_MEAN_T * _INV_STD_T)
    out[:, :nh, nw:] = (-_MEAN_T * _INV_STD_T)
    out_label = None
    if label is not None:
        out_label = np.full((size, size), IGNORE_LABEL, dtype=np.uint8)
        lab = torch.from_numpy(label)[None, None]
        out_label[:nh, :nw] = F.interpolate(lab, size=(nh, nw), mode="nearest")[0, 0].numpy()
    return out, out_label


def binarize(label: np.ndarray, class_id: int) -> np.ndarray:
    """class_id -> 1, 255 kept, everything else -> 0 (uint8; comparisons are much faster than a table lookup)."""
    out = (label == class_id).view(np.uint8)
    out |= (label == IGNORE_LABEL).view(np.uint8) * np.uint8(IGNORE_LABEL)
    return out


def lookup(values: dict[int, int], default: int, ignore: int = IGNORE_LABEL) -> np.ndarray:
    """A 256-entry uint8 table: ``values`` (label value -> new value), ``default`` elsewhere, 255 kept.
    Apply with ``np.take(table, label)`` (faster than fancy indexing)."""
    lut = np.full(256, default, dtype=np.uint8)
    for k, v in values.items():
        lut[int(k)] = v
    lut[ignore] = ignore
    return lut
