#!/usr/bin/env python
"""Build a paired dataset (A = derived image, B = photo) from a folder of photos.

    python datasets/make_paired.py --photos DIR --op edges --out datasets/edges2photos
    python datasets/make_paired.py --photos DIR --op downscale --factor 4 --layout combined ...

Ops: edges (black Canny lines on white), gray (BT.601 luma as RGB), blur (Gaussian,
--sigma), downscale (bicubic down by --factor and back up). Layouts: aligned
(ROOT/trainA, trainB, testA, testB) or combined (ROOT/train, ROOT/test as A|B).
Exit codes: 0 ok, 1 some photos failed (the rest are written), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from tqdm import tqdm  # noqa: E402

from img2img.cli import add_max_image_pixels, apply_max_image_pixels  # noqa: E402
from img2img.data.paired_ops import (  # noqa: E402
    OPS,
    make_op,
    output_folders,
    plan_paired,
    run_paired,
)
from img2img.data.pairs import UsageError, stale_files  # noqa: E402


def parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="make_paired.py", description=__doc__.split("\n")[0])
    p.add_argument("--photos", required=True, help="folder of photos (recursive)")
    p.add_argument("--op", required=True, choices=list(OPS), help="how A is derived from B")
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of photos in the test split (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--size", type=int, help="first resize photos so the shorter side is PX")
    p.add_argument("--layout", default="aligned", choices=["aligned", "combined"])
    p.add_argument("--sigma", type=float, default=3.0, help="blur: Gaussian sigma (default 3)")
    p.add_argument("--factor", type=float, default=4.0, help="downscale: factor (default 4)")
    p.add_argument("--ext", default="png", choices=["png", "jpg"],
                   help="output format (default png: lossless, keeps 16 bits)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_max_image_pixels(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    try:
        ns = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    apply_max_image_pixels(ns)
    try:
        op = make_op(ns.op, sigma=ns.sigma, factor=ns.factor)
        if ns.size is not None and ns.size < 1:
            raise UsageError(f"--size must be >= 1, got {ns.size}")
        plan = plan_paired(ns.photos, ns.out, ns.layout, ns.test_fraction, ns.seed, ns.ext)
    except (UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tqdm(total=len(plan.jobs), disable=ns.quiet, unit="img", dynamic_ncols=True) as bar:
        report = run_paired(plan, op, ns.size, progress=bar.update)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    stale = stale_files(output_folders(ns.out, ns.layout), report.done)
    if stale:
        print(f"warning: {len(stale)} images in {ns.out} were not written by this run (left "
              f"from an earlier run? e.g. {stale[0]}); remove them to keep the split clean",
              file=sys.stderr)
    print(f"{plan.summary()} -> {ns.out}")
    return 1 if report.failed else 0

if __name__ == "__main__":
    sys.exit(main())
