"""The configuration of a resumed run: the run folder's, with the flags that may change.

``--resume`` continues the run saved in ``--out``; its configuration (the ``"config"`` of
``resume.pt``, else ``config.json``) is restored, so the architecture flags need not be
repeated. A flag given again with another value either overrides (:data:`OVERRIDABLE`) or,
when it would make a different method, network or data stream, is refused.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from img2img.config import TrainConfig
from img2img.errors import UsageError

log = logging.getLogger(__name__)

# Settings that may change between the parts of one run: how long it runs (a longer or
# shorter schedule), how often it writes, where the data and the VGG weights live, what it
# runs on, how it reports and how it validates (a changed validation restarts the best
# checkpoint's record, see engine/validation.py). Every other setting shapes the method,
# the networks, the optimiser (whose lr and betas the resume file restores anyway) or the
# data the networks see -- including --batch-size and --seed, which decide the sample
# stream a resumed run continues exactly -- so a different value is refused rather than
# silently ignored.
OVERRIDABLE = frozenset({
    "steps", "decay_steps", "epochs", "epochs_decay",
    "save_every", "sample_every", "log_every", "log_format", "tensorboard", "quiet",
    "workers", "device", "precision", "compile", "sync_bn", "on_bad_image",
    "data", "out", "vgg_weights", "resume",
    "val_every", "val_max", "val_data", "val_metric", "inception_weights",
})
_STEP_SCHEDULE, _EPOCH_SCHEDULE = ("steps", "decay_steps"), ("epochs", "epochs_decay")
_NAMES = tuple(f.name for f in fields(TrainConfig))


def explicit_fields(cfg: TrainConfig) -> set[str]:
    """The fields of ``cfg`` that differ from the defaults (for callers without flags)."""
    default = TrainConfig()
    return {k for k in _NAMES if getattr(cfg, k) != getattr(default, k)}


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
    """``saved`` with the overridable settings of ``cfg`` named in ``given`` (the flags
    the user passed). Raises ``UsageError`` naming every other given setting that differs.

    Giving ``--steps`` drops a saved epoch schedule and ``--epochs`` a saved step schedule.
    Settings the saved configuration lacks (older files) keep ``cfg``'s value. A run started
    with ``--precision auto`` resumes with ``auto`` unless ``--precision`` is given.
    """
    requested = saved.get("precision_requested")  # what the run was started with
    saved = {k: v for k, v in saved.items() if k in _NAMES}
    given = {k for k in given if k in _NAMES}
    clash = [k for k in _NAMES
             if k in given and k not in OVERRIDABLE and k in saved and getattr(cfg, k) != saved[k]]
    if clash:
        flags = " and ".join(_flag(k, getattr(cfg, k)) for k in clash)
        were = ", ".join(_shown(k, saved[k]) for k in clash)
        verb, them = ("conflicts", "it") if len(clash) == 1 else ("conflict", "them")
        raise UsageError(f"{flags} {verb} with the run in {out} ({were}); resume without "
                         f"{them} or start a new --out")
    merged = {k: saved.get(k, getattr(cfg, k)) for k in _NAMES}
    for k in given & OVERRIDABLE:
        merged[k] = getattr(cfg, k)
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
    return TrainConfig(**merged)
