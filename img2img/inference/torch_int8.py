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

The activation ranges are measured by forward pre-hooks on those convolutions, running the
float network up to its decoder, and cached in the output folder as JSON (numbers only),
keyed like ONNX Runtime's cached models.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.data.io import atomic_write_bytes
from img2img.inference.torch_calibration import batches
from img2img.nn.cpu import accelerate
from img2img.nn.cpu.channels_last import ChannelsLastInstanceNorm2d, fits_norm
from img2img.nn.cpu.int8_conv import Int8Conv2d, available
from img2img.nn.resnet import ResnetGenerator

__all__ = ["RECIPE", "available", "fits", "int8_resnet", "measure_ranges", "quantized"]

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


def measure_ranges(model: ResnetGenerator, inputs: list[np.ndarray]) -> Ranges:
    """The (min, max) each head convolution's input takes over ``inputs`` (float network
    inputs, N x C x H x W), the decoder never run."""
    found: dict[str, list[torch.Tensor]] = {}

    def hook(name: str) -> Any:
        def record(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            low, high = torch.aminmax(args[0].detach())
            found.setdefault(name, []).append(torch.stack([low, high]).float())
        return record

    head = model.model[:_head_length(model)]
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in _head_convs(model).items()]
    try:
        with torch.inference_mode():
            for batch in batches(inputs):
                head(torch.from_numpy(batch))
    finally:
        for h in handles:
            h.remove()
    return {name: (float(torch.stack(v)[:, 0].min()), float(torch.stack(v)[:, 1].max()))
            for name, v in found.items()}


def quantized(model: ResnetGenerator, ranges: Ranges, weight_max: int = 127) -> nn.Module:
    """``model`` (in place, eval mode) with its head convolutions in int8 on ``ranges``,
    the layers between them channels-last, and the rest accelerated for the CPU."""
    accelerate(model.eval())
    convs = _head_convs(model)
    for name, conv in convs.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        low, high = ranges[name]
        setattr(parent, child, Int8Conv2d(conv, low, high, weight_max))
    for m in model.model[:_head_length(model)].modules():
        if fits_norm(m):  # keeps the convolutions' channels-last output so
            m.__class__ = ChannelsLastInstanceNorm2d
    model.int8 = True  # the backend reports int8 and adds no autocast
    return model


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
    names = set(_head_convs(model))
    ranges = _read_ranges(cache, names) if cache.is_file() else None
    reused = ranges is not None
    if ranges is None:
        ranges = measure_ranges(accelerate(model.eval()), inputs)
        body = {"recipe": RECIPE, "note": note, "ranges": {k: list(v) for k, v in ranges.items()}}
        atomic_write_bytes(cache, json.dumps(body, indent=1).encode())
    return quantized(model, ranges, weight_max), reused
