"""Folder translation throughput, end to end, against a plain per-image fp32 loop.

Three ways over the same folder of 512x512 JPEGs with one checkpoint, by default a
random-weight ``resnet_9blocks`` (loaded through ``Translator.from_checkpoint``, as the CLI
does):

- baseline: ``read_image -> translator(img) -> write_image``, one image at a time, fp32,
  with PyTorch's own convolutions (``img2img.nn.cpu.direct``: what a plain loop would run);
- folder: the toolkit's path, ``plan`` + ``translate_jobs`` (background reads and writes,
  batches), at each requested precision;
- model-only: ``translate_tensor`` on pre-decoded batches (no decode, encode or files);

folder and model-only also run once more with the checkpoint exported to ONNX and run by ONNX
Runtime (precision ``ort-fp32``), when the ``onnx`` extra is installed; and, with precision
``int8``, quantized as ``translate --precision int8`` does (calibrated on the first images;
the export, calibration and quantization time is part of the folder time).

Outputs are compared as uint8 arrays before encoding (JPEG would add its own error). A
random-weight network is a harsh test of low precision: its outputs are high-contrast
structured noise that uses the whole value range; pass a trained checkpoint for the figure a
user would see.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.bench import ort
from img2img.bench.common import Row, log, median, photo_like, synchronizer
from img2img.checkpoint import meta_for, read_meta, save_generator
from img2img.data.convert import as_channels, from_tensor, to_tensor
from img2img.data.io import read_image, write_image
from img2img.data.scan import list_images
from img2img.inference.bundled import resolve_checkpoint
from img2img.inference.folder import plan, translate_jobs
from img2img.inference.translator import Translator
from img2img.nn import build_generator, init_weights
from img2img.nn.cpu import direct

# where along the long side a square crop of a real photo starts (one per reuse of the photo)
_CROP_POSITIONS = (0.5, 0.0, 1.0, 0.25, 0.75)


def write_random_checkpoint(path: Path, arch: str, kwargs: dict[str, Any], task: str,
                            seed: int = 0) -> Path:
    """Save a randomly initialised (as for training) generator as a checkpoint."""
    torch.manual_seed(seed)
    net = init_weights(build_generator(arch, **kwargs), "normal", 0.02)
    save_generator(path, net, meta_for(net, arch, kwargs, task))
    return path


def forward_gflop(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """GFLOP of one forward pass on an input of ``shape`` (counted on the meta device, so
    nothing is computed)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return counter.get_total_flops() / 1e9


