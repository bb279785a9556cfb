"""Reading the images and masks of a prepared dataset: OpenCV's decoders for the plain JPEGs and 8-bit grey PNGs
of PASCAL and COCO (faster, the same pixels as PIL), PIL for anything else; errors name the file."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol as _Protocol

import numpy as np

from ..errors import DataError
from .datasets import DEFAULT_EXIF_ORIENTATION, EXIF_ORIENTATIONS, IGNORE_LABEL, read_mask
from .transforms import cv2_module

class ImageSource(_Protocol):
    """What the datasets here need from ``svf.data.datasets.open_dataset``."""

    name: str
    num_classes: int

    def image_path(self, image_id: str) -> Path: ...

    def mask_path(self, image_id: str) -> Path: ...


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _read_bytes(path: str | Path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file missing: {path}") from None


def _jpeg_components(data: bytes) -> int:
    """Number of colour components of a complete JPEG (SOI ... EOI), 0 when ``data`` is not one."""
    if data[:3] != b"\xff\xd8\xff" or data[-2:] != b"\xff\xd9":
        return 0
    i, n = 2, len(data)
    while i + 9 < n:  # walk the marker segments up to the frame header
        if data[i] != 0xFF:
            return 0
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            return data[i + 9]
        if marker == 0xDA:  # start of scan before any frame header
            return 0
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return 0


def _decode_rgb(data: bytes, exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> np.ndarray | None:
    """OpenCV's decoder for complete 1- or 3-component JPEGs (the files of PASCAL and COCO): libjpeg-turbo as in
    PIL, the same pixels (tests/data/test_episodes.py compares them), and faster. ``exif_orientation="apply"``
    turns the image as its EXIF orientation tag says, as the authors' ``cv2.imread(path, cv2.IMREAD_COLOR)`` does;
    ``"ignore"`` keeps the stored pixel order. None for anything else (CMYK, truncated, not a JPEG), which PIL then
    reads or rejects as before."""
    if _jpeg_components(data) not in (1, 3):
        return None
    cv2 = cv2_module()
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # recent OpenCV decodes to RGB directly (5.0 here)
    flags = cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag
    if exif_orientation == "ignore":
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or rgb_flag is not None:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_grey_png(data: bytes) -> np.ndarray | None:
    """OpenCV's decoder for complete 8-bit greyscale PNGs (the prepared masks); None for anything else (palette,
    16-bit, truncated ...), which ``read_mask`` then reads or rejects as before."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x00" or data[-8:] != _PNG_END:
        return None
    cv2 = cv2_module()
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return mask if mask is not None and mask.ndim == 2 and mask.dtype == np.uint8 else None


def read_image(path: str | Path, exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> np.ndarray:
    """RGB uint8 (H, W, 3), turned by its EXIF orientation unless ``exif_orientation="ignore"``; a missing or
    undecodable file raises an error naming it."""
    if exif_orientation not in EXIF_ORIENTATIONS:
        raise ValueError(f"exif_orientation must be one of {EXIF_ORIENTATIONS}, got {exif_orientation!r}")
    image = _decode_rgb(_read_bytes(path, "image"), exif_orientation)
    if image is not None:
        return image
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if exif_orientation == "apply":
                img = ImageOps.exif_transpose(img)
            return np.array(img if img.mode == "RGB" else img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file missing: {path}") from None
    except Exception as exc:  # PIL raises several types (OSError, SyntaxError, ...) for corrupt files
        raise DataError(f"cannot read image {path}: {exc}") from None


def read_label(path: str | Path, num_classes: int) -> np.ndarray:
    """Class mask uint8 (H, W); a value outside 0..num_classes and 255 is an error naming the file."""
    mask = _decode_grey_png(_read_bytes(path, "mask"))
    if mask is None:
        mask = read_mask(path)
    if int(mask.max(initial=0)) > num_classes:  # cheap test first; 255 alone is fine
        bad = np.unique(mask[(mask > num_classes) & (mask != IGNORE_LABEL)])
        if bad.size:
            raise DataError(f"mask {path}: values {bad.tolist()} are neither a class (1..{num_classes}), 0 nor 255")
    return mask


def read_pair(source: ImageSource, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image_path, mask_path = source.image_path(image_id), source.mask_path(image_id)
    image = read_image(image_path, getattr(source, "exif_orientation", DEFAULT_EXIF_ORIENTATION))
    label = read_label(mask_path, source.num_classes)
    if image.shape[:2] != label.shape:
        raise DataError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but mask {mask_path} is "
                        f"{label.shape[1]}x{label.shape[0]}: a mask must have its image's size")
    return image, label


# Decoded pairs one episode dataset keeps in memory (per process: each loader worker fills its own). The demo's and
# the study's few hundred synthetic pairs fit many times over; at paper scale the first ~700 PASCAL pairs do.
PAIR_CACHE_BYTES = 512 * 2**20


class PairCache:
    """:func:`read_pair` for one dataset, with the decoded (image, label) pairs kept in memory while their total
    stays within ``max_bytes`` (the first pairs read; later ones are read from disk every time). Every epoch reads
    the same images again, and reading and decoding them was 8% of a demo training (docs/measurements.md, "Decoded
    image cache"). A cached pair is handed out as it is: the transforms only read their inputs (a test checks an
    epoch gives the same batches with and without the cache, and leaves the cached arrays as read)."""

    def __init__(self, source: ImageSource, max_bytes: int = PAIR_CACHE_BYTES):
        self.source, self.max_bytes, self.used = source, int(max_bytes), 0
        self.pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs.get(image_id)
        if pair is None:
            pair = read_pair(self.source, image_id)
            size = pair[0].nbytes + pair[1].nbytes
            if self.used + size <= self.max_bytes:
                self.pairs[image_id] = pair
                self.used += size
        return pair


__all__ = ["EXIF_ORIENTATIONS", "ImageSource", "PAIR_CACHE_BYTES", "PairCache", "read_image", "read_label",
           "read_pair"]
