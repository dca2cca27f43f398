"""SIGTERM to torchrun (2 CPU processes): every rank stops at the same step and saves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from imgfactory import photo_like
from test_distributed import ROOT, TRAIN, torchrun

from img2img.data.io import write_image
from img2img.engine.state import RESUME_FILE, load_resume


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(8):
        write_image(root / "trainA" / f"a{i}.png", photo_like(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(40, 40, seed=50 + i))
    return root


def test_sigterm_to_torchrun_saves_every_rank_at_one_step(data: Path, tmp_path: Path) -> None:
    """300 steps, SIGTERM once step 1 is logged; the ranks agree on the step at each
    boundary, so the gathered save cannot hang."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tools" / "train.py"), "--data", str(data), "--out", str(out),
           "--steps", "300", "--batch-size", "1", *TRAIN, "--log-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    log_file, deadline = out / "losses.jsonl", time.monotonic() + 240
    while not (log_file.is_file() and log_file.read_text()):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no step was logged"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    _, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    state = load_resume(out / RESUME_FILE)
    step = state["step"]
    assert 1 <= step < 300 and len(state["ranks"]) == 2, "both ranks' states were gathered"
    assert err.count(f"interrupted at step {step}: saved; continue with --resume") == 1
    again = torchrun("train.py", "--data", data, "--out", out, "--resume", "--stop-after", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_resume(out / RESUME_FILE)["step"] == step + 2
