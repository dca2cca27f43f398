#!/usr/bin/env python
"""Download a public CycleGAN or pix2pix dataset into ``--out/NAME``.

    python datasets/download.py horse2zebra            # -> datasets/horse2zebra/trainA ...
    python datasets/download.py pix2pix_facades --out data/
    python datasets/download.py --list

``maps`` and ``facades`` are the CycleGAN (unpaired) versions; the pix2pix (A|B) versions
are ``pix2pix_maps`` and ``pix2pix_facades``. The archive's size and SHA-256 are printed and
recorded in ``NAME/download.json``; ``--sha256 HEX`` makes a later download check it. Exit
codes: 0 ok (or already present), 1 download failed or mismatched (nothing left behind),
2 usage error or manual download needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.data.download import (  # noqa: E402
    CATALOGUE,
    DownloadError,
    ManualDownloadError,
    download_dataset,
    missing_folders,
)
from img2img.data.fetch import ByteBar  # noqa: E402
from img2img.errors import UsageError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="download.py", description=__doc__.split("\n")[0])
    p.add_argument("name", nargs="?", help="dataset name (see --list)")
    p.add_argument("--out", default="datasets", help="parent folder (default datasets/)")
    p.add_argument("--url-base", help="mirror: URL of the folder holding NAME.zip / NAME.tar.gz")
    p.add_argument("--sha256", metavar="HEX",
                   help="expected SHA-256 of the archive (refused if it differs); printed and "
                        "recorded in NAME/download.json after every download")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--list", action="store_true", help="print the dataset names and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = parser()
    try:
        ns = p.parse_args(argv)
        if not ns.list and not ns.name:
            p.error("give a dataset NAME or --list")
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.list:
        for ds in CATALOGUE.values():
            note = "  (manual download)" if ds.manual else ""
            print(f"{ds.name:24s} {ds.family:9s} {ds.description}{note}")
        return 0
    bar = ByteBar(ns.quiet)
    try:
        result = download_dataset(ns.name, ns.out, url_base=ns.url_base,
                                  overwrite=ns.overwrite, progress=bar, sha256=ns.sha256)
    except UsageError as exc:  # unknown name, bad --sha256, or manual download instructions
        print(exc if isinstance(exc, ManualDownloadError) else f"error: {exc}", file=sys.stderr)
        return 2
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: partial download removed", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if result.skipped:
        print(f"{result.path} already exists; skipped (use --overwrite to download again)")
        return 0
    missing = missing_folders(result, ns.name)
    if missing:
        print(f"warning: {result.path} has no {', '.join(missing)} folder; check its layout",
              file=sys.stderr)
    print(f"downloaded {result.url} -> {result.path}")
    check = ("matches the expected SHA-256" if result.verified
             else "none known to check it against; pin it with --sha256")
    where = f"; recorded in {result.manifest}" if result.manifest else ""
    print(f"archive: {result.size} bytes, sha256 {result.sha256} ({check}{where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
