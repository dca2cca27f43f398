"""The run report: ``RUN_DIR/report.html``, a page to look at instead of a log to read.

:func:`write_report` reads what the trainer left in a run folder -- ``config.json``, the
loss log (``losses.jsonl`` or ``losses.csv``), ``samples/step_NNNNNNN.png`` and the exported
checkpoints -- and writes

* one loss chart per network (``D``/``D_*`` keys belong to the discriminators, every other
  loss to the generators: ``G_*``, ``cycle_*``, ``idt_*``, ``adv``, ``perceptual``, ...),
  each value faint as logged and bold smoothed (EMA), log y where values span more than two
  decades; the learning rate; one chart per ``val_*`` key (validation curves);
* the newest sample grids, the configuration and the throughput (steps/s from the log's
  ``time`` field, pauses such as a resume gap left out);

as PNG files in ``RUN_DIR/report/`` and the page itself, each written atomically and
linked by relative paths, so the folder can be opened from ``file://`` or copied. Without
matplotlib the page still has the tables, samples and configuration, and says which extra
gives charts. Reading nothing but files, it can be rerun at any time, during training too.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2img.data.io import ImageIOError, atomic_write_bytes, read_image_info
from img2img.data.pages import esc, key_value_table, link, nav, write_page
from img2img.engine import charts
from img2img.engine.charts import Series
from img2img.engine.log_reader import find_log, read_log
from img2img.errors import UsageError

__all__ = ["CHART_DIR", "REPORT_NAME", "RunData", "is_run", "load_run", "network_of",
           "write_report"]

REPORT_NAME = "report.html"
CHART_DIR = "report"
NEWEST_SAMPLES = 6
SAMPLE_MIN_WIDTH = 256  # smaller grids are shown enlarged (pixelated)
COUNTERS = ("skipped_steps", "bad_images")  # shown in the summary, not plotted
NOT_LOSSES = frozenset({"step", "time", "lr", *COUNTERS})
_SAMPLE = re.compile(r"step_(\d+)\.png")
_HIGHER_IS_BETTER = ("psnr", "ssim", "accuracy")


@dataclass
class RunData:
    """What a run folder holds, as the report needs it."""

    run_dir: Path
    config: dict[str, Any] | None = None
    config_error: str | None = None
    log: Path | None = None
    records: list[dict[str, float]] = field(default_factory=list)
    bad_lines: int = 0
    samples: list[tuple[int, Path]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def is_run(run_dir: Path) -> bool:
    """True for a folder holding a ``config.json`` or a loss log."""
    return run_dir.is_dir() and ((run_dir / "config.json").is_file()
                                 or find_log(run_dir) is not None)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; UsageError if it is not one (no ``config.json``, no loss log)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a folder")
    if not is_run(run_dir):
        raise UsageError(f"{run_dir}: not a training run (no config.json or losses.jsonl/"
                         f".csv; give the --out folder of img2img train)")
    data = RunData(run_dir)
    cfg = run_dir / "config.json"
    if cfg.is_file():
        try:
            loaded = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            data.config_error = f"config.json cannot be read: {exc}"
        else:
            if isinstance(loaded, dict):
                data.config = loaded
            else:
                data.config_error = "config.json does not hold a JSON object"
    data.log = find_log(run_dir)
    if data.log is not None:
        data.records, data.bad_lines = read_log(data.log)
    samples = run_dir / "samples"
    if samples.is_dir():
        found = [(int(m.group(1)), p) for p in samples.iterdir()
                 if (m := _SAMPLE.fullmatch(p.name)) and p.is_file()]
        data.samples = sorted(found)
    data.files = sorted(p for p in run_dir.iterdir()
                        if p.is_file() and p.suffix in (".safetensors", ".pt"))
    return data


def network_of(key: str) -> str:
    """The network a loss key belongs to: ``"D"`` for ``D``/``D_*``, else ``"G"``."""
    return "D" if key == "D" or key.startswith("D_") else "G"


def _keys(records: list[dict[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _series(records: list[dict[str, float]], key: str) -> Series:
    """``key`` against step; a step logged twice (a run resumed from an earlier checkpoint
    logs its steps again) keeps its latest value."""
    by_step: dict[float, float] = {}
    for r in records:
        if key in r:
            by_step[r["step"]] = r[key]
    steps = sorted(by_step)
    return Series(key, steps, [by_step[s] for s in steps])


@dataclass
class Throughput:
    """Training speed from the log's timestamps."""

    latest: float
    median: float
    active_seconds: float
    rates: Series


