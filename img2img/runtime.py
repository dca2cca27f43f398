"""Device selection, precision, seeding and the allocator setting shared by training and
inference."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
import random
import subprocess
from collections.abc import Iterator

import numpy as np
import torch

from img2img.errors import UsageError

log = logging.getLogger("img2img")

PRECISIONS = ("fp32", "bf16", "fp16")
AUTO_PRECISION = "auto"  # resolved by resolve_precision() for the device
INT8_PRECISION = "int8"  # translate only: a statically quantized ONNX graph (inference.quantize)

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


# x86 instructions that compute bf16 dot products natively (Cooper Lake, Zen 4, Sapphire
# Rapids and later). Without them oneDNN still reports bf16 as supported, emulated on AVX-512
# (or in reference loops on AVX2), and bf16 is far slower than fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAG = "bf16"  # Arm's BF16 extension (BFDOT/BFMMLA); not measured with PyTorch here
# The flags the benchmark and the start-up log name.
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "bf16")
# x86 instructions that sum uint8 x int8 products in 32 bits (VNNI's vpdpbusd, AMX). Without
# them ONNX Runtime's int8 kernels (and oneDNN's: its "Nuances of int8 Computations") use
# vpmaddubsw, which adds pairs of products in 16 bits and saturates on full-range int8 weights.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
ARM_MACHINES = ("arm64", "aarch64")  # platform.machine() of 64-bit Arm
CPU_FLAGS_ENV = "IMG2IMG_CPU_FLAGS"  # space-separated flags to assume instead of the CPU's
# Measured consequences of bf16 without native instructions (the warning quotes them).
_SLOW_BF16_AVX512 = ("on a 2-core Ice Lake (AVX-512 with VNNI, no bf16) bf16 ran 3.5x slower "
                     "than fp32: CycleGAN 256x256 train step 47.5 s vs 13.5 s, 8 photos at "
                     "512x512 translated in 65.2 s vs 18.9 s")
_SLOW_BF16_AVX2 = ("on a 2-core Zen 3 (AVX2 only) one 256-channel 3x3 conv at 128x128 took "
                   "83 s in bf16 vs 0.25 s in fp32")
_SYSCTL_NAMES = {"avx2_0": "avx2", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
                 "amxbf16": "amx_bf16", "arm.feat_bf16": ARM_BF16_FLAG, "avx1.0": "avx"}


def _first_field(text: str, keys: tuple[str, ...]) -> str:
    """The value of the first ``key: value`` line of ``text`` whose key (lower case) is in
    ``keys``, stripped; "" if none."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in keys:
            return value.strip()
    return ""


def parse_cpuinfo(text: str) -> frozenset[str]:
    """CPU flags from Linux ``/proc/cpuinfo`` text: the first ``flags`` (x86) or
    ``Features`` (Arm) line, lower case."""
    return frozenset(_first_field(text, ("flags", "features")).lower().split())


def parse_sysctl(text: str) -> frozenset[str]:
    """CPU flags from macOS ``sysctl -a`` output: the words of ``machdep.cpu.*features`` (Intel
    Macs) and every ``hw.optional.*`` set to 1, in /proc/cpuinfo's spelling where they
    differ (``AVX512VNNI`` -> ``avx512_vnni``, ``hw.optional.arm.FEAT_BF16: 1`` -> ``bf16``)."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            continue
        if key.startswith("machdep.cpu.") and key.endswith("features"):
            flags.update(w.lower() for w in value.split())
        elif key.startswith("hw.optional.") and value == "1":
            flags.add(key.removeprefix("hw.optional."))
    return frozenset(_SYSCTL_NAMES.get(f, f) for f in flags)


@functools.lru_cache(maxsize=1)
def _machine_cpu_text() -> tuple[str, str]:
    """(the system, its CPU description): Linux ``/proc/cpuinfo``, macOS ``sysctl -a``; ""
    where it cannot be read (read once per process)."""
    system = platform.system()
    try:
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                return system, f.read()
        if system == "Darwin":
            done = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=10,
                                  check=False)
            return system, done.stdout
    except (OSError, subprocess.SubprocessError):
        pass
    return system, ""


@functools.lru_cache(maxsize=1)
def _machine_cpu_flags() -> frozenset[str]:
    system, text = _machine_cpu_text()
    if not text:
        return frozenset()  # unknown (e.g. Windows): treated as no native bf16
    return parse_sysctl(text) if system == "Darwin" else parse_cpuinfo(text)


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags, lower case (read once per process); empty when they cannot
    be read. ``IMG2IMG_CPU_FLAGS`` (space-separated), when set, replaces them: for machines
    whose virtualisation hides flags, and for tests."""
    forced = os.environ.get(CPU_FLAGS_ENV)
    if forced is not None:
        return frozenset(forced.lower().split())
    return _machine_cpu_flags()


