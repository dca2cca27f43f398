"""Typed option dataclasses and the command-line flags made from them.

A training method declares its options as a dataclass whose fields are made with
:func:`option` (default, help text, argparse type or choices). :func:`add_options` turns
such a class into an argparse group -- flag ``--name-with-dashes`` for field
``name_with_dashes``, the default shown in the help -- so the dataclass is the one
description of a method's settings: the CLI, ``config.json`` and the resume check all read
it. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any

# How a boolean option becomes a flag: ``--x`` only (store_true, default False), or the
# ``--x`` / ``--no-x`` pair (for options whose published default is on for some methods).
SWITCH, PAIR = "switch", "pair"


def option(default: Any = None, help: str = "", *, type: Callable[[str], Any] | None = None,
           choices: Sequence[Any] | None = None, metavar: str | None = None,
           nargs: str | None = None, boolean: str | None = None, shown: str | None = None,
           may_change: bool = False) -> Any:
    """A dataclass field that is also a command-line option.

    ``shown``: the default as the help text states it (for a default computed later, such
    as ``None`` = "crop-size x 286/256"). ``may_change``: a ``--resume`` may give it a new
    value (it does not change what is trained, e.g. where a weights file lives).
    A list default is copied for each instance.
    """
    meta = {"help": help, "type": type, "choices": choices, "metavar": metavar,
            "nargs": nargs, "boolean": boolean, "shown": shown, "may_change": may_change}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def option_fields(cls: type) -> Iterator[Field]:
    """The fields of option dataclass ``cls`` (instance or class)."""
    yield from fields(cls)


def field_default(f: Field) -> Any:
    """The default value of dataclass field ``f``."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"option {f.name} has no default")


def flag_of(name: str) -> str:
    """The command-line flag of option ``name`` (``lambda_nce`` -> ``--lambda-nce``)."""
    return "--" + name.replace("_", "-")


def flags_of(cls: type) -> dict[str, str]:
    """Every option string of ``cls`` (``--x`` and, for a pair, ``--no-x``) -> field name."""
    out = {}
    for f in option_fields(cls):
        out[flag_of(f.name)] = f.name
        if f.metadata.get("boolean") == PAIR:
            out["--no-" + f.name.replace("_", "-")] = f.name
    return out


def may_change(cls: type) -> set[str]:
    """Names of the options of ``cls`` that a resumed run may change."""
    return {f.name for f in option_fields(cls) if f.metadata.get("may_change")}


def _shown(f: Field, value: Any) -> str:
    if f.metadata.get("shown") is not None:
        return f.metadata["shown"]
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def add_options(parser: argparse.ArgumentParser, cls: type, title: str,
                description: str | None = None) -> argparse._ArgumentGroup:
    """Add the options of dataclass ``cls`` to ``parser`` as one group, each help text
    ending with the option's default."""
    group = parser.add_argument_group(title, description)
    for f in option_fields(cls):
        meta, default = f.metadata, field_default(f)
        text = meta.get("help", "")
        help_text = f"{text} (default {_shown(f, default)})".strip().replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if isinstance(default, bool) and meta.get("type") is None:
            if meta.get("boolean") == PAIR:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                if default:
                    raise TypeError(f"switch option {f.name} must default to False")
                kwargs["action"] = "store_true"
        else:
            for key in ("type", "choices", "metavar", "nargs"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
        group.add_argument(flag_of(f.name), **kwargs)
    return group


def from_namespace(cls: type, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` from the entries of ``values`` named like its fields (the
    others keep their defaults)."""
    return cls(**{f.name: values[f.name] for f in option_fields(cls) if f.name in values})


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
