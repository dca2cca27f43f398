"""Errors shared across layers (data tools, translation, the command line)."""

from __future__ import annotations


class UsageError(ValueError):
    """The request itself is wrong -- missing or empty inputs, an output inside an input,
    an option out of range -- so nothing was done; the command-line tools exit with 2."""
