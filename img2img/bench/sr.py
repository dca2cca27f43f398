"""Tiled x4 super-resolution of one large image, run as the user would: ``img2img translate
--tile N`` (the installed package's command; or a script such as ``tools/translate.py``) in a
subprocess, timed (wall clock, process start to exit), with its peak resident memory. With
the ``onnx`` extra installed, the same model exported to ``.onnx`` runs too
(precision ``ort-fp32``: ONNX Runtime).

Peak memory is the child's own ``VmHWM`` (``/proc/self/status``, read at exit by a small
runner around the script). The kernel's ``ru_maxrss`` of a child (``os.wait4``,
``RUSAGE_CHILDREN``) is not used on Linux: it includes the parent's resident size at fork
time (recorded when the child calls exec), so a benchmark process holding 1.4 GB would
report >= 1.4 GB for any child. It is the fallback where ``/proc`` does not exist.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.bench import ort
from img2img.bench.common import Row, log, photo_like
from img2img.bench.translate import prepare_photos, write_random_checkpoint
from img2img.data.io import read_image, read_image_info, write_image
from img2img.inference.quantize import CACHE_DIR

_MARK = "img2img-bench VmHWM kB:"
_COMMAND = "--img2img"  # the runner's first argument for ``img2img <args>`` instead of a script
# Runs a script as __main__ (or the img2img command) and, at exit, prints its own peak RSS to
# stderr.
_RUNNER = f"""
import atexit, runpy, sys
def _hwm():
    try:
        with open('/proc/self/status') as f:
            kb = [line.split()[1] for line in f if line.startswith('VmHWM:')]
        print('{_MARK}', kb[0], file=sys.stderr, flush=True)
    except (OSError, IndexError):
        pass
atexit.register(_hwm)
sys.argv = sys.argv[1:]
if sys.argv[0] == '{_COMMAND}':
    from img2img.cli import main
    sys.argv[0] = 'img2img'
    sys.exit(main())
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_script_measured(script: str | Path | None, args: list[str],
                        env: dict[str, str] | None = None) -> tuple[float, float | None, int, str]:
    """Run ``python script args`` (``script`` None: ``img2img args``, from the installed
    package); return (wall seconds, peak RSS in MB or None, exit code, stderr)."""
    cmd = [sys.executable, "-c", _RUNNER, _COMMAND if script is None else str(script), *args]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        peak: float | None = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss is in KiB on Linux, in bytes on macOS (upper bound, see above)
            peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        else:  # pragma: no cover - Windows
            proc.wait()
        seconds = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith(_MARK)]
    if lines:
        peak = int(lines[-1].split()[-1]) / 1024
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(_MARK))
    return seconds, peak, proc.returncode, text


