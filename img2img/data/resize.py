"""Resizing: MATLAB-compatible bicubic (``imresize(img, [h w], 'bicubic')``) for SR data, and
aspect-keeping OpenCV resizes for the dataset tools (:func:`resize_short_side`,
:func:`resize_to_height`: ``INTER_AREA`` to shrink, ``INTER_CUBIC`` to enlarge).

The super-resolution literature makes its low-resolution images and its bicubic baselines
with MATLAB's ``imresize``: Keys' cubic kernel with ``a = -0.5``, antialiased when shrinking
(the kernel is stretched by the scale factor, so x4 shrinking reads 16 taps per axis), sample
centres aligned as ``(i + 0.5) * in / out - 0.5``, weights normalized to sum 1, and image
borders extended by half-sample symmetric mirroring. OpenCV's ``INTER_CUBIC`` differs on two
counts (``a = -0.75``, no antialiasing).

Pillow's ``BICUBIC`` filter has the same kernel, antialiasing and centres, but truncates the
kernel at the image border instead of mirroring. So each channel is mirrored by a few pixels
with ``np.pad(mode="symmetric")`` and resized as a float32 ``"F"`` image with a ``box`` that
selects the original area: Pillow then reads the mirrored pixels and the result equals
MATLAB's for any size ratio. Mode ``"F"`` keeps 16-bit samples exact (Pillow accumulates in
double and stores float32 between the horizontal and vertical passes). Pillow's direct 8-bit
RGB path is *not* used: it rounds and clips the intermediate pass to uint8 and uses
fixed-point weights, which changed about a quarter of the values (by up to 21 levels) on
random 8-bit images.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "bicubic_resize", "cv_resize", "downscale", "modcrop", "resize_short_side", "resize_to_height",
]

_INT_RANGES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def _resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize one float HxW plane, mirroring borders as MATLAB does; returns float32."""
    h_in, w_in = plane.shape
    # Kernel reach in input pixels: 2 taps, times the scale factor when shrinking (+1 margin).
    pad_y = math.ceil(2.0 * max(h_in / height, 1.0)) + 1
    pad_x = math.ceil(2.0 * max(w_in / width, 1.0)) + 1
    padded = np.pad(plane.astype(np.float32), ((pad_y, pad_y), (pad_x, pad_x)), mode="symmetric")
    box = (pad_x, pad_y, pad_x + w_in, pad_y + h_in)
    out = Image.fromarray(padded, mode="F").resize((width, height), Image.Resampling.BICUBIC,
                                                   box=box)
    return np.asarray(out, dtype=np.float32)


def bicubic_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an HxW or HxWxC image to ``width`` x ``height`` like MATLAB's bicubic imresize.

    uint8/uint16 in -> same dtype out (rounded to nearest, clipped to the dtype range); float
    in -> same float dtype out (computed in float32, not clipped, so overshoot is kept).

    >>> bicubic_resize(np.full((8, 8), 7, np.uint8), 2, 2)
    array([[7, 7],
           [7, 7]], dtype=uint8)
    """
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"expected a non-empty HxW or HxWxC image, got shape {img.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"output size must be positive, got {width}x{height}")
    dtype = img.dtype
    if dtype not in _INT_RANGES and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"unsupported dtype {dtype} (expected uint8, uint16 or float)")
    if (img.shape[1], img.shape[0]) == (width, height):
        return img.copy()
    planes = img[:, :, None] if img.ndim == 2 else img
    out = np.stack([_resize_plane(planes[:, :, c], width, height)
                    for c in range(planes.shape[2])], axis=-1)
    if img.ndim == 2:
        out = out[:, :, 0]
    if dtype in _INT_RANGES:
        return np.clip(np.rint(out), 0, _INT_RANGES[dtype]).astype(dtype)
    return out.astype(dtype, copy=False)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale``, keeping the top-left corner."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"image of {w}x{h} is smaller than the scale factor {scale}")
    return img[: h - h % scale, : w - w % scale]


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Low-resolution image for x``scale`` super-resolution: modcrop, then bicubic shrinking.

    The output is exactly ``1/scale`` of the modcropped size, like MATLAB's
    ``imresize(modcrop(img, scale), 1/scale, 'bicubic')``.
    """
    hr = modcrop(img, scale)
    return bicubic_resize(hr, hr.shape[1] // scale, hr.shape[0] // scale)


def cv_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize`` keeping HxWxC: INTER_AREA to shrink, INTER_CUBIC to enlarge."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    shrink = width * height < w * h
    out = cv2.resize(img, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 else out


def resize_to_height(img: np.ndarray, height: int) -> np.ndarray:
    """Resize to ``height`` keeping the aspect ratio."""
    h, w = img.shape[:2]
    return cv_resize(img, max(1, round(w * height / h)), height)


def resize_short_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is exactly ``size``, keeping the aspect ratio."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)
    return cv_resize(img, nw, nh)
