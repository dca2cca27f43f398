"""Forwards of the published generators written from their upstream code, for checking imports.

:func:`reference_forward` runs a checkpoint's *original* state dict -- upstream key names,
as :func:`img2img.foreign.load.load_foreign` returns them, before any conversion -- with
``torch.nn.functional`` alone, in the upstream layer order. It shares nothing with the
toolkit's ``nn`` modules, so when the converted network gives the same output on the same
input, the renaming, the architecture numbers read from the shapes and the toolkit's layers
all agree with the original. Every layer is looked up by its upstream name; a tensor the
walk needs and does not find raises :class:`ForeignCheckpointError`.

What each upstream computes (eval mode: dropout is the identity, BatchNorm uses its running
statistics; every norm ``eps`` is 1e-5):

- reference ResnetGenerator (pytorch-CycleGAN-and-pix2pix), one Sequential ``model``:
  reflection pad 3, 7x7 conv, norm, ReLU; two (3x3 stride-2 conv, norm, ReLU); ResnetBlocks
  ``model.K.conv_block`` = x + [pad 1, conv, norm, ReLU, (Dropout), pad 1, conv, norm];
  two (3x3 stride-2 transposed conv with output padding 1, norm, ReLU); pad 3, 7x7 conv,
  tanh. A norm with running statistics is BatchNorm; without any tensors it is a
  parameter-free InstanceNorm when the conv before it has a bias (the reference gives convs
  a bias exactly for instance norm) and no norm otherwise.
- reference UnetGenerator: nested blocks ``model.model.1.model.3.model...``. The outermost
  is down conv, inner block, ReLU, transposed conv, tanh; the others are LeakyReLU 0.2,
  down conv (4x4, stride 2, padding 1), norm, inner block, ReLU, transposed conv (4x4,
  stride 2, padding 1), norm, and return ``cat([input, that], 1)``; the innermost has no
  down norm and no inner block. The reference's LeakyReLU is in place, so by the time
  ``torch.cat`` reads the block's input it holds the activated values; this forward passes
  LeakyReLU(input) on too (the ReLU the concatenation goes into makes either give the same
  output).
- RRDBNet (ESRGAN, Real-ESRGAN, BSRGAN), in BasicSR, ESRGAN "trunk" and original ESRGAN key
  layouts: optional pixel-unshuffle (BasicSR's channel order, ``c * r * r + i * r + j``)
  when the first conv takes 4x / 16x the output channels; 3x3 first conv; RRDBs of three
  residual dense blocks (five convs on the concatenation of all earlier features, LeakyReLU
  0.2 after the first four, ``0.2 * x5 + x``) with ``0.2 * out + x`` around each RRDB;
  trunk conv added to the first conv's output; per upsampling conv a nearest 2x upsample,
  the conv and LeakyReLU 0.2; HR conv, LeakyReLU, last conv.
- MSRResNet (BasicSR and mmsr layouts): first conv + LeakyReLU 0.1; residual blocks
  x + conv2(ReLU(conv1(x))); pixel-shuffle upsampling (two 2x stages for x4, one for x2 /
  x3) each followed by LeakyReLU 0.1; HR conv, LeakyReLU 0.1, last conv; plus the input
  upsampled bilinearly (``align_corners=False``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .family import Imported, StateDict
from .load import ForeignCheckpointError
from .reference import RESNET_LAYOUT, UNET_LAYOUT

_EPS = 1e-5


class _Weights:
    """The original tensors, looked up by upstream layer name."""

    def __init__(self, state: StateDict, what: str) -> None:
        self.state, self.what = state, what
        self.layers = {k.rpartition(".")[0] for k in state}

    def has(self, layer: str) -> bool:
        """Whether ``layer`` is a conv (a 4-D weight; a norm's weight is 1-D)."""
        w = self.state.get(f"{layer}.weight")
        return w is not None and w.dim() == 4

    def weight(self, layer: str) -> Tensor:
        key = f"{layer}.weight"
        if key not in self.state:
            raise ForeignCheckpointError(
                f"the {self.what} forward needs {key!r}, which these weights lack")
        return self.state[key].float()

    def bias(self, layer: str) -> Tensor | None:
        b = self.state.get(f"{layer}.bias")
        return None if b is None else b.float()

    def conv(self, layer: str, x: Tensor, stride: int = 1, padding: int = 1) -> Tensor:
        return F.conv2d(x, self.weight(layer), self.bias(layer), stride=stride, padding=padding)

    def conv_t(self, layer: str, x: Tensor, padding: int, output_padding: int = 0) -> Tensor:
        return F.conv_transpose2d(x, self.weight(layer), self.bias(layer), stride=2,
                                  padding=padding, output_padding=output_padding)

    def norm(self, layer: str, x: Tensor, after: str) -> Tensor:
        """The reference's norm at ``layer``; ``after`` is the conv it follows."""
        s = self.state
        if f"{layer}.running_mean" in s:
            return F.batch_norm(x, s[f"{layer}.running_mean"].float(),
                                s[f"{layer}.running_var"].float(), self.weight(layer),
                                self.bias(layer), training=False, eps=_EPS)
        if layer in self.layers:
            raise ForeignCheckpointError(
                f"the {self.what} forward finds tensors at {layer!r} that none of the "
                "reference's norms has")
        if self.bias(after) is not None:
            return F.instance_norm(x, eps=_EPS)
        return x


# --- reference CycleGAN / pix2pix ------------------------------------------------------------


def _resnet(w: _Weights, x: Tensor) -> Tensor:
    t = F.pad(x, (3, 3, 3, 3), mode="reflect")
    t = F.relu(w.norm("model.2", w.conv("model.1", t, padding=0), after="model.1"))
    i = 4
    for _ in range(2):  # downsampling: conv, norm, ReLU
        t = F.relu(w.norm(f"model.{i + 1}", w.conv(f"model.{i}", t, stride=2), f"model.{i}"))
        i += 3
    while w.has(f"model.{i}.conv_block.1"):
        t = t + _resnet_block(w, f"model.{i}.conv_block", t)
        i += 1
    for _ in range(2):  # upsampling: transposed conv, norm, ReLU
        up = w.conv_t(f"model.{i}", t, padding=1, output_padding=1)
        t = F.relu(w.norm(f"model.{i + 1}", up, f"model.{i}"))
        i += 3
    t = F.pad(t, (3, 3, 3, 3), mode="reflect")  # model.i; the conv at i + 1, tanh at i + 2
    return torch.tanh(w.conv(f"model.{i + 1}", t, padding=0))


def _resnet_block(w: _Weights, p: str, x: Tensor) -> Tensor:
    t = F.pad(x, (1, 1, 1, 1), mode="reflect")
    t = F.relu(w.norm(f"{p}.2", w.conv(f"{p}.1", t, padding=0), f"{p}.1"))
    j = 6 if w.has(f"{p}.6") else 5  # a Dropout at .4 (identity at eval) moves the conv
    t = F.pad(t, (1, 1, 1, 1), mode="reflect")
    return w.norm(f"{p}.{j + 1}", w.conv(f"{p}.{j}", t, padding=0), f"{p}.{j}")


def _unet(w: _Weights, x: Tensor) -> Tensor:
    p = "model.model."
    t = _unet_block(w, f"{p}1.model.", w.conv(f"{p}0", x, stride=2))
    return torch.tanh(w.conv_t(f"{p}3", F.relu(t), padding=1))


def _unet_block(w: _Weights, p: str, x: Tensor) -> Tensor:
    a = F.leaky_relu(x, 0.2)  # in place upstream, so the skip below sees these values
    down = w.conv(f"{p}1", a, stride=2)
    if w.has(f"{p}3"):  # innermost: [LeakyReLU, conv, ReLU, ConvTranspose2d, norm]
        up = w.norm(f"{p}4", w.conv_t(f"{p}3", F.relu(down), padding=1), f"{p}3")
    else:  # [LeakyReLU, conv, norm, block, ReLU, ConvTranspose2d, norm, (Dropout)]
        inner = _unet_block(w, f"{p}3.model.", w.norm(f"{p}2", down, f"{p}1"))
        up = w.norm(f"{p}6", w.conv_t(f"{p}5", F.relu(inner), padding=1), f"{p}5")
    return torch.cat([a, up], 1)


# --- ESRGAN RRDBNet --------------------------------------------------------------------------


def _count(w: _Weights, name: Callable[[int], str], start: int = 0) -> int:
    n = start
    while w.has(name(n)):
        n += 1
    return n - start


def _rrdb_names(w: _Weights, layout: str) -> tuple[str, Callable, str, list[str], str, str]:
    """first conv, dense conv (block, rdb, conv) -> name, trunk, upsampling convs, HR, last."""
    if layout == "BasicSR keys":
        def rdb(b: int, r: int, c: int) -> str:
            return f"body.{b}.rdb{r}.conv{c}"
        ups = [f"conv_up{i}" for i in range(1, 1 + _count(w, lambda i: f"conv_up{i}", 1))]
        return "conv_first", rdb, "conv_body", ups, "conv_hr", "conv_last"
    if layout == "ESRGAN/BSRGAN trunk keys":
        def rdb(b: int, r: int, c: int) -> str:
            return f"RRDB_trunk.{b}.RDB{r}.conv{c}"
        ups = [f"upconv{i}" for i in range(1, 1 + _count(w, lambda i: f"upconv{i}", 1))]
        return "conv_first", rdb, "trunk_conv", ups, "HRconv", "conv_last"

    # original: model.0 conv, model.1 = x + sub(x) with the RRDBs then the trunk conv in sub,
    # then (Upsample, conv, LeakyReLU) per stage, HR conv, LeakyReLU, last conv
    def rdb(b: int, r: int, c: int) -> str:
        return f"model.1.sub.{b}.RDB{r}.conv{c}.0"
    blocks = _count(w, lambda b: rdb(b, 1, 1))
    top = sorted(int(m[1]) for k in w.state if (m := re.fullmatch(r"model\.(\d+)\.weight", k))
                 and m[1] != "0")
    if len(top) < 2:
        raise ForeignCheckpointError("the original ESRGAN forward finds no HR and last convs")
    ups = [f"model.{i}" for i in top[:-2]]
    return "model.0", rdb, f"model.1.sub.{blocks}", ups, f"model.{top[-2]}", f"model.{top[-1]}"


def _unshuffle(x: Tensor, r: int) -> Tensor:
    """BasicSR's pixel_unshuffle: pixel (i, j) of each r x r cell to channel c*r*r + i*r + j."""
    n, c, h, w = x.shape
    cells = x.reshape(n, c, h // r, r, w // r, r)
    return cells.permute(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)


def _rrdbnet(w: _Weights, x: Tensor, layout: str) -> Tensor:
    first, rdb, trunk, ups, hr, last = _rrdb_names(w, layout)
    blocks = _count(w, lambda b: rdb(b, 1, 1))
    ratio = w.weight(first).shape[1] / w.weight(last).shape[0]
    r = {4.0: 2, 16.0: 4}.get(ratio, 1)  # Real-ESRGAN x2 / x1 fold pixels into channels

    def lrelu(t: Tensor) -> Tensor:
        return F.leaky_relu(t, 0.2)

    fea = w.conv(first, _unshuffle(x, r) if r > 1 else x)
    t = fea
    for b in range(blocks):
        rrdb_in = t
        for k in (1, 2, 3):
            feats = [t]
            for c in (1, 2, 3, 4):
                feats.append(lrelu(w.conv(rdb(b, k, c), torch.cat(feats, 1))))
            t = 0.2 * w.conv(rdb(b, k, 5), torch.cat(feats, 1)) + feats[0]
        t = 0.2 * t + rrdb_in
    fea = fea + w.conv(trunk, t)
    for up in ups:
        fea = lrelu(w.conv(up, F.interpolate(fea, scale_factor=2, mode="nearest")))
    return w.conv(last, lrelu(w.conv(hr, fea)))


# --- MSRResNet -------------------------------------------------------------------------------


def _msrresnet(w: _Weights, x: Tensor, layout: str) -> Tensor:
    body, hr = ("recon_trunk", "HRconv") if layout == "mmsr keys" else ("body", "conv_hr")

    def lrelu(t: Tensor) -> Tensor:
        return F.leaky_relu(t, 0.1)

    fea = lrelu(w.conv("conv_first", x))
    for b in range(_count(w, lambda b: f"{body}.{b}.conv1")):
        fea = fea + w.conv(f"{body}.{b}.conv2", F.relu(w.conv(f"{body}.{b}.conv1", fea)))
    if w.has("upconv2"):
        stages, factor = ["upconv1", "upconv2"], 2
    else:
        factor = math.isqrt(w.weight("upconv1").shape[0] // w.weight("conv_first").shape[0])
        stages = ["upconv1"]
    for up in stages:
        fea = lrelu(F.pixel_shuffle(w.conv(up, fea), factor))
    out = w.conv("conv_last", lrelu(w.conv(hr, fea)))
    scale = factor ** len(stages)
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


# --- dispatch --------------------------------------------------------------------------------

_Forward = Callable[[_Weights, Tensor], Tensor]


def _forward_for(imported: Imported) -> tuple[_Forward, str] | None:
    layout, arch = imported.notes.get("layout"), imported.arch
    if layout == RESNET_LAYOUT and arch in ("resnet", "resnet_6blocks", "resnet_9blocks"):
        return _resnet, "reference ResnetGenerator"
    if layout == UNET_LAYOUT and arch in ("unet", "unet_128", "unet_256"):
        return _unet, "reference UnetGenerator"
    if arch == "rrdbnet" and layout in ("BasicSR keys", "ESRGAN/BSRGAN trunk keys",
                                        "original ESRGAN keys"):
        return (lambda w, x: _rrdbnet(w, x, layout)), f"RRDBNet ({layout})"
    if arch == "msrresnet" and layout in ("BasicSR keys", "mmsr keys"):
        return (lambda w, x: _msrresnet(w, x, layout)), f"MSRResNet ({layout})"
    return None


def reference_forward(imported: Imported, original_state: StateDict, x: Tensor) -> Tensor | None:
    """The upstream network's output for ``x``, computed from ``original_state`` as saved.

    ``imported`` (the recogniser's result for that state dict) only says which upstream
    layout to follow (``notes["layout"]``); every number comes from the original tensors.
    Returns None for families without an independent forward here. Runs without autograd.
    """
    found = _forward_for(imported)
    if found is None:
        return None
    forward, what = found
    with torch.inference_mode():
        return forward(_Weights(original_state, what), x.float())
