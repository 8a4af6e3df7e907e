"""cfi_pose_ros.interrupts: a stop signal that C code turned into its own exception, or that a
caller swallowed, still stops the tool; files written under ``stop_signals_held`` are all written."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from cfi_pose_ros.interrupts import StopSignalsInterrupt, interrupted_exit_code, stop_signals_held

STOP_SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


@STOP_SIGNALS
@pytest.mark.parametrize("swallowed_as", ["nothing", "an ImportError"])
def test_a_signal_swallowed_inside_the_block_is_raised_on_leaving_it(signum, swallowed_as):
    """numpy's import inside onnxruntime's reported a Ctrl-C as ImportError("import numpy failed"),
    which the export took for a missing onnxruntime: it went on to its end and exited 0."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt) as stopped:
        with StopSignalsInterrupt("tool"):
            try:
                signal.raise_signal(signum)     # its handler runs before this returns
                pytest.fail("the handler did not raise")
            except KeyboardInterrupt:
                if swallowed_as == "an ImportError":
                    raise ImportError("import numpy failed") from None
    assert interrupted_exit_code(stopped.value) == 128 + signum
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_leaving_the_block_without_a_signal_changes_nothing():
    with StopSignalsInterrupt("tool"):
        pass
    with pytest.raises(ValueError):
        with StopSignalsInterrupt("tool"):
            raise ValueError("the block's own error")


@STOP_SIGNALS
def test_a_second_signal_ends_the_process_at_once_in_one_line(signum):
    """The first signal's clean-up may hang (a library deaf to it): the second one ends the tool."""
    program = f"""
import os, signal, time
from cfi_pose_ros.interrupts import StopSignalsInterrupt
with StopSignalsInterrupt("tool"):
    try:
        os.kill(os.getpid(), {int(signum)})
        time.sleep(5)
    except KeyboardInterrupt:
        os.kill(os.getpid(), {int(signum)})     # the clean-up, interrupted again
        time.sleep(5)
print("not reached")
"""
    done = subprocess.run([sys.executable, "-P", "-c", program], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (128 + signum, "", "tool: interrupted\n")


def test_signals_during_held_writes_wait_for_them_and_then_raise():
    written = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        with StopSignalsInterrupt("tool"):
            with stop_signals_held():
                written.append("eval.md")
                signal.raise_signal(signal.SIGTERM)
                written.append("eval.json")
    assert written == ["eval.md", "eval.json"]
    assert interrupted_exit_code(stopped.value) == 128 + signal.SIGTERM
