#!/usr/bin/env python
"""Thin wrapper: `python datasets/make_paired.py --help` (same as `img2img data make-paired`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.commands.data_make_paired import make_paired_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
