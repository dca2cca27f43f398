"""The ResNet generator's upsampling half in channels-last layout, for CPU inference.

In NCHW, PyTorch's CPU transposed convolution is several times slower than oneDNN's
channels-last (NHWC) one, and converting each output back to NCHW is a slow transpose
of the largest tensors of the network. So in inference (no autograd) on the CPU the
transposed convolutions take their input in channels-last and leave their output so, and
the layers after them keep that layout: instance norm as the per-image batch norm whose
channels-last kernel PyTorch has (``nn.InstanceNorm2d`` itself returns NCHW from a
channels-last input, slowly), ReLU, reflection padding and the output convolution (on
2x2 phases, ``polyphase``) take any layout. Measured on 2 cores of an Intel Xeon with AMX
(family 6 model 167), resnet_9blocks decoder (256 x 128x128 in, 512x512 out), fp32: the
two transposed convs 61 + 89 -> 27 + 29 ms, the two instance norms 9 + 28 -> 3 + 11 ms,
the whole decoder 249 -> 142 ms of a 1.24 s image.

The channels-last statistics are summed in one float pass, not pairwise: the normalised
values differ from ``nn.InstanceNorm2d``'s by up to ~1e-4 (512x512 maps), the generator's
output by ~2e-6. Training keeps NCHW (forward + backward of the transposed convs measured
no faster in channels-last), as does every other device: on 2 Zen 3 cores the second one
(128 -> 64 channels, 128x128 in) ran its forward in 19 vs 48 ms channels-last, but its
weight gradient in 214 vs 42 ms, and converting a 64 x 256x256 map between the layouts
costs 7-24 ms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _cpu_inference(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 4 and not torch.is_grad_enabled()


def is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D tensor laid out channels-last and not also NCHW-contiguous
    (one channel or one pixel is both)."""
    return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


class ChannelsLastConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` run in channels-last in CPU inference (its output stays
    channels-last); no state of its own, so a built layer becomes one by changing its
    class."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if _cpu_inference(x):
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x, output_size)


def fits_norm(norm: nn.Module) -> bool:
    """Whether ``norm`` is an instance norm :class:`ChannelsLastInstanceNorm2d` computes
    the same as (no affine parameters, no running statistics: the toolkit's)."""
    return (type(norm) is nn.InstanceNorm2d and not norm.affine
            and not norm.track_running_stats)


class ChannelsLastInstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (no affine, no running stats) that keeps a channels-last input
    channels-last in CPU inference: each image normalised by ``F.batch_norm`` on its own
    statistics; otherwise the parent's forward."""

    def forward(self, x: Tensor) -> Tensor:
        if not (_cpu_inference(x) and is_channels_last(x)):
            return super().forward(x)
        out = [F.batch_norm(image, None, None, training=True, eps=self.eps)
               for image in x.split(1)]
        return out[0] if len(out) == 1 else torch.cat(out)
