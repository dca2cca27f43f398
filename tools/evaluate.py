#!/usr/bin/env python
"""PSNR and SSIM of predicted images against references, matched by relative path.

    python tools/evaluate.py --pred DIR --ref DIR [--y-channel] [--crop-border N]
                             [--data-range R] [--json FILE] [--quiet]

``pred/a/x.png`` is compared with ``ref/a/x.*`` (any image suffix). Prints one line per image
and the means; ``--json FILE`` also writes them (and every problem) as JSON. Nothing is written
unless ``--json`` is given, so an input folder is never changed behind the user's back. Infinite
PSNR (identical images) is written as the string "inf".

Exit codes: 0 all pairs evaluated; 1 some file without a partner, unreadable, of another size,
or no pair at all (the others are still evaluated); 2 usage errors (bad flags, missing folder).
The SR protocol is ``--y-channel --crop-border SCALE`` (see img2img/metrics.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.cli import add_max_image_pixels, apply_max_image_pixels  # noqa: E402
from img2img.metrics import evaluate_folders, format_row, write_json  # noqa: E402
from img2img.runtime import keep_freed_memory  # noqa: E402

_NAME_WIDTH = 24


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="PSNR and SSIM of predicted images against references, "
                    "matched by relative path without suffix.")
    ap.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted images")
    ap.add_argument("--ref", required=True, metavar="DIR", help="folder of reference images")
    ap.add_argument("--y-channel", action="store_true",
                    help="compare BT.601 luma (MATLAB rgb2ycbcr) instead of all channels")
    ap.add_argument("--crop-border", type=int, default=0, metavar="N",
                    help="ignore N pixels on each side (SR: the scale factor)")
    ap.add_argument("--data-range", type=float, metavar="R",
                    help="peak value (default: 255 for 8-bit, 65535 for 16-bit images)")
    ap.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="print only the mean line and errors")
    add_max_image_pixels(ap)
    return ap


def _usage_problem(args: argparse.Namespace) -> str:
    """The first thing wrong with the arguments, or ''."""
    if args.crop_border < 0:
        return "--crop-border must be >= 0"
    if args.data_range is not None and not args.data_range > 0:
        return "--data-range must be positive"
    for flag, folder in (("--pred", args.pred), ("--ref", args.ref)):
        if not Path(folder).is_dir():
            return f"{flag} {folder}: not a folder"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Evaluate two folders; returns the exit code (0 ok, 1 problems, 2 usage error)."""
    ap = _parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, message already printed)
        return int(exc.code or 0)
    problem = _usage_problem(args)
    if problem:
        ap.print_usage(sys.stderr)
        print(f"evaluate.py: error: {problem}", file=sys.stderr)
        return 2
    keep_freed_memory()
    apply_max_image_pixels(args)

    if not args.quiet:
        print(f"{'image':<{_NAME_WIDTH}} {'PSNR':>8} {'SSIM':>8}", flush=True)

    def show(row: dict) -> None:
        if not args.quiet:
            print(format_row(row["name"], row["psnr"], row["ssim"], _NAME_WIDTH), flush=True)

    report = evaluate_folders(args.pred, args.ref, args.y_channel, args.crop_border,
                              args.data_range, on_row=show)
    print(format_row(f"mean ({len(report.rows)} images)", report.mean("psnr"),
                     report.mean("ssim"), _NAME_WIDTH))
    for message in report.errors:
        print(f"error: {message}", file=sys.stderr)
    failed = bool(report.errors) or not report.rows
    if not report.rows:
        print("error: no image pairs evaluated", file=sys.stderr)

    written = ""
    if args.json:
        data = report.to_dict(pred=str(args.pred), ref=str(args.ref), y_channel=args.y_channel,
                              crop_border=args.crop_border, data_range=args.data_range)
        try:
            write_json(args.json, data)
            written = f", results in {args.json}"
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            failed = True
    print(f"{len(report.rows)} images evaluated, {len(report.errors)} problems{written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
