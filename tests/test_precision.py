"""Low precision and compiled inference give what fp32 eager gives.

The bf16 check uses the toolkit's shipped, trained model on the bundled real aerial photos
(both live in the repository), as a user would run them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.checkpoint import load_generator, meta_for, save_generator
from img2img.data.io import read_image
from img2img.inference.bundled import bundled_path
from img2img.inference.translator import Translator
from img2img.nn import build_generator, init_weights

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = bundled_path("sr_x4_naip")
PHOTOS = sorted((ROOT / "samples" / "naip").glob("*_rgb.jpg"))


def test_bf16_inference_within_2_of_fp32_on_real_photos() -> None:
    assert SHIPPED.exists() and PHOTOS, "the shipped model and sample photos are in the repo"
    fp32 = Translator.from_checkpoint(SHIPPED, device="cpu", precision="fp32")
    bf16 = Translator.from_checkpoint(SHIPPED, device="cpu", precision="bf16")
    worst = []
    for path in PHOTOS:
        img = read_image(path)[:96, :128]
        a, b = fp32(img).astype(np.int16), bf16(img).astype(np.int16)
        assert a.shape == b.shape == (384, 512, 3)
        worst.append(int(np.abs(a - b).max()))
    assert max(worst) <= 2, f"bf16 differs from fp32 by up to {worst} /255 per photo"


def test_compiled_translator_matches_eager_and_keeps_checkpoints(tmp_path: Path) -> None:
    """``--compile`` changes speed only: same outputs, same checkpoint keys."""
    torch.manual_seed(0)
    kwargs = {"ngf": 8, "norm": "instance", "dropout": False, "upsample": "transpose"}
    net = init_weights(build_generator("resnet_6blocks", **kwargs), "normal", 0.02)
    path = tmp_path / "g.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", kwargs, "cyclegan"))
    eager = Translator.from_checkpoint(path, device="cpu")
    compiled = Translator.from_checkpoint(path, device="cpu", compile=True)
    img = (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)
    diff = np.abs(eager(img).astype(np.int16) - compiled(img).astype(np.int16))
    assert diff.max() <= 1
    again = tmp_path / "again.safetensors"
    save_generator(again, compiled.model, compiled.meta)
    reloaded, _ = load_generator(again, torch.device("cpu"))
    assert set(reloaded.state_dict()) == set(net.state_dict()), "no _orig_mod. prefixes"


def test_compiled_training_step_learns_like_eager(tmp_path: Path) -> None:
    """Two tiny pix2pix tasks, one compiled: after a few identical steps their weights agree.

    fp32 only: compiling costs ~40 s here; bf16 + compile is exercised by the benchmark."""
    from img2img.tasks import make_config, task_class

    cls = task_class("pix2pix")
    tasks = []
    for compiled in (False, True):
        torch.manual_seed(0)
        cfg = cls.apply_defaults(make_config(
            task="pix2pix", data=str(tmp_path), generator="unet", num_downs=5, ngf=8, ndf=8,
            crop_size=32, dropout=False, norm="instance",
            compile=compiled))
        task = cls(cfg, torch.device("cpu"))
        if compiled:
            task.compile_networks()
        tasks.append(task)
    gen = torch.Generator().manual_seed(1)
    batches = [{"A": torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1,
                "B": torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1} for _ in range(3)]
    losses = [[task.train_step(b)["G_L1"] for b in batches] for task in tasks]
    assert losses[0] == pytest.approx(losses[1], rel=0.05, abs=0.05)
    eager, compiled = (t.nets["G"].state_dict() for t in tasks)
    assert set(eager) == set(compiled), "compiling keeps state_dict keys"
    worst = max(float((eager[k].float() - compiled[k].float()).abs().max()) for k in eager)
    assert worst < 1e-2, worst


def test_low_precision_padding_is_bit_identical_to_stock_padding() -> None:
    """The autocast-aware pad only skips casts: same output as ``nn.ReflectionPad2d``."""
    from torch import nn

    from img2img.nn.cpu import accelerate
    from img2img.nn.cpu.pad import ReflectionPad2d

    torch.manual_seed(0)
    net = accelerate(build_generator("resnet_6blocks", ngf=8).eval())
    stock = accelerate(build_generator("resnet_6blocks", ngf=8).eval())
    stock.load_state_dict(net.state_dict())
    pads = [m for m in stock.modules() if type(m) is ReflectionPad2d]
    assert len(pads) == 2 + 2 * 6  # stem, output, two per block: all of them
    for m in pads:  # the only difference: stock pads
        m.__class__ = nn.ReflectionPad2d
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(x), stock(x))
    with torch.no_grad():
        assert torch.equal(net(x), stock(x))
