"""SRGAN (Ledig et al., 2017): super-resolution in two phases.

- ``--phase psnr``: the SRResNet generator alone, trained with a pixel loss (MSE or L1).
- ``--phase gan``: started from a phase-1 generator (``--init-from G.safetensors``), the
  generator minimises the VGG54 perceptual loss + 1e-3 x the adversarial loss (plus an
  optional pixel term) against the SRGAN discriminator. An exponential moving average of
  the generator's weights is kept, and that average is what gets exported.

Published optimiser settings: Adam lr 1e-4, betas (0.9, 0.999); 96x96 HR crops. The
exported ``G.safetensors`` records the scale, so the translator produces scale x outputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta, load_generator
from img2img.config import TrainConfig
from img2img.data.sr import SRDataset, validation_pair
from img2img.errors import UsageError
from img2img.losses import GANLoss
from img2img.losses.gan import GAN_MODES
from img2img.nn.norm import NORM_KINDS
from img2img.options import non_negative_int, option, positive_float, positive_int
from img2img.tasks.base import BenchSpec, Task
from img2img.tasks.options import TaskOptions
from img2img.tasks.validation import ValSet, spread


@dataclass
class SRGANOptions(TaskOptions):
    """SRGAN's settings: SRResNet x4 (16 blocks), the SRGAN discriminator, 96x96 crops."""

    lr: float = option(1e-4, "Adam learning rate", type=positive_float)
    beta1: float = option(0.9, "Adam beta1", type=float)
    crop_size: int = option(96, "training crop (the high-resolution crop)", type=positive_int)
    generator: str = option("srresnet", "super-resolution generator")
    discriminator: str = option("srgan", "the discriminator of --phase gan")
    ngf: int = option(64, "generator channels", type=positive_int)
    ndf: int = option(64, "discriminator width", type=positive_int)
    norm: str = option("batch", "normalisation layers", choices=NORM_KINDS)
    gan_mode: str = option("vanilla", "adversarial loss", choices=GAN_MODES)
    scale: int = option(4, "upscaling factor", type=int, choices=(2, 4, 8))
    phase: str = option("psnr", "psnr: pixel-loss pre-training; gan: perceptual + "
                                "adversarial", choices=("psnr", "gan"))
    sr_residual: bool = option(False, "learn the residual over bicubic upsampling (faster "
                                      "convergence)")
    n_blocks: int = option(16, "SRResNet residual blocks", type=non_negative_int)
    init_from: str | None = option(None, "generator .safetensors to start from (phase gan)")
    pixel_loss: str = option("mse", "pixel loss", choices=("mse", "l1"))
    lambda_adv: float = option(1e-3, "weight of the adversarial loss", type=float)
    ema_decay: float = option(0.999, "decay of the exported moving average of the "
                                     "generator's weights (phase gan)", type=float)
    degrade: list[str] = option([], "random degradations of the low-resolution input",
                                nargs="*", choices=("blur", "noise", "jpeg"))
    lambda_perceptual: float = option(1.0, "weight of the VGG54 perceptual loss (phase gan)",
                                      type=float)
    lambda_pixel: float = option(0.0, "weight of a pixel loss in phase gan (0 as published)",
                                 type=float)
    vgg_weights: str | None = option(None, "VGG19 weights file", shown="the torch hub cache",
                                     may_change=True)


def _random_vgg(task: Task) -> None:
    """A randomly initialised VGG19 for the perceptual term (timing needs no weights)."""
    from img2img.losses.perceptual import PerceptualLoss

    task.perceptual = PerceptualLoss(pretrained=False).to(task.device)
    task.opt.lambda_perceptual = 1.0


