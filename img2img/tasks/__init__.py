"""Training methods. Adding one means one file here plus one line in ``TASKS``.

A method's file declares its ``Options`` dataclass (its flags, with the published
defaults) next to its train step; :func:`make_config` builds a run's
:class:`~img2img.config.TrainConfig` from flat settings, shared or the method's own.
"""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import Any

from img2img.config import SHARED_FIELDS, TrainConfig
from img2img.errors import UsageError
from img2img.options import flag_of, flags_of

# name -> "module:Class"; imported lazily so an unused method costs nothing.
TASKS: dict[str, str] = {
    "cyclegan": "img2img.tasks.cyclegan:CycleGANTask",
    "cut": "img2img.tasks.cut:CUTTask",
    "fastcut": "img2img.tasks.cut:FastCUTTask",
    "pix2pix": "img2img.tasks.pix2pix:Pix2PixTask",
    "srgan": "img2img.tasks.srgan:SRGANTask",
}


def task_class(name: str) -> type:
    """Return the task class registered under ``name``."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def option_names(name: str) -> set[str]:
    """The names of task ``name``'s own options."""
    return {f.name for f in fields(task_class(name).Options)}


def tasks_with_flag(flag: str) -> list[str]:
    """The registered tasks that have command-line flag ``flag`` (``--lambda-l1``)."""
    return [name for name in TASKS if flag in flags_of(task_class(name).Options)]


def wrong_task_error(task: str, flags: list[str]) -> UsageError:
    """The error for ``flags`` given to a run of ``task``, naming the tasks that have them."""
    parts = []
    for flag in flags:
        owners = tasks_with_flag(flag)
        parts.append(f"{flag} is an option of --task {' and '.join(owners)}, not {task}"
                     if owners else f"{flag} is not an option of any task")
    return UsageError("; ".join(parts))


def make_config(**settings: Any) -> TrainConfig:
    """A :class:`TrainConfig` from flat settings: the shared ones and the task's options
    (``make_config(task="cyclegan", data=..., ngf=8, lambda_identity=0)``); the options not
    given keep the task's published defaults. A setting that is neither shared nor the
    task's is a ``UsageError`` naming the tasks that have it."""
    task = settings.get("task", TrainConfig.task)
    cls = task_class(task)
    names = option_names(task)
    unknown = sorted(set(settings) - set(SHARED_FIELDS) - names - {"options"})
    if unknown:
        raise wrong_task_error(task, [flag_of(k) for k in unknown])
    given = {k: settings[k] for k in names if k in settings}
    options = settings.get("options")
    if options is not None and given:
        raise UsageError(f"give the options of --task {task} either as options= or one by "
                         f"one, not both ({', '.join(sorted(given))})")
    return TrainConfig(**{k: settings[k] for k in SHARED_FIELDS if k in settings},
                       options=options if options is not None else cls.Options(**given))
