"""Training-time preprocessing built on albumentations.

Modes follow the CycleGAN/pix2pix reference options:

- ``resize_and_crop``: resize to ``load_size`` x ``load_size`` (bicubic), random crop ``crop_size``.
- ``crop``: random crop ``crop_size`` (reflect-padded first when the image is smaller).
- ``scale_width``: resize so the width is ``load_size`` (aspect kept), then random crop
  ``crop_size`` (so images of different shapes can share a batch).
- ``none``: no resizing; the image is cropped (top-left) to a multiple of 4 so the ResNet
  generator's two downsamplings line up. Batches need equal-size images.

A horizontal flip with probability 0.5 follows unless disabled. Every call is seeded
explicitly (``seed``) so that a sample is a pure function of its index; this is what
makes ``--resume`` reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from img2img.errors import UsageError

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "none")


def _scale_width(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w == width:
        return img
    height = max(1, round(h * width / w))
    out = cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 else out


def build_transform(
    preprocess: str = "resize_and_crop",
    load_size: int = 286,
    crop_size: int = 256,
    flip: bool = True,
    additional_targets: dict[str, str] | None = None,
    multiple: int = 4,
) -> Callable[..., dict[str, np.ndarray]]:
    """Build ``fn(image=..., seed=..., **extra) -> dict`` applying the preprocessing mode.

    ``additional_targets`` (e.g. ``{"image_b": "image"}``) receive exactly the same crop and
    flip, as paired data needs.
    """
    if preprocess not in PREPROCESS_MODES:
        raise UsageError(
            f"unknown preprocess mode {preprocess!r}; choose one of {', '.join(PREPROCESS_MODES)}"
        )
    if crop_size > load_size and preprocess in ("resize_and_crop", "scale_width"):
        raise UsageError(f"crop size {crop_size} is larger than load size {load_size}")
    ops: list[A.BasicTransform] = []
    if preprocess == "resize_and_crop":
        ops.append(A.Resize(load_size, load_size, interpolation=cv2.INTER_CUBIC))
    if preprocess in ("resize_and_crop", "crop", "scale_width"):
        ops.append(A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_REFLECT_101))
        ops.append(A.RandomCrop(crop_size, crop_size))
    if flip:
        ops.append(A.HorizontalFlip(p=0.5))
    compose = A.Compose(ops, additional_targets=additional_targets or {})

    def apply(seed: int, **images: np.ndarray) -> dict[str, np.ndarray]:
        if preprocess == "scale_width":
            images = {k: _scale_width(v, load_size) for k, v in images.items()}
        elif preprocess == "none":
            images = {k: _crop_to_multiple(v, multiple) for k, v in images.items()}
        compose.set_random_seed(seed)
        out = compose(**images)
        return {k: (v[:, :, None] if v.ndim == 2 else v) for k, v in out.items() if k in images}

    return apply


def _crop_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    h2, w2 = max(multiple, h - h % multiple), max(multiple, w - w % multiple)
    if h2 > h or w2 > w:
        raise UsageError(f"image of {w}x{h} is smaller than the network's minimum {multiple}")
    return img[:h2, :w2]
