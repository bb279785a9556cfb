"""Training and evaluation transforms of the PFENet/BAM/SVF code family, re-done for speed.

The authors' training chain (``util/transform.py``) is RandScale -> RandRotate (p 0.5) -> RandomGaussianBlur
(p 0.5) -> RandomHorizontalFlip (p 0.5) -> Crop (random, padded, 85% rule) -> ToTensor -> Normalize, each step
working on a float32 copy of the whole image. Here the same random choices are made, but scale, rotation, flip,
padding and crop are composed into one affine map, so the image is resampled once, straight into the crop window:
with ``F.interpolate`` on uint8 when there is no rotation, with ``F.grid_sample`` on the normalised image when there
is. The label is warped once (nearest) onto the transformed canvas, where the crop rule is checked.

Coordinates are continuous with pixel centres at ``i + 0.5`` (cv2.resize's and PIL's convention). Every random
number comes from the ``numpy.random.Generator`` passed in, and a call always makes the same number of draws, so
a transform is a pure function of (inputs, generator state).

Deliberate differences to the authors' cv2 code, all sub-pixel or within 2 px of a border:
- with rotation, one bilinear resampling instead of two (scale, then rotate);
- without rotation, the resize maps by the canvas/source size ratio (cv2 by 1/scale: <= 0.5 px apart at the far
  edge) and rounds to uint8 before normalising;
- the 5x5 blur sees the fill value beyond the canvas edges, where cv2 reflects the canvas;
- the training label uses centre-aligned nearest sampling (cv2.resize's INTER_NEAREST floors; evaluation keeps
  the authors' floor rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IGNORE = 255
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


def _warp_nearest_u8(label: np.ndarray, matrix: np.ndarray, size_wh: tuple[int, int], fill: int) -> np.ndarray:
    """Nearest-neighbour affine warp of a uint8 2-D array with PIL: output point p takes the input at matrix @ p."""
    coeffs = tuple(float(v) for v in matrix[:2].ravel())
    out = Image.fromarray(label).transform(size_wh, Image.Transform.AFFINE, coeffs,
                                           resample=Image.Resampling.NEAREST, fillcolor=fill)
    return np.asarray(out)


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


def _blur_valid(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """cv2.GaussianBlur(ksize 5, sigma 0) = separable [1, 4, 6, 4, 1] / 16, 'valid' (``t`` has a 2-px margin)."""
    y = torch.add(t[..., 0:-4], t[..., 4:])
    y.add_(t[..., 1:-3], alpha=4).add_(t[..., 3:-1], alpha=4).add_(t[..., 2:-2], alpha=6)
    torch.add(y[..., 0:-4, :], y[..., 4:, :], out=out)
    out.add_(y[..., 1:-3, :], alpha=4).add_(y[..., 3:-1, :], alpha=4).add_(y[..., 2:-2, :], alpha=6)
    return out.mul_(1.0 / 256.0)


def _normalize_into(u8_chw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = (x - mean) / std`` from a uint8 (3, H, W) view in one pass plus an in-place scale."""
    torch.sub(u8_chw, _MEAN_T, out=out)
    return out.mul_(_INV_STD_T)


