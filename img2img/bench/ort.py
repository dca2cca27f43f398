"""The ONNX Runtime rows of the benchmark: the same checkpoint exported with
``img2img export`` (parity-checked) and run through the same translate path."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

from img2img.bench.common import Row, log
from img2img.extras import missing_message
from img2img.inference.onnx_backend import OnnxGenerator
from img2img.inference.quantize import DEFAULT_CALIBRATE_COUNT
from img2img.inference.translator import Translator

PRECISION = "ort-fp32"  # the precision column of the ONNX Runtime rows
INT8 = "int8"  # translate --precision int8 (static quantization: PyTorch or ONNX Runtime)
CALIBRATE_COUNT = DEFAULT_CALIBRATE_COUNT  # as translate's default --calibrate-count


def missing() -> str | None:
    """Why the ONNX rows cannot run here (a missing package of the ``onnx`` extra), or None."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return missing_message("the ONNX rows", "onnx", module)
    return None


def export(ckpt: Path, out: Path) -> Path:
    """``ckpt`` exported to ``out`` (fp32, checked against PyTorch by the export)."""
    from img2img.inference.onnx_export import export_onnx

    log(f"onnx: exporting {ckpt.name} ...")
    report = export_onnx(ckpt, out)
    worst = max(r.max_abs for r in report.rows)
    log(f"onnx: {out.name} matches PyTorch within {worst:.2g}")
    return out


def skipped_row(name: str, reason: str) -> Row:
    """A row saying the ONNX Runtime measurement did not run, and why."""
    return Row(name, PRECISION, None, "", f"not run: {reason}")


def int8_setup(translator: Translator) -> str:
    """What a first int8 run of ``translator`` did before its first image."""
    onnx = isinstance(translator.model, OnnxGenerator)
    return "export+calibration" if onnx else "calibration (PyTorch int8)"


def int8_translator(ckpt: Path, images: list[Path], out: Path) -> tuple[Translator, float]:
    """``ckpt`` quantized to int8 as ``translate --precision int8`` does (calibrated on the
    first :data:`CALIBRATE_COUNT` of ``images``, no cached model reused), and the seconds
    that took (export where ONNX Runtime runs it, calibration, quantization)."""
    from img2img.inference import quantize

    shutil.rmtree(out / quantize.CACHE_DIR, ignore_errors=True)
    log(f"int8: calibrating on {min(len(images), CALIBRATE_COUNT)} images and "
        f"quantizing {ckpt.name} ...")
    start = time.perf_counter()
    translator = quantize.int8_translator(ckpt, out, images, CALIBRATE_COUNT,
                                          label="the benchmark's images")
    return translator, time.perf_counter() - start
