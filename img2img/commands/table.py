"""Command tables: name -> (one-line summary, entry), the listing ``--help`` prints, and the
dispatch of ``img2img <command>`` / ``img2img data <command>``.

Entries are imported only when their command runs, so listing the commands imports nothing
heavy. An entry is ``main(argv) -> int`` (:func:`lazy`), or a module with
``add_arguments(parser)`` and ``run(ns) -> int`` (:func:`module_command`).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from img2img.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    add_debug,
    guarded,
)

Entry = Callable[[Sequence[str] | None], int]


class Command(NamedTuple):
    """One row of a command table."""

    summary: str
    entry: Entry


def lazy(target: str) -> Entry:
    """``"package.module:function"`` as an entry that imports the module when called."""
    module, _, function = target.partition(":")

    def entry(argv: Sequence[str] | None = None) -> int:
        return getattr(importlib.import_module(module), function)(argv)

    entry.__qualname__ = entry.__name__ = function
    return entry


def _missing_extra(exc: ImportError, what: str, extra: str | None) -> str | None:
    """The one line for a missing third-party module (None: not that kind of error)."""
    from img2img.extras import missing_message

    name = exc.name or ""
    if not name or name.split(".")[0] == "img2img":
        return None
    if extra is None:
        return f"{what} needs the package {name.split('.')[0]}, which is not installed"
    return missing_message(what, extra, name.split(".")[0])


def module_command(module: str, prog: str, description: str, extra: str | None = None
                   ) -> Entry:
    """An entry for a module exposing ``add_arguments(parser)`` and ``run(ns) -> int``: its
    flags plus ``--debug``, run through the guarded runner (usage error 2, anything else one
    line, Ctrl-C 130). ``extra``: the optional extra whose absence the command reports in
    one line when importing the module fails."""
    def entry(argv: Sequence[str] | None = None) -> int:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            message = _missing_extra(exc, prog, extra)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return EXIT_USAGE
        parser = OneLineParser(prog=prog, description=description)
        mod.add_arguments(parser)
        try:
            add_debug(parser)
        except argparse.ArgumentError:  # the module has its own --debug
            pass
        ns = parser.parse_args(argv)
        return guarded(lambda: mod.run(ns), bool(getattr(ns, "debug", False)),
                       interrupted="interrupted")

    return entry


def listing(prog: str, table: Mapping[str, Command], description: str) -> str:
    """The ``PROG --help`` text: usage, one line per command, the exit codes."""
    width = max(len(name) for name in table) + 2
    rows = [f"  {name:<{width}}{cmd.summary}" for name, cmd in table.items()]
    return "\n".join([
        f"usage: {prog} <command> [flags]   ({prog} <command> --help lists its flags)",
        "",
        description,
        "",
        "commands:",
        *rows,
        "",
        "exit codes: 0 done, 1 some inputs failed, 2 usage error, 130 interrupted",
    ]) + "\n"


def unknown(prog: str, name: str, table: Mapping[str, Command]) -> str:
    """One line for an unknown command, naming the closest one."""
    close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.4)
    hint = (f"did you mean '{close[0]}'?" if close
            else f"the commands are {', '.join(table)}")
    return f"error: unknown command '{name}' for {prog}; {hint} (see {prog} --help)"


def dispatch(prog: str, table: Mapping[str, Command], argv: Sequence[str] | None,
             description: str, version: Callable[[], str] | None = None) -> int:
    """Run ``PROG <command> [flags]`` from ``table``; ``--help``, ``-h`` or nothing print the
    listing on stdout (exit 0); ``--version`` prints ``version()`` when given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(listing(prog, table, description))
        return EXIT_OK
    if version is not None and args[0] == "--version":
        print(version())
        return EXIT_OK
    if args[0] not in table:
        print(unknown(prog, args[0], table), file=sys.stderr)
        return EXIT_USAGE
    return table[args[0]].entry(args[1:])
