"""Paired images stored side by side (``A|B``, A on the left): split, join, and folder tools.

The public pix2pix datasets (facades, maps, edges2shoes, ...) store each training pair as one
image twice as wide as tall; :func:`split_pair` is what the pix2pix dataset uses to read
them. :func:`plan_combine`/:func:`run_combine` build such images from two folders whose files
match by relative path stem (``a/x.jpg`` pairs with ``b/x.png``); :func:`plan_split` /
:func:`run_split` do the reverse into ``OUT/A`` and ``OUT/B``.

Folder tools never modify inputs, never write outside the output folder (a destination
inside an input folder is a :class:`UsageError`; one that resolves outside the output folder
through a symbolic link is refused and reported, see :mod:`img2img.data.paths`) and write
every file atomically. Files that cannot be read or combined are collected in the
:class:`PairReport` with their reason; the rest are still processed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from img2img.data.io import ImageIOError, read_image, write_image
from img2img.data.paths import check_clear_of_inputs, check_output_folder, outside_reason
from img2img.data.resize import resize_short_side, resize_to_height
from img2img.data.scan import list_images
from img2img.errors import UsageError

__all__ = [
    "CombineJob",
    "CombinePlan",
    "PairReport",
    "SplitJob",
    "UsageError",
    "check_outputs",
    "join_pair",
    "match_format",
    "normalise_ext",
    "plan_combine",
    "plan_split",
    "read_or_report",
    "refuse_outside",
    "resize_short_side",
    "resize_to_height",
    "run_combine",
    "run_split",
    "split_pair",
    "stale_files",
    "write_or_report",
]

Progress = Callable[[int], None]


# --------------------------------------------------------------------------- arrays


def split_pair(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an ``A|B`` image (HxW or HxWxC) into its left and right halves (contiguous copies).

    Raises ValueError for an odd width, where the halves would not have equal sizes.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    w = img.shape[1]
    if w % 2:
        raise ValueError(f"odd width {w}: an A|B image must be two equal halves side by side")
    half = w // 2
    return np.ascontiguousarray(img[:, :half]), np.ascontiguousarray(img[:, half:])


def _channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC -> HxW x ``channels`` (>= C): gray replicated, missing alpha filled opaque."""
    c = img.shape[2]
    if c == channels:
        return img
    rgb = np.repeat(img, 3, axis=2) if c == 1 else img[:, :, :3]
    if channels == 3:
        return np.ascontiguousarray(rgb)
    alpha = img[:, :, 3:] if c == 4 else np.full(img.shape[:2] + (1,), np.iinfo(img.dtype).max,
                                                 img.dtype)
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


