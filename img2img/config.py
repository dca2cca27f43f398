"""Configuration dataclasses shared by the CLI, the trainer and the tasks.

`img2img.cli` is the one place that turns command-line flags into these objects;
everything below it reads plain attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Everything a training run needs. Saved as ``config.json`` in the output folder."""

    task: str = "cyclegan"
    data: str = ""
    out: str = "runs/train"
    # schedule: either steps or epochs (+ linear decay to zero over the decay part)
    steps: int | None = None
    decay_steps: int | None = None
    epochs: int | None = None
    epochs_decay: int | None = None
    batch_size: int = 1
    lr: float | None = None
    beta1: float | None = None
    beta2: float = 0.999
    # data
    direction: str = "AtoB"
    preprocess: str = "resize_and_crop"
    load_size: int | None = None
    crop_size: int | None = None
    no_flip: bool = False
    workers: int = 2
    on_bad_image: str = "skip"  # an image failing after the start-up check: skip | stop
    # networks (None = the task's published default, filled in by Task.apply_defaults)
    generator: str | None = None
    discriminator: str | None = None
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    norm: str | None = None
    dropout: bool | None = None
    upsample: str = "transpose"
    num_downs: int = 8
    init: str = "normal"
    init_gain: float = 0.02
    # losses
    gan_mode: str | None = None
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int | None = None
    lambda_l1: float = 100.0
    # super-resolution
    scale: int = 4
    sr_residual: bool = False
    n_blocks: int = 16
    phase: str = "psnr"
    init_from: str | None = None
    pixel_loss: str = "mse"
    lambda_adv: float = 1e-3
    ema_decay: float = 0.999
    degrade: list[str] = field(default_factory=list)
    lambda_perceptual: float | None = None
    lambda_pixel: float | None = None
    vgg_weights: str | None = None
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


@dataclass
class TranslateConfig:
    """Options of ``tools/translate.py``."""

    checkpoint: str = ""
    input: str = ""
    output: str = ""
    batch_size: int | None = None  # None: runtime.default_batch_size(device)
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    ext: str | None = None
    overwrite: bool = False
    quiet: bool = False
