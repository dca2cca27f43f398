"""Convolutions on 2x2 phases: same results and gradients as ``F.conv2d``, same parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from img2img.nn.cpu import direct
from img2img.nn.cpu.polyphase import PhaseConv2d


@pytest.mark.parametrize(("k", "h", "w", "padding", "bias"), [
    (7, 14, 14, 0, True), (7, 15, 12, 0, False), (9, 10, 13, 4, True), (3, 5, 6, 1, True),
])
def test_matches_conv2d_and_its_gradients(k, h, w, padding, bias):
    torch.manual_seed(0)
    conv = PhaseConv2d(16, 3, k, padding=padding, bias=bias)
    x = torch.randn(2, 16, h, w, requires_grad=True)
    y = conv(x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=padding)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ref)
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    for got, want in zip(torch.autograd.grad(y, params, grad),
                         torch.autograd.grad(ref, params, grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_under_bf16_autocast_close_to_direct_conv():
    torch.manual_seed(0)
    conv = PhaseConv2d(32, 3, 7)
    x = torch.randn(1, 32, 30, 30)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        y = conv(x)
        ref = F.conv2d(x, conv.weight, conv.bias)
    assert y.dtype == ref.dtype == torch.bfloat16
    assert (y.float() - ref.float()).abs().max().item() < 0.02 * ref.float().abs().max().item()


def test_state_dict_is_that_of_conv2d():
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 3, 9, padding=4)
    conv = PhaseConv2d(16, 3, 9, padding=4)
    assert list(conv.state_dict()) == list(plain.state_dict())
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(1, 16, 11, 11)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), plain(x), rtol=1e-5, atol=1e-5)


def test_direct_convolution_inside_direct():
    torch.manual_seed(0)
    conv = PhaseConv2d(16, 3, 7)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad(), direct(conv):
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias))


@pytest.mark.parametrize("padding", [4, 3])
def test_forward_phases_is_forward_of_the_shuffled_input(padding):
    # padding 4 ("same" 9x9, even): the conv runs on the phases as given; 3: falls back
    torch.manual_seed(0)
    conv = PhaseConv2d(8, 3, 2 * padding + 1, padding=padding)
    z = torch.randn(2, 32, 7, 6, requires_grad=True)
    y = conv.forward_phases(z)
    ref = F.conv2d(F.pixel_shuffle(z, 2), conv.weight, conv.bias, padding=padding)
    assert y.shape == ref.shape == (2, 3, 14, 12)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ref)
    params = [z, conv.weight, conv.bias]
    for got, want in zip(torch.autograd.grad(y, params, grad),
                         torch.autograd.grad(ref, params, grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