def match_format(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bring two images to the richer common format.

    dtype: uint16 if either is (uint8 values are scaled by 257, so 255 -> 65535). Channels:
    the larger count of the two, gray replicated to RGB and a missing alpha filled opaque.
    """
    a = a[:, :, None] if a.ndim == 2 else a
    b = b[:, :, None] if b.ndim == 2 else b
    if a.dtype != b.dtype:
        if np.uint16 not in (a.dtype, b.dtype) or np.uint8 not in (a.dtype, b.dtype):
            raise ValueError(f"unsupported dtypes {a.dtype} and {b.dtype} (uint8/uint16 only)")
        a, b = (x.astype(np.uint16) * 257 if x.dtype == np.uint8 else x for x in (a, b))
    channels = max(a.shape[2], b.shape[2])
    return _channels(a, channels), _channels(b, channels)


def join_pair(a: np.ndarray, b: np.ndarray, resize_b: bool = False) -> np.ndarray:
    """Put ``a`` left of ``b`` in one image, after :func:`match_format`.

    Heights must match unless ``resize_b`` (B is then resized to A's height keeping its
    aspect ratio); otherwise ValueError naming both sizes (W x H).
    """
    a, b = match_format(a, b)
    if a.shape[0] != b.shape[0]:
        if not resize_b:
            raise ValueError(f"heights differ: A is {a.shape[1]}x{a.shape[0]}, "
                             f"B is {b.shape[1]}x{b.shape[0]} (use --resize-b)")
        b = resize_to_height(b, a.shape[0])
    return np.concatenate([a, b], axis=1)


# --------------------------------------------------------------------------- reports


@dataclass
class PairReport:
    """What a folder run did: written files, failures with reasons, unmatched inputs."""

    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    only_a: list[Path] = field(default_factory=list)
    only_b: list[Path] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self, verb: str = "written") -> str:
        """One line for the end of the run."""
        line = f"{len(self.done)} {verb}, {len(self.failed)} failed"
        if self.warnings:
            line += f", {len(self.warnings)} warnings"
        if self.only_a or self.only_b:
            line += f", unmatched: {len(self.only_a)} in A, {len(self.only_b)} in B"
        return line


def check_outputs(out: Path, inputs: list[Path], destinations: list[Path]) -> None:
    """UsageError if ``out`` is a file or inside an input folder, or a destination inside
    ``out`` lies inside an input folder. Destinations that resolve outside ``out`` are left
    to :func:`refuse_outside` (per file)."""
    check_output_folder(out, "--out")
    inside = [d for d in destinations if outside_reason(d, out) is None]
    check_clear_of_inputs(out, [(i, str(i)) for i in inputs], destinations=inside,
                          flag="--out")


def refuse_outside(dsts: Iterable[Path | None], out: Path | None, src: Path,
                   report: PairReport) -> bool:
    """True, with ``(src, reason)`` in ``report.failed``, if a destination resolves outside
    ``out`` (checked just before writing; ``out`` None: no check)."""
    if out is None:
        return False
    for dst in dsts:
        if dst is not None and (reason := outside_reason(dst, out)) is not None:
            report.failed.append((src, reason))
            return True
    return False


def read_or_report(path: Path, report: PairReport) -> np.ndarray | None:
    """Read an image; on failure add ``(path, reason)`` to ``report.failed`` and return None."""
    try:
        return read_image(path)
    except ImageIOError as exc:
        report.failed.append((path, exc.reason))
    except OSError as exc:
        report.failed.append((path, exc.strerror or str(exc)))
    return None


def write_or_report(path: Path, img: np.ndarray, src: Path, report: PairReport) -> bool:
    """Write ``img`` (alpha dropped for JPEG, which cannot store it) and add it to
    ``report.done``; on failure add ``(src, reason)`` to ``report.failed`` and return False."""
    if img.shape[2] == 4 and path.suffix.lower() in (".jpg", ".jpeg"):
        img = np.ascontiguousarray(img[:, :, :3])
    try:
        write_image(path, img)
    except (ImageIOError, OSError) as exc:
        report.failed.append((src, f"cannot write {path}: {exc}"))
        return False
    report.done.append(path)
    return True


def stale_files(folders: list[Path], written: list[Path]) -> list[Path]:
    """Images below ``folders`` that are not in ``written`` (left over from an earlier run)."""
    keep = {p.resolve() for p in written}
    return [f for d in folders if d.is_dir() for f in list_images(d) if f.resolve() not in keep]


def normalise_ext(ext: str) -> str:
    """``"png"``/``".JPG"`` -> ``".png"``/``".jpg"``; UsageError unless PNG or JPEG."""
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"unsupported --ext {ext!r} (use png or jpg)")
    return ext


def _stem_key(root: Path, path: Path) -> str:
    return PurePosixPath(path.relative_to(root).as_posix()).with_suffix("").as_posix()


def _by_stem(root: Path, files: list[Path], failed: list[tuple[Path, str]]) -> dict[str, Path]:
    """{relative path stem: file}; files sharing a stem are ambiguous and reported as failed."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(_stem_key(root, f), []).append(f)
    out: dict[str, Path] = {}
    for key, paths in groups.items():
        if len(paths) == 1:
            out[key] = paths[0]
        else:
            names = ", ".join(p.name for p in paths)
            failed.extend((p, f"ambiguous: several files share the stem {key!r} ({names})")
                          for p in paths)
    return out


# --------------------------------------------------------------------------- combine


@dataclass(frozen=True)
class CombineJob:
    """One matched pair and its output file."""

    a: Path
    b: Path
    dst: Path
    out: Path | None = None  # the output folder ``dst`` must resolve inside


@dataclass
class CombinePlan:
    """Matched jobs plus what did not match (reported, not fatal)."""

    jobs: list[CombineJob]
    report: PairReport


def _folder(path: str | os.PathLike[str], flag: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{flag} {path}: folder not found")
    return p


def plan_combine(dir_a: str | os.PathLike[str], dir_b: str | os.PathLike[str],
                 out: str | os.PathLike[str], ext: str = "png") -> CombinePlan:
    """Match A and B files by relative path stem; outputs go to ``OUT/<stem>.<ext>``.

    Raises UsageError for missing folders, an output inside an input, or no match at all.
    Unmatched files and ambiguous stems (``x.jpg`` next to ``x.png``) are in the report.
    """
    root_a, root_b, out_p = _folder(dir_a, "--a"), _folder(dir_b, "--b"), Path(out)
    ext = normalise_ext(ext)
    report = PairReport()
    files_a, files_b = list_images(root_a), list_images(root_b)
    a = _by_stem(root_a, files_a, report.failed)
    b = _by_stem(root_b, files_b, report.failed)
    keys = sorted(a.keys() & b.keys())
    report.only_a = sorted(a[k] for k in a.keys() - b.keys())
    report.only_b = sorted(b[k] for k in b.keys() - a.keys())
    if not keys:
        raise UsageError(f"no file in --a {dir_a} ({len(files_a)} images) matches a file in "
                         f"--b {dir_b} ({len(files_b)} images) by relative path and name "
                         f"(suffix ignored)")
    jobs = [CombineJob(a[k], b[k], out_p / (k + ext), out_p) for k in keys]
    check_outputs(out_p, [root_a, root_b], [j.dst for j in jobs])
    return CombinePlan(jobs, report)


_UNEQUAL = ("halves of unequal widths (A {}, B {} px): split_pair and the pix2pix dataset "
            "cut A|B images in the middle")


def run_combine(plan: CombinePlan, resize_b: bool = False,
                progress: Progress | None = None) -> PairReport:
    """Write every ``A|B`` image of ``plan``; failures are added to ``plan.report``."""
    report = plan.report
    for job in plan.jobs:
        if refuse_outside([job.dst], job.out, job.a, report):
            if progress:
                progress(1)
            continue
        img_a = read_or_report(job.a, report)
        img_b = read_or_report(job.b, report) if img_a is not None else None
        if img_a is not None and img_b is not None:
            try:
                joined = join_pair(img_a, img_b, resize_b)
            except ValueError as exc:
                report.failed.append((job.a, f"cannot pair with {job.b}: {exc}"))
            else:
                if write_or_report(job.dst, joined, job.a, report) and \
                        joined.shape[1] != 2 * img_a.shape[1]:
                    report.warnings.append((job.dst, _UNEQUAL.format(
                        img_a.shape[1], joined.shape[1] - img_a.shape[1])))
        if progress:
            progress(1)
    report.failed.sort(key=lambda x: str(x[0]))
    return report


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitJob:
    """One ``A|B`` input and its two outputs."""

    src: Path
    dst_a: Path
    dst_b: Path
    out: Path | None = None  # the output folder both must resolve inside


def plan_split(input_dir: str | os.PathLike[str],
               out: str | os.PathLike[str]) -> list[SplitJob]:
    """``IN/rel`` -> ``OUT/A/rel`` and ``OUT/B/rel`` (same name and format; JPEG halves are
    re-encoded at quality 95)."""
    root, out_p = _folder(input_dir, "--input"), Path(out)
    files = list_images(root)
    if not files:
        raise UsageError(f"--input {input_dir}: no images found")
    jobs = []
    for f in files:
        rel = f.relative_to(root)
        jobs.append(SplitJob(f, out_p / "A" / rel, out_p / "B" / rel, out_p))
    check_outputs(out_p, [root], [d for j in jobs for d in (j.dst_a, j.dst_b)])
    return jobs


def run_split(jobs: list[SplitJob], progress: Progress | None = None) -> PairReport:
    """Write the left half to ``dst_a`` and the right half to ``dst_b`` for every job."""
    report = PairReport()
    for job in jobs:
        img = None
        if not refuse_outside([job.dst_a, job.dst_b], job.out, job.src, report):
            img = read_or_report(job.src, report)
        if img is not None:
            try:
                a, b = split_pair(img)
            except ValueError as exc:
                report.failed.append((job.src, str(exc)))
            else:
                if write_or_report(job.dst_a, a, job.src, report):
                    write_or_report(job.dst_b, b, job.src, report)
        if progress:
            progress(1)
    report.failed.sort(key=lambda x: str(x[0]))
    return report
