"""The allocator setting of the command-line tools (glibc only)."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys

import pytest
import torch

from img2img import runtime
from img2img.runtime import MALLOC_ENV

# Runs a small convolutional network (38 MB activations, above glibc's 32 MB mmap limit) on
# one shape six times, then once on a smaller shape; prints whether the setting was applied,
# the page faults of the last same-shape call, and resident memory (MB) before and after
# the smaller shape.
_PROBE = """
import resource, torch
from img2img.runtime import keep_freed_memory, release_on_new_shape
applied = keep_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(64, 3, 3, padding=1))
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
def run(size):
    release_on_new_shape((1, 3, size, size))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        net(torch.rand(1, 3, size, size)).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [run(384) for _ in range(6)][-1]
kept = rss()
run(200)
print(int(applied), faults, kept, rss())
"""


def _probe(**env: str) -> tuple[bool, int, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.split()
    applied, faults, kept, after = map(int, out)
    return bool(applied), faults, kept - after


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_activations_are_reused_and_released_when_the_shape_changes():
    applied, faults, released_mb = _probe()
    assert applied
    assert faults < 2000, "a repeated shape reuses its memory (38 MB is 9400 pages)"
    assert released_mb > 40, "a new shape hands the kept activations back to the kernel"


@pytest.mark.parametrize("env", [{MALLOC_ENV: "system"}, {"MALLOC_MMAP_THRESHOLD_": "65536"}])
def test_left_alone_when_asked_or_when_glibc_is_tuned_by_the_user(env):
    applied, faults, _ = _probe(**env)
    assert not applied
    assert faults > 5000, "glibc's default: activations above 32 MB are mapped afresh"


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_on_a_cpu_without_bf16_kernels_is_warned_about(
        fast: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    flags = "avx2 avx512f avx512_bf16" if fast else "avx2 avx512f avx512_vnni"
    monkeypatch.setenv(runtime.CPU_FLAGS_ENV, flags)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        runtime.check_precision("bf16", torch.device("cpu"))
        runtime.check_precision("fp32", torch.device("cpu"))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == (0 if fast else 1)
    assert fast or "use --precision fp32 or auto" in warned[0]
