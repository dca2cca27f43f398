"""U-Net generator of pix2pix (Isola et al., 2017).

``num_downs`` 4x4 stride-2 convolutions halve the resolution down to 1x1 for a 2**num_downs
input (LeakyReLU 0.2 before each but the first, norm after each but the first and the
innermost); transposed convolutions bring it back (ReLU before each), each decoder stage
taking the concatenation of the previous stage and the encoder output of the same
resolution. The 512-channel stages between the innermost and the fourth level use dropout
0.5; the output is tanh. Inputs must be multiples of ``2**num_downs``; the translator pads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .norm import norm_layer, uses_bias
from .registry import register_generator


def _channels(ngf: int, level: int) -> int:
    return ngf * min(2**level, 8)


class UnetGenerator(nn.Module):
    """Encoder/decoder with skip connections by concatenation."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 num_downs: int = 8, norm: str = "batch", dropout: bool = True) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, got {num_downs}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple = 2**num_downs
        self.scale = 1
        bias = uses_bias(norm)
        ch = [_channels(ngf, i) for i in range(num_downs)]
        innermost = num_downs - 1

        downs: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 4, 2, 1, bias=bias)]
        for i in range(1, num_downs):
            layers = [nn.LeakyReLU(0.2, True), nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=bias)]
            if i != innermost:
                layers.append(norm_layer(norm, ch[i]))
            downs.append(nn.Sequential(*layers))
        self.downs = nn.ModuleList(downs)

        ups: list[nn.Module] = [nn.Sequential(
            nn.ReLU(True), nn.ConvTranspose2d(2 * ch[0], out_channels, 4, 2, 1), nn.Tanh())]
        for i in range(1, num_downs):
            in_ch = ch[i] if i == innermost else 2 * ch[i]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(in_ch, ch[i - 1], 4, 2, 1, bias=bias),
                      norm_layer(norm, ch[i - 1])]
            if dropout and 4 <= i < innermost:
                layers.append(nn.Dropout(0.5))
            ups.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList(ups)

    def forward(self, x: Tensor) -> Tensor:
        """Map NCHW in [-1, 1] (H, W multiples of ``size_multiple``) to the same size."""
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"input size {h}x{w} must be a multiple of {self.size_multiple}")
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[-1](skips[-1])
        for i in range(len(self.ups) - 2, -1, -1):
            x = self.ups[i](torch.cat([skips[i], x], 1))
        return x


@register_generator("unet")
def unet(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, num_downs: int = 8,
         norm: str = "batch", dropout: bool = True) -> UnetGenerator:
    """U-Net with ``num_downs`` downsamplings (inputs padded to multiples of 2**num_downs)."""
    return UnetGenerator(in_channels, out_channels, ngf, num_downs, norm, dropout)


@register_generator("unet_256")
def unet_256(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "batch",
             dropout: bool = True) -> UnetGenerator:
    """U-Net with 8 downsamplings (pix2pix default for 256x256 images)."""
    return UnetGenerator(in_channels, out_channels, ngf, 8, norm, dropout)


@register_generator("unet_128")
def unet_128(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "batch",
             dropout: bool = True) -> UnetGenerator:
    """U-Net with 7 downsamplings (for 128x128 images)."""
    return UnetGenerator(in_channels, out_channels, ngf, 7, norm, dropout)
