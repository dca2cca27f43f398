"""``--precision int8`` in PyTorch, through oneDNN's int8 convolutions (x86 CPUs; VNNI or
AMX where the CPU has them), for the ResNet generators and SRResNet.

Convolutions become :class:`~img2img.nn.cpu.int8_conv.Int8Conv2d`: uint8 input on the range
its input took on the calibration crops, int8 weights per output channel, float32 output.

- ResNet generators: every convolution before the first upsampling layer (the 7x7 stem,
  the two stride-2 downsampling convs, the residual blocks' 3x3 convs). Padding, instance
  norms, ReLUs, the residual sums, the decoder and the output conv stay in float (as in
  ONNX Runtime's recipe, :mod:`img2img.inference.quantize` says why) and run channels-last,
  the layout oneDNN's convolutions take and give.
- SRResNet: every convolution, batch norms (eval) folded into the conv before them; the
  9x9 output conv runs on the 2x2 phases of the last upsampler (``nn.cpu.polyphase``: a
  5x5 conv to 12 channels, whose shuffle is the output), since that stage's single-slope
  PReLU commutes with its pixel shuffle. PReLUs, shuffles, sums and the bicubic skip stay
  in float.

Measured on 2 cores of an Intel Xeon with AMX (family 6 model 167), 2026-12-06, against
fp32 with the toolkit's CPU kernels: a trained resnet_9blocks on 12 photos at 512x512,
0.41 s per image against 1.14-1.18 s (ONNX Runtime's int8: 0.69 s), 51.5 / 53.8 dB worst /
mean PSNR against fp32 (ONNX Runtime's recipe: 39.1 / 41.3); the bundled x4 SR model on
14 CSet14 crops of 128x128: 35 against 89 ms per crop, 41.1 / 47.0 dB (output conv in
float: 54 ms, 41.2 / 47.4 dB).

The activation ranges are measured on the calibration crops by running the network in
order, each convolution quantized on the range its input took before the next one runs (so
later ranges are those of the int8 network, and calibrating costs an int8 pass, not a float
one), and cached in the output folder as JSON (numbers only), keyed like ONNX Runtime's
cached models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from img2img.data.io import atomic_write_bytes
from img2img.inference.torch_calibration import BATCH_PIXELS, batches
from img2img.nn.cpu import accelerate
from img2img.nn.cpu.channels_last import ChannelsLastInstanceNorm2d, fits_norm, is_channels_last
from img2img.nn.cpu.int8_conv import Int8Conv2d, available
from img2img.nn.cpu.polyphase import phase_taps, phase_weight
from img2img.nn.resnet import ResnetGenerator
from img2img.nn.srresnet import SRResNet

__all__ = ["RECIPE", "available", "fits", "int8_network", "quantized"]

RECIPE = "torch-onednn-u8s8-perchannel-minmax-crop256-floatout-v2"  # part of the cache key
UPSAMPLING = (nn.ConvTranspose2d, nn.Upsample)

Ranges = dict[str, tuple[float, float]]
# What quantizing one architecture needs: the float convs to quantize by the qualified name
# their int8 layer takes, and what calibration runs (the network, or its part they are in).
Plan = tuple[dict[str, nn.Conv2d], Callable[[Tensor], object]]


def fits(model: nn.Module) -> bool:
    """Whether ``model`` is a generator this module quantizes (and oneDNN's int8
    convolution runs on this CPU)."""
    if not available():
        return False
    if isinstance(model, ResnetGenerator):
        return True
    return type(model) is SRResNet and _sr_fits(model)


# --------------------------------------------------------------------------- ResNet


def _head_length(model: ResnetGenerator) -> int:
    """How many layers of ``model.model`` come before its first upsampling layer."""
    return next(i for i, m in enumerate(model.model) if isinstance(m, UPSAMPLING))


def _resnet_plan(model: ResnetGenerator) -> Plan:
    length = _head_length(model)
    head = model.model[:length]
    for m in head.modules():
        if fits_norm(m):  # keeps the convolutions' channels-last output so
            m.__class__ = ChannelsLastInstanceNorm2d
    convs = {f"model.{name}": m for name, m in head.named_modules() if isinstance(m, nn.Conv2d)}
    return convs, lambda x: model.model[:length](x)  # sliced when run: after the swaps


# --------------------------------------------------------------------------- SRResNet


def _sr_fits(model: SRResNet) -> bool:
    """An SRResNet whose output conv runs on phases and whose last upsampler stage is
    conv, shuffle, single-slope PReLU (what ``nn.cpu.banded`` also needs)."""
    tail, stage = model.tail, list(model.upsample)[-2:]
    if not (isinstance(tail, nn.Conv2d) and isinstance(tail.padding, tuple) and len(stage) == 2
            and isinstance(stage[0], nn.PixelShuffle) and stage[0].upscale_factor == 2):
        return False
    return (tail.padding_mode == "zeros"
            and tail.kernel_size[0] == tail.kernel_size[1] == 2 * tail.padding[0] + 1
            and tail.padding[0] == tail.padding[1] and tail.padding[0] % 2 == 0
            and tail.stride == (1, 1) and tail.groups == 1 and tail.dilation == (1, 1)
            and isinstance(stage[1], nn.PReLU) and stage[1].num_parameters == 1)


def _fold_norms(seq: nn.Sequential) -> None:
    """Each eval batch norm of ``seq`` folded into the conv before it (now an Identity)."""
    for i in range(1, len(seq)):
        if isinstance(seq[i], nn.BatchNorm2d) and type(seq[i - 1]) is nn.Conv2d:
            seq[i - 1] = fuse_conv_bn_eval(seq[i - 1], seq[i])
            seq[i] = nn.Identity()


class Int8SRResNet(SRResNet):
    """SRResNet's forward with its output conv on the last upsampler's phases (module
    docstring); ``tail_phases`` is that conv (an int8 layer once quantized)."""

    tail_phases: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        """NCHW in [-1, 1] -> NC(sH)(sW), as ``SRResNet.forward``."""
        x = x.contiguous(memory_format=torch.channels_last)
        head = self.head(x)
        feat = head + self.fuse(self.blocks(head))
        phases = self.upsample[-1](self.upsample[:-2](feat))  # PReLU before the shuffle
        out = F.pixel_shuffle(self.tail_phases(phases), 2)
        if self.tail.bias is not None:
            out = out + self.tail.bias.view(1, -1, 1, 1)
        if self.residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
        return out.contiguous()


def _sr_plan(model: SRResNet) -> Plan:
    for block in model.blocks:
        _fold_norms(block.body)
    _fold_norms(model.fuse)
    tail = model.tail
    k, pad = tail.kernel_size[0], tail.padding[0] // 2
    phases = nn.Conv2d(4 * tail.in_channels, 4 * tail.out_channels, k // 2 + 1,
                       padding=pad, bias=False)
    with torch.no_grad():
        phases.weight.copy_(phase_weight(tail.weight.detach(), phase_taps(k)))
    model.__class__ = Int8SRResNet
    model.tail_phases = phases
    convs = {name: m for name, m in model.named_modules()
             if type(m) is nn.Conv2d and name != "tail"}
    return convs, model


# --------------------------------------------------------------------------- quantizing


class _Calibrating(nn.Module):
    """Stands in for a head convolution while the ranges are measured: widens its range by
    every input it is given and runs the int8 convolution on that range, so the layers
    after it see what the int8 network gives them (calibrating in order, as the network
    runs, costs an int8 pass instead of a float one)."""

    def __init__(self, conv: nn.Conv2d, weight_max: int) -> None:
        super().__init__()
        self.conv, self.weight_max = conv, weight_max
        self.low, self.high = math.inf, -math.inf
        self.int8: Int8Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # over the memory as it lies: on a channels-last map 2 ms instead of 54 (8 x 256 x
        # 66 x 66, Xeon AMX)
        flat = x.permute(0, 2, 3, 1) if is_channels_last(x) else x
        low, high = (float(v) for v in torch.aminmax(flat.reshape(-1)))
        if self.int8 is None or low < self.low or high > self.high:
            self.low, self.high = min(low, self.low), max(high, self.high)
            self.int8 = Int8Conv2d(self.conv, self.low, self.high, self.weight_max)
        return self.int8(x)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _plan(model: nn.Module) -> Plan:
    model.eval()
    if isinstance(model, ResnetGenerator):
        accelerate(model)
        return _resnet_plan(model)
    if type(model) is SRResNet and _sr_fits(model):
        return _sr_plan(model)
    raise TypeError(f"{type(model).__name__}: not quantized in PyTorch")


def quantized(model: nn.Module, ranges: Ranges | None, inputs: list[np.ndarray],
              weight_max: int = 127) -> tuple[nn.Module, Ranges, bool]:
    """``model`` (in place, eval mode; one that :func:`fits`) with the convolutions of the
    module docstring in int8, the rest as the CPU runs it fastest; the ranges used; and
    whether they were ``ranges`` (given for exactly these convolutions) rather than measured
    on ``inputs`` (float network inputs, N x C x H x W) by running the network (the
    ResNet's decoder never runs), convolution by convolution in int8."""
    convs, run = _plan(model)
    reused = ranges is not None and set(ranges) == set(convs)
    if reused:
        assert ranges is not None
        layers: dict[str, Int8Conv2d | None] = {
            name: Int8Conv2d(conv, *ranges[name], weight_max) for name, conv in convs.items()}
    else:
        standins = {name: _Calibrating(conv, weight_max) for name, conv in convs.items()}
        for name, standin in standins.items():
            _replace(model, name, standin)
        # an upscaler's activations grow with its output: batches of as many output pixels
        # (an x4 SRResNet's 8 tiles in one batch peaked at 4.4 GB, one by one at 1.5)
        budget = BATCH_PIXELS // int(getattr(model, "scale", 1)) ** 2
        with torch.inference_mode():
            for batch in batches(inputs, budget):
                run(torch.from_numpy(batch))
        ranges = {name: (c.low, c.high) for name, c in standins.items()}
        layers = {name: c.int8 for name, c in standins.items()}
    for name, layer in layers.items():
        if layer is None:
            raise ValueError(f"{name}: not run in calibration")
        _replace(model, name, layer)
    model.int8 = True  # the backend reports int8 and adds no autocast
    return model, ranges, reused


def _read_ranges(path: Path) -> Ranges | None:
    """Cached ranges (finite, low <= high), or None."""
    try:
        data = json.loads(path.read_text())
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    ok = all(math.isfinite(a) and math.isfinite(b) and a <= b for a, b in ranges.values())
    return ranges if ok else None


def int8_network(model: nn.Module, inputs: list[np.ndarray], cache: Path,
                 note: str, weight_max: int = 127) -> tuple[nn.Module, bool]:
    """``model`` quantized by :func:`quantized` on ranges read from ``cache`` (JSON) or
    measured on ``inputs`` and written there (``note`` says how); and whether they were
    read."""
    cached = _read_ranges(cache) if cache.is_file() else None
    net, ranges, reused = quantized(model, cached, inputs, weight_max)
    if not reused:
        body = {"recipe": RECIPE, "note": note, "ranges": {k: list(v) for k, v in ranges.items()}}
        atomic_write_bytes(cache, json.dumps(body, indent=1).encode())
    return net, reused
