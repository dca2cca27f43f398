"""Line charts of a run's log as PNG bytes (matplotlib, the ``report`` extra).

matplotlib is imported only when a chart is drawn, and only its object-oriented API is used
(``matplotlib.figure.Figure`` renders PNG with the Agg canvas): no display, no pyplot state,
nothing changed for other code in the process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from img2img.extras import available as available_module
from img2img.extras import missing_message

INSTALL_HINT = missing_message("drawing charts", "report")
MAX_POINTS = 4000  # raw points drawn per line; the smoothed line uses every value


def available() -> bool:
    """True if matplotlib can be imported."""
    return available_module("matplotlib")


@dataclass
class Series:
    """One line: ``y`` against ``x``."""

    name: str
    x: list[float]
    y: list[float]


def ema(values: Sequence[float], window: float) -> list[float]:
    """Exponential moving average over about ``window`` values, debiased at the start (the
    first output is the first value, not a value pulled towards zero)."""
    alpha = 2.0 / (max(1.0, window) + 1.0)
    out: list[float] = []
    avg = weight = 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return out


def smoothing_window(n: int) -> float:
    """EMA window for ``n`` points: about 1/25 of the run, between 1 and 200 points."""
    return min(200.0, max(1.0, n / 25))


def wants_log_scale(series: Sequence[Series]) -> bool:
    """Log y when every value is positive and they span more than two decades."""
    values = [v for s in series for v in s.y]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def _thin(s: Series) -> tuple[list[float], list[float]]:
    step = max(1, len(s.x) // MAX_POINTS)
    return s.x[::step], s.y[::step]


def line_chart(title: str, series: Sequence[Series], ylabel: str = "", smooth: bool = True,
               xlabel: str = "step") -> bytes:
    """A PNG chart: each series faint as logged and, with ``smooth``, bold EMA-smoothed
    (:func:`smoothing_window`); log y when :func:`wants_log_scale`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(series))]
    for s, color in zip(series, colors, strict=True):
        x, y = _thin(s)
        single = len(s.x) == 1
        if smooth and len(s.y) > 2:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
            x_s, y_s = _thin(Series(s.name, s.x, ema(s.y, smoothing_window(len(s.y)))))
            ax.plot(x_s, y_s, color=color, linewidth=1.6, label=s.name)
        else:
            ax.plot(x, y, color=color, linewidth=1.6, label=s.name,
                    marker="o" if single or len(s.x) < 30 else None, markersize=3)
    if wants_log_scale(series):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize="small", ncols=min(4, len(series)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
