"""``img2img export``: a generator to ONNX, checked with ONNX Runtime."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from img2img.commands.common import (
    EXIT_OK,
    OneLineParser,
    add_debug,
    add_quiet,
    guarded,
    setup_logging,
)
from img2img.options import positive_int


def export_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img export``."""
    p = OneLineParser(prog="img2img export",
                      description="Export a generator to ONNX (dynamic batch, height and width; "
                                  "the checkpoint's metadata in metadata_props), then check it "
                                  "with ONNX Runtime on three input sizes (needs pip install "
                                  "'img2img[onnx]').")
    p.add_argument("checkpoint", help="generator .safetensors (or a published file the toolkit "
                                      "imports)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the .onnx file to write")
    p.add_argument("--opset", type=positive_int, default=18,
                   help="ONNX opset (default %(default)s, the lowest the exporter writes)")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights, input and output (for GPUs; checked against fp32 "
                        "PyTorch with a looser tolerance)")
    p.add_argument("--key", help="entry of a foreign checkpoint's container to use")
    add_quiet(p, "no log lines")
    add_debug(p)
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img export``: exit 1 when the parity check fails (nothing kept)."""
    ns = export_parser().parse_args(argv)
    setup_logging(ns.quiet)
    from img2img.inference.onnx_export import OnnxParityError

    return guarded(lambda: _export(ns), ns.debug, failures=(OnnxParityError,))


def _export(ns: argparse.Namespace) -> int:
    from img2img.inference.onnx_export import export_onnx

    report = export_onnx(ns.checkpoint, ns.onnx, ns.opset, ns.fp16, ns.key)
    meta = report.meta
    print(f"wrote {report.path}: {meta.arch} x{meta.scale}, opset {report.opset}, "
          f"{'fp16' if report.fp16 else 'fp32'}, dynamic batch/height/width "
          f"(multiples of {meta.size_multiple})")
    print(f"ONNX Runtime vs PyTorch (tolerance {report.tolerance:g}):")
    print("\n".join(report.lines()))
    return EXIT_OK
