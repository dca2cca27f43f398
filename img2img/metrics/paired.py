"""Full-reference image quality metrics: PSNR and SSIM, with the super-resolution protocol.

Images are numpy arrays, HxW or HxWxC, uint8/uint16 (or float with an explicit data range).

* ``psnr``: ``10 log10(R^2 / MSE)``, the MSE in float64 over all pixels and channels; identical
  images give ``inf``.
* ``ssim``: Wang et al. (2004) as in their ``ssim_index.m``: 11x11 Gaussian window with sigma
  1.5, K1 = 0.01, K2 = 0.03, only the 'valid' part of the filtered maps (no padding, so 5 pixels
  per side do not count), mean over the map and over channels. Computed with
  ``kornia.metrics.ssim(padding="valid", eps=0)`` in float64.
* ``rgb_to_y``: BT.601 studio-range luma as MATLAB's ``rgb2ycbcr``: for 8-bit data
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1]; other ranges are scaled
  (``Y * range / 255``), so white is 235/255 of the range and black 16/255. Computed in float64
  with numpy (kornia's ``rgb_to_ycbcr`` is full-range JPEG YCbCr, a different convention).
* ``evaluate_pair``: the super-resolution protocol. With ``y_channel``, RGB(A) images are reduced
  to Y, rounded to integers for integer images as MATLAB's ``rgb2ycbcr`` does for uint8/uint16
  input (the SR literature's MATLAB scripts call it on uint8 images, then convert to double);
  single-channel images are used as they are (those scripts skip ``rgb2ycbcr`` for them).
  Set14 x4 bicubic (``tools/check_set14_bicubic.py``, MATLAB-style resizing both ways) gives
  25.99 dB / SSIM 0.7024; unrounded Y (``round_y=False``, BasicSR's way) 26.00 dB / 0.7031.
  Published: 25.99 dB / 0.7486 (Ledig et al. 2017; that SSIM is not reproduced by Wang's
  'valid' SSIM) and 26.00 / 0.7027 in later papers' tables. Converting the gray ``bridge``
  image to RGB first (its Y then spans 16..235 only) adds ~0.09 dB to the mean: that is where
  26.09 dB comes from (Pillow's BICUBIC both ways also gives 25.99 when gray stays gray).
* Folders: ``match_folders`` pairs files by relative path without suffix, ``evaluate_folders``
  evaluates every pair and collects problems, ``FolderReport.to_dict`` / ``write_json`` give
  strict JSON where an infinite PSNR (identical images) is the string ``"inf"``: JSON has no
  infinity, and ``null`` would read as "missing" (``float("inf")`` parses the string). Means
  are plain means of the per-image values (the literature's convention), so one identical pair
  makes the mean PSNR ``inf``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kornia
import numpy as np
import torch

from img2img.data.io import ImageReadError, atomic_write_bytes, read_image
from img2img.data.scan import list_images

__all__ = [
    "SSIM_WINDOW",
    "FolderReport",
    "evaluate_folders",
    "evaluate_pair",
    "format_row",
    "format_table",
    "match_folders",
    "psnr",
    "rgb_to_y",
    "ssim",
    "write_json",
]

SSIM_WINDOW = 11  # Gaussian window side; sigma 1.5 is kornia's fixed value
_DTYPE_RANGES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def _check_same_shape(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"image sizes differ: prediction {_describe(pred)}, "
                         f"reference {_describe(ref)}")


def _describe(img: np.ndarray) -> str:
    """``WxH`` or ``WxHxC`` -- the order users know image sizes in."""
    h, w = img.shape[:2]
    return f"{w}x{h}" + (f"x{img.shape[2]}" if img.ndim == 3 else "")


def _check_range(data_range: float) -> float:
    if not data_range > 0:  # also rejects NaN
        raise ValueError(f"data_range must be positive, got {data_range}")
    return float(data_range)


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images.

    >>> round(psnr(np.full((4, 4), 105, np.uint8), np.full((4, 4), 100, np.uint8), 255), 2)
    34.15
    """
    _check_same_shape(pred, ref)
    data_range = _check_range(data_range)
    diff = pred.astype(np.float64) - ref.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def _to_nchw(img: np.ndarray) -> torch.Tensor:
    arr = img[:, :, None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).permute(2, 0, 1)[None]


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Mean SSIM (Wang et al. 2004, 'valid' window positions only), averaged over channels.

    Both sides must be at least 11 pixels (the window size).
    """
    _check_same_shape(pred, ref)
    data_range = _check_range(data_range)
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {pred.shape}")
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {_describe(pred)}")
    with torch.no_grad():
        ssim_map = kornia.metrics.ssim(_to_nchw(pred), _to_nchw(ref), SSIM_WINDOW,
                                       max_val=data_range, eps=0.0, padding="valid")
    return float(ssim_map.mean())


def rgb_to_y(img: np.ndarray, data_range: float) -> np.ndarray:
    """BT.601 studio-range luma (MATLAB ``rgb2ycbcr``) of an HxWx3 RGB image, as float64 HxW.

    >>> rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8), 255)
    array([[235.,  16.]])
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    data_range = _check_range(data_range)
    rgb = img.astype(np.float64) / data_range
    return (16.0 + rgb @ _Y_WEIGHTS) * (data_range / 255.0)


