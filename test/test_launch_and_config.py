"""The launch file, config file and node parameters agree, and the launch file names what is installed.

`ros2 launch` itself is not installable here, so the launch file is read as
Python source: the executable, config file and parameter names it uses must
exist in the install space and in the node's parameter table.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

from cfi_pose_ros.node.parameters import LIFT_NODE_PARAMETERS, PARAMETERS_BY_NAME

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "lift.launch.py"


def launch_constants() -> dict:
    tree = ast.parse(LAUNCH.read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_config_file_lists_exactly_the_declared_parameters_with_their_defaults():
    config = yaml.safe_load((REPO / "config" / "lift.yaml").read_text())
    params = config[launch_constants()["NODE_NAME"]]["ros__parameters"]
    assert set(params) == set(PARAMETERS_BY_NAME)
    for spec in LIFT_NODE_PARAMETERS:
        assert params[spec.name] == spec.default, spec.name
        if spec.choices:
            assert params[spec.name] in spec.choices
        if spec.min_value is not None:
            assert spec.min_value <= params[spec.name] <= spec.max_value


def test_launch_arguments_override_parameters_that_exist():
    constants = launch_constants()
    assert set(constants["OVERRIDABLE_PARAMETERS"]) <= set(PARAMETERS_BY_NAME)
    for name, default in constants["OVERRIDABLE_PARAMETERS"].items():
        declared = PARAMETERS_BY_NAME[name].default
        assert str(declared).lower() == default.lower(), name
    assert constants["PACKAGE"] == "cfi_pose_ros"


def test_launch_file_refers_to_installed_executable_and_config(ros_env):
    from cfi_pose_ros.node.process import installed_paths

    constants = launch_constants()
    executable, params_file = installed_paths()
    assert executable.name == constants["EXECUTABLE"]
    assert executable.is_file() and os.access(executable, os.X_OK)
    assert params_file.name == constants["CONFIG_FILE"] and params_file.is_file()
    share = params_file.parent.parent
    assert (share / "launch" / LAUNCH.name).is_file()
    assert (share / "config" / "lift.rviz").is_file()


def test_launch_file_drives_the_lifecycle_to_active():
    source = LAUNCH.read_text()
    assert "TRANSITION_CONFIGURE" in source and "TRANSITION_ACTIVATE" in source
    assert "LifecycleNode(" in source and "goal_state=\"inactive\"" in source


@pytest.mark.parametrize("spec", LIFT_NODE_PARAMETERS, ids=lambda s: s.name)
def test_every_parameter_is_described(spec):
    assert len(spec.description) > 10
