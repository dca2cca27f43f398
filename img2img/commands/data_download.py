"""``img2img data download`` / ``datasets/download.py``: a public CycleGAN or pix2pix dataset
into ``--out/NAME``.

    img2img data download horse2zebra            # -> datasets/horse2zebra/trainA ...
    img2img data download pix2pix_facades --out data/
    img2img data download --list

``maps`` and ``facades`` are the CycleGAN (unpaired) versions; the pix2pix (A|B) versions
are ``pix2pix_maps`` and ``pix2pix_facades``. The archive's size and SHA-256 are printed and
recorded in ``NAME/download.json``; ``--sha256 HEX`` makes a later download check it. Exit
codes: 0 ok (or already present), 1 download failed or mismatched (nothing left behind),
2 usage error or manual download needed, 130 interrupted (nothing left behind).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from img2img.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    add_debug,
    add_quiet,
    guarded,
    parse_or_exit_code,
    usage_error,
)
from img2img.data.download import (
    CATALOGUE,
    ManualDownloadError,
    download_dataset,
    missing_folders,
)
from img2img.data.fetch import ByteBar, DownloadError


def download_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img data download``."""
    p = OneLineParser(prog="img2img data download",
                      description="Download a public CycleGAN or pix2pix dataset into "
                                  "--out/NAME (--list shows them).")
    p.add_argument("name", nargs="?", help="dataset name (see --list)")
    p.add_argument("--out", default="datasets", help="parent folder (default datasets/)")
    p.add_argument("--url-base", help="mirror: URL of the folder holding NAME.zip / NAME.tar.gz")
    p.add_argument("--sha256", metavar="HEX",
                   help="expected SHA-256 of the archive (refused if it differs); printed and "
                        "recorded in NAME/download.json after every download")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--list", action="store_true", help="print the dataset names and exit")
    add_quiet(p)
    add_debug(p)
    return p


def download_main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = download_parser()
    ns = parse_or_exit_code(p, argv)
    if isinstance(ns, int):
        return ns
    if not ns.list and not ns.name:
        return usage_error(p, "give a dataset NAME or --list")
    if ns.list:
        for ds in CATALOGUE.values():
            note = "  (manual download)" if ds.manual else ""
            print(f"{ds.name:24s} {ds.family:9s} {ds.description}{note}")
        return EXIT_OK
    return guarded(lambda: _download(ns), ns.debug, failures=(DownloadError,),
                   interrupted="interrupted: partial download removed")


def _download(ns: argparse.Namespace) -> int:
    bar = ByteBar(ns.quiet)
    try:
        result = download_dataset(ns.name, ns.out, url_base=ns.url_base,
                                  overwrite=ns.overwrite, progress=bar, sha256=ns.sha256)
    except ManualDownloadError as exc:  # the instructions, several lines
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    finally:
        bar.close()
    if result.skipped:
        print(f"{result.path} already exists; skipped (use --overwrite to download again)")
        return EXIT_OK
    missing = missing_folders(result, ns.name)
    if missing:
        print(f"warning: {result.path} has no {', '.join(missing)} folder; check its layout",
              file=sys.stderr)
    print(f"downloaded {result.url} -> {result.path}")
    check = ("matches the expected SHA-256" if result.verified
             else "none known to check it against; pin it with --sha256")
    where = f"; recorded in {result.manifest}" if result.manifest else ""
    print(f"archive: {result.size} bytes, sha256 {result.sha256} ({check}{where})")
    return EXIT_OK