def to_normalized_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W), ``(x - mean) / std`` with ImageNet mean/std x 255."""
    h, w = image.shape[:2]
    return _normalize_into(torch.from_numpy(image).permute(2, 0, 1), torch.empty(3, h, w))


def _zero_outside(t: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> None:
    """Zero (= the mean after normalisation) everything of (3, H, W) outside rows [r0, r1) x cols [c0, c1)."""
    t[:, :r0] = 0
    t[:, r1:] = 0
    t[:, r0:r1, :c0] = 0
    t[:, r0:r1, c1:] = 0


def _sample_into(image: np.ndarray, g: _Geometry, rows: tuple[int, int], cols: tuple[int, int],
                 out: torch.Tensor) -> None:
    """Write the normalised image at canvas pixels [rows) x [cols) (all inside the canvas) into ``out``."""
    h0, w0 = image.shape[:2]
    src = torch.from_numpy(image).permute(2, 0, 1)  # uint8 view, no copy
    if g.angle == 0.0:
        # Scale + flip + crop: resize the whole image to the canvas on uint8 (cv2.resize semantics: half-pixel
        # centres, clamped border), then slice; cheaper than a generic warp.
        canvas = F.interpolate(src.unsqueeze(0), size=(g.hs, g.ws), mode="bilinear", align_corners=False,
                               antialias=False)[0]
        if g.flip:
            win = canvas[:, rows[0]:rows[1], g.ws - cols[1]:g.ws - cols[0]].flip(-1)
        else:
            win = canvas[:, rows[0]:rows[1], cols[0]:cols[1]]
        _normalize_into(win, out)
        return
    # Rotation: sample the normalised image, so zero padding = the ImageNet mean border of cv2.warpAffine.
    norm = _normalize_into(src, torch.empty(3, h0, w0)).unsqueeze(0)
    m = _canvas_to_source(g)
    # grid_sample wants x, y in [-1, 1] over the source (align_corners=False): 2 * coord / size - 1.
    scale = np.array([2.0 / w0, 2.0 / h0])
    ax = torch.tensor(m[:2, 0] * scale, dtype=torch.float32)
    ay = torch.tensor(m[:2, 1] * scale, dtype=torch.float32)
    a0 = m[:2, 2] * scale - 1.0 + (m[:2, 0] * (cols[0] + 0.5) + m[:2, 1] * (rows[0] + 0.5)) * scale
    xs = torch.arange(cols[1] - cols[0], dtype=torch.float32).view(1, -1, 1)
    ys = torch.arange(rows[1] - rows[0], dtype=torch.float32).view(-1, 1, 1)
    grid = torch.add((xs * ax).add_(torch.tensor(a0, dtype=torch.float32)), ys * ay).unsqueeze(0)
    out.copy_(F.grid_sample(norm, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0])


def train_transform(image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, aug: TrainAug,
                    protect: int | None = None, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
    """Augment one image (uint8 H x W x 3) and its label (uint8 H x W of raw values, or None).

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
        canvas = _warp_nearest_u8(label, _canvas_to_source(g), (g.ws, g.hs), IGNORE)
        if protect is not None and aug.crop_draws > 1:
            pick = _pick_crop(canvas == protect, g, ch, cw, aug.keep_fraction)
    # Crop window in canvas coordinates (may stick out of the canvas: that part is padding).
    top, left = int(g.tops[pick]) - g.pad_top, int(g.lefts[pick]) - g.pad_left
    if label is not None:
        out_label = np.full((ch, cw), IGNORE, dtype=np.uint8)
        r0, r1, c0, c1 = max(top, 0), min(top + ch, g.hs), max(left, 0), min(left + cw, g.ws)
        out_label[r0 - top:r1 - top, c0 - left:c1 - left] = canvas[r0:r1, c0:c1]

    dst = torch.empty(3, ch, cw) if out is None else out
    m = _BLUR_MARGIN if g.blur else 0
    # Canvas part of the (margin-extended) window, in canvas coordinates and in window coordinates.
    r0, r1 = max(top - m, 0), min(top + ch + m, g.hs)
    c0, c1 = max(left - m, 0), min(left + cw + m, g.ws)
    wr0, wr1, wc0, wc1 = r0 - top + m, r1 - top + m, c0 - left + m, c1 - left + m
    buf = torch.empty(3, ch + 2 * m, cw + 2 * m) if g.blur else dst
    _zero_outside(buf, wr0, wr1, wc0, wc1)  # crop padding = the mean = 0 after normalisation
    _sample_into(image, g, (r0, r1), (c0, c1), buf[:, wr0:wr1, wc0:wc1])
    if g.blur:
        _blur_valid(buf, dst)
        # The authors pad after blurring: padding stays exactly the mean.
        _zero_outside(dst, max(-top, 0), max(min(g.hs - top, ch), 0), max(-left, 0), max(min(g.ws - left, cw), 0))
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
        out_label = np.full((size, size), IGNORE, dtype=np.uint8)
        lab = torch.from_numpy(label)[None, None]
        out_label[:nh, :nw] = F.interpolate(lab, size=(nh, nw), mode="nearest")[0, 0].numpy()
    return out, out_label


def binarize(label: np.ndarray, class_id: int) -> np.ndarray:
    """class_id -> 1, 255 kept, everything else -> 0 (uint8; comparisons are much faster than a table lookup)."""
    out = (label == class_id).view(np.uint8)
    out |= (label == IGNORE).view(np.uint8) * np.uint8(IGNORE)
    return out


def lookup(values: dict[int, int], default: int, ignore: int = IGNORE) -> np.ndarray:
    """A 256-entry uint8 table: ``values`` (label value -> new value), ``default`` elsewhere, 255 kept.
    Apply with ``np.take(table, label)`` (faster than fancy indexing)."""
    lut = np.full(256, default, dtype=np.uint8)
    for k, v in values.items():
        lut[int(k)] = v
    lut[ignore] = ignore
    return lut
