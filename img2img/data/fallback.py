"""Deterministic replacement of a training image that cannot be read when it is drawn.

Files are checked at start-up (:mod:`img2img.data.training_check`), but one can still fail later:
scrambled pixel data the header check cannot see, or a file changed during the run. The
datasets then use the next file of the same list instead, so a sample stays a pure function
of its counter and of which files fail (a resumed run sees the same replacements), and they
report what they passed over in the sample's ``"bad"`` field (``"<path>: <reason>"`` lines),
which travels with the batch from the loader's worker processes to the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from img2img.data.io import ImageReadError

T = TypeVar("T")

# Consecutive unreadable files after which the data itself, not one file, is the problem.
MAX_IN_A_ROW = 16


def first_usable(index: int, count: int, load: Callable[[int], T]) -> tuple[T, list[str]]:
    """``load(index)``; if it raises ``ImageReadError``, ``load(index + 1)`` and so on
    (modulo ``count``). Returns the value and the messages of the files passed over.

    Raises ``RuntimeError`` when ``MAX_IN_A_ROW`` files (or all ``count``) fail in a row.
    """
    failures: list[str] = []
    tries = max(1, min(count, MAX_IN_A_ROW))
    for i in range(tries):
        try:
            return load((index + i) % count), failures
        except ImageReadError as exc:
            failures.append(str(exc))
    raise RuntimeError(f"{tries} training images in a row cannot be read, the first: "
                       f"{failures[0]}")


def bad_reports(batch_field: object) -> list[str]:
    """The ``"<path>: <reason>"`` lines of a collated batch's ``"bad"`` field."""
    if isinstance(batch_field, str):
        batch_field = [batch_field]
    if not isinstance(batch_field, (list, tuple)):
        return []
    return [line for s in batch_field for line in str(s).split("\n") if line]
