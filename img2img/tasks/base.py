"""What every training method provides to the shared trainer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta, meta_for
from img2img.config import TrainConfig
from img2img.data.training_check import InputGeometry
from img2img.errors import UsageError
from img2img.nn import build_discriminator, build_generator, init_weights
from img2img.runtime import autocast
from img2img.tasks.validation import ValSet

log = logging.getLogger(__name__)

# Published settings shared by the CycleGAN and pix2pix papers.
IMAGE_TRANSLATION_DEFAULTS: dict[str, Any] = {
    "lr": 2e-4, "beta1": 0.5, "load_size": 286, "crop_size": 256,
    "discriminator": "patchgan", "lambda_perceptual": 0.0,
}


class Task:
    """Base class: owns the networks and optimisers of one method and its train step.

    Subclasses fill ``self.nets`` and ``self.optimizers`` in ``__init__`` and implement
    :meth:`build_dataset`, :meth:`train_step`, :meth:`sample_rows` and :meth:`exports`.
    The trainer handles the loop, schedules, logging and checkpoints.
    """

    name = "base"
    # Published defaults for the config fields left as None on the command line.
    defaults: dict[str, Any] = {}

    @classmethod
    def apply_defaults(cls, cfg: TrainConfig) -> TrainConfig:
        """Fill the fields the user did not set with this method's published defaults."""
        defaulted = set()
        for key, value in cls.defaults.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
                defaulted.add(key)
        if "load_size" in defaulted and cfg.crop_size and cfg.load_size < cfg.crop_size:
            cfg.load_size = cfg.crop_size * 286 // 256  # keep the published load/crop ratio
        return cfg

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
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
        """Build, initialise and register generator ``key``; remembers how it was built."""
        net = _built(build_generator, "--generator", arch, kwargs)
        init_weights(net, self.cfg.init, self.cfg.init_gain)
        self._arch[key] = (arch, kwargs)
        self.nets[key] = net.to(self.device)
        return self.nets[key]

    def make_discriminator(self, key: str, arch: str, **kwargs: Any) -> nn.Module:
        """Build, initialise and register discriminator ``key``."""
        net = _built(build_discriminator, "--discriminator", arch, kwargs)
        init_weights(net, self.cfg.init, self.cfg.init_gain)
        self.nets[key] = net.to(self.device)
        return self.nets[key]

    def image_generator_kwargs(self) -> dict[str, Any]:
        """Generator arguments for the image-to-image (ResNet / U-Net) architectures."""
        c = self.cfg
        kwargs: dict[str, Any] = {"ngf": c.ngf, "norm": c.norm, "dropout": c.dropout}
        if c.generator.startswith("resnet"):
            kwargs["upsample"] = c.upsample
        if c.generator == "unet":
            kwargs["num_downs"] = c.num_downs
        return kwargs

    def patch_discriminator_kwargs(self, in_channels: int = 3) -> dict[str, Any]:
        """Discriminator arguments for PatchGAN / PixelGAN."""
        c = self.cfg
        kwargs: dict[str, Any] = {"in_channels": in_channels, "ndf": c.ndf, "norm": c.norm}
        if c.discriminator == "patchgan":
            kwargs["n_layers"] = c.n_layers_d
        return kwargs

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
        kwargs = {"lr": self.cfg.lr, "betas": (self.cfg.beta1, self.cfg.beta2)}
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
