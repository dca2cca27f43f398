"""Stopping a training run cleanly: signals become a flag read at the step boundary.

SIGINT (Ctrl-C) and SIGTERM (``kill``, batch schedulers, torchrun passing on its own
signal) do not interrupt a step half-way: :func:`stop_signals` records the first one, the
trainer finishes the step, saves, and raises :class:`Interrupted` (exit status 128 + the
signal number: 130, 143). A second signal while that happens raises :class:`Aborted`
at once (the last complete resume file stays: files are replaced atomically).

The data loader's worker processes ignore both signals (:func:`ignore_stop_signals`), so
a Ctrl-C, which reaches the whole process group, does not kill them under the trainer.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """The run stopped before its end after saving a resumable state; ``exit_code`` is
    what the command line returns."""

    exit_code = 1


class Interrupted(TrainingStopped):
    """Stopped by a signal at step ``step``, after saving."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"interrupted at step {step}: saved; continue with --resume")
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum


class BadImageStop(TrainingStopped):
    """``--on-bad-image stop``: an image failed after the start-up check (state saved)."""


class Aborted(KeyboardInterrupt):
    """A second stop signal: leave now, without another save."""


@dataclass
class StopRequest:
    """The first stop signal received (0: none)."""

    signum: int = 0

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT/SIGTERM set the yielded request's ``signum`` instead of
    killing the process; a second one raises :class:`Aborted`. Outside the main thread
    (where handlers cannot be installed) the request simply stays empty."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: object) -> None:
        if request.signum:
            raise Aborted(f"second {signal.Signals(signum).name}: stopped without saving")
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the data loader: its workers leave stopping to the trainer."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
