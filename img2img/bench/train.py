"""Time of one training step of each task, its FLOPs and the fraction of the conv ceiling.

Each step is ``task.train_step(batch)`` exactly as the trainer calls it (forward, backward,
optimiser steps), on a fixed synthetic batch in [-1, 1] of the published shape. FLOPs are
counted by ``torch.utils.flop_counter.FlopCounterMode`` over one step (forward + backward):
it counts convolutions and matrix products only, which is what the ceiling measures. They
are counted with PyTorch's direct convolutions (``img2img.nn.cpu.direct``): where fp32 3x3 convs
run as Winograd (``img2img.nn.cpu.winograd``), the step does fewer multiplications than it is
credited with.

Beside the toolkit's CycleGAN step, fp32 also times the same step written as the reference
implementation takes it, in plain PyTorch (:mod:`img2img.bench.reference_cyclegan`), in the
same process and so with the same allocator setting, the two steps taking turns (so a
drift in the machine's speed reaches both alike): the row ``train cyclegan reference-style``
and the ratio ours / reference (medians; the JSON also has each turn's ratio). Both steps'
FLOPs are counted the same way and reported side by side.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Any

import torch

from img2img.bench.ceiling import recheck
from img2img.bench.common import Row, log, median, synchronizer, time_alternating, time_calls
from img2img.bench.layer_profile import profile_by_layer
from img2img.bench.reference_cyclegan import ReferenceCycleGAN
from img2img.nn.cpu import direct
from img2img.tasks import TASKS as REGISTERED
from img2img.tasks import make_config, task_class
from img2img.tasks.base import BenchSpec

TASKS = tuple(REGISTERED)


def specs(task: str, quick: bool, size: int | None = None) -> list[BenchSpec]:
    """The published configuration(s) of ``task`` (or their tiny ``quick`` versions), as
    the task gives them; with ``size``, square crops of that size instead where both
    inputs are the crop (the image translation tasks; SR is left as it is)."""
    if task not in REGISTERED:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return [resized(s, size) for s in task_class(task).benchmark_specs(quick)]


def resized(spec: BenchSpec, size: int | None) -> BenchSpec:
    """``spec`` at ``size`` x ``size`` crops, if its inputs are its square crop; else as is."""
    crop = spec.settings.get("crop_size")
    if size is None or crop is None or size == crop:
        return spec
    if any(tuple(shape[-2:]) != (crop, crop) for shape in (spec.a_shape, spec.b_shape)):
        return spec
    return dataclasses.replace(
        spec, settings={**spec.settings, "crop_size": size},
        a_shape=(*spec.a_shape[:-2], size, size), b_shape=(*spec.b_shape[:-2], size, size),
        describe=spec.describe.replace(f"{crop}x{crop}", f"{size}x{size}"))


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


def layer_profile(task: Any, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """One step's operator time by kind of layer (:mod:`img2img.bench.layer_profile`); the
    networks named ``G*`` are the generators, ``D*`` the discriminators."""
    nets = task.nets
    return profile_by_layer(partial(task.train_step, batch),
                            [n for k, n in nets.items() if k.startswith("G")],
                            [n for k, n in nets.items() if k.startswith("D")])


def reference_flops(ref: ReferenceCycleGAN, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one reference-style step, counted as :func:`count_flops` counts ours."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        ref.step(batch["A"], batch["B"])
    return int(counter.get_total_flops())


class _Reference:
    """The reference-style CycleGAN step of ``spec``'s size and widths (fp32), with its own
    batch; its FLOPs are counted on creation (untimed, and a warm-up)."""

    def __init__(self, spec: BenchSpec, device: torch.device) -> None:
        self.spec = spec
        self.ref = ReferenceCycleGAN(ngf=spec.settings.get("ngf", 64),
                                     ndf=spec.settings.get("ndf", 64), device=device)
        self.batch = make_batch(spec, device)
        self.flops = reference_flops(self.ref, self.batch)
        self.error: str | None = None  # set by a failed timed step; ours goes on

    def step(self) -> None:
        """One reference-style step, or nothing once one has failed (:attr:`error`)."""
        if self.error is not None:
            return
        try:
            self.ref.step(self.batch["A"], self.batch["B"])
        except Exception as exc:  # noqa: BLE001 - our own step's timing still stands
            self.error = f"{type(exc).__name__}: {exc}"

    def result(self, times: list[float], ours: dict[str, Any],
               profile: bool) -> tuple[list[Row], dict[str, Any]]:
        """Rows and result of the reference step timed ``times`` (in turns with our step,
        whose result ``ours`` gets ``vs_reference``)."""
        spec, ref = self.spec, self.ref
        step, gflop = median(times), self.flops / 1e9
        ratio, flop_ratio = ours["step_s"] / step, ours["gflop_per_step"] / gflop
        turns = [a / b for a, b in zip(ours["step_times_s"], times, strict=True)]
        res = {"task": f"{spec.label} reference-style", "precision": "fp32", "compiled": False,
               "config": spec.describe, "step_s": step, "step_times_s": times,
               "gflop_per_step": gflop, "gflops": gflop / step,
               "ours_vs_reference": ratio, "ours_vs_reference_per_turn": turns,
               "ours_vs_reference_flops": flop_ratio}
        ours["vs_reference"] = ratio
        ours["vs_reference_flops"] = flop_ratio
        if profile:
            res["profile_by_layer"] = profile_by_layer(self.step, [ref.g_a, ref.g_b],
                                                       [ref.d_a, ref.d_b])
        name = f"train {spec.label} reference-style"
        rows = [Row(name, "fp32", step, "s/step",
                    f"median of {len(times)}, in turns with ours; {gflop:.1f} GFLOP/step; the "
                    f"reference implementation's step in plain PyTorch, same process and "
                    f"allocator setting"),
                Row(f"train {spec.label} / reference-style", "fp32", ratio, "x",
                    f"our step / the reference-style step (each turn: {min(turns):.2f}-"
                    f"{max(turns):.2f}; FLOPs: ours / reference = {flop_ratio:.3f})")]
        return rows, res


def _reference_failed(spec: BenchSpec, error: str) -> tuple[Row, dict[str, Any]]:
    """The row and result of a reference-style step that could not be timed (logged)."""
    log(f"train {spec.label} reference-style: FAILED: {error}")
    return (Row(f"train {spec.label} reference-style FAILED", "fp32", None, "", error[:300]),
            {"task": f"{spec.label} reference-style", "precision": "fp32", "error": error})


def _measure(spec: BenchSpec, device: torch.device, precision: str, repeats: int, warmup: int,
             flops: dict[str, int], profile: bool, compiled: bool,
             reference: _Reference | None = None) -> tuple[dict[str, Any], list[float]]:
    """Time one configuration, in turns with ``reference``'s step if given (then also
    returned: its times); counts its FLOPs first unless ``flops`` has them already. A
    compiled configuration gets three more untimed steps (compiling, and recompiling for
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
    ours = partial(task.train_step, batch)
    ref_times: list[float] = []
    if reference is None:
        times = time_calls(ours, repeats, warmup, synchronizer(device))
    else:
        times, ref_times = time_alternating([ours, reference.step], repeats, warmup,
                                            synchronizer(device))
    step = median(times)
    gflop = flops[spec.label] / 1e9
    res = {"task": spec.label, "precision": label(precision, compiled),
           "compiled": compiled, **first, "config": spec.describe,
           "step_s": step, "step_times_s": times, "gflop_per_step": gflop,
           "gflops": gflop / step, "notes": spec.notes}
    if profile:
        res["profile_top_self_cpu"] = profile_step(task, batch)
        res["profile_by_layer"] = layer_profile(task, batch)
    return res, ref_times


def train_steps(tasks: list[str], device: torch.device, precisions: list[str], quick: bool,
                repeats: int, warmup: int, ceilings: dict[str, Any],
                profile: bool = False, compile_modes: tuple[bool, ...] = (False,),
                size: int | None = None) -> tuple[list[Row], list[dict[str, Any]]]:
    """Rows and per-(task, precision[, compiled]) results, at ``size`` x ``size`` crops if
    given (:func:`specs`). The FLOP-counting step runs first and is not timed (it warms up
    too); FLOPs are counted once per configuration. CycleGAN in fp32 (not compiled) is
    timed in turns with the reference-style step (:class:`_Reference`)."""
    rows: list[Row] = []
    results: list[dict[str, Any]] = []
    flops: dict[str, int] = {}
    for spec in [s for t in tasks for s in specs(t, quick, size)]:
        for p, compiled in [(p, c) for p in precisions for c in compile_modes]:
            name = label(p, compiled)
            reference: _Reference | None = None
            if spec.label == "cyclegan" and p == "fp32" and not compiled:
                try:
                    reference = _Reference(spec, device)
                except Exception as exc:  # noqa: BLE001 - our own rows still run
                    row, ref = _reference_failed(spec, f"{type(exc).__name__}: {exc}")
                    rows.append(row)
                    results.append(ref)
            turns = ", in turns with the reference-style step" if reference else ""
            log(f"train {spec.label} {name}{turns} ...")
            try:
                res, ref_times = _measure(spec, device, p, repeats, warmup, flops, profile,
                                          compiled, reference)
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
            if reference is not None and reference.error is None:
                got, ref = reference.result(ref_times, res, profile)
                rows += got
                results.append(ref)
            elif reference is not None:
                row, ref = _reference_failed(spec, reference.error)
                rows.append(row)
                results.append(ref)
    return rows, results
