"""``img2img data make-sr-pairs`` / ``datasets/make_sr_pairs.py``: super-resolution pairs
ROOT/HR + ROOT/LR_x{scale} (MATLAB-style bicubic).

    img2img data make-sr-pairs --hr photos/ --scale 4 --out datasets/photos_x4

Exit codes: 0 ok, 1 some images failed (the rest are written), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    OneLineParser,
    add_debug,
    add_max_image_pixels,
    add_quiet,
    run_parsed,
)


def make_sr_pairs_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img data make-sr-pairs``."""
    p = OneLineParser(prog="img2img data make-sr-pairs",
                      description="Make super-resolution pairs: ROOT/HR + ROOT/LR_x{scale} "
                                  "(MATLAB-style bicubic).")
    p.add_argument("--hr", required=True, help="folder of high-resolution images (recursive)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4, 8])
    p.add_argument("--out", required=True, help="dataset root to write")
    add_quiet(p)
    add_max_image_pixels(p)
    add_debug(p)
    return p


def make_sr_pairs_main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_parsed(make_sr_pairs_parser(), argv, _make_sr_pairs)


def _make_sr_pairs(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    from img2img.data.sr_pairs import make_sr_pairs

    with tqdm(disable=ns.quiet, unit="img") as bar:
        report = make_sr_pairs(ns.hr, ns.scale, ns.out, progress=bar.update)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(report.summary())
    return EXIT_FAILED if report.failed else EXIT_OK