def _default_range(pred: np.ndarray, ref: np.ndarray) -> float:
    if pred.dtype != ref.dtype:
        raise ValueError(f"sample types differ: prediction {pred.dtype}, reference {ref.dtype} "
                         "(pass data_range to compare them)")
    if pred.dtype not in _DTYPE_RANGES:
        raise ValueError(f"no default data range for {pred.dtype} images (pass data_range)")
    return _DTYPE_RANGES[pred.dtype]


def _luma(img: np.ndarray, data_range: float, round_y: bool) -> np.ndarray:
    """Y of gray (1 channel: used as is), RGB or RGBA (alpha ignored) images, float64 HxW."""
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0].astype(np.float64)
    if channels not in (3, 4):
        raise ValueError(f"y_channel needs gray, RGB or RGBA images, got {channels} channels")
    y = rgb_to_y(img[:, :, :3], data_range)
    if round_y and np.issubdtype(img.dtype, np.integer):
        np.rint(y, out=y)
    return y


def evaluate_pair(
    pred: np.ndarray,
    ref: np.ndarray,
    y_channel: bool = False,
    crop_border: int = 0,
    data_range: float | None = None,
    *,
    round_y: bool = True,
) -> dict[str, float]:
    """PSNR and SSIM of a prediction against its reference: ``{"psnr": dB, "ssim": s}``.

    ``data_range`` defaults to the dtype maximum (255 for uint8, 65535 for uint16; float images
    need it given). ``crop_border`` removes that many pixels on each side first. With
    ``y_channel`` both images are reduced to BT.601 luma (``rgb_to_y``; alpha ignored, gray
    images used as they are), rounded to integers for integer images unless ``round_y`` is
    false. Without it every channel counts (alpha too). Sizes must match exactly.
    """
    if pred.ndim not in (2, 3) or ref.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC images, got shapes {pred.shape} and {ref.shape}")
    pred = pred[:, :, None] if pred.ndim == 2 else pred
    ref = ref[:, :, None] if ref.ndim == 2 else ref
    _check_same_shape(pred, ref)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    data_range = _check_range(data_range) if data_range is not None else _default_range(pred, ref)
    if crop_border:
        h, w = pred.shape[:2]
        if h <= 2 * crop_border or w <= 2 * crop_border:
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {w}x{h} image")
        inner = (slice(crop_border, h - crop_border), slice(crop_border, w - crop_border))
        pred, ref = pred[inner], ref[inner]
    if y_channel:
        pred, ref = _luma(pred, data_range, round_y), _luma(ref, data_range, round_y)
    return {"psnr": psnr(pred, ref, data_range), "ssim": ssim(pred, ref, data_range)}


# --------------------------------------------------------------------------- folders


