"""What recognising a foreign checkpoint yields: a toolkit generator and how to run it.

A *recogniser* looks at a plain state dict (already loaded safely, container keys and
``module.`` prefixes removed) and returns an :class:`Imported` when the tensors are of its
family, or ``None`` when they are not. It never guesses: every architecture number is
read from tensor names and shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]


@dataclass
class Imported:
    """A foreign generator converted to one of the toolkit's registered architectures (or, for
    the spandrel models, built by spandrel: ``module``)."""

    family: str  # what was recognised, for the log line, e.g. "ESRGAN RRDBNet (BasicSR keys)"
    arch: str  # name in img2img.nn's generator registry
    kwargs: dict[str, Any]  # build_generator(arch, **kwargs) rebuilds the network
    state_dict: StateDict  # keys and shapes of that network's state_dict()
    task: str  # "cyclegan" | "pix2pix" | "sr"
    scale: int = 1
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: str = "RGB"
    notes: dict[str, Any] = field(default_factory=dict)
    # A network the recogniser had to build to recognise it (spandrel's): used as it is
    # instead of build_generator(arch, **kwargs), with its weights already loaded.
    module: torch.nn.Module | None = None


Recogniser = Callable[[StateDict], "Imported | None"]
