"""Unpaired two-domain dataset over ``ROOT/trainA`` and ``ROOT/trainB``.

This is the layout of the public CycleGAN datasets, so a downloaded one works as is.
Indexing is by a global sample counter ``k`` (see :class:`CounterSampler`): epoch
``k // len`` shuffles A, and B is drawn at random for each A, all from RNGs seeded by
``(seed, k)``. A sample is therefore a pure function of ``k`` whatever the number of
workers, and a resumed run sees exactly the data an uninterrupted one would have. A file
that cannot be read when drawn is replaced by the next one of its folder
(:mod:`img2img.data.fallback`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from img2img.data.convert import as_channels, to_tensor
from img2img.data.fallback import first_usable
from img2img.data.io import read_image
from img2img.data.scan import list_images
from img2img.data.training_check import InputGeometry, Problem, Size, uniform_problems
from img2img.data.transforms import build_transform
from img2img.errors import UsageError


def domain_folder(root: str | Path, name: str) -> list[Path]:
    """List the images of ``ROOT/name`` (recursive); clear errors when missing or empty."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: folder not found (expected ROOT/trainA, ROOT/trainB, ROOT/testA, "
            f"ROOT/testB as in the public CycleGAN datasets)"
        )
    files = list_images(folder)
    if not files:
        raise UsageError(f"{folder}: no images found (looked for common image suffixes)")
    return files


class CounterSampler(Sampler[int]):
    """Yields sample counters forever; the dataset maps a counter to a sample.

    In one process: ``start, start + 1, ...``. With ``world_size`` processes (torchrun), the
    global batch of step ``s`` is counters ``s * W * b .. (s + 1) * W * b - 1`` and rank ``r``
    takes its ``r``-th slice of ``b = batch_size``; ``start`` counts this rank's samples
    (``step * b``). So every sample is used once per epoch across the ranks, each epoch in a
    new order (the dataset's permutation is a function of the epoch, which is what
    ``DistributedSampler.set_epoch`` provides), and the ranks together see exactly the
    batches a single process with batch ``W * b`` would, which is also what makes a resumed
    distributed run continue bit-exactly.
    """

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1) -> None:
        if not 0 <= rank < world_size or batch_size < 1:
            raise ValueError(f"bad sampler: rank {rank} of {world_size}, batch {batch_size}")
        self.start, self.rank, self.world_size, self.batch_size = (start, rank, world_size,
                                                                   batch_size)

    def __iter__(self) -> Iterator[int]:
        b, w = self.batch_size, self.world_size
        step, i = divmod(self.start, b)
        while True:
            yield (step * w + self.rank) * b + i
            i += 1
            if i == b:
                i, step = 0, step + 1


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(x)) for x in key])


class UnpairedDataset(Dataset):
    """Yields ``{"A": tensor, "B": tensor, "A_path": str, "B_path": str, "bad": str}``, images
    in [-1, 1]; ``bad`` lists the files replaced because they could not be read.

    ``multiple``: with ``preprocess="none"`` images are cropped to multiples of it (the
    generator's ``size_multiple``).
    """

    def __init__(
        self,
        root: str | Path,
        phase: str = "train",
        direction: str = "AtoB",
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        channels: int = 3,
        seed: int = 0,
        multiple: int = 4,
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise UsageError(f"direction must be AtoB or BtoA, not {direction!r}")
        a, b = ("A", "B") if direction == "AtoB" else ("B", "A")
        self.folders = (f"{phase}{a}", f"{phase}{b}")
        self.files_a = domain_folder(root, phase + a)
        self.files_b = domain_folder(root, phase + b)
        self.preprocess = preprocess
        self.transform = build_transform(preprocess, load_size, crop_size, flip,
                                         multiple=multiple)
        self.channels = channels
        self.seed = seed
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def image_files(self) -> list[Path]:
        """Every file this dataset reads."""
        return self.files_a + self.files_b

    def size_problems(self, sizes: Mapping[Path, Size], geometry: InputGeometry
                      ) -> list[Problem]:
        """Images this dataset cannot use (only ``preprocess="none"`` constrains sizes)."""
        if self.preprocess != "none":
            return []
        out: list[Problem] = []
        for folder, files in zip(self.folders, (self.files_a, self.files_b), strict=True):
            small = [(p, geometry.problem(sizes[p])) for p in files if p in sizes]
            out += [(p, why) for p, why in small if why]
            cropped = {p: geometry.cropped(sizes[p]) for p in files if p in sizes}
            out += uniform_problems(files, cropped, folder, geometry.uniform)
        return out

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, _rng(self.seed, epoch, 0xA).permutation(len(self)))
        return self._perm[1]

    def _load(self, path: Path, seed: int) -> torch.Tensor:
        img = as_channels(read_image(path), self.channels)
        return to_tensor(self.transform(seed=seed, image=img)["image"])

    def __getitem__(self, k: int) -> dict[str, torch.Tensor | str]:
        n = len(self)
        epoch, pos = divmod(int(k), n)
        index_a = int(self._order(epoch)[pos]) % len(self.files_a)
        rng = _rng(self.seed, k, 0xB)
        index_b = int(rng.integers(len(self.files_b)))
        seed_a, seed_b = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
        (a, path_a), bad_a = first_usable(index_a, len(self.files_a), lambda i: (
            self._load(self.files_a[i], seed_a), self.files_a[i]))
        (b, path_b), bad_b = first_usable(index_b, len(self.files_b), lambda i: (
            self._load(self.files_b[i], seed_b), self.files_b[i]))
        return {"A": a, "B": b, "A_path": str(path_a), "B_path": str(path_b),
                "bad": "\n".join(bad_a + bad_b)}
