"""Adversarial losses: vanilla (BCE), LSGAN, hinge and WGAN-GP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.errors import UsageError

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits.

    ``mode``:
      * ``vanilla``: binary cross-entropy with logits against 1 (real) / 0 (fake).
      * ``lsgan``: mean squared error against 1 / 0 (CycleGAN default).
      * ``hinge``: discriminator ``mean(relu(1 - x))`` for real and ``mean(relu(1 + x))``
        for fake; generator ``-mean(x)``.
      * ``wgangp``: critic ``-mean(x)`` for real and ``mean(x)`` for fake; generator
        ``-mean(x)``. Add ``gradient_penalty`` for the discriminator.

    Targets are built with ``ones_like`` / ``zeros_like`` so they follow the prediction's
    dtype and device (no buffers; safe under autocast).
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise UsageError(f"unknown GAN mode {mode!r}; expected one of {', '.join(GAN_MODES)}")
        self.mode = mode

    def _single(self, pred: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
        if self.mode == "vanilla":
            target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.mode == "lsgan":
            target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
            return F.mse_loss(pred, target)
        if self.mode == "hinge":
            if not for_discriminator:
                return -pred.mean()
            if target_is_real:
                return F.relu(1.0 - pred).mean()
            return F.relu(1.0 + pred).mean()
        # wgangp: the generator wants its fakes scored as real, i.e. -mean(x).
        return -pred.mean() if target_is_real else pred.mean()

    def forward(
        self, pred: Tensor | list[Tensor], target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        """Loss for logits ``pred`` (or the mean over a list of multi-scale logit maps).

        ``target_is_real`` says which label the prediction should match; for the generator
        step pass ``target_is_real=True`` and ``for_discriminator=False``.
        """
        if isinstance(pred, (list, tuple)):
            if not pred:
                raise ValueError("pred is an empty list")
            losses = [self._single(p, target_is_real, for_discriminator) for p in pred]
            return torch.stack(losses).mean()
        return self._single(pred, target_is_real, for_discriminator)

    def loss(
        self, pred: Tensor | list[Tensor], target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        """Alias of calling the module: ``gan_loss.loss(pred, True)``."""
        return self(pred, target_is_real, for_discriminator)


def gradient_penalty(
    discriminator: nn.Module, real: Tensor, fake: Tensor, weight: float = 10.0
) -> Tensor:
    """WGAN-GP penalty ``weight * mean((||grad D(x_hat)||_2 - 1)^2)`` (Gulrajani et al., 2017).

    ``x_hat`` interpolates ``real`` and ``fake`` with one uniform coefficient per sample. The
    graph is kept (``create_graph=True``) so the penalty can be backpropagated into D.
    """
    fake = fake.detach()
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    alpha = alpha.to(real.dtype)
    interp = (alpha * real.detach() + (1.0 - alpha) * fake).requires_grad_(True)
    out = discriminator(interp)
    outputs = out if isinstance(out, (list, tuple)) else [out]
    grads = torch.autograd.grad(
        outputs=[o.sum() for o in outputs],
        inputs=interp,
        create_graph=True,
    )[0]
    norms = grads.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def discriminator_loss(
    gan_loss: GANLoss,
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    gp_weight: float = 10.0,
) -> tuple[Tensor, dict[str, float]]:
    """Discriminator loss ``loss_real + loss_fake`` (+ gradient penalty for ``wgangp``).

    ``fake`` is detached here so no gradient reaches the generator. Returns the total loss
    and a dict of float parts ``{"real", "fake", "gp"}`` for logging (``gp`` is 0.0 unless the
    mode is ``wgangp``). Callers wanting the CycleGAN 0.5 factor apply it themselves.
    """
    fake = fake.detach()
    loss_real = gan_loss(discriminator(real), True, for_discriminator=True)
    loss_fake = gan_loss(discriminator(fake), False, for_discriminator=True)
    total = loss_real + loss_fake
    gp_value = 0.0
    if gan_loss.mode == "wgangp":
        gp = gradient_penalty(discriminator, real, fake, weight=gp_weight)
        total = total + gp
        gp_value = gp.item()
    parts = {"real": loss_real.item(), "fake": loss_fake.item(), "gp": gp_value}
    return total, parts
