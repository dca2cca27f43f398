"""The switch between PyTorch's direct convolutions and this package's faster CPU
algorithms (``winograd.Conv3x3``, ``polyphase.PhaseConv2d``), which compute the same
function with fewer or better-vectorised multiply-adds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_fast = True


def fast_enabled() -> bool:
    """False inside :func:`direct`."""
    return _fast


@contextlib.contextmanager
def direct() -> Iterator[None]:
    """Within this block every convolution is PyTorch's own (for FLOP counts, baselines
    and comparisons)."""
    global _fast
    saved, _fast = _fast, False
    try:
        yield
    finally:
        _fast = saved
