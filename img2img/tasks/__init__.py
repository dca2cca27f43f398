"""Training methods. Adding one means one file here plus one line in ``TASKS``."""

from __future__ import annotations

import importlib

from img2img.errors import UsageError

# name -> "module:Class"; imported lazily so an unused method costs nothing.
TASKS: dict[str, str] = {
    "cyclegan": "img2img.tasks.cyclegan:CycleGANTask",
    "pix2pix": "img2img.tasks.pix2pix:Pix2PixTask",
    "srgan": "img2img.tasks.srgan:SRGANTask",
}


def task_class(name: str) -> type:
    """Return the task class registered under ``name``."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)
