"""Build a paired dataset from ordinary photos with a deterministic operation.

A is the derived image, B the photo, so a model trained A -> B learns to undo the operation
(edges -> photo, gray -> colour, blurred -> sharp, low-res -> high-res). Photos are used as
RGB (gray replicated, alpha dropped) in their own bit depth; every op returns an RGB image of
the photo's size and dtype:

* ``edges``: Canny edges drawn as black lines on white (edges2shoes style). Thresholds come
  from the median ``m`` of a Gaussian-blurred 8-bit grayscale: ``max(0, 0.67 m)`` and
  ``min(255, 1.33 m)``. 16-bit photos are reduced to 8 bits for the detection only.
* ``gray``: BT.601 luma (0.299 R + 0.587 G + 0.114 B) replicated to three channels, so A and B
  have the same shape (a single-channel A would also need a different network input).
* ``blur``: Gaussian blur with standard deviation ``sigma`` (kernel from OpenCV's default
  ``6 sigma + 1`` rule, reflected borders).
* ``downscale``: bicubic downscale by ``factor`` then bicubic upscale back to the original
  size (the SR-style input, same size as B).

Layouts: ``aligned`` writes ``ROOT/trainA|trainB|testA|testB`` with matching relative names;
``combined`` writes ``ROOT/train`` and ``ROOT/test`` as ``A|B`` side by side. The test split
takes the ``round(n * test_fraction)`` photos that rank first by a seeded hash of their
relative path: the same seed gives the same split, and adding photos later does not move
existing ones from train to test except at the cut-off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from img2img.data.pairs import (
    PairReport,
    Progress,
    UsageError,
    check_outputs,
    join_pair,
    normalise_ext,
    read_or_report,
    refuse_outside,
    resize_short_side,
    write_or_report,
)
from img2img.data.scan import list_images

__all__ = [
    "OPS",
    "PairedJob",
    "PairedPlan",
    "blur",
    "downscale",
    "edges",
    "gray",
    "make_op",
    "output_folders",
    "plan_paired",
    "run_paired",
    "split_test",
]

Op = Callable[[np.ndarray], np.ndarray]


def _rgb(img: np.ndarray) -> np.ndarray:
    """HxW[xC] gray/RGB/RGBA -> contiguous HxWx3 (gray replicated, alpha dropped)."""
    img = img[:, :, None] if img.ndim == 2 else img
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _keep_dims(out: np.ndarray) -> np.ndarray:
    return out[:, :, None] if out.ndim == 2 else out


def _luma(img: np.ndarray) -> np.ndarray:
    """HxW BT.601 luma of an RGB image, same dtype."""
    return cv2.cvtColor(_rgb(img), cv2.COLOR_RGB2GRAY)


def edges(img: np.ndarray) -> np.ndarray:
    """Black Canny edges on white, thresholds from the median of the blurred grayscale."""
    y = _luma(img)
    if y.dtype == np.uint16:  # Canny needs 8 bits
        y = ((y.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    y = cv2.GaussianBlur(y, (5, 5), 0)
    median = float(np.median(y))
    lower = int(max(0.0, (1.0 - 0.33) * median))
    upper = int(min(255.0, (1.0 + 0.33) * median))
    mask = cv2.Canny(y, lower, upper) > 0
    peak = np.iinfo(img.dtype).max
    out = np.full(mask.shape + (3,), peak, img.dtype)
    out[mask] = 0
    return out


def gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma replicated to RGB."""
    return np.repeat(_luma(img)[:, :, None], 3, axis=2)


