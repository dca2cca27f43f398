"""Any generator file -> (network, metadata).

The toolkit's own ``.safetensors`` (``img2img.checkpoint``) loads as it is; anything else --
a reference CycleGAN/pix2pix ``.pth``, ESRGAN / Real-ESRGAN / BasicSR weights, a foreign
``.safetensors`` -- is read safely, recognised from its tensors (``img2img.foreign``) and
converted in memory to one of the toolkit's generators, with metadata saying where it came
from (file name and SHA-256), its value range and its scale. Architectures beyond the native
families (SwinIR, HAT, SPAN, ...) are built by spandrel (``img2img.foreign.zoo``), also when
their toolkit checkpoint (arch ``"spandrel"``) is loaded again. An exported ``.onnx`` opens
in ONNX Runtime (``inference.onnx_backend``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from img2img.checkpoint import (
    FORMAT_NAME,
    CheckpointError,
    GeneratorMeta,
    load_generator,
    meta_for,
    read_meta,
    save_generator,
)
from img2img.errors import UsageError
from img2img.foreign import ForeignCheckpointError, import_file_with_original, zoo
from img2img.foreign.family import Imported, StateDict
from img2img.foreign.verify import reference_forward
from img2img.inference import onnx_backend
from img2img.inference.bundled import resolve_checkpoint
from img2img.nn import build_generator
from img2img.nn.cpu import direct

log = logging.getLogger(__name__)


def is_native(path: str | os.PathLike) -> bool:
    """True for a ``.safetensors`` file whose metadata says it is an img2img generator."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError, ValueError):
        return False


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_imported(imp: Imported, source: Path) -> tuple[torch.nn.Module, GeneratorMeta]:
    """The toolkit network for a recognised foreign state dict, and its full metadata."""
    if imp.module is not None:  # built by the recogniser (spandrel), weights loaded
        model = imp.module
    else:
        model = build_generator(imp.arch, **imp.kwargs)
        model.load_state_dict(imp.state_dict, strict=True)
    extra = {"source": source.name, "source_sha256": file_sha256(source), "family": imp.family,
             **imp.notes}
    meta = meta_for(model, imp.arch, imp.kwargs, imp.task, **extra)
    meta.scale = imp.scale
    meta.value_range = tuple(float(v) for v in imp.value_range)  # type: ignore[assignment]
    meta.channel_order = imp.channel_order
    return model, meta


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu",
               key: str | None = None) -> tuple[torch.nn.Module, GeneratorMeta]:
    """Load a generator from any file the toolkit understands (eval mode, on ``device``).

    ``path`` may also be a bundled model's name (``sr_x4_naip``; an existing file wins:
    :func:`img2img.inference.bundled.resolve_checkpoint`). ``key`` picks the entry of a
    foreign container (e.g. ``params`` instead of the default ``params_ema`` of a BasicSR
    file). Raises CheckpointError naming the file, UsageError for an unknown bare name.
    """
    p = resolve_checkpoint(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if onnx_backend.is_onnx(p):  # an exported graph, run by ONNX Runtime
        if key is not None:
            raise UsageError(f"--key {key}: {p} is an ONNX model; --key only picks an entry "
                             f"of a foreign checkpoint")
        return onnx_backend.load_onnx(p, device)  # type: ignore[return-value]
    if is_native(p):
        if key is not None:
            raise UsageError(f"--key {key}: {p} is an img2img checkpoint; --key only picks "
                             f"an entry of a foreign checkpoint")
        meta = read_meta(p)
        if meta.arch == zoo.SPANDREL_ARCH:
            return zoo.load_saved(p, meta).to(device).eval(), meta
        return load_generator(p, device)
    imported, _ = _import_foreign(p, key)
    model, meta = build_imported(imported, p)
    log.info("%s: recognised %s; running it as %s %s (values in %s)", p.name, imported.family,
             imported.arch, imported.kwargs, list(meta.value_range))
    return model.to(device).eval(), meta


def _import_foreign(p: Path, key: str | None) -> tuple[Imported, StateDict]:
    """Recognise a foreign file; also the state dict as loaded, with its upstream names."""
    try:
        return import_file_with_original(p, key)
    except CheckpointError as exc:
        if p.suffix.lower() == ".safetensors":
            raise CheckpointError(f"{p}: not an img2img generator checkpoint, nor a published "
                                  f"model the toolkit recognises: {exc}") from None
        raise


TASKS = ("cyclegan", "pix2pix", "sr")
# The converted network must reproduce the original layout's output this closely (times the
# output's peak magnitude when that exceeds 1); fp32 rounding differences are ~1e-6.
PARITY_TOLERANCE = 1e-4


def import_checkpoint(src: str | os.PathLike, out: str | os.PathLike, task: str | None = None,
                      direction: str = "A2B", key: str | None = None, *,
                      extra: dict[str, Any] | None = None) -> GeneratorMeta:
    """Convert a published checkpoint into the toolkit's ``.safetensors`` at ``out``.

    Before anything is written, the converted network and the original state dict run by
    :func:`img2img.foreign.verify.reference_forward` (the upstream layer order, written
    independently of the toolkit's modules) must agree on a random input in the model's value
    range within :data:`PARITY_TOLERANCE`; the largest difference is kept in
    ``meta.extra["parity_max_diff"]`` (None for a family without an independent forward).
    The written file is then read back and must give the same output as the converted
    network (the written file replaces ``out`` atomically).
    """
    src_p, out_p = Path(src), Path(out)
    if task is not None and task not in TASKS:
        raise UsageError(f"--task {task}: choose one of {', '.join(TASKS)}")
    if src_p.is_file() and is_native(src_p):
        raise UsageError(f"{src_p} is already an img2img checkpoint; nothing to import")
    if out_p.suffix.lower() != ".safetensors":
        raise UsageError(f"--out {out_p}: the toolkit's checkpoints end in .safetensors")
    if out_p.exists() and out_p.resolve() == src_p.resolve():
        raise UsageError(f"--out {out_p} is the input file")
    if not src_p.is_file():
        raise CheckpointError(f"{src_p}: checkpoint file not found")
    imported, original = _import_foreign(src_p, key)
    model, meta = build_imported(imported, src_p)
    model.eval()
    meta.task = task or meta.task
    meta.direction = direction
    meta.extra = {**(extra or {}), **meta.extra}
    side = _probe_size(model)
    lo, hi = meta.value_range
    x = lo + (hi - lo) * torch.rand(1, meta.in_channels, side, side,
                                    generator=torch.Generator().manual_seed(0))
    meta.extra["parity_max_diff"] = check_parity(src_p, imported, original, model, x)
    if isinstance(model, zoo.SpandrelGenerator):
        zoo.save_spandrel(out_p, model, meta)
    else:
        save_generator(out_p, model, meta)
    again, _ = load_model(out_p)
    with torch.inference_mode():
        diff = (again(x) - model(x)).abs().max().item()
    if diff > 1e-6:
        out_p.unlink(missing_ok=True)
        raise CheckpointError(f"{out_p}: the written generator differs from the converted one "
                              f"(max difference {diff:g}); nothing was kept")
    return meta


def check_parity(src: Path, imported: Imported, original: StateDict, model: torch.nn.Module,
                 x: torch.Tensor) -> float | None:
    """Largest difference between ``model(x)`` and the original layout's forward on ``x``.

    Both run PyTorch's direct convolutions (``img2img.nn.cpu.direct``: the toolkit's faster CPU
    algorithms round differently, by up to ~3e-5 at 256 channels, which would blur a check
    of the conversion). Raises CheckpointError naming ``src`` when they differ by more than
    :data:`PARITY_TOLERANCE`; None when no independent forward exists for the family.
    """
    try:
        want = reference_forward(imported, original, x)
    except (ForeignCheckpointError, RuntimeError) as exc:
        raise CheckpointError(f"{src}: the original {imported.family} layout cannot be run on "
                              f"these weights to check the conversion ({exc}); nothing "
                              f"written") from None
    if want is None:
        log.warning("%s: %s has no independent forward of its original layout; the conversion "
                    "is not checked against it", src.name, imported.family)
        return None
    with torch.inference_mode(), direct(model):
        got = model(x)
    if got.shape != want.shape:
        raise CheckpointError(
            f"{src}: the converted {imported.arch} gives a {tuple(got.shape)} output where the "
            f"original layout gives {tuple(want.shape)}; nothing written")
    diff = (got - want).abs().max().item()
    tolerance = PARITY_TOLERANCE * max(1.0, want.abs().max().item())
    if not diff <= tolerance:  # also refuses NaN
        raise CheckpointError(
            f"{src}: the converted {imported.arch} does not reproduce the original "
            f"{imported.family} (max difference {diff:.3g} on a random {x.shape[-2]}x"
            f"{x.shape[-1]} input, tolerance {tolerance:.3g}); nothing written")
    log.info("%s: the converted network matches the original layout (max difference %.3g)",
             src.name, diff)
    return diff


def _probe_size(model: torch.nn.Module) -> int:
    """Smallest side the network accepts that is a multiple of what it needs (at least 16)."""
    multiple = int(getattr(model, "size_multiple", 1))
    side = max(16, int(getattr(model, "min_size", 1)))
    return side + (-side) % multiple
