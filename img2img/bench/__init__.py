"""Measurement helpers behind ``tools/benchmark.py`` (and ``img2img benchmark``); they read
nothing from a checkout: inputs are generated, or taken from paths the caller passes.

- ``common``: result rows, timing, machine description, the table printer.
- ``ceiling``: the machine's own 3x3-convolution GFLOP/s per precision.
- ``train``: one training step of each task: time, FLOPs, fraction of the ceiling.
- ``translate``: folder translation end to end vs a plain per-image fp32 loop.
- ``sr``: tiled x4 super-resolution of a large image in a subprocess (time, peak RSS).
"""