def _translate(script: Path | None, ckpt: Path, src: Path, out: Path, device: torch.device,
               precision: str, extra: list[str]) -> tuple[float, float | None, Path, list[str]]:
    """Run translate on ``src`` into the empty folder ``out``; (seconds, peak MB, output, args).
    ``script`` None: ``img2img translate``."""
    lead = ["translate"] if script is None else []
    args = [*lead, "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--device",
            str(device), "--precision", precision, "--quiet", "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    seconds, peak, code, err = run_script_measured(script, args, env)
    if code != 0:
        raise RuntimeError(f"translate exited with {code}: {err.strip()[-2000:]}")
    written = next(p for p in out.iterdir() if p.is_file())  # not int8's cache folder
    return seconds, peak, written, args


def sr_tiled(device: torch.device, precisions: list[str], quick: bool, workdir: Path,
             script: Path | None = None, tile: int | None = None, overlap: int | None = None,
             batch_size: int = 1, ext: str | None = None, size: int | None = None,
             checkpoint: str | None = None, images: str | None = None
             ) -> tuple[list[Row], dict[str, Any]]:
    """Rows and results for upscaling a photo-like square PNG by 4 at each precision, plus
    the floor: the same command on an 8x8 image (imports, model load, one tile; for int8 the
    model quantized by the main run, from its cache). ``tile``
    None: translate's automatic tiling (128 for x4); ``size`` defaults to 4000. ``script``
    None runs ``img2img translate`` from the installed package (nothing read from a
    checkout); a path runs that script (``tools/translate.py``). ``checkpoint``: an x4
    generator to use instead of a random-weight SRResNet (e.g. the bundled ``sr_x4_naip``).
    Precision ``int8`` runs ``translate --precision int8`` (its calibration inside the timed
    process) and adds its PSNR against the fp32 output when fp32 ran too. ``images``: a
    folder whose first photo, cropped square and resized, is the input instead of a
    generated photo-like image (whose sensor-like noise at every pixel is harsher on int8
    than real photos are)."""
    size, channels = (size or 256, 16) if quick else (size or 4000, 64)
    tile = tile or (64 if quick else None)
    src = workdir / "sr_input" / f"photo_{size}.png"
    log(f"sr: writing a {size}x{size} PNG ...")
    if images:
        (photo,) = prepare_photos(workdir / "sr_photo", 1, size, images)
        write_image(src, read_image(photo))
    else:
        write_image(src, photo_like(size, size, seed=4000))
    tiny = workdir / "sr_tiny" / "photo_8.png"
    write_image(tiny, photo_like(8, 8, seed=8))
    if checkpoint:
        ckpt, what = Path(checkpoint), Path(checkpoint).name
    else:
        kwargs = {"scale": 4, "channels": channels, "n_blocks": 16, "norm": "batch"}
        ckpt = write_random_checkpoint(workdir / "srresnet_x4.safetensors", "srresnet",
                                       kwargs, "srgan")
        what = f"srresnet x4 ({channels} ch)"
    extra = ["--batch-size", str(batch_size)] + (["--tile", str(tile)] if tile else [])
    extra += ["--tile-overlap", str(overlap)] if overlap is not None else []
    extra += ["--ext", ext] if ext else []
    mp = size * size / 1e6
    rows: list[Row] = []
    results: dict[str, Any] = {"input": f"{size}x{size}", "tile": tile, "overlap": overlap,
                               "generator": what if checkpoint else
                               f"srresnet x4, {channels} ch, 16 blocks", "by_precision": {}}
    reason = ort.missing()
    runs = [(p, ckpt) for p in precisions if p != ort.INT8 or reason is None]
    runs.sort(key=lambda run: run[0] == ort.INT8)  # after fp32, whose output it is held to
    if reason is None:  # the same generator exported to ONNX, run by ONNX Runtime
        runs.append((ort.PRECISION, ort.export(ckpt, workdir / "srresnet_x4.onnx")))
    for p, model in runs:
        log(f"sr: x4 {size}x{size} tile {tile} {p} (subprocess) ...")
        out = workdir / f"sr_out_{p}"
        precision = "fp32" if p == ort.PRECISION else p
        seconds, peak, written, args = _translate(script, model, src, out, device, precision,
                                                  extra)
        h, w = read_image_info(written)[:2]
        if (h, w) != (4 * size, 4 * size):
            raise RuntimeError(f"{written}: {w}x{h}, expected {4 * size}x{4 * size}")
        reference = out.parent / "sr_out_fp32" / written.name
        psnr = psnr_of_files(written, reference) if p == ort.INT8 and reference.is_file() \
            else None
        if p != "fp32" or ort.INT8 not in precisions:
            written.unlink()
        floor_out, floor_extra = workdir / f"sr_tiny_{p}", extra
        cache = floor_out / CACHE_DIR
        if p == ort.INT8:  # the model quantized above, from its cache: the process's floor
            shutil.copytree(out / CACHE_DIR, cache, dirs_exist_ok=True)
            floor_extra = [*extra, "--calibrate", str(src.parent)]
        models = sorted(cache.glob("*.int8-*"))  # ranges (.json) or model (.onnx)
        floor_s, floor_mb, _, _ = _translate(script, model, tiny, floor_out, device, precision,
                                             floor_extra)
        results["by_precision"][p] = {
            "seconds": seconds, "s_per_input_mp": seconds / mp, "peak_rss_mb": peak,
            "output": f"{w}x{h}{written.suffix}", "args": args,
            "floor_8x8_seconds": floor_s, "floor_8x8_peak_rss_mb": floor_mb}
        if p == ort.INT8:  # no second quantization beside the copied model
            results["by_precision"][p]["floor_reused_int8_model"] = \
                bool(models) and sorted(cache.glob("*.int8-*")) == models
        calibrated = " (incl. calibration on 8 tiles)" if p == ort.INT8 else ""
        cached = ", int8 model cached" if p == ort.INT8 else ""
        rows.append(Row("sr x4 tiled", p, seconds / mp, "s/MP",
                        f"{seconds:.1f} s for {size}x{size} -> {w}x{h} {written.suffix[1:]}; "
                        f"{what}, --tile {tile or 'auto (128)'} --batch-size {batch_size}; "
                        f"whole process{calibrated} (8x8 input{cached}: {floor_s:.1f} s)"))
        floor = f"{floor_mb:.0f}" if floor_mb is not None else "?"
        rows.append(Row("sr x4 tiled peak RSS", p, peak, "MB",
                        f"VmHWM of the translate process (8x8 input: {floor} MB)"))
        if psnr is not None:
            results["by_precision"][p]["psnr_vs_fp32_db"] = psnr
            rows.append(Row("sr x4 tiled PSNR vs fp32", p, psnr, "dB",
                            "the whole output against the fp32 run's (uint8)"))
    for leftover in (workdir / "sr_out_fp32").glob("*"):
        if leftover.is_file():
            leftover.unlink()
    if reason is not None:
        rows.append(ort.skipped_row("sr x4 tiled", reason))
    return rows, results


def psnr_of_files(a: Path, b: Path, rows: int = 512) -> float:
    """PSNR (dB) between two 8-bit images of one size, compared in bands of ``rows``."""
    x, y = read_image(a), read_image(b)
    if x.shape != y.shape:
        raise RuntimeError(f"{a}: {x.shape} where {b} is {y.shape}")
    peak = 65535.0 if x.dtype == np.uint16 else 255.0
    total = 0.0
    for i in range(0, x.shape[0], rows):
        d = x[i:i + rows].astype(np.float32) - y[i:i + rows].astype(np.float32)
        total += float(np.square(d, dtype=np.float64).sum())
    mse = total / x.size
    return 10 * math.log10(peak**2 / mse) if mse else float("inf")
