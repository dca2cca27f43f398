"""Pre-made super-resolution pairs: ``ROOT/HR`` (modcropped) + ``ROOT/LR_x{scale}``.

The LR images are MATLAB-compatible bicubic downscales (``data.resize.downscale``) of the
HR images cropped to a multiple of the scale, so every LR pixel sits exactly under
``scale`` x ``scale`` HR pixels. Outputs are PNG (lossless, 16-bit kept) with the input's
relative path. Nothing is written outside ``out``: an image whose HR or LR file would
resolve elsewhere through a symbolic link is refused and reported (:mod:`img2img.data.paths`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from img2img.data.io import ImageIOError, read_image, write_image
from img2img.data.paths import check_clear_of_inputs, check_output_folder, outside_reason
from img2img.data.resize import downscale, modcrop
from img2img.data.scan import list_images
from img2img.errors import UsageError


@dataclass
class SRPairsReport:
    """What a run wrote and what it could not use."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the end of the run."""
        return f"{len(self.written)} pairs written, {len(self.failed)} failed"


def make_sr_pairs(hr_dir: str | os.PathLike, scale: int, out: str | os.PathLike,
                  progress: Callable[[int], None] | None = None) -> SRPairsReport:
    """Write ``out/HR`` and ``out/LR_x{scale}`` for every image under ``hr_dir``.

    Raises UsageError for usage errors (missing folder, ``out`` inside ``hr_dir`` or over
    an input, bad scale); unreadable, too small or unsafe (see the module docstring) images
    are reported and skipped.
    """
    if scale < 2:
        raise UsageError(f"--scale must be at least 2, got {scale}")
    src, dst = Path(hr_dir).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise UsageError(f"--hr {hr_dir}: folder not found")
    check_output_folder(out, "--out")
    files = list_images(src)
    if not files:
        raise UsageError(f"--hr {hr_dir}: no images found")
    rels = [path.relative_to(src).with_suffix(".png") for path in files]
    targets = [(dst / "HR" / rel, dst / f"LR_x{scale}" / rel) for rel in rels]
    inside = [t for pair in targets for t in pair if outside_reason(t, dst) is None]
    check_clear_of_inputs(out, [(src, f"--hr {hr_dir}")], destinations=inside, flag="--out")
    report = SRPairsReport()
    for path, rel, (hr_dst, lr_dst) in zip(files, rels, targets, strict=True):
        reason = outside_reason(hr_dst, dst) or outside_reason(lr_dst, dst)
        if reason is not None:
            report.failed.append((path, reason))
            if progress:
                progress(1)
            continue
        try:
            hr = read_image(path)
            if min(hr.shape[:2]) < scale:
                raise ValueError(f"{hr.shape[1]}x{hr.shape[0]} is smaller than the scale")
            hr = modcrop(hr, scale)
            write_image(hr_dst, hr)
            write_image(lr_dst, downscale(hr, scale))
            report.written.append(rel)
        except ImageIOError as exc:
            report.failed.append((path, exc.reason))
        except ValueError as exc:
            report.failed.append((path, str(exc)))
        if progress:
            progress(1)
    return report
