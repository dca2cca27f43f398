"""Super-resolution training data: high-resolution crops and their low-resolution inputs.

Two sources:

- any folder of high-resolution images (searched recursively): a random HR crop of
  ``crop_size`` (a multiple of ``scale``) is taken and the LR input is made on the fly by
  MATLAB-compatible bicubic downscaling (``data.resize.downscale``);
- pre-made pairs ``ROOT/HR`` + ``ROOT/LR_x{scale}`` matched by relative path without
  suffix (``datasets/make_sr_pairs.py`` writes them): aligned random crops of both.

Random flips and 90-degree rotations follow; optional degradations of the LR input
(``blur``, ``noise``, ``jpeg``) use albumentations. Items are a pure function of the
global sample counter, as in the other datasets, so ``--resume`` is exact; an image that
cannot be read when drawn is replaced by the next one (:mod:`img2img.data.fallback`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.data.convert import as_channels, to_tensor
from img2img.data.fallback import first_usable
from img2img.data.io import ImageReadError, read_image
from img2img.data.paired import match_folders
from img2img.data.resize import downscale, modcrop
from img2img.data.scan import list_images
from img2img.data.training_check import InputGeometry, Problem, Size, fmt_size
from img2img.errors import UsageError

DEGRADATIONS = ("blur", "noise", "jpeg")


def validation_pair(hr_path: Path, lr_path: Path | None, scale: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The low-resolution input and the high-resolution target of a whole validation image.

    The HR image is cropped to a multiple of ``scale`` (modcrop, keeping the top-left corner);
    the LR image is read from ``lr_path`` (and the HR cropped to ``scale`` times its size) or,
    without one, made from the HR by MATLAB-compatible bicubic downscaling, as in training.
    ``ImageReadError`` naming the file when one cannot be read or the sizes do not fit.
    """
    hr = read_image(hr_path)
    try:
        hr = modcrop(hr, scale)
    except ValueError as exc:
        raise ImageReadError(hr_path, str(exc)) from None
    if lr_path is None:
        return downscale(hr, scale), hr
    lr = read_image(lr_path)
    lh, lw = lr.shape[:2]
    if not (0 <= hr.shape[0] - lh * scale < scale and 0 <= hr.shape[1] - lw * scale < scale):
        raise ImageReadError(lr_path, f"{fmt_size(lr.shape[:2])} is not 1/{scale} of {hr_path} "
                                      f"({fmt_size(hr.shape[:2])})")
    return lr, hr[: lh * scale, : lw * scale]


def build_degradation(names: list[str]) -> A.Compose | None:
    """Random LR degradations (each applied with probability 0.5), or None."""
    unknown = sorted(set(names) - set(DEGRADATIONS))
    if unknown:
        raise UsageError(f"unknown degradation(s) {unknown}; choose from {DEGRADATIONS}")
    ops: list[A.BasicTransform] = []
    if "blur" in names:
        ops.append(A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.2, 1.2), p=0.5))
    if "noise" in names:
        ops.append(A.GaussNoise(std_range=(0.005, 0.03), p=0.5))
    if "jpeg" in names:
        ops.append(A.ImageCompression(quality_range=(60, 95), p=0.5))
    return A.Compose(ops) if ops else None


def _augment(rng: np.random.Generator, *imgs: np.ndarray) -> list[np.ndarray]:
    """The same random flip / transpose for every image (dihedral group without 180s)."""
    flip, transpose = rng.random() < 0.5, rng.random() < 0.5
    out = []
    for img in imgs:
        if flip:
            img = img[:, ::-1]
        if transpose:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out


