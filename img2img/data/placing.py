"""Putting dataset files in place: hard link, symlink or copy, and removing what a rebuild
replaces. Shared by the dataset builders (``build_unpaired``, ``split``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from img2img.data.io import atomic_path

__all__ = ["link_or_copy", "remove_entry"]


def link_or_copy(src: Path, dst: Path, copy: Callable[[], None]) -> str:
    """Make ``dst`` a hard link to ``src``, else a symlink, else call ``copy()`` (which
    writes ``dst`` itself); the method used: ``hardlink``, ``symlink`` or ``copy``. Each
    link is made under a temp name and moved into place."""
    for method, make in (("hardlink", os.link), ("symlink", os.symlink)):
        try:
            with atomic_path(dst) as tmp:
                tmp.unlink()
                make(src, tmp)
            return method
        except OSError:
            continue
    copy()
    return "copy"


def remove_entry(path: Path) -> None:
    """Remove a file, a symlink (not its target) or a folder tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
