"""What a node's entry script does before its first heavy import (rclpy, numpy, torch: about 0.2 s)."""
import os
import signal


def exit_quietly_on_stop_signals() -> None:
    """Until :func:`cfi_pose_ros.node.base.run` installs its own handlers nothing exists to tear
    down: a SIGINT / SIGTERM (a launch's Ctrl-C right after start) ends the process at once with
    0, instead of a KeyboardInterrupt traceback from inside an import (exit -2, and a misleading
    "C extension is not present" ImportError from rclpy) or the default SIGTERM death (-15)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(0))
