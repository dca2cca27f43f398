"""Network architectures: generators, discriminators, norm layers and weight init.

Importing this package registers every architecture with the registry, so
``build_generator("resnet_9blocks")`` and ``build_discriminator("patchgan")`` work.
"""

from . import (  # noqa: F401  (imported for registration side effects)
    msrresnet,
    patchgan,
    resnet,
    rrdbnet,
    srresnet,
    unet,
)
from .init import init_weights
from .patchgan import PatchGANDiscriminator, PixelGANDiscriminator, receptive_field
from .registry import (
    build_discriminator,
    build_generator,
    discriminator_arguments,
    generator_arguments,
    list_discriminators,
    list_generators,
    register_discriminator,
    register_generator,
)
from .resnet import ResnetGenerator
from .unet import UnetGenerator

__all__ = [
    "PatchGANDiscriminator",
    "PixelGANDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "build_discriminator",
    "build_generator",
    "discriminator_arguments",
    "generator_arguments",
    "init_weights",
    "list_discriminators",
    "list_generators",
    "receptive_field",
    "register_discriminator",
    "register_generator",
]
