#!/usr/bin/env python
"""Combine two folders into ``A|B`` side-by-side images, or ``--split`` them back.

    python datasets/combine_pairs.py --a photos/A --b photos/B --out ROOT/train [--resize-b]
    python datasets/combine_pairs.py --split --input ROOT/train --out split/

Files pair up by relative path without suffix (``A/x.jpg`` with ``B/x.png``); unmatched
files are listed. Exit codes: 0 ok, 1 some files failed (the rest are written), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from tqdm import tqdm  # noqa: E402

from img2img.cli import add_max_image_pixels, apply_max_image_pixels  # noqa: E402
from img2img.data.pairs import (  # noqa: E402
    PairReport,
    UsageError,
    plan_combine,
    plan_split,
    run_combine,
    run_split,
)


def parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="combine_pairs.py", description=__doc__.split("\n")[0])
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_max_image_pixels(p)
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
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = parser()
    try:
        ns = p.parse_args(argv)
        if ns.split and not ns.input:
            p.error("--split needs --input")
        if not ns.split and not (ns.a and ns.b):
            p.error("--a and --b are required (or --split --input DIR)")
    except SystemExit as exc:
        return int(exc.code or 0)
    apply_max_image_pixels(ns)
    try:
        if ns.split:
            jobs = plan_split(ns.input, ns.out)
            with tqdm(total=len(jobs), disable=ns.quiet, unit="img", dynamic_ncols=True) as bar:
                report = run_split(jobs, progress=bar.update)
            return _print_report(report, "files written")
        plan = plan_combine(ns.a, ns.b, ns.out, ns.ext)
        with tqdm(total=len(plan.jobs), disable=ns.quiet, unit="pair", dynamic_ncols=True) as bar:
            report = run_combine(plan, ns.resize_b, progress=bar.update)
        return _print_report(report, "pairs written")
    except (UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