def _square(img: np.ndarray, position: float, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    side = min(h, w)
    y, x = int((h - side) * position), int((w - side) * position)
    crop = img[y:y + side, x:x + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def prepare_photos(folder: Path, count: int, size: int, source: str | None = None) -> list[Path]:
    """``count`` size x size RGB JPEGs in ``folder``: square crops of the photos in ``source``
    (reused with other crops when there are fewer), else generated photo-like images."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(list_images(source)) if source else []
    if source and not photos:
        raise ValueError(f"--images {source}: no images found")
    paths = []
    for i in range(count):
        if photos:
            img = as_channels(read_image(photos[i % len(photos)]), 3)
            if img.dtype != np.uint8:
                img = (img >> 8).astype(np.uint8)
            img = _square(img, _CROP_POSITIONS[(i // len(photos)) % len(_CROP_POSITIONS)], size)
        else:
            img = photo_like(size, size, seed=i)
        paths.append(folder / f"{i:04d}.jpg")
        write_image(paths[-1], img, quality=92)
    return paths


def _baseline(translator: Translator, paths: list[Path], out: Path
              ) -> tuple[float, dict[str, float], list[np.ndarray]]:
    """Seconds for the plain loop, per-phase seconds and the outputs."""
    phases = {"read": 0.0, "translate": 0.0, "write": 0.0}
    outs = []
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for p in paths:
        t0 = time.perf_counter()
        img = read_image(p)
        t1 = time.perf_counter()
        y = translator(img)
        t2 = time.perf_counter()
        write_image(out / p.name, y)
        t3 = time.perf_counter()
        phases["read"] += t1 - t0
        phases["translate"] += t2 - t1
        phases["write"] += t3 - t2
        outs.append(y)
    return time.perf_counter() - start, phases, outs


def _model_only(translator: Translator, batches: list[torch.Tensor]
                ) -> tuple[float, np.ndarray]:
    sync = synchronizer(translator.device)
    outs = []
    start = time.perf_counter()
    for b in batches:
        outs.append(translator.translate_tensor(b).cpu())
    sync()
    seconds = time.perf_counter() - start
    return seconds, from_tensor(torch.cat(outs))


def _folder(translator: Translator, src: Path, out: Path, batch_size: int, workers: int
            ) -> float:
    start = time.perf_counter()
    jobs = plan(str(src), out, overwrite=True).jobs
    report = translate_jobs(translator, jobs, batch_size, workers=workers)
    seconds = time.perf_counter() - start
    if report.failed or len(report.done) != len(jobs):
        raise RuntimeError(f"folder translation failed: {report.summary()}: {report.failed[:3]}")
    return seconds


def translation(device: torch.device, precisions: list[str], quick: bool, workdir: Path,
                batch_size: int = 4, count: int | None = None, images: str | None = None,
                workers: int = 2, passes: int = 1, checkpoint: str | None = None,
                ceilings: dict[str, Any] | None = None,
                compile_modes: tuple[bool, ...] = (False,)) -> tuple[list[Row], dict[str, Any]]:
    """Rows and results of the three ways at each precision (baseline in fp32 only); each
    way's time is the median of ``passes`` passes over the folder. ``checkpoint``: a trained
    generator to use instead of the random-weight ``resnet_9blocks``; ``compile_modes``
    ``(False, True)`` adds each precision with the model compiled (``--compile``)."""
    size, ngf = (128, 16) if quick else (512, 64)
    count = count or (8 if quick else 16)
    src = workdir / "photos"
    log(f"translate: writing {count} {size}x{size} JPEGs ...")
    paths = prepare_photos(src, count, size, images)
    if checkpoint:
        ckpt = resolve_checkpoint(checkpoint)  # a file, or a bundled model's name
        model = f"{ckpt.name} ({read_meta(ckpt).arch})"
    else:
        kwargs = {"ngf": ngf, "norm": "instance", "dropout": False, "upsample": "transpose"}
        ckpt = write_random_checkpoint(workdir / "resnet_9blocks.safetensors",
                                       "resnet_9blocks", kwargs, "cyclegan")
        model = f"random-weight resnet_9blocks ngf {ngf}"
    what = (f"{count} x {size}x{size} JPEG ({'from ' + images if images else 'photo-like'}), "
            f"{model}")
    log("translate: baseline (per-image fp32 loop) ...")
    base_tr = Translator.from_checkpoint(ckpt, str(device), "fp32")
    with direct(base_tr.model):
        base_tr(read_image(paths[0]))  # warm-up
        runs = [_baseline(base_tr, paths, workdir / "out_baseline") for _ in range(passes)]
    base_s = median([r[0] for r in runs])
    phases, ref = runs[0][1], runs[0][2]
    ref_arr = np.stack(ref).astype(np.int16)
    base_ips = count / base_s
    rows = [Row("translate baseline loop", "fp32", base_ips, "img/s",
                f"read->translate->write per image, direct convs; {what}; time split: "
                + ", ".join(f"{k} {100 * v / runs[0][0]:.0f}%" for k, v in phases.items()))]
    result: dict[str, Any] = {"images": count, "size": size, "source": images or "photo-like",
                              "batch_size": batch_size, "passes": passes,
                              "generator": model,
                              "baseline": {"precision": "fp32", "seconds": base_s,
                                           "images_per_s": base_ips, "phases_s": phases},
                              "by_precision": {}}
    gflop = forward_gflop(base_tr.model, (1, base_tr.meta.in_channels, size, size))
    result["gflop_per_image"] = gflop
    decoded = [to_tensor(read_image(p)) for p in paths]
    batches = [torch.stack(decoded[i:i + batch_size]) for i in range(0, count, batch_size)]
    runs_ort = [(p, c) for p in precisions if p != ort.INT8 for c in compile_modes]
    reason = ort.missing()
    if reason is None:
        runs_ort.append((ort.PRECISION, False))
        if ort.INT8 in precisions:
            runs_ort.append((ort.INT8, False))
    else:
        rows.append(ort.skipped_row("translate folder", reason))
    for p, compiled in runs_ort:
        name = f"{p}+compile" if compiled else p
        log(f"translate: {name} model-only and folder ...")
        calibration_s = 0.0
        if p == ort.PRECISION:  # the same generator exported to ONNX, run by ONNX Runtime
            onnx_path = ort.export(Path(ckpt), workdir / "generator.onnx")
            tr = Translator.from_checkpoint(onnx_path, str(device))
        elif p == ort.INT8:  # quantized as translate --precision int8 does, timed
            tr, calibration_s = ort.int8_translator(Path(ckpt), paths, workdir / "out_int8")
        else:
            tr = Translator.from_checkpoint(ckpt, str(device), p, compile=compiled)
        first = time.perf_counter()
        tr.translate_tensor(batches[0])  # warm-up at the batch shape (compiles if compiled)
        first = time.perf_counter() - first
        model = [_model_only(tr, batches) for _ in range(passes)]
        model_s, arr = median([m[0] for m in model]), model[0][1]
        folder_s = median([_folder(tr, src, workdir / f"out_{name}", batch_size, workers)
                           for _ in range(passes)]) + calibration_s
        diff = np.abs(arr.astype(np.int16) - ref_arr)
        mse = float(np.mean(diff.astype(np.float64) ** 2))
        r = {"model_only_s": model_s, "model_only_images_per_s": count / model_s,
             "folder_s": folder_s, "folder_images_per_s": count / folder_s,
             "speedup_vs_baseline": base_s / folder_s, "end_to_end_vs_model_only":
             model_s / folder_s, "max_abs_diff_255": int(diff.max()),
             "mean_abs_diff_255": float(diff.mean()),
             "psnr_vs_fp32_db": 10 * np.log10(255**2 / mse) if mse else float("inf"),
             "share_diff_over_2_255": float((diff > 2).mean()), "first_batch_s": first}
        if p == ort.INT8:
            r["calibration_s"] = calibration_s  # export + calibration + quantization
            r["folder_cached_images_per_s"] = count / (folder_s - calibration_s)
        r["model_only_gflops"] = gflop * count / model_s
        ceil = (ceilings or {}).get(p, {}).get("gflops")
        r["model_only_ceiling_fraction"] = r["model_only_gflops"] / ceil if ceil else None
        result["by_precision"][name] = r
        cached = ""
        if p == ort.INT8:
            cached = (f"; incl. {calibration_s:.1f} s {ort.int8_setup(tr)} on the first "
                      f"{min(count, ort.CALIBRATE_COUNT)} images (a rerun, cached: "
                      f"{r['folder_cached_images_per_s']:.2f} img/s = "
                      f"{base_s * r['folder_cached_images_per_s'] / count:.2f}x baseline)")
        rows.append(Row("translate folder", name, count / folder_s, "img/s",
                        f"plan+translate_jobs, batch {batch_size}; "
                        f"{r['speedup_vs_baseline']:.2f}x baseline; "
                        f"{100 * r['end_to_end_vs_model_only']:.0f}% of model-only{cached}"))
        share = (f" = {100 * r['model_only_ceiling_fraction']:.0f}% of the {p} conv ceiling"
                 if ceil else "")
        rows.append(Row("translate model-only", name, count / model_s, "img/s",
                        f"translate_tensor on pre-decoded batches of {batch_size}; "
                        f"{gflop:.0f} GFLOP/image, {r['model_only_gflops']:.0f} GFLOP/s{share}"))
        against = "per-image fp32" if p in ("fp32", ort.PRECISION) else "fp32"
        rows.append(Row("translate max |diff|", name, float(diff.max()), "/255",
                        f"vs {against} baseline outputs (uint8, before encoding); mean "
                        f"{r['mean_abs_diff_255']:.3f}; {100 * r['share_diff_over_2_255']:.3f}%"
                        f" of values > 2"))
        if p == ort.INT8:
            rows.append(Row("translate PSNR vs fp32", name, r["psnr_vs_fp32_db"], "dB",
                            "uint8 outputs against the per-image fp32 baseline's"))
    return rows, result
