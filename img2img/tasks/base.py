"""What every training method provides to the shared trainer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta, meta_for
from img2img.config import TrainConfig
from img2img.data.training_check import InputGeometry
from img2img.errors import UsageError
from img2img.nn import (
    build_discriminator,
    build_generator,
    discriminator_arguments,
    generator_arguments,
    init_weights,
)
from img2img.nn.cpu import accelerate
from img2img.runtime import autocast
from img2img.tasks.options import TaskOptions
from img2img.tasks.validation import ValSet

log = logging.getLogger(__name__)


@dataclass
class BenchSpec:
    """One configuration of a task for ``tools/benchmark.py``: the run settings
    (:func:`img2img.tasks.make_config` keywords), the batch shapes and a description.
    ``prepare(task)`` runs on the built task before timing (e.g. random VGG weights)."""

    label: str
    settings: dict[str, Any]
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    describe: str
    notes: list[str] = field(default_factory=list)
    prepare: Callable[[Task], None] | None = None


class Task:
    """Base class: owns the networks and optimisers of one method and its train step.

    A method declares ``Options`` (a dataclass of its settings with their published
    defaults and help texts: its command-line flags) and ``default_epochs`` (constant,
    decay). Subclasses fill ``self.nets`` and ``self.optimizers`` in ``__init__`` and
    implement :meth:`build_dataset`, :meth:`train_step`, :meth:`sample_rows`,
    :meth:`exports` and :meth:`benchmark_specs`. The trainer handles the loop, schedules,
    logging and checkpoints.
    """

    name = "base"
    Options: type[TaskOptions] = TaskOptions
    # Published schedule when neither --steps nor --epochs is given: epochs at constant lr,
    # then epochs of linear decay to zero.
    default_epochs: tuple[int, int] = (100, 100)

    @classmethod
    def apply_defaults(cls, cfg: TrainConfig) -> TrainConfig:
        """Give ``cfg`` this method's options (the published defaults if it has none) and
        fill the defaults that depend on other settings."""
        if cfg.options is None:
            cfg.options = cls.Options()
        elif type(cfg.options) is not cls.Options:
            raise UsageError(f"--task {cls.name} takes {cls.Options.__name__}, not "
                             f"{type(cfg.options).__name__}")
        cfg.options.fill_defaults()
        return cfg

    @classmethod
    def benchmark_specs(cls, quick: bool) -> list[BenchSpec]:
        """The published configuration(s) to time (tiny ones with ``quick``)."""
        raise NotImplementedError

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.apply_defaults(cfg)
        self.cfg = cfg
        self.opt = cfg.options
        self.device = device
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._arch: dict[str, tuple[str, dict[str, Any]]] = {}
        self._scalers: dict[str, torch.amp.GradScaler] = {}
        self.skipped_steps = 0
        # Under torchrun: this process's rank (per-process state such as image pools uses it)
        self.rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    # --- to implement -------------------------------------------------------------------
    def build_dataset(self) -> Dataset:
        """The training dataset (indexed by a global sample counter)."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the losses as floats."""
        raise NotImplementedError

    def sample_rows(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Rows of images (each NCHW in [-1, 1]) for the sample grid."""
        raise NotImplementedError

    def exports(self) -> dict[str, tuple[nn.Module, GeneratorMeta]]:
        """Inference generators to write, keyed by file name."""
        raise NotImplementedError

    # Metric that picks the best checkpoint when --val-metric is not given.
    default_val_metric = "fid"

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """What ``--val-every`` validates: one set per exported generator, at most ``limit``
        images each; ``root`` is ``--val-data`` (None: the task's default). UsageError when
        the method has no validation or its data is missing."""
        raise UsageError(f"--val-every: the {self.name} task has no validation")

    def input_geometry(self) -> InputGeometry:
        """What the generators need from an unresized training image (start-up check and
        ``--preprocess none`` cropping): their size multiple and minimum size, and whether
        one batch needs images of one size."""
        nets = [self.nets[k] for k in self._arch]
        multiple = max([int(getattr(n, "size_multiple", 1)) for n in nets] or [1])
        min_size = max([int(getattr(n, "min_size", 1)) for n in nets] or [1])
        b = self.cfg.batch_size
        return InputGeometry(multiple, min_size, f"--batch-size {b}" if b > 1 else "")

    # --- shared helpers -----------------------------------------------------------------
    def make_generator(self, key: str, arch: str, **kwargs: Any) -> nn.Module:
        """Build, initialise and register generator ``key`` (with the faster execution of
        ``img2img.nn.cpu.accelerate``); remembers how it was built."""
        net = accelerate(_built(build_generator, "--generator", arch, kwargs))
        init_weights(net, self.opt.init, self.opt.init_gain)
        self._arch[key] = (arch, kwargs)
        self.nets[key] = net.to(self.device)
        return self.nets[key]

    def make_discriminator(self, key: str, arch: str, **kwargs: Any) -> nn.Module:
        """Build, initialise and register discriminator ``key``."""
        net = _built(build_discriminator, "--discriminator", arch, kwargs)
        init_weights(net, self.opt.init, self.opt.init_gain)
        self.nets[key] = net.to(self.device)
        return self.nets[key]

    def image_generator_kwargs(self) -> dict[str, Any]:
        """Arguments of ``--generator`` from the image-translation options: the ones its
        builder takes (``upsample`` for the ResNets, ``num_downs`` for the generic U-Net)."""
        o = self.opt
        return generator_arguments(o.generator, ngf=o.ngf, norm=o.norm, dropout=o.dropout,
                                   upsample=o.upsample, num_downs=o.num_downs)

    def patch_discriminator_kwargs(self, in_channels: int = 3) -> dict[str, Any]:
        """Arguments of ``--discriminator`` (PatchGAN / PixelGAN) that its builder takes."""
        o = self.opt
        return discriminator_arguments(o.discriminator, in_channels=in_channels, ndf=o.ndf,
                                       norm=o.norm, n_layers=o.n_layers_d)

    def generator_meta(self, key: str, direction: str, **extra: Any) -> GeneratorMeta:
        """Checkpoint metadata for generator ``key``."""
        arch, kwargs = self._arch[key]
        return meta_for(self.nets[key], arch, kwargs, self.name, direction, **extra)

    def adam(self, *nets: nn.Module) -> torch.optim.Adam:
        """Adam over the nets' parameters with the configured lr and betas.

        Fused (one kernel for all parameters) where the device supports it: on CPU it
        takes a third of the time of the multi-tensor version (resnet_9blocks pair:
        16 ms vs 43 ms per step); otherwise the multi-tensor ``foreach`` version.
        """
        params = [p for net in nets for p in net.parameters()]
        kwargs = {"lr": self.opt.lr, "betas": (self.opt.beta1, self.opt.beta2)}
        try:
            return torch.optim.Adam(params, fused=True, **kwargs)
        except RuntimeError:  # device without a fused kernel
            return torch.optim.Adam(params, foreach=True, **kwargs)

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Send the forward passes of every trained network through ``wrap(net)`` (DDP).

        Attributes that hold a trained network (``self.g_a2b``, ...) are replaced by its
        wrapper; ``self.nets`` keeps the plain modules, so state dicts, exports and resume
        files are the same as in a single process.
        """
        trained = {id(p) for opt in self.optimizers.values()
                   for group in opt.param_groups for p in group["params"]}
        wrapped = {id(net): wrap(net) for net in self.nets.values()
                   if any(id(p) in trained for p in net.parameters())}
        for name, value in list(vars(self).items()):
            if id(value) in wrapped:
                setattr(self, name, wrapped[id(value)])

    def compile_networks(self) -> None:
        """``torch.compile`` every network in place (``--compile``); parameters, state_dict
        keys and checkpoints are unchanged."""
        for net in self.nets.values():
            net.compile()

    def optimize(self, name: str, loss: torch.Tensor) -> bool:
        """Backward ``loss`` and step optimiser ``name``; skip (and say so) if not finite.

        With ``--precision fp16`` (CUDA) the loss is scaled by a per-optimiser GradScaler.
        A NaN/inf loss leaves the weights untouched instead of corrupting the run.
        """
        opt = self.optimizers[name]
        if not bool(torch.isfinite(loss.detach())):
            opt.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            log.warning("non-finite %s loss (%s): step skipped (%d so far)", name,
                        float(loss.detach()), self.skipped_steps)
            return False
        if self.cfg.precision != "fp16":
            loss.backward()
            opt.step()
            return True
        scaler = self._scalers.setdefault(name, torch.amp.GradScaler(self.device.type))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return True

    def autocast(self):  # noqa: ANN201 - context manager
        """Autocast context for the configured precision."""
        return autocast(self.device, self.cfg.precision)

    @staticmethod
    def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
        """Freeze or unfreeze parameters (saves the discriminator's gradients in the G step)."""
        for net in nets:
            for p in net.parameters():
                p.requires_grad_(flag)

    def to_device(self, batch: dict[str, Any], *keys: str) -> list[torch.Tensor]:
        """Move the named batch tensors to the task's device."""
        return [batch[k].to(self.device, non_blocking=True) for k in keys]

    def train(self) -> None:
        """Put every network in training mode."""
        for net in self.nets.values():
            net.train()

    def extra_state(self) -> dict[str, Any]:
        """Method-specific resumable state (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers and extra state."""
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "scalers": {k: v.state_dict() for k, v in self._scalers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for k, sd in state.get("scalers", {}).items():
            self._scalers.setdefault(k, torch.amp.GradScaler(self.device.type)).load_state_dict(sd)
        self.load_extra_state(state.get("extra", {}))


def _built(build: Any, flag: str, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """``build(arch, **kwargs)``; an argument the architecture refuses comes from a flag, so it
    is a usage error naming the architecture."""
    try:
        return build(arch, **kwargs)
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag} {arch}: {exc}") from None
