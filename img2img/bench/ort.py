"""The ONNX Runtime rows of the benchmark: the same checkpoint exported with
``img2img export`` (parity-checked) and run through the same translate path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from img2img.bench.common import Row, log
from img2img.extras import missing_message

PRECISION = "ort-fp32"  # the precision column of the ONNX Runtime rows


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
