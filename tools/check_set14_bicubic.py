#!/usr/bin/env python
"""Check the SR evaluation protocol: bicubic x4 on Set14 should score about 26.0 dB (Y, border 4).

For each image: modcrop to a multiple of the scale, ``downscale`` (MATLAB-style bicubic,
antialiased), ``bicubic_resize`` back to the modcropped size, then ``evaluate_pair`` on the Y
channel with ``scale`` border pixels cropped. Prints a table (Y rounded to integers as MATLAB's
``rgb2ycbcr`` does, plus the unrounded variant) and writes JSON.

    python tools/check_set14_bicubic.py [FOLDER] [--scale 4] [--json set14_bicubic.json]
    python tools/check_set14_bicubic.py --checkpoint sr_x4_naip

With ``--checkpoint`` the model's upscaling of the same LR images is scored too (columns
``model``), so a super-resolution model is compared with bicubic under one protocol.

Published reference (Ledig et al. 2017, MATLAB imresize): 25.99 dB / SSIM 0.7486; later papers
list 26.00 / 0.7027. Measured here: 25.99 dB / 0.7024 (unrounded Y: 26.00 / 0.7031). The gray
``bridge`` image is evaluated as it is; turning it into RGB first would add ~0.09 dB (26.09).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.data.io import ImageReadError, read_image  # noqa: E402
from img2img.data.resize import bicubic_resize, downscale, modcrop  # noqa: E402
from img2img.data.scan import list_images  # noqa: E402
from img2img.metrics import evaluate_pair, write_json  # noqa: E402

# ../shared next to the checkout, wherever the script is run from
DEFAULT_FOLDER = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sr" / "CSet14")


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 on success, 1 if an image failed, 2 on usage errors."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=DEFAULT_FOLDER,
                    help="high-resolution images (default: ../shared/data/sr/CSet14)")
    ap.add_argument("--scale", type=int, default=4, help="downscaling factor (default 4)")
    ap.add_argument("--json", default="set14_bicubic.json", metavar="FILE",
                    help="where to write the results (default ./set14_bicubic.json)")
    ap.add_argument("--checkpoint", help="also score this x{scale} generator checkpoint")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    translator = None
    if args.checkpoint:
        from img2img.inference.translator import Translator

        translator = Translator.from_checkpoint(args.checkpoint, device=args.device)
        if translator.meta.scale != args.scale:
            ap.error(f"{args.checkpoint} is a x{translator.meta.scale} model, not x{args.scale}")
    if args.scale < 2:
        ap.error("--scale must be at least 2")
    try:
        paths = list_images(args.folder)
    except OSError as exc:
        ap.error(str(exc))
    if not paths:
        ap.error(f"no images in {args.folder}")

    rows, errors = [], []
    print(f"{'image':<14} {'size':>9} {'PSNR':>8} {'SSIM':>8} {'PSNR*':>8} {'SSIM*':>8}"
          + (f" {'model':>8} {'model':>8}" if translator else ""))
    for path in paths:
        try:
            hr = modcrop(read_image(path), args.scale)
        except (ImageReadError, ValueError) as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            continue
        lr = downscale(hr, args.scale)
        sr = bicubic_resize(lr, hr.shape[1], hr.shape[0])
        rounded = evaluate_pair(sr, hr, y_channel=True, crop_border=args.scale)
        plain = evaluate_pair(sr, hr, y_channel=True, crop_border=args.scale, round_y=False)
        row = {"name": path.stem, "width": hr.shape[1], "height": hr.shape[0], **rounded,
               "psnr_unrounded_y": plain["psnr"], "ssim_unrounded_y": plain["ssim"]}
        extra = ""
        if translator is not None:
            model = evaluate_pair(translator(lr), hr, y_channel=True, crop_border=args.scale)
            row.update(model_psnr=model["psnr"], model_ssim=model["ssim"])
            extra = f" {model['psnr']:>8.2f} {model['ssim']:>8.4f}"
        rows.append(row)
        print(f"{path.stem:<14} {hr.shape[1]:>4}x{hr.shape[0]:<4} {rounded['psnr']:>8.2f} "
              f"{rounded['ssim']:>8.4f} {plain['psnr']:>8.2f} {plain['ssim']:>8.4f}" + extra)
    if not rows:
        return 1
    keys = ["psnr", "ssim", "psnr_unrounded_y", "ssim_unrounded_y"]
    keys += ["model_psnr", "model_ssim"] if translator is not None else []
    mean = {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys}
    print(f"{'mean':<14} {len(rows):>6} im {mean['psnr']:>8.2f} {mean['ssim']:>8.4f} "
          f"{mean['psnr_unrounded_y']:>8.2f} {mean['ssim_unrounded_y']:>8.4f}"
          + (f" {mean['model_psnr']:>8.2f} {mean['model_ssim']:>8.4f}" if translator else ""))
    print("(* = Y not rounded to integers; published MATLAB figure: 25.99 dB / 0.7486)")
    write_json(args.json, {"folder": str(args.folder), "scale": args.scale, "y_channel": True,
                           "checkpoint": args.checkpoint,
                           "crop_border": args.scale, "images": rows,
                           "mean": {**mean, "count": len(rows)}, "errors": errors})
    print(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
