"""Command line: ``img2img <command>`` (the console script) and the names the scripts in
``tools/`` and ``datasets/`` and the tests import.

The subcommands live in :mod:`img2img.commands`, one module each, listed in
:data:`img2img.commands.COMMANDS`. Exit codes: 0 done, 1 some work failed (e.g. unreadable
images), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from img2img.commands import COMMANDS, DESCRIPTION
from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    add_debug,
    add_max_image_pixels,
    apply_max_image_pixels,
    guarded,
    report_unexpected,
    setup_logging,
    usage_errors,
)
from img2img.commands.export import export_main, export_parser
from img2img.commands.import_ import import_main, import_parser
from img2img.commands.models import models_main, models_parser
from img2img.commands.report import report_main
from img2img.commands.table import dispatch
from img2img.commands.train import parse_train_args, train_config, train_main, train_parser
from img2img.commands.translate import (
    DEFAULT_OVERLAP,
    EXTRA_BANDS,
    translate_main,
    translate_parser,
)
from img2img.options import non_negative_int, positive_float, positive_int

__all__ = [
    "COMMANDS", "DEFAULT_OVERLAP", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
    "EXTRA_BANDS", "OneLineParser", "add_debug", "add_max_image_pixels",
    "apply_max_image_pixels", "export_main", "export_parser", "guarded", "import_main",
    "import_parser", "main", "models_main", "models_parser", "non_negative_int",
    "parse_train_args", "positive_float", "positive_int", "report_main", "report_unexpected",
    "setup_logging", "train_config", "train_main", "train_parser", "translate_main",
    "translate_parser", "usage_errors", "version",
]


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("img2img")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from img2img import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """``img2img <command> [flags]``; ``img2img --help`` lists the commands."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch("img2img", COMMANDS, args, DESCRIPTION,
                        version=lambda: f"img2img {version()}")
    except BrokenPipeError:  # e.g. `img2img models | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
