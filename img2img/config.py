"""Configuration dataclasses shared by the CLI, the trainer and the tasks.

The command line (`img2img.commands`: train, translate) is the one place that turns flags
into these objects; everything below it reads plain attributes.

A training run's configuration is a :class:`TrainConfig`: the settings every method shares
(schedule, batch, data loading, device, precision, logging, resume, output) plus
``options``, the method's own dataclass (its networks, losses and optimiser, with their
published defaults), declared in the method's file under ``img2img/tasks/``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    """Everything a training run needs. Saved as ``config.json`` in the output folder.

    ``options`` is an instance of the task's ``Options`` dataclass (None: the task's
    published defaults, filled in by ``Task.apply_defaults``).
    """

    task: str = "cyclegan"
    data: str = ""
    out: str = "runs/train"
    # schedule: either steps or epochs (+ linear decay to zero over the decay part);
    # epochs None = the task's published number
    steps: int | None = None
    decay_steps: int | None = None
    epochs: int | None = None
    epochs_decay: int | None = None
    batch_size: int = 1
    # data loading
    no_flip: bool = False
    workers: int = 2
    on_bad_image: str = "skip"  # an image failing after the start-up check: skip | stop
    # validation during training (shared by every task; see engine/validation.py)
    val_every: int = 0  # 0: off
    val_max: int = 200  # images per direction
    val_data: str | None = None  # None: the task's default (the test split of --data)
    val_metric: str | None = None  # None: the task's default (fid; psnr for srgan)
    inception_weights: str | None = None  # None: the metrics extra, then the torch hub cache
    # runtime
    seed: int = 0
    device: str = "auto"
    # fp32|bf16|fp16, or auto (the command line's default): the Trainer resolves auto for
    # its device (runtime.resolve_precision); tasks only ever see a resolved name
    precision: str = "fp32"
    compile: bool = False
    sync_bn: bool = False
    resume: bool = False
    save_every: int = 1000
    sample_every: int = 200
    log_every: int = 10
    log_format: str = "jsonl"
    tensorboard: bool = False
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # the method's own settings (a dataclass of img2img/tasks/<task>.py)
    options: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict: the shared settings and the task's options side
        by side (one flat level, as ``config.json`` has always been written)."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
               if f.name != "options"}
        if self.options is not None:
            out.update(asdict(self.options))
        return out


# The shared settings (every field of TrainConfig except the task's options).
SHARED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig) if f.name != "options")
