"""Output convolutions with few channels (64 -> 3, 7x7 or 9x9), computed on 2x2 phases.

oneDNN's CPU convolution vectorises over output channels 16 at a time, so a 3-channel
output conv runs at 3/16 of the machine's rate in forward and backward. Splitting the input
into its four 2x2 phases (``pixel_unshuffle``: 64 -> 256 channels at half the size) turns
the k x k conv into a (k//2 + 1)-tap one (7x7 -> 4x4) from 256 to 12 channels (one per
output channel and output phase), whose outputs ``pixel_shuffle`` puts back in place. It
does ~1.3x the multiply-adds at 4x the vector use. Measured on 2 Zen 4 cores, 64 -> 3
7x7 at 256x256, forward + backward: fp32 198 -> 97 ms, bf16 106 -> 58 ms (the residual
generators call it six times per CycleGAN step).

The weights are rearranged on every call (about ten thousand numbers), so the parameters
and the state dict are those of ``nn.Conv2d``, and gradients reach them through the
rearrangement. Used on the CPU; elsewhere (and inside ``img2img.nn.cpu.direct``) it is
``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def phase_taps(k: int) -> Tensor:
    """Index (2, 2, m) of the original tap used by (output phase, input phase, phase tap),
    ``m = k // 2 + 1``; ``k`` (one past the last tap) where none is."""
    m = k // 2 + 1
    idx = torch.full((2, 2, m), k, dtype=torch.long)
    for p in range(2):
        for q in range(2):
            for j in range(m):
                t = 2 * j + q - p
                if 0 <= t < k:
                    idx[p, q, j] = t
    return idx


_TAPS: dict[int, Tensor] = {}


def _taps(k: int) -> Tensor:
    """:func:`phase_taps` of ``k``, computed once (a CPU index tensor, never written; a
    normal tensor even when first asked for under inference mode, so training can use it)."""
    if k not in _TAPS:
        with torch.inference_mode(False):
            _TAPS[k] = phase_taps(k)
    return _TAPS[k]


def phase_weight(weight: Tensor, idx: Tensor) -> Tensor:
    """(K, C, k, k) -> (4K, 4C, m, m): the conv on 2x2 phases (channel orders of
    ``pixel_shuffle`` / ``pixel_unshuffle``); ``idx`` from :func:`phase_taps`."""
    k_out, c_in = weight.shape[:2]
    m = idx.shape[-1]
    padded = F.pad(weight, (0, 1, 0, 1))  # tap k is zero
    w = padded[:, :, idx[:, :, :, None, None, None], idx[None, None, None, :, :, :]]
    # (K, C, py, qy, jy, px, qx, jx) -> (K, py, px, C, qy, qx, jy, jx)
    return w.permute(0, 2, 5, 1, 3, 6, 4, 7).reshape(4 * k_out, 4 * c_in, m, m)


def conv_on_phases(z: Tensor, weight: Tensor, idx: Tensor,
                   padding: int | tuple[int, int] = 0) -> Tensor:
    """The conv (no bias, stride 1, square kernel) of ``pixel_shuffle(z, 2)``, computed on
    the phases ``z``; ``padding`` (rows, columns) in phase pixels; ``idx`` from
    :func:`phase_taps`."""
    return F.pixel_shuffle(F.conv2d(z, phase_weight(weight, idx), padding=padding), 2)


def _add_bias(y: Tensor, bias: Tensor | None) -> Tensor:
    return y if bias is None else y + bias.view(1, -1, 1, 1).to(y.dtype)


def phase_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, idx: Tensor) -> Tensor:
    """``F.conv2d(x, weight, bias)`` (stride 1, no padding, square kernel) on 2x2 phases;
    ``idx`` from :func:`phase_taps`."""
    k, m = weight.shape[-1], idx.shape[-1]
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    hq, wq = -(-h // 2), -(-w // 2)
    ph, pw = 2 * (hq + m - 1) - x.shape[-2], 2 * (wq + m - 1) - x.shape[-1]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    y = conv_on_phases(F.pixel_unshuffle(x, 2), weight, idx)
    if (2 * hq, 2 * wq) != (h, w):
        y = y[:, :, :h, :w]
    return _add_bias(y, bias)


def fits(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` that :class:`PhaseConv2d` can stand in for
    (square kernel, stride 1, no dilation or groups, zero padding)."""
    return (type(conv) is nn.Conv2d and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


class PhaseConv2d(nn.Conv2d):
    """``nn.Conv2d`` (square kernel, stride 1) that runs on 2x2 phases on the CPU.

    It adds no state to ``nn.Conv2d`` (only the forward differs), so a built conv becomes one
    by changing its class (``img2img.nn.cpu.optimize``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        return phase_conv2d(x, self.weight, self.bias, _taps(self.kernel_size[0]))

    def phase_padding(self) -> int | None:
        """Zero phase rows (and columns) the conv on phases pads with, or None where it does
        not run on phases (a padding other than "same" with an even amount)."""
        k, (ph, pw) = self.kernel_size[0], self.padding
        if ph != pw or ph % 2 or k != 2 * ph + 1:
            return None
        return ph // 2

    def forward_phases(self, z: Tensor) -> Tensor:
        """``forward(pixel_shuffle(z, 2))`` for ``z`` already split into 2x2 phases (4C
        channels at half size, e.g. a sub-pixel upsampler's conv output before its shuffle):
        a "same" conv with even padding then needs neither the shuffle nor the padded copy
        nor the unshuffle, three copies of the largest tensor of an upscaler."""
        pad = self.phase_padding() if z.device.type == "cpu" else None
        if pad is None:
            return self.forward(F.pixel_shuffle(z, 2))
        taps = _taps(self.kernel_size[0])
        return _add_bias(conv_on_phases(z, self.weight, taps, pad), self.bias)

    def forward_phase_rows(self, z: Tensor) -> Tensor:
        """Rows of :meth:`forward_phases` from a band of phase rows that carries its own halo
        of ``phase_padding()`` rows above and below (zeros beyond the image): the band's
        output, ``2 * (rows - 2 * halo)`` rows high. Only where ``phase_padding()`` is set."""
        pad = self.phase_padding()
        if pad is None:
            raise RuntimeError("forward_phase_rows needs the conv to run on phases")
        taps = _taps(self.kernel_size[0])
        return _add_bias(conv_on_phases(z, self.weight, taps, (0, pad)), self.bias)
