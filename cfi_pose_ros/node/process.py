"""Start the installed nodes as real processes (demo, benchmarks, tests)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

PACKAGE = "cfi_pose_ros"
LIFT_NODE = ("lift_node", "lift.yaml")        # (executable, its parameters file in share/config)
DETECT_NODE = ("detect_node", "detect.yaml")


def installed_paths(node: tuple[str, str] = LIFT_NODE) -> tuple[Path, Path]:
    """(executable, default params file) of ``node`` from the ament index of the install space."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    executable, config = node
    return (Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / executable,
            Path(get_package_share_directory(PACKAGE)) / "config" / config)


def node_command(node: tuple[str, str] = LIFT_NODE, params_file: str | Path | list | None = None,
                 overrides: dict | None = None, node_name: str | None = None,
                 namespace: str | None = None, ros_arguments: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The installed ``node``'s command line. ``params_file``: one file or several, applied in order
    (a later file's value wins, as launch_ros passes a node's ``parameters``); ``ros_arguments``
    after the others, as launch_ros passes a node's (``["--log-level", "warn"]``)."""
    executable, default_params = installed_paths(node)
    files = params_file if isinstance(params_file, (list, tuple)) else [params_file or default_params]
    command = [str(executable), "--ros-args"]
    for path in files:
        command += ["--params-file", str(path)]
    if node_name:
        command += ["-r", f"__node:={node_name}"]
    if namespace:
        command += ["-r", f"__ns:={namespace}"]
    for name, value in (overrides or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value == "":
            value = "''"     # YAML for the empty string; a bare `name:=` does not parse
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        command += ["-p", f"{name}:={value}"]
    return command + list(ros_arguments)


def start_node(node: tuple[str, str], params_file=None, overrides=None, log_path: str | Path | None = None,
               env: dict | None = None, node_name: str | None = None,
               namespace: str | None = None, ros_arguments: list[str] | tuple[str, ...] = ()) -> subprocess.Popen:
    """``node`` as a child process; stdout/stderr to ``log_path`` (or inherited).

    ``node_name`` renames it (a file's ``/**`` section, as in the shipped ones, still applies;
    a section named after the old name does not); ``overrides`` always apply. ``namespace`` (e.g.
    ``/robot1``) puts it in a namespace, as launch's ``namespace:=`` does."""
    out = open(log_path, "w") if log_path else None
    return subprocess.Popen(node_command(node, params_file, overrides, node_name, namespace, ros_arguments), stdout=out,
                            stderr=subprocess.STDOUT if out else None,
                            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def start_lift_node(params_file=None, overrides=None, log_path=None, env=None, node_name=None,
                    namespace=None) -> subprocess.Popen:
    return start_node(LIFT_NODE, params_file, overrides, log_path, env, node_name, namespace)


def start_detect_node(params_file=None, overrides=None, log_path=None, env=None, node_name=None,
                      namespace=None) -> subprocess.Popen:
    return start_node(DETECT_NODE, params_file, overrides, log_path, env, node_name, namespace)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (a clean rclpy shutdown), then, if it hangs, its threads' stacks to its log
    (``startup.STACKS_SIGNAL``) and SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_telling_where_it_was(process)
    return process.returncode


def kill_telling_where_it_was(process: subprocess.Popen) -> None:
    """SIGKILL a node process that does not stop, after asking it to write where each of its threads
    is (a hang leaves no other trace)."""
    from cfi_pose_ros.node.startup import STACKS_SIGNAL

    with contextlib.suppress(ProcessLookupError):
        process.send_signal(STACKS_SIGNAL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)       # the stacks are written at once; an exit meanwhile is fine
    if process.poll() is None:
        process.kill()
        process.wait()
