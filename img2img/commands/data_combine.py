"""``img2img data combine`` / ``datasets/combine_pairs.py``: combine two folders into ``A|B``
side-by-side images, or ``--split`` them back.

    img2img data combine --a photos/A --b photos/B --out ROOT/train [--resize-b]
    img2img data combine --split --input ROOT/train --out split/

Files pair up by relative path without suffix (``A/x.jpg`` with ``B/x.png``); unmatched
files are listed. Exit codes: 0 ok, 1 some files failed (the rest are written), 2 usage error.
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
    apply_max_image_pixels,
    guarded,
    parse_or_exit_code,
    usage_error,
)
from img2img.data.pairs import PairReport, plan_combine, plan_split, run_combine, run_split


def combine_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img data combine``."""
    p = OneLineParser(prog="img2img data combine",
                      description="Combine two folders into A|B side-by-side images, or "
                                  "--split them back.")
    p.add_argument("--a", help="folder of A images (left half)")
    p.add_argument("--b", help="folder of B images (right half)")
    p.add_argument("--out", required=True, help="output folder (must not be inside an input)")
    p.add_argument("--resize-b", action="store_true",
                   help="resize B to A's height (keeping its aspect ratio) when they differ")
    p.add_argument("--ext", default="png", choices=["png", "jpg"],
                   help="output format when combining (default png; jpg drops alpha)")
    p.add_argument("--split", action="store_true",
                   help="reverse: split A|B images of --input into OUT/A and OUT/B")
    p.add_argument("--input", help="folder of A|B images (with --split)")
    add_quiet(p)
    add_max_image_pixels(p)
    add_debug(p)
    return p


def _print_report(report: PairReport, verb: str) -> int:
    for path in report.only_a:
        print(f"unmatched in A (no B file): {path}", file=sys.stderr)
    for path in report.only_b:
        print(f"unmatched in B (no A file): {path}", file=sys.stderr)
    for path, reason in report.warnings:
        print(f"warning: {path}: {reason}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(report.summary(verb))
    return EXIT_FAILED if report.failed else EXIT_OK


def combine_main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = combine_parser()
    ns = parse_or_exit_code(p, argv)
    if isinstance(ns, int):
        return ns
    if ns.split and not ns.input:
        return usage_error(p, "--split needs --input")
    if not ns.split and not (ns.a and ns.b):
        return usage_error(p, "--a and --b are required (or --split --input DIR)")
    apply_max_image_pixels(ns)
    return guarded(lambda: _combine(ns), ns.debug, usage=(OSError,))


def _combine(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    if ns.split:
        jobs = plan_split(ns.input, ns.out)
        with tqdm(total=len(jobs), disable=ns.quiet, unit="img", dynamic_ncols=True) as bar:
            report = run_split(jobs, progress=bar.update)
        return _print_report(report, "files written")
    plan = plan_combine(ns.a, ns.b, ns.out, ns.ext)
    with tqdm(total=len(plan.jobs), disable=ns.quiet, unit="pair", dynamic_ncols=True) as bar:
        report = run_combine(plan, ns.resize_b, progress=bar.update)
    return _print_report(report, "pairs written")
