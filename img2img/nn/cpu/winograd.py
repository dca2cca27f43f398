"""3x3 convolution by Winograd's minimal filtering, F(4x4, 3x3), for fp32 on the CPU.

oneDNN's direct fp32 convolution is already near the CPU's multiply-add ceiling, so the
only way to make the residual blocks (83% of a CycleGAN step's FLOPs) faster in fp32 is
to do fewer multiplications. F(4x4, 3x3) computes each 4x4 output tile from a 6x6 input
tile with 36 multiplications per channel pair instead of 144: the input and the filter
are transformed (``B^T d B``, ``G g G^T``), multiplied position by position -- 36 matrix
products over the channels, done as oneDNN matmuls (:func:`batched_mm`) -- and transformed
back (``A^T m A``), using the matrices of Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks" (2016). The backward pass stays in the transformed domain too: the input
gradient is the same algorithm applied to the padded output gradient with the flipped,
transposed filter, and the filter gradient is a batched product of transformed tensors.

The layer is an ``nn.Conv2d`` (same parameters, same state dict;
``img2img.nn.cpu.optimize`` turns a built network's residual-block convs into it in place)
that uses this path only where it measured faster (``use_winograd``): fp32 tensors on the
CPU, no autocast, not under ``torch.compile``, stride 1, no dilation or groups, at least
``MIN_CHANNELS`` channels in and out, and in training at least ``MIN_TRAIN_PIXELS`` output
pixels. Results differ from direct convolution by float rounding (relative error ~1e-5 of
the output's range); everywhere else it is ``nn.Conv2d``.

Measured and not kept (2 Zen 3 cores, 256 -> 256 channels at 64x64, batch 1, fp32): of a
forward + backward (81 ms; direct 134 ms) the 36-product batches take 34 ms and the
transforms and their layout copies the rest. PyTorch's NNPACK convolution
(``torch._nnpack_spatial_convolution``, F(6x6, 3x3), its own thread pool) ran the forward
in 20-23 ms against 26 ms here, but the forward must also build the transformed input the
filter gradient uses, and as the input gradient it measured no faster within the VM's
noise; it is also slow from batch 2 on (152 vs 53 ms). The input gradient taken in the
transformed domain from the output gradient's tiles the filter gradient already computes
(products with the forward's filters, then the input transform's adjoint with the tiles'
overlaps added) was exact but 29 vs 31 ms: the overlap-add (as strided adds or
``F.fold``) costs what the skipped input transform saved. The transforms compiled by
inductor: 5.2-5.5 vs 6.5-7.2 ms (input) and 3.7-3.9 vs 5.8 ms (output), at ~1 min of
compilation per process and a C++ compiler. F(6x6, 3x3) itself: 16 % fewer product FLOPs
at 64x64, but MKL runs its 121-tile products at 83 GFLOP/s against 112 for 256 tiles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img import runtime

MIN_CHANNELS = 128
# Output pixels from which a training pass (forward + backward) takes the Winograd path
# (MIN_TRAIN_PIXELS, set below by the way the products run). Its cost has a part that does
# not shrink with the image (transforming, stacking and transforming back 36 x C x K filter
# values three times); 256 -> 256 channels, fp32, ms per forward + backward, direct vs
# Winograd. 1 Zen 5 core, oneDNN products: 16x16 8.7 vs 21.5, 32x32 21.4 vs 23.8, 40x40
# 33.2 vs 33.1, 48x48 46.5 vs 35.1, 64x64 87.6 vs 62.0. 2 Zen 3 cores (AVX2), MKL
# products: 16x16 13.3 vs 19.9, 24x24 21.5 vs 26.8, 28x28 40.0 vs 35.3, 32x32 40.7-46.4 vs
# 33.1-41.1, 48x48 82.9 vs 58.1. 2 cores of a Xeon with AMX (family 6 model 167), MKL
# products: 16x16 4.2 vs 5.4, 24x24 7.9 vs 7.7, 28x28 10.6 vs 8.3, 32x32 13.2 vs 9.3, 64x64
# 51.0 vs 27.7. Inference (no gradient) keeps Winograd at every size.
MIN_TRAIN_PIXELS_ONEDNN = 2048
MIN_TRAIN_PIXELS_BMM = 784

_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


def _matrices(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The 2-D transforms: input as a (36,1,6,6) conv kernel, filter (36,9), output (16,36)."""
    bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
    kin = torch.einsum("ai,bj->abij", bt, bt).reshape(36, 1, 6, 6)
    kw = torch.einsum("ai,bj->abij", g, g).reshape(36, 9)
    kout = torch.einsum("ia,jb->ijab", at, at).reshape(16, 36)
    return tuple(m.to(dtype=dtype, device=device).contiguous() for m in (kin, kw, kout))


