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


# What a ROS 2 install provides (rosdep keys in package.xml), and what only NVIDIA's GPU stack does.
ROS_MODULES = {"rclpy", "ament_index_python", "rcl_interfaces", "rosidl_parser", "cv_bridge", "tf2_ros", "launch",
               "launch_ros"}
GPU_MODULES = {"tensorrt"}
# module -> the distribution that installs it, where the names differ or another one brings it along
DISTRIBUTION_OF = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "PIL": "matplotlib",
                   "mpl_toolkits": "matplotlib", "lz4": "mcap", "zstandard": "mcap"}


def imported_distributions() -> set[str]:
    """The third-party distributions the package's modules import (at the top or inside functions),
    besides ROS 2's own and the GPU stack's."""
    modules = set()
    for path in (REPO / "cfi_pose_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = {m for m in modules - sys.stdlib_module_names - ROS_MODULES - GPU_MODULES - {"cfi_pose_ros"}
                   if not m.endswith(("_msgs", "_srvs"))}
    return {DISTRIBUTION_OF.get(m, m).lower() for m in third_party}


def test_requirements_runtime_and_setup_name_every_runtime_dependency():
    """The bag tools, offline lifting and rendering need mcap, tqdm and matplotlib: a ROS workspace
    set up as the README says (rosdep, then requirements-runtime.txt) had none of them, and
    `python -m cfi_pose_ros.bag info` ended in ModuleNotFoundError."""
    needed = imported_distributions() | {"onnxscript"}      # onnxscript: torch.onnx.export's, above
    assert {"torch", "onnxruntime", "mcap", "tqdm", "matplotlib", "opencv-python-headless"} <= needed
    assert needed <= runtime_requirements(), needed - runtime_requirements()
    assert needed <= install_requires(), needed - install_requires()


# ROS module -> its package's name in package.xml, where they differ; cv_bridge is optional (the
# detector converts images without it, package.xml says so in a comment)
ROS_PACKAGE_OF = {"tf2_ros": "tf2_ros_py"}
OPTIONAL_ROS_MODULES = {"cv_bridge"}


def test_package_xml_names_every_ros_package_imported():
    """rosdep installs what package.xml names: play_bag's --clock imports rosgraph_msgs, which it
    did not name (present only as rclpy's own dependency)."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(REPO / "package.xml").getroot()
    declared = {element.text.strip() for tag in ("depend", "exec_depend") for element in root.iter(tag)}
    modules = set()
    for path in [*(REPO / "cfi_pose_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    ros = {m for m in modules if m in ROS_MODULES or m.endswith(("_msgs", "_srvs"))} - OPTIONAL_ROS_MODULES
    assert {"rclpy", "sensor_msgs", "rosgraph_msgs"} <= ros
    needed = {ROS_PACKAGE_OF.get(m, m) for m in ros}
    assert needed <= declared, needed - declared
