"""``img2img report RUN_DIR``: (re)write a training run's report.html."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from img2img.commands.common import EXIT_OK, OneLineParser, add_debug, guarded


def report_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img report RUN_DIR``: (re)write the run's report.html."""
    p = OneLineParser(prog="img2img report",
                      description="Write RUN_DIR/report.html: loss and validation curves, the "
                                  "latest sample grids, the configuration and the throughput "
                                  "of a training run (charts need pip install "
                                  "'img2img[report]').")
    p.add_argument("run_dir", help="the --out folder of img2img train")
    add_debug(p)
    ns = p.parse_args(argv)
    return guarded(lambda: _report(ns.run_dir), ns.debug)


def _report(run_dir: str) -> int:
    from img2img.engine import charts
    from img2img.engine.report import write_report

    page = write_report(run_dir)
    if not charts.available():
        print(f"note: no charts on the page; {charts.INSTALL_HINT}", file=sys.stderr)
    print(f"wrote {page}")
    return EXIT_OK
