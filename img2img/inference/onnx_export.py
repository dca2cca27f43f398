"""``img2img export``: a generator checkpoint -> one self-describing ``.onnx`` file, checked.

The graph comes from ``torch.onnx.export(..., dynamo=True)`` (the exporter PyTorch maintains;
it needs ``onnxscript``) with batch, height and width dynamic (``Dim.AUTO``: whatever sizes
the network accepts, e.g. multiples of 4 for the ResNet generators). It is traced under
``img2img.nn.cpu.direct`` and without autograd, so the CPU-only execution tricks (Winograd 3x3,
convolutions on 2x2 phases, SRResNet's banded last stage) are not in it: every convolution is
an ONNX ``Conv`` computing the published layer. The checkpoint's metadata strings go into the
model's ``metadata_props`` (plus ``onnx_min_size``, ``onnx_fp16``, ``onnx_opset``).

The file is written to a temp name beside ``out``, then ONNX Runtime (CPU) runs it on three
input sizes -- two the network accepts as they are (one with a batch of 2) and an odd one
padded the way the translator pads -- against the PyTorch network in fp32; only when the
largest absolute difference is within :data:`FP32_TOLERANCE` (:data:`FP16_TOLERANCE` times
the output's peak for ``--fp16``) does it replace ``out``. The fp32 graph ``--precision
int8`` quantizes, which never leaves the toolkit, comes from the TorchScript exporter
instead where that works and passes the same check (6-7x faster to export).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from img2img.checkpoint import GeneratorMeta
from img2img.data.io import atomic_path
from img2img.errors import UsageError
from img2img.inference import onnx_backend
from img2img.inference.bundled import resolve_checkpoint
from img2img.inference.loader import load_model
from img2img.nn.cpu import direct

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's lowest supported opset
FP32_TOLERANCE = 1e-3
# fp16 weights and activations: ~3 significant digits, a few roundings per layer.
FP16_TOLERANCE = 5e-2
# protobuf cannot serialise a message over 2 GiB; larger weights would need external data.
MAX_WEIGHT_BYTES = 2**31 - 2**26


class OnnxParityError(Exception):
    """ONNX Runtime's output differs from PyTorch's beyond the tolerance (file not kept)."""


@dataclass
class ParityRow:
    """One parity-check input: its shape, the padded shape run, the differences."""

    shape: tuple[int, ...]
    run_shape: tuple[int, ...]
    max_abs: float
    mean_abs: float


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched PyTorch."""

    path: Path
    meta: GeneratorMeta
    opset: int
    fp16: bool
    tolerance: float
    rows: list[ParityRow] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The parity table as printed by the command."""
        out = []
        for r in self.rows:
            size = "x".join(map(str, r.shape))
            run = "x".join(map(str, r.run_shape))
            pad = "" if r.run_shape == r.shape else f" (padded to {run})"
            out.append(f"  input {size}{pad}: max abs diff {r.max_abs:.3g}, "
                       f"mean abs diff {r.mean_abs:.3g}")
        return out


def parity_shapes(meta: GeneratorMeta, min_size: int) -> list[tuple[int, int, int, int]]:
    """Three NCHW input shapes: two the network accepts (the second with batch 2, not
    square) and an odd-sized one that needs the translator's padding when
    ``size_multiple > 1``."""
    m = meta.size_multiple
    base = max(32, min_size)
    base += (-base) % m
    c = meta.in_channels
    return [(1, c, base, base), (2, c, base + m * max(1, 8 // m), 2 * base),
            (1, c, base + 5 - (base % 2), base - 3 + (base % 2))]


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike,
                opset: int = DEFAULT_OPSET, fp16: bool = False, key: str | None = None,
                seed: int = 0, *, quick: bool = False) -> ExportReport:
    """Export ``checkpoint`` (any generator file the toolkit loads, or a bundled model's name)
    to ``out`` and check it. ``quick`` (fp32, for a graph that stays inside the toolkit:
    int8's): by PyTorch's TorchScript exporter where it works and its graph passes the
    check (:func:`_write_torchscript`), else by dynamo.

    Raises UsageError for a bad request, CheckpointError for an unreadable checkpoint and
    :class:`OnnxParityError` (nothing written) when ONNX Runtime disagrees with PyTorch.
    """
    src, dst = resolve_checkpoint(checkpoint), Path(out)
    if dst.suffix.lower() != onnx_backend.SUFFIX:
        raise UsageError(f"--onnx {dst}: the file name must end in .onnx")
    if onnx_backend.is_onnx(src):
        raise UsageError(f"{src} is already an ONNX model")
    if opset < MIN_OPSET:
        raise UsageError(f"--opset {opset}: the exporter writes opset {MIN_OPSET} or newer")
    for module in ("onnx", "onnxruntime"):
        onnx_backend.require(module, "img2img export --onnx")
    onnx_backend.require_installed("onnxscript", "img2img export --onnx")  # dynamo imports it
    model, meta = load_model(src, "cpu", key)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{src}: not a PyTorch generator")
    weight_bytes = sum(t.numel() * (2 if fp16 else 4) for t in model.state_dict().values())
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise UsageError(f"{src}: {weight_bytes / 2**30:.1f} GiB of weights do not fit in one "
                         f".onnx file (2 GiB protobuf limit)")
    min_size = int(getattr(model, "min_size", 1))
    report = ExportReport(dst, meta, opset, fp16, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
    metadata = {**meta.to_metadata(), onnx_backend.MIN_SIZE_KEY: str(min_size),
                onnx_backend.FP16_KEY: "1" if fp16 else "0",
                onnx_backend.OPSET_KEY: str(opset)}
    example = parity_shapes(meta, min_size)[0]
    with atomic_path(dst) as tmp:
        if quick and not fp16 and _write_torchscript(model.eval(), torch.zeros(example), tmp,
                                                     metadata, opset):
            try:
                report.rows = check_onnx_parity(tmp, model, meta, min_size, report.tolerance,
                                                fp16, seed)
                return report
            except OnnxParityError as exc:  # e.g. a size-dependent branch traced as constant
                log.info("onnx: the TorchScript exporter's graph failed the check (%s); "
                         "using dynamo", exc)
        write_onnx(model, tmp, metadata, opset, fp16, example)
        report.rows = check_onnx_parity(tmp, model, meta, min_size, report.tolerance, fp16,
                                        seed)
    return report


def write_onnx(model: torch.nn.Module, path: Path, metadata: dict[str, str], opset: int,
               fp16: bool, example_shape: tuple[int, ...]) -> None:
    """Trace ``model`` (plain PyTorch convolutions, no autograd) into ``path`` with dynamic
    batch/height/width and ``metadata`` as ``metadata_props``, by the dynamo exporter."""
    net = model.eval()
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        import copy

        net = copy.deepcopy(model).half()
    _write_dynamo(net, torch.zeros(example_shape, dtype=dtype), path, metadata, opset)


def _write_torchscript(net: torch.nn.Module, x: torch.Tensor, path: Path,
                       metadata: dict[str, str], opset: int) -> bool:
    """:func:`write_onnx` (fp32) by the TorchScript exporter (``dynamo=False``); False
    (nothing written) where this torch cannot export that way (PyTorch deprecated it).

    It exported the trained resnet_9blocks in 1.3 s against dynamo's 8.3-8.9 s in a fresh
    process (2-core Xeon, family 6 model 167): most of a first ``--precision int8`` run's
    fixed cost. Its graph keeps some shape arithmetic for the pads, which ONNX Runtime folds
    away (the int8 models quantized from either graph gave identical outputs);
    ``img2img export`` keeps dynamo's cleaner graph for the file it hands out."""
    import io
    import warnings

    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with torch.no_grad(), direct(net), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes, "output": axes})
        except Exception as exc:  # noqa: BLE001 - removed or failing: dynamo does it
            log.info("onnx: the TorchScript exporter did not export %s (%s: %s); using dynamo",
                     metadata.get("arch"), type(exc).__name__, str(exc).strip()[:200])
            return False
    graph = onnx.load_from_string(buffer.getvalue())
    for k, v in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(graph, str(path))
    return True