class SRDataset(Dataset):
    """Yields ``{"A": LR, "B": HR, "A_path", "B_path", "bad"}``, tensors in [-1, 1]; ``bad``
    lists the files replaced because they could not be read."""

    def __init__(self, root: str | Path, scale: int = 4, crop_size: int = 96,
                 degrade: list[str] | None = None, augment: bool = True,
                 channels: int = 3, seed: int = 0) -> None:
        if crop_size % scale:
            raise UsageError(f"--crop-size {crop_size} must be a multiple of --scale {scale}")
        root = Path(root)
        hr, lr = root / "HR", root / f"LR_x{scale}"
        self.pairs: list[tuple[Path, Path | None]]
        self.unmatched: list[Path] = []
        if hr.is_dir() and lr.is_dir():
            matched, self.unmatched = match_folders(lr, hr)
            self.pairs = [(h, low) for low, h in matched]
        elif root.is_dir():
            self.pairs = [(p, None) for p in list_images(root)]
        else:
            raise FileNotFoundError(f"{root}: folder not found")
        if not self.pairs:
            raise UsageError(f"{root}: no images found")
        self.scale, self.crop_size, self.channels, self.seed = scale, crop_size, channels, seed
        self.augment = augment
        self.degrade = build_degradation(degrade or [])
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def image_files(self) -> list[Path]:
        """Every file this dataset reads."""
        return [p for pair in self.pairs for p in pair if p is not None]

    def size_problems(self, sizes: Mapping[Path, Size], geometry: InputGeometry
                      ) -> list[Problem]:
        """Images smaller than the crop and LR files that are not 1/scale of their HR."""
        out: list[Problem] = []
        for hr_path, lr_path in self.pairs:
            if hr_path not in sizes or (lr_path is not None and lr_path not in sizes):
                continue
            why = self._size_problem(hr_path, lr_path, sizes[hr_path],
                                     sizes[lr_path] if lr_path else None)
            if why:
                out.append(why)
        return out

    def _size_problem(self, hr_path: Path, lr_path: Path | None, hr: Size,
                      lr: Size | None) -> Problem | None:
        s, c = self.scale, self.crop_size
        if lr is None or lr_path is None:
            if min(hr) < c:
                return hr_path, f"{fmt_size(hr)} is smaller than the crop size {c}"
            return None
        if not (0 <= hr[0] - lr[0] * s < s and 0 <= hr[1] - lr[1] * s < s):
            return lr_path, f"{fmt_size(lr)} is not 1/{s} of {hr_path} ({fmt_size(hr)})"
        if min(lr) < c // s:
            return lr_path, f"{fmt_size(lr)} is smaller than the LR crop {c // s}"
        return None

    def _crops(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        hr_path, lr_path = self.pairs[k]
        s, c = self.scale, self.crop_size
        hr = as_channels(read_image(hr_path), self.channels)
        lr = None if lr_path is None else as_channels(read_image(lr_path), self.channels)
        why = self._size_problem(hr_path, lr_path, hr.shape[:2],
                                 None if lr is None else lr.shape[:2])
        if why:
            raise ImageReadError(*why)
        if lr is None:
            h, w = hr.shape[:2]
            y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            hr_crop = hr[y : y + c, x : x + c]
            return downscale(hr_crop, s), hr_crop
        lh, lw = lr.shape[:2]
        cl = c // s
        y, x = int(rng.integers(lh - cl + 1)), int(rng.integers(lw - cl + 1))
        return lr[y : y + cl, x : x + cl], hr[y * s : (y + cl) * s, x * s : (x + cl) * s]

    def __getitem__(self, k: int) -> dict[str, torch.Tensor | str]:
        epoch, pos = divmod(int(k), len(self))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch, 0xE]).permutation(
                len(self)))

        def crops(i: int) -> tuple[int, np.random.Generator, np.ndarray, np.ndarray]:
            rng = np.random.default_rng([self.seed, int(k), 0xF])
            return (i, rng, *self._crops(i, rng))

        (idx, rng, lr, hr), bad = first_usable(int(self._order[1][pos]), len(self), crops)
        if self.augment:
            lr, hr = _augment(rng, lr, hr)
        if self.degrade is not None and lr.dtype == np.uint8:
            self.degrade.set_random_seed(int(rng.integers(2**31 - 1)))
            lr = self.degrade(image=lr)["image"]
            lr = lr[:, :, None] if lr.ndim == 2 else lr
        hr_path, lr_path = self.pairs[idx]
        return {"A": to_tensor(lr), "B": to_tensor(hr), "A_path": str(lr_path or hr_path),
                "B_path": str(hr_path), "bad": "\n".join(bad)}
