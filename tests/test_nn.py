"""Tests for img2img.nn: architectures, registry, norm factory and weight init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from img2img.nn import (
    build_discriminator,
    build_generator,
    init_weights,
    list_discriminators,
    list_generators,
    receptive_field,
)
from img2img.nn.norm import norm_layer, uses_bias


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- parameter counts (construction only, no forward at full size) ---------------------------


def test_resnet_9blocks_param_count() -> None:
    g = build_generator("resnet_9blocks", ngf=64, norm="instance")
    assert n_params(g) == 11_378_179


def test_resnet_6blocks_param_count() -> None:
    # Each removed residual block holds two 256->256 3x3 convs with bias: 2 * (589_824 + 256).
    g = build_generator("resnet_6blocks")
    assert n_params(g) == 11_378_179 - 3 * 2 * (256 * 256 * 9 + 256)
    assert n_params(g) == 7_837_699


def test_generic_resnet_matches_named() -> None:
    assert n_params(build_generator("resnet", n_blocks=9)) == 11_378_179
    assert n_params(build_generator("resnet", n_blocks=6)) == 7_837_699


def test_patchgan_param_count_instance_norm() -> None:
    # Instance norm (affine=False) with conv biases: the CycleGAN reference default.
    d = build_discriminator("patchgan", in_channels=3, ndf=64, n_layers=3, norm="instance")
    assert n_params(d) == 2_764_737


def test_patchgan_param_count_batch_norm() -> None:
    # Batch norm: middle convs drop their bias (-896) but BN adds weight+bias (+1792).
    d = build_discriminator("patchgan", in_channels=3, ndf=64, n_layers=3, norm="batch")
    assert n_params(d) == 2_764_737 - (128 + 256 + 512) + 2 * (128 + 256 + 512)


# --- generator forward -----------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_resnet_forward_shape_and_range(upsample: str, norm: str) -> None:
    torch.manual_seed(0)
    g = build_generator("resnet", ngf=8, n_blocks=2, norm=norm, upsample=upsample)
    x = torch.randn(1, 3, 32, 32)
    y = g(x)
    assert y.shape == (1, 3, 32, 32)
    assert y.min() >= -1.0 and y.max() <= 1.0


def test_resnet_forward_non_square_and_channels() -> None:
    g = build_generator("resnet_6blocks", in_channels=1, out_channels=2, ngf=8)
    y = g(torch.randn(2, 1, 24, 40))
    assert y.shape == (2, 2, 24, 40)


def test_resnet_attributes() -> None:
    g = build_generator("resnet_9blocks", in_channels=1, out_channels=3, ngf=8)
    assert g.size_multiple == 4
    assert g.scale == 1
    assert g.in_channels == 1
    assert g.out_channels == 3


def test_resnet_rejects_bad_size() -> None:
    g = build_generator("resnet", ngf=8, n_blocks=1)
    with pytest.raises(ValueError, match="multiple of 4"):
        g(torch.randn(1, 3, 30, 32))


def test_resnet_bad_upsample() -> None:
    with pytest.raises(ValueError, match="bilinear"):
        build_generator("resnet", upsample="bilinear")


def _conv_biases(m: nn.Module) -> list[bool]:
    return [
        c.bias is not None for c in m.modules() if isinstance(c, (nn.Conv2d, nn.ConvTranspose2d))
    ]


def test_norm_none_keeps_bias_batch_drops_it() -> None:
    g_none = build_generator("resnet", ngf=8, n_blocks=2, norm="none")
    assert all(_conv_biases(g_none))
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in g_none.modules())

    g_batch = build_generator("resnet", ngf=8, n_blocks=2, norm="batch")
    biases = _conv_biases(g_batch)
    # Every conv except the final 7x7 output conv (no norm after it) is bias-free.
    assert not any(biases[:-1]) and biases[-1]
    assert any(isinstance(m, nn.BatchNorm2d) for m in g_batch.modules())


def test_resize_upsample_has_no_transpose_conv() -> None:
    g = build_generator("resnet", ngf=8, n_blocks=1, upsample="resize")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, nn.Upsample) for m in g.modules()) == 2


def test_dropout_flag() -> None:
    with_dropout = build_generator("resnet", ngf=8, n_blocks=3, dropout=True)
    drops = [m for m in with_dropout.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.5 for d in drops)
    without = build_generator("resnet", ngf=8, n_blocks=3)
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


# --- norm factory ----------------------------------------------------------------------------


def test_norm_layer_kinds() -> None:
    inst = norm_layer("instance", 4)
    assert isinstance(inst, nn.InstanceNorm2d)
    assert not inst.affine and not inst.track_running_stats
    bn = norm_layer("batch", 4)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine
    assert isinstance(norm_layer("none", 4), nn.Identity)
    assert uses_bias("instance") and uses_bias("none") and not uses_bias("batch")
    with pytest.raises(ValueError, match="group"):
        norm_layer("group", 4)


# --- discriminators --------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "out"), [(32, 2), (64, 6)])
def test_patchgan_output_shape(size: int, out: int) -> None:
    # Three stride-2 k4 p1 convs halve H (32 -> 4); the two stride-1 k4 p1 convs each take 1.
    d = build_discriminator("patchgan", ndf=8, n_layers=3)
    assert d(torch.randn(1, 3, size, size)).shape == (1, 1, out, out)


def test_patchgan_norm_and_bias_layout() -> None:
    d = build_discriminator("patchgan", ndf=8, n_layers=3, norm="batch")
    biases = _conv_biases(d)
    assert biases == [True, False, False, False, True]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3


def test_pixelgan_output_shape() -> None:
    d = build_discriminator("pixelgan", in_channels=6, ndf=8)
    assert d(torch.randn(2, 6, 20, 28)).shape == (2, 1, 20, 28)


def _rf_by_hand(n_layers: int) -> int:
    # Backward recursion from one output pixel: rf_in = (rf_out - 1) * stride + kernel.
    strides = [2] * n_layers + [1, 1]
    rf = 1
    for s in reversed(strides):
        rf = (rf - 1) * s + 4
    return rf


def test_receptive_field() -> None:
    assert receptive_field(3) == 70
    assert receptive_field(1) == 16
    assert receptive_field(5) == 286
    for n in range(1, 7):
        assert receptive_field(n) == _rf_by_hand(n)


def test_receptive_field_empirical() -> None:
    # Perturb one input pixel; the set of affected outputs reveals the effective RF extent.
    d = build_discriminator("patchgan", ndf=4, n_layers=1, norm="none").eval()
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    y = d(x)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) <= receptive_field(1)


# --- registry --------------------------------------------------------------------------------


def test_registry_lists() -> None:
    assert {"resnet", "resnet_9blocks", "resnet_6blocks"} <= set(list_generators())
    assert {"patchgan", "pixelgan"} <= set(list_discriminators())


def test_registry_unknown_name() -> None:
    with pytest.raises(ValueError, match="unet_999") as info:
        build_generator("unet_999")
    assert "resnet_9blocks" in str(info.value)
    with pytest.raises(ValueError, match="nope") as info:
        build_discriminator("nope")
    assert "patchgan" in str(info.value)


def test_registry_unknown_kwarg() -> None:
    with pytest.raises(TypeError, match="n_filters"):
        build_generator("resnet_9blocks", n_filters=32)
    with pytest.raises(TypeError, match="n_blocks"):
        build_generator("resnet_9blocks", n_blocks=3)
    with pytest.raises(TypeError, match="ngf"):
        build_discriminator("patchgan", ngf=8)


# --- init ------------------------------------------------------------------------------------


def _big_conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128))


def test_init_normal_std() -> None:
    torch.manual_seed(0)
    m = init_weights(_big_conv(), "normal", gain=0.02)
    w = m[0].weight
    assert abs(w.std().item() - 0.02) < 1e-3
    assert abs(w.mean().item()) < 1e-3
    assert torch.all(m[0].bias == 0)
    assert abs(m[1].weight.mean().item() - 1.0) < 0.01
    assert torch.all(m[1].bias == 0)


def test_init_kaiming_and_xavier_std() -> None:
    torch.manual_seed(0)
    fan_in, fan_out = 64 * 9, 128 * 9
    m = init_weights(_big_conv(), "kaiming")
    assert abs(m[0].weight.std().item() - (2.0 / fan_in) ** 0.5) < 3e-3
    m = init_weights(_big_conv(), "xavier", gain=1.0)
    assert abs(m[0].weight.std().item() - (2.0 / (fan_in + fan_out)) ** 0.5) < 2e-3


def test_init_orthogonal() -> None:
    torch.manual_seed(0)
    lin = init_weights(nn.Linear(32, 16), "orthogonal", gain=2.0)
    w = lin.weight
    assert torch.allclose(w @ w.T, 4.0 * torch.eye(16), atol=1e-4)
    assert torch.all(lin.bias == 0)


def test_init_returns_module_and_rejects_unknown() -> None:
    g = build_generator("resnet", ngf=8, n_blocks=1)
    assert init_weights(g) is g
    with pytest.raises(ValueError, match="uniformish"):
        init_weights(g, "uniformish")


def test_init_covers_transpose_conv() -> None:
    torch.manual_seed(0)
    g = init_weights(build_generator("resnet", ngf=16, n_blocks=1), "normal", gain=0.02)
    t = next(m for m in g.modules() if isinstance(m, nn.ConvTranspose2d))
    assert abs(t.weight.std().item() - 0.02) < 2e-3
