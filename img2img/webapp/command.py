"""``img2img app``: flags and the command (``python -m img2img.webapp`` runs it too).

Building the parser imports neither torch nor Gradio; ``run`` imports Gradio lazily and
says which extra to install when it is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from img2img.options import non_negative_int, positive_int

log = logging.getLogger("img2img")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_OVERLAP = 32  # = inference.tile_layout.DEFAULT_OVERLAP (a test checks; no torch here)
INSTALL_HINT = "pip install 'img2img[app]'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``img2img app``."""
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="PATH",
                   help="one or more generator files (.safetensors, .onnx, a published .pth) "
                        "or folders (their .safetensors and .onnx files, e.g. a training "
                        "run's G_A2B + G_B2A, offered as one model with a direction)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "0.0.0.0 opens the app to the network, with a warning)")
    p.add_argument("--port", type=positive_int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--share", action="store_true",
                   help="also publish the app through a public Gradio share link (a warning "
                        "says so; anyone with the link can use it)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 on CPUs with avx512_bf16/AMX and on GPUs of "
                        "compute capability 8.0+, fp16 on 7.x GPUs, else fp32")
    t = p.add_argument_group("large images", "As in img2img translate: overlapping tiles, "
                                             "cross-faded, with a progress bar in the page.")
    t.add_argument("--tile", type=positive_int, metavar="N",
                   help="always tile, N input pixels per tile (default: tile only images "
                        "larger than --max-pixels)")
    t.add_argument("--tile-overlap", type=non_negative_int, default=DEFAULT_OVERLAP,
                   metavar="M", help=f"input pixels of context on each side of a tile "
                                     f"(default {DEFAULT_OVERLAP})")
    t.add_argument("--max-pixels", type=positive_int, metavar="P",
                   help="tile images with more than P input pixels (default 2048*2048 divided "
                        "by the model's scale squared)")
    t.add_argument("--batch-size", type=positive_int, default=1,
                   help="tiles run together (default 1)")
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="refuse uploads of more than N pixels (width x height, read from the "
                        "header first; default 2**28 = 268435456); the page says so")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    p.add_argument("--debug", action="store_true",
                   help="log the traceback of an unexpected error on this console")


def exposure_warnings(host: str, share: bool) -> list[str]:
    """One line each for a non-local ``host`` and for ``share``."""
    lines = []
    if host not in LOCAL_HOSTS:
        lines.append(f"warning: --host {host}: the app is reachable from other machines on "
                     f"the network; anyone who reaches it can upload images and run the models")
    if share:
        lines.append("warning: --share: the app is published through a public Gradio link; "
                     "anyone with the link can upload images and run the models")
    return lines


def run(ns: argparse.Namespace) -> int:
    """Start the app for parsed flags and serve until Ctrl-C (exit 0); 2 for a bad request
    (a checkpoint that does not load, a port in use, Gradio missing)."""
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(f"error: img2img app needs Gradio: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    from img2img.checkpoint import CheckpointError
    from img2img.data.io import set_max_image_pixels
    from img2img.errors import UsageError
    from img2img.inference.tile_layout import TileOptions
    from img2img.webapp import page
    from img2img.webapp.models import load_entries

    for line in exposure_warnings(ns.host, ns.share):
        print(line, file=sys.stderr)
    try:
        if ns.max_image_pixels is not None:
            set_max_image_pixels(ns.max_image_pixels)
        tiling = TileOptions(ns.tile, ns.tile_overlap, ns.max_pixels)
        entries = load_entries(ns.checkpoint, ns.device, ns.precision)
        demo = page.build_app(entries, tiling, ns.batch_size, debug=ns.debug)
    except (UsageError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        url = page.launch(demo, ns.host, ns.port, ns.share, quiet=True)
    except OSError:  # Gradio: "Cannot find empty port in range: 7860-7860. You can ..."
        print(f"error: --port {ns.port}: cannot listen on {ns.host}:{ns.port} (another server "
              f"may be using it); choose another --port", file=sys.stderr)
        return EXIT_USAGE
    print(f"img2img app: {url} ({len(entries)} model(s)); Ctrl-C stops it", flush=True)
    if demo.share_url:
        print(f"public link: {demo.share_url}", flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        demo.close(verbose=False)
    return EXIT_OK


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The parser of ``img2img app``."""
    p = _OneLineParser(prog="img2img app", description="A local web page that translates "
                       "uploaded images with one or more generators (Gradio).")
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img app`` / ``python -m img2img.webapp``."""
    return run(parser().parse_args(argv))
