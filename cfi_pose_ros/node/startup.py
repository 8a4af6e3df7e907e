"""What a node's entry script does before its first heavy import (rclpy, numpy, torch: about 0.2 s)."""
import faulthandler
import os
import signal


# `kill -USR1 <pid>`: every thread's stack to the log, the process goes on (where is it stuck?)
STACKS_SIGNAL = signal.SIGUSR1


def tell_where_a_crash_happened() -> None:
    """A crash in native code (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL: a codec, the middleware, an
    inference library) writes every Python thread's stack to stderr, the node's log, before the
    process dies: without it a node ended with exit -11 and not a word, and the log's last lines
    could be lost in the C library's buffer. :data:`STACKS_SIGNAL` writes them without a crash."""
    faulthandler.enable(all_threads=True)
    faulthandler.register(STACKS_SIGNAL, all_threads=True)


def exit_quietly_on_stop_signals(tool: str | None = None) -> None:
    """Until :func:`cfi_pose_ros.node.base.run` installs its own handlers nothing exists to tear
    down: a SIGINT / SIGTERM (a launch's Ctrl-C right after start) ends the process at once with
    0, instead of a KeyboardInterrupt traceback from inside an import (exit -2, and a misleading
    "C extension is not present" ImportError from rclpy) or the default SIGTERM death (-15).

    A command-line tool (``tool``: its name, as ``play_bag``) is not a node stopped on request but
    a run cut short: it says so in one line and exits 128 + the signal's number (130, 143), as a
    shell reports a process a signal ended, so a caller can tell it from a finished run."""
    def leave(signum, frame):
        if tool:
            os.write(2, f"{tool}: interrupted\n".encode())
        os._exit(128 + signum if tool else 0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)
