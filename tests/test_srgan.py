"""SRGAN: networks, SR data, the two training phases and a learning test against bicubic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.checkpoint import read_meta
from img2img.config import TrainConfig
from img2img.data.io import write_image
from img2img.data.resize import bicubic_resize, downscale
from img2img.data.sr import SRDataset
from img2img.engine.state import RESUME_FILE, load_resume
from img2img.engine.trainer import train
from img2img.inference.translator import Translator
from img2img.nn import build_discriminator, build_generator
from img2img.nn.cpu import BandedSRResNet, accelerate, direct
from img2img.tasks import make_config


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like image with sharp shapes, where bicubic upscaling visibly blurs."""
    img = photo_like(h, w, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 20)), y + int(rng.integers(4, 20))),
                          colour, -1)
        else:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, 2)
    return img


def test_srresnet_sizes_and_counts() -> None:
    assert n_params(build_generator("srresnet", scale=4)) == 1_549_462  # "about 1.55 M"
    for scale in (2, 4, 8):
        net = build_generator("srresnet", scale=scale, channels=8, n_blocks=2)
        assert net.scale == scale
        assert net(torch.zeros(1, 3, 7, 9)).shape == (1, 3, 7 * scale, 9 * scale)
    with pytest.raises(ValueError, match="scale"):
        build_generator("srresnet", scale=3)
    d = build_discriminator("srgan", ndf=8)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert [c.stride[0] for c in convs] == [1, 2] * 4
    for size in (32, 96, 50):  # adaptive pooling: any crop size
        assert d(torch.zeros(2, 3, size, size)).shape == (2, 1)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_same_output_as_its_layers_in_order(scale):
    torch.manual_seed(0)
    g = accelerate(build_generator("srresnet", scale=scale, channels=8, n_blocks=1).eval())
    x = torch.rand(1, 3, 9, 7) * 2 - 1
    with torch.no_grad():
        y = g(x)
        with direct(g):  # the layers in their published order, direct convs
            head = g.head(x)
            ref = g.tail(g.upsample(head + g.fuse(g.blocks(head))))
    assert y.shape == (1, 3, 9 * scale, 7 * scale)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale, band_rows", [(4, 96), (4, 3), (2, 4), (8, 5)])
def test_srresnet_inference_equals_training_mode_forward(scale: int, band_rows: int):
    # no_grad on the CPU takes the lean path (channels-last, the last stage in bands of
    # band_rows rows, in-place PReLU); small bands put band edges inside the image
    torch.manual_seed(0)
    g = accelerate(build_generator("srresnet", scale=scale, channels=8, n_blocks=1,
                                   residual=True).eval())
    assert type(g) is BandedSRResNet
    g.band_rows = band_rows
    x = torch.rand(2, 3, 11, 6) * 2 - 1
    with torch.no_grad():
        lean = g(x)
    full = g(x)
    assert lean.is_contiguous() and full.requires_grad
    assert lean.shape == (2, 3, 11 * scale, 6 * scale)
    torch.testing.assert_close(lean, full.detach(), rtol=1e-5, atol=1e-5)