_CACHE: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}


def _get(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    key = (x.dtype, x.device)
    if key not in _CACHE:
        _CACHE[key] = _matrices(*key)
    return _CACHE[key]


def _input_tiles(x: Tensor, th: int, tw: int) -> Tensor:
    """(N,C,H,W) -> transformed 6x6 tiles (36, C, N*th*tw); zero-pads bottom/right to fit."""
    kin = _get(x)[0]
    n, c, h, w = x.shape
    ph, pw = 4 * th + 2 - h, 4 * tw + 2 - w
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    v = F.conv2d(x.reshape(n * c, 1, 4 * th + 2, 4 * tw + 2), kin, stride=4)
    v = v.reshape(n, c, 36, th * tw).permute(2, 1, 0, 3).contiguous()
    return v.view(36, c, n * th * tw)


def _filter_tiles(weight: Tensor) -> Tensor:
    """(K,C,3,3) -> transformed filters (36, K, C)."""
    k, c = weight.shape[:2]
    return (_get(weight)[1] @ weight.reshape(k * c, 9).t()).view(36, k, c)


def _untile(m: Tensor, n: int, th: int, tw: int, h: int, w: int) -> Tensor:
    """Products (36, K, N*th*tw) -> output (N, K, h, w)."""
    kout = _get(m)[2]
    k = m.shape[1]
    y = batched_mm(kout[None], m.view(1, 36, -1))[0].view(4, 4, k, n, th, tw)
    y = y.permute(3, 2, 4, 0, 5, 1)
    y = y.reshape(n, k, 4 * th, 4 * tw)
    return y[:, :, :h, :w] if (h, w) != (4 * th, 4 * tw) else y


# Where oneDNN's matmul beats MKL's (behind torch.bmm) for the 36 products: AMD CPUs with
# AVX-512, the CPU capability PyTorch dispatches to (``torch.backends.cpu.get_cpu_capability``)
# being AVX512 -- MKL runs 256-bit code on them. Intel CPUs get AVX-512 code from MKL, which
# was the faster one there; AVX2 CPUs take torch.bmm too.
ONEDNN_CAPABILITIES = ("AVX512",)
ONEDNN_VENDORS = ("AuthenticAMD",)


def _onednn_linear(capability: str | None = None, vendor: str | None = None) -> object | None:
    """oneDNN's matmul as ``linear(a, b) = a @ b.T`` (fp32, CPU), or None where it is not
    the faster one (``capability`` not in :data:`ONEDNN_CAPABILITIES` or ``vendor`` not in
    :data:`ONEDNN_VENDORS`; defaults: this CPU's), or this torch build has no such op or it
    does not compute that (a private op: checked once against ``torch.mm`` on a small
    product, so a changed signature falls back to ``torch.bmm``)."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if capability not in ONEDNN_CAPABILITIES or not torch.backends.mkldnn.is_available():
        return None
    if (runtime.cpu_vendor() if vendor is None else vendor) not in ONEDNN_VENDORS:
        return None
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:
        return None
    a = torch.arange(12, dtype=torch.float32).view(3, 4) / 7
    b = torch.arange(20, dtype=torch.float32).view(5, 4) / 11
    try:
        with torch.no_grad():
            ok = torch.allclose(op(a, b, None, "none", [], ""), a @ b.t(), atol=1e-5)
    except (RuntimeError, TypeError):
        return None
    return op if ok else None


_LINEAR = _onednn_linear()
MIN_TRAIN_PIXELS = MIN_TRAIN_PIXELS_ONEDNN if _LINEAR is not None else MIN_TRAIN_PIXELS_BMM


def batched_mm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm(a, b)`` for fp32 CPU tensors (B, M, C) and (B, C, N), by oneDNN on AMD
    CPUs with AVX-512.

    MKL's sgemm, behind ``torch.bmm``, runs 256-bit code on AMD CPUs: on 1 Zen 5 core the
    36 products of 256 channels by 256 tiles ran at 85 GFLOP/s, and at 180 as oneDNN
    matmuls (its 512-bit kernels). Each product is
    ``linear(a[i], b[i].T)``, a transposed view that oneDNN reads as it is; elsewhere (no
    oneDNN, another dtype or device) ``torch.bmm``. (The output transform, 16 x 36 by 36 x
    a million, is one too: 3.5 -> 1.5 ms.) On CPUs without AVX-512 MKL is the faster one
    (2 Zen 3 cores, the same products: 125 GFLOP/s against oneDNN's 88-95), and on Intel
    CPUs (2 cores of a Xeon with AMX, family 6 model 167: 312 against 213 GFLOP/s at 256
    tiles, 259 against 201 at 1024; CycleGAN 256x256 fp32 step 6.93 -> 5.86 s), so there
    ``torch.bmm`` runs them."""
    if _LINEAR is None or a.device.type != "cpu" or a.dtype != torch.float32:
        return torch.bmm(a, b)
    bt = b.transpose(1, 2)
    return torch.stack([_LINEAR(a[i], bt[i], None, "none", [], "") for i in range(a.shape[0])])


def _tiles_of(x: Tensor) -> tuple[int, int, int, int]:
    """Output size (h, w) and tile counts (th, tw) of a valid 3x3 conv of x."""
    h, w = x.shape[-2] - 2, x.shape[-1] - 2
    return h, w, -(-h // 4), -(-w // 4)


def _forward(x: Tensor, u: Tensor) -> Tensor:
    """Valid 3x3 correlation of x with the filters transformed into u, like ``F.conv2d``."""
    h, w, th, tw = _tiles_of(x)
    return _untile(batched_mm(u, _input_tiles(x, th, tw)), x.shape[0], th, tw, h, w)


class _Winograd3x3(torch.autograd.Function):
    """3x3 correlation of ``x`` zero-padded by ``padding`` (at most 2 each side)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor,  # type: ignore[override]
                padding: tuple[int, int]) -> Tensor:
        ph, pw = padding
        ctx.padding = padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        # Transforming the filters takes ~1 ms for 256x256 channels, so they are not cached.
        u = _filter_tiles(weight)
        h, w, th, tw = _tiles_of(x)
        v = _input_tiles(x, th, tw)
        # The transformed input (2.25x the size of x) is kept for the filter gradient
        # instead of x: recomputing it would cost a fifth of the backward pass.
        ctx.save_for_backward(weight, v if ctx.needs_input_grad[1] else None)
        ctx.in_shape = x.shape
        return _untile(batched_mm(u, v), x.shape[0], th, tw, h, w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, v = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # Full correlation with the flipped, transposed filter, by the same algorithm,
            # only over the unpadded input (256 instead of 289 tiles for 64x64, padding 1).
            ph, pw = ctx.padding
            u_t = _filter_tiles(weight.flip(2, 3).transpose(0, 1))
            grad_x = _forward(F.pad(grad, (2 - pw, 2 - pw, 2 - ph, 2 - ph)), u_t)
        if ctx.needs_input_grad[1]:
            n, k, h, w = grad.shape
            th, tw = -(-h // 4), -(-w // 4)
            g = F.pad(grad, (0, 4 * tw - w, 0, 4 * th - h)) if (h % 4 or w % 4) else grad
            g = g.view(n, k, th, 4, tw, 4).permute(3, 5, 1, 0, 2, 4).reshape(16, -1)
            gm = (_get(grad)[2].t() @ g).view(36, k, n * th * tw)
            gu = batched_mm(gm, v.transpose(1, 2))  # (36, K, C)
            c = ctx.in_shape[1]
            grad_w = (_get(grad)[1].t() @ gu.view(36, k * c)).t().reshape(k, c, 3, 3)
        return grad_x, grad_w, None


def use_winograd(x: Tensor, conv: nn.Conv2d) -> bool:
    """Whether ``conv`` on ``x`` takes the Winograd path (see the module docstring)."""
    kind = x.device.type
    return (
        kind == "cpu"
        and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
        and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1)
        and conv.groups == 1 and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
        and max(conv.padding) <= 2 and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
        and not torch.is_autocast_enabled(kind) and not torch.compiler.is_compiling()
        and (_out_pixels(x, conv) >= MIN_TRAIN_PIXELS or not _trains(x, conv))
    )


def _out_pixels(x: Tensor, conv: nn.Conv2d) -> int:
    (ph, pw), (h, w) = conv.padding, x.shape[-2:]
    return (h + 2 * ph - 2) * (w + 2 * pw - 2)


def _trains(x: Tensor, conv: nn.Conv2d) -> bool:
    """Whether the call records a backward pass."""
    return torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)


def fits(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` that :class:`Conv3x3` can stand in for
    (3x3, stride 1, no dilation or groups, zero padding)."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple))


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d`` with a 3x3 kernel that runs as Winograd F(4x4,3x3) where that is faster.

    It adds no state to ``nn.Conv2d`` (only ``forward`` differs), so a built conv becomes one
    by changing its class (``img2img.nn.cpu.optimize``)."""

    def __init__(self, in_channels: int, out_channels: int, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not use_winograd(x, self):
            return super().forward(x)
        y = _Winograd3x3.apply(x, self.weight, self.padding)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y