def _write_dynamo(net: torch.nn.Module, x: torch.Tensor, path: Path, metadata: dict[str, str],
                  opset: int) -> None:
    """:func:`write_onnx` by the dynamo exporter."""
    import warnings

    from torch.export import Dim

    onnx_backend.require("onnxscript", "exporting to ONNX")  # imported here, where it is used
    dynamic = ({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},)
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # the exporter's optimiser logs every rewrite at INFO
        lg.setLevel(logging.WARNING)
    with torch.no_grad(), direct(net), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(net, (x,), dynamo=True, opset_version=opset,
                                        input_names=["input"], output_names=["output"],
                                        dynamic_shapes=dynamic, verbose=False)
        except Exception as exc:  # noqa: BLE001 - torch.export's errors are long; keep one
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UsageError(f"{metadata.get('arch')}: cannot be exported to ONNX "
                             f"({type(exc).__name__}: {first})") from None
        finally:
            for lg, level in zip(quiet, levels, strict=True):
                lg.setLevel(level)
    for k, v in metadata.items():
        program.model.metadata_props[k] = v
    program.save(str(path), external_data=False)


def check_onnx_parity(path: Path, model: torch.nn.Module, meta: GeneratorMeta, min_size: int,
                      tolerance: float, fp16: bool = False, seed: int = 0) -> list[ParityRow]:
    """Run the ONNX file in ONNX Runtime (CPU) and ``model`` (fp32, direct convolutions) on
    the :func:`parity_shapes` inputs; OnnxParityError when any max difference exceeds
    ``tolerance`` (times the output's peak magnitude, when above 1, for fp16)."""
    from img2img.inference.padding import pad_to_multiple

    onnx_model, _ = onnx_backend.load_onnx(path, "cpu")
    gen = torch.Generator().manual_seed(seed)
    lo, hi = meta.value_range
    rows = []
    for shape in parity_shapes(meta, min_size):
        x = lo + (hi - lo) * torch.rand(shape, generator=gen)
        padded, _, _ = pad_to_multiple(x, meta.size_multiple, min_size)
        with torch.no_grad(), direct(model):
            want = model(padded).float()
        got = onnx_model(padded)
        if got.shape != want.shape:
            raise OnnxParityError(f"{path.name}: ONNX Runtime gives a {tuple(got.shape)} output "
                                  f"for a {tuple(padded.shape)} input where PyTorch gives "
                                  f"{tuple(want.shape)}")
        diff = (got - want).abs()
        row = ParityRow(tuple(shape), tuple(padded.shape), diff.max().item(),
                        diff.mean().item())
        rows.append(row)
        bound = tolerance * (max(1.0, want.abs().max().item()) if fp16 else 1.0)
        if not row.max_abs <= bound:  # also refuses NaN
            raise OnnxParityError(
                f"ONNX Runtime differs from PyTorch by up to {row.max_abs:.3g} (mean "
                f"{row.mean_abs:.3g}) on a {'x'.join(map(str, shape))} input, above the "
                f"{'fp16' if fp16 else 'fp32'} tolerance {bound:.3g}; nothing written")
    return rows
