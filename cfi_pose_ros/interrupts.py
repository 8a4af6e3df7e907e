"""Stop signals (SIGINT: Ctrl-C; SIGTERM: systemd, docker stop, timeout, a launch) in the
package's processes, so that each ends in one line with the exit status a shell reports for a
process the signal ended (130, 143), never a KeyboardInterrupt traceback, and loses nothing.

* Before the heavy imports, a node or tool has nothing to tear down: it ends at once
  (:func:`exit_quietly_on_stop_signals`).
* A tool that writes files (``cfi_pose_ros.export``, ``training.evaluate``) stops where it is,
  cleaning up what it half wrote (:class:`StopSignalsInterrupt`), and writes a set of files all or
  none (:func:`stop_signals_held`). SIGTERM's default death ran no clean-up: the ONNX file's
  temporary copy was left beside the output.
* The nodes install their own handlers (:func:`cfi_pose_ros.node.base.run`), the trainer stops at
  the end of its step with a checkpoint (``training.stopping``).
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_quietly_on_stop_signals(tool: str | None = None) -> None:
    """Until :func:`cfi_pose_ros.node.base.run` installs its own handlers nothing exists to tear
    down: a SIGINT / SIGTERM (a launch's Ctrl-C right after start) ends the process at once with
    0, instead of a KeyboardInterrupt traceback from inside an import (exit -2, and a misleading
    "C extension is not present" ImportError from rclpy) or the default SIGTERM death (-15).

    A command-line tool (``tool``: its name, as ``play_bag``) is not a node stopped on request but
    a run cut short: it says so in one line and exits 128 + the signal's number (130, 143), as a
    shell reports a process a signal ended, so a caller can tell it from a finished run.

    A node also ends quietly on SIGHUP (its launch's terminal closed), unless it was started to
    ignore it (``nohup``), as it does once running (``cfi_pose_ros.node.base.node_stop_signals``):
    in these first 0.2-0.5 s SIGHUP's default death ended it (exit -1)."""
    hangup = () if tool or signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    for signum in STOP_SIGNALS + hangup:
        signal.signal(signum, lambda signum, frame: end_at_once(tool, signum))


def end_at_once(tool: str | None, signum: int) -> None:
    """End the process now, as :func:`exit_quietly_on_stop_signals` describes: a tool in one line
    and 128 + ``signum``, a node with 0. Nothing is torn down or flushed (os._exit)."""
    if tool:
        os.write(2, f"{tool}: interrupted\n".encode())
    os._exit(128 + signum if tool else 0)


class StopSignalsInterrupt:
    """While entered (in the main thread; elsewhere nothing is installed), the first SIGINT or
    SIGTERM raises ``KeyboardInterrupt(signum)`` where the main thread is, so that ``finally`` and
    ``except BaseException`` clean up (a temporary file is removed), and is remembered: C code turns
    the exception into its own (numpy's import inside onnxruntime's made it an ImportError, which
    sent the export on to its end, exit 0), so leaving the block raises it again in place of
    whatever came out, or of nothing. A second signal ends the process at once, in one line
    ("<tool>: interrupted", :func:`end_at_once`)."""

    def __init__(self, tool: str):
        self.tool = tool
        self.signum: int | None = None
        self._earlier: dict[int, object] = {}

    def __enter__(self) -> "StopSignalsInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._earlier = {signum: signal.signal(signum, self._received) for signum in STOP_SIGNALS}
        return self

    def _received(self, signum: int, frame) -> None:
        if self.signum is not None:
            end_at_once(self.tool, signum)
        self.signum = signum
        raise KeyboardInterrupt(signum)

    def __exit__(self, exc_type, exc, traceback) -> None:
        for signum, handler in self._earlier.items():
            signal.signal(signum, handler)
        self._earlier = {}
        if self.signum is not None and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(self.signum)


@contextmanager
def stop_signals_held():
    """SIGINT and SIGTERM wait until the block is done, then raise as ``StopSignalsInterrupt``
    has them raise: files written one after another are all written or none (eval.md without its
    eval.json). Recorded by a handler, not blocked: a process-directed signal blocked in the main
    thread is delivered to another (torch's OpenMP threads), and Python runs its handler anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    earlier = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
               for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in earlier.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt(received[0])


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise the KeyboardInterrupt ``exc`` was made from, if any: for an ``except Exception`` that
    takes what it catches for a failure. C code turns a KeyboardInterrupt raised while it runs
    into an exception of its own: a stop signal while pybind11 initialises a module (onnxruntime,
    tensorrt) is ``ImportError: initialization failed``, from the KeyboardInterrupt. A node's
    configure took that for a module that cannot be imported: it went on with a slower backend
    (auto), or failed with an ERROR about a sound install, instead of being aborted."""
    interrupt = interrupt_in(exc)
    if interrupt is not None:
        raise interrupt


def interrupt_in(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt ``exc`` is or was made from (its causes and contexts), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def interrupt_signal(interrupt: KeyboardInterrupt) -> signal.Signals:
    """The signal a KeyboardInterrupt stands for: its argument where one of the handlers here (or
    ``offline``'s) raised it, else SIGINT (Python's own)."""
    signum = interrupt.args[0] if interrupt.args and isinstance(interrupt.args[0], int) else signal.SIGINT
    return signal.Signals(signum)


def interrupted_exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    return 128 + interrupt_signal(interrupt)
