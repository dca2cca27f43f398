"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one-sided unpaired translation
with a contrastive patch loss instead of a cycle.

One generator (``resnet_9blocks``, instance norm) maps A to B, one 70x70 PatchGAN judges
B, LSGAN. PatchNCE (:mod:`img2img.losses.patchnce`) ties each output patch to the input
patch at the same place: features of the real A and of G(A) from five encoder layers of the
generator, 256 shared random locations per layer, a two-layer MLP head of 256 units per
layer, InfoNCE at temperature 0.07 against the other patches of the same image.

- ``--task cut``: lambda_NCE 1 plus the identity term NCE(G(B), B), averaged with the main
  one; 200 + 200 epochs (the reference code's defaults: ``n_epochs`` 200, ``n_epochs_decay``
  200).
- ``--task fastcut``: lambda_NCE 10, no identity term, flip-equivariance (with probability
  1/2 a step translates the flipped images and flips the query features back before the
  loss); 150 + 50 epochs.

Both: Adam 2e-4 (0.5, 0.999) for G, D and the head, batch 1, load 286 / crop 256, xavier
initialisation (gain 0.02), discriminator step first with its loss halved. The head is built
with the task, its input widths read from the generator, and trained by the generator's
optimiser (the same Adam settings as the reference's separate one, so the same updates).

``--nce-layers`` takes the reference's indices into its (anti-aliased) ResNet's layer list
and maps them to the toolkit generator's named layers (:mod:`img2img.nn.resnet`):
0 = ``input`` (the padded input), 3 = ``stem``, 4 = ``down1`` and 8 = ``down2`` (the two
downsampling convs), 12 + k = ``block{k+1}`` (residual blocks); names are accepted too.
The toolkit's generator downsamples with stride-2 convs, as the reference does with
``--no_antialias``, so ``down1`` is at 1/2 resolution where the reference's layer 4 is not.

Only the A -> B generator is exported (``G_A2B.safetensors``; ``G_B2A`` with
``--direction BtoA``, which is how to train the other direction).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.checkpoint import GeneratorMeta
from img2img.config import TrainConfig
from img2img.data.unpaired import UnpairedDataset
from img2img.errors import UsageError
from img2img.losses import GANLoss
from img2img.losses.patchnce import PatchHead, patch_nce
from img2img.nn import init_weights
from img2img.nn.init import INIT_KINDS
from img2img.options import PAIR, option, positive_float, positive_int
from img2img.tasks.base import BenchSpec, Task
from img2img.tasks.options import ImageTranslationOptions
from img2img.tasks.validation import ValSet, unpaired_sets

# The reference's layer indices with an equivalent here (before 12: the encoder's head).
REFERENCE_LAYERS = {0: "input", 3: "stem", 4: "down1", 8: "down2"}
FIRST_BLOCK = 12


def _layer_list(text: str) -> str:
    """argparse type of ``--nce-layers``: comma-separated indices or names."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected layers like 0,4,8,12,16, got {text!r}")
    return ",".join(items)


@dataclass
class CUTOptions(ImageTranslationOptions):
    """CUT's settings (the reference's ``--CUT_mode CUT``)."""

    init: str = option("xavier", "weight initialisation", choices=INIT_KINDS)
    lambda_nce: float = option(1.0, "weight of the PatchNCE loss", type=float)
    nce_layers: str = option("0,4,8,12,16", "generator layers PatchNCE compares: the "
                             "reference's indices (0 input, 3 stem, 4 and 8 the downsampling "
                             "convs, 12+k residual block k+1) or names (input, stem, down1, "
                             "down2, block1, ...)", type=_layer_list)
    nce_idt: bool = option(True, "identity PatchNCE term on B: G(B) against B", boolean=PAIR)
    num_patches: int = option(256, "patch locations sampled per layer", type=positive_int)
    nce_t: float = option(0.07, "InfoNCE temperature", type=positive_float)
    netf_nc: int = option(256, "units of the per-layer two-layer MLP head", type=positive_int)
    flip_equivariance: bool = option(False, "translate horizontally flipped images half of "
                                            "the time and flip their features back",
                                     boolean=PAIR)


@dataclass
class FastCUTOptions(CUTOptions):
    """FastCUT's settings (the reference's ``--CUT_mode FastCUT``)."""

    lambda_nce: float = option(10.0, "weight of the PatchNCE loss", type=float)
    nce_idt: bool = option(False, "identity PatchNCE term on B: G(B) against B", boolean=PAIR)
    flip_equivariance: bool = option(True, "translate horizontally flipped images half of "
                                           "the time and flip their features back",
                                     boolean=PAIR)


def nce_layer_names(generator: nn.Module, spec: str) -> list[str]:
    """The generator's feature-layer names for ``--nce-layers spec`` (see module doc)."""
    available = getattr(generator, "feature_layers", None)
    if not available:
        raise UsageError(f"--nce-layers needs a generator with named encoder layers (the "
                         f"resnet ones); {type(generator).__name__} has none")
    names = []
    for item in spec.split(","):
        if item.isdigit():
            i = int(item)
            name = REFERENCE_LAYERS.get(i, f"block{i - FIRST_BLOCK + 1}" if i >= FIRST_BLOCK
                                        else "")
        else:
            name = item
        if name not in available:
            blocks = sum(n.startswith("block") for n in available)
            raise UsageError(
                f"--nce-layers {spec}: {item} is not a layer of this generator; use the "
                f"indices {', '.join(map(str, REFERENCE_LAYERS))} or {FIRST_BLOCK}-"
                f"{FIRST_BLOCK + blocks - 1}, or the names {', '.join(available)}")
        names.append(name)
    return names


