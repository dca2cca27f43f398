"""Pre-made super-resolution pairs: ``ROOT/HR`` (modcropped) + ``ROOT/LR_x{scale}``.

The LR images are MATLAB-compatible bicubic downscales (``data.resize.downscale``) of the
HR images cropped to a multiple of the scale, so every LR pixel sits exactly under
``scale`` x ``scale`` HR pixels. Outputs are PNG (lossless, 16-bit kept) with the input's
relative path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from img2img.data.io import ImageIOError, read_image, write_image
from img2img.data.resize import downscale, modcrop
from img2img.data.scan import list_images


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

    Raises ValueError for usage errors (missing folder, ``out`` inside ``hr_dir``,
    bad scale); unreadable or too small images are reported and skipped.
    """
    if scale < 2:
        raise ValueError(f"--scale must be at least 2, got {scale}")
    src, dst = Path(hr_dir).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise ValueError(f"--hr {hr_dir}: folder not found")
    if dst == src or src in dst.parents:
        raise ValueError(f"--out {out} is inside --hr {hr_dir}; choose a folder outside it")
    files = list_images(src)
    if not files:
        raise ValueError(f"--hr {hr_dir}: no images found")
    report = SRPairsReport()
    for path in files:
        rel = path.relative_to(src).with_suffix(".png")
        try:
            hr = read_image(path)
            if min(hr.shape[:2]) < scale:
                raise ValueError(f"{hr.shape[1]}x{hr.shape[0]} is smaller than the scale")
            hr = modcrop(hr, scale)
            write_image(dst / "HR" / rel, hr)
            write_image(dst / f"LR_x{scale}" / rel, downscale(hr, scale))
            report.written.append(rel)
        except ImageIOError as exc:
            report.failed.append((path, exc.reason))
        except ValueError as exc:
            report.failed.append((path, str(exc)))
        if progress:
            progress(1)
    return report
