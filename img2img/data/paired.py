"""Paired (aligned) dataset for pix2pix.

Two layouts, as the public pix2pix datasets use:

- ``ROOT/train/*.jpg``: each file holds A|B side by side (facades, maps, edges2shoes);
- ``ROOT/trainA`` + ``ROOT/trainB``: separate files matched by relative path without suffix
  (``trainA/x/1.jpg`` pairs with ``trainB/x/1.png``). Unmatched files are reported
  (``unmatched`` attribute and a log warning), never silently dropped.

A and B receive the same random crop and flip. Like the unpaired dataset, items are
indexed by a global sample counter so that resumed runs see the same data; a pair that
cannot be read when drawn is replaced by the next one (:mod:`img2img.data.fallback`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.data.convert import as_channels, to_tensor
from img2img.data.fallback import first_usable
from img2img.data.io import ImageReadError, read_image
from img2img.data.pairs import split_pair
from img2img.data.scan import list_images
from img2img.data.training_check import InputGeometry, Problem, Size, fmt_size, uniform_problems
from img2img.data.transforms import build_transform
from img2img.errors import UsageError

log = logging.getLogger(__name__)


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def match_folders(folder_a: Path, folder_b: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pairs matched by relative path without suffix, and the files left unmatched."""
    a = {_key(p, folder_a): p for p in list_images(folder_a)}
    b = {_key(p, folder_b): p for p in list_images(folder_b)}
    pairs = [(a[k], b[k]) for k in sorted(a.keys() & b.keys())]
    unmatched = sorted([a[k] for k in a.keys() - b.keys()] + [b[k] for k in b.keys() - a.keys()])
    return pairs, unmatched


class PairedDataset(Dataset):
    """Yields ``{"A", "B", "A_path", "B_path", "bad"}`` with A and B aligned, in [-1, 1];
    ``bad`` lists the files replaced because they could not be read.

    ``multiple``: with ``preprocess="none"`` images are cropped to multiples of it.
    """

    def __init__(self, root: str | Path, phase: str = "train", direction: str = "AtoB",
                 preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, channels: int = 3,
                 seed: int = 0, multiple: int = 4) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise UsageError(f"direction must be AtoB or BtoA, not {direction!r}")
        root = Path(root)
        combined, fa, fb = root / phase, root / f"{phase}A", root / f"{phase}B"
        self.unmatched: list[Path] = []
        self.items: list[tuple[Path, Path | None]]
        if fa.is_dir() and fb.is_dir():
            pairs, self.unmatched = match_folders(fa, fb)
            self.items = list(pairs)
            if self.unmatched:
                shown = ", ".join(str(p) for p in self.unmatched[:10])
                log.warning("%d file(s) without a partner are not used: %s%s",
                            len(self.unmatched), shown, " ..." if len(self.unmatched) > 10 else "")
        elif combined.is_dir():
            self.items = [(p, None) for p in list_images(combined)]
        else:
            raise FileNotFoundError(
                f"{root}: expected {combined.name}/ (A|B side by side) or {fa.name}/ + "
                f"{fb.name}/ (files matched by name)")
        if not self.items:
            raise UsageError(f"{root}: no {phase} image pairs found")
        self.swap = direction == "BtoA"
        self.preprocess = preprocess
        self.transform = build_transform(preprocess, load_size, crop_size, flip,
                                         additional_targets={"image_b": "image"},
                                         multiple=multiple)
        self.channels = channels
        self.seed = seed
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def image_files(self) -> list[Path]:
        """Every file this dataset reads."""
        return [p for pair in self.items for p in pair if p is not None]

    def size_problems(self, sizes: Mapping[Path, Size], geometry: InputGeometry
                      ) -> list[Problem]:
        """Pairs whose sizes do not fit: A|B images of odd width, A and B files of different
        sizes, and with ``preprocess="none"`` images the network cannot take unresized."""
        out: list[Problem] = []
        halves: dict[Path, Size] = {}
        for path_a, path_b in self.items:
            if path_a not in sizes or (path_b is not None and path_b not in sizes):
                continue
            (h, w) = sizes[path_a]
            if path_b is None:
                if w % 2:
                    out.append((path_a, f"odd width {w}: an A|B image must be two equal "
                                        f"halves side by side"))
                    continue
                halves[path_a] = (h, w // 2)
            elif sizes[path_b] != (h, w):
                out.append((path_b, f"{fmt_size(sizes[path_b])}, but its partner {path_a} "
                                    f"is {w}x{h}"))
                continue
            else:
                halves[path_a] = (h, w)
        if self.preprocess == "none":
            out += [(p, why) for p, s in halves.items() if (why := geometry.problem(s))]
            cropped = {p: geometry.cropped(s) for p, s in halves.items()}
            out += uniform_problems(list(halves), cropped, "the training pairs",
                                    geometry.uniform)
        return out

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray, Path, Path]:
        path_a, path_b = self.items[k]
        if path_b is None:
            try:
                a, b = split_pair(read_image(path_a))
            except ValueError as exc:
                raise ImageReadError(path_a, str(exc)) from exc
            path_b = path_a
        else:
            a, b = read_image(path_a), read_image(path_b)
            if a.shape[:2] != b.shape[:2]:
                raise ImageReadError(path_b, f"{b.shape[1]}x{b.shape[0]}, but its partner "
                                             f"{path_a} is {a.shape[1]}x{a.shape[0]}")
        if self.swap:
            return b, a, path_b, path_a
        return a, b, path_a, path_b

    def read_pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``k`` as stored (no crop, flip or channel change), input first (``BtoA``
        swaps); ``ImageReadError`` naming the file when it cannot be read."""
        a, b, _, _ = self._load(k)
        return a, b

    def __getitem__(self, k: int) -> dict[str, torch.Tensor | str]:
        epoch, pos = divmod(int(k), len(self))
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xC])
            self._perm = (epoch, rng.permutation(len(self)))
        (a, b, pa, pb), bad = first_usable(int(self._perm[1][pos]), len(self), self._load)
        seed = int(np.random.default_rng([self.seed, int(k), 0xD]).integers(2**31 - 1))
        out = self.transform(seed=seed, image=as_channels(a, self.channels),
                             image_b=as_channels(b, self.channels))
        return {"A": to_tensor(out["image"]), "B": to_tensor(out["image_b"]),
                "A_path": str(pa), "B_path": str(pb), "bad": "\n".join(bad)}
