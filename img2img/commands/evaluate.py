"""``img2img evaluate`` / ``tools/evaluate.py``: paired PSNR/SSIM, or unpaired FID/KID, of
predicted images against references.

    img2img evaluate --pred DIR --ref DIR [--y-channel] [--crop-border N]
                     [--data-range R] [--json FILE] [--quiet]
    img2img evaluate --pred DIR --ref DIR|STATS.npz --fid --kid
                     [--fid-mode clean|legacy-pytorch] [--inception-weights PATH]
                     [--save-stats FILE.npz] [--batch-size N] [--device auto|cpu|cuda]
                     [--seed S] [--json FILE] [--quiet]

``pred/a/x.png`` is compared with ``ref/a/x.*`` (any image suffix). Prints one line per image
and the means; ``--json FILE`` also writes them (and every problem) as JSON. Nothing is written
unless ``--json`` is given, so an input folder is never changed behind the user's back. Infinite
PSNR (identical images) is written as the string "inf".

Exit codes: 0 all pairs evaluated; 1 some file without a partner, unreadable, of another size,
or no pair at all (the others are still evaluated); 2 usage errors (bad flags, missing folder).
The SR protocol is ``--y-channel --crop-border SCALE`` (see img2img/metrics/paired.py).

With ``--fid`` and/or ``--kid`` the two folders are compared as sets (no file matching), with
the 2015-12-05 Inception-v3 in float32 (img2img/metrics/fid.py, features.py): ``--fid-mode
clean`` is clean-fid's protocol, ``legacy-pytorch`` pytorch-fid's. ``--save-stats FILE``
writes the reference folder's statistics (``--pred`` may then be left out) and ``--ref
FILE.npz`` reuses them; statistics of another mode or other weights are refused. The weights
come from the ``img2img[metrics]`` extra, ``--inception-weights PATH`` or the torch hub cache;
without any, one line says where to put which file (exit 2). Exit 1 when some image could not
be read (the scores use the others).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    add_debug,
    add_max_image_pixels,
    add_quiet,
    apply_max_image_pixels,
    guarded,
    parse_or_exit_code,
)
from img2img.options import positive_int

_NAME_WIDTH = 24
# Same as img2img.metrics.features.MODES (kept here so that --help does not import torch; a
# test checks they agree).
FID_MODES = ("clean", "legacy-pytorch")


def evaluate_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img evaluate`` / ``tools/evaluate.py``."""
    ap = OneLineParser(
        prog="img2img evaluate",
        description="PSNR and SSIM of predicted images against references, matched by "
                    "relative path without suffix; or, with --fid/--kid, the FID and KID of "
                    "the two sets (unpaired).")
    ap.add_argument("--pred", metavar="DIR", help="folder of predicted images")
    ap.add_argument("--ref", required=True, metavar="DIR",
                    help="folder of reference images (with --fid/--kid also a .npz written "
                         "by --save-stats)")
    ap.add_argument("--y-channel", action="store_true",
                    help="compare BT.601 luma (MATLAB rgb2ycbcr) instead of all channels")
    ap.add_argument("--crop-border", type=int, default=0, metavar="N",
                    help="ignore N pixels on each side (SR: the scale factor)")
    ap.add_argument("--data-range", type=float, metavar="R",
                    help="peak value (default: 255 for 8-bit, 65535 for 16-bit images)")
    ap.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
    add_quiet(ap, "print only the mean line and errors (no progress bar)")
    add_debug(ap)
    g = ap.add_argument_group("unpaired: FID and KID (Inception-v3, float32)")
    g.add_argument("--fid", action="store_true", help="Frechet Inception Distance")
    g.add_argument("--kid", action="store_true",
                   help="Kernel Inception Distance: mean and std over 100 subsets, x1000")
    g.add_argument("--fid-mode", default="clean", choices=FID_MODES,
                   help="clean: clean-fid's protocol (PIL bicubic to 299x299); legacy-pytorch: "
                        "pytorch-fid's (bilinear F.interpolate) (default clean)")
    g.add_argument("--inception-weights", metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid) or "
                        "inception-2015-12-05.pt (clean-fid/StyleGAN); default: the "
                        "img2img[metrics] extra's file, then the torch hub cache")
    g.add_argument("--save-stats", metavar="FILE",
                   help="write the --ref folder's statistics to FILE (.npz) for later --ref")
    g.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="images per batch (8)")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto|cpu|cuda|cuda:N|mps (default auto)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the KID subsets (0)")
    add_max_image_pixels(ap)
    return ap


