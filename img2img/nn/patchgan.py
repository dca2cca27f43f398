"""PatchGAN and PixelGAN discriminators (Isola et al., 2017).

Both output a map of logits (no sigmoid), one per overlapping input patch; pair them with
``img2img.losses.GANLoss``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .norm import norm_layer, uses_bias
from .registry import register_discriminator


def receptive_field(n_layers: int = 3) -> int:
    """Receptive field (pixels) of one output logit of a PatchGAN with ``n_layers``.

    The net has ``n_layers`` stride-2 4x4 convs followed by two stride-1 4x4 convs. Walking
    back from one output pixel, each conv adds ``(k - 1) * jump`` where ``jump`` is the product
    of the strides before it. ``n_layers=3`` gives the 70x70 PatchGAN.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    strides = [2] * n_layers + [1, 1]
    rf, jump = 1, 1
    for s in strides:
        rf += (4 - 1) * jump
        jump *= s
    return rf


class PatchGANDiscriminator(nn.Module):
    """Convolutional PatchGAN discriminator returning an N x 1 x H' x W' logit map.

    With in_channels=3, ndf=64, n_layers=3 and ``norm="instance"`` (InstanceNorm without
    affine, convs with bias, the CycleGAN reference default) it has 2,764,737 parameters;
    with ``norm="batch"`` (convs between BN layers without bias) it has 2,765,633.
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels = in_channels
        self.n_layers = n_layers
        bias = uses_bias(norm)

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = ndf
        for n in range(1, n_layers):
            out = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=bias),
                norm_layer(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        out = ndf * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(channels, out, kernel_size=4, stride=1, padding=1, bias=bias),
            norm_layer(norm, out),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PixelGANDiscriminator(nn.Module):
    """1x1 PixelGAN: classifies each pixel independently; output has the input's H x W."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        self.in_channels = in_channels
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, kernel_size=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, bias=uses_bias(norm)),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@register_discriminator("patchgan")
def patchgan(
    in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
) -> PatchGANDiscriminator:
    """PatchGAN discriminator; ``n_layers=3`` is the 70x70 PatchGAN."""
    return PatchGANDiscriminator(in_channels, ndf, n_layers, norm)


@register_discriminator("pixelgan")
def pixelgan(in_channels: int = 3, ndf: int = 64, norm: str = "instance") -> PixelGANDiscriminator:
    """1x1 PixelGAN discriminator."""
    return PixelGANDiscriminator(in_channels, ndf, norm)
