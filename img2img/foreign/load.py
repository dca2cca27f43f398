"""Read another project's weight file safely and take the generator's state dict out of it.

``.pth`` / ``.pt`` / ``.ckpt`` files go through ``torch.load(weights_only=True)``, whose
unpickler rebuilds only tensors and plain containers: a file that names any other Python
object (a class, a function, ``argparse.Namespace``, a numpy scalar) is refused before
anything in it runs. ``.safetensors`` files hold tensors only.

Containers seen in the wild are unwrapped: a bare state dict; BasicSR's ``params_ema`` /
``params`` (the EMA weights preferred); ``state_dict``, ``model``, ``generator`` and similar
nesting; DataParallel's ``module.`` and ``torch.compile``'s ``_orig_mod.`` prefixes. Non-tensor
entries (an ``iter`` count next to ``params``) are ignored, and the running statistics that
PyTorch before 0.4 saved for InstanceNorm layers, which track nothing, are dropped as the
CycleGAN reference does when it loads them.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from img2img.checkpoint import FORMAT_NAME, CheckpointError

from .family import StateDict

# Container keys holding a generator's weights, most preferred first.
CONTAINER_KEYS = (
    "params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model",
    "net", "network", "generator", "netG", "gen", "g_ema", "g", "G",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_STATS = ("running_mean", "running_var", "num_batches_tracked")
_BASICSR = {"params_ema", "params-ema", "params"}


class ForeignCheckpointError(CheckpointError):
    """A foreign weight file cannot be read safely, or holds nothing the toolkit can run."""


def load_foreign(path: str | os.PathLike, key: str | None = None) -> tuple[StateDict, str]:
    """Load the generator weights of a foreign file without running any code from it.

    ``key`` picks a container entry (``params``, ``netG_A``...) or a key prefix of the
    state dict (``netG_A`` for ``netG_A.model.0.weight``...) instead of the automatic choice.
    Returns the flat state dict and a description of where in the file it was found.
    Raises :class:`ForeignCheckpointError` naming the file for anything unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise ForeignCheckpointError(f"{p}: file not found")
    if not p.is_file():
        raise ForeignCheckpointError(f"{p}: not a file")
    obj = _read_safetensors(p) if p.suffix.lower() == ".safetensors" else _read_torch(p)
    try:
        state, where = unwrap(obj, key)
        state, notes = clean_state_dict(state)
    except ForeignCheckpointError as exc:
        raise ForeignCheckpointError(f"{p}: {exc}") from None
    return state, "; ".join([where, *notes])


def _read_torch(p: Path) -> Any:
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ForeignCheckpointError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    # torch.save writes a zip archive, or before PyTorch 1.6 a protocol-2 pickle stream.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise ForeignCheckpointError(
            f"{p}: not a PyTorch weight file (neither a torch.save zip archive nor a pickle)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only" not in text.lower():
            reason = _first_line(text)
            raise ForeignCheckpointError(f"{p}: not a readable PyTorch file ({reason})") from None
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (it refers to {found.group(1)})" if found else ""
        raise ForeignCheckpointError(
            f"{p}: refused: the file stores Python objects other than tensors{what}, and "
            "loading it would mean running code from the file, which img2img never does; "
            "save a plain state dict of tensors instead (torch.save(net.state_dict(), ...) "
            "or safetensors)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError,
            IndexError, TypeError) as exc:
        # torch.load's errors for truncated zips, text files and other formats.
        reason = _first_line(str(exc)) or type(exc).__name__
        raise ForeignCheckpointError(
            f"{p}: not a readable PyTorch file (corrupt, truncated or another format: {reason})"
        ) from None


def _read_safetensors(p: Path) -> StateDict:
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") == FORMAT_NAME:
            raise ForeignCheckpointError(
                f"{p}: already an img2img generator checkpoint; use it as it is")
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ForeignCheckpointError(f"{p}: not a readable .safetensors file ({exc})") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _tensors(d: dict) -> StateDict:
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _nested(d: dict) -> list[str]:
    """Keys of ``d`` whose values are dicts holding tensors (at any depth)."""
    return [k for k, v in d.items() if isinstance(v, dict) and _holds_tensors(v)]


