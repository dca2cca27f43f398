"""A 2-D convolution run as oneDNN's int8 convolution on x86 CPUs (VNNI, AMX tiles).

The input is rounded per tensor to uint8 on a calibrated range (asymmetric: the range
always holds 0, so zero padding stays exact), the weights to int8 per output channel
(symmetric), and oneDNN sums the products in int32 and scales them back to float32 with
the bias added, so the convolution's *output* is never rounded to 8 bits. That is what
keeps the instance norm after each convolution of the ResNet generators faithful: it
rescales every channel to unit variance, so an 8-bit grid on a weak channel of the
output would become noise. Measured on a trained resnet_9blocks, 12 photos at 512x512,
2 cores of an Intel Xeon with AMX (family 6 model 167): PyTorch's quantized modules,
whose outputs are quint8, gave 20.5 dB worst PSNR against fp32 with only the 7x7 stem
quantized; float outputs are what ONNX Runtime's QDQ convolutions give too.

A 256-channel 3x3 convolution on a 128x128 map there: 4.0-4.9 ms against 61 ms in fp32,
plus 1.2 ms to round its input.
"""

from __future__ import annotations

import platform
import warnings

import torch
from torch import Tensor, nn

_X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")  # platform.machine() of x86


def available() -> bool:
    """Whether this PyTorch build runs oneDNN's int8 convolution on this CPU (x86 only)."""
    return (platform.machine().lower() in _X86_MACHINES and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qconv2d_pointwise"))


def input_grid(low: float, high: float) -> tuple[float, int]:
    """The uint8 scale and zero point of activations ranging over ``[low, high]``
    (widened to hold 0)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max(high - low, 1e-8) / 255.0
    return scale, int(min(255, max(0, round(-low / scale))))


class Int8Conv2d(nn.Module):
    """``conv`` (zero padding, groups of any size) as an int8 convolution with float32
    output, for inputs within ``[low, high]`` (values outside are clipped to it); weights
    within ``[-weight_max, weight_max]`` (127, or 63 where the CPU's int8 products saturate
    in 16 bits). CPU inference only: the weights are packed for oneDNN once."""

    def __init__(self, conv: nn.Conv2d, low: float, high: float, weight_max: int = 127) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"Int8Conv2d needs explicit zero padding, got "
                             f"{conv.padding_mode} {conv.padding}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.scale, self.zero_point = input_grid(low, high)
        w = conv.weight.detach().float().cpu()
        self.w_scale = (w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / weight_max).double()
        qw = (w / self.w_scale.float()[:, None, None, None]).round()
        qw = qw.clamp(-weight_max, weight_max).to(torch.int8)
        self.w_zero_point = torch.zeros(self.out_channels, dtype=torch.long)
        self.bias = None if conv.bias is None else conv.bias.detach().float().cpu()
        self.packed = torch.ops.onednn.qconv_prepack(
            qw, self.w_scale, self.scale, self.zero_point, self.stride, self.padding,
            self.dilation, self.groups, None)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings():  # quint8 tensors are deprecated; only its rounding
            warnings.simplefilter("ignore", UserWarning)  # kernel is used (1.2 vs 4.9 ms)
            q = torch.quantize_per_tensor(x, self.scale, self.zero_point,
                                          torch.quint8).int_repr()
        return torch.ops.onednn.qconv2d_pointwise(
            q, self.scale, self.zero_point, self.packed, self.w_scale, self.w_zero_point,
            self.bias, self.stride, self.padding, self.dilation, self.groups, 1.0, 0,
            torch.float32, "none", [], "")

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={tuple(self.stride)}, "
                f"padding={tuple(self.padding)}, input scale={self.scale:.4g}, "
                f"zero point={self.zero_point}")
