"""Ctrl-C (SIGINT) and SIGTERM during training: stop at the end of the step with a checkpoint.

Without this a Ctrl-C was a KeyboardInterrupt traceback from wherever the step was, and a
cluster's SIGTERM (a preempted job) ended the process at once: the work since the last periodic
checkpoint (5 minutes by default) was lost either way. The first signal now asks the run to stop
where a checkpoint can be written; a second one stops at once, as the signal would without this.
"""
from __future__ import annotations

import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """The run stopped on a stop signal (``signum``), its checkpoint saved; ``where``: at which
    step, in words. The message adds how to go on with train's command line (a study says its own)."""

    def __init__(self, signum: int, where: str, out):
        self.signum, self.where, self.out = signum, where, out
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}; its checkpoint is saved: "
                         f"go on with python -m training.train --out {out} --resume")

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process the signal ended (130, 143), so that a caller tells a
        stopped run from a finished one."""
        return 128 + self.signum


class StopRequests:
    """While entered: the first SIGINT / SIGTERM is recorded (``signum``) and the signals' earlier
    handlers are put back, so that the second acts as it would have (KeyboardInterrupt, or the
    default termination). Outside the main thread (a caller's own thread) signals cannot be
    handled there: nothing is installed and ``signum`` stays None."""

    def __init__(self):
        self.signum: int | None = None
        self._earlier: dict[int, object] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._earlier[signum] = signal.signal(signum, self._requested)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._earlier.items():
            signal.signal(signum, handler)
        self._earlier.clear()

    def _requested(self, signum: int, frame) -> None:
        self.signum = signum
        self._restore()
        # os.write: no lock a signal handler could find held (print, and tqdm's bar, take one)
        os.write(2, f"\ntraining: {signal.Signals(signum).name}: stopping at the end of this step with a "
                    f"checkpoint (send it again to stop at once, losing the work since the last checkpoint)\n"
                 .encode())