def _holds_tensors(d: dict, depth: int = 0) -> bool:
    if _tensors(d):
        return True
    return depth < 3 and any(isinstance(v, dict) and _holds_tensors(v, depth + 1)
                             for v in d.values())


def unwrap(obj: Any, key: str | None = None) -> tuple[StateDict, str]:
    """The flat tensor dict inside a loaded file and a description of where it was.

    Raises :class:`ForeignCheckpointError` (without a file name) when there is none or, with
    ``key``, when ``key`` names neither a container entry nor a key prefix.
    """
    if not isinstance(obj, dict):
        raise ForeignCheckpointError(f"holds a {type(obj).__name__}, not a dict of tensors")
    if key is not None:
        return _by_key(obj, key)
    return _auto(obj, [])


def _auto(d: dict, path: list[str]) -> tuple[StateDict, str]:
    tensors = _tensors(d)
    if tensors:
        ignored = len(d) - len(tensors)
        where = f"{_where(path)}" + (f" ({ignored} non-tensor entries ignored)" if ignored else "")
        return tensors, where
    nested = _nested(d)
    preferred = [k for k in CONTAINER_KEYS if k in nested]
    if preferred:
        return _auto(d[preferred[0]], [*path, preferred[0]])
    if len(nested) == 1:
        return _auto(d[nested[0]], [*path, nested[0]])
    if nested:
        raise ForeignCheckpointError(
            f"holds several sets of weights ({', '.join(map(repr, nested))}); choose one "
            "with --key")
    keys = ", ".join(map(repr, list(d)[:12])) or "none"
    raise ForeignCheckpointError(f"holds no tensors (top-level keys: {keys})")


def _where(path: list[str]) -> str:
    if not path:
        return "bare state dict"
    inner = "/".join(path)
    if path[-1] in _BASICSR:
        return f"{inner} of a BasicSR file"
    return f"{inner!r} entry"


def _by_key(d: dict, key: str) -> tuple[StateDict, str]:
    value = d.get(key)
    if isinstance(value, dict) and _holds_tensors(value):
        state, where = _auto(value, [key])
        return state, f"{where} (chosen with --key)"
    try:
        state, where = _auto(d, [])
    except ForeignCheckpointError:  # no single state dict to take a prefix of
        state, where = {}, ""
    prefix = key.rstrip(".") + "."
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if picked:
        return picked, f"keys under {prefix!r} of the {where} (chosen with --key)"
    entries = _nested(d)
    heads = sorted({k.split(".", 1)[0] for k in state})
    raise ForeignCheckpointError(
        f"--key {key!r} matches nothing; entries with weights: "
        f"{', '.join(map(repr, entries)) or 'none'}; key prefixes: "
        f"{', '.join(map(repr, heads[:12])) or 'none'}"
    )


def clean_state_dict(state: StateDict) -> tuple[StateDict, list[str]]:
    """Strip wrapper prefixes and drop the untracked InstanceNorm statistics.

    A layer whose entries are running statistics only, with no ``weight`` or ``bias``, is a
    non-affine norm: in the reference CycleGAN/pix2pix networks an InstanceNorm, which PyTorch
    before 0.4 saved with statistics it never used. Returns the cleaned dict (a new one) and
    notes on what was changed.
    """
    notes: list[str] = []
    out: StateDict = {}
    stripped: set[str] = set()
    for k, v in state.items():
        name = k
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix):], True
                    stripped.add(prefix)
        if name in out:
            raise ForeignCheckpointError(f"key {k!r} collides with {name!r} once "
                                         f"{' and '.join(sorted(stripped))} is removed")
        out[name] = v
    if stripped:
        notes.append(" and ".join(repr(p) for p in sorted(stripped)) + " prefixes removed")
    layers: dict[str, set[str]] = {}
    for k in out:
        layer, _, leaf = k.rpartition(".")
        layers.setdefault(layer, set()).add(leaf)
    dropped = 0
    for layer, leaves in layers.items():
        if leaves & set(_STATS) and not leaves - set(_STATS):
            for leaf in leaves:
                del out[f"{layer}.{leaf}" if layer else leaf]
                dropped += 1
    if dropped:
        notes.append(f"{dropped} untracked InstanceNorm statistics dropped")
    return out, notes
