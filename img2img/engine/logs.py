"""Loss logging: JSONL or CSV in the run folder, optional TensorBoard.

A run that starts at step ``start_step`` (a resumed one, or 0) first cuts both log files
down to the records of steps ``<= start_step`` (rewritten atomically), so the steps a crashed
run logged after its last save appear once, and TensorBoard purges its later events.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from img2img.data.io import atomic_write_bytes
from img2img.extras import require

LOG_FORMATS = ("jsonl", "csv")


def _step(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _complete_lines(path: Path) -> tuple[list[str], bool]:
    """The file's lines without a last one cut off (no newline) by a crash, and whether
    there was such a line."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    cut = bool(lines) and not text.endswith("\n")
    return (lines[:-1] if cut else lines), cut


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the records of steps ``<= last_step`` (and drop lines cut off by a crash)."""
    if not path.is_file():
        return
    lines, cut = _complete_lines(path)
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = _step(record.get("step")) if isinstance(record, dict) else None
        if step is not None and step <= last_step:
            keep.append(line)
    if cut or keep != lines:
        atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, fields: list[str], rows: list[list[str]] | list[dict[str, str]]
               ) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([row.get(k, "") for k in fields] if isinstance(row, dict) else row)
    atomic_write_bytes(path, buf.getvalue().encode())


def truncate_csv(path: Path, last_step: int) -> None:
    """Keep the header and the complete rows of steps ``<= last_step``."""
    if not path.is_file():
        return
    lines, cut = _complete_lines(path)
    rows = list(csv.reader(lines))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    col = header.index("step") if "step" in header else -1
    keep = [r for r in body if col >= 0 and len(r) == len(header)
            and (s := _step(r[col])) is not None and s <= last_step]
    if cut or len(keep) != len(body):
        _write_csv(path, header, keep)


def _csv_header(path: Path) -> list[str] | None:
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None) or None


class LossLog:
    """Appends one record per logged step to ``losses.jsonl`` or ``losses.csv``."""

    def __init__(self, out: Path, fmt: str = "jsonl", tensorboard: bool = False,
                 start_step: int = 0) -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format must be jsonl or csv, not {fmt!r}")
        out = Path(out)
        self.path = out / f"losses.{fmt}"
        self.fmt = fmt
        truncate_jsonl(out / "losses.jsonl", start_step)
        truncate_csv(out / "losses.csv", start_step)
        self._fields: list[str] | None = None
        if fmt == "csv" and self.path.is_file():
            self._fields = _csv_header(self.path)
        self._tb = None
        if tensorboard:
            require("tensorboard", "tb", "--tensorboard")
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)

    def write(self, step: int, values: dict[str, Any]) -> None:
        """Record ``values`` for ``step``."""
        record = {"step": step, "time": round(time.time(), 3), **values}  # time: throughput
        if self.fmt == "csv":
            self._write_csv_row(record)
        else:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def _write_csv_row(self, record: dict[str, Any]) -> None:
        if self._fields is None or not self.path.is_file():
            self._fields = [*(self._fields or []),
                            *(k for k in record if k not in (self._fields or []))]
            _write_csv(self.path, self._fields, [])
        elif new := [k for k in record if k not in self._fields]:
            # a value that appears later (e.g. bad_images): widen the header, keep the rows
            self._fields += new
            _write_csv(self.path, self._fields, _read_csv(self.path))
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([record.get(k, "") for k in self._fields])

    def close(self) -> None:
        """Flush TensorBoard if used."""
        if self._tb is not None:
            self._tb.close()
