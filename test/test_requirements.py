"""The dependency lists a user installs from (the README: `pip install -r requirements-runtime.txt`
in a ROS 2 workspace, `pip install .` without ROS) name what the library imports at run time.
onnxscript was missing from both: nothing else pulls it in (torch, onnx and onnxruntime do not
depend on it), yet torch.onnx.export(dynamo=True) needs it, so there `python -m
cfi_pose_ros.export` failed, `backend: onnxruntime` could not start and `auto` fell back to torch."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def runtime_requirements() -> set[str]:
    lines = (REPO / "requirements-runtime.txt").read_text().splitlines()
    return {_distribution(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def install_requires() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return {_distribution(value) for value in ast.literal_eval(node.value)}
    raise AssertionError("setup.py has no install_requires")


def test_the_onnx_export_needs_onnxscript(tmp_path):
    """What the lists below must cover: without onnxscript the export (and with it the
    onnxruntime backend and the export CLI) fails."""
    code = ("import sys; sys.modules['onnxscript'] = None\n"
            "from cfi_pose_ros.inference.onnx_export import ExportError, export_onnx\n"
            "from cfi_pose_ros.weights import DEFAULT_WEIGHTS\n"
            "w = DEFAULT_WEIGHTS.with_name('cfi_h36m_d128.safetensors')\n"
            "try:\n    export_onnx(str(w), sys.argv[1])\n"
            "except ExportError as exc:\n    print('export failed:', exc); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3 and "onnxscript" in done.stdout, done.stdout + done.stderr


def test_requirements_runtime_and_setup_name_every_runtime_dependency():
    needed = {"torch", "onnx", "onnxscript", "onnxruntime", "safetensors", "numpy", "scipy",
              "opencv-python-headless"}
    assert needed <= runtime_requirements(), needed - runtime_requirements()
    assert needed <= install_requires(), needed - install_requires()
