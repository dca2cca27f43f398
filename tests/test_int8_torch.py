"""``translate --precision int8`` for the ResNet generators in PyTorch (oneDNN's int8
convolutions, x86 only): close to fp32, ranges cached as JSON, no ONNX Runtime needed."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imgfactory import photo_like
from torch import nn

from img2img.checkpoint import meta_for, save_generator
from img2img.commands.translate import translate_main
from img2img.data.io import read_image, write_image
from img2img.inference import quantize, torch_int8
from img2img.inference.translator import Translator
from img2img.nn import build_generator
from img2img.nn.cpu.int8_conv import Int8Conv2d, available, input_grid

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not available(), reason="oneDNN int8 convolutions: x86 only")]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize(("conv", "shape"), [
    (nn.Conv2d(3, 8, 7), (2, 3, 38, 38)),  # the stem, after its reflection pad
    (nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 33, 31)),  # downsampling, zero pad
    (nn.Conv2d(16, 16, 3, bias=False), (1, 16, 10, 12)),
])
def test_an_int8_conv_is_the_float_conv_within_its_rounding(conv: nn.Conv2d,
                                                            shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape) + 0.5  # all positive: the grid still holds 0 for the padding
    q = Int8Conv2d(conv, float(x.min()), float(x.max()))
    with torch.no_grad():
        want, got = conv(x), q(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert float((got - want).abs().max() / want.abs().max()) < 0.02
    # the same rounding done by hand (input to the uint8 grid, weights per channel)
    scale, zero = input_grid(float(x.min()), float(x.max()))
    xq = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    w = conv.weight.detach()
    ws = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    with torch.no_grad():
        emulated = F.conv2d(xq, torch.round(w / ws) * ws, conv.bias, conv.stride, conv.padding)
    assert float((got - emulated).abs().max()) < 1e-3


def test_inputs_outside_the_calibrated_range_are_clipped() -> None:
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    q = Int8Conv2d(conv, -1.0, 1.0)
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]).view(1, 1, 1, 6)
    got = q(x).flatten()
    np.testing.assert_allclose(got.numpy(), [-1, -1, 0, 0.5, 1, 1], atol=0.01)


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    net = build_generator("resnet_6blocks", ngf=8).eval()
    path = folder / "resnet.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", {"ngf": 8}, "cyclegan"))
    return path


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(folder / f"img{i}.png", photo_like(32, 32, seed=i))
    return sorted(folder.glob("*.png"))


def _translate(*args: object) -> int:
    return translate_main([str(a) for a in args])


def _ranges(out: Path) -> list[Path]:
    return sorted((out / quantize.CACHE_DIR).glob("*.json"))


def test_resnet_int8_runs_in_pytorch_close_to_fp32_and_reuses_its_ranges(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = _checkpoint(tmp_path)
    images = _images(tmp_path / "in", 4)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not needed on this path
    with caplog.at_level(logging.INFO, logger="img2img"):
        assert _translate("--checkpoint", ckpt, "--input", tmp_path / "in", "--output",
                          tmp_path / "out", "--precision", "int8", "--quiet") == 0
    assert "activation ranges measured in PyTorch" in caplog.text
    (cached,) = _ranges(tmp_path / "out")
    assert not list((tmp_path / "out" / quantize.CACHE_DIR).glob("*.onnx"))
    ranges = json.loads(cached.read_text())["ranges"]
    assert len(ranges) == 1 + 2 + 2 * 6  # stem, two downsampling convs, two per block
    fp32 = Translator.from_checkpoint(ckpt, "cpu", "fp32")
    # random weights are harsh on int8 (see test_int8's bounds: ONNX Runtime's recipe gives
    # this net 29-32 dB); float outputs of every conv do better
    worst = min(_psnr(read_image(tmp_path / "out" / p.name), fp32(read_image(p)))
                for p in images)
    assert worst >= 30.0
    first = {p.name: read_image(tmp_path / "out" / p.name) for p in images}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="img2img"):
        assert _translate("--checkpoint", ckpt, "--input", tmp_path / "in", "--output",
                          tmp_path / "out", "--precision", "int8", "--overwrite",
                          "--quiet") == 0
    assert "reusing the activation ranges" in caplog.text
    for p in images:
        np.testing.assert_array_equal(read_image(tmp_path / "out" / p.name), first[p.name])


def test_a_damaged_ranges_file_is_measured_again(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    images = _images(tmp_path / "in", 2)
    t = quantize.int8_translator(ckpt, tmp_path / "out", images, 2)
    assert t.precision == "int8" and "PyTorch int8" in t.model.architecture
    (cached,) = _ranges(tmp_path / "out")
    want = t(read_image(images[0]))
    cached.write_text('{"ranges": {"model.1": [0, "x"]}}')
    again = quantize.int8_translator(ckpt, tmp_path / "out", images, 2)
    np.testing.assert_array_equal(again(read_image(images[0])), want)
    assert len(json.loads(cached.read_text())["ranges"]) == 15  # written anew


def test_weights_get_7_bits_where_int8_products_saturate(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    ckpt = _checkpoint(tmp_path)
    images = _images(tmp_path / "in", 2)
    seen: list[int] = []
    real = torch_int8.Int8Conv2d.__init__

    def spy(self: Int8Conv2d, conv: nn.Conv2d, low: float, high: float,
            weight_max: int = 127) -> None:
        seen.append(weight_max)
        real(self, conv, low, high, weight_max)

    monkeypatch.setattr(torch_int8.Int8Conv2d, "__init__", spy)
    monkeypatch.setattr(quantize.runtime, "int8_weights_full_range", lambda: False)
    t = quantize.int8_translator(ckpt, tmp_path / "out", images, 2)
    assert seen and set(seen) == {63}
    fp32 = Translator.from_checkpoint(ckpt, "cpu", "fp32")
    assert _psnr(t(read_image(images[0])), fp32(read_image(images[0]))) >= 28.0


def _sr(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_generator("srresnet", scale=4, channels=8, n_blocks=2, norm="batch",
                          residual=True).eval()
    for m in net.modules():  # trained-like statistics, so that folding them matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def test_sr_with_its_output_conv_on_phases_computes_what_srresnet_does() -> None:
    """The float network as the int8 path runs it (batch norms folded, the output conv on
    the last upsampler's phases), before any rounding to 8 bits."""
    net = _sr()
    x = torch.rand(2, 3, 12, 10) * 2 - 1
    with torch.no_grad():
        want = net(x)
        convs, run = torch_int8._sr_plan(net)
        got = run(x)
    assert isinstance(net, torch_int8.Int8SRResNet) and "tail_phases" in convs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_sr_int8_is_close_to_fp32(tmp_path: Path) -> None:
    net = _sr()
    ckpt = tmp_path / "sr.safetensors"
    kwargs = {"scale": 4, "channels": 8, "n_blocks": 2, "norm": "batch", "residual": True}
    save_generator(ckpt, net, meta_for(net, "srresnet", kwargs, "sr"))
    images = _images(tmp_path / "in", 2)
    t = quantize.int8_translator(ckpt, tmp_path / "out", images, 2)
    assert t.precision == "int8" and _ranges(tmp_path / "out")
    fp32 = Translator.from_checkpoint(ckpt, "cpu", "fp32")
    for p in images:
        got, want = t(read_image(p)), fp32(read_image(p))
        assert got.shape == want.shape == (128, 128, 3)
        # 60-61 dB here; the bicubic skip alone (a body that computes nothing) scores 31
        assert _psnr(got, want) >= 50.0


def test_a_batch_gives_each_image_what_it_gets_alone(tmp_path: Path) -> None:
    """Static ranges and per-image instance norms: the batch a photo is in changes nothing."""
    ckpt = _checkpoint(tmp_path)
    images = _images(tmp_path / "in", 2)
    t = quantize.int8_translator(ckpt, tmp_path / "out", images, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        both = t.backend.run(x)
        alone = torch.cat([t.backend.run(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-5)
