"""pix2pix: U-Net, paired data, any-size inference, deterministic vs noisy test mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.checkpoint import meta_for, read_meta, save_generator
from img2img.data.io import read_image, write_image
from img2img.data.paired import PairedDataset
from img2img.engine.trainer import train
from img2img.inference.translator import Translator
from img2img.nn import build_generator
from img2img.tasks import make_config


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_unet_parameter_counts_and_shapes() -> None:
    assert n_params(build_generator("unet_256")) == 54_413_955
    net = build_generator("unet_128", ngf=8)
    assert net.size_multiple == 128
    assert n_params(build_generator("unet", num_downs=7, ngf=8)) == n_params(net)
    small = build_generator("unet", num_downs=5, ngf=8).eval()
    y = small(torch.rand(2, 3, 32, 64) * 2 - 1)
    assert y.shape == (2, 3, 32, 64) and y.abs().max() <= 1
    assert sum(isinstance(m, torch.nn.Dropout) for m in build_generator("unet_256").modules()) == 3
    assert not any(isinstance(m, torch.nn.Dropout)
                   for m in build_generator("unet_256", dropout=False).modules())
    with pytest.raises(ValueError, match="multiple of 32"):
        small(torch.zeros(1, 3, 48, 48))


@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator("unet_256", ngf=8)
    for m in net.modules():  # give batch norm non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ck") / "G_A2B.safetensors"
    save_generator(path, net, meta_for(net, "unet_256", {"ngf": 8}, "pix2pix"))
    return path


@pytest.mark.parametrize("size", [(300, 300), (256, 384), (37, 53)])
def test_any_size_round_trip(unet_ckpt: Path, size: tuple[int, int]) -> None:
    """The reference implementation crashes on 256x384 or 300x300; here they just work."""
    t = Translator.from_checkpoint(unet_ckpt, device="cpu")
    assert read_meta(unet_ckpt).size_multiple == 256
    img = photo_like(*size, seed=1)
    out = t(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, t(img)), "inference is deterministic by default (eval mode)"


def test_dropout_at_test_is_noisy(unet_ckpt: Path) -> None:
    t = Translator.from_checkpoint(unet_ckpt, device="cpu", dropout_at_test=True)
    img = photo_like(64, 64, seed=2)
    assert not np.array_equal(t(img), t(img))


def test_paired_dataset_layouts_and_shared_crop(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        img = photo_like(40, 40, seed=i)
        write_image(tmp_path / "aligned" / "trainA" / f"{i}.png", img)
        write_image(tmp_path / "aligned" / "trainB" / f"{i}.jpg", img)
        write_image(tmp_path / "combined" / "train" / f"{i}.png", np.concatenate([img, img], 1))
    write_image(tmp_path / "aligned" / "trainA" / "lonely.png", photo_like(40, 40))
    with caplog.at_level(logging.WARNING):
        ds = PairedDataset(tmp_path / "aligned", load_size=36, crop_size=32)
    assert len(ds) == 3 and [p.name for p in ds.unmatched] == ["lonely.png"]
    assert "lonely.png" in caplog.text
    comb = PairedDataset(tmp_path / "combined", load_size=36, crop_size=32)
    for k in range(6):  # A == B in the files, so the same crop/flip keeps them equal
        item = comb[k]
        assert item["A"].shape == (3, 32, 32) and torch.equal(item["A"], item["B"])
        item = ds[k]
        assert (item["A"] - item["B"]).abs().mean() < 0.05  # jpg vs png of the same image
    swapped = PairedDataset(tmp_path / "aligned", direction="BtoA", load_size=36, crop_size=32)
    assert swapped[0]["A_path"].endswith(".jpg")
    with pytest.raises(FileNotFoundError, match="train"):
        PairedDataset(tmp_path / "nothing")


def test_pix2pix_learns_a_make_paired_task(tmp_path: Path) -> None:
    """A tiny dataset built by datasets/make_paired.py (blurred -> sharp); L1 clearly drops."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "datasets" / "make_paired.py"
    spec = importlib.util.spec_from_file_location("make_paired", script)
    make_paired = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_paired)  # type: ignore[union-attr]
    for i in range(8):
        write_image(tmp_path / "photos" / f"{i}.png", photo_like(40, 40, seed=i))
    root = tmp_path / "data"
    assert make_paired.main(["--photos", str(tmp_path / "photos"), "--op", "downscale",
                             "--out", str(root), "--test-fraction", "0.25", "--quiet"]) == 0
    out = tmp_path / "run"
    train(make_config(task="pix2pix", data=str(root), out=str(out), steps=150, batch_size=4,
                      generator="unet", num_downs=5, ngf=8, ndf=8, load_size=36, crop_size=32,
                      workers=0, device="cpu", quiet=True, sample_every=0, save_every=0,
                      lr=1e-3, log_every=1))
    l1 = [json.loads(line)["G_L1"] for line in (out / "losses.jsonl").read_text().splitlines()]
    assert np.mean(l1[-10:]) < 0.3 * np.mean(l1[:10]), (l1[:10], l1[-10:])
    t = Translator.from_checkpoint(out / "G_A2B.safetensors", device="cpu")
    errors = []
    for a_path in sorted((root / "testA").iterdir()):
        target = read_image(root / "testB" / a_path.name).astype(float)
        errors.append(np.abs(t(read_image(a_path)).astype(float) - target).mean())
    assert np.mean(errors) < 15, errors  # held-out photos: near the originals (untrained: ~60)