def _keyed(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Image files under ``root`` keyed by relative POSIX path without suffix; clashes reported."""
    found: dict[str, list[Path]] = {}
    for path in list_images(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        found.setdefault(key, []).append(path)
    keyed = {k: v[0] for k, v in found.items() if len(v) == 1}
    clashes = [f"{root / k}.*: ambiguous, several files: {', '.join(p.name for p in v)}"
               for k, v in found.items() if len(v) > 1]
    return keyed, clashes


def match_folders(pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str],
                  ) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair images by relative path without suffix (``a/x.png`` matches ``a/x.jpg``).

    Returns ``(pairs, problems)``: ``(key, pred_path, ref_path)`` sorted by key, and one message
    per file without a partner or per ambiguous name (``x.png`` and ``x.jpg`` side by side).
    """
    pred_root, ref_root = Path(pred_dir), Path(ref_dir)
    preds, problems = _keyed(pred_root)
    refs, ref_clashes = _keyed(ref_root)
    problems += ref_clashes
    pairs = [(k, preds[k], refs[k]) for k in sorted(preds.keys() & refs.keys())]
    problems += [f"{preds[k]}: no reference image {ref_root / k}.*"
                 for k in sorted(preds.keys() - refs.keys())]
    problems += [f"{refs[k]}: no prediction {pred_root / k}.*"
                 for k in sorted(refs.keys() - preds.keys())]
    return pairs, problems


@dataclass
class FolderReport:
    """Per-image results (``name``, ``psnr``, ``ssim``) and every problem met, in order."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def mean(self, key: str) -> float:
        """Mean of a metric over the evaluated images (NaN if none; inf if any PSNR is inf)."""
        values = [float(r[key]) for r in self.rows]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self, **settings: Any) -> dict[str, Any]:
        """JSON-ready summary; infinite PSNR becomes the string ``"inf"`` (JSON has no inf)."""
        means = {"psnr": self.mean("psnr"), "ssim": self.mean("ssim"), "count": len(self.rows)}
        return _json_safe({**settings, "images": self.rows, "mean": means,
                           "errors": self.errors})


def _json_safe(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    y_channel: bool = False,
    crop_border: int = 0,
    data_range: float | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> FolderReport:
    """``evaluate_pair`` on every matched pair of two folders (see ``match_folders``).

    Unreadable files, size mismatches and files without a partner become messages in
    ``report.errors``; the other pairs are still evaluated. ``on_row`` is called after each
    image (for live output). A missing folder raises FileNotFoundError / NotADirectoryError.
    """
    pairs, problems = match_folders(pred_dir, ref_dir)
    report = FolderReport(errors=problems)
    for key, pred_path, ref_path in pairs:
        try:
            pred, ref = read_image(pred_path), read_image(ref_path)
            scores = evaluate_pair(pred, ref, y_channel, crop_border, data_range)
        except ImageReadError as exc:
            report.errors.append(str(exc))
            continue
        except ValueError as exc:  # size, channel or sample type mismatch
            report.errors.append(f"{pred_path}: {exc}")
            continue
        row: dict[str, Any] = {"name": key, **scores}
        report.rows.append(row)
        if on_row is not None:
            on_row(row)
    return report


def format_row(name: str, psnr_db: float, ssim_value: float, width: int = 24) -> str:
    """One table line: name, PSNR with 2 decimals (``inf`` as is), SSIM with 4."""
    return f"{name:<{width}} {psnr_db:>8.2f} {ssim_value:>8.4f}"


def format_table(report: FolderReport, width: int = 24) -> str:
    """Fixed-width table of every image and the mean line."""
    lines = [f"{'image':<{width}} {'PSNR':>8} {'SSIM':>8}"]
    lines += [format_row(r["name"], r["psnr"], r["ssim"], width) for r in report.rows]
    lines.append(format_row(f"mean ({len(report.rows)} images)", report.mean("psnr"),
                            report.mean("ssim"), width))
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as indented, strict JSON (no NaN/Infinity), atomically."""
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
