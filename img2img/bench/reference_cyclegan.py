"""A CycleGAN training step as the reference implementation takes it, in plain PyTorch.

Only the benchmark uses it: it is the yardstick for the toolkit's own step ("x the
reference"), measurable from a clean checkout and in the same process (so with the same
allocator setting). Written from the published description of junyanz/pytorch-CycleGAN-
and-pix2pix's defaults, with no module of the toolkit's own:

- generators: ResNet with 9 blocks, ``ngf`` 64, instance norm without affine parameters,
  conv biases on, reflection padding, ``ConvTranspose2d(k3, s2, p1, output_padding 1)``
  upsampling, Tanh; discriminators: the basic PatchGAN (3 stride-2 layers, ``ndf`` 64,
  LeakyReLU 0.2); weights from N(0, 0.02), biases zero;
- LSGAN (mean squared error against 1 / 0), cycle weights 10 and 10, identity 0.5 of them,
  Adam lr 2e-4 betas (0.5, 0.999) (PyTorch's default implementation), pools of 50 fakes;
- the order of its ``optimize_parameters``: both cycles forward, discriminators frozen,
  generator losses (with the identity forwards) backward, generator step; discriminators
  unfrozen, D_A on a pooled fake B and D_B on a pooled fake A backward one after the other
  (each loss halved), discriminator step.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels), nn.ReLU(True)]


class _Block(nn.Module):
    """x + (pad, conv, norm, ReLU, pad, conv, norm)(x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), *_norm_relu(channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def generator(ngf: int = 64, blocks: int = 9, channels: int = 3) -> nn.Sequential:
    """The reference's default ResNet generator (see the module docstring)."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7),
                               *_norm_relu(ngf)]
    width = ngf
    for _ in range(2):
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), *_norm_relu(2 * width)]
        width *= 2
    layers += [_Block(width) for _ in range(blocks)]
    for _ in range(2):
        layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1,
                                      output_padding=1), *_norm_relu(width // 2)]
        width //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(ndf: int = 64, channels: int = 3) -> nn.Sequential:
    """The reference's basic 70x70 PatchGAN (three stride-2 layers)."""
    layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    width = ndf
    for stride, out in ((2, 2 * ndf), (2, 4 * ndf), (1, 8 * ndf)):
        layers += [nn.Conv2d(width, out, 4, stride, 1), nn.InstanceNorm2d(out),
                   nn.LeakyReLU(0.2, True)]
        width = out
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def _init(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


class _Pool:
    """Up to ``size`` past fakes; once full, each query returns a stored one (replaced by the
    new fake) or the new fake, with probability one half each."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images, self.rng = size, [], random.Random(seed)

    def query(self, fakes: Tensor) -> Tensor:
        out = []
        for img in fakes.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)


def _lsgan(pred: Tensor, real: bool) -> Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


class ReferenceCycleGAN:
    """Both generators, both discriminators, their optimisers and pools; :meth:`step` is one
    training step in the reference's order (see the module docstring)."""

    lambda_a = lambda_b = 10.0
    lambda_identity = 0.5

    def __init__(self, ngf: int = 64, ndf: int = 64, blocks: int = 9,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.g_a = _init(generator(ngf, blocks)).to(device)  # A -> B
        self.g_b = _init(generator(ngf, blocks)).to(device)  # B -> A
        self.d_a = _init(discriminator(ndf)).to(device)  # real B or fake B
        self.d_b = _init(discriminator(ndf)).to(device)  # real A or fake A
        gen = [*self.g_a.parameters(), *self.g_b.parameters()]
        dis = [*self.d_a.parameters(), *self.d_b.parameters()]
        self.opt_g = torch.optim.Adam(gen, lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(dis, lr=2e-4, betas=(0.5, 0.999))
        self.pool_a, self.pool_b = _Pool(50, seed + 1), _Pool(50, seed + 2)

    def nets(self) -> list[nn.Module]:
        """The four networks."""
        return [self.g_a, self.g_b, self.d_a, self.d_b]

    def _freeze_discriminators(self, frozen: bool) -> None:
        for net in (self.d_a, self.d_b):
            for p in net.parameters():
                p.requires_grad = not frozen

    def _backward_d(self, net: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        loss = 0.5 * (_lsgan(net(real), True) + _lsgan(net(fake.detach()), False))
        loss.backward()
        return loss

    def step(self, real_a: Tensor, real_b: Tensor) -> dict[str, float]:
        """One training step on a batch of A images and one of B images (in [-1, 1])."""
        fake_b = self.g_a(real_a)
        rec_a = self.g_b(fake_b)
        fake_a = self.g_b(real_b)
        rec_b = self.g_a(fake_a)

        self._freeze_discriminators(True)
        self.opt_g.zero_grad()
        idt_weight_a = self.lambda_a * self.lambda_identity
        idt_weight_b = self.lambda_b * self.lambda_identity
        loss_idt_a = F.l1_loss(self.g_a(real_b), real_b) * idt_weight_b
        loss_idt_b = F.l1_loss(self.g_b(real_a), real_a) * idt_weight_a
        loss_g = (_lsgan(self.d_a(fake_b), True) + _lsgan(self.d_b(fake_a), True)
                  + F.l1_loss(rec_a, real_a) * self.lambda_a
                  + F.l1_loss(rec_b, real_b) * self.lambda_b + loss_idt_a + loss_idt_b)
        loss_g.backward()
        self.opt_g.step()

        self._freeze_discriminators(False)
        self.opt_d.zero_grad()
        loss_d_a = self._backward_d(self.d_a, real_b, self.pool_b.query(fake_b))
        loss_d_b = self._backward_d(self.d_b, real_a, self.pool_a.query(fake_a))
        self.opt_d.step()
        return {"G": float(loss_g.detach()), "D_A": float(loss_d_a.detach()),
                "D_B": float(loss_d_b.detach())}
