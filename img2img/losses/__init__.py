"""Training losses: adversarial (GAN) and pixel-wise reconstruction terms."""

from .gan import GAN_MODES, GANLoss, discriminator_loss, gradient_penalty
from .pixel import cycle_loss, identity_loss, l1_loss

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "cycle_loss",
    "discriminator_loss",
    "gradient_penalty",
    "identity_loss",
    "l1_loss",
]
