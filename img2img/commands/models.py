"""``img2img models``: the catalogue of published checkpoints, and ``models fetch NAME``."""

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


def models_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img models`` and ``img2img models fetch``."""
    p = OneLineParser(prog="img2img models",
                      description="List well-known published checkpoints the toolkit runs, or "
                                  "fetch one: download, import, record its URL and SHA-256.")
    p.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    sub = p.add_subparsers(dest="action", metavar="fetch")
    f = sub.add_parser("fetch", help="download NAME and import it as DIR/NAME.safetensors",
                       description="Download a catalogue model (to a temp file in --out), "
                                   "import it as --out/NAME.safetensors and record the URL and "
                                   "the SHA-256 of the downloaded file in its metadata.")
    f.add_argument("name", help="catalogue name (img2img models lists them)")
    f.add_argument("--out", required=True, help="folder for NAME.safetensors")
    f.add_argument("--force", action="store_true",
                   help="fetch again even if --out/NAME.safetensors exists")
    f.add_argument("--keep-original", action="store_true",
                   help="also keep the downloaded file, as --out/NAME.pth")
    f.add_argument("--url", help="download from this URL instead of the catalogue's (a mirror "
                                 "or a local copy; http:// and file:// accepted)")
    add_quiet(f, "no progress bar or log lines")
    add_debug(f)
    return p


def models_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img models``: the catalogue table (or JSON), or ``fetch``."""
    ns = models_parser().parse_args(argv)
    if ns.action != "fetch":
        return _catalogue(ns.json)
    setup_logging(ns.quiet)
    from img2img.data.fetch import DownloadError

    # DownloadError: offline, HTTP error, checksum mismatch, not a generator
    return guarded(lambda: _fetch(ns), ns.debug, failures=(DownloadError,),
                   interrupted="interrupted: the partial download was removed")


def _catalogue(as_json: bool) -> int:
    import json

    from img2img.foreign.catalogue import CATALOGUE
    from img2img.inference.published import catalogue_table

    if as_json:
        print(json.dumps([m.as_dict() for m in CATALOGUE.values()], indent=2))
    else:
        from img2img.inference.bundled import bundled_lines

        print("\n".join(catalogue_table() + [""] + bundled_lines()))
    return EXIT_OK


def _fetch(ns: argparse.Namespace) -> int:
    from img2img.data.fetch import ByteBar
    from img2img.inference.published import fetch_model

    bar = ByteBar(ns.quiet, desc=ns.name)
    try:
        got = fetch_model(ns.name, ns.out, url=ns.url, force=ns.force,
                          keep_original=ns.keep_original, progress=bar)
    finally:
        bar.close()
    if got.skipped:
        print(f"{got.path} already exists; skipped (--force fetches it again)")
        return EXIT_OK
    check = "matches the catalogue's" if got.verified else "none known to compare it with"
    print(f"downloaded {got.url}: {got.size} bytes, sha256 {got.sha256} ({check})")
    meta = got.meta
    kept = f"; original kept as {got.original}" if got.original else ""
    print(f"wrote {got.path}: {meta.extra.get('family')} as {meta.arch}, task {meta.task} "
          f"{meta.direction}, x{meta.scale}{kept}")
    return EXIT_OK
