"""CUT and FastCUT: the PatchNCE loss, the generator's named features, learning a toy
unpaired task, exact resume, the exported generator, and their flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from imgfactory import photo_like
from safetensors.torch import load_file

from img2img.checkpoint import read_meta
from img2img.cli import train_main, translate_main
from img2img.config import TrainConfig
from img2img.data.io import read_image, write_image
from img2img.engine.state import RESUME_FILE, load_resume
from img2img.engine.trainer import train
from img2img.errors import UsageError
from img2img.inference.translator import Translator
from img2img.losses.patchnce import PatchHead, patch_nce
from img2img.nn import build_generator
from img2img.tasks import make_config
from img2img.tasks.cut import nce_layer_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # resumed runs compared bit for bit

TINT = np.array([0.5, 0.6, 0.4])  # domain B: photos with a strong colour cast
OFFSET = np.array([0.45, 0.1, 0.55])
PUBLISHED = ["input", "down1", "down2", "block1", "block5"]  # --nce-layers 0,4,8,12,16


def tint(img: np.ndarray) -> np.ndarray:
    """The A->B mapping of the toy task (uint8 in, uint8 out)."""
    x = img.astype(np.float64) / 255.0
    return np.round(np.clip(x * TINT + OFFSET, 0, 1) * 255).astype(np.uint8)


def grainy(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like image with fine texture: as in photos, its patches differ in structure,
    not only in colour (which is what the toy task changes)."""
    rng = np.random.default_rng(seed + 11)
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (h, w, 3)), (0, 0), 2.0)
    texture *= 0.5 * 0.18 * 255 / texture.std()
    return np.clip(photo_like(h, w, seed=seed) + texture, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """trainA: textured photo-like images; trainB: *other* ones with a colour cast."""
    root = tmp_path_factory.mktemp("toy")
    for i in range(12):
        write_image(root / "trainA" / f"a{i}.png", grainy(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", tint(grainy(40, 40, seed=100 + i)))
    for i in range(4):
        write_image(root / "testA" / f"t{i}.png", grainy(32, 32, seed=500 + i))
    return root


def tiny(data: Path, out: Path, task: str = "cut", **kw: object) -> TrainConfig:
    base = dict(task=task, data=str(data), out=str(out), steps=20, batch_size=2,
                generator="resnet_6blocks", ngf=8, ndf=8, load_size=36, crop_size=32,
                workers=0, device="cpu", quiet=True, sample_every=0, save_every=0, seed=3)
    base.update(kw)
    return make_config(**base)


# --- the loss and the generator's features ---------------------------------------------
def test_patchnce_prefers_matching_patches_and_trains_generator_and_head() -> None:
    torch.manual_seed(0)
    g = build_generator("resnet_6blocks", ngf=8)
    layers = nce_layer_names(g, "0,4,8,12,16")
    assert layers == PUBLISHED
    head = PatchHead([g.feature_layers[n].channels for n in layers], width=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = g(x, features=layers)
    keys = [f.detach() for f in feats]
    same = float(patch_nce(head, feats, keys, num_patches=64).detach())
    gen = torch.Generator().manual_seed(1)
    shuffled = [f.flatten(2)[:, :, torch.randperm(f.shape[2] * f.shape[3], generator=gen)]
                .view_as(f) for f in feats]
    other = patch_nce(head, shuffled, keys, num_patches=64)
    assert same < 0.5 * float(other.detach()), (same, float(other.detach()))
    assert float(other.detach()) > 0.8 * np.log(64)  # shuffled patches: close to chance
    other.backward()
    assert g.model[1].weight.grad is not None and g.model[1].weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_named_features_leave_the_generator_unchanged(upsample: str) -> None:
    torch.manual_seed(0)
    g = build_generator("resnet_9blocks", ngf=8, upsample=upsample).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(x), g.model(x)), "the inference path is the plain sequence"
        feats = g(x, features=PUBLISHED)
        assert [f.shape[1:] for f in feats] == [(3, 38, 38), (16, 16, 16), (32, 8, 8),
                                               (32, 8, 8), (32, 8, 8)]
        assert torch.equal(feats[2], g.model[:8](x)), "down2 is the second stride-2 conv"
        assert torch.equal(feats[4], g.model[:15](x)), "block5 is the fifth residual block"
    assert all(k.startswith("model.") for k in g.state_dict())
    assert not any("feature" in k for k in g.state_dict())


def test_features_survive_in_place_relu_without_norm() -> None:
    g = build_generator("resnet_6blocks", ngf=8, norm="none")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    (down1,) = g(x, features=["down1"])
    down1_then_more = g(x, features=["down1", "block1"])[0]
    assert torch.equal(down1, down1_then_more)
    assert float(down1.detach().min()) < 0, "the conv output itself, not the ReLU after it"


def test_nce_layers_errors_name_the_flag(toy_data: Path, tmp_path: Path) -> None:
    g = build_generator("resnet_6blocks", ngf=8)
    assert nce_layer_names(g, "input,down2,block6") == ["input", "down2", "block6"]
    with pytest.raises(UsageError, match=r"--nce-layers 0,5: 5 is not a layer.* 12-17, "):
        nce_layer_names(g, "0,5")
    with pytest.raises(UsageError, match="--nce-layers 18"):
        nce_layer_names(g, "18")  # the 7th block of a 6-block generator
    with pytest.raises(UsageError, match="--nce-layers needs a generator with named"):
        train(tiny(toy_data, tmp_path / "u", generator="unet", num_downs=5, steps=1))


# --- training ------------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "steps"), [("cut", 300), ("fastcut", 500)])
def test_cut_learns_toy_translation(toy_data: Path, tmp_path: Path, task: str,
                                    steps: int) -> None:
    """A tiny CUT / FastCUT, a few hundred steps: the generator clearly beats the identity.

    FastCUT's steps cost ~0.6 of CUT's (no identity pass), so it gets more. Weights start
    from CycleGAN's N(0, 0.02): with the published xavier (gain 0.02) a net this small starts
    from a constant output and a discriminator whose input gradient is negligible, and even
    the adversarial term alone (lambda_NCE 0) stays at the identity for 300 steps here.
    Measured: 0.38 (CUT) and 0.40 (FastCUT) of the identity's error; other seeds gave
    0.32-0.47."""
    out = tmp_path / task
    train(tiny(toy_data, out, task, steps=steps, decay_steps=steps // 3, lr=1e-3, seed=0,
               init="normal"))
    translator = Translator.from_checkpoint(out / "G_A2B.safetensors", device="cpu")
    err_model, err_identity = [], []
    for f in sorted((toy_data / "testA").iterdir()):
        x = read_image(f)
        target = tint(x).astype(np.float64)
        err_model.append(np.abs(translator(x).astype(np.float64) - target).mean())
        err_identity.append(np.abs(x.astype(np.float64) - target).mean())
    assert np.mean(err_model) < 0.6 * np.mean(err_identity), (err_model, err_identity)


@pytest.mark.parametrize("task", ["cut", "fastcut"])
def test_resume_is_exact(toy_data: Path, tmp_path: Path, task: str) -> None:
    """10 steps + --resume + 10 steps == 20 steps: generator, discriminator and head."""
    train(tiny(toy_data, tmp_path / "straight", task))
    train(tiny(toy_data, tmp_path / "split", task), stop_after=10)
    assert load_resume(tmp_path / "split" / RESUME_FILE)["step"] == 10
    assert train_main(["--data", str(toy_data), "--out", str(tmp_path / "split"),
                       "--resume"]) == 0
    a = load_resume(tmp_path / "straight" / RESUME_FILE)["task_state"]["nets"]
    b = load_resume(tmp_path / "split" / RESUME_FILE)["task_state"]["nets"]
    assert set(a) == {"G", "F", "D"}
    for net in a:
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), f"{net} differs"
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert saved["task"] == task and saved["nce_layers"] == "0,4,8,12,16"


def test_exported_generator_translates_a_folder(toy_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    train(tiny(toy_data, out, "fastcut", steps=2, precision="bf16"))
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["G_A2B.safetensors"]
    meta = read_meta(out / "G_A2B.safetensors")
    assert (meta.arch, meta.task, meta.direction) == ("resnet_6blocks", "fastcut", "A2B")
    assert translate_main(["--checkpoint", str(out / "G_A2B.safetensors"), "--input",
                           str(toy_data / "testA"), "--output", str(tmp_path / "fake_b"),
                           "--device", "cpu", "--quiet"]) == 0
    assert "4 translated" in capsys.readouterr().out
    for i in range(4):
        assert read_image(tmp_path / "fake_b" / f"t{i}.png").shape == (32, 32, 3)
    back = tmp_path / "ba"
    train(tiny(toy_data, back, "cut", steps=1, direction="BtoA"))
    assert sorted(p.name for p in back.glob("*.safetensors")) == ["G_B2A.safetensors"]
    assert read_meta(back / "G_B2A.safetensors").direction == "B2A"
    assert set(load_file(str(back / "G_B2A.safetensors"))) == set(
        build_generator("resnet_6blocks", ngf=8).state_dict())


def test_two_processes_train_cut_in_sync(toy_data: Path, tmp_path: Path) -> None:
    """torchrun (gloo, 2 CPU processes): the generator, head and discriminator go through
    DDP, including the encoder-only passes; both ranks end with the same weights."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(root / "tools" / "train.py"), "--task", "cut", "--data", str(toy_data),
           "--out", str(out), "--steps", "3", "--batch-size", "1", "--generator",
           "resnet_6blocks", "--ngf", "8", "--ndf", "8", "--crop-size", "32", "--load-size",
           "36", "--workers", "0", "--device", "cpu", "--quiet", "--sample-every", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_resume(out / RESUME_FILE)
    assert state["step"] == 3 and state["world_size"] == 2
    sums = [r["weight_sums"] for r in state["ranks"]]
    assert sums[0] == sums[1] and set(sums[0]) == {"G", "F", "D"}
    assert set(load_file(str(out / "G_A2B.safetensors"))) == set(state["task_state"]["nets"]["G"])


# --- flags ---------------------------------------------------------------------------------
def test_cut_flags_and_published_defaults(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    for task, nce, idt, flip, epochs in [("cut", "1.0", "on", "off", "200"),
                                         ("fastcut", "10.0", "off", "on", "150")]:
        with pytest.raises(SystemExit):
            train_main(["--task", task, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"weight of the PatchNCE loss (default {nce})" in text
        assert "--nce-idt, --no-nce-idt" in text and f"G(B) against B (default {idt})" in text
        assert f"flip their features back (default {flip})" in text
        assert f"(default {epochs} for --task {task})" in text
        for flag in ("--nce-layers", "--num-patches", "--nce-t", "--netf-nc"):
            assert flag in text
    fast = make_config(task="fastcut").options
    assert (fast.lambda_nce, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    assert (fast.lr, fast.beta1, fast.beta2, fast.load_size, fast.crop_size) == (
        2e-4, 0.5, 0.999, None, 256)
    code = None
    try:
        train_main(["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--lambda-nce", "2"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert ("--lambda-nce is an option of --task cut and fastcut, not cyclegan"
            in capsys.readouterr().err)
