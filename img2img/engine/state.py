"""The resume file: everything needed to continue a run exactly where it stopped.

It is written with ``torch.save`` into memory and then atomically to disk, and read
with ``torch.load(weights_only=True)``, so loading it never runs pickled code. Only
tensors, numbers, strings, lists, tuples and dicts go into it (NumPy's RNG state is
converted to plain lists for that reason).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.data.io import atomic_write_bytes
from img2img.errors import UsageError

RESUME_FILE = "resume.pt"

CONFIG_FILE = "config.json"
# Keys config.json adds to the configuration (facts about the run, not settings).
_RUN_FACTS = ("version", "total_steps")


def rng_state() -> dict[str, Any]:
    """Capture the Python, NumPy and torch (CPU and CUDA) RNG states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_tuplify(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """Atomically write the resume state."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_resume(path: Path) -> dict[str, Any]:
    """Read a resume file safely (``weights_only=True``); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no resume file here; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise UsageError(f"{path}: cannot read resume file ({exc})") from exc


def read_saved_config(out: Path) -> dict[str, Any]:
    """The configuration in ``out/config.json`` (for resume files that lack their own)."""
    path = Path(out) / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; the run's configuration is needed to "
                                f"resume it") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the run's configuration ({exc})") from exc
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: not a run configuration")
    return {k: v for k, v in cfg.items() if k not in _RUN_FACTS}
