"""The allocator setting of the command-line tools (glibc only)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from img2img.runtime import MALLOC_ENV

# Allocates, touches and frees a 128 MB tensor a few times (with small allocations in
# between, as in a real loop), then counts the page faults of doing it once more.
_PROBE = """
import resource, torch
from img2img.runtime import keep_freed_memory
applied = keep_freed_memory()
small = []
def touch():
    torch.empty(32 * 2**20).fill_(1.0)
    small.append(bytearray(100))
for _ in range(5):
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_activations_are_reused_without_new_page_faults():
    applied, faults = _probe()
    assert applied
    assert faults < 2000  # 128 MB in 4 KiB pages is 32768 faults


@pytest.mark.parametrize("env", [{MALLOC_ENV: "system"}, {"MALLOC_MMAP_THRESHOLD_": "65536"}])
def test_left_alone_when_asked_or_when_glibc_is_tuned_by_the_user(env):
    applied, _ = _probe(**env)
    assert not applied
