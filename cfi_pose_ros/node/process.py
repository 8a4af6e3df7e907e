"""Start the installed lifting node as a real process (demo, benchmarks, tests)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

PACKAGE = "cfi_pose_ros"


def installed_paths() -> tuple[Path, Path]:
    """(executable, default params file) from the ament index of the install space."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    executable = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / "lift_node"
    params = Path(get_package_share_directory(PACKAGE)) / "config" / "lift.yaml"
    return executable, params


def lift_node_command(params_file: str | Path | None = None, overrides: dict | None = None,
                      node_name: str | None = None) -> list[str]:
    executable, default_params = installed_paths()
    command = [str(executable), "--ros-args", "--params-file", str(params_file or default_params)]
    if node_name:
        command += ["-r", f"__node:={node_name}"]
    for name, value in (overrides or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value == "":
            value = "''"     # YAML for the empty string; a bare `name:=` does not parse
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        command += ["-p", f"{name}:={value}"]
    return command


def start_lift_node(params_file=None, overrides=None, log_path: str | Path | None = None,
                    env: dict | None = None) -> subprocess.Popen:
    """The node as a child process; stdout/stderr to ``log_path`` (or inherited)."""
    out = open(log_path, "w") if log_path else None
    return subprocess.Popen(lift_node_command(params_file, overrides), stdout=out,
                            stderr=subprocess.STDOUT if out else None,
                            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (a clean rclpy shutdown), then SIGKILL if it hangs."""
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
