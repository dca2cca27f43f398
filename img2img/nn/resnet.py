"""ResNet generator of Johnson et al. (2016), in the form used by CycleGAN and pix2pix.

Layout, in order, as one ``nn.Sequential`` named ``model`` (the reference's indices, so its
checkpoints load as they are): reflection pad 3, 7x7 conv, norm, ReLU (the stem); twice a
3x3 stride-2 conv, norm, ReLU (H -> H/4); ``n_blocks`` residual blocks; twice a 2x
upsampling (a 3x3 stride-2 transposed conv, or nearest 2x, reflection pad 1, 3x3 conv),
norm, ReLU; reflection pad 3, 7x7 output conv, Tanh. Plain PyTorch layers: the faster CPU
execution is applied to a built network by ``img2img.nn.cpu.accelerate``.

Encoder features by name (for patch-wise losses such as CUT's PatchNCE):
``generator(x, features=["down1", "block5"])`` returns those layers' outputs instead of the
image, running the network only as far as the last one. The names, in order:

========  ==========================================================  =============
name      output of                                                   size
========  ==========================================================  =============
input     the reflection padding of the input                         H+6, in_ch
stem      the 7x7 stem (conv, norm, ReLU)                             H, ngf
down1     the first downsampling conv (before its norm)               H/2, 2 ngf
down2     the second downsampling conv (before its norm)              H/4, 4 ngf
blockK    residual block K (1-based)                                  H/4, 4 ngf
========  ==========================================================  =============

They are recorded while the layers are built, so they do not depend on how indices of
the sequential model fall; the state dict and ``generator(x)`` are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor, nn

from .norm import norm_layer, uses_bias
from .registry import register_generator

UPSAMPLE_KINDS = ("transpose", "resize")


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convs with norm; output is ``x + block(x)``.

    ``block``: pad, conv, norm, ReLU, [dropout 0.5,] pad, conv, norm (the reference's
    indices, so its checkpoints load as they are)."""

    def __init__(self, channels: int, norm: str = "instance", dropout: bool = False) -> None:
        super().__init__()
        bias = uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            norm_layer(norm, channels),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def _upsample(in_ch: int, out_ch: int, kind: str, bias: bool) -> list[nn.Module]:
    """Layers doubling the spatial size and mapping ``in_ch`` -> ``out_ch`` channels."""
    if kind == "transpose":
        return [
            nn.ConvTranspose2d(
                in_ch, out_ch, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
            )
        ]
    # Nearest resize followed by a conv avoids the checkerboard artifacts of strided
    # transposed convolutions (Odena et al., 2016).
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_ch, out_ch, kernel_size=3, bias=bias),
    ]


class FeatureLayer(NamedTuple):
    """A named encoder layer: its position in ``model`` and its output channels."""

    index: int
    channels: int


class ResnetGenerator(nn.Module):
    """ResNet image-to-image generator; output has the input's size and lies in [-1, 1].

    Input height and width must be multiples of ``size_multiple`` (4) and at least
    ``min_size`` (8): the residual blocks at 1/4 resolution need 2x2 for their reflection
    padding and instance norm.
    """

    size_multiple: int = 4
    min_size: int = 8
    scale: int = 1

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: bool = False,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(
                f"unknown upsample {upsample!r}; expected one of {', '.join(UPSAMPLE_KINDS)}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 4
        self.scale = 1
        bias = uses_bias(norm)
        self.feature_layers: dict[str, FeatureLayer] = {}

        def tap(name: str, channels: int) -> None:  # the layer appended last is `name`
            self.feature_layers[name] = FeatureLayer(len(layers) - 1, channels)

        layers: list[nn.Module] = [nn.ReflectionPad2d(3)]
        tap("input", in_channels)
        layers += [
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(inplace=True),
        ]
        tap("stem", ngf)
        channels = ngf
        for i in range(2):  # downsample: H -> H/2 -> H/4
            layers.append(
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=bias))
            tap(f"down{i + 1}", channels * 2)
            layers += [norm_layer(norm, channels * 2), nn.ReLU(inplace=True)]
            channels *= 2
        for i in range(n_blocks):
            layers.append(ResidualBlock(channels, norm=norm, dropout=dropout))
            tap(f"block{i + 1}", channels)
        for _ in range(2):  # upsample: H/4 -> H/2 -> H
            layers += _upsample(channels, channels // 2, upsample, bias)
            layers += [norm_layer(norm, channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, out_channels, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor, features: Sequence[str] | None = None) -> Tensor | list[Tensor]:
        """The translated image; with ``features``, the outputs of those named encoder
        layers (in the order asked; see the module docstring) and nothing after them."""
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"input size {h}x{w} must be a multiple of {self.size_multiple} in both dims"
            )
        if not features:
            return self.model(x)
        unknown = [n for n in features if n not in self.feature_layers]
        if unknown:
            raise ValueError(f"unknown feature layer(s) {', '.join(unknown)}; this generator "
                             f"has {', '.join(self.feature_layers)}")
        wanted = {self.feature_layers[n].index: n for n in features}
        last = max(wanted)
        found: dict[str, Tensor] = {}
        for i in range(last + 1):
            x = self.model[i](x)
            if i in wanted:
                # with norm "none" an in-place ReLU follows a downsampling conv directly
                keep = i < last and isinstance(self.model[i + 1], nn.Identity)
                found[wanted[i]] = x.clone() if keep else x
        return [found[n] for n in features]


@register_generator("resnet")
def resnet(
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    n_blocks: int = 9,
    norm: str = "instance",
    dropout: bool = False,
    upsample: str = "transpose",
) -> ResnetGenerator:
    """ResNet generator with a configurable number of residual blocks."""
    return ResnetGenerator(in_channels, out_channels, ngf, n_blocks, norm, dropout, upsample)


@register_generator("resnet_9blocks")
def resnet_9blocks(
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    norm: str = "instance",
    dropout: bool = False,
    upsample: str = "transpose",
) -> ResnetGenerator:
    """ResNet generator with 9 residual blocks (CycleGAN default for 256x256 images)."""
    return ResnetGenerator(in_channels, out_channels, ngf, 9, norm, dropout, upsample)


@register_generator("resnet_6blocks")
def resnet_6blocks(
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    norm: str = "instance",
    dropout: bool = False,
    upsample: str = "transpose",
) -> ResnetGenerator:
    """ResNet generator with 6 residual blocks (CycleGAN choice for 128x128 images)."""
    return ResnetGenerator(in_channels, out_channels, ngf, 6, norm, dropout, upsample)
