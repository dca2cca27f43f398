"""Published SR checkpoints (ESRGAN / Real-ESRGAN / BSRGAN RRDBNet, BasicSR MSRResNet).

State dicts are written key by key in each upstream's layout, and the converted networks
are compared with a functional forward written here from the upstream layer order.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from img2img.checkpoint import load_generator, meta_for, save_generator
from img2img.foreign.basicsr import recognise_msrresnet, recognise_rrdbnet
from img2img.nn import build_generator

NF, NB, GC = 8, 2, 4  # tiny: num_feat, num_block, num_grow_ch

# Upstream names of each RRDBNet role: first conv, dense conv (block, rdb, conv), trunk conv,
# upsampling conv i, HR conv, last conv. ``n`` is the number of upsampling stages.
LAYOUTS = {
    "basicsr": lambda n: dict(
        first="conv_first", rdb=lambda b, r, c: f"body.{b}.rdb{r}.conv{c}", trunk="conv_body",
        up=lambda i: f"conv_up{i}", hr="conv_hr", last="conv_last"),
    "trunk": lambda n: dict(
        first="conv_first", rdb=lambda b, r, c: f"RRDB_trunk.{b}.RDB{r}.conv{c}",
        trunk="trunk_conv", up=lambda i: f"upconv{i}", hr="HRconv", last="conv_last"),
    # one flattened Sequential: conv, ShortcutBlock, (Upsample, conv, LReLU) x n, conv, LReLU, conv
    "original": lambda n: dict(
        first="model.0", rdb=lambda b, r, c: f"model.1.sub.{b}.RDB{r}.conv{c}.0",
        trunk=f"model.1.sub.{NB}", up=lambda i: f"model.{3 * i}", hr=f"model.{3 * n + 2}",
        last=f"model.{3 * n + 4}"),
}


def _conv(sd: dict, name: str, cin: int, cout: int, g: torch.Generator) -> None:
    sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) / (9 * cin) ** 0.5
    sd[f"{name}.bias"] = 0.1 * torch.randn(cout, generator=g)


def _rrdb_state(names: dict, cin: int, cout: int, n_up: int) -> dict:
    g, sd = torch.Generator().manual_seed(0), {}
    _conv(sd, names["first"], cin, NF, g)
    for b in range(NB):
        for r in (1, 2, 3):
            for c in range(1, 6):
                _conv(sd, names["rdb"](b, r, c), NF + (c - 1) * GC, NF if c == 5 else GC, g)
    _conv(sd, names["trunk"], NF, NF, g)
    for i in range(1, n_up + 1):
        _conv(sd, names["up"](i), NF, NF, g)
    _conv(sd, names["hr"], NF, NF, g)
    _conv(sd, names["last"], NF, cout, g)
    return sd


def _c(sd: dict, x: torch.Tensor, name: str) -> torch.Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)


def _unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """BasicSR's pixel_unshuffle: channel c*r*r + i*r + j holds pixel (i, j) of each r x r."""
    n, c, h, w = x.shape
    return x.view(n, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4).reshape(
        n, c * r * r, h // r, w // r)


def _rrdb_reference(sd: dict, names: dict, x: torch.Tensor, n_up: int, unshuffle: int):
    lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    if unshuffle > 1:
        x = _unshuffle(x, unshuffle)
    fea = _c(sd, x, names["first"])
    t = fea
    for b in range(NB):
        block_in = t
        for r in (1, 2, 3):
            feats = [t]
            for c in range(1, 5):
                feats.append(lrelu(_c(sd, torch.cat(feats, 1), names["rdb"](b, r, c))))
            t = _c(sd, torch.cat(feats, 1), names["rdb"](b, r, 5)) * 0.2 + feats[0]
        t = t * 0.2 + block_in
    fea = fea + _c(sd, t, names["trunk"])
    for i in range(1, n_up + 1):
        fea = lrelu(_c(sd, F.interpolate(fea, scale_factor=2, mode="nearest"), names["up"](i)))
    return _c(sd, lrelu(_c(sd, fea, names["hr"])), names["last"])


RRDB_CASES = {  # layout, first-conv input channels, upsampling stages, unshuffle, scale
    "esrgan-x4-basicsr": ("basicsr", 3, 2, 1, 4),
    "esrgan-x4-original": ("original", 3, 2, 1, 4),
    "realesrgan-x2-unshuffle": ("basicsr", 12, 2, 2, 2),
    "realesrgan-x1-unshuffle": ("basicsr", 48, 2, 4, 1),
    "bsrgan-x2-trunk": ("trunk", 3, 1, 1, 2),
    "esrgan-x8-original": ("original", 3, 3, 1, 8),
}


@pytest.mark.parametrize("case", RRDB_CASES)
def test_rrdbnet_checkpoints_convert_exactly(case: str) -> None:
    layout, cin, n_up, unshuffle, scale = RRDB_CASES[case]
    names = LAYOUTS[layout](n_up)
    sd = _rrdb_state(names, cin, 3, n_up)
    if case == "esrgan-x4-original":  # the published x4 indices
        assert {"model.1.sub.2.weight", "model.3.weight", "model.6.weight", "model.8.weight",
                "model.10.weight"} <= set(sd)
    imp = recognise_rrdbnet(sd)
    assert imp is not None and imp.task == "sr" and imp.value_range == (0.0, 1.0)
    assert imp.scale == scale and imp.kwargs["in_channels"] == 3
    assert (imp.kwargs["num_feat"], imp.kwargs["num_block"], imp.kwargs["num_grow_ch"]) == (
        NF, NB, GC)
    net = build_generator(imp.arch, **imp.kwargs).eval()
    net.load_state_dict(imp.state_dict, strict=True)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = net(x), _rrdb_reference(sd, names, x, n_up, unshuffle)
    assert got.shape == (1, 3, 12 * scale, 12 * scale)
    assert (got - want).abs().max().item() < 1e-5


MSR_LAYOUTS = {"basicsr": ("body", "conv_hr"), "mmsr": ("recon_trunk", "HRconv")}


def _msr_state(layout: str, scale: int) -> dict:
    body, hr = MSR_LAYOUTS[layout]
    g, sd = torch.Generator().manual_seed(0), {}
    _conv(sd, "conv_first", 3, NF, g)
    for b in range(NB):
        _conv(sd, f"{body}.{b}.conv1", NF, NF, g)
        _conv(sd, f"{body}.{b}.conv2", NF, NF, g)
    _conv(sd, "upconv1", NF, NF * (4 if scale == 4 else scale * scale), g)
    if scale == 4:
        _conv(sd, "upconv2", NF, NF * 4, g)
    _conv(sd, hr, NF, NF, g)
    _conv(sd, "conv_last", NF, 3, g)
    return sd


def _msr_reference(sd: dict, layout: str, x: torch.Tensor, scale: int) -> torch.Tensor:
    body, hr = MSR_LAYOUTS[layout]
    lrelu = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
    out = lrelu(_c(sd, x, "conv_first"))
    for b in range(NB):
        out = out + _c(sd, F.relu(_c(sd, out, f"{body}.{b}.conv1")), f"{body}.{b}.conv2")
    for name in ("upconv1", "upconv2") if scale == 4 else ("upconv1",):
        out = lrelu(F.pixel_shuffle(_c(sd, out, name), 2 if scale == 4 else scale))
    out = _c(sd, lrelu(_c(sd, out, hr)), "conv_last")
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("layout,scale", [("basicsr", 4), ("basicsr", 3), ("mmsr", 2)])
def test_msrresnet_checkpoints_convert_exactly(layout: str, scale: int) -> None:
    sd = _msr_state(layout, scale)
    imp = recognise_msrresnet(sd)
    assert imp is not None and imp.scale == scale and imp.value_range == (0.0, 1.0)
    net = build_generator(imp.arch, **imp.kwargs).eval()
    net.load_state_dict(imp.state_dict, strict=True)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = net(x), _msr_reference(sd, layout, x, scale)
    assert got.shape == (1, 3, 12 * scale, 12 * scale)
    assert (got - want).abs().max().item() < 1e-5


def test_other_families_are_not_claimed() -> None:
    cyclegan = build_generator("resnet", ngf=8, n_blocks=2).state_dict()
    rrdb = _rrdb_state(LAYOUTS["basicsr"](2), 3, 3, 2)
    msr = _msr_state("basicsr", 4)
    plus = dict(rrdb, **{"body.0.rdb1.conv1x1.weight": torch.zeros(GC, NF, 1, 1)})  # ESRGAN+
    assert recognise_rrdbnet(cyclegan) is None and recognise_msrresnet(cyclegan) is None
    assert recognise_rrdbnet(msr) is None and recognise_msrresnet(rrdb) is None
    assert recognise_rrdbnet(plus) is None


def test_inconsistent_family_tensors_raise_clearly() -> None:
    sd = _rrdb_state(LAYOUTS["basicsr"](2), 3, 3, 2)
    bad = dict(sd, **{"conv_body.weight": torch.zeros(NF, NF + 1, 3, 3)})
    with pytest.raises(ValueError, match="conv_body.weight"):
        recognise_rrdbnet(bad)
    gap = {k: v for k, v in sd.items() if k != "body.1.rdb2.conv3.bias"}
    with pytest.raises(ValueError, match=r"missing: body\.1\.rdb2\.conv3\.bias"):
        recognise_rrdbnet(gap)
    old = _rrdb_state(LAYOUTS["original"](2), 3, 3, 2)
    old["model.2.weight"], old["model.2.bias"] = old.pop("model.3.weight"), old.pop("model.3.bias")
    with pytest.raises(ValueError, match="model.2"):  # pixel-shuffle upsampler variant
        recognise_rrdbnet(old)


@pytest.mark.parametrize("arch,kwargs", [
    ("rrdbnet", dict(num_feat=NF, num_block=1, num_grow_ch=GC, scale=2)),
    ("msrresnet", dict(num_feat=NF, num_block=2, scale=3)),
])
def test_native_sr_nets_train(arch: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    net = build_generator(arch, **kwargs)
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8 * net.scale, 8 * net.scale)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for step in range(5):
        opt.zero_grad()
        loss = F.l1_loss(net(x), y)
        loss.backward()
        if step == 0:
            dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
            assert not dead, f"no gradient reaches {dead}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_converted_sr_net_round_trips_through_checkpoint(tmp_path) -> None:
    imp = recognise_rrdbnet(_rrdb_state(LAYOUTS["basicsr"](2), 12, 3, 2))  # Real-ESRGAN x2
    assert imp is not None
    net = build_generator(imp.arch, **imp.kwargs).eval()
    net.load_state_dict(imp.state_dict, strict=True)
    path = tmp_path / "realesrgan_x2.safetensors"
    save_generator(path, net, meta_for(net, imp.arch, imp.kwargs, task=imp.task))
    loaded, meta = load_generator(path)
    assert (meta.arch, meta.scale, meta.size_multiple) == ("rrdbnet", 2, 2)
    assert meta.value_range == (0.0, 1.0) and meta.in_channels == 3
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
