"""``img2img data split``: split a folder of images, or two folders of aligned A/B images
(kept together), into train / val / test by fractions, deterministically from ``--seed``.

    img2img data split --input photos/ --out datasets/photos              # ROOT/train val test
    img2img data split --a A/ --b B/ --out datasets/pairs                 # trainA+trainB ...
    img2img data split --a horses/ --b zebras/ --layout unpaired --out datasets/h2z

Exit codes: 0 ok (unmatched files are listed, not failures), 1 some inputs were ambiguous
(the rest are written) or writing failed (ROOT unchanged), 2 usage error.
See :mod:`img2img.data.split` for the layouts and the rules.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    OneLineParser,
    add_debug,
    add_quiet,
    run_parsed,
)
from img2img.data.split import LAYOUTS, MODES, SplitError, SplitOptions, plan_split, write_split


def split_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img data split``."""
    p = OneLineParser(prog="img2img data split",
                      description="Split a folder of images (recursive), or two folders of "
                                  "aligned A/B images with matching names (pairs kept "
                                  "together), into train/val/test by fractions, the same way "
                                  "every time for a --seed.", allow_abbrev=False)
    p.add_argument("--input", metavar="DIR", help="one folder of images (recursive)")
    p.add_argument("--a", metavar="DIR", help="folder of A images (with --b)")
    p.add_argument("--b", metavar="DIR", help="folder of B images (with --a)")
    p.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write")
    p.add_argument("--layout", choices=LAYOUTS,
                   help="flat: ROOT/train, val, test (default for --input: a folder of A|B "
                        "images or of SR photos); aligned: ROOT/trainA+trainB, valA+valB, "
                        "testA+testB with matching names, pairs kept together (default for "
                        "--a/--b); unpaired: ROOT/trainA, trainB, testA, testB (+ valA, valB), "
                        "each domain split on its own")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share in the val split (default 0.1; 0: no val folder)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share in the test split (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--mode", default="copy", choices=MODES,
                   help="copy bytes (default), or hard-link (symlink/copy fallback)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the split folders and manifest.json in a non-empty ROOT")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="threads for writing")
    add_quiet(p)
    add_debug(p)
    return p


def split_main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_parsed(split_parser(), argv, _split)


def _split(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    opts = SplitOptions(out=ns.out, input=ns.input, a=ns.a, b=ns.b, layout=ns.layout,
                        val_fraction=ns.val_fraction, test_fraction=ns.test_fraction,
                        seed=ns.seed, mode=ns.mode, overwrite=ns.overwrite, workers=ns.workers)
    plan = plan_split(opts)
    try:
        with tqdm(total=len(plan.jobs), disable=ns.quiet, unit="file", dynamic_ncols=True,
                  leave=False) as bar:
            report = write_split(plan, progress=bar.update)
    except SplitError as exc:
        print(f"error: {exc} ({ns.out} left as it was)", file=sys.stderr)
        return EXIT_FAILED
    for path in report.only_a:
        print(f"unmatched in A (no B file), left out: {path}", file=sys.stderr)
    for path in report.only_b:
        print(f"unmatched in B (no A file), left out: {path}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(report.summary(ns.out))
    return EXIT_FAILED if report.failed else EXIT_OK
