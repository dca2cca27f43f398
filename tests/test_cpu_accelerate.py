"""``img2img.nn.cpu``: the faster execution applied to a built network computes what the
plain network computes, keeps its parameters and state dict, can be switched off for one
model at a time, and is where training and translation use the networks."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from img2img.checkpoint import read_meta
from img2img.inference.translator import Translator
from img2img.nn import build_discriminator, build_generator
from img2img.nn.cpu import (
    BandedSRResNet,
    ChannelsLastConvTranspose2d,
    ChannelsLastInstanceNorm2d,
    Conv3x3,
    PhaseConv2d,
    ReflectionPad2d,
    accelerate,
    direct,
    winograd,
)
from img2img.tasks import make_config, task_class

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SR = ROOT / "models" / "sr_x4_naip.safetensors"
FAST = (Conv3x3, PhaseConv2d, ReflectionPad2d, BandedSRResNet, ChannelsLastConvTranspose2d,
        ChannelsLastInstanceNorm2d)
NETS = {
    "resnet_9blocks": ("resnet_9blocks", {"ngf": 8}, 32),
    "srresnet_x2": ("srresnet", {"scale": 2, "channels": 8, "n_blocks": 2}, 13),
    "srresnet_x4": ("srresnet", {"scale": 4, "channels": 8, "n_blocks": 1, "residual": True},
                    11),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def winograd_at_any_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Winograd on the tiny test widths and sizes too (it measured faster from 128
    channels, and in training from MIN_TRAIN_PIXELS output pixels)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_TRAIN_PIXELS", 0)


def _pair(arch: str, kwargs: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random network twice: built, and built then accelerated."""
    torch.manual_seed(0)
    plain = build_generator(arch, **kwargs)
    for m in plain.modules():  # running statistics away from (0, 1)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return plain, accelerate(copy.deepcopy(plain))


def _fast_layers(net: torch.nn.Module) -> list[str]:
    return sorted(type(m).__name__ for m in net.modules() if isinstance(m, FAST))


