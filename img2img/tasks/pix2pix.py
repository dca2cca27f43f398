"""pix2pix (Isola et al., 2017): paired translation with a U-Net and a conditional PatchGAN.

Published defaults: ``unet_256`` generator with batch norm and dropout, 70x70 PatchGAN that
sees A and B concatenated, vanilla GAN loss, lambda L1 = 100, Adam 2e-4 (0.5, 0.999),
discriminator step then generator step with the discriminator loss halved. An optional
VGG19 perceptual term (``--lambda-perceptual``) adds to L1.

The exported generator is ``G_A2B.safetensors`` (``G_B2A`` with ``--direction BtoA``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta
from img2img.config import TrainConfig
from img2img.data.paired import PairedDataset
from img2img.errors import UsageError
from img2img.losses import GANLoss, l1_loss
from img2img.losses.gan import GAN_MODES
from img2img.nn.norm import NORM_KINDS
from img2img.options import PAIR, option
from img2img.tasks.base import BenchSpec, Task
from img2img.tasks.options import ImageTranslationOptions
from img2img.tasks.validation import ValSet, spread


@dataclass
class Pix2PixOptions(ImageTranslationOptions):
    """pix2pix's settings: unet_256 with batch norm and dropout, vanilla GAN, L1."""

    generator: str = option("unet_256",
                            "unet_256|unet_128|unet|resnet_9blocks|resnet_6blocks|resnet")
    norm: str = option("batch", "normalisation layers", choices=NORM_KINDS)
    dropout: bool = option(True, "dropout in the generator", boolean=PAIR)
    gan_mode: str = option("vanilla", "adversarial loss", choices=GAN_MODES)
    lambda_l1: float = option(100.0, "weight of the L1 loss", type=float)
    lambda_perceptual: float = option(0.0, "weight of the VGG19 perceptual loss", type=float)
    vgg_weights: str | None = option(None, "VGG19 weights file", shown="the torch hub cache",
                                     may_change=True)


class Pix2PixTask(Task):
    """Paired translation A -> B."""

    name = "pix2pix"
    Options = Pix2PixOptions

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        o: Pix2PixOptions = self.opt
        self.g = self.make_generator("G", o.generator, **self.image_generator_kwargs())
        self.d = self.make_discriminator("D", o.discriminator,
                                         **self.patch_discriminator_kwargs(in_channels=6))
        self.optimizers["G"] = self.adam(self.g)
        self.optimizers["D"] = self.adam(self.d)
        self.gan_loss = GANLoss(o.gan_mode)
        self.perceptual: nn.Module | None = None
        if o.lambda_perceptual > 0:
            from img2img.losses.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(weights=o.vgg_weights).to(device)

    @classmethod
    def benchmark_specs(cls, quick: bool) -> list[BenchSpec]:
        s, w = (64, 16) if quick else (256, 64)
        gen = {"generator": "unet", "num_downs": 6} if quick else {"generator": "unet_256"}
        name = "unet (6 downs)" if quick else "unet_256"
        return [BenchSpec("pix2pix", {"task": "pix2pix", "crop_size": s, "ngf": w, "ndf": w,
                                      **gen},
                          (1, 3, s, s), (1, 3, s, s),
                          f"{name} + 70x70 PatchGAN, {s}x{s}, batch 1, ngf {w}")]

    def build_dataset(self) -> Dataset:
        c, o = self.cfg, self.opt
        return PairedDataset(c.data, "train", o.direction, o.preprocess, o.load_size,
                             o.crop_size, flip=not c.no_flip, seed=c.seed,
                             multiple=self.input_geometry().multiple)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        real_a, real_b = self.to_device(batch, "A", "B")
        c = self.opt
        with self.autocast():
            fake_b = self.g(real_a)
        # discriminator step on (A, B) pairs
        self.set_requires_grad([self.d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_fake = self.gan_loss(self.d(torch.cat([real_a, fake_b.detach()], 1)), False)
            loss_real = self.gan_loss(self.d(torch.cat([real_a, real_b], 1)), True)
            loss_d = 0.5 * (loss_fake + loss_real)
        self.optimize("D", loss_d)
        # generator step (discriminator frozen)
        self.set_requires_grad([self.d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            parts = {
                "G_GAN": self.gan_loss(self.d(torch.cat([real_a, fake_b], 1)), True,
                                       for_discriminator=False),
                "G_L1": l1_loss(fake_b, real_b) * c.lambda_l1,
            }
            if self.perceptual is not None:
                parts["G_perc"] = self.perceptual(fake_b, real_b) * c.lambda_perceptual
            loss_g = sum(parts.values())
        self.optimize("G", loss_g)
        out = {k: float(v.detach()) for k, v in parts.items()}
        out.update(D_real=float(loss_real.detach()), D_fake=float(loss_fake.detach()))
        return out

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        real_a, real_b = self.to_device(batch, "A", "B")
        return [torch.cat([real_a, self.g(real_a), real_b], 3)]

    def exports(self) -> dict[str, tuple[nn.Module, GeneratorMeta]]:
        name = "G_B2A" if self.opt.direction == "BtoA" else "G_A2B"
        return {f"{name}.safetensors": (self.g, self.generator_meta("G", name[2:]))}

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """The test pairs (``ROOT/test`` A|B images, or ``ROOT/testA`` + ``ROOT/testB``; ``ROOT``
        is ``--val-data`` or ``--data``): each output against its target (PSNR/SSIM on all
        channels) and the outputs against the targets as a set (FID/KID)."""
        c = self.cfg
        base = Path(root or c.data)
        try:
            data = PairedDataset(base, "test", self.opt.direction, "none", flip=False)
        except (FileNotFoundError, UsageError) as exc:
            raise UsageError(f"--val-every needs the test pairs: {exc}") from None
        picked = spread(range(len(data)), limit)
        firsts = [data.items[k][0] for k in picked]
        (name,) = self.exports()
        return [ValSet(export=name, label=name[2:5],
                       names=[p.relative_to(base).as_posix() for p in firsts],
                       load=lambda i: data.read_pair(picked[i]), source=str(base),
                       paired=True, ref_source=f"the targets in {base}",
                       ref_files=tuple(p for k in picked for p in data.items[k] if p))]
