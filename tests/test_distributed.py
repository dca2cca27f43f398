"""torchrun on the CPU (gloo, 2 processes): DDP training and sharded folder translation.

Each test launches ``python -m torch.distributed.run --standalone --nproc_per_node=2`` on the
real tools, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from imgfactory import photo_like
from safetensors.torch import load_file

from img2img.checkpoint import load_generator
from img2img.cli import train_main
from img2img.data.io import read_image_info, write_image
from img2img.data.unpaired import CounterSampler
from img2img.engine.state import RESUME_FILE, load_resume

ROOT = Path(__file__).resolve().parents[1]
LR = 2e-4
# instance norm, no image pool, no dropout: nothing depends on how the batch is split
TRAIN = ["--task", "cyclegan", "--generator", "resnet_6blocks", "--ngf", "8", "--ndf", "8",
         "--crop-size", "32", "--load-size", "36", "--pool-size", "0", "--workers", "0",
         "--device", "cpu", "--quiet", "--save-every", "0", "--sample-every", "0",
         "--seed", "5", "--lr", str(LR)]


def torchrun(script: str, *args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tools" / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    for i in range(8):
        write_image(root / "trainA" / f"a{i}.png", photo_like(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(40, 40, seed=50 + i))
    return root


@pytest.fixture(scope="module")
def two_process_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "ddp"
    proc = torchrun("train.py", "--data", data, "--out", out, "--steps", "4",
                    "--batch-size", "1", *TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 4/4 steps") == 1, "rank 0 alone reports"
    return out


def test_sampler_splits_each_global_batch_across_ranks() -> None:
    def take(sampler: CounterSampler, n: int) -> list[int]:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    assert take(CounterSampler(0, 0, 2, 2), 6) == [0, 1, 4, 5, 8, 9]
    assert take(CounterSampler(0, 1, 2, 2), 6) == [2, 3, 6, 7, 10, 11]
    assert take(CounterSampler(4, 1, 2, 2), 2) == [10, 11], "resumes at its own step 2"
    assert take(CounterSampler(3), 3) == [3, 4, 5], "one process: plain counter"


def test_two_processes_equal_one_process_with_the_global_batch(
        two_process_run: Path, data: Path, tmp_path: Path) -> None:
    # Compared after one step: Adam's first step is ~lr * sign(gradient), so a weight whose
    # true gradient is ~0 (conv biases that instance norm cancels, and others) moves by
    # +-lr on float noise. Measured: 0.37% of the weights land 2 * lr apart, the rest agree
    # to 1e-6; a wrong split of the global batch flips a large share of the signs.
    # Sharding over later steps is checked by the sampler test and the exact resume test.
    args = ["--data", data, "--steps", "4", "--stop-after", "1", *TRAIN]
    proc = torchrun("train.py", *args, "--out", tmp_path / "ddp", "--batch-size", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = tmp_path / "single"
    assert train_main([*map(str, args), "--out", str(single), "--batch-size", "2"]) == 0
    for name in ("G_A2B.safetensors", "G_B2A.safetensors"):
        ddp, one = load_file(str(tmp_path / "ddp" / name)), load_file(str(single / name))
        assert set(ddp) == set(one), "no 'module.' prefixes in checkpoints written under DDP"
        diff = torch.cat([(ddp[k].float() - one[k].float()).abs().flatten() for k in one])
        assert (diff > 1e-6).float().mean() < 0.02, f"{name}: updates disagree"
        assert diff.max() <= 2 * LR * 1.01, f"{name}: more than one sign flip of Adam's step"
    state = load_resume(two_process_run / RESUME_FILE)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    sums = [r["weight_sums"] for r in state["ranks"]]
    assert sums[0] == sums[1], "both ranks hold the same weights"
    assert set(state["task_state"]["nets"]["G_A2B"]) == set(one)


def test_resume_under_two_processes_continues_exactly(
        two_process_run: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    args = ["--data", data, "--out", out, "--steps", "4", "--batch-size", "1", *TRAIN]
    first = torchrun("train.py", *args, "--stop-after", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert load_resume(out / RESUME_FILE)["step"] == 2
    second = torchrun("train.py", *args, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    for name in ("G_A2B.safetensors", "G_B2A.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(two_process_run / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_two_process_translate_covers_every_file_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    names = [f"d{i % 3}/img{i}.png" for i in range(9)]
    for i, name in enumerate(names):
        write_image(src / name, photo_like(20, 24, seed=i))
    (src / "d1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    model = "sr_x4_naip"  # the bundled model, by name (torchrun runs in the checkout)
    proc = torchrun("translate.py", "--checkpoint", model, "--input", src, "--output", out,
                    "--device", "cpu", "--quiet")
    assert proc.returncode != 0, "a failed file makes the run fail"
    assert proc.stdout.count("9 translated, 0 skipped (output exists), 1 failed") == 1
    assert proc.stderr.count("failed: ") == 1 and "broken.png" in proc.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == sorted(names)
    assert {read_image_info(out / n)[:2] for n in written} == {(80, 96)}, "x4 outputs"
    again = torchrun("translate.py", "--checkpoint", model, "--input", src, "--output", out,
                     "--device", "cpu", "--quiet")
    assert again.stdout.count("0 translated, 9 skipped (output exists), 1 failed") == 1


def test_single_process_run_resumes_under_torchrun(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    args = ["--data", str(data), "--out", str(out), "--steps", "3", "--batch-size", "1", *TRAIN]
    assert train_main([*args, "--stop-after", "1"]) == 0
    proc = torchrun("train.py", *args, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_resume(out / RESUME_FILE)
    assert state["step"] == 3 and state["world_size"] == 2
    assert "written by 1 process(es), this run has 2" in proc.stderr
    net, _ = load_generator(out / "G_A2B.safetensors")  # loads in this single process
    assert set(net.state_dict()) == set(load_file(str(out / "G_A2B.safetensors")))
