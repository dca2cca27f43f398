"""RRDBNet, the ESRGAN generator (Wang et al., 2018), as ESRGAN, Real-ESRGAN and BSRGAN use it.

Layout (layer names as BasicSR publishes them):

- ``conv_first``: 3x3 conv from the image (or its pixel-unshuffled phases) to ``num_feat``;
- ``body``: ``num_block`` Residual-in-Residual Dense Blocks (``rdb1``-``rdb3``, each five
  densely connected 3x3 convs ``conv1``-``conv5`` with ``num_grow_ch`` growth channels and
  LeakyReLU 0.2, output ``x + 0.2 * conv5``), each RRDB returning ``x + 0.2 * rdb3(...)``;
- ``conv_body``: 3x3 conv closing the trunk, added to ``conv_first``'s output;
- ``conv_up1``, ``conv_up2``, ...: nearest 2x upsampling, 3x3 conv, LeakyReLU 0.2;
- ``conv_hr`` (+ LeakyReLU) and ``conv_last``: two 3x3 convs at the output size.

The number of upsampling stages is log2(``scale * unshuffle``). Real-ESRGAN's x2 and x1
models keep BasicSR's two stages and first fold the input into 2x2 or 4x4 phases
(``unshuffle`` 2 or 4, so ``conv_first`` sees 4x or 16x the channels); the original
ESRGAN code instead uses one stage for x2, none for x1 and three for x8. Values are
[0, 1] RGB in and out (linear output). At x4, 64 features, 23 blocks, 32 growth
channels: 16,697,987 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register_generator


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output ``x + 0.2 * conv5(cat(x, x1, .., x4))``."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for i in range(1, 6):
            out = num_feat if i == 5 else num_grow_ch
            setattr(self, f"conv{i}", nn.Conv2d(num_feat + (i - 1) * num_grow_ch, out, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(self.lrelu(getattr(self, f"conv{i}")(torch.cat(feats, 1))))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks with a scaled (0.2) skip."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


def _log2(n: int, what: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two (1, 2, 4, 8), got {n}")
    return n.bit_length() - 1


def default_unshuffle(scale: int) -> int:
    """BasicSR's choice: x2 and x1 models pixel-unshuffle by 2 and 4, keeping two stages."""
    return {1: 4, 2: 2}.get(scale, 1)


class RRDBNet(nn.Module):
    """ESRGAN generator: NCHW in [0, 1] -> ``scale`` times the size, in [0, 1] (unclamped)."""

    value_range = (0.0, 1.0)

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32, scale: int = 4,
                 unshuffle: int | None = None) -> None:
        super().__init__()
        unshuffle = default_unshuffle(scale) if unshuffle is None else unshuffle
        self.num_up = _log2(scale, "scale") + _log2(unshuffle, "unshuffle")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.unshuffle = unshuffle
        # Pixel-unshuffle folds unshuffle x unshuffle pixels into channels.
        self.size_multiple = self.min_size = unshuffle
        self.conv_first = nn.Conv2d(in_channels * unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(1, self.num_up + 1):
            setattr(self, f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """NCHW (H, W multiples of ``unshuffle``) -> NC(sH)(sW)."""
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(f"input size {h}x{w} must be a multiple of {self.unshuffle}")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.num_up + 1):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, f"conv_up{i}")(up))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


@register_generator("rrdbnet")
def rrdbnet(in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
            num_block: int = 23, num_grow_ch: int = 32, scale: int = 4,
            unshuffle: int | None = None) -> RRDBNet:
    """RRDBNet (ESRGAN / Real-ESRGAN x4plus defaults); ``unshuffle`` None = BasicSR's rule."""
    return RRDBNet(in_channels, out_channels, num_feat, num_block, num_grow_ch, scale,
                   unshuffle)
