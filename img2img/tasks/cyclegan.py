"""CycleGAN (Zhu et al., 2017): two generators, two PatchGANs, adversarial + cycle + identity.

Defaults are the published ones: lambda 10 for each cycle, identity weight 0.5 (times
lambda), a pool of 50 past fakes, LSGAN, Adam 2e-4 (0.5, 0.999), generator step then
discriminator step with the discriminator loss halved.

Naming: ``G_A2B`` maps domain A to B; ``D_B`` judges whether an image is a real B.
With ``--direction BtoA`` the folders swap roles, and the exported file names follow the
folders (the network that maps folder B to folder A is written as ``G_B2A``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta
from img2img.config import TrainConfig
from img2img.data.training_check import InputGeometry
from img2img.data.unpaired import UnpairedDataset
from img2img.losses import GANLoss, cycle_loss, discriminator_loss, identity_loss
from img2img.options import non_negative_int, option
from img2img.tasks.base import BenchSpec, Task
from img2img.tasks.image_pool import ImagePool
from img2img.tasks.options import ImageTranslationOptions
from img2img.tasks.validation import ValSet, unpaired_sets


@dataclass
class CycleGANOptions(ImageTranslationOptions):
    """CycleGAN's settings: resnet_9blocks, instance norm, LSGAN (the inherited defaults)."""

    lambda_a: float = option(10.0, "weight of the A -> B -> A cycle loss", type=float)
    lambda_b: float = option(10.0, "weight of the B -> A -> B cycle loss", type=float)
    lambda_identity: float = option(0.5, "weight of the identity loss, times the cycle "
                                         "weight", type=float)
    pool_size: int = option(50, "fake images kept to train the discriminators (0: none)",
                            type=non_negative_int)


def unpaired_benchmark(task: str, quick: bool) -> list[BenchSpec]:
    """The published unpaired configuration to time: resnet_9blocks + 70x70 PatchGAN at
    256x256, batch 1 (64x64, ngf 16 with ``quick``)."""
    s, w = (64, 16) if quick else (256, 64)
    return [BenchSpec(task, {"task": task, "crop_size": s, "ngf": w, "ndf": w},
                      (1, 3, s, s), (1, 3, s, s),
                      f"resnet_9blocks + 70x70 PatchGAN, {s}x{s}, batch 1, ngf {w}")]


class CycleGANTask(Task):
    """Unpaired translation between domains A and B."""

    name = "cyclegan"
    Options = CycleGANOptions

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        o: CycleGANOptions = self.opt
        g_kwargs = self.image_generator_kwargs()
        self.g_a2b = self.make_generator("G_A2B", o.generator, **g_kwargs)
        self.g_b2a = self.make_generator("G_B2A", o.generator, **g_kwargs)
        d_kwargs = self.patch_discriminator_kwargs()
        self.d_a = self.make_discriminator("D_A", o.discriminator, **d_kwargs)
        self.d_b = self.make_discriminator("D_B", o.discriminator, **d_kwargs)
        self.optimizers["G"] = self.adam(self.g_a2b, self.g_b2a)
        self.optimizers["D"] = self.adam(self.d_a, self.d_b)
        self.gan_loss = GANLoss(o.gan_mode)
        # one pool per process (under torchrun each rank draws its own history)
        self.pool_a = ImagePool(o.pool_size, seed=cfg.seed + 1 + 1000 * self.rank)
        self.pool_b = ImagePool(o.pool_size, seed=cfg.seed + 2 + 1000 * self.rank)

    @classmethod
    def benchmark_specs(cls, quick: bool) -> list[BenchSpec]:
        return unpaired_benchmark(cls.name, quick)

    def build_dataset(self) -> Dataset:
        c, o = self.cfg, self.opt
        return UnpairedDataset(c.data, "train", o.direction, o.preprocess, o.load_size,
                               o.crop_size, flip=not c.no_flip, seed=c.seed,
                               multiple=self.input_geometry().multiple)

    def input_geometry(self) -> InputGeometry:
        geometry = super().input_geometry()
        if not geometry.uniform and self.opt.pool_size > 0:  # the pool batches past fakes
            geometry = replace(geometry, uniform=f"the image pool (--pool-size "
                                                 f"{self.opt.pool_size})")
        return geometry

    def _generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.opt
        fake_b = self.g_a2b(real_a)
        fake_a = self.g_b2a(real_b)
        parts = {
            "G_A2B": self.gan_loss(self.d_b(fake_b), True, for_discriminator=False),
            "G_B2A": self.gan_loss(self.d_a(fake_a), True, for_discriminator=False),
            "cycle_A": cycle_loss(self.g_b2a(fake_b), real_a) * c.lambda_a,
            "cycle_B": cycle_loss(self.g_a2b(fake_a), real_b) * c.lambda_b,
        }
        if c.lambda_identity > 0:
            parts["idt_A"] = identity_loss(self.g_b2a(real_a), real_a) * c.lambda_a * \
                c.lambda_identity
            parts["idt_B"] = identity_loss(self.g_a2b(real_b), real_b) * c.lambda_b * \
                c.lambda_identity
        self._fakes = (fake_a.detach(), fake_b.detach())
        return sum(parts.values()), parts  # type: ignore[return-value]

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        real_a, real_b = self.to_device(batch, "A", "B")
        discriminators = [self.d_a, self.d_b]
        # generator step (discriminators frozen)
        self.set_requires_grad(discriminators, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_g, parts = self._generator_losses(real_a, real_b)
        self.optimize("G", loss_g)
        # discriminator step on pooled fakes, each loss halved
        self.set_requires_grad(discriminators, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        fake_a, fake_b = self._fakes
        with self.autocast():
            loss_da, _ = discriminator_loss(self.gan_loss, self.d_a, real_a,
                                            self.pool_a.query(fake_a))
            loss_db, _ = discriminator_loss(self.gan_loss, self.d_b, real_b,
                                            self.pool_b.query(fake_b))
            loss_d = 0.5 * (loss_da + loss_db)
        self.optimize("D", loss_d)
        out = {k: float(v.detach()) for k, v in parts.items()}
        out.update(D_A=0.5 * float(loss_da.detach()), D_B=0.5 * float(loss_db.detach()))
        return out

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        real_a, real_b = self.to_device(batch, "A", "B")
        fake_b, fake_a = self.g_a2b(real_a), self.g_b2a(real_b)
        return [torch.cat([real_a, fake_b, self.g_b2a(fake_b)], 3),
                torch.cat([real_b, fake_a, self.g_a2b(fake_a)], 3)]

    def exports(self) -> dict[str, tuple[nn.Module, GeneratorMeta]]:
        swap = self.opt.direction == "BtoA"
        names = ("G_B2A", "G_A2B") if swap else ("G_A2B", "G_B2A")
        return {
            f"{names[0]}.safetensors": (self.g_a2b, self.generator_meta("G_A2B", names[0][2:])),
            f"{names[1]}.safetensors": (self.g_b2a, self.generator_meta("G_B2A", names[1][2:])),
        }

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """See :func:`img2img.tasks.validation.unpaired_sets`."""
        return unpaired_sets(self.exports(), Path(root or self.cfg.data), limit)

    def extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)