class CUTTask(Task):
    """Unpaired one-sided translation A -> B with PatchNCE."""

    name = "cut"
    Options = CUTOptions
    default_epochs = (200, 200)

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        o: CUTOptions = self.opt
        self.g = self.make_generator("G", o.generator, **self.image_generator_kwargs())
        self.layers = nce_layer_names(self.g, o.nce_layers)
        channels = [self.g.feature_layers[n].channels for n in self.layers]
        head = init_weights(PatchHead(channels, o.netf_nc), o.init, o.init_gain)
        self.nets["F"] = self.head = head.to(device)
        self.d = self.make_discriminator("D", o.discriminator,
                                         **self.patch_discriminator_kwargs())
        self.optimizers["G"] = self.adam(self.g, self.head)
        self.optimizers["D"] = self.adam(self.d)
        self.gan_loss = GANLoss(o.gan_mode)

    @classmethod
    def benchmark_specs(cls, quick: bool) -> list[BenchSpec]:
        s, w = (64, 16) if quick else (256, 64)
        o = cls.Options()
        idt = "with" if o.nce_idt else "no"
        return [BenchSpec(cls.name, {"task": cls.name, "crop_size": s, "ngf": w, "ndf": w},
                          (1, 3, s, s), (1, 3, s, s),
                          f"resnet_9blocks + 70x70 PatchGAN + PatchNCE ({o.nce_layers}, "
                          f"{o.num_patches} patches, {idt} identity term), {s}x{s}, batch 1, "
                          f"ngf {w}")]

    def build_dataset(self) -> Dataset:
        c, o = self.cfg, self.opt
        return UnpairedDataset(c.data, "train", o.direction, o.preprocess, o.load_size,
                               o.crop_size, flip=not c.no_flip, seed=c.seed,
                               multiple=self.input_geometry().multiple)

    def _nce(self, source: torch.Tensor, translated: torch.Tensor, flipped: bool
             ) -> torch.Tensor:
        """PatchNCE of ``translated`` (made from ``source``, flipped if ``flipped``)."""
        o = self.opt
        queries = self.g(translated, features=self.layers)
        if flipped:
            queries = [q.flip(3) for q in queries]
        with torch.no_grad():  # the keys are targets only
            keys = self.g(source, features=self.layers)
        return patch_nce(self.head, queries, keys, o.num_patches, o.nce_t)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        real_a, real_b = self.to_device(batch, "A", "B")
        o = self.opt
        n = real_a.shape[0]
        real = torch.cat([real_a, real_b]) if o.nce_idt else real_a
        flipped = o.flip_equivariance and bool(torch.rand(()) < 0.5)
        if flipped:
            real = real.flip(3)
        with self.autocast():
            fake = self.g(real)
        fake_b, idt_b = fake[:n], fake[n:]
        # discriminator step
        self.set_requires_grad([self.d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_fake = self.gan_loss(self.d(fake_b.detach()), False)
            loss_real = self.gan_loss(self.d(real_b), True)
            loss_d = 0.5 * (loss_fake + loss_real)
        self.optimize("D", loss_d)
        # generator and head step (discriminator frozen)
        self.set_requires_grad([self.d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            parts = {"G_GAN": self.gan_loss(self.d(fake_b), True, for_discriminator=False)}
            nce = torch.zeros((), device=self.device)
            if o.lambda_nce > 0:
                parts["NCE"] = nce = o.lambda_nce * self._nce(real_a, fake_b, flipped)
                if o.nce_idt:
                    parts["NCE_Y"] = o.lambda_nce * self._nce(real_b, idt_b, flipped)
                    nce = 0.5 * (parts["NCE"] + parts["NCE_Y"])
            loss_g = parts["G_GAN"] + nce
        self.optimize("G", loss_g)
        out = {k: float(v.detach()) for k, v in parts.items()}
        out.update(D_real=float(loss_real.detach()), D_fake=float(loss_fake.detach()))
        return out

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        real_a, real_b = self.to_device(batch, "A", "B")
        return [torch.cat([real_a, self.g(real_a)], 3), torch.cat([real_b, self.g(real_b)], 3)]

    def validation_sets(self, root: str | None, limit: int) -> list[ValSet]:
        """See :func:`img2img.tasks.validation.unpaired_sets`."""
        return unpaired_sets(self.exports(), Path(root or self.cfg.data), limit)

    def exports(self) -> dict[str, tuple[nn.Module, GeneratorMeta]]:
        name = "G_B2A" if self.opt.direction == "BtoA" else "G_A2B"
        return {f"{name}.safetensors": (self.g, self.generator_meta("G", name[2:]))}


class FastCUTTask(CUTTask):
    """FastCUT: CUT without the identity pass, with flip-equivariance."""

    name = "fastcut"
    Options = FastCUTOptions
    default_epochs = (150, 50)
