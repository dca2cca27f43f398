"""``img2img data make-unpaired`` / ``datasets/make_unpaired.py``: build an unpaired (CycleGAN)
dataset ROOT/trainA trainB testA testB from loose sources.

    img2img data make-unpaired --a horses/ more_horses.txt --b 'zebras/**/*.jpg' \\
        --out datasets/horse2zebra --resize 286
    img2img data make-unpaired --labels labels.csv --path-column file \\
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
from collections.abc import Sequence
from functools import partial

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    OneLineParser,
    add_debug,
    add_max_image_pixels,
    add_quiet,
    run_parsed,
)
from img2img.data.build_unpaired import (
    MODES,
    BuildError,
    LabelsSpec,
    UnpairedOptions,
    build_unpaired,
)


def make_unpaired_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img data make-unpaired``."""
    p = OneLineParser(prog="img2img data make-unpaired",
                      description="Build an unpaired (CycleGAN) dataset ROOT/trainA trainB "
                                  "testA testB from folders, globs, list files or a label CSV; "
                                  "corrupt, too small and duplicate files are dropped and "
                                  "listed in ROOT/manifest.json.",
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
    add_quiet(p)
    add_max_image_pixels(p)
    add_debug(p)
    return p


def make_unpaired_main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_parsed(make_unpaired_parser(), argv, _make_unpaired)


def _make_unpaired(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

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
    except BuildError as exc:
        print(f"error: {exc} ({ns.out} left as it was)", file=sys.stderr)
        return EXIT_FAILED
    for d in report.dropped:
        print(f"dropped ({d.domain}): {d.path}: {d.reason}", file=sys.stderr)
    print(report.summary())
    return EXIT_OK
