"""``--precision int8`` for the ResNet generators in PyTorch, through oneDNN's int8
convolutions (x86 CPUs; VNNI or AMX where the CPU has them).

Every convolution before the first upsampling layer (the 7x7 stem, the two stride-2
downsampling convs and the residual blocks' 3x3 convs) becomes an
:class:`~img2img.nn.cpu.int8_conv.Int8Conv2d`: uint8 input on the range its input took on
the calibration crops, int8 weights per output channel, float32 output. Everything else
(padding, instance norms, ReLUs, the residual sums, the whole decoder and the output conv)
stays in float, as in ONNX Runtime's recipe (:mod:`img2img.inference.quantize` says why),
and runs channels-last, the layout oneDNN's convolutions take and give. Measured on 2 cores
of an Intel Xeon with AMX (family 6 model 167), a trained resnet_9blocks on 12 photos at
512x512, 2026-12-06: 0.36 s per image against 1.19 s in fp32 with the toolkit's CPU
kernels and 0.69 s in ONNX Runtime's int8.

The activation ranges are measured on the calibration crops by running the network up to
its decoder in order, each convolution quantized on the range its input took before the
next one runs (so later ranges are those of the int8 network, and calibrating costs an
int8 pass, not a float one), and cached in the output folder as JSON (numbers only), keyed
like ONNX Runtime's cached models.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from img2img.data.io import atomic_write_bytes
from img2img.inference.torch_calibration import batches
from img2img.nn.cpu import accelerate
from img2img.nn.cpu.channels_last import ChannelsLastInstanceNorm2d, fits_norm, is_channels_last
from img2img.nn.cpu.int8_conv import Int8Conv2d, available
from img2img.nn.resnet import ResnetGenerator

__all__ = ["RECIPE", "available", "fits", "int8_resnet", "quantized"]

log = logging.getLogger(__name__)

RECIPE = "torch-onednn-u8s8-perchannel-minmax-crop256-floatout-v1"  # part of the cache key
UPSAMPLING = (nn.ConvTranspose2d, nn.Upsample)

Ranges = dict[str, tuple[float, float]]


def fits(model: nn.Module) -> bool:
    """Whether ``model`` is a ResNet generator this module quantizes (and oneDNN's int8
    convolution runs on this CPU)."""
    return isinstance(model, ResnetGenerator) and available()


def _head_length(model: ResnetGenerator) -> int:
    """How many layers of ``model.model`` come before its first upsampling layer."""
    return next(i for i, m in enumerate(model.model) if isinstance(m, UPSAMPLING))


def _head_convs(model: ResnetGenerator) -> dict[str, nn.Conv2d]:
    """The convolutions before the first upsampling layer, by qualified name."""
    head = model.model[:_head_length(model)]
    return {f"model.{name}": m for name, m in head.named_modules() if isinstance(m, nn.Conv2d)}


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
    setattr(model.get_submodule(parent), child, module)


def quantized(model: ResnetGenerator, ranges: Ranges | None, inputs: list[np.ndarray],
              weight_max: int = 127) -> tuple[nn.Module, Ranges]:
    """``model`` (in place, eval mode) with its head convolutions in int8, the layers
    between them channels-last and the rest accelerated for the CPU; and the ranges used:
    ``ranges``, or measured on ``inputs`` (float network inputs, N x C x H x W) by running
    the head, convolution by convolution in int8 (the decoder never runs)."""
    accelerate(model.eval())
    head_length = _head_length(model)
    for m in model.model[:head_length].modules():
        if fits_norm(m):  # keeps the convolutions' channels-last output so
            m.__class__ = ChannelsLastInstanceNorm2d
    convs = _head_convs(model)
    if ranges is None:
        standins = {name: _Calibrating(conv, weight_max) for name, conv in convs.items()}
        for name, standin in standins.items():
            _replace(model, name, standin)
        with torch.inference_mode():
            for batch in batches(inputs):
                model.model[:head_length](torch.from_numpy(batch))
        ranges = {name: (c.low, c.high) for name, c in standins.items()}
        layers = {name: c.int8 for name, c in standins.items()}
    else:
        layers = {name: Int8Conv2d(conv, *ranges[name], weight_max)
                  for name, conv in convs.items()}
    for name, layer in layers.items():
        if layer is None:
            raise ValueError(f"{name}: not run in calibration")
        _replace(model, name, layer)
    model.int8 = True  # the backend reports int8 and adds no autocast
    return model, ranges
def _read_ranges(path: Path, names: set[str]) -> Ranges | None:
    """Cached ranges for exactly ``names`` (finite numbers), or None."""
    try:
        data = json.loads(path.read_text())
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    ok = set(ranges) == names and all(math.isfinite(a) and math.isfinite(b) and a <= b
                                      for a, b in ranges.values())
    return ranges if ok else None


def int8_resnet(model: ResnetGenerator, inputs: list[np.ndarray], cache: Path,
                note: str, weight_max: int = 127) -> tuple[nn.Module, bool]:
    """``model`` quantized by :func:`quantized` on ranges read from ``cache`` (JSON) or
    measured on ``inputs`` and written there (``note`` says how); and whether they were
    read."""
    cached = _read_ranges(cache, set(_head_convs(model))) if cache.is_file() else None
    net, ranges = quantized(model, cached, inputs, weight_max)
    if cached is None:
        body = {"recipe": RECIPE, "note": note, "ranges": {k: list(v) for k, v in ranges.items()}}
        atomic_write_bytes(cache, json.dumps(body, indent=1).encode())
    return net, cached is not None
