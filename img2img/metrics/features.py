"""Inception ``pool_3`` features of images, prepared exactly as clean-fid or pytorch-fid do.

Modes (``--fid-mode``):

* ``clean`` -- clean-fid's default mode (Parmar et al. 2022; the protocol of CUT and of
  clean-fid's tables): the 8-bit RGB image as float32, each channel resized on its own to
  299x299 by Pillow's bicubic filter in mode ``F`` (no quantisation after resizing), clipped
  to [0, 255], then ``(x - 128) / 128`` -- the TensorFlow graph's own input scaling.
* ``legacy-pytorch`` -- pytorch-fid (Seitzer): the 8-bit RGB image divided by 255, resized to
  299x299 by ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialiasing), then
  ``2 x - 1``.

Both read the image as 8-bit RGB, the way the references' ``Image.open(path).convert("RGB")``
does: gray is repeated into three channels and alpha dropped (not composited). Two differences
remain, both on files those tools read wrongly: EXIF orientation is applied (the references
ignore it) and 16-bit images are scaled to 8 bits (``round(v / 257)``; Pillow clips them).

The network always runs in float32 (autocast off): bf16/fp16 would move the features by far
more than the differences FID is used to measure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from img2img.data.io import ImageReadError, read_image
from img2img.errors import UsageError
from img2img.metrics.inception import FEATURE_DIM, INPUT_SIZE

__all__ = ["MODES", "FeatureSet", "extract_features", "prepare", "to_rgb8"]

MODES = ("clean", "legacy-pytorch")


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """HxWxC gray/RGB/RGBA uint8/uint16 (``read_image``'s output) -> HxWx3 uint8 RGB."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.dtype == np.uint16:
        img = np.rint(img / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"expected uint8 or uint16 pixels, got {img.dtype}")
    channels = img.shape[2]
    if channels in (1, 2):
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if channels in (3, 4):
        return np.ascontiguousarray(img[:, :, :3])
    raise ValueError(f"expected 1 to 4 channels, got {channels}")


def _clean(rgb: np.ndarray) -> torch.Tensor:
    planes = []
    for c in range(3):
        plane = Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F")
        plane = plane.resize((INPUT_SIZE, INPUT_SIZE), resample=Image.Resampling.BICUBIC)
        planes.append(np.asarray(plane, dtype=np.float32).clip(0, 255))
    x = torch.from_numpy(np.stack(planes))
    return (x - 128) / 128


def _legacy_pytorch(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x[0] - 1


_PREPARE: dict[str, Callable[[np.ndarray], torch.Tensor]] = {
    "clean": _clean, "legacy-pytorch": _legacy_pytorch}


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else UsageError."""
    if mode not in _PREPARE:
        raise UsageError(f"--fid-mode {mode}: choose one of {', '.join(MODES)}")
    return mode


def prepare(img: np.ndarray, mode: str) -> torch.Tensor:
    """The network input (3 x 299 x 299 float32) for one image, as ``mode`` prepares it."""
    return _PREPARE[check_mode(mode)](to_rgb8(img))


@dataclass
class FeatureSet:
    """Features of the images read (one row per name) and a message per file that failed."""

    features: np.ndarray
    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _run(net: torch.nn.Module, batch: list[torch.Tensor], device: torch.device) -> np.ndarray:
    x = torch.stack(batch).to(device=device, dtype=torch.float32)
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        return net(x).float().cpu().numpy()


def extract_features(
    images: Iterable[tuple[str, np.ndarray | str | os.PathLike[str]]],
    net: torch.nn.Module,
    mode: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    total: int | None = None,
    desc: str = "features",
    quiet: bool = False,
) -> FeatureSet:
    """``pool_3`` features (N x 2048 float32) of ``(name, image array or file path)`` items.

    Images are prepared one by one (any size), batched ``batch_size`` at a time through
    ``net`` in float32 on ``device``, with a tqdm bar (``quiet`` hides it). A file that cannot
    be read becomes a message in ``errors``; the others are still used.
    """
    check_mode(mode)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    device = torch.device(device)
    rows: list[np.ndarray] = []
    names: list[str] = []
    errors: list[str] = []
    batch: list[torch.Tensor] = []
    with tqdm(total=total, disable=quiet, unit="img", desc=desc, dynamic_ncols=True) as bar:
        for name, item in images:
            try:
                img = item if isinstance(item, np.ndarray) else read_image(item)
                batch.append(prepare(img, mode))
                names.append(name)
            except ImageReadError as exc:
                errors.append(str(exc))
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
            if len(batch) == batch_size:
                rows.append(_run(net, batch, device))
                batch = []
            bar.update(1)
        if batch:
            rows.append(_run(net, batch, device))
    feats = np.concatenate(rows) if rows else np.zeros((0, FEATURE_DIM), np.float32)
    return FeatureSet(feats, names, errors)

