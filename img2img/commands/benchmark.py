"""Measure the toolkit on this machine; print a table and write JSON (``img2img benchmark``,
``tools/benchmark.py``).

Sections (``--only``, default all, in this order):

- ``ceiling``: a large 3x3 conv's GFLOP/s per precision (always run with ``train``, which
  reports its fraction of it);
- ``train``: one training step of each registered task (CycleGAN, CUT, FastCUT, pix2pix,
  SRGAN in its psnr and gan phases) in the configuration the task gives (its published
  one): seconds, GFLOP per step, GFLOP/s, fraction of the ceiling;
- ``translate``: folder translation of 512x512 JPEGs with resnet_9blocks, end to end,
  against a plain per-image fp32 loop and against model-only throughput;
- ``sr``: ``img2img translate --tile`` upscaling a 4000x4000 PNG by 4 in a subprocess:
  seconds per input megapixel and peak resident memory.

``--precision ...,int8`` (``translate --precision int8``: CPU, needs the ``onnx`` extra)
adds translate and sr rows whose times include the export and the calibration, and their
PSNR against the fp32 outputs.

Timings are medians after warm-up; they mean something only on an otherwise idle machine
(check ``loadavg_start``/``loadavg_end`` in the JSON). ``--quick`` shrinks every input to
CI size; its figures are not comparable with the full ones.

    img2img benchmark                       # everything: fp32, and bf16 on CPUs with
                                            # native bf16 (avx512_bf16/AMX)
    img2img benchmark --only train --tasks cyclegan --precision bf16
    img2img benchmark --only translate --images ../shared/data/photos
    img2img benchmark --only translate,sr --precision fp32,int8 \
        --checkpoint G.safetensors --sr-checkpoint sr_x4_naip
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2img.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    add_debug,
    guarded,
)
from img2img.options import positive_int

if TYPE_CHECKING:  # torch is imported only when the benchmark runs
    import torch

    from img2img.bench.common import Row

SECTIONS = ("ceiling", "train", "translate", "sr")
INT8 = "int8"  # translate --precision int8: an inference path (translate and sr rows only)


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(allowed)}")
        return items

    return parse


def benchmark_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img benchmark`` / ``tools/benchmark.py``."""
    from img2img.bench.train import TASKS
    from img2img.runtime import AUTO_PRECISION, PRECISIONS

    p = OneLineParser(prog="img2img benchmark", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", type=_choices(SECTIONS), default=list(SECTIONS),
                   help=f"sections, comma list (default {','.join(SECTIONS)})")
    p.add_argument("--tasks", type=_choices(TASKS), default=list(TASKS),
                   help=f"train-step tasks (default {','.join(TASKS)}; srgan = both phases)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N (default auto)")
    p.add_argument("--precision", type=_choices((AUTO_PRECISION, *PRECISIONS, INT8)),
                   action="append",
                   help="auto|fp32|bf16|fp16|int8, repeatable or comma list (auto: what train "
                        "picks here; default fp32,bf16, without bf16 on CPUs lacking native "
                        "bf16 (avx512_bf16/AMX) and GPUs below compute capability 8.0; plus "
                        "fp16 on CUDA; int8, CPU only, adds translate and sr rows)")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized inputs: 64x64 train crops, ngf 16, 8 images of 128x128, "
                        "SR of 256x256 with tile 64")
    p.add_argument("--train-size", type=positive_int,
                   help="square crop of the train steps (default: each task's published "
                        "one, 256 for CycleGAN; SR keeps its own)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timed steps (median; default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=positive_int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", default="benchmark.json", help="output file (default %(default)s)")
    t = p.add_argument_group("translate and sr")
    t.add_argument("--images", help="folder of real photos to crop to 512x512 (sr: its first "
                                    "one, to --sr-size; default: generated photo-like "
                                    "images)")
    t.add_argument("--checkpoint", help="trained generator for the translation benchmark "
                                        "(default: a random-weight resnet_9blocks)")
    t.add_argument("--num-images", type=positive_int, help="images to translate (default 16; "
                                                        "8 with --quick)")
    t.add_argument("--passes", type=positive_int, default=1,
                   help="timed passes over the folder, median (default 1)")
    t.add_argument("--batch-size", type=positive_int,
                   help="default: translate's (1 on CPU, 4 on GPUs)")
    t.add_argument("--tile", type=positive_int,
                   help="SR tile (default: translate's automatic one, 128 for x4; 64 with --quick)")
    t.add_argument("--sr-size", type=positive_int,
                   help="side of the square SR input (default 4000; 256 with --quick)")
    t.add_argument("--tile-overlap", type=int, help="SR tile overlap (default: translate's)")
    t.add_argument("--sr-ext", help="SR output format (default: png, as the input)")
    t.add_argument("--sr-checkpoint", help="x4 generator for the SR benchmark, a file or a "
                                           "bundled name such as sr_x4_naip (default: a "
                                           "random-weight SRResNet, 64 channels, 16 blocks)")
    p.add_argument("--compile", action="store_true",
                   help="also run each train and translate configuration with torch.compile "
                        "(rows marked +compile; compiling takes a minute or more each)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one step per train configuration (top 10 ops by self "
                        "CPU time, and the time by kind of layer; in the JSON and printed)")
    add_debug(p)
    return p


