"""``img2img import``: a published generator checkpoint into the toolkit's self-describing
``.safetensors``."""

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


def import_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img import``."""
    p = OneLineParser(prog="img2img import",
                      description="Convert a published generator checkpoint (reference "
                                  "CycleGAN/pix2pix .pth, ESRGAN / Real-ESRGAN / BasicSR "
                                  "weights) into the toolkit's self-describing .safetensors.")
    p.add_argument("file", help="the published checkpoint (.pth, .pt, .ckpt, .safetensors)")
    p.add_argument("--out", required=True, help="the .safetensors to write")
    p.add_argument("--task", choices=["cyclegan", "pix2pix", "sr"],
                   help="recorded in the metadata (default: what the architecture is used for)")
    p.add_argument("--direction", default="A2B", choices=["A2B", "B2A"],
                   help="recorded in the metadata (default A2B)")
    p.add_argument("--key", help="entry of the file's container to use (default: params_ema, "
                                 "then params, then state_dict)")
    add_quiet(p, "no log lines")
    add_debug(p)
    return p


def import_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img import``."""
    ns = import_parser().parse_args(argv)
    setup_logging(ns.quiet)
    return guarded(lambda: _import(ns), ns.debug)


def _import(ns: argparse.Namespace) -> int:
    from img2img.inference.loader import import_checkpoint

    meta = import_checkpoint(ns.file, ns.out, ns.task, ns.direction, ns.key)
    diff = meta.extra.get("parity_max_diff")
    parity = ("not compared with the original layout (no independent forward for this family)"
              if diff is None else f"matches the original layout (max diff {diff:.1g})")
    print(f"wrote {ns.out}: {meta.extra.get('family')} as {meta.arch} {meta.kwargs}, "
          f"x{meta.scale}, values {list(meta.value_range)}, task {meta.task} {meta.direction}; "
          f"source {meta.extra.get('source')} sha256 {meta.extra.get('source_sha256')}; "
          f"{parity}")
    return EXIT_OK