@pytest.mark.usefixtures("winograd_at_any_width")
@pytest.mark.parametrize("name", list(NETS))
def test_accelerated_network_computes_the_plain_one(name: str) -> None:
    arch, kwargs, side = NETS[name]
    plain, fast = _pair(arch, kwargs)
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert {k: v.shape for k, v in fast.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}
    kinds = set(_fast_layers(fast))
    assert "PhaseConv2d" in kinds  # the output conv
    assert kinds >= ({"Conv3x3", "ReflectionPad2d", "ChannelsLastConvTranspose2d",
                      "ChannelsLastInstanceNorm2d"} if arch.startswith("resnet")
                     else {"BandedSRResNet"})
    x = torch.rand(2, 3, side, side + 4) * 2 - 1
    for train in (True, False):  # training forward (with autograd) and eval inference
        plain.train(train)
        fast.train(train)
        with torch.no_grad():
            want = plain(x)
            got = fast(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() < 1e-4, (name, train)
    want, got = plain(x), fast(x)  # eval mode, with autograd: gradients reach the weights
    assert (got - want).abs().max().item() < 1e-4
    got.square().mean().backward()
    want.square().mean().backward()
    for (key, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        bound = 1e-4 * max(1.0, q.grad.abs().max().item())
        assert (p.grad - q.grad).abs().max().item() < bound, key


def test_upsampling_runs_channels_last_in_cpu_inference_with_each_image_its_own_norm() -> None:
    """In inference the transposed convs and the norms after them keep channels-last and
    normalise every image of a batch by its own statistics (two images 50x apart in scale
    give what each gives alone); with autograd they run PyTorch's NCHW layers."""
    plain, fast = _pair("resnet_6blocks", {"ngf": 8})
    seen: list[bool] = []

    def layout(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen.append(out.is_contiguous(memory_format=torch.channels_last)
                    and not out.is_contiguous())

    for m in fast.modules():
        if isinstance(m, ChannelsLastConvTranspose2d | ChannelsLastInstanceNorm2d):
            m.register_forward_hook(layout)
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    x[1] *= 0.02
    with torch.no_grad():
        got = fast(x)
        alone = torch.cat([fast(x[:1]), fast(x[1:])])
        want = plain(x)
    assert seen and all(seen)
    assert (got - want).abs().max().item() < 1e-4
    assert (got - alone).abs().max().item() < 1e-5
    seen.clear()
    got, want = fast(x), plain(x)  # autograd on: NCHW, the built layers' own forward
    assert seen and not any(seen)
    assert (got - want).abs().max().item() < 1e-4


def test_accelerate_keeps_the_module_objects_and_their_parameters() -> None:
    net = build_generator("resnet_6blocks", ngf=8)
    modules = list(net.modules())
    params = list(net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    assert accelerate(net) is net
    assert list(net.modules()) == modules and list(net.parameters()) == params
    before = _fast_layers(net)
    accelerate(net)  # a second time changes nothing
    assert _fast_layers(net) == before
    net(torch.rand(1, 3, 16, 16)).mean().backward()
    opt.step()  # the optimiser built before the rewrite still moves the weights used
    assert all(p.grad is not None for p in net.parameters())


def test_other_architectures_are_left_as_built() -> None:
    nets = [build_generator("unet_128", ngf=8),
            build_generator("rrdbnet", num_feat=8, num_block=1, num_grow_ch=4),
            build_generator("msrresnet", num_feat=8, num_block=1),
            build_discriminator("patchgan", ndf=8)]
    for net in nets:
        kinds = [type(m) for m in net.modules()]
        accelerate(net)
        assert [type(m) for m in net.modules()] == kinds, type(net).__name__


@pytest.mark.usefixtures("winograd_at_any_width")
def test_direct_restores_the_built_layers_of_that_model_only() -> None:
    plain, a = _pair("resnet_9blocks", {"ngf": 8})
    b = accelerate(copy.deepcopy(plain))
    sr_plain, sr = _pair("srresnet", {"scale": 2, "channels": 8, "n_blocks": 1})
    sr_plain.eval()
    sr.eval()
    fast_kinds = _fast_layers(a)
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        fast_b = b(x)
        with direct(a, sr):
            assert _fast_layers(a) == [] and _fast_layers(sr) == []
            assert [type(m) for m in a.modules()] == [type(m) for m in plain.modules()]
            assert type(sr) is type(sr_plain)
            assert torch.equal(a(x), plain(x))  # PyTorch's own layers, bit for bit
            assert torch.equal(sr(x), sr_plain(x))
            assert _fast_layers(b) == fast_kinds  # another model keeps its fast layers
            assert torch.equal(b(x), fast_b)
            with direct(a):  # nested: still direct, and the outer block restores
                assert _fast_layers(a) == []
            assert _fast_layers(a) == []
        assert _fast_layers(a) == fast_kinds and type(sr) is BandedSRResNet
        with pytest.raises(RuntimeError, match="inside"), direct(a):
            raise RuntimeError("inside")
        assert _fast_layers(a) == fast_kinds


def test_architecture_modules_do_not_use_the_execution_tricks() -> None:
    nn_dir = ROOT / "img2img" / "nn"
    tricks = {"cpu", "winograd", "polyphase", "pad", "banded", "conv_algo"}
    for path in sorted(nn_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = (node.module or "").split(".") + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [part for a in node.names for part in a.name.split(".")]
            assert not tricks & set(names), f"{path.name} imports {names}"
    code = "import sys, img2img.nn; print(sorted(m for m in sys.modules if '.nn.cpu' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_training_builds_accelerated_generators_on_the_optimised_parameters() -> None:
    cfg = make_config(task="cyclegan", ngf=8, ndf=8, device="cpu")
    task = task_class("cyclegan")(cfg, torch.device("cpu"))
    trained = {id(p) for g in task.optimizers["G"].param_groups for p in g["params"]}
    for key in ("G_A2B", "G_B2A"):
        net = task.nets[key]
        assert {"Conv3x3", "PhaseConv2d", "ReflectionPad2d"} <= set(_fast_layers(net))
        assert {id(p) for p in net.parameters()} <= trained
    assert _fast_layers(task.nets["D_A"]) == []


def test_bundled_sr_model_loads_unchanged_and_runs_accelerated() -> None:
    meta = read_meta(BUNDLED_SR)
    with safe_open(str(BUNDLED_SR), framework="pt") as f:
        keys = set(f.keys())
    assert set(build_generator(meta.arch, **meta.kwargs).state_dict()) == keys
    tr = Translator.from_checkpoint(BUNDLED_SR, device="cpu")
    assert type(tr.model) is BandedSRResNet and set(tr.model.state_dict()) == keys
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    got = tr.translate_tensor(x)
    with direct(tr.model):
        want = tr.translate_tensor(x)
    assert got.shape == want.shape == (1, 3, 80, 112)
    assert (got - want).abs().max().item() < 1e-4