def _precisions(ns: argparse.Namespace, device: torch.device) -> list[str]:
    import torch

    from img2img.bench.common import auto_precision
    from img2img.runtime import AUTO_PRECISION, cpu_has_native_bf16

    if ns.precision:
        auto = auto_precision(device)[0]
        return list(dict.fromkeys(auto if p == AUTO_PRECISION else p
                                  for group in ns.precision for p in group))
    if device.type == "cuda":  # bf16 is emulated (slowly) below 8.0
        bf16 = torch.cuda.get_device_capability(device) >= (8, 0)
        return ["fp32", "bf16", "fp16"] if bf16 else ["fp32", "fp16"]
    # emulated bf16 is 3.5x (AVX-512) to 300x (AVX2) slower; --precision bf16 still forces it
    return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]


def run(ns: argparse.Namespace, device: torch.device, precisions: list[str], work: Path
        ) -> tuple[list[Row], dict[str, Any]]:
    """Run the selected sections; a failing section is reported and the others still run."""
    from img2img.bench.ceiling import ceiling
    from img2img.bench.common import Row, log
    from img2img.bench.sr import sr_tiled
    from img2img.bench.train import train_steps
    from img2img.bench.translate import translation
    from img2img.runtime import default_batch_size

    sections = [s for s in SECTIONS if s in ns.only or (s == "ceiling" and "train" in ns.only)]
    rows: list[Row] = []
    out: dict[str, Any] = {}
    modes = (False, True) if ns.compile else (False,)
    batch_size = ns.batch_size or default_batch_size(device)
    torch_precisions = [p for p in precisions if p != INT8]  # int8 is an inference path
    for name in sections:
        try:
            if name == "ceiling":
                got, out[name] = ceiling(device, torch_precisions, ns.quick, ns.repeats,
                                         ns.warmup)
            elif name == "train":
                got, out[name] = train_steps(ns.tasks, device, torch_precisions, ns.quick,
                                             ns.repeats, ns.warmup, out.get("ceiling", {}),
                                             ns.profile, modes, ns.train_size)
            elif name == "translate":
                got, out[name] = translation(device, precisions, ns.quick, work,
                                             batch_size, ns.num_images, ns.images,
                                             passes=ns.passes, checkpoint=ns.checkpoint,
                                             ceilings=out.get("ceiling"), compile_modes=modes)
            else:
                got, out[name] = sr_tiled(device, precisions, ns.quick, work,
                                          tile=ns.tile, overlap=ns.tile_overlap,
                                          batch_size=batch_size, ext=ns.sr_ext,
                                          size=ns.sr_size, checkpoint=ns.sr_checkpoint,
                                          images=ns.images)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the rest
            log(f"{name}: FAILED: {exc}")
            got, out[name] = [Row(f"{name} FAILED", "-", None, "", str(exc)[:300])], {
                "error": f"{type(exc).__name__}: {exc}"}
        for row in got:
            log(f"  {row.name} {row.precision}: {row.value} {row.unit}")
        rows += got
    return rows, out


