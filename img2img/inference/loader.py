"""Any generator file -> (network, metadata).

The toolkit's own ``.safetensors`` (``img2img.checkpoint``) loads as it is; anything else --
a reference CycleGAN/pix2pix ``.pth``, ESRGAN / Real-ESRGAN / BasicSR weights, a foreign
``.safetensors`` -- is read safely, recognised from its tensors (``img2img.foreign``) and
converted in memory to one of the toolkit's generators, with metadata saying where it came
from (file name and SHA-256), its value range and its scale. Architectures beyond the native
families (SwinIR, HAT, SPAN, ...) are built by spandrel (``img2img.foreign.zoo``), also when
their toolkit checkpoint (arch ``"spandrel"``) is loaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

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
from img2img.foreign import import_file, zoo
from img2img.foreign.family import Imported
from img2img.nn import build_generator

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

    ``key`` picks the entry of a foreign container (e.g. ``params`` instead of the default
    ``params_ema`` of a BasicSR file). Raises CheckpointError naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if is_native(p):
        if key is not None:
            raise UsageError(f"--key {key}: {p} is an img2img checkpoint; --key only picks "
                             f"an entry of a foreign checkpoint")
        meta = read_meta(p)
        if meta.arch == zoo.SPANDREL_ARCH:
            return zoo.load_saved(p, meta).to(device).eval(), meta
        return load_generator(p, device)
    try:
        imported = import_file(p, key)
    except CheckpointError as exc:
        if p.suffix.lower() == ".safetensors":
            raise CheckpointError(f"{p}: not an img2img generator checkpoint, nor a published "
                                  f"model the toolkit recognises: {exc}") from None
        raise
    model, meta = build_imported(imported, p)
    log.info("%s: recognised %s; running it as %s %s (values in %s)", p.name, imported.family,
             imported.arch, imported.kwargs, list(meta.value_range))
    return model.to(device).eval(), meta


TASKS = ("cyclegan", "pix2pix", "sr")


def import_checkpoint(src: str | os.PathLike, out: str | os.PathLike, task: str | None = None,
                      direction: str = "A2B", key: str | None = None) -> GeneratorMeta:
    """Convert a published checkpoint into the toolkit's ``.safetensors`` at ``out``.

    The written file is read back and must give the same output as the converted network on
    a random input before the command succeeds (the written file replaces ``out`` atomically).
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
    model, meta = load_model(src_p, "cpu", key)
    meta.task = task or meta.task
    meta.direction = direction
    if isinstance(model, zoo.SpandrelGenerator):
        zoo.save_spandrel(out_p, model, meta)
    else:
        save_generator(out_p, model, meta)
    again, _ = load_model(out_p)
    side = _probe_size(model)
    lo, hi = meta.value_range
    x = torch.rand(1, meta.in_channels, side, side,
                   generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo
    with torch.inference_mode():
        diff = (again(x) - model(x)).abs().max().item()
    if diff > 1e-6:
        out_p.unlink(missing_ok=True)
        raise CheckpointError(f"{out_p}: the written generator differs from the converted one "
                              f"(max difference {diff:g}); nothing was kept")
    return meta


def _probe_size(model: torch.nn.Module) -> int:
    """Smallest side the network accepts that is a multiple of what it needs (at least 16)."""
    multiple = int(getattr(model, "size_multiple", 1))
    side = max(16, int(getattr(model, "min_size", 1)))
    return side + (-side) % multiple
