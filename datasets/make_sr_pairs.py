#!/usr/bin/env python
"""Make super-resolution pairs: ROOT/HR + ROOT/LR_x{scale} (MATLAB-style bicubic).

    python datasets/make_sr_pairs.py --hr photos/ --scale 4 --out datasets/photos_x4

Exit codes: 0 ok, 1 some images failed (the rest are written), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from tqdm import tqdm  # noqa: E402

from img2img.cli import add_max_image_pixels, apply_max_image_pixels  # noqa: E402
from img2img.data.sr_pairs import make_sr_pairs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="make_sr_pairs.py", description=__doc__.split("\n")[0])
    p.add_argument("--hr", required=True, help="folder of high-resolution images (recursive)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4, 8])
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_max_image_pixels(p)
    try:
        ns = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    apply_max_image_pixels(ns)
    with tqdm(disable=ns.quiet, unit="img") as bar:
        try:
            report = make_sr_pairs(ns.hr, ns.scale, ns.out, progress=bar.update)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
