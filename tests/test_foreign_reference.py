"""Reference CycleGAN/pix2pix checkpoints: safe loading, containers, recognition, conversion.

The replicas below rebuild the reference implementation's generators layer by layer, in its
order and with its attribute names (``model``, ``conv_block``, nested ``model.model...``), so
their ``state_dict()`` has exactly the keys the reference saves, and their forward is an
independent account of what the reference computes.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from img2img.checkpoint import meta_for, save_generator
from img2img.foreign import ForeignCheckpointError, import_file, load_foreign, recognise
from img2img.nn import build_generator

# --- replicas of the reference networks ------------------------------------------------------


def ref_norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)
    return nn.Identity()


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, ngf: int, norm: str, dropout: bool,
                 n_blocks: int) -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias),
                                   ref_norm(norm, ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       ref_norm(norm, ngf * mult * 2), nn.ReLU(True)]
        layers += [RefResnetBlock(4 * ngf, norm, dropout, bias) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       ref_norm(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefUnetBlock(nn.Module):
    def __init__(self, outer: int, inner: int, norm: str, in_nc: int | None = None,
                 sub: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        in_nc = outer if in_nc is None else in_nc
        down = nn.Conv2d(in_nc, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1),
                      nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), ref_norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, ref_norm(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias),
                      ref_norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, num_downs: int, ngf: int, norm: str,
                 dropout: bool = True) -> None:
        super().__init__()
        block = RefUnetBlock(8 * ngf, 8 * ngf, norm, innermost=True)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(8 * ngf, 8 * ngf, norm, sub=block, dropout=dropout)
        for outer, inner in ((4 * ngf, 8 * ngf), (2 * ngf, 4 * ngf), (ngf, 2 * ngf)):
            block = RefUnetBlock(outer, inner, norm, sub=block)
        self.model = RefUnetBlock(out_nc, ngf, norm, in_nc=in_nc, sub=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights, biases and BatchNorm statistics, then eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(123)
    return net.eval()


def check_same_output(ref: nn.Module, imported, size: int, in_nc: int = 3) -> None:
    net = build_generator(imported.arch, **imported.kwargs)
    net.load_state_dict(imported.state_dict, strict=True)
    net.eval()
    x = torch.rand(2, in_nc, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        want = ref(x.clone())
        got = net(x.clone())
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-5
    assert want.std() > 0.05  # the comparison is not between two constant images


def resnet(n_blocks: int = 9, norm: str = "instance", dropout: bool = False, ngf: int = 4,
           in_nc: int = 3, out_nc: int = 3) -> RefResnetGenerator:
    return randomise(RefResnetGenerator(in_nc, out_nc, ngf, norm, dropout, n_blocks))


# --- recognition and conversion --------------------------------------------------------------


@pytest.mark.parametrize(("n_blocks", "norm", "dropout", "arch"), [
    (9, "instance", False, "resnet_9blocks"),
    (9, "instance", True, "resnet_9blocks"),
    (6, "instance", False, "resnet_6blocks"),
    (6, "instance", True, "resnet_6blocks"),
    (6, "batch", False, "resnet_6blocks"),
    (4, "none", True, "resnet"),
])
def test_reference_resnet_is_recognised_and_computes_the_same(n_blocks, norm, dropout,
                                                              arch) -> None:
    ref = resnet(n_blocks, norm, dropout)
    imported = recognise(ref.state_dict())
    assert imported.arch == arch
    assert imported.task == "cyclegan" and imported.value_range == (-1.0, 1.0)
    assert imported.kwargs["ngf"] == 4 and imported.kwargs["norm"] == norm
    assert imported.kwargs["dropout"] is dropout
    assert imported.kwargs.get("n_blocks", n_blocks) == n_blocks
    check_same_output(ref, imported, 32)


def test_reference_resnet_channels_are_read_from_the_tensors() -> None:
    ref = resnet(2, ngf=8, in_nc=1, out_nc=4)
    imported = recognise(ref.state_dict())
    assert (imported.kwargs["in_channels"], imported.kwargs["out_channels"]) == (1, 4)
    check_same_output(ref, imported, 16, in_nc=1)


@pytest.mark.parametrize(("num_downs", "ngf", "norm", "arch", "size"), [
    (8, 2, "batch", "unet_256", 256),
    (7, 4, "batch", "unet_128", 128),
    (6, 4, "instance", "unet", 64),
    (5, 4, "none", "unet", 32),
])
def test_reference_unet_is_recognised_and_computes_the_same(num_downs, ngf, norm, arch,
                                                            size) -> None:
    ref = randomise(RefUnetGenerator(3, 3, num_downs, ngf, norm))
    imported = recognise(ref.state_dict())
    assert imported.arch == arch and imported.task == "pix2pix"
    assert imported.kwargs["ngf"] == ngf and imported.kwargs["norm"] == norm
    assert imported.kwargs.get("num_downs", num_downs) == num_downs
    check_same_output(ref, imported, size)


# --- containers, as files --------------------------------------------------------------------


def with_old_instance_stats(state: dict, net: nn.Module) -> dict:
    """The entries PyTorch 0.3/0.4 saved for InstanceNorm layers that track nothing."""
    out = dict(state)
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            out[f"{name}.running_mean"] = torch.randn(m.num_features)
            out[f"{name}.running_var"] = torch.rand(m.num_features) + 3
            out[f"{name}.num_batches_tracked"] = torch.tensor(9)
    return out


WRAPPINGS = {
    "bare": lambda sd, other, net: sd,
    "params": lambda sd, other, net: {"params": sd, "iter": 300000},
    "params_ema": lambda sd, other, net: {"params": other, "params_ema": sd, "iter": 5},
    "state_dict": lambda sd, other, net: {"state_dict": sd, "epoch": 200},
    "module": lambda sd, other, net: {f"module.{k}": v for k, v in sd.items()},
    "old_instance_norm": lambda sd, other, net: with_old_instance_stats(sd, net),
}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_reference_resnet_files_in_every_container(tmp_path: Path, wrapping: str) -> None:
    ref = resnet(9, "instance", False)
    other = resnet(9, "instance", False).state_dict()
    other = {k: v + 1 for k, v in other.items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(WRAPPINGS[wrapping](ref.state_dict(), other, ref), path)
    imported = import_file(path)
    assert imported.arch == "resnet_9blocks"
    check_same_output(ref, imported, 32)


def test_unet_in_params_ema_with_module_prefixes(tmp_path: Path) -> None:
    ref = randomise(RefUnetGenerator(3, 3, 7, 4, "batch"))
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}
    path = tmp_path / "net_g.pth"
    torch.save({"params_ema": sd, "params": {k: v * 0 for k, v in sd.items()}}, path)
    state, where = load_foreign(path)
    assert "params_ema" in where and "module." in where
    check_same_output(ref, import_file(path), 128)


def test_params_is_chosen_with_key(tmp_path: Path) -> None:
    ref, other = resnet(6), randomise(resnet(6), seed=7)
    path = tmp_path / "x.pth"
    torch.save({"params": ref.state_dict(), "params_ema": other.state_dict()}, path)
    check_same_output(ref, import_file(path, key="params"), 32)
    check_same_output(other, import_file(path), 32)


def test_several_generators_need_key_and_key_picks_one(tmp_path: Path) -> None:
    a, b = resnet(6), randomise(resnet(6), seed=3)
    path = tmp_path / "two.pth"
    torch.save({"netG_A": a.state_dict(), "netG_B": b.state_dict()}, path)
    with pytest.raises(ForeignCheckpointError, match=r"two\.pth.*'netG_A', 'netG_B'.*--key"):
        load_foreign(path)
    check_same_output(b, import_file(path, key="netG_B"), 32)
    with pytest.raises(ForeignCheckpointError, match=r"--key 'netG_C' matches nothing.*netG_A"):
        load_foreign(path, key="netG_C")


def test_key_selects_a_prefix_of_a_lightning_state_dict(tmp_path: Path) -> None:
    a, b = resnet(6), randomise(resnet(6), seed=4)
    flat = {f"netG_A.{k}": v for k, v in a.state_dict().items()}
    flat.update({f"netG_B.{k}": v for k, v in b.state_dict().items()})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": flat, "epoch": 3, "global_step": 10}, path)
    check_same_output(a, import_file(path, key="netG_A"), 32)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    ref = resnet(6)
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    imported = import_file(path)
    assert imported.notes["container"] == "bare state dict"
    check_same_output(ref, imported, 32)


def test_an_img2img_checkpoint_is_not_imported(tmp_path: Path) -> None:
    net = build_generator("resnet_6blocks", ngf=4)
    path = tmp_path / "native.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", {"ngf": 4}, "cyclegan"))
    with pytest.raises(ForeignCheckpointError, match="already an img2img generator checkpoint"):
        load_foreign(path)


# --- refusals --------------------------------------------------------------------------------


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: code run by merely loading the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "horse2zebra.pth"
    if writer == "pickle":  # (a raw pickle of a tensor would be refused for torch's own reducer)
        path.write_bytes(pickle.dumps({"model.1.weight": [0.0], "x": CreatesAFile(marker)},
                                      protocol=2))
    else:
        torch.save({"model.1.weight": torch.zeros(4, 3, 7, 7), "x": CreatesAFile(marker)}, path)
    with pytest.raises(ForeignCheckpointError) as err:
        import_file(path)
    message = str(err.value)
    assert str(path) in message and "refused" in message and "never" in message
    assert "running code" in message and "io.open" in message
    assert "state dict of tensors" in message
    assert not marker.exists()
    if writer == "pickle":  # the payload is live: plain unpickling would have run it
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_a_file_with_python_objects_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "with_args.pth"
    torch.save({"params": resnet(6).state_dict(), "opt": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ForeignCheckpointError, match=r"args\.pth: refused.*argparse\.Namespace"):
        load_foreign(path)


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    with pytest.raises(ForeignCheckpointError, match=r"notes\.pth: not a PyTorch weight file"):
        load_foreign(path)
    with pytest.raises(ForeignCheckpointError, match=r"missing\.pth: file not found"):
        load_foreign(tmp_path / "missing.pth")


def test_unrelated_tensors_list_the_families_tried_and_the_first_keys(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pth"
    torch.save(nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2)).state_dict(), path)
    with pytest.raises(ForeignCheckpointError) as err:
        import_file(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "reference ResNet generator" in message and "reference U-Net generator" in message
    assert "4 tensors" in message and "0.weight (20, 10)" in message and "2.bias (2,)" in message


def test_a_broken_reference_resnet_names_the_bad_tensor() -> None:
    sd = resnet(6).state_dict()
    sd["model.12.conv_block.5.weight"] = torch.zeros(16, 16, 3, 1)
    with pytest.raises(ForeignCheckpointError, match=r"12\.block\.5\.weight.*\(16, 16, 3, 3\)"):
        recognise(sd)


def test_a_truncated_or_legacy_file(tmp_path: Path) -> None:
    ref = resnet(6)
    legacy = tmp_path / "pre_1_6.pth"  # the reference's published models predate the zip format
    torch.save(ref.state_dict(), legacy, _use_new_zipfile_serialization=False)
    check_same_output(ref, import_file(legacy), 32)
    full = tmp_path / "full.pth"
    torch.save(ref.state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(ForeignCheckpointError, match=r"cut\.pth: not a readable PyTorch file"):
        load_foreign(cut)


def test_basicsr_families_are_tried_after_the_reference_ones(monkeypatch) -> None:
    import types

    from img2img.foreign import Imported, families

    seen: list[str] = []

    def rrdb(state):
        seen.append("rrdb")
        return None

    def msrresnet(state):
        seen.append("msrresnet")
        if "conv_first.weight" not in state:
            return None
        return Imported("MSRResNet", "srresnet", {}, state, "sr", scale=4)

    fake = types.ModuleType("img2img.foreign.basicsr")
    fake.recognise_rrdbnet, fake.recognise_msrresnet = rrdb, msrresnet
    monkeypatch.setitem(__import__("sys").modules, "img2img.foreign.basicsr", fake)
    names = [name for name, _ in families()]
    assert names[:2] == ["reference ResNet generator (pytorch-CycleGAN-and-pix2pix)",
                         "reference U-Net generator (pytorch-CycleGAN-and-pix2pix)"]
    assert len(names) == 4 and "RRDBNet" in names[2] and "MSRResNet" in names[3]
    assert recognise({"conv_first.weight": torch.zeros(64, 3, 3, 3)}).family == "MSRResNet"
    assert seen == ["rrdb", "msrresnet"]
    with pytest.raises(ForeignCheckpointError, match=r"RRDBNet.*MSRResNet.*1 tensors: x \(2,\)"):
        recognise({"x": torch.zeros(2)})
    assert recognise(resnet(6).state_dict()).arch == "resnet_6blocks"
    assert seen == ["rrdb", "msrresnet", "rrdb", "msrresnet"]  # not asked for a match


def test_batch_norm_saved_before_pytorch_0_4_has_no_batch_counter() -> None:
    ref = randomise(RefUnetGenerator(3, 3, 5, 4, "batch"))
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    check_same_output(ref, recognise(sd), 32)


def test_a_norm_the_reference_never_builds_is_named() -> None:
    sd = resnet(6).state_dict()  # instance norm: add affine parameters it never has
    sd["model.2.weight"], sd["model.2.bias"] = torch.ones(4), torch.zeros(4)
    with pytest.raises(ForeignCheckpointError, match=r"ResNet.*model\.2 holds bias, weight"):
        recognise(sd)
