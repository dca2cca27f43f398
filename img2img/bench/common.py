"""Result rows, timing helpers, machine description and synthetic photos for the benchmark."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from img2img import runtime


@dataclass
class Row:
    """One measurement: a line of the printed table and an entry of the JSON ``rows``."""

    name: str
    precision: str
    value: float | None
    unit: str
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def log(message: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int,
               sync: Callable[[], None] = lambda: None, min_seconds: float = 0.0) -> list[float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then at least ``repeats`` timed
    ones (more until ``min_seconds`` of timed work have passed)."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    while len(times) < max(repeats, 1) or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def time_alternating(fns: list[Callable[[], Any]], repeats: int, warmup: int,
                     sync: Callable[[], None] = lambda: None) -> list[list[float]]:
    """Seconds per call of each of ``fns``, their calls taking turns (``warmup`` untimed
    rounds, then ``repeats`` timed ones), so that a drift in the machine's speed (a shared
    VM, a clock that changes) reaches all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(repeats, 1)):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    """Median (robust to the odd slow repeat on a shared machine)."""
    return float(statistics.median(values))


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_family_model() -> str:
    """``family F model M`` from /proc/cpuinfo (pins down the generation when the model name
    is generic, as in many VMs), or ''."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model") and key not in found:
                    found[key] = value.strip()
                if not line.strip():
                    break
    except OSError:
        return ""
    return f"family {found.get('cpu family', '?')} model {found.get('model', '?')}" if found \
        else ""


def cpu_flags() -> list[str]:
    """The CPU feature flags that decide conv speed, ``--precision auto`` and int8's weight
    range (AVX2, AVX-512, VNNI, bf16, AMX) that this CPU has
    (:func:`img2img.runtime.cpu_flags`)."""
    have = runtime.cpu_flags()
    return [f for f in (*runtime.SHOWN_FLAGS, "amx_int8", "amx_tile", "fma") if f in have]


def auto_precision(device: torch.device) -> tuple[str, str]:
    """What ``--precision auto`` picks for training on ``device``, and why."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return runtime.choose_precision(device.type, runtime.cpu_flags(), capability, training=True)


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were taken on (CPU, cores, threads, torch, GPU, load, date)."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_family_model": cpu_family_model(),
        "cpu_flags": cpu_flags(),
        "precision_auto": auto_precision(device)[0],
        "precision_auto_reason": auto_precision(device)[1],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(rows: list[Row]) -> str:
    """Plain-text table: name, precision, value, unit, notes."""
    header = ("name", "precision", "value", "unit", "notes")
    cells = [header] + [(r.name, r.precision, _fmt(r.value), r.unit, r.notes) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        line = "  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]),
                          c[2].rjust(widths[2]), c[3].ljust(widths[3]), c[4]])
        lines.append(line.rstrip())
        if i == 0:
            lines.append("-" * max(len(x) for x in lines))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic HxWx3 uint8 image with photo-like statistics: detail at every scale
    (amplitude falling with frequency), correlated colour channels and a little sensor noise,
    so JPEG/PNG coding costs about what it costs on real photos."""
    import cv2

    rng = np.random.default_rng(seed)
    luma = np.zeros((h, w), np.float32)
    cells, amp = 3, 1.0
    while cells <= max(h, w) // 2:
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        luma += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        cells, amp = cells * 3, amp * 0.45
    luma += 0.03 * rng.standard_normal((h, w), dtype=np.float32)
    tint = rng.uniform(-0.35, 0.35, 3).astype(np.float32)
    chroma = cv2.resize(rng.standard_normal((4, 4, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    img = luma[:, :, None] * (1 + tint) + 0.3 * chroma
    lo, hi = np.percentile(img[:: max(h // 256, 1), :: max(w // 256, 1)], (1, 99))
    img = (img - lo) * (235.0 / max(float(hi - lo), 1e-6)) + 10.0
    return np.clip(img, 0, 255).astype(np.uint8)
