"""What a task validates during training (``--val-every``): the data side of the contract.

A task's :meth:`~img2img.tasks.base.Task.validation_sets` returns one :class:`ValSet` per
exported generator it can validate: the images to translate, their targets when the data is
paired, and the reference images the outputs are compared with as a set (FID/KID). The
trainer (:mod:`img2img.engine.validation`) runs the generator, measures and keeps the best.

Each set uses at most ``limit`` images (``--val-max``), picked evenly over the sorted file
list (:func:`spread`) rather than the first ones, so a folder sorted by source or class is
sampled across; the choice is the same in every validation of a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from img2img.data.io import read_image
from img2img.data.scan import list_images
from img2img.data.unpaired import domain_folder
from img2img.errors import UsageError

__all__ = ["INCEPTION_METRICS", "METRICS", "PAIRED_METRICS", "ValSet", "spread",
           "unpaired_set"]

INCEPTION_METRICS = ("fid", "kid")  # outputs against the reference images, as sets
PAIRED_METRICS = ("psnr", "ssim")  # each output against its own target
METRICS = INCEPTION_METRICS + PAIRED_METRICS
HIGHER_IS_BETTER = frozenset(PAIRED_METRICS)

T = TypeVar("T")


def spread(items: Sequence[T], limit: int) -> list[T]:
    """At most ``limit`` of ``items``, evenly spaced (all of them when there are fewer)."""
    n = len(items)
    if n <= limit:
        return list(items)
    return [items[i * n // limit] for i in range(limit)]


@dataclass(frozen=True)
class ValSet:
    """The validation data of one exported generator.

    ``load(i)`` reads input ``i`` and its target (None for unpaired data), both as
    ``read_image`` gives them; it raises ``ImageReadError`` for a file that cannot be read.
    ``reference``: the FID/KID reference files; None means the targets themselves.
    PSNR/SSIM use ``y_channel`` and ``crop_border`` (the super-resolution protocol: Y,
    border = scale).
    """

    export: str  # key of Task.exports(), e.g. "G_A2B.safetensors"
    label: str  # suffix of the logged keys: "A2B" -> val_fid_A2B; "" -> val_psnr
    names: list[str]  # one per input, for messages
    load: Callable[[int], tuple[np.ndarray, np.ndarray | None]]
    source: str  # where the inputs come from, for messages
    paired: bool = False
    reference: list[Path] | None = None
    ref_source: str = ""
    ref_files: tuple[Path, ...] = ()  # every file the reference depends on (cache key)
    y_channel: bool = False
    crop_border: int = 0

    def reference_items(self) -> Iterator[tuple[str, np.ndarray | str | os.PathLike[str]]]:
        """``(name, image or path)`` of the reference, as feature extraction takes them."""
        if self.reference is not None:
            root = Path(self.ref_source)
            for p in self.reference:
                yield (p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)), p
            return
        for i, name in enumerate(self.names):
            target = self.load(i)[1]
            if target is not None:
                yield name, target


def unpaired_set(export: str, label: str, inputs_dir: Path, inputs: list[Path],
                 ref_dir: Path, reference: list[Path]) -> ValSet:
    """A set of ``inputs`` (files under ``inputs_dir``) compared with ``reference`` as a set."""
    return ValSet(export=export, label=label,
                  names=[p.relative_to(inputs_dir).as_posix() for p in inputs],
                  load=lambda i: (read_image(inputs[i]), None), source=str(inputs_dir),
                  reference=reference, ref_source=str(ref_dir), ref_files=tuple(reference))


def unpaired_sets(exports: Iterable[str], base: Path, limit: int) -> list[ValSet]:
    """Each exported generator ``G_X2Y`` translates ``BASE/testX``, compared with
    ``BASE/testY`` (``BASE/trainY`` when there is no test folder); ``BASE`` is ``--val-data``
    or ``--data``. A direction without test images is not validated."""
    sets = []
    for name in exports:  # names follow the folders: G_A2B, G_B2A
        label = name[2:5]
        src, dst = base / f"test{label[0]}", base / f"test{label[2]}"
        inputs = list_images(src) if src.is_dir() else []
        if not inputs:
            continue
        refs = list_images(dst) if dst.is_dir() else []
        if not refs:
            dst = base / f"train{label[2]}"
            refs = domain_folder(base, dst.name)
        sets.append(unpaired_set(name, label, src, spread(inputs, limit), dst,
                                 spread(refs, limit)))
    if not sets:
        raise UsageError(f"--val-every: no images in {base / 'testA'} or {base / 'testB'} "
                         f"to validate on (--val-data ROOT: a dataset root with them)")
    return sets
