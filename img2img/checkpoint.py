"""The generator checkpoint contract: one ``.safetensors`` file that rebuilds itself.

Metadata (all strings, as safetensors requires) holds the architecture name and
keyword arguments, the task, the direction, channels, value range, scale, the
size multiple the network needs and the toolkit version, so that
``Translator.from_checkpoint(path)`` needs no other information. Loading never
unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from img2img import __version__
from img2img.data.io import atomic_write_bytes
from img2img.nn import build_generator

FORMAT_NAME = "img2img.generator"
FORMAT_VERSION = "1"


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or not an img2img generator."""


@dataclass
class GeneratorMeta:
    """What a generator checkpoint says about itself."""

    arch: str
    kwargs: dict[str, Any]
    task: str
    direction: str = "A2B"
    in_channels: int = 3
    out_channels: int = 3
    scale: int = 1
    size_multiple: int = 1
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: str = "RGB"
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """Flatten to the str->str mapping safetensors stores."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "kwargs": json.dumps(self.kwargs, sort_keys=True),
            "task": self.task,
            "direction": self.direction,
            "in_channels": str(self.in_channels),
            "out_channels": str(self.out_channels),
            "scale": str(self.scale),
            "size_multiple": str(self.size_multiple),
            "value_range": json.dumps(list(self.value_range)),
            "channel_order": self.channel_order,
            "img2img_version": self.version,
            "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_metadata(cls, md: dict[str, str], path: str | os.PathLike) -> GeneratorMeta:
        """Parse the safetensors metadata; raise CheckpointError naming the file when invalid."""
        if md.get("format") != FORMAT_NAME:
            raise CheckpointError(
                f"{path}: not an img2img generator checkpoint (metadata 'format' is "
                f"{md.get('format')!r}; expected {FORMAT_NAME!r})"
            )
        try:
            meta = cls(
                arch=md["arch"],
                kwargs=json.loads(md["kwargs"]),
                task=md["task"],
                direction=md["direction"],
                in_channels=int(md["in_channels"]),
                out_channels=int(md["out_channels"]),
                scale=int(md["scale"]),
                size_multiple=int(md["size_multiple"]),
                value_range=tuple(json.loads(md["value_range"])),
                channel_order=md["channel_order"],
                version=md["img2img_version"],
                extra=json.loads(md.get("extra", "{}")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: incomplete checkpoint metadata ({exc})") from exc
        problem = meta.problem()
        if problem:
            raise CheckpointError(f"{path}: invalid checkpoint metadata: {problem}")
        return meta

    def problem(self) -> str | None:
        """Why these values cannot describe a runnable generator, or None when they can."""
        for name in ("scale", "size_multiple", "in_channels", "out_channels"):
            if getattr(self, name) < 1:
                return f"{name}={getattr(self, name)} (must be at least 1)"
        if not isinstance(self.kwargs, dict):
            return f"kwargs must be a JSON object, not {self.kwargs!r}"
        lo_hi = self.value_range
        if len(lo_hi) != 2 or not all(isinstance(v, int | float) for v in lo_hi) \
                or not lo_hi[0] < lo_hi[1]:
            return f"value_range={list(lo_hi)} (must be [low, high] with low < high)"
        return None


def meta_for(model: torch.nn.Module, arch: str, kwargs: dict[str, Any], task: str,
             direction: str = "A2B", **extra: Any) -> GeneratorMeta:
    """Describe a generator built with ``build_generator(arch, **kwargs)``."""
    return GeneratorMeta(
        arch=arch,
        kwargs=dict(kwargs),
        task=task,
        direction=direction,
        in_channels=int(getattr(model, "in_channels", 3)),
        out_channels=int(getattr(model, "out_channels", 3)),
        scale=int(getattr(model, "scale", 1)),
        size_multiple=int(getattr(model, "size_multiple", 1)),
        value_range=tuple(float(v) for v in getattr(model, "value_range", (-1.0, 1.0))),
        extra=extra,
    )


def save_generator(path: str | os.PathLike, model: torch.nn.Module, meta: GeneratorMeta) -> None:
    """Write the generator's weights and metadata atomically to ``path``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta.to_metadata()))


def read_meta(path: str | os.PathLike) -> GeneratorMeta:
    """Read only the metadata of a generator checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            md = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable .safetensors file ({exc})") from exc
    return GeneratorMeta.from_metadata(md, p)


def load_generator(path: str | os.PathLike,
                   device: torch.device | str = "cpu") -> tuple[torch.nn.Module, GeneratorMeta]:
    """Rebuild the generator described by the checkpoint and load its weights (eval mode)."""
    meta = read_meta(path)
    try:
        model = build_generator(meta.arch, **meta.kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot rebuild generator {meta.arch!r} with {meta.kwargs} "
            f"(written by img2img {meta.version}): {exc}"
        ) from exc
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match {meta.arch!r}: {exc}") from exc
    return model.to(device).eval(), meta