def parse_cpu_vendor(text: str) -> str:
    """The CPU vendor string from Linux ``/proc/cpuinfo`` (``vendor_id``) or macOS
    ``sysctl -a`` (``machdep.cpu.vendor``) text, e.g. ``AuthenticAMD``; "" if none."""
    return _first_field(text, ("vendor_id", "machdep.cpu.vendor"))


def cpu_vendor() -> str:
    """This CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...), "" where it cannot
    be read (Arm, Windows)."""
    return parse_cpu_vendor(_machine_cpu_text()[1])


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 dot products natively (``avx512_bf16`` or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def int8_weights_full_range(flags: frozenset[str] | None = None,
                             machine: str | None = None) -> bool:
    """Whether int8 weights may use their full range [-128, 127] on this CPU: on 64-bit Arm
    (32-bit dot products) and on x86 with VNNI or AMX (:data:`INT8_DOT_FLAGS`). Elsewhere
    (x86 with AVX2 or AVX-512 alone, or flags unknown) they need 7 bits so that the 16-bit
    pair sums cannot saturate."""
    flags = cpu_flags() if flags is None else flags
    machine = (platform.machine() if machine is None else machine).lower()
    return machine in ARM_MACHINES or any(f in flags for f in INT8_DOT_FLAGS)


def choose_precision(device_type: str, flags: frozenset[str],
                     cuda_capability: tuple[int, int] | None, training: bool) -> tuple[str, str]:
    """The precision ``--precision auto`` picks, and why (for the log).

    CPU: bf16 only with native bf16 dot products (``avx512_bf16``/``amx_bf16``), else fp32.
    CUDA: bf16 from compute capability 8.0 (Ampere), fp16 on 7.x (tensor cores; training
    scales its losses), fp32 below. MPS and anything else: fp32. Pure: the caller supplies
    the flags and the capability.
    """
    if device_type == "cpu":
        native = [f for f in NATIVE_BF16_FLAGS if f in flags]
        if native:
            return "bf16", f"CPU has {native[0]}"
        if ARM_BF16_FLAG in flags:
            return "fp32", "Arm bf16 instructions, but bf16 is not measured faster there"
        return "fp32", f"CPU has none of {'/'.join(NATIVE_BF16_FLAGS)}"
    if device_type == "cuda" and cuda_capability is not None:
        cap = f"{cuda_capability[0]}.{cuda_capability[1]}"
        if cuda_capability >= (8, 0):
            return "bf16", f"GPU compute capability {cap} has bf16 tensor cores"
        if cuda_capability >= (7, 0):
            how = "fp16 tensor cores, losses scaled" if training else "fp16 tensor cores"
            return "fp16", f"GPU compute capability {cap}: {how}"
        return "fp32", f"GPU compute capability {cap} has no tensor cores"
    return "fp32", f"{device_type}: fp32 unless measured otherwise"


def resolve_precision(precision: str, device: torch.device, training: bool) -> str:
    """``auto`` -> the precision :func:`choose_precision` picks for ``device`` (logged with
    the reason); any other name is checked (:func:`check_precision`) and returned."""
    if precision != AUTO_PRECISION:
        check_precision(precision, device)
        return precision
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    chosen, why = choose_precision(device.type, cpu_flags(), capability, training)
    log.info("precision auto -> %s (%s)", chosen, why)
    return chosen


def check_precision(precision: str, device: torch.device) -> None:
    """Raise UsageError for a precision the device cannot run (fp16 needs CUDA); warn, with
    the measured slow-down, when bf16 is asked for on a CPU without native bf16."""
    autocast_dtype(precision)
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; on the CPU use fp32, or bf16 "
                         "where the CPU has avx512_bf16 or AMX (auto picks)")
    flags = cpu_flags()
    if (precision == "bf16" and device.type == "cpu" and flags
            and not cpu_has_native_bf16(flags) and ARM_BF16_FLAG not in flags):
        measured = _SLOW_BF16_AVX512 if "avx512f" in flags else _SLOW_BF16_AVX2
        log.warning("--precision bf16: this CPU has no native bf16 instructions (none of %s), "
                    "so bf16 is emulated: %s; use --precision fp32 or auto",
                    "/".join(NATIVE_BF16_FLAGS), measured)


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