class SRGANTask(Task):
    """Super-resolution by ``--scale``: A = low resolution, B = high resolution."""

    name = "srgan"
    Options = SRGANOptions
    default_val_metric = "psnr"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        o: SRGANOptions = self.opt
        if o.phase not in ("psnr", "gan"):
            raise UsageError(f"--phase must be psnr or gan, not {o.phase!r}")
        self.g = self.make_generator("G", o.generator, scale=o.scale, channels=o.ngf,
                                     n_blocks=o.n_blocks, norm=o.norm, residual=o.sr_residual)
        if o.init_from:
            self._init_from(o.init_from)
        self.optimizers["G"] = self.adam(self.g)
        self.pixel = F.mse_loss if o.pixel_loss == "mse" else F.l1_loss
        self.gan = o.phase == "gan"
        if self.gan:
            self.d = self.make_discriminator("D", o.discriminator, ndf=o.ndf, norm=o.norm)
            self.optimizers["D"] = self.adam(self.d)
            self.gan_loss = GANLoss(o.gan_mode)
            self.perceptual: nn.Module | None = None
            if o.lambda_perceptual > 0:
                from img2img.losses.perceptual import PerceptualLoss

                self.perceptual = PerceptualLoss(weights=o.vgg_weights).to(device)
            self.nets["G_ema"] = self.g_ema = copy.deepcopy(self.g).eval()
            for p in self.g_ema.parameters():
                p.requires_grad_(False)

    @classmethod
    def benchmark_specs(cls, quick: bool) -> list[BenchSpec]:
        w, hr, n = (16, 32, 4) if quick else (64, 96, 16)
        base = {"task": "srgan", "crop_size": hr, "batch_size": n, "scale": 4, "ngf": w,
                "ndf": w}
        shapes = ((n, 3, hr // 4, hr // 4), (n, 3, hr, hr))
        what = f"srresnet x4 ({w} ch, 16 blocks), {hr}x{hr} HR crops, batch {n}"
        return [
            BenchSpec("srgan-psnr", {**base, "phase": "psnr"}, *shapes, what + ", MSE"),
            BenchSpec("srgan-gan", {**base, "phase": "gan", "lambda_perceptual": 0.0}, *shapes,
                      what + " + SRGAN D + VGG54 loss", prepare=_random_vgg,
                      notes=["VGG19 randomly initialised (pretrained weights not needed for "
                             "timing; FLOPs are the same)"]),
        ]

    def _init_from(self, path: str) -> None:
        model, meta = load_generator(path)
        if meta.arch != self.opt.generator or meta.scale != self.opt.scale:
            raise UsageError(f"{path}: is a {meta.arch} x{meta.scale} generator; this run "
                             f"trains {self.opt.generator} x{self.opt.scale}")
        try:
            self.g.load_state_dict(model.state_dict())
        except RuntimeError as exc:
            raise UsageError(f"{path}: weights do not fit this generator ({exc})") from exc

    def build_dataset(self) -> Dataset:
        c, o = self.cfg, self.opt
        return SRDataset(c.data, o.scale, o.crop_size, o.degrade, augment=not c.no_flip,
                         seed=c.seed)

    def train(self) -> None:
        super().train()
        if self.gan:
            self.g_ema.eval()

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.opt.ema_decay
        for pe, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            be.copy_(b)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        lr, hr = self.to_device(batch, "A", "B")
        c = self.opt
        if not self.gan:
            self.optimizers["G"].zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.pixel(self.g(lr).float(), hr)
            self.optimize("G", loss)
            return {"pixel": float(loss.detach())}
        with self.autocast():
            sr = self.g(lr)
        # discriminator step
        self.set_requires_grad([self.d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_real = self.gan_loss(self.d(hr), True)
            loss_fake = self.gan_loss(self.d(sr.detach()), False)
            loss_d = loss_real + loss_fake
        self.optimize("D", loss_d)
        # generator step
        self.set_requires_grad([self.d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            parts = {"adv": c.lambda_adv * self.gan_loss(self.d(sr), True,
                                                         for_discriminator=False)}
            if self.perceptual is not None:
                parts["perceptual"] = c.lambda_perceptual * self.perceptual(sr, hr)
            if c.lambda_pixel:
                parts["pixel"] = c.lambda_pixel * self.pixel(sr.float(), hr)
            loss_g = sum(parts.values())
        self.optimize("G", loss_g)
        self._update_ema()
        out = {k: float(v.detach()) for k, v in parts.items()}
        out.update(D_real=float(loss_real.detach()), D_fake=float(loss_fake.detach()))
        return out

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        lr, hr = self.to_device(batch, "A", "B")
        net = self.g_ema if self.gan else self.g
        was_training = net.training
        net.eval()
        sr = net(lr).clamp(-1, 1)
        net.train(was_training)
        up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False)
        return [torch.cat([up.clamp(-1, 1), sr, hr], 3)]

    def exports(self) -> dict[str, tuple[nn.Module, GeneratorMeta]]:
        net = self.g_ema if self.gan else self.g
        meta = self.generator_meta("G", "A2B", phase=self.opt.phase)
        return {"G.safetensors": (net, meta)}

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """``--val-data``: whole high-resolution images (or ``HR`` + ``LR_x{scale}`` pairs),
        their inputs made as in training; PSNR/SSIM on Y with a border of ``scale`` pixels,
        the SR papers' protocol."""
        s = self.opt.scale
        if not root:
            raise UsageError(f"--task srgan --val-every needs --val-data DIR: high-resolution "
                             f"validation images (or DIR/HR + DIR/LR_x{s})")
        base = Path(root)
        try:
            pairs = spread(SRDataset(base, s, crop_size=s, augment=False).pairs, limit)
        except (FileNotFoundError, UsageError) as exc:
            raise UsageError(f"--val-data {exc}") from None
        names = [hr.relative_to(base).as_posix() for hr, _ in pairs]
        return [ValSet(export="G.safetensors", label="", names=names,
                       load=lambda i: validation_pair(*pairs[i], s), source=str(base),
                       paired=True, ref_source=f"the images in {base}",
                       ref_files=tuple(p for pair in pairs for p in pair if p),
                       y_channel=True, crop_border=s)]
