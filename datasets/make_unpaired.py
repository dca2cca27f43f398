#!/usr/bin/env python
"""Build an unpaired (CycleGAN) dataset ROOT/trainA trainB testA testB from loose sources.

    python datasets/make_unpaired.py --a horses/ more_horses.txt --b 'zebras/**/*.jpg' \\
        --out datasets/horse2zebra --resize 286
    python datasets/make_unpaired.py --labels labels.csv --path-column file \\
        --label-column species --a-value horse --b-value zebra --out datasets/h2z

A source is a folder (recursive), a glob, an image file or a list file (one path per line,
'#' comments, relative to the list's folder). Corrupt, too small and duplicate files are
dropped and listed in ROOT/manifest.json; content found in both A and B is dropped from both.
Exit codes: 0 ok (drops are reported, not failures), 1 writing failed (ROOT unchanged),
2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from tqdm import tqdm  # noqa: E402

from img2img.cli import add_max_image_pixels, apply_max_image_pixels  # noqa: E402
from img2img.data.build_unpaired import (  # noqa: E402
    MODES,
    BuildError,
    LabelsSpec,
    UnpairedOptions,
    UsageError,
    build_unpaired,
)


def parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="make_unpaired.py", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("--a", nargs="+", default=[], metavar="SRC", help="sources of domain A")
    p.add_argument("--b", nargs="+", default=[], metavar="SRC", help="sources of domain B")
    p.add_argument("--labels", metavar="CSV", help="label CSV instead of --a/--b")
    p.add_argument("--path-column", default="path", help="CSV column with file paths")
    p.add_argument("--label-column", default="label", help="CSV column with labels")
    p.add_argument("--a-value", default="", help="label of domain A rows")
    p.add_argument("--b-value", default="", help="label of domain B rows")
    p.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of each domain in the test split (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--min-size", type=int, default=0, metavar="PX",
                   help="drop images whose shorter side is below PX")
    p.add_argument("--resize", type=int, metavar="PX",
                   help="resize so the shorter side is PX (JPEG stays .jpg, others .png)")
    p.add_argument("--mode", default="copy", choices=MODES,
                   help="without --resize: copy bytes, or hard-link (symlink/copy fallback)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace trainA/trainB/testA/testB/manifest.json in a non-empty ROOT")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="threads for reading and writing")
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
    labels = None
    if ns.labels is not None:
        labels = LabelsSpec(ns.labels, ns.path_column, ns.label_column, ns.a_value, ns.b_value)
    opts = UnpairedOptions(
        out=ns.out, a=tuple(ns.a), b=tuple(ns.b), labels=labels, test_fraction=ns.test_fraction,
        seed=ns.seed, min_size=ns.min_size, resize=ns.resize, mode=ns.mode,
        overwrite=ns.overwrite, workers=ns.workers,
    )
    progress = partial(tqdm, disable=ns.quiet, dynamic_ncols=True, leave=False)
    try:
        report = build_unpaired(opts, progress=progress)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"error: {exc} ({ns.out} left as it was)", file=sys.stderr)
        return 1
    for d in report.dropped:
        print(f"dropped ({d.domain}): {d.path}: {d.reason}", file=sys.stderr)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
