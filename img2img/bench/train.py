"""Time of one training step of each task, its FLOPs and the fraction of the conv ceiling.

Each step is ``task.train_step(batch)`` exactly as the trainer calls it (forward, backward,
optimiser steps), on a fixed synthetic batch in [-1, 1] of the published shape. FLOPs are
counted by ``torch.utils.flop_counter.FlopCounterMode`` over one step (forward + backward):
it counts convolutions and matrix products only, which is what the ceiling measures. They
are counted with PyTorch's direct convolutions (``img2img.nn.cpu.direct``): where fp32 3x3 convs
run as Winograd (``img2img.nn.cpu.winograd``), the step does fewer multiplications than it is
credited with.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import torch

from img2img.bench.ceiling import recheck
from img2img.bench.common import Row, log, median, synchronizer, time_calls
from img2img.nn.cpu import direct
from img2img.tasks import TASKS as REGISTERED
from img2img.tasks import make_config, task_class
from img2img.tasks.base import BenchSpec

TASKS = tuple(REGISTERED)


def specs(task: str, quick: bool) -> list[BenchSpec]:
    """The published configuration(s) of ``task`` (or their tiny ``quick`` versions), as
    the task gives them."""
    if task not in REGISTERED:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return task_class(task).benchmark_specs(quick)


def build(spec: BenchSpec, device: torch.device, precision: str, compiled: bool = False) -> Any:
    """The task object of ``spec`` on ``device`` at ``precision``, in training mode
    (networks compiled as by ``--compile`` if ``compiled``)."""
    cfg = make_config(**spec.settings, device=str(device), precision=precision,
                      compile=compiled)
    task = task_class(cfg.task)(cfg, device)
    if spec.prepare is not None:
        spec.prepare(task)
    if compiled:
        task.compile_networks()
    task.train()
    return task


def label(precision: str, compiled: bool) -> str:
    """Precision column of a row: ``bf16`` or ``bf16+compile``."""
    return f"{precision}+compile" if compiled else precision


def make_batch(spec: BenchSpec, device: torch.device) -> dict[str, torch.Tensor]:
    """A fixed random batch ``{"A", "B"}`` in [-1, 1]."""
    gen = torch.Generator().manual_seed(0)
    return {"A": (torch.rand(spec.a_shape, generator=gen) * 2 - 1).to(device),
            "B": (torch.rand(spec.b_shape, generator=gen) * 2 - 1).to(device)}


def count_flops(task: Any, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one ``train_step`` (convs and matmuls, forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, direct(*task.nets.values()):
        task.train_step(batch)
    return int(counter.get_total_flops())


def profile_step(task: Any, batch: dict[str, torch.Tensor], top: int = 10) -> list[dict]:
    """The ``top`` operators of one step by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        task.train_step(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def _measure(spec: BenchSpec, device: torch.device, precision: str, repeats: int, warmup: int,
             flops: dict[str, int], profile: bool, compiled: bool) -> dict[str, Any]:
    """Time one configuration; counts its FLOPs first unless ``flops`` has them already.
    A compiled configuration gets three more untimed steps (compiling, and recompiling for
    the discriminators' frozen / trainable switch)."""
    task = build(spec, device, precision, compiled)
    batch = make_batch(spec, device)
    if spec.label not in flops:
        flops[spec.label] = count_flops(task, batch)
    first: dict[str, float] = {}
    if compiled:  # the first call compiles: time it on its own, then two more untimed steps
        start = time.perf_counter()
        task.train_step(batch)
        first["first_step_s"] = time.perf_counter() - start
        warmup = max(warmup, 2)
    times = time_calls(partial(task.train_step, batch), repeats, warmup, synchronizer(device))
    step = median(times)
    gflop = flops[spec.label] / 1e9
    res = {"task": spec.label, "precision": label(precision, compiled),
           "compiled": compiled, **first, "config": spec.describe,
           "step_s": step, "step_times_s": times, "gflop_per_step": gflop,
           "gflops": gflop / step, "notes": spec.notes}
    if profile:
        res["profile_top_self_cpu"] = profile_step(task, batch)
    return res


def train_steps(tasks: list[str], device: torch.device, precisions: list[str], quick: bool,
                repeats: int, warmup: int, ceilings: dict[str, Any],
                profile: bool = False, compile_modes: tuple[bool, ...] = (False,)
                ) -> tuple[list[Row], list[dict[str, Any]]]:
    """Rows and per-(task, precision[, compiled]) results. The FLOP-counting step runs first
    and is not timed (it warms up too); FLOPs are counted once per configuration."""
    rows: list[Row] = []
    results: list[dict[str, Any]] = []
    flops: dict[str, int] = {}
    for spec in [s for t in tasks for s in specs(t, quick)]:
        for p, compiled in [(p, c) for p in precisions for c in compile_modes]:
            name = label(p, compiled)
            log(f"train {spec.label} {name} ...")
            try:
                res = _measure(spec, device, p, repeats, warmup, flops, profile, compiled)
            except Exception as exc:  # noqa: BLE001 - the other configurations still run
                log(f"train {spec.label} {name}: FAILED: {exc}")
                results.append({"task": spec.label, "precision": name,
                                "error": f"{type(exc).__name__}: {exc}"})
                rows.append(Row(f"train {spec.label} FAILED", name, None, "", str(exc)[:300]))
                continue
            ceil = ceilings.get(p, {}).get("gflops")
            res["ceiling_fraction"] = fraction = res["gflops"] / ceil if ceil else None
            if ceil:  # the same conv again, right after: did the machine's speed drift?
                res["ceiling_after_gflops"] = recheck(device, p, ceilings[p])
            results.append(res)
            extra = "; ".join([spec.describe, *spec.notes])
            compiled_note = f"first step {res['first_step_s']:.0f} s; " if compiled else ""
            rows.append(Row(f"train {spec.label}", name, res["step_s"], "s/step",
                            f"median of {len(res['step_times_s'])}; {compiled_note}"
                            f"{res['gflop_per_step']:.1f} GFLOP/step (as direct convs); {extra}"))
            share = "no ceiling for this precision"
            if fraction is not None:
                share = (f"{100 * fraction:.0f}% of the {p} conv ceiling (the conv measured "
                         f"{res['ceiling_after_gflops']:.0f} GFLOP/s right after)")
            rows.append(Row(f"train {spec.label}", name, res["gflops"], "GFLOP/s", share))
    return rows, results
