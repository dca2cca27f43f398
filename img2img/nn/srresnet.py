"""SRResNet generator and SRGAN discriminator (Ledig et al., 2017).

Generator: 9x9 head conv + PReLU, ``n_blocks`` residual blocks (conv, norm, PReLU, conv,
norm), conv + norm with a long skip from the head, log2(scale) sub-pixel stages (conv to 4x
channels, PixelShuffle(2), PReLU), 9x9 tail conv. The output is linear (the translator
clamps to [-1, 1]). At scale 4 with batch norm: 1,549,462 parameters. Plain PyTorch layers:
the faster CPU execution is applied to a built network by ``img2img.nn.cpu.accelerate``.

``residual=True`` (not in the paper) adds a bicubic upsampling of the input to the output,
so the network learns only the detail bicubic misses: it starts as good as bicubic and
converges in far fewer steps, which matters for short CPU training runs.

Discriminator: eight 3x3 convs (64, 64, 128, 128, 256, 256, 512, 512 channels, strides
1, 2, 1, 2, ...), LeakyReLU 0.2, batch norm after all but the first, then adaptive average
pooling to 6x6 (so any crop size works), dense 1024, LeakyReLU, dense 1 (a logit).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .norm import norm_layer
from .registry import register_discriminator, register_generator


class SRResidualBlock(nn.Module):
    """conv-norm-PReLU-conv-norm with an identity skip."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), norm_layer(norm, channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1), norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """Super-resolution generator: output is ``scale`` times the input size.

    Layers in order (attribute names are the state-dict keys of every saved model):
    ``head`` = 9x9 conv, PReLU; ``blocks`` = ``n_blocks`` x :class:`SRResidualBlock`;
    ``fuse`` = 3x3 conv, norm (added to the head's output); ``upsample`` = log2(scale)
    stages of three layers each, ``upsample.{3i}`` 3x3 conv to 4x channels,
    ``upsample.{3i+1}`` PixelShuffle(2), ``upsample.{3i+2}`` PReLU; ``tail`` = 9x9 conv.
    """

    size_multiple = 1

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 4,
                 channels: int = 64, n_blocks: int = 16, norm: str = "batch",
                 residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, 1, 4), nn.PReLU())
        self.blocks = nn.Sequential(*[SRResidualBlock(channels, norm) for _ in range(n_blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1),
                                  norm_layer(norm, channels))
        ups: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            ups += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, out_channels, 9, 1, 4)

    def forward(self, x: Tensor) -> Tensor:
        """NCHW in [-1, 1] -> NC(sH)(sW)."""
        head = self.head(x)
        out = self.tail(self.upsample(head + self.fuse(self.blocks(head))))
        if self.residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
        return out


@register_generator("srresnet")
def srresnet(in_channels: int = 3, out_channels: int = 3, scale: int = 4, channels: int = 64,
             n_blocks: int = 16, norm: str = "batch", residual: bool = False) -> SRResNet:
    """SRResNet (16 blocks of 64 channels as published; ``residual`` adds a bicubic path)."""
    return SRResNet(in_channels, out_channels, scale, channels, n_blocks, norm, residual)


class SRGANDiscriminator(nn.Module):
    """VGG-style discriminator returning one logit per image."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        widths = [ndf, ndf, 2 * ndf, 2 * ndf, 4 * ndf, 4 * ndf, 8 * ndf, 8 * ndf]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, w in enumerate(widths):
            layers.append(nn.Conv2d(prev, w, 3, 1 + i % 2, 1))
            if i > 0:
                layers.append(norm_layer(norm, w))
            layers.append(nn.LeakyReLU(0.2, True))
            prev = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Linear(prev * 36, 1024),
            nn.LeakyReLU(0.2, True), nn.Linear(1024, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """NCHW -> N x 1 logits."""
        return self.head(self.features(x))


@register_discriminator("srgan")
def srgan_discriminator(in_channels: int = 3, ndf: int = 64,
                        norm: str = "batch") -> SRGANDiscriminator:
    """The SRGAN discriminator."""
    return SRGANDiscriminator(in_channels, ndf, norm)
