"""Device selection, precision, seeding and the allocator setting shared by training and
inference."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import random
from collections.abc import Iterator

import numpy as np
import torch

from img2img.errors import UsageError

log = logging.getLogger("img2img")

PRECISIONS = ("fp32", "bf16", "fp16")

MALLOC_ENV = "IMG2IMG_MALLOC"  # "system": leave the C allocator as it is
_GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_",
                     "MALLOC_TOP_PAD_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP_BYTES = 1 << 30
# The C library while keep_freed_memory() is in effect, and the last network input shape
# seen by release_on_new_shape().
_kept: dict[str, object] = {"libc": None, "shape": None}


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:N]|mps`` to a torch device; ``auto`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps"
                         ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (try --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine")
    return device


def default_batch_size(device: torch.device) -> int:
    """Inference batch size when none is given: 1 on CPU, 4 elsewhere.

    On CPU a batch brings no parallelism the convolutions do not already have and its larger
    activations fall out of cache (resnet_9blocks at 512x512 on 2 Zen 4 cores, with
    :func:`keep_freed_memory`: fp32 1.51 s/image in batches of 1, 1.84 s in batches of 4;
    bf16 1.18 / 1.28 s); GPUs need batches to stay busy.
    """
    return 1 if device.type == "cpu" else 4


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision name (None for fp32)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_runs_bf16_fast() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 and newer).

    Without them PyTorch computes bf16 convolutions in reference loops. Measured on a
    2-core AMD EPYC Zen 3 (AVX2): one 256-channel 3x3 conv at 128x128 takes 83 s in bf16
    against 0.25 s in fp32.
    """
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the check: do not warn
        return True


def check_precision(precision: str, device: torch.device) -> None:
    """Raise UsageError for a precision the device cannot run (fp16 needs CUDA); warn when
    bf16 on this CPU would be far slower than fp32."""
    autocast_dtype(precision)
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; on the CPU use fp32, or bf16 "
                         "where the CPU has AVX-512")
    if precision == "bf16" and device.type == "cpu" and not cpu_runs_bf16_fast():
        log.warning("--precision bf16: this CPU (%s) has no bf16 convolution kernels, so bf16 "
                    "runs hundreds of times slower than fp32; use --precision fp32",
                    torch.backends.cpu.get_cpu_capability())


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast context for the precision; weights stay fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keep_freed_memory() -> bool:
    """On glibc, serve blocks up to 1 GiB from the heap and keep up to 1 GiB of freed memory
    for reuse; return whether the setting was applied.

    By default glibc hands every block above 32 MB back to the kernel when it is freed, so a
    network whose activations are larger faults in and zeroes fresh pages for them on every
    call. Measured on 2 Zen 4 cores: resnet_9blocks at 512x512, fp32: 2.8 -> 1.5 s per
    image (2.0 s of it had been kernel time); tiled x4 SRResNet: 1.8 -> 1.0 s per
    128-pixel tile. Freed blocks are reused by inputs of the same shape; a new shape calls
    :func:`release_on_new_shape`. A process-wide setting, so only the command-line tools
    call it. Skipped on other C libraries, when glibc's own ``MALLOC_*`` variables or
    ``GLIBC_TUNABLES`` are set, and with ``IMG2IMG_MALLOC=system``.
    """
    if os.environ.get(MALLOC_ENV, "").lower() == "system" or platform.libc_ver()[0] != "glibc":
        return False
    if any(v in os.environ for v in _GLIBC_MALLOC_ENV) or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
                   and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    _kept["libc"] = libc if applied else None
    return applied


def release_on_new_shape(shape: tuple[int, ...]) -> None:
    """Under :func:`keep_freed_memory`, return freed heap pages to the kernel
    (``malloc_trim``) when the network's input shape differs from the previous call's.

    Kept blocks fit the activations of one shape; a folder of mixed sizes would otherwise
    strand them between blocks of other sizes. Measured, resnet_9blocks (ngf 32) on 80
    random sizes from 128 to 700 pixels: peak resident memory 1583 MB and still rising
    without this, 1158 MB with it, 1163 MB with glibc's default setting.
    """
    shape = tuple(shape)
    if _kept["libc"] is not None and _kept["shape"] not in (None, shape):
        _kept["libc"].malloc_trim(0)
    _kept["shape"] = shape
