"""Generators shipped inside the package, found by name: ``--checkpoint sr_x4_naip``.

A checkpoint argument resolves in this order:

1. an existing file at that path, always (``./sr_x4_naip`` or a file of that name in the
   current folder wins over the bundled model);
2. a bare name -- no folder part, no suffix -- of a file in ``img2img/models/``
   (``img2img/models/<name>.safetensors``, read through :mod:`importlib.resources`, so it
   works from an installed wheel as from a checkout);
3. any other bare name is a usage error in one line: the bundled names, or how to fetch it
   when it is a published model of ``img2img models``. Anything else is a path, and the
   loader says it is missing.

>>> resolve_checkpoint("sr_x4_naip").name
'sr_x4_naip.safetensors'
"""

from __future__ import annotations

import atexit
import os
from contextlib import ExitStack
from functools import cache
from importlib import resources
from pathlib import Path

from img2img.errors import UsageError

__all__ = ["PACKAGE", "SUFFIX", "bundled_lines", "bundled_names", "bundled_path",
           "is_bare_name", "resolve_checkpoint"]

PACKAGE = "img2img.models"
SUFFIX = ".safetensors"

_extracted = ExitStack()  # files copied out of a zipped install, removed at exit
atexit.register(_extracted.close)


def bundled_names() -> list[str]:
    """Names of the bundled generators (file names without ``.safetensors``), sorted."""
    root = resources.files(PACKAGE)
    return sorted(entry.name[: -len(SUFFIX)] for entry in root.iterdir()
                  if entry.name.endswith(SUFFIX) and entry.is_file())


@cache
def bundled_path(name: str) -> Path:
    """The file of bundled model ``name`` on disk; UsageError when there is none."""
    resource = resources.files(PACKAGE) / f"{name}{SUFFIX}"
    if not is_bare_name(name) or not resource.is_file():
        raise UsageError(_unknown(name))
    if isinstance(resource, Path):  # an ordinary install or a checkout
        return resource
    return _extracted.enter_context(resources.as_file(resource))  # e.g. a zipped install


def is_bare_name(spec: str | os.PathLike[str]) -> bool:
    """True for a name that could be a bundled model's: no folder part and no suffix."""
    text = os.fspath(spec)
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return (bool(text) and text not in (".", "..") and not any(s in text for s in seps)
            and Path(text).suffix == "")


def resolve_checkpoint(spec: str | os.PathLike[str]) -> Path:
    """The file a checkpoint argument means (see the module docstring for the order)."""
    path = Path(spec)
    if path.is_file() or not is_bare_name(spec):
        return path
    return bundled_path(os.fspath(spec))


def _unknown(name: str) -> str:
    from img2img.foreign.catalogue import CATALOGUE

    if name in CATALOGUE:
        return (f"{name}: no such file; it is a published model: img2img models fetch {name} "
                f"--out models/, then --checkpoint models/{name}.safetensors")
    listed = ", ".join(bundled_names()) or "none"
    return (f"{name}: no such file, nor a bundled model (bundled: {listed}; "
            f"img2img models lists published ones to fetch)")


def bundled_lines() -> list[str]:
    """Lines for ``img2img models``: each bundled model's name, architecture, task, scale and
    size, under a heading saying how to use them."""
    from img2img.checkpoint import read_meta

    rows = []
    for name in bundled_names():
        path = bundled_path(name)
        meta = read_meta(path)
        size = f"{path.stat().st_size / 1e6:.1f} MB"
        rows.append((name, meta.arch, meta.task, f"x{meta.scale}", size))
    if not rows:
        return []
    width = max(len(r[0]) for r in rows)
    lines = ["bundled (no download: img2img translate --checkpoint NAME):"]
    lines += [f"  {n:{width}}  {arch:11}  {task:8}  {scale:5}  {size}"
              for n, arch, task, scale, size in rows]
    return lines
