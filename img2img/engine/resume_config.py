"""The configuration of a resumed run: the run folder's, with the flags that may change.

``--resume`` continues the run saved in ``--out``; its configuration (the ``"config"`` of
``resume.pt``, else ``config.json``) is restored, so the architecture flags need not be
repeated. A flag given again with another value either overrides (:data:`OVERRIDABLE`) or,
when it would make a different method, network or data stream, is refused.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from img2img.config import SHARED_FIELDS, TrainConfig
from img2img.errors import UsageError
from img2img.options import may_change
from img2img.tasks import make_config, task_class, wrong_task_error

log = logging.getLogger(__name__)

# Settings that may change between the parts of one run: how long it runs (a longer or
# shorter schedule), how often it writes, where the data lives, what it runs on and how it
# reports, how it validates (a changed validation restarts the best checkpoint's record,
# see engine/validation.py) -- plus the task options marked ``may_change`` (e.g. where the
# VGG weights live).
# Every other setting shapes the method, the networks, the optimiser (whose lr and betas the
# resume file restores anyway) or the data the networks see -- including --batch-size and
# --seed, which decide the sample stream a resumed run continues exactly -- so a different
# value is refused rather than silently ignored.
OVERRIDABLE = frozenset({
    "steps", "decay_steps", "epochs", "epochs_decay",
    "save_every", "sample_every", "log_every", "log_format", "tensorboard", "quiet",
    "workers", "device", "precision", "compile", "sync_bn", "on_bad_image",
    "data", "out", "resume",
    "val_every", "val_max", "val_data", "val_metric", "inception_weights",
})
_STEP_SCHEDULE, _EPOCH_SCHEDULE = ("steps", "decay_steps"), ("epochs", "epochs_decay")


def overridable(task: str) -> frozenset[str]:
    """The settings of a ``task`` run that ``--resume`` may change."""
    return OVERRIDABLE | may_change(task_class(task).Options)


def _values(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as flat settings, its task's default options standing in for none."""
    values = cfg.to_dict()
    if cfg.options is None:
        values.update(asdict(task_class(cfg.task).Options()))
    return values


def explicit_fields(cfg: TrainConfig) -> set[str]:
    """The settings of ``cfg`` that differ from the defaults (for callers without flags):
    the shared ones against :class:`TrainConfig`'s, the options against the task's."""
    default = _values(TrainConfig(task=cfg.task))
    return {k for k, v in _values(cfg).items() if k in default and v != default[k]}


def _flag(key: str, value: Any) -> str:
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else f"--no-{key.replace('_', '-')}"
    if isinstance(value, (list, tuple)):
        return " ".join([name, *map(str, value)])
    return f"{name} {value}"


def _shown(key: str, value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = " ".join(map(str, value)) or "none"
    return f"{key.replace('_', '-')} {value}"


def restore_config(cfg: TrainConfig, saved: dict[str, Any], given: set[str],
                   out: str | Path) -> TrainConfig:
    """``saved`` (a flat configuration, as ``config.json`` holds it) with the overridable
    settings of ``cfg`` named in ``given`` (the flags the user passed). Raises
    ``UsageError`` naming every other given setting that differs.

    The task is the saved one. Giving ``--steps`` drops a saved epoch schedule and
    ``--epochs`` a saved step schedule. Settings the saved configuration lacks (older
    files) keep ``cfg``'s value; saved settings the task no longer has (the options of
    other methods, which files written before per-task options held) are ignored. A run
    started with ``--precision auto`` resumes with ``auto`` unless ``--precision`` is given.
    """
    requested = saved.get("precision_requested")  # what the run was started with
    task = saved.get("task", cfg.task)
    names = (*SHARED_FIELDS, *(f.name for f in fields(task_class(task).Options)))
    current = _values(cfg)
    foreign = sorted(k for k in given if k in current and k not in names)
    if foreign:  # options of cfg's task that the saved run's task does not have
        raise wrong_task_error(task, [_flag(k, current[k]).split()[0] for k in foreign])
    saved = {k: v for k, v in saved.items() if k in names}
    given = {k for k in given if k in names}
    free = overridable(task)
    clash = [k for k in names
             if k in given and k not in free and k in saved and current[k] != saved[k]]
    if clash:
        flags = " and ".join(_flag(k, current[k]) for k in clash)
        were = ", ".join(_shown(k, saved[k]) for k in clash)
        verb, them = ("conflicts", "it") if len(clash) == 1 else ("conflict", "them")
        raise UsageError(f"{flags} {verb} with the run in {out} ({were}); resume without "
                         f"{them} or start a new --out")
    fallback = current if task == cfg.task else _values(TrainConfig(task=task))
    merged = {k: saved[k] if k in saved else fallback.get(k, current.get(k)) for k in names}
    for k in given & free:
        merged[k] = current[k]
    if "steps" in given and not given & set(_EPOCH_SCHEDULE):
        merged.update(epochs=None, epochs_decay=None)
    if given & set(_EPOCH_SCHEDULE) and "steps" not in given:
        merged.update(steps=None, decay_steps=None)
    if requested == "auto" and "precision" not in given:
        merged["precision"] = "auto"  # chosen again for the machine the run continues on
    merged.update(resume=True, out=cfg.out)
    if merged["data"] != saved.get("data", merged["data"]):
        log.info("resuming with the data in %s (the run started with %s)", merged["data"],
                 saved["data"])
    return make_config(**merged)
