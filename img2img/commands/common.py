"""What every subcommand shares: the one-line parser, exit codes, the guarded runner, the
flags every tool spells the same way, logging set-up.

Exit codes: 0 done, 1 some inputs failed (or an unexpected error, one line), 2 usage error,
130 interrupted (Ctrl-C), 143 training stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from img2img.options import positive_int

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug``: the traceback of an unexpected error instead of its one line."""
    p.add_argument("--debug", action="store_true",
                   help="print the full traceback of an unexpected error")


def add_quiet(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--quiet``."""
    p.add_argument("--quiet", action="store_true", help=help)


def add_common(p: argparse.ArgumentParser, batch_size: int | None, batch_help: str,
               int8: bool = False) -> None:
    """``--device --precision --batch-size --compile --quiet --debug --max-image-pixels``
    (train and translate; ``int8`` adds ``--precision int8``, an inference path)."""
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default auto)")
    p.add_argument("--precision", default="auto",
                   choices=["auto", "fp32", "bf16", "fp16"] + (["int8"] if int8 else []),
                   help="auto (default): bf16 on CPUs with avx512_bf16/AMX and on GPUs of "
                        "compute capability 8.0+, fp16 on 7.x GPUs, else fp32"
                        + ("; int8: CPU only, static quantization calibrated on the run's "
                           "first images (see --calibrate)" if int8 else ""))
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help=batch_help)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (slow first step; on CPU it needs a C++ "
                        "compiler and pays off with --precision bf16)")
    add_quiet(p)
    add_debug(p)
    add_max_image_pixels(p)


def add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    """The ``--max-image-pixels`` flag (commands and dataset tools that decode images)."""
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="decode whole images of at most N pixels (width x height, read from "
                        "the header first; default 2**28 = 268435456); larger files fail "
                        "with their size (translate reads larger TIFFs by windows)")


def apply_max_image_pixels(ns: argparse.Namespace) -> None:
    """Set the process-wide decoding limit from ``--max-image-pixels`` when it was given."""
    if ns.max_image_pixels is not None:
        from img2img.data.io import set_max_image_pixels

        set_max_image_pixels(ns.max_image_pixels)


def usage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the request is wrong" (exit 2): a missing or invalid input, an
    option out of range, a checkpoint that is not a generator, a run folder in use."""
    from img2img.checkpoint import CheckpointError
    from img2img.errors import UsageError

    return UsageError, CheckpointError, FileNotFoundError


def report_unexpected(exc: BaseException, debug: bool) -> int:
    """One line for an error that is not the user's (exit 1); the traceback with --debug."""
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug else " (run with --debug for the traceback)"
    print(f"error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return EXIT_FAILED


def guarded(body: Callable[[], int], debug: bool,
            failures: tuple[type[BaseException], ...] = (),
            usage: tuple[type[BaseException], ...] = (),
            interrupted: str | None = None) -> int:
    """Run a command's ``body``: a usage error (:func:`usage_errors` and ``usage``) exits 2
    and one of ``failures`` exits 1, each with one ``error:`` line; Ctrl-C prints
    ``interrupted`` and exits 130 when that message is given (else it propagates); anything
    else exits 1 with one line (the traceback with ``--debug``)."""
    try:
        return body()
    except (*usage_errors(), *usage) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except failures as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line instead of a traceback
        return report_unexpected(exc, debug)


def parse_or_exit_code(parser: argparse.ArgumentParser, argv: Sequence[str] | None
                       ) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit code argparse chose (0 for ``--help``, 2 for
    a usage error, already printed) for commands whose ``main`` returns instead of exiting."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
               body: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv`` (``--help`` and usage errors give their exit code), apply
    ``--max-image-pixels`` where the command has it, and run ``body(ns)`` guarded."""
    ns = parse_or_exit_code(parser, argv)
    if isinstance(ns, int):
        return ns
    if hasattr(ns, "max_image_pixels"):
        apply_max_image_pixels(ns)
    return guarded(lambda: body(ns), ns.debug)


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """Say ``message`` as ``parser``'s one-line usage error; the exit code (2)."""
    print(f"error: {message} (see {parser.prog} --help)", file=sys.stderr)
    return EXIT_USAGE


def setup_logging(quiet: bool) -> None:
    """Log lines ``LEVEL: message`` on stderr; only warnings and errors with ``--quiet``."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")
