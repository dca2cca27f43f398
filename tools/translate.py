#!/usr/bin/env python
"""Thin wrapper: `python tools/translate.py --help` (same as `img2img translate`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.cli import translate_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(translate_main())