def _profiles(train: list[dict[str, Any]]) -> str:
    from img2img.bench.layer_profile import format_groups

    lines = []
    for res in train:
        if "profile_top_self_cpu" in res:
            lines.append(f"\nprofile of one {res['task']} {res['precision']} step "
                         f"(top ops by self CPU time):")
            lines += [f"  {e['op']:<44} {e['self_cpu_s']:8.3f} s {100 * e['share']:5.1f}%  "
                      f"{e['calls']} calls" for e in res["profile_top_self_cpu"]]
        if "profile_by_layer" in res:
            lines.append("\n" + format_groups(res["profile_by_layer"],
                                              f"one {res['task']} {res['precision']} step "
                                              f"by kind of layer"))
    return "\n".join(lines)


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """Run, print, write JSON; exit 1 if a section failed, 2 on bad options."""
    ns = benchmark_parser().parse_args(argv)
    return guarded(lambda: _benchmark(ns), ns.debug)


def _benchmark(ns: argparse.Namespace) -> int:
    import torch

    from img2img.bench.common import format_table, log, machine_info
    from img2img.data.io import atomic_write_bytes
    from img2img.runtime import check_precision, keep_freed_memory, resolve_device

    if ns.threads:
        torch.set_num_threads(ns.threads)
    try:
        device = resolve_device(ns.device)
        precisions = _precisions(ns, device)
        for p in precisions:
            if p == INT8 and device.type != "cpu":
                raise ValueError(f"--precision int8 runs on the CPU, not on {device}")
            if p != INT8:
                check_precision(p, device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    info = machine_info(device)
    # as train and translate do; the baseline loop shares it (IMG2IMG_MALLOC=system: neither)
    info["malloc"] = "keep freed memory" if keep_freed_memory() else "system default"
    load = info.get("loadavg_start", [0])[0]
    if load > 0.5 * info["usable_cpus"]:
        log(f"warning: load average {load} on {info['usable_cpus']} CPUs: other work is "
            f"running, timings will be slow and noisy")
    with tempfile.TemporaryDirectory(prefix="img2img-bench-") as tmp:
        rows, sections = run(ns, device, precisions, Path(tmp))
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    settings = {k: v for k, v in vars(ns).items() if k != "json"}
    settings["precision"] = precisions
    report = {"machine": info, "settings": settings, "rows": [r.to_dict() for r in rows],
              **sections}
    print(f"machine: {info['cpu']} ({info['cpu_family_model']}), {info['usable_cpus']} usable "
          f"CPUs, {info['torch_threads']} torch threads, torch {info['torch']}, device "
          f"{info['device']}, {info['date']}, malloc: {info['malloc']}, "
          f"load {info.get('loadavg_start')} -> {info.get('loadavg_end')}"
          + (" [--quick: CI sizes]" if ns.quick else ""))
    print(f"cpu flags seen: {' '.join(info['cpu_flags']) or 'none'}; precision auto -> "
          f"{info['precision_auto']} ({info['precision_auto_reason']})")
    print(format_table(rows))
    if ns.profile and isinstance(sections.get("train"), list):
        print(_profiles(sections["train"]))
    atomic_write_bytes(ns.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    print(f"wrote {ns.json}")
    return EXIT_FAILED if any(_failed(s) for s in sections.values()) else EXIT_OK


def _failed(section: Any) -> bool:
    items = section if isinstance(section, list) else [section]
    return any(isinstance(item, dict) and "error" in item for item in items)

