"""SRResNet's forward for the CPU: channels-last inference, the last upsampler and the tail
conv on 2x2 phases, and in bands of rows.

Three rewrites of the published forward (``img2img.nn.srresnet.SRResNet``), each giving the
same result up to float rounding:

- the last sub-pixel stage's PReLU has one slope, so it commutes with its PixelShuffle, and
  the tail (a ``PhaseConv2d``) takes the unshuffled phases directly: no shuffle, no padded
  copy and no unshuffle of the largest tensor (training and inference);
- inference on the CPU (no autograd) runs channels-last: the convs need no blocked-layout
  copies of the largest activations (~7 % faster);
- inference on the CPU runs the last stage and the tail in bands of ``band_rows`` rows, so
  the largest activation (4x the channels at half the output size) never exists whole (an
  x4 tile's peak drops to about a quarter); the last PReLU runs in place.

:class:`BandedSRResNet` adds no state to ``SRResNet``: ``img2img.nn.cpu.optimize`` changes a
built network's class to it when its last stage has that form (:func:`fits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..srresnet import SRResNet
from .polyphase import PhaseConv2d


def fits(model: nn.Module) -> bool:
    """Whether ``model`` is a plain SRResNet whose tail is a ``PhaseConv2d`` and whose last
    upsampler stage is conv, PixelShuffle(2), single-slope PReLU (what the rewrite needs)."""
    if type(model) is not SRResNet or not isinstance(model.tail, PhaseConv2d):
        return False
    stage = list(model.upsample)[-3:]
    return (len(stage) == 3 and type(stage[0]) is nn.Conv2d and stage[0].kernel_size == (3, 3)
            and stage[0].padding == (1, 1) and stage[0].stride == (1, 1)
            and isinstance(stage[1], nn.PixelShuffle) and stage[1].upscale_factor == 2
            and isinstance(stage[2], nn.PReLU) and stage[2].num_parameters == 1)


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


class BandedSRResNet(SRResNet):
    """SRResNet with the CPU forward of the module docstring (same parameters and keys)."""

    # Rows (at the last upsampler's input size) of the last stage computed at once in CPU
    # inference: 96 keeps an x4 tile's largest tensor at a quarter of its whole size.
    band_rows = 96
    tail: PhaseConv2d

    def forward(self, x: Tensor) -> Tensor:
        """NCHW in [-1, 1] -> NC(sH)(sW), as ``SRResNet.forward``."""
        lean = x.device.type == "cpu" and not torch.is_grad_enabled()
        if lean:
            x = x.contiguous(memory_format=torch.channels_last)
        head = self.head(x)
        feat = head + self.fuse(self.blocks(head))
        halo = self.tail.phase_padding() if lean else None
        if halo is not None:
            out = self._last_stage_in_bands(self.upsample[:-3](feat), halo)
        else:
            phases = self.upsample[:-2](feat)  # up to the last conv: its shuffle is skipped
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
