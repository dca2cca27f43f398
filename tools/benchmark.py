#!/usr/bin/env python
"""Thin wrapper: `python tools/benchmark.py --help` (same as `img2img benchmark`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from img2img.commands.benchmark import benchmark_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
