"""Tests for img2img.losses: GAN loss modes, gradient penalty and pixel losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from img2img.losses import (
    GAN_MODES,
    GANLoss,
    cycle_loss,
    discriminator_loss,
    gradient_penalty,
    identity_loss,
    l1_loss,
)
from img2img.nn import build_discriminator


def _tiny_d(norm: str = "none") -> nn.Module:
    torch.manual_seed(0)
    return build_discriminator("patchgan", ndf=4, n_layers=2, norm=norm)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_each_mode_finite_scalar(mode: str) -> None:
    crit = GANLoss(mode)
    pred = torch.randn(2, 1, 4, 4)
    for real in (True, False):
        for for_d in (True, False):
            loss = crit.loss(pred, real, for_discriminator=for_d)
            assert loss.dim() == 0 and torch.isfinite(loss)


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="wgan_typo"):
        GANLoss("wgan_typo")


def test_vanilla_sign_and_value() -> None:
    crit = GANLoss("vanilla")
    confident_real = torch.full((1, 1, 2, 2), 5.0)
    assert crit.loss(confident_real, True) < crit.loss(confident_real, False)
    assert crit.loss(-confident_real, False) < crit.loss(-confident_real, True)
    # Logit 0 means p=0.5: BCE = log 2 regardless of target.
    zero = torch.zeros(1, 1, 2, 2)
    assert crit.loss(zero, True).item() == pytest.approx(math.log(2))


def test_lsgan_values() -> None:
    crit = GANLoss("lsgan")
    ones = torch.ones(1, 1, 3, 3)
    assert crit.loss(ones, True).item() == 0.0
    assert crit.loss(ones, False).item() == pytest.approx(1.0)
    assert crit.loss(torch.zeros(1, 1, 3, 3), False).item() == 0.0


def test_hinge_discriminator_zero_when_margin_met() -> None:
    crit = GANLoss("hinge")
    real_logits = torch.tensor([1.5, 2.0, 3.0])
    fake_logits = torch.tensor([-1.5, -2.0, -1.01])
    assert crit.loss(real_logits, True).item() == 0.0
    assert crit.loss(fake_logits, False).item() == 0.0
    # Inside the margin it is positive: relu(1 - 0.5) = 0.5, relu(1 + 0.5) = 1.5.
    assert crit.loss(torch.tensor([0.5]), True).item() == pytest.approx(0.5)
    assert crit.loss(torch.tensor([0.5]), False).item() == pytest.approx(1.5)


def test_hinge_and_wgangp_generator_is_negative_mean() -> None:
    pred = torch.tensor([1.0, 3.0])
    for mode in ("hinge", "wgangp"):
        g = GANLoss(mode).loss(pred, True, for_discriminator=False)
        assert g.item() == pytest.approx(-2.0)


def test_wgangp_critic_signs() -> None:
    crit = GANLoss("wgangp")
    pred = torch.tensor([1.0, 3.0])
    assert crit.loss(pred, True).item() == pytest.approx(-2.0)
    assert crit.loss(pred, False).item() == pytest.approx(2.0)


def test_list_of_predictions_is_averaged() -> None:
    crit = GANLoss("lsgan")
    a, b = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 4, 4)
    assert crit.loss([a, b], True).item() == pytest.approx(0.5)
    # Calling the module is the same as .loss().
    assert crit([a, b], True).item() == pytest.approx(0.5)


def test_targets_follow_dtype() -> None:
    crit = GANLoss("lsgan")
    pred = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    assert crit.loss(pred, True).dtype == torch.float64
    assert len(list(crit.buffers())) == 0


def test_gradient_penalty_nonzero_and_flows_into_d() -> None:
    d = _tiny_d()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = torch.rand(2, 3, 32, 32) * 2 - 1
    gp = gradient_penalty(d, real, fake, weight=10.0)
    assert gp.dim() == 0 and gp.item() > 0
    gp.backward()
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_gradient_penalty_zero_for_unit_gradient() -> None:
    # D(x) = sum of x * w with ||w|| = 1 has gradient norm exactly 1 everywhere.
    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1, 3, 4, 4) / math.sqrt(48))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * self.w).flatten(1).sum(1)

    gp = gradient_penalty(Linear(), torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_discriminator_loss_parts(mode: str) -> None:
    d = _tiny_d()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    crit = GANLoss(mode)
    total, parts = discriminator_loss(crit, d, real, fake, gp_weight=10.0)
    assert set(parts) == {"real", "fake", "gp"}
    assert all(isinstance(v, float) for v in parts.values())
    assert total.item() == pytest.approx(parts["real"] + parts["fake"] + parts["gp"], rel=1e-5)
    if mode == "wgangp":
        assert parts["gp"] > 0
    else:
        assert parts["gp"] == 0.0
    total.backward()
    assert fake.grad is None  # fake is detached inside
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_pixel_losses() -> None:
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.5)
    assert l1_loss(a, b).item() == pytest.approx(0.5)
    assert cycle_loss(b, a).item() == pytest.approx(0.5)
    assert identity_loss(a, a).item() == 0.0