def test_sr_dataset_on_the_fly_and_premade(tmp_path: Path) -> None:
    for i in range(3):
        hr = textured(64, 72, seed=i)
        write_image(tmp_path / "folder" / f"{i}.png", hr)
        write_image(tmp_path / "pairs" / "HR" / f"{i}.png", hr)
        write_image(tmp_path / "pairs" / "LR_x4" / f"{i}.png", downscale(hr, 4))
    ds = SRDataset(tmp_path / "folder", scale=4, crop_size=32)
    item = ds[0]
    assert item["A"].shape == (3, 8, 8) and item["B"].shape == (3, 32, 32)
    # the LR input is the bicubic downscale of the HR crop (up to augmentation order)
    hr = ((item["B"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    lr = ((item["A"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    assert np.abs(downscale(hr, 4).astype(int) - lr).max() <= 1
    pairs = SRDataset(tmp_path / "pairs", scale=4, crop_size=32)
    item = pairs[5]
    hr = ((item["B"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    lr = ((item["A"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    assert np.abs(downscale(hr, 4).astype(int) - lr).mean() < 2, "pre-made pairs stay aligned"
    with pytest.raises(ValueError, match="multiple"):
        SRDataset(tmp_path / "folder", scale=4, crop_size=30)


def sr_cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(task="srgan", data=str(data), out=str(out), scale=2, crop_size=32,
                batch_size=4, ngf=16, ndf=8, steps=5, workers=0, device="cpu", quiet=True,
                sample_every=0, save_every=0, seed=0, lr=1e-3)
    base.update(kw)
    return make_config(**base)


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sr")
    for i in range(10):
        write_image(root / "train" / f"{i}.png", textured(64, 64, seed=i))
    return root


def test_psnr_then_gan_phase_exports_ema(sr_data: Path, tmp_path: Path) -> None:
    train(sr_cfg(sr_data / "train", tmp_path / "p1"))
    meta = read_meta(tmp_path / "p1" / "G.safetensors")
    assert (meta.task, meta.scale, meta.extra["phase"]) == ("srgan", 2, "psnr")
    out = tmp_path / "p2"
    train(sr_cfg(sr_data / "train", out, phase="gan", lambda_perceptual=0.0, lambda_pixel=1.0,
                 init_from=str(tmp_path / "p1" / "G.safetensors"), ema_decay=0.5))
    state = load_resume(out / RESUME_FILE)["task_state"]["nets"]
    assert {"G", "G_ema", "D"} <= set(state)
    exported = Translator.from_checkpoint(out / "G.safetensors", device="cpu").model.state_dict()
    for k, v in exported.items():
        assert torch.equal(v, state["G_ema"][k]), f"exported {k} is not the EMA weights"
    assert any(not torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"])
    with pytest.raises(ValueError, match="x2"):
        train(sr_cfg(sr_data / "train", tmp_path / "p3", phase="gan", scale=4,
                     lambda_perceptual=0.0, init_from=str(tmp_path / "p1" / "G.safetensors")))


def test_sr_model_beats_bicubic(sr_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "learn"
    train(sr_cfg(sr_data / "train", out, steps=400, decay_steps=100, pixel_loss="l1",
                 norm="none", sr_residual=True, n_blocks=4, lr=2e-3))
    t = Translator.from_checkpoint(out / "G.safetensors", device="cpu")
    err_model, err_bicubic = [], []
    for seed in range(100, 104):  # held-back images
        hr = textured(48, 48, seed=seed).astype(np.float64)
        lr = downscale(hr.astype(np.uint8), 2)
        err_model.append(np.abs(t(lr).astype(np.float64) - hr).mean())
        err_bicubic.append(np.abs(bicubic_resize(lr, 48, 48).astype(np.float64) - hr).mean())
    assert np.mean(err_model) < 0.95 * np.mean(err_bicubic), (err_model, err_bicubic)


def test_make_sr_pairs_script(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_sr_pairs", Path(__file__).resolve().parents[1] / "datasets" / "make_sr_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    src = tmp_path / "photos"
    write_image(src / "a.jpg", textured(50, 61, seed=1))
    write_image(src / "sub" / "b.png", textured(40, 44, seed=2))
    (src / "broken.png").write_bytes(b"not a png")
    assert module.main(["--hr", str(src), "--scale", "4", "--out", str(tmp_path / "x4"),
                        "--quiet"]) == 1
    from img2img.data.io import read_image

    hr, lr = read_image(tmp_path / "x4" / "HR" / "a.png"), read_image(
        tmp_path / "x4" / "LR_x4" / "a.png")
    assert hr.shape[:2] == (48, 60) and lr.shape[:2] == (12, 15)
    assert (tmp_path / "x4" / "LR_x4" / "sub" / "b.png").is_file()
    ds = SRDataset(tmp_path / "x4", scale=4, crop_size=32)
    assert len(ds) == 2 and ds[0]["A"].shape == (3, 8, 8)
    assert module.main(["--hr", str(src), "--scale", "4", "--out", str(src / "x"),
                        "--quiet"]) == 2