def blur(img: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return _keep_dims(cv2.GaussianBlur(_rgb(img), (0, 0), sigma))


def downscale(img: np.ndarray, factor: float = 4.0) -> np.ndarray:
    """Bicubic downscale by ``factor``, then bicubic upscale back to the original size."""
    rgb = _rgb(img)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=cv2.INTER_CUBIC)
    return _keep_dims(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


OPS: dict[str, Op] = {"edges": edges, "gray": gray, "blur": blur, "downscale": downscale}


def make_op(name: str, sigma: float = 3.0, factor: float = 4.0) -> Op:
    """The op called ``name`` with its parameter bound; UsageError for bad names or values."""
    if name not in OPS:
        raise UsageError(f"unknown op {name!r} (choose from {', '.join(OPS)})")
    if name == "blur":
        if not sigma > 0:
            raise UsageError(f"--sigma must be > 0, got {sigma}")
        return partial(blur, sigma=sigma)
    if name == "downscale":
        if not factor > 1:
            raise UsageError(f"--factor must be > 1, got {factor}")
        return partial(downscale, factor=factor)
    return OPS[name]


# --------------------------------------------------------------------------- folders


def split_test(rels: list[str], test_fraction: float, seed: int) -> set[str]:
    """The relative paths that go to the test split (deterministic for a seed)."""
    if not 0.0 <= test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    n_test = round(len(rels) * test_fraction)

    def rank(rel: str) -> bytes:
        return hashlib.blake2b(f"{seed}\0{rel}".encode(), digest_size=8).digest()

    return set(sorted(rels, key=lambda r: (rank(r), r))[:n_test])


@dataclass(frozen=True)
class PairedJob:
    """One photo and where its A/B (aligned) or A|B (combined, ``dst_b`` None) go."""

    src: Path
    phase: str  # "train" or "test"
    dst_a: Path
    dst_b: Path | None
    out: Path | None = None  # the output folder both must resolve inside


@dataclass
class PairedPlan:
    """Jobs, and a report already holding the photos refused up front."""

    jobs: list[PairedJob]
    report: PairReport

    def summary(self) -> str:
        """One line for the end of the run (after :func:`run_paired`)."""
        failed = {p for p, _ in self.report.failed}
        ok = [j for j in self.jobs if j.src not in failed]
        train = sum(j.phase == "train" for j in ok)
        return (f"{len(ok)} pairs written ({train} train, {len(ok) - train} test), "
                f"{len(self.report.failed)} failed")


def plan_paired(photos: str | os.PathLike[str], root: str | os.PathLike[str],
                layout: str = "aligned", test_fraction: float = 0.1, seed: int = 0,
                ext: str = "png") -> PairedPlan:
    """Plan one job per photo; output names keep the photo's relative path, suffix ``ext``.

    Two photos that would give the same output name (``x.jpg``, ``x.png``): the second is
    reported as failed. UsageError for bad folders or values, or an output inside the photos.
    """
    src_root, out = Path(photos), Path(root)
    if not src_root.is_dir():
        raise UsageError(f"--photos {photos}: folder not found")
    if layout not in ("aligned", "combined"):
        raise UsageError(f"unknown layout {layout!r} (aligned or combined)")
    ext = normalise_ext(ext)
    files = list_images(src_root)
    if not files:
        raise UsageError(f"--photos {photos}: no images found")
    report = PairReport()
    by_name: dict[str, Path] = {}
    for f in files:
        name = PurePosixPath(f.relative_to(src_root).as_posix()).with_suffix(ext).as_posix()
        if name in by_name:
            report.failed.append((f, f"same output name {name} as {by_name[name].name}"))
        else:
            by_name[name] = f
    test = split_test(sorted(by_name), test_fraction, seed)
    jobs = []
    for name, f in sorted(by_name.items()):
        phase = "test" if name in test else "train"
        if layout == "aligned":
            jobs.append(PairedJob(f, phase, out / f"{phase}A" / name, out / f"{phase}B" / name,
                                  out))
        else:
            jobs.append(PairedJob(f, phase, out / phase / name, None, out))
    dsts = [d for j in jobs for d in (j.dst_a, j.dst_b) if d is not None]
    check_outputs(out, [src_root], dsts)
    return PairedPlan(jobs, report)


def output_folders(root: str | os.PathLike[str], layout: str) -> list[Path]:
    """The folders ``plan_paired`` writes into for ``layout``."""
    names = ("trainA", "trainB", "testA", "testB") if layout == "aligned" else ("train", "test")
    return [Path(root) / n for n in names]


def run_paired(plan: PairedPlan, op: Op, size: int | None = None,
               progress: Progress | None = None) -> PairReport:
    """Read each photo, optionally resize its shorter side to ``size``, apply ``op``, write.

    Failures are added to ``plan.report`` (returned); the other photos are still processed.
    """
    if size is not None and size < 1:
        raise UsageError(f"--size must be >= 1, got {size}")
    report = plan.report
    for job in plan.jobs:
        img = None
        if not refuse_outside([job.dst_a, job.dst_b], job.out, job.src, report):
            img = read_or_report(job.src, report)
        if img is not None:
            photo = _rgb(img)
            if size is not None:
                photo = resize_short_side(photo, size)
            try:
                derived = op(photo)
            except (cv2.error, ValueError) as exc:
                report.failed.append((job.src, f"operation failed: {exc}"))
            else:
                if job.dst_b is None:
                    write_or_report(job.dst_a, join_pair(derived, photo), job.src, report)
                elif write_or_report(job.dst_a, derived, job.src, report):
                    write_or_report(job.dst_b, photo, job.src, report)
        if progress:
            progress(1)
    report.failed.sort(key=lambda x: str(x[0]))
    return report
