"""Loss logging: JSONL or CSV in the run folder, optional TensorBoard."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any


class LossLog:
    """Appends one record per logged step to ``losses.jsonl`` or ``losses.csv``."""

    def __init__(self, out: Path, fmt: str = "jsonl", tensorboard: bool = False) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"log format must be jsonl or csv, not {fmt!r}")
        self.path = out / f"losses.{fmt}"
        self.fmt = fmt
        self._fields: list[str] | None = None
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError(
                    "--tensorboard needs the tensorboard package: pip install 'img2img[tb]'"
                ) from exc
            self._tb = SummaryWriter(str(out / "tb"))

    def write(self, step: int, values: dict[str, Any]) -> None:
        """Record ``values`` for ``step``."""
        record = {"step": step, "time": round(time.time(), 3), **values}  # time: throughput
        with self.path.open("a", newline="") as f:
            if self.fmt == "jsonl":
                f.write(json.dumps(record) + "\n")
            else:
                if self._fields is None:
                    self._fields = list(record)
                    if f.tell() == 0:
                        csv.writer(f).writerow(self._fields)
                csv.writer(f).writerow([record.get(k, "") for k in self._fields])
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush TensorBoard if used."""
        if self._tb is not None:
            self._tb.close()