def _unpaired(args: argparse.Namespace) -> bool:
    return args.fid or args.kid or args.save_stats is not None


def _usage_problem(args: argparse.Namespace) -> str:
    """The first thing wrong with the arguments, or ''."""
    if _unpaired(args):
        return _unpaired_problem(args)
    if args.pred is None:
        return "--pred is required"
    if args.crop_border < 0:
        return "--crop-border must be >= 0"
    if args.data_range is not None and not args.data_range > 0:
        return "--data-range must be positive"
    for flag, folder in (("--pred", args.pred), ("--ref", args.ref)):
        if not Path(folder).is_dir():
            return f"{flag} {folder}: not a folder"
    return ""


def _unpaired_problem(args: argparse.Namespace) -> str:
    paired = [f for f, on in (("--y-channel", args.y_channel), ("--crop-border",
              args.crop_border), ("--data-range", args.data_range is not None)) if on]
    if paired:
        return f"{paired[0]} is for PSNR/SSIM; it does not apply to --fid/--kid"
    if args.pred is None and args.save_stats is None:
        return "--pred is required (or --save-stats to only save the reference statistics)"
    if args.pred is not None and not Path(args.pred).is_dir():
        return f"--pred {args.pred}: not a folder"
    ref = Path(args.ref)
    if args.save_stats is not None and not ref.is_dir():
        return f"--save-stats needs --ref to be a folder; {ref} is not one"
    if not ref.is_dir() and not (ref.is_file() and ref.suffix.lower() == ".npz"):
        return f"--ref {ref}: neither a folder nor a .npz statistics file"
    return ""


def _show_unpaired(report, args: argparse.Namespace) -> None:  # noqa: ANN001 - lazy import
    counts = report.counts
    print(f"ref: {counts.get('ref', 0)} images"
          + (f", pred: {counts['pred']} images" if "pred" in counts else "")
          + f" (--fid-mode {args.fid_mode})")
    if "fid" in report.scores:
        print(f"FID {round(report.scores['fid'], 3) + 0.0:.3f}")  # no "-0.000"
    if "kid" in report.scores:
        k = report.scores["kid"]
        print(f"KID x1000 {k['mean_x1000']:.3f} +- {k['std_x1000']:.3f} "
              f"({k['subsets']} subsets of {k['subset_size']} images)")
    if "saved_stats" in report.scores:
        print(f"reference statistics saved to {report.scores['saved_stats']}")


def _main_unpaired(args: argparse.Namespace) -> int:
    from img2img.metrics import write_json
    from img2img.metrics.fid import FIDError
    from img2img.metrics.unpaired import evaluate_unpaired
    from img2img.runtime import resolve_device

    try:
        report = evaluate_unpaired(
            args.pred, args.ref, fid=args.fid, kid_score=args.kid, mode=args.fid_mode,
            weights_path=args.inception_weights, device=resolve_device(args.device),
            batch_size=args.batch_size, save_stats=args.save_stats, seed=args.seed,
            quiet=args.quiet, on_warning=lambda m: print(m, file=sys.stderr))
    except FIDError as exc:
        print(f"error: FID: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _show_unpaired(report, args)
    for message in report.errors:
        print(f"error: {message}", file=sys.stderr)
    failed = bool(report.errors)
    if args.json:
        data = report.to_dict(pred=args.pred, ref=str(args.ref), fid_mode=args.fid_mode,
                              precision="fp32")
        try:
            write_json(args.json, data)
            print(f"results in {args.json}")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            failed = True
    return EXIT_FAILED if failed else EXIT_OK


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Evaluate two folders; returns the exit code (0 ok, 1 problems, 2 usage error)."""
    args = parse_or_exit_code(evaluate_parser(), argv)
    if isinstance(args, int):  # --help (0) or a bad flag (2, message already printed)
        return args
    problem = _usage_problem(args)
    if problem:
        print(f"error: {problem} (see img2img evaluate --help)", file=sys.stderr)
        return EXIT_USAGE
    from img2img.runtime import keep_freed_memory

    keep_freed_memory()
    apply_max_image_pixels(args)
    body = _main_unpaired if _unpaired(args) else _main_paired
    return guarded(lambda: body(args), args.debug)


def _main_paired(args: argparse.Namespace) -> int:
    from img2img.metrics import evaluate_folders, format_row, write_json

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
    return EXIT_FAILED if failed else EXIT_OK
