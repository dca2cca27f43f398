"""Pixel-wise reconstruction losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def l1_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error between ``a`` and ``b`` (the pix2pix reconstruction term)."""
    return F.l1_loss(a, b)


def cycle_loss(reconstructed: Tensor, real: Tensor) -> Tensor:
    """Cycle-consistency loss: mean L1 between ``G_BA(G_AB(a))`` and ``a`` (CycleGAN)."""
    return F.l1_loss(reconstructed, real)


def identity_loss(same: Tensor, real: Tensor) -> Tensor:
    """Identity loss: mean L1 between ``G_AB(b)`` and ``b``; keeps colours stable (CycleGAN)."""
    return F.l1_loss(same, real)
