"""Option dataclasses several methods build on; each task file derives its own from these.

A task's ``Options`` dataclass holds its published defaults and help texts; the command
line (``img2img train --task NAME``) is made from it (:mod:`img2img.options`). A subclass
changes a default by declaring the field again.
"""

from __future__ import annotations

from dataclasses import dataclass

from img2img.losses.gan import GAN_MODES
from img2img.nn.init import INIT_KINDS
from img2img.nn.norm import NORM_KINDS
from img2img.nn.resnet import UPSAMPLE_KINDS
from img2img.options import PAIR, option, positive_float, positive_int


@dataclass
class TaskOptions:
    """What every method has: its optimiser and the weight initialisation of its nets."""

    lr: float = option(2e-4, "Adam learning rate", type=positive_float)
    beta1: float = option(0.5, "Adam beta1", type=float)
    beta2: float = option(0.999, "Adam beta2", type=float)
    init: str = option("normal", "weight initialisation", choices=INIT_KINDS)
    init_gain: float = option(0.02, "scale of the initial weights, the std for normal",
                              type=float)

    def fill_defaults(self) -> None:
        """Set the defaults that depend on other options (called before a run starts)."""


# The published load/crop ratio of the CycleGAN and pix2pix papers (286 / 256).
LOAD, CROP = 286, 256


@dataclass
class ImageTranslationOptions(TaskOptions):
    """Image-to-image translation at one resolution (CycleGAN, pix2pix, CUT): the data
    geometry, a ResNet or U-Net generator and a PatchGAN discriminator."""

    direction: str = option("AtoB", "AtoB, or BtoA to swap the roles of the A and B folders",
                            choices=("AtoB", "BtoA"))
    preprocess: str = option("resize_and_crop", "how training images are sized",
                             choices=("resize_and_crop", "crop", "scale_width", "none"))
    load_size: int | None = option(None, "resize before cropping", type=positive_int,
                                   shown=f"{LOAD}, or crop-size x {LOAD}/{CROP} for larger "
                                         f"crops")
    crop_size: int = option(CROP, "training crop", type=positive_int)
    generator: str = option("resnet_9blocks",
                            "resnet_9blocks|resnet_6blocks|resnet|unet_256|unet_128|unet")
    discriminator: str = option("patchgan", "patchgan|pixelgan")
    ngf: int = option(64, "generator width (filters of its first layer)", type=positive_int)
    ndf: int = option(64, "discriminator width", type=positive_int)
    n_layers_d: int = option(3, "PatchGAN stride-2 layers; 3 judges 70x70 patches",
                             type=positive_int)
    norm: str = option("instance", "normalisation layers", choices=NORM_KINDS)
    dropout: bool = option(False, "dropout in the generator", boolean=PAIR)
    upsample: str = option("transpose", "upsampling of the ResNet generators",
                           choices=UPSAMPLE_KINDS)
    num_downs: int = option(8, "downsamplings of the generic 'unet' generator (inputs: "
                               "multiples of 2^N)", type=positive_int)
    gan_mode: str = option("lsgan", "adversarial loss", choices=GAN_MODES)

    def fill_defaults(self) -> None:
        """A crop larger than the default load size loads at the published ratio."""
        if self.load_size is None:
            self.load_size = LOAD if self.crop_size <= LOAD else self.crop_size * LOAD // CROP
