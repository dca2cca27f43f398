"""MSRResNet, BasicSR's "modified SRResNet" (SRResNet without batch norm), x2, x3 or x4.

Layout (layer names as BasicSR publishes them):

- ``conv_first``: 3x3 conv to ``num_feat`` + LeakyReLU 0.1;
- ``body``: ``num_block`` residual blocks ``conv1`` - ReLU - ``conv2`` with an identity skip
  (no norm, no long skip around the body);
- ``upconv1`` (and ``upconv2`` at x4): 3x3 conv to ``scale**2`` (x2, x3) or 4 (x4) times the
  features, pixel shuffle, LeakyReLU 0.1;
- ``conv_hr`` + LeakyReLU 0.1 and ``conv_last``;
- plus a bilinear upsampling of the input added to the output, so the net learns the
  residual over bilinear.

Values are [0, 1] RGB. At x4 with 64 features and 16 blocks: 1,517,571 parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register_generator


class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv with an identity skip."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """NCHW in [0, 1] -> ``scale`` times the size, in [0, 1] (unclamped)."""

    value_range = (0.0, 1.0)
    size_multiple = 1
    min_size = 1

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
                 num_block: int = 16, scale: int = 4) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.conv_first = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        shuffle = 2 if scale == 4 else scale
        self.upconv1 = nn.Conv2d(num_feat, num_feat * shuffle**2, 3, 1, 1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(shuffle)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """NCHW -> NC(sH)(sW)."""
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear",
                                   align_corners=False)


@register_generator("msrresnet")
def msrresnet(in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
              num_block: int = 16, scale: int = 4) -> MSRResNet:
    """MSRResNet (BasicSR's defaults: 64 features, 16 blocks, x4)."""
    return MSRResNet(in_channels, out_channels, num_feat, num_block, scale)