def throughput(records: list[dict[str, float]]) -> Throughput | None:
    """Steps per second between consecutive log rows (in file order). Intervals slower than a
    tenth of the median (a pause, a crash before ``--resume``) and rows whose step went back
    are left out. None without at least two timestamped rows."""
    steps, rates, spans = [], [], []
    prev = None
    for r in records:
        if "time" not in r:
            continue
        if prev is not None:
            dstep, dt = r["step"] - prev["step"], r["time"] - prev["time"]
            if dstep > 0 and dt > 0:
                steps.append(r["step"])
                rates.append(dstep / dt)
                spans.append(dt)
        prev = r
    if not rates:
        return None
    median = statistics.median(rates)
    kept = [(s, v, d) for s, v, d in zip(steps, rates, spans, strict=True) if v >= median / 10]
    return Throughput(latest=statistics.median(v for _, v, _ in kept[-10:]), median=median,
                      active_seconds=sum(d for _, _, d in kept),
                      rates=Series("steps/s", [s for s, _, _ in kept], [v for _, v, _ in kept]))


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else \
        f"{s // 60}m {s % 60:02d}s"


def _chart_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label) + ".png"


class _Charts:
    """Writes charts into ``RUN_DIR/report/`` and returns their ``<img>`` HTML."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / CHART_DIR
        self.enabled = charts.available()

    def img(self, label: str, title: str, series: list[Series], **kw: Any) -> str:
        if not self.enabled or not series:
            return ""
        path = self.folder / _chart_name(label)
        atomic_write_bytes(path, charts.line_chart(title, series, **kw))
        return (f'<figure><img src="{esc(link(path, self.run_dir))}" alt="{esc(title)}" '
                f'width="700"></figure>')


def _loss_section(data: RunData, out: _Charts) -> str:
    keys = [k for k in _keys(data.records)
            if k not in NOT_LOSSES and not k.startswith("val_")]
    if not keys:
        return "<p class=muted>No losses logged yet.</p>"
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(network_of(k), []).append(k)
    names = {"G": "generator losses", "D": "discriminator losses"}
    html = []
    if not out.enabled:
        html.append(f"<p class=note>No charts: {esc(charts.INSTALL_HINT)}.</p>")
    for net, members in groups.items():
        html.append(out.img(f"loss_{net}", names.get(net, net),
                            [_series(data.records, k) for k in members]))
    lr = _series(data.records, "lr")
    if lr.x:
        html.append(out.img("lr", "learning rate", [lr], smooth=False))
    rows = []
    for k in keys:
        s = _series(data.records, k)
        smooth = charts.ema(s.y, charts.smoothing_window(len(s.y)))[-1]
        rows.append(f"<tr><th>{esc(k)}</th><td>{esc(network_of(k))}</td>"
                    f"<td class=num>{_fmt(s.y[-1])}</td><td class=num>{_fmt(smooth)}</td>"
                    f"<td class=num>{_fmt(min(s.y))}</td><td class=num>{len(s.y)}</td></tr>")
    html.append("<table><tr><th>loss</th><th>network</th><th>last</th><th>smoothed</th>"
                "<th>min</th><th>points</th></tr>" + "".join(rows) + "</table>")
    return "".join(html)


def _val_section(data: RunData, out: _Charts) -> str:
    keys = [k for k in _keys(data.records) if k.startswith("val_")]
    if not keys:
        return "<p class=muted>No validation metrics (val_*) in the log.</p>"
    html, rows = [], []
    for k in keys:
        s = _series(data.records, k)
        html.append(out.img(k, k[4:], [s], smooth=False, ylabel=k[4:]))
        higher = any(h in k.lower() for h in _HIGHER_IS_BETTER)
        best = (max if higher else min)(range(len(s.y)), key=lambda i, y=s.y: y[i])
        rows.append(f"<tr><th>{esc(k)}</th><td class=num>{_fmt(s.y[-1])}</td>"
                    f"<td class=num>{_fmt(s.y[best])}</td><td class=num>{int(s.x[best])}</td>"
                    f"<td>{'higher' if higher else 'lower'}</td></tr>")
    html.append("<table><tr><th>metric</th><th>last</th><th>best</th><th>at step</th>"
                "<th>better</th></tr>" + "".join(rows) + "</table>")
    return "".join(html)


def _enlarged(grid: Path) -> str:
    """Width attributes showing a small grid (tiny test crops) at an integer zoom."""
    try:
        _, width, _, _ = read_image_info(grid)
    except (ImageIOError, OSError):
        return ""
    zoom = max(1, SAMPLE_MIN_WIDTH // max(1, width))
    return f' width="{width * zoom}" class=pixelated' if zoom > 1 else ""


def _samples_section(data: RunData) -> str:
    if not data.samples:
        return "<p class=muted>No sample grids yet (samples/step_*.png).</p>"
    newest = data.samples[::-1][:NEWEST_SAMPLES]
    figs = "".join(
        f'<figure><a href="{esc(link(p, data.run_dir))}"><img src="{esc(link(p, data.run_dir))}"'
        f' alt="samples at step {step}"{_enlarged(p)}></a><figcaption>step {step}</figcaption>'
        f"</figure>" for step, p in newest)
    older = len(data.samples) - len(newest)
    more = f"<p class=muted>{older} older grid(s) in samples/.</p>" if older else ""
    return ("<p class=muted>Each grid: one row per direction (input, translation, "
            "reconstruction where the method has one).</p>" + figs + more)


def _throughput_section(data: RunData, out: _Charts) -> str:
    tp = throughput(data.records)
    if tp is None:
        return "<p class=muted>No timestamps in the log (it needs two rows with a time).</p>"
    batch = (data.config or {}).get("batch_size")
    rows = [("steps/s (latest)", _fmt(tp.latest)), ("steps/s (median)", _fmt(tp.median))]
    if isinstance(batch, int) and batch > 0:
        rows.append(("images/s (latest, batch size " + str(batch) + ")",
                     _fmt(tp.latest * batch)))
    rows.append(("training time logged", _duration(tp.active_seconds)))
    return key_value_table(rows) + out.img("throughput", "throughput", [tp.rates],
                                           ylabel="steps/s")


def _summary(data: RunData) -> str:
    cfg = data.config or {}
    last = data.records[-1] if data.records else {}
    rows: list[tuple[str, object]] = [("folder", data.run_dir.resolve())]
    if "task" in cfg:
        rows.append(("task", cfg["task"]))
    if "step" in last:
        total = cfg.get("total_steps")
        step = int(last["step"])
        rows.append(("step", f"{step} of {total} ({100 * step / total:.0f}%)"
                     if isinstance(total, int) and total > 0 else step))
    if "time" in last:
        rows.append(("last log row", time.strftime("%Y-%m-%d %H:%M:%S",
                                                   time.localtime(last["time"]))))
    for key in COUNTERS:
        counts = [r[key] for r in data.records if key in r]
        if counts:
            rows.append((key.replace("_", " "), int(counts[-1])))
    for p in data.files:
        rows.append((p.name, f"{p.stat().st_size / 1e6:.1f} MB"))
    rows.append(("page written", time.strftime("%Y-%m-%d %H:%M:%S")))
    notes = []
    if data.bad_lines:
        notes.append(f"{data.bad_lines} unreadable line(s) in {data.log.name} were "  # type: ignore[union-attr]
                     f"left out")
    if data.config_error:
        notes.append(data.config_error)
    return key_value_table(rows) + "".join(f"<p class=note>{esc(n)}</p>" for n in notes)


def _config_section(data: RunData) -> str:
    if data.config is None:
        return "<p class=muted>No configuration (config.json).</p>"
    return key_value_table((k, json.dumps(v) if not isinstance(v, str) else v)
                           for k, v in data.config.items())


def write_report(run_dir: str | Path) -> Path:
    """Write (or rewrite) ``RUN_DIR/report.html`` and its charts; returns the page's path.

    UsageError if ``run_dir`` is not a training run. Anything odd inside a run (a broken
    ``config.json``, a half-written log line) is shown on the page instead of raised.
    """
    data = load_run(run_dir)
    out = _Charts(data.run_dir)
    title = f"img2img run {data.run_dir.resolve().name}"
    sections = [("Losses", "losses", _loss_section(data, out)),
                ("Validation", "validation", _val_section(data, out)),
                ("Samples", "samples", _samples_section(data)),
                ("Throughput", "throughput", _throughput_section(data, out)),
                ("Configuration", "configuration", _config_section(data))]
    body = (f"<h1>{esc(title)}</h1>" + nav((name, "#" + anchor) for name, anchor, _ in sections)
            + _summary(data)
            + "".join(f'<h2 id="{anchor}">{name}</h2>{html}' for name, anchor, html in sections))
    return write_page(data.run_dir / REPORT_NAME, title, body)
