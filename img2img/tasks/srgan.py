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
from img2img.tasks.base import Task
from img2img.tasks.validation import ValSet, spread


class SRGANTask(Task):
    """Super-resolution by ``cfg.scale``: A = low resolution, B = high resolution."""

    name = "srgan"
    defaults = {"generator": "srresnet", "norm": "batch", "dropout": False,
                "gan_mode": "vanilla", "pool_size": 0, "lr": 1e-4, "beta1": 0.9,
                "load_size": 96, "crop_size": 96, "discriminator": "srgan",
                "lambda_perceptual": 1.0, "lambda_pixel": 0.0}
    default_val_metric = "psnr"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        if cfg.phase not in ("psnr", "gan"):
            raise UsageError(f"--phase must be psnr or gan, not {cfg.phase!r}")
        self.g = self.make_generator("G", cfg.generator, scale=cfg.scale, channels=cfg.ngf,
                                     n_blocks=cfg.n_blocks, norm=cfg.norm,
                                     residual=cfg.sr_residual)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.optimizers["G"] = self.adam(self.g)
        self.pixel = F.mse_loss if cfg.pixel_loss == "mse" else F.l1_loss
        self.gan = cfg.phase == "gan"
        if self.gan:
            self.d = self.make_discriminator("D", cfg.discriminator, ndf=cfg.ndf, norm=cfg.norm)
            self.optimizers["D"] = self.adam(self.d)
            self.gan_loss = GANLoss(cfg.gan_mode)
            self.perceptual: nn.Module | None = None
            if cfg.lambda_perceptual > 0:
                from img2img.losses.perceptual import PerceptualLoss

                self.perceptual = PerceptualLoss(weights=cfg.vgg_weights).to(device)
            self.nets["G_ema"] = self.g_ema = copy.deepcopy(self.g).eval()
            for p in self.g_ema.parameters():
                p.requires_grad_(False)

    def _init_from(self, path: str) -> None:
        model, meta = load_generator(path)
        if meta.arch != self.cfg.generator or meta.scale != self.cfg.scale:
            raise UsageError(f"{path}: is a {meta.arch} x{meta.scale} generator; this run "
                             f"trains {self.cfg.generator} x{self.cfg.scale}")
        try:
            self.g.load_state_dict(model.state_dict())
        except RuntimeError as exc:
            raise UsageError(f"{path}: weights do not fit this generator ({exc})") from exc

    def build_dataset(self) -> Dataset:
        c = self.cfg
        return SRDataset(c.data, c.scale, c.crop_size, c.degrade, augment=not c.no_flip,
                         seed=c.seed)

    def train(self) -> None:
        super().train()
        if self.gan:
            self.g_ema.eval()

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.ema_decay
        for pe, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            be.copy_(b)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        lr, hr = self.to_device(batch, "A", "B")
        c = self.cfg
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
        meta = self.generator_meta("G", "A2B", phase=self.cfg.phase)
        return {"G.safetensors": (net, meta)}

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """``--val-data``: whole high-resolution images (or ``HR`` + ``LR_x{scale}`` pairs),
        their inputs made as in training; PSNR/SSIM on Y with a border of ``scale`` pixels,
        the SR papers' protocol."""
        s = self.cfg.scale
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
