"""Winograd 3x3 convolution: same results and gradients as direct convolution, same
parameters, and the direct path wherever Winograd is not used."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from img2img.nn.cpu import accelerate, direct, winograd
from img2img.nn.cpu.winograd import Conv3x3, use_winograd
from img2img.nn.resnet import ResidualBlock, resnet_9blocks

C = winograd.MIN_CHANNELS


@pytest.fixture(autouse=True)
def winograd_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The algorithm is tested at small odd sizes; training uses it from MIN_TRAIN_PIXELS."""
    monkeypatch.setattr(winograd, "MIN_TRAIN_PIXELS", 0)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 2e-5) -> None:
    err = (a - b).abs().max().item()
    assert err <= rel * b.abs().max().item(), f"max error {err} vs range {b.abs().max().item()}"


@pytest.mark.parametrize(("n", "h", "w", "padding", "bias"), [
    (1, 8, 8, 0, False), (2, 9, 13, 0, True), (1, 5, 7, 1, True), (3, 4, 11, 1, False),
])
def test_matches_direct_convolution_and_its_gradients(n, h, w, padding, bias):
    torch.manual_seed(0)
    conv = Conv3x3(C, C + 16, padding=padding, bias=bias)
    x = torch.randn(n, C, h, w, requires_grad=True)
    assert use_winograd(x, conv)
    y = conv(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.conv2d(ref_x, conv.weight, conv.bias, padding=padding)
    assert y.shape == ref.shape
    _close(y, ref)
    grad = torch.randn_like(ref)
    y.backward(grad)
    got = [x.grad, conv.weight.grad] + ([conv.bias.grad] if bias else [])
    ref_params = [conv.weight] + ([conv.bias] if bias else [])
    want = torch.autograd.grad(ref, [ref_x, *ref_params], grad)
    for g, r in zip(got, want, strict=True):
        _close(g, r)


@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (2, 1)])
def test_backward_passes_gradcheck_in_double_precision(padding):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return winograd._Winograd3x3.apply(x, weight, padding)

    assert torch.autograd.gradcheck(f, (x, weight))
    want = F.conv2d(x, weight, padding=padding)
    _close(f(x, weight), want)


def test_same_parameters_as_conv2d_and_loads_its_state_dict():
    torch.manual_seed(0)
    plain = nn.Conv2d(C, C, 3, padding=1)
    conv = Conv3x3(C, C, padding=1)
    assert list(conv.state_dict()) == list(plain.state_dict())
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(1, C, 12, 12)
    with torch.no_grad():
        _close(conv(x), plain(x))


def test_trains_after_inference_and_follows_optimiser_steps_and_loads():
    torch.manual_seed(0)
    conv = Conv3x3(C, C)
    x = torch.randn(1, C, 10, 10)
    with torch.inference_mode():
        conv(x)
    opt = torch.optim.Adam(conv.parameters(), lr=0.5)
    conv(x).square().mean().backward()
    opt.step()
    with torch.no_grad():
        _close(conv(x), F.conv2d(x, conv.weight, conv.bias))
        conv.load_state_dict({"weight": torch.randn_like(conv.weight), "bias": conv.bias})
        _close(conv(x), F.conv2d(x, conv.weight, conv.bias))


def test_direct_path_where_winograd_is_not_used():
    torch.manual_seed(0)
    conv = Conv3x3(C, C, padding=1)
    x = torch.randn(1, C, 8, 8)
    small = Conv3x3(C // 2, C // 2)
    assert not use_winograd(torch.randn(1, C // 2, 8, 8), small)
    assert not use_winograd(x.double(), conv.double())
    conv.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_winograd(x, conv)
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    with direct(conv):
        assert type(conv) is nn.Conv2d
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert type(conv) is Conv3x3 and use_winograd(x, conv)


def test_residual_block_and_generator_agree_with_direct_convolution():
    torch.manual_seed(0)
    block = accelerate(ResidualBlock(C))
    assert sum(type(m) is Conv3x3 for m in block.modules()) == 2
    x = torch.randn(2, C, 12, 12)
    with torch.no_grad():
        fast = block(x)
        with direct(block):
            _close(fast, block(x))
    gen = accelerate(resnet_9blocks(3, 3, ngf=C // 4))  # 128 channels in the residual blocks
    img = torch.rand(1, 3, 36, 44) * 2 - 1
    with torch.no_grad():
        fast = gen(img)
        with direct(gen):
            slow = gen(img)
    assert (fast - slow).abs().max().item() < 1e-4


@pytest.mark.parametrize("transposed", [False, True])
def test_batched_products_match_bmm_in_double_precision(transposed):
    """The 36 products go through oneDNN's matmul in fp32 (with ``b`` a transposed view
    where the filter gradient gives one); they equal ``bmm`` in float64 up to fp32
    rounding."""
    torch.manual_seed(0)
    a = torch.randn(36, 20, 33)
    b = torch.randn(36, 17, 33).transpose(1, 2) if transposed else torch.randn(36, 33, 17)
    got = winograd.batched_mm(a, b)
    want = torch.bmm(a.double(), b.double())
    assert got.dtype == torch.float32 and got.shape == (36, 20, 17)
    _close(got.double(), want, rel=1e-6)
    assert torch.equal(winograd.batched_mm(a.double(), b.double()), want)  # no oneDNN: bmm


def test_onednn_runs_the_products_only_on_amd_cpus_with_avx512():
    """MKL's bmm is the faster one for the products on AVX2 CPUs and on Intel CPUs (AVX-512
    code from MKL), so oneDNN runs them only on AMD CPUs with AVX-512."""
    amd, intel = "AuthenticAMD", "GenuineIntel"
    assert winograd._onednn_linear("AVX2", amd) is None
    assert winograd._onednn_linear("DEFAULT", amd) is None
    assert winograd._onednn_linear("AVX512", intel) is None
    assert winograd._onednn_linear("AVX512", "") is None
    if torch.backends.mkldnn.is_available():
        assert winograd._onednn_linear("AVX512", amd) is not None


def test_training_takes_the_direct_path_below_the_size_where_winograd_wins(monkeypatch):
    """Training (a backward to come) below the threshold (here oneDNN's, 2048 pixels) at
    32x32 outputs runs PyTorch's direct convolution, from 48x48 Winograd; inference keeps
    Winograd at any size."""
    monkeypatch.setattr(winograd, "MIN_TRAIN_PIXELS", winograd.MIN_TRAIN_PIXELS_ONEDNN)
    conv = Conv3x3(C, C, padding=1, bias=False)
    small, large = torch.randn(1, C, 32, 32), torch.randn(1, C, 48, 48)
    assert not use_winograd(small, conv) and use_winograd(large, conv)
    assert not use_winograd(large[..., :32, :32].requires_grad_(), conv.requires_grad_(False))
    with torch.no_grad():
        assert use_winograd(small, conv.requires_grad_(True))
    y = conv(small)
    assert type(y.grad_fn).__name__ == "ConvolutionBackward0"
    assert type(conv(large).grad_fn).__name__.startswith("_Winograd3x3")
