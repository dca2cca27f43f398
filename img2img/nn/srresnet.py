"""SRResNet generator and SRGAN discriminator (Ledig et al., 2017).

Generator: 9x9 head conv + PReLU, ``n_blocks`` residual blocks (conv, norm, PReLU, conv,
norm), conv + norm with a long skip from the head, log2(scale) sub-pixel stages (conv to 4x
channels, PixelShuffle(2), PReLU), 9x9 tail conv. The output is linear (the translator
clamps to [-1, 1]). At scale 4 with batch norm: 1,549,462 parameters.

``residual=True`` (not in the paper) adds a bicubic upsampling of the input to the output,
so the network learns only the detail bicubic misses: it starts as good as bicubic and
converges in far fewer steps, which matters for short CPU training runs.

Discriminator: eight 3x3 convs (64, 64, 128, 128, 256, 256, 512, 512 channels, strides
1, 2, 1, 2, ...), LeakyReLU 0.2, batch norm after all but the first, then adaptive average
pooling to 6x6 (so any crop size works), dense 1024, LeakyReLU, dense 1 (a logit).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norm import norm_layer
from .polyphase import PhaseConv2d
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


def _prelu_inplace(x: Tensor, prelu: nn.Module, rows: int = 32) -> Tensor:
    """``prelu(x)`` written into ``x`` a band of rows at a time (no autograd: inference)."""
    for band in x.split(rows, dim=2):
        band.copy_(prelu(band))
    return x


def _rows(t: Tensor, lo: int, hi: int) -> Tensor:
    """Rows ``[lo, hi)`` of NCHW ``t``, zeros where the range leaves it (memory format kept)."""
    h = t.shape[2]
    part = t[:, :, max(lo, 0) : min(hi, h)]
    top, bottom = max(0, -lo), max(0, hi - h)
    if not (top or bottom):
        return part
    return F.pad(part, (0, 0, top, bottom)).contiguous(memory_format=torch.channels_last)


class SRResNet(nn.Module):
    """Super-resolution generator: output is ``scale`` times the input size."""

    size_multiple = 1
    # Rows (at the last upsampler's input size) of the last stage computed at once in CPU
    # inference: 96 keeps an x4 tile's largest tensor at a quarter of its whole size.
    band_rows = 96

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
        self.tail = PhaseConv2d(channels, out_channels, 9, padding=4)

    def forward(self, x: Tensor) -> Tensor:
        """NCHW in [-1, 1] -> NC(sH)(sW)."""
        lean = x.device.type == "cpu" and not torch.is_grad_enabled()
        if lean:
            # Inference on the CPU: channels-last convs need no blocked-layout copies of the
            # largest activations and run ~7 % faster; the last PReLU runs in place.
            x = x.contiguous(memory_format=torch.channels_last)
        head = self.head(x)
        feat = head + self.fuse(self.blocks(head))
        # The last sub-pixel stage's PReLU has one slope, so it commutes with its
        # PixelShuffle, and the tail takes the unshuffled phases directly (same result).
        halo = self.tail.phase_padding() if lean else None
        if halo is not None:
            out = self._last_stage_in_bands(self.upsample[:-3](feat), halo)
        else:
            phases = self.upsample[:-2](feat)
            out = self.tail.forward_phases(self.upsample[-1](phases))
        if self.residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
        return out.contiguous()

    def _last_stage_in_bands(self, feat: Tensor, halo: int) -> Tensor:
        """The last upsampler (conv, PReLU; its shuffle is left to the tail) and the tail on
        ``feat`` in bands of ``band_rows`` rows, each with the rows its two convs reach
        (``halo``: the tail's ``phase_padding()``), so the largest activation (4x the
        channels at the output's half size) never exists whole. Same result as the whole
        stage; inference on the CPU only."""
        conv, prelu = self.upsample[-3], self.upsample[-1]
        n, _, h, w = feat.shape
        out = feat.new_empty(n, self.out_channels, 2 * h, 2 * w)
        for a in range(0, h, self.band_rows):
            b = min(h, a + self.band_rows)
            lo, hi = max(0, a - halo), min(h, b + halo)  # phase rows the tail reads
            z = F.conv2d(_rows(feat, lo - 1, hi + 1), conv.weight, conv.bias, padding=(0, 1))
            z = _rows(_prelu_inplace(z, prelu), a - halo - lo, b + halo - lo)
            out[:, :, 2 * a : 2 * b] = self.tail.forward_phase_rows(z)
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
