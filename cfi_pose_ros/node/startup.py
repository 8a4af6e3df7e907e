"""What a node's entry script does before its first heavy import (rclpy, numpy, torch: about 0.2 s)."""
import os
import signal


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
