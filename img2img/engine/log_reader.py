"""Reading a run's loss log back (``losses.jsonl`` or ``losses.csv``, see ``logs``).

Only numeric values are kept; a line that cannot be read (the half-written last line of a
killed run) is counted, not raised, so a report can be written while training runs.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

LOG_NAMES = ("losses.jsonl", "losses.csv")


def find_log(run_dir: Path) -> Path | None:
    """The run's ``losses.jsonl`` or ``losses.csv`` (the newer if both exist), or None."""
    found = [run_dir / n for n in LOG_NAMES if (run_dir / n).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and value.strip():
        try:
            v = float(value)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def _rows(path: Path) -> list[Any]:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        if path.suffix == ".csv":
            return list(csv.DictReader(f))
        rows: list[Any] = []
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(None)
        return rows


def read_log(path: Path) -> tuple[list[dict[str, float]], int]:
    """The records of a loss log with their finite numeric values only, in file order, and
    the number of lines that could not be read. Records without a numeric ``step`` are
    dropped and counted."""
    records: list[dict[str, float]] = []
    bad = 0
    for row in _rows(path):
        if not isinstance(row, dict):
            bad += 1
            continue
        rec = {k: v for k, v in ((k, _number(v)) for k, v in row.items())
               if isinstance(k, str) and v is not None}
        if "step" not in rec:
            bad += 1
            continue
        records.append(rec)
    return records, bad
