"""The machine's own ceiling: GFLOP/s of one large 3x3 convolution per precision.

FLOPs = 2 * Cin * Cout * 9 * H * W per image (a multiply-add counts as two). Low precisions
are measured two ways, with direct low-precision tensors and with fp32 tensors under
autocast (as the toolkit runs), and the better one is the ceiling.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from img2img.bench.common import Row, median, synchronizer, time_calls
from img2img.runtime import autocast, autocast_dtype


def conv_flops(channels: int, size: int, batch: int = 1) -> int:
    """FLOPs of a same-padded 3x3 conv, ``channels`` in and out, on ``size`` x ``size``."""
    return 2 * channels * channels * 9 * size * size * batch


def measure_conv(device: torch.device, precision: str, mode: str, channels: int, size: int,
                 repeats: int, warmup: int, min_seconds: float) -> float:
    """Achieved GFLOP/s of the conv in ``mode`` ``"direct"`` (tensors of the precision's dtype)
    or ``"autocast"`` (fp32 tensors under autocast)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=gen).to(device)
    w = torch.randn(channels, channels, 3, 3, generator=gen).to(device) / (3 * channels**0.5)
    dtype = autocast_dtype(precision)
    if mode == "direct" and dtype is not None:
        x, w = x.to(dtype), w.to(dtype)

    def run() -> None:
        with torch.no_grad(), autocast(device, precision if mode == "autocast" else "fp32"):
            F.conv2d(x, w, padding=1)

    times = time_calls(run, repeats, warmup, synchronizer(device), min_seconds)
    return conv_flops(channels, size) / median(times) / 1e9


def recheck(device: torch.device, precision: str, measured: dict[str, Any]) -> float:
    """Measure a ceiling again (same conv, best mode, shorter): on a shared machine the
    available speed drifts, and a second figure next to a measurement shows by how much."""
    return measure_conv(device, precision, measured["mode"], measured["channels"],
                        measured["size"], 3, 1, measured["seconds"] / 2)


def ceiling(device: torch.device, precisions: list[str], quick: bool, repeats: int,
            warmup: int) -> tuple[list[Row], dict[str, Any]]:
    """Rows and the per-precision ceiling ``{precision: {"gflops": best, ...}}``."""
    channels, size = (128, 64) if quick else (256, 128)
    min_seconds = 0.2 if quick else 1.5
    shape = f"1x{channels}x{size}x{size} -> {channels}ch 3x3"
    rows: list[Row] = []
    result: dict[str, Any] = {}
    for p in precisions:
        modes = ["direct"] if p == "fp32" else ["direct", "autocast"]
        got = {m: measure_conv(device, p, m, channels, size, max(repeats, 3), max(warmup, 1),
                               min_seconds) for m in modes}
        best = max(got, key=got.__getitem__)
        result[p] = {"gflops": got[best], "mode": best, "by_mode": got, "shape": shape,
                     "channels": channels, "size": size, "seconds": min_seconds,
                     "gflop_per_call": conv_flops(channels, size) / 1e9}
        notes = shape
        if p != "fp32":
            notes += "; " + ", ".join(f"{m} {v:.0f}" for m, v in got.items()) + f"; best: {best}"
        rows.append(Row("ceiling conv3x3", p, got[best], "GFLOP/s", notes))
    return rows, result
