"""The launch file, config files and node parameters agree, and the launch file names what is installed.

Both nodes: the lifter (config/lift.yaml, parameters.py) and the 2D detector
started with input:=image (config/detect.yaml, detect_parameters.py).

`ros2 launch` itself is not installable here, so the launch file is read as
Python source (the executable, config file and parameter names it uses must
exist in the install space and in the node's parameter table) and run against
fakes of the launch API (test/fake_launch_api.py) to check the lifecycle events
it wires up.
"""
from __future__ import annotations

import ast
import contextlib
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from cfi_pose_ros.node.detect_parameters import (DETECT_NODE_PARAMETERS, DETECT_PARAMETERS_BY_NAME,
                                                 DETECT_YAML_HEADER, detector_config, tracker_config)
from cfi_pose_ros.node.parameters import (LIFT_NODE_PARAMETERS, LIFT_YAML_HEADER, PARAMETERS_BY_NAME,
                                          lifter_options, PARAMS_FILE_SECTION, parameter_problem, parameters_yaml)
from cfi_pose_ros.params_file import read_params_file
import fake_launch_api as fake_launch
from fake_launch_api import run_launch_file

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


def check_config_file(name: str, node_name: str, specs, header: str) -> None:
    """``config/<name>`` is exactly what ``parameters_yaml`` writes for ``specs``: one section for
    ``node_name`` with every declared parameter at its default, of its type, in its range."""
    text = (REPO / "config" / name).read_text()
    assert text == parameters_yaml(node_name, specs, header), f"config/{name} is stale: regenerate it"
    config = yaml.safe_load(text)
    assert set(config) == {PARAMS_FILE_SECTION}
    params = config[PARAMS_FILE_SECTION]["ros__parameters"]
    assert set(params) == {spec.name for spec in specs}
    assert read_params_file(REPO / "config" / name, node_name) == params     # what the offline CLI reads
    for spec in specs:
        assert params[spec.name] == spec.default, spec.name
        assert type(params[spec.name]) is type(spec.default), spec.name   # ROS types parameters by value
        if spec.choices:
            assert params[spec.name] in spec.choices
        if spec.min_value is not None:
            assert spec.min_value <= params[spec.name] <= spec.max_value


def test_config_file_lists_exactly_the_declared_parameters_with_their_defaults():
    check_config_file("lift.yaml", launch_constants()["NODE_NAME"], LIFT_NODE_PARAMETERS, LIFT_YAML_HEADER)


ROS_TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string"}


def test_launch_arguments_override_parameters_that_exist():
    constants = launch_constants()
    assert set(constants["OVERRIDABLE_PARAMETERS"]) <= set(PARAMETERS_BY_NAME)
    for name, ros_type in constants["OVERRIDABLE_PARAMETERS"].items():
        assert ROS_TYPE_NAMES[type(PARAMETERS_BY_NAME[name].default)] == ros_type, name
    assert constants["PACKAGE"] == "cfi_pose_ros"
    assert constants["DEFAULT_INPUT_TOPIC"] == PARAMETERS_BY_NAME["input_topic"].default
    assert "flip_test" in constants["OVERRIDABLE_PARAMETERS"]       # ros2 launch ... flip_test:=true
    assert "body_size_prior" in constants["OVERRIDABLE_PARAMETERS"]  # children or tall adults: set at launch
    assert "keypoints_image" in constants["OVERRIDABLE_PARAMETERS"]  # keypoints_image:=rectified with image_rect


def _launch_parameters(node_name: str, given: dict) -> tuple[list, Path, dict]:
    """The node's ``parameters`` as the launch file passes them, the launch-time file among them and
    its ``ros__parameters``, under ``ros2 launch ... <given>`` (every other declared argument at its
    default, as launch sets it; the package's share directory is this checkout)."""
    with pytest.MonkeyPatch.context() as patch:        # the fakes only while the launch file runs
        description = run_launch_file(LAUNCH, patch, share_dir=str(REPO))
        configurations = {e.args[0]: e.kwargs["default_value"] for e in description.entities
                          if isinstance(e, fake_launch.DeclareLaunchArgument)} | given
        node = next(e for e in description.entities if isinstance(e, fake_launch.LifecycleNode)
                    and e.kwargs["name"] == launch_constants()[node_name])
        parameters = node.kwargs["parameters"]
        path = Path(parameters[-1].perform(fake_launch.LaunchContext(launch_configurations=configurations)))
    return parameters, path, yaml.safe_load(path.read_text())[PARAMS_FILE_SECTION]["ros__parameters"]


@pytest.mark.parametrize("node_name, overridable, declared", [
    ("NODE_NAME", "OVERRIDABLE_PARAMETERS", PARAMETERS_BY_NAME),
    ("DETECTOR_NODE_NAME", "DETECTOR_OVERRIDABLE_PARAMETERS", DETECT_PARAMETERS_BY_NAME)])
def test_launch_arguments_reach_the_node_as_their_parameter_type(node_name, overridable, declared):
    """`ros2 launch ... body_size_prior:=1` must arrive as a double, `compressed:=True` as a boolean and
    `weights:=true` as a string: the node refuses a parameter of another type than its declared one.
    The parameters file comes first, the given arguments after it (launch_ros: the later wins)."""
    names = launch_constants()[overridable]
    text = {bool: "True", float: "1", str: "true"}
    given = {name: text[type(declared[name].default)] for name in names}
    parameters, _, values = _launch_parameters(node_name, given)
    assert isinstance(parameters[0], fake_launch.Recorded) and parameters[0].args[0].endswith("params_file")
    assert values["autostart"] is False         # the launch file drives the lifecycle
    for name in names:
        assert type(values[name]) is type(declared[name].default), name
    name = next(n for n, ros_type in names.items() if ros_type == "bool")
    with pytest.raises(ValueError, match=f"launch argument {name}:='yes please'"):
        _launch_parameters(node_name, {name: "yes please"})


@pytest.mark.parametrize("node_name", ["NODE_NAME", "DETECTOR_NODE_NAME"])
def test_use_sim_time_reaches_both_nodes_as_a_boolean(node_name):
    """`ros2 launch cfi_pose_ros lift.launch.py use_sim_time:=true` beside `ros2 bag play --clock`: an
    undeclared launch argument would be ignored without a word and the nodes stay on wall time."""
    assert _launch_parameters(node_name, {"use_sim_time": "true"})[2]["use_sim_time"] is True
    assert "use_sim_time" not in _launch_parameters(node_name, {})[2]


def test_launch_arguments_not_given_leave_the_parameters_file_alone():
    """Only the arguments given reach the launch-time file; the others keep params_file's values."""
    _, _, values = _launch_parameters("NODE_NAME", {"body_size_prior": "0.8"})
    assert values == {"body_size_prior": 0.8, "autostart": False}


def test_tf_prefix_is_a_launch_argument_that_reaches_the_node(ros_env, tmp_path):
    """`ros2 launch cfi_pose_ros lift.launch.py namespace:=left tf_prefix:=left_`: two cameras'
    lifters publish their people's TF frames apart (the detector's ids start at 1 in each) without a
    parameters file of their own each. It was no launch argument: launch took `tf_prefix:=left_`
    without a word and the node kept `body_`."""
    from cfi_pose_ros.node.process import LIFT_NODE, installed_paths

    with pytest.MonkeyPatch.context() as patch:
        declared = {e.args[0] for e in run_launch_file(LAUNCH, patch, share_dir=str(REPO)).entities
                    if isinstance(e, fake_launch.DeclareLaunchArgument)}
    assert "tf_prefix" in declared
    _, launch_file, values = _launch_parameters("NODE_NAME", {"tf_prefix": "left_"})
    assert values == {"tf_prefix": "left_", "autostart": False}
    reported = _parameters_reported(tmp_path, LIFT_NODE, launch_constants()["NODE_NAME"], f"/left{os.getpid()}",
                                    [installed_paths(LIFT_NODE)[1], launch_file], ["tf_prefix"])
    assert reported == ["left_"]



def test_a_launch_argument_given_empty_sets_the_parameter_empty_and_one_left_out_keeps_the_file(ros_env, tmp_path):
    """`ros2 launch ... params_file:=robot.yaml target_frame:=` (robot.yaml naming base_link): the
    arguments defaulted to "" and "" meant not given, so the explicit empty value was dropped without
    a word and the poses stayed in base_link. Empty is a value of target_frame (the input's frame),
    tf_prefix, weights and the model paths; a boolean or a number given empty is refused by name."""
    from cfi_pose_ros.node.process import LIFT_NODE

    robot = tmp_path / "robot.yaml"
    robot.write_text("/**:\n  ros__parameters:\n    target_frame: base_link\n    tf_prefix: robot_\n"
                     "    target_from_camera: [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]\n")
    _, launch_file, values = _launch_parameters("NODE_NAME", {"params_file": str(robot), "target_frame": ""})
    assert values == {"target_frame": "", "autostart": False}
    reported = _parameters_reported(tmp_path, LIFT_NODE, launch_constants()["NODE_NAME"], f"/empty{os.getpid()}",
                                    [robot, launch_file], ["target_frame", "tf_prefix"])
    assert reported == ["", "robot_"]           # given empty: empty; left out: the file's
    assert _launch_parameters("DETECTOR_NODE_NAME", {"keypoint_model": ""})[2]["keypoint_model"] == ""
    for name, expected in [("flip_test", "expected true or false"), ("body_size_prior", "expected a number"),
                           ("use_sim_time", "expected true or false")]:
        with pytest.raises(ValueError, match=f"launch argument {name}:='': {expected}"):
            _launch_parameters("NODE_NAME", {name: ""})


def test_a_number_argument_is_read_as_rcl_reads_a_number(ros_env):
    """`body_size_prior:=0_8` (a typo of 0.8) reached the node as 8.0, ten times the body size:
    Python's float() reads digit separators, `nan` and `1e400` (infinity). A number argument is read
    as rcl reads `-p body_size_prior:=...` (and every value of a parameters file); what rcl reads as
    no finite number is refused by name."""
    import rclpy
    from rclpy.node import Node

    def rcl_reading(text):
        context = rclpy.Context()
        rclpy.init(args=["--ros-args", "-p", f"v:={text}"], context=context)
        try:
            node = Node("typed", context=context)
            value = node._parameter_overrides["v"].value
            node.destroy_node()
            return value
        finally:
            rclpy.shutdown(context=context)

    for text in ["0.8", "1", "-.5", "1e-3", "+2.", "012", "08"]:
        prior = _launch_parameters("NODE_NAME", {"body_size_prior": text})[2]["body_size_prior"]
        assert isinstance(prior, float) and prior == rcl_reading(text), text
    for text in ["0_8", "1_000", "nan", ".inf", "-inf", "1e400", "0.8m", "[0.8]", "true", "~"]:
        rcl = rcl_reading(text)
        assert isinstance(rcl, (str, bool, list)) or not math.isfinite(rcl), (text, rcl)
        with pytest.raises(ValueError, match=re.escape(f"launch argument body_size_prior:={text!r}: expected a number")):
            _launch_parameters("NODE_NAME", {"body_size_prior": text})


@pytest.mark.parametrize("node_name, argument", [("NODE_NAME", "params_file"),
                                                 ("DETECTOR_NODE_NAME", "detector_params_file")])
@pytest.mark.parametrize("kind", ["missing", "empty", "directory"])
def test_a_parameters_file_argument_that_names_no_file_is_refused_by_name(tmp_path, node_name, argument, kind):
    """`ros2 launch ... params_file:=my_lfit.yaml` (a typo), `params_file:=` or a directory: launch_ros
    passes a parameters file that is no file with only a WARNING ("Parameter file path is not a
    file", launch_ros/descriptions/node.py: `continue`) and starts the node without it, so the lifter
    ran on its defaults, none of the user's target_frame, topics or weights. Refused by name at launch,
    as a wrongly typed argument is."""
    path = {"missing": str(tmp_path / "my_lfit.yaml"), "empty": "", "directory": str(tmp_path)}[kind]
    with pytest.raises(ValueError, match=f"launch argument {argument}:={path!r}: no such file"):
        _launch_parameters(node_name, {argument: path})
    users = tmp_path / "my_lift.yaml"           # the same argument naming a file is taken
    users.write_text("/**:\n  ros__parameters:\n    tf_prefix: robot_\n")
    assert _launch_parameters(node_name, {argument: str(users)})[2] == {"autostart": False} | (
        {"keypoints_topic": "human_keypoints_2d"} if argument == "detector_params_file" else {})


def test_a_section_given_twice_in_a_parameters_file_is_read_as_rcl_merges_it(ros_env, tmp_path):
    """A /** section appended to a copy of config/lift.yaml (use_sim_time), or lift.yaml and
    detect.yaml concatenated: rcl merges the two where the name first stands, the later values
    winning. The reader the launch file and offline use kept only the last section: the detector
    was wired to the default topic, not the file's input_topic, without a word."""
    from cfi_pose_ros.node.process import LIFT_NODE

    node_name = launch_constants()["NODE_NAME"]
    robot = tmp_path / "robot.yaml"
    robot.write_text((REPO / "config" / "lift.yaml").read_text().replace('input_topic: "human_keypoints_2d"',
                                                                       'input_topic: "/people_2d"')
                     + "/**:\n  ros__parameters:\n    use_sim_time: true\n    tf_prefix: robot_\n")
    read = read_params_file(robot, node_name)
    assert (read["input_topic"], read["tf_prefix"], read["target_frame"]) == ("/people_2d", "robot_", "")
    reported = _parameters_reported(tmp_path, LIFT_NODE, node_name, f"/twice{os.getpid()}", [robot],
                                    ["input_topic", "tf_prefix", "use_sim_time"])
    assert reported == ["/people_2d", "robot_", True]          # rcl's reading, for comparison


def _rcl_reading(path):
    """What rcl gives the node /robot1/cfi_pose_lifter from the parameters file ``path`` (rclpy
    parsing it: ``{name: value}``), or "refused"."""
    import rclpy
    from rclpy.node import Node

    context = rclpy.Context()
    try:
        rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    except Exception:       # noqa: BLE001 - rcl refuses the file
        return "refused"
    try:
        node = Node("cfi_pose_lifter", namespace="/robot1", context=context)
        overrides = {name: override.value for name, override in node._parameter_overrides.items()}
        node.destroy_node()
        return {name: value.tolist() if hasattr(value, "tolist") else value for name, value in overrides.items()}
    finally:
        rclpy.shutdown(context=context)


def test_values_are_typed_and_refused_as_rcl_does(ros_env, tmp_path):
    """The reader the launch file and offline use, against rcl itself (rclpy parsing the same file):
    1e400 (strtod overflows) is a string and an integer beyond int64 a double there, where they were
    inf and a Python int here; arrays of mixed types and node names rcl refuses were taken (a
    trailing slash was even applied); an empty array is no value there, an empty list here."""
    def rcl_reading(path):
        overrides = _rcl_reading(path)
        return overrides if overrides == "refused" else overrides.get("v")

    def our_reading(path):
        try:
            return read_params_file(path, "robot1/cfi_pose_lifter").get("v")
        except ValueError:
            return "refused"

    files = [f"/**:\n  ros__parameters:\n    v: {text}\n" for text in [
        "1e400", "99999999999999999999", "-9223372036854775808", "[1, 2.0]", "[a, 1]", "[]",
        "[1, 2]", "0x1F", "012", "08", "1e3", "-.5", "y", "[true, no]", ".inf"]]
    files += [f"{name}:\n  ros__parameters:\n    v: 1\n" for name in [
        "/robot1/cfi_pose_lifter/", "robot1//cfi_pose_lifter", "/robot1/cfi_*", "/robot1/1st", "/robot1/cfi_pose_lifter",
        "robot1/*", "/**/cfi_pose_lifter"]]
    for k, text in enumerate(files):
        path = tmp_path / f"values{k}.yaml"
        path.write_text(text)
        ours, rcl = our_reading(path), rcl_reading(path)
        assert (type(ours), ours) == (type(rcl), rcl) or (ours != ours and rcl != rcl), (text, ours, rcl)


@pytest.mark.parametrize("text, refusal, rcl", [
    ("? [a, b]\n: 1\n", "a list as a key", "refused"),
    ("? {a: 1}\n: 1\n", "a mapping as a key", "refused"),
    ("/**:\n  ros__parameters:\n    ? [v]\n    : 5\n", "a list as a key", "refused"),
    ("/**:\n  ros__parameters:\n    v: [[1], [2]]\n", "parameter v is an array of arrays", "refused"),
    ("/**:\n  ros__parameters:\n    v: [{a: 1}]\n", "parameter v is an array of mappings", {"v.a": [1]}),
    ("/**:\n  ros__parameters:\n    v: [[1]]\n", "parameter v is an array of arrays", {"v": [1]}),
], ids=["list_key", "mapping_key", "list_key_in_parameters", "array_of_arrays", "array_of_mappings", "array_of_one_array"])
def test_a_key_or_array_no_ros_parameter_has_is_refused_in_words(ros_env, tmp_path, text, refusal, rcl):
    """A list or mapping as a key ended the offline CLI (and the launch file) in a TypeError
    traceback (unhashable type: 'list'), an array of mappings or of arrays in an IndexError from the
    parameter check. rcl refuses some of these files and misreads the others (``v: [{a: 1}]`` is a
    parameter ``v.a``): a line saying which parameter and why, here."""
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert _rcl_reading(path) == rcl
    with pytest.raises(ValueError, match=f"^{path}: .*{refusal}"):
        read_params_file(path, "robot1/cfi_pose_lifter")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_params_file_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    """--params-file naming a FIFO hung the offline CLI in open(), waiting for a writer, and one
    SIGTERM did not end it; /dev/zero was parsed to its first byte, a directory was an OSError."""
    from conftest import no_longer_than

    path = {"fifo": tmp_path / "lift.yaml", "directory": tmp_path, "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    words = {"fifo": "a FIFO", "directory": "a directory", "device": "a device or socket"}[kind]
    with no_longer_than(20, f"reading the {kind} {path}"), pytest.raises(
            ValueError, match=f"^{path}: {words}, not a parameters file$"):
        read_params_file(path, "cfi_pose_lifter")


@pytest.mark.parametrize("declared, value, expected", [
    ("", [{"a": 1}], "expected a string, got an array of mappings"),
    ([0], [[1], [2]], "expected an array of integers, got an array of arrays"),
    ([0.5], [None], "expected an array of doubles, got an array of NoneType values"),
    ([0.5], [1, 2], "expected an array of doubles, got an array of integers (write [1.0, 2.0])"),
])
def test_a_value_of_any_element_type_is_named_in_words(declared, value, expected):
    """An array of mappings or of arrays (a parameters file's `weights: [{a: 1}]`) ended in an
    IndexError inside the check that was to name its type."""
    from cfi_pose_ros.node.parameters import type_problem

    assert type_problem(declared, value) == expected


@pytest.mark.parametrize("node_name, name", [("NODE_NAME", "target_frame"), ("NODE_NAME", "tf_prefix"),
                                             ("NODE_NAME", "weights"), ("DETECTOR_NODE_NAME", "keypoint_model")])
def test_string_launch_arguments_stay_strings_for_rcl(node_name, name):
    """`ros2 launch cfi_pose_ros lift.launch.py target_frame:=08` (or `tf_prefix:=y`, `1e3`, `nan`):
    the launch-time file wrote them bare (PyYAML quotes only what YAML 1.1 reads as another type),
    rcl read 08 and 1e3 as doubles and y as true, and the node refused to start: `parameter
    target_frame=8.0: expected a string, got a double`. Read back here as rcl types a file."""
    from cfi_pose_ros.params_file import read_params_file

    for text in ("08", "09", "1e3", "nan", ".inf", "y", "N", "0x1p3", "~", "null", "true", "it's", "a: b", "'"):
        _, path, _ = _launch_parameters(node_name, {name: text})
        assert read_params_file(path, launch_constants()[node_name])[name] == text


def test_frame_names_rcl_would_read_as_a_number_or_a_bool_reach_the_real_node(ros_env, tmp_path):
    """The same through rcl itself: the node started on the launch-time file reports the strings."""
    from cfi_pose_ros.node.process import LIFT_NODE, installed_paths

    _, launch_file, _ = _launch_parameters("NODE_NAME", {"target_frame": "08", "tf_prefix": "y"})
    reported = _parameters_reported(tmp_path, LIFT_NODE, launch_constants()["NODE_NAME"], f"/typed{os.getpid()}",
                                    [installed_paths(LIFT_NODE)[1], launch_file], ["target_frame", "tf_prefix"])
    assert reported == ["08", "y"]


def test_the_launch_time_parameters_file_is_removed_when_launch_exits(monkeypatch):
    """`ros2 launch` writes the given arguments into a file in /tmp for each node; the launch process
    removes it when it exits (it was left behind, one more file per launch of a robot's lifetime)."""
    import atexit

    at_exit = []
    monkeypatch.setattr(atexit, "register", lambda function, *args: at_exit.append((function, args)))
    _, path, _ = _launch_parameters("NODE_NAME", {"body_size_prior": "0.8"})
    assert path.exists()        # the node reads it when it starts, after perform
    for function, args in at_exit:
        function(*args)
    assert not path.exists()


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


@pytest.mark.parametrize("node, args, status, expected", [
    ("lift_node", ["--help"], 0, "usage: lift_node [--ros-args"),
    ("detect_node", ["-h"], 0, "config/detect.yaml"),
    ("lift_node", ["--weights", "x.safetensors", "--ros-args", "-p", "autostart:=true"], 1,
     "cannot start: '--weights x.safetensors' is no ROS argument: the node's parameters go after --ros-args"),
])
def test_a_node_executable_answers_help_and_refuses_arguments_outside_ros_args(ros_env, node, args, status,
                                                                               expected):
    """rcl hands arguments outside --ros-args on unread: `ros2 run cfi_pose_ros lift_node --help` started
    the node, and `--weights x` was dropped without a word (the node ran on its default weights)."""
    from cfi_pose_ros.node.process import installed_paths

    executable = installed_paths()[0].parent / node
    run = subprocess.run([str(executable), *args], env=ros_env, capture_output=True, text=True, timeout=60)
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == status and expected in output and "Traceback" not in output, output
    assert len(output.splitlines()) == (3 if status == 0 else 1), output      # the usage, or one line


def test_the_rviz_config_takes_the_markers_as_the_node_sends_them(ros_env):
    """lift.rviz subscribed with depth 1: RViz takes messages at its frame rate, so of two arrays that
    came between two of its updates one was lost, and with it the DELETEs of people who had left
    (each sent once): their skeletons stayed beside the others'. Its queue is the node's output
    history, and its reliability matches the node's default output_reliability."""
    from cfi_pose_ros.node.base import output_qos

    config = yaml.safe_load((REPO / "config" / "lift.rviz").read_text())
    (display,) = [d for d in config["Visualization Manager"]["Displays"]
                  if d["Class"] == "rviz_default_plugins/MarkerArray"]
    topic = display["Topic"]
    assert topic["Value"] == "/" + PARAMETERS_BY_NAME["markers_topic"].default
    assert topic["Depth"] >= output_qos("reliable").depth, topic
    assert topic["Reliability Policy"].lower().replace(" ", "_") == PARAMETERS_BY_NAME["output_reliability"].default


def _rviz_action_and_config(given: dict) -> tuple:
    """The RViz action of the launch file and the config it gives rviz2 under `ros2 launch ... <given>`."""
    with pytest.MonkeyPatch.context() as patch:
        description = run_launch_file(LAUNCH, patch, share_dir=str(REPO))
        configurations = {e.args[0]: e.kwargs["default_value"] for e in description.entities
                          if isinstance(e, fake_launch.DeclareLaunchArgument)} | given
        (rviz,) = [e for e in description.entities if isinstance(e, fake_launch.Node)]
        option, config_file = rviz.kwargs["arguments"]
        assert option == "-d"
        path = Path(config_file.perform(fake_launch.LaunchContext(launch_configurations=configurations)))
    return rviz, configurations, yaml.safe_load(path.read_text())


def _rviz_shows(config: dict) -> tuple[str, str, str]:
    """The markers topic, its reliability and the fixed frame of an RViz config."""
    manager = config["Visualization Manager"]
    (display,) = [d for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/MarkerArray"]
    return display["Topic"]["Value"], display["Topic"]["Reliability Policy"], manager["Global Options"]["Fixed Frame"]


def test_rviz_starts_only_when_asked_with_the_shipped_config():
    """`ros2 launch cfi_pose_ros lift.launch.py rviz:=true`: rviz2 with config/lift.rviz, in the nodes'
    namespace; not started by default (a robot has no display)."""
    rviz, configurations, config = _rviz_action_and_config({})
    assert (rviz.kwargs["package"], rviz.kwargs["executable"]) == ("rviz2", "rviz2")
    condition = rviz.kwargs["condition"]
    assert isinstance(condition, fake_launch.Recorded) and condition.args[0].args == ("rviz",)
    assert configurations["rviz"] == "false"
    assert rviz.kwargs["namespace"].args == ("namespace",)
    # with the shipped parameters the config is the shipped one, unchanged
    assert config == yaml.safe_load((REPO / "config" / "lift.rviz").read_text())


def test_rviz_shows_the_markers_where_this_launchs_lifter_sends_them(tmp_path):
    """The shipped lift.rviz subscribes to /human_pose_3d/markers, reliably, in camera_optical_frame.
    Under namespace:=cam_left, or with a params_file that sets another markers topic,
    output_reliability: best_effort or target_frame: odom, RViz showed nothing, saying only that no
    messages came or that the frame did not exist. The launch file writes the config for the lifter."""
    default_topic = "/" + PARAMETERS_BY_NAME["markers_topic"].default
    assert _rviz_shows(_rviz_action_and_config({})[2]) == (default_topic, "Reliable", "camera_optical_frame")
    assert _rviz_shows(_rviz_action_and_config({"namespace": "cam_left"})[2]) == (
        "/cam_left" + default_topic, "Reliable", "camera_optical_frame")
    robot = tmp_path / "robot.yaml"
    robot.write_text("/**:\n  ros__parameters:\n    markers_topic: ~/skeletons\n"
                     "    output_reliability: best_effort\n    target_frame: odom\n")
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(robot)})[2]) == (
        "/cfi_pose_lifter/skeletons", "Best Effort", "odom")
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(robot), "namespace": "left"})[2])[0] == \
        "/left/cfi_pose_lifter/skeletons"
    # the launch arguments as the lifter gets them: target_frame:= given wins over the file, and given
    # empty puts the poses in the input's frame, which only the input names; rviz_fixed_frame:= wins
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(robot), "target_frame": "map"})[2])[2] == "map"
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(robot), "target_frame": ""})[2])[2] == \
        "camera_optical_frame"
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(robot), "rviz_fixed_frame": "world"})[2])[2] == \
        "world"
    # a section for another node is not the lifter's
    other = tmp_path / "other.yaml"
    other.write_text("cfi_pose_detector:\n  ros__parameters:\n    markers_topic: /not_the_lifters\n")
    assert _rviz_shows(_rviz_action_and_config({"params_file": str(other)})[2])[0] == default_topic


def _lifecycle_wiring(monkeypatch):
    """The launch file run against fakes of the launch API: its LifecycleNodes (by name), the events it
    emits at start and its registered OnStateTransition handlers."""
    description = run_launch_file(LAUNCH, monkeypatch)
    nodes = {e.kwargs["name"]: e for e in description.entities if isinstance(e, fake_launch.LifecycleNode)}
    emitted = [e for e in description.entities if isinstance(e, fake_launch.EmitEvent)]
    handlers = [e.event_handler for e in description.entities if isinstance(e, fake_launch.RegisterEventHandler)
                and isinstance(e.event_handler, fake_launch.OnStateTransition)]
    return nodes, emitted, handlers


def _transitions_emitted(handlers, node, events) -> list[list[int]]:
    """For each (start_state, goal_state) event of ``node``, the lifecycle transitions the handlers request."""
    out = []
    for start, goal in events:
        event = fake_launch.StateTransition(action=node, start_state=start, goal_state=goal)
        out.append([entity.event.transition_id for handler in handlers for entity in handler.handle(event)
                    if entity.event.kwargs["lifecycle_node_matcher"] == ("matches_action", node)])
    return out


@pytest.mark.parametrize("node_name", ["NODE_NAME", "DETECTOR_NODE_NAME"])
def test_launch_file_activates_once_after_the_first_configure_and_leaves_later_transitions_alone(
        monkeypatch, node_name):
    """configure at start, activate when configuring ends in inactive; a manual deactivate (which
    also ends in inactive), a failed activation, or a manual cleanup + configure must not be undone."""
    configure, activate = 1, 3          # lifecycle_msgs/msg/Transition ids
    nodes, emitted, handlers = _lifecycle_wiring(monkeypatch)
    node = nodes[launch_constants()[node_name]]
    assert [e.event.transition_id for e in emitted
            if e.event.kwargs["lifecycle_node_matcher"] == ("matches_action", node)] == [configure]
    lifecycle = [("unconfigured", "configuring"), ("configuring", "inactive"),      # launch's configure
                 ("inactive", "activating"), ("activating", "active"),             # launch's activate
                 ("active", "deactivating"), ("deactivating", "inactive"),         # ros2 lifecycle set deactivate
                 ("inactive", "activating"), ("activating", "inactive"),           # an activation that failed
                 ("inactive", "cleaningup"), ("cleaningup", "unconfigured"),       # manual cleanup ...
                 ("unconfigured", "configuring"), ("configuring", "inactive")]     # ... and configure
    requested = _transitions_emitted(handlers, node, lifecycle)
    assert requested == [[], [activate]] + [[]] * (len(lifecycle) - 2), list(zip(lifecycle, requested))


@pytest.mark.parametrize("failure", ["unconfigured", "errorprocessing"], ids=["failure", "error"])
@pytest.mark.parametrize("node_name", ["NODE_NAME", "DETECTOR_NODE_NAME"])
def test_a_manual_configure_after_the_launch_configure_failed_is_not_turned_into_an_activate(
        monkeypatch, node_name, failure):
    """`ros2 launch ... input:=image` with detect.yaml's empty model paths: the launch's configure
    fails (on_configure's FAILURE ends in unconfigured, an exception goes through errorprocessing).
    The operator sets the models and runs `ros2 lifecycle set /cfi_pose_detector configure`, which
    must leave the node inactive: the handler of `configuring` -> `inactive` was still armed and
    activated it."""
    nodes, _, handlers = _lifecycle_wiring(monkeypatch)
    node = nodes[launch_constants()[node_name]]
    lifecycle = [("unconfigured", "configuring"), ("configuring", failure),       # launch's configure fails
                 ("unconfigured", "configuring"), ("configuring", "inactive")]    # ros2 lifecycle set configure
    if failure == "errorprocessing":
        lifecycle.insert(2, ("errorprocessing", "unconfigured"))
    requested = _transitions_emitted(handlers, node, lifecycle)
    assert requested == [[]] * len(lifecycle), list(zip(lifecycle, requested))


def test_the_launch_ends_when_a_node_exits(monkeypatch):
    """`ros2 launch ... backend:=tensorrt_` (a value the node refuses at start, exit 1): launch_ros
    waits for a lifecycle node's services until launch ends, so the launch stayed up with nothing
    running. Each node's exit now shuts the launch down (the detector's only where it is started)."""
    description = run_launch_file(LAUNCH, monkeypatch)
    nodes = {e.kwargs["name"]: e for e in description.entities if isinstance(e, fake_launch.LifecycleNode)}
    on_exit = {e.event_handler.target_action.kwargs["name"]: e for e in description.entities
               if isinstance(e, fake_launch.RegisterEventHandler)
               and isinstance(e.event_handler, fake_launch.OnProcessExit)}
    assert set(on_exit) == set(nodes)
    for name, registration in on_exit.items():
        (action,) = registration.event_handler.on_exit
        assert isinstance(action, fake_launch.EmitEvent) and isinstance(action.event, fake_launch.Shutdown), name
        assert name in action.event.reason
        assert registration.kwargs.get("condition") is nodes[name].kwargs.get("condition"), name


@pytest.mark.parametrize("spec", LIFT_NODE_PARAMETERS, ids=lambda s: s.name)
def test_every_parameter_is_described(spec):
    assert len(spec.description) > 10


@pytest.mark.parametrize("name", ["target_frame", "tf_prefix"])
def test_a_frame_name_parameter_is_at_most_as_long_as_a_frame_id_the_node_takes(name):
    """Every output carries target_frame and tf_prefix on (the poses, each marker, every /tf frame):
    one of a megabyte was taken and made each marker a megabyte. The bound is the one a message's
    header.frame_id is dropped past (frame_id_too_long)."""
    from cfi_pose_ros.frame_ids import MAX_FRAME_ID_LENGTH

    spec = PARAMETERS_BY_NAME[name]
    assert parameter_problem(spec, "f" * MAX_FRAME_ID_LENGTH) is None
    for length in (MAX_FRAME_ID_LENGTH + 1, 2 ** 20):
        assert f"of {length} characters (at most {MAX_FRAME_ID_LENGTH})" in parameter_problem(spec, "f" * length)


def test_one_frame_name_rule_for_target_frame_tf_prefix_and_every_input_header():
    """target_frame and tf_prefix refused names no TF tree holds while a message's header.frame_id
    of the same was carried on to every output: frame_ids.frame_name_problem is the rule of both
    (conversions.header_problem drops such a header as bad_frame_id), with the same words."""
    from cfi_pose_ros.frame_ids import MAX_FRAME_ID_LENGTH, frame_name_problem

    for name in ("camera_color_optical_frame", "robot1/camera", "/camera", "", "f" * MAX_FRAME_ID_LENGTH):
        assert frame_name_problem(name) is None, name
    target_frame, tf_prefix = PARAMETERS_BY_NAME["target_frame"], PARAMETERS_BY_NAME["tf_prefix"]
    for name, words in (("camera link", "no spaces or control characters"),
                        ("cam\nera", "no spaces or control characters"),
                        ("cam\x00era", "no spaces or control characters"),
                        ("camera\u00a0link", "no spaces or control characters"),      # a no-break space
                        ("a//b", "no empty name between two '/'"), ("camera/", "does not end in '/'"),
                        ("f" * (MAX_FRAME_ID_LENGTH + 1), f"of {MAX_FRAME_ID_LENGTH + 1} characters")):
        problem = frame_name_problem(name)
        assert problem is not None and words in problem, (name, problem)
        assert parameter_problem(target_frame, name) == problem, name
        if not name.endswith("/"):
            assert parameter_problem(tf_prefix, name) == problem, name
    # a prefix's trailing '/' is part of the names it starts (body/3)
    assert frame_name_problem("robot1/body/", prefix=True) is None
    assert parameter_problem(tf_prefix, "robot1/body/") is None


# ----------------------------------------------------------------------------- the detector node

def test_detector_config_file_lists_exactly_the_declared_parameters_with_their_defaults():
    constants = launch_constants()
    check_config_file(constants["DETECTOR_CONFIG_FILE"], constants["DETECTOR_NODE_NAME"], DETECT_NODE_PARAMETERS,
                      DETECT_YAML_HEADER)


def test_detector_launch_arguments_override_parameters_that_exist():
    constants = launch_constants()
    overridable = constants["DETECTOR_OVERRIDABLE_PARAMETERS"]
    assert set(overridable) <= set(DETECT_PARAMETERS_BY_NAME)
    for name, ros_type in overridable.items():
        assert ROS_TYPE_NAMES[type(DETECT_PARAMETERS_BY_NAME[name].default)] == ros_type, name
    # one launch argument per name: the two nodes' overridable parameters must not collide
    assert not set(overridable) & set(constants["OVERRIDABLE_PARAMETERS"])
    assert "keypoints_topic" not in overridable          # always the lifter's input_topic
    assert constants["INPUT_CHOICES"] == ("keypoints", "image")


def test_launch_file_starts_the_detector_only_for_image_input_and_wires_its_output_to_the_lifter(tmp_path):
    """The detector publishes where the lifter listens: input_topic:= when given, else the topic the
    lifter's parameters file names, else the lifter's default."""
    source = LAUNCH.read_text()
    assert 'DeclareLaunchArgument("input"' in source
    assert "== 'image'" in source and "condition=with_detector" in source
    assert "_lifecycle_to_active(detector, DETECTOR_NODE_NAME, with_detector)" in source
    assert "DETECTOR_EXECUTABLE" in source and "DETECTOR_CONFIG_FILE" in source

    def keypoints_topic(given: dict) -> str:
        return _launch_parameters("DETECTOR_NODE_NAME", given)[2]["keypoints_topic"]

    users = tmp_path / "my_lift.yaml"
    users.write_text(yaml.safe_dump({PARAMS_FILE_SECTION: {"ros__parameters": {"input_topic": "/cam/people_2d"}}}))
    shipped = REPO / "config" / "lift.yaml"
    assert keypoints_topic({"params_file": str(shipped)}) == PARAMETERS_BY_NAME["input_topic"].default
    assert keypoints_topic({"params_file": str(users)}) == "/cam/people_2d"
    assert keypoints_topic({"params_file": str(users), "input_topic": "/people"}) == "/people"
    # read as rclpy gives the lifter its file: another node's section is not the lifter's, sections
    # that match apply in file order (the later wins), a namespaced lifter has its own name
    several = tmp_path / "several.yaml"
    several.write_text("other_node:\n  ros__parameters: {input_topic: /not_for_the_lifter}\n"
                       "/**:\n  ros__parameters: {input_topic: /everyone}\n"
                       "cfi_pose_lifter:\n  ros__parameters: {input_topic: /lifter}\n"
                       "/left/cfi_pose_lifter:\n  ros__parameters: {input_topic: /left_lifter}\n")
    assert keypoints_topic({"params_file": str(several)}) == "/lifter"
    assert keypoints_topic({"params_file": str(several), "namespace": "left"}) == "/left_lifter"
    assert keypoints_topic({"params_file": str(several), "namespace": "/right"}) == "/everyone"
    # included under an including launch file's PushRosNamespace (launch's ros_namespace): launch_ros
    # puts a relative namespace:= below it, an absolute one not
    assert keypoints_topic({"params_file": str(several), "ros_namespace": "/left"}) == "/left_lifter"
    assert keypoints_topic({"params_file": str(several), "ros_namespace": "/left", "namespace": "right"}) \
        == "/everyone"
    assert keypoints_topic({"params_file": str(several), "ros_namespace": "/", "namespace": "left"}) \
        == "/left_lifter"
    assert keypoints_topic({"params_file": str(several), "ros_namespace": "/outer", "namespace": "/left"}) \
        == "/left_lifter"
    # a name that rcl expands per node (private, {node}) is the lifter's: passed on as written it was
    # the detector's own /cfi_pose_detector/keypoints
    assert keypoints_topic({"params_file": str(shipped), "input_topic": "~/keypoints"}) \
        == "/cfi_pose_lifter/keypoints"
    assert keypoints_topic({"params_file": str(shipped), "input_topic": "{node}/in", "namespace": "left"}) \
        == "/left/cfi_pose_lifter/in"
    private = tmp_path / "private.yaml"
    private.write_text("/**:\n  ros__parameters: {input_topic: ~/people}\n")
    assert keypoints_topic({"params_file": str(private), "namespace": "left"}) == "/left/cfi_pose_lifter/people"
    with pytest.raises(ValueError, match="the lifter's input_topic '~people'.*tilde"):
        keypoints_topic({"params_file": str(shipped), "input_topic": "~people"})


def test_launch_file_refers_to_installed_detector_executable_and_config(ros_env):
    from cfi_pose_ros.node.process import DETECT_NODE, installed_paths

    constants = launch_constants()
    executable, params_file = installed_paths(DETECT_NODE)
    assert executable.name == constants["DETECTOR_EXECUTABLE"]
    assert executable.is_file() and os.access(executable, os.X_OK)
    assert params_file.name == constants["DETECTOR_CONFIG_FILE"] and params_file.is_file()


def test_detector_node_name_matches_the_node(ros_env):
    from cfi_pose_ros.node import detect_node

    constants = launch_constants()
    assert detect_node.NODE_NAME == constants["DETECTOR_NODE_NAME"]
    assert detect_node.EXECUTABLE == constants["DETECTOR_EXECUTABLE"]
    assert detect_node.CONFIG_FILE == constants["DETECTOR_CONFIG_FILE"]


@pytest.mark.parametrize("spec", DETECT_NODE_PARAMETERS, ids=lambda s: s.name)
def test_every_detector_parameter_is_described(spec):
    assert len(spec.description) > 10


def test_detector_parameters_build_the_detector_configs():
    from cfi_pose_ros.detectors import MoveNetConfig, RTMDetConfig, TopDownConfig, YoloPoseConfig, config_from_dict
    from cfi_pose_ros.tracking import TrackerConfig

    top_down = config_from_dict(detector_config({
        "person_detector_model": "/m/det.onnx", "keypoint_model": "/m/kp.onnx", "threads": 2,
        "person_score_threshold": 0.4, "max_people": 7, "providers": ["CUDAExecutionProvider",
                                                                       "CPUExecutionProvider"]}))
    assert isinstance(top_down, TopDownConfig) and top_down.max_people == 7
    assert isinstance(top_down.person_detector, RTMDetConfig)
    assert top_down.person_detector.model_path == "/m/det.onnx"
    assert top_down.person_detector.score_threshold == 0.4 and top_down.person_detector.intra_op_num_threads == 2
    assert top_down.person_detector.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert isinstance(top_down.keypoint_model, MoveNetConfig) and top_down.keypoint_model.model_path == "/m/kp.onnx"

    yolo = config_from_dict(detector_config({"detector": "yolo_pose", "yolo_pose_model": "/m/y.onnx",
                                             "nms_iou_threshold": 0.5}))
    assert isinstance(yolo, YoloPoseConfig) and yolo.iou_threshold == 0.5 and yolo.model_path == "/m/y.onnx"
    with pytest.raises(ValueError, match="detector"):
        detector_config({"detector": "openpose"})
    assert TrackerConfig(**tracker_config({"tracker_max_age": 2.5})).max_age == 2.5


def test_lifter_options_map_the_node_parameters_to_create_lifter():
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    defaults = lifter_options()          # what the node and benchmarks/bench_node.py build by default
    assert defaults == {"weights": str(DEFAULT_WEIGHTS), "backend": "auto", "precision": "fp32",
                        "batch_sizes": None, "threads": 1, "cache_dir": None,
                        "flip_test": PARAMETERS_BY_NAME["flip_test"].default}
    values = {**{name: spec.default for name, spec in PARAMETERS_BY_NAME.items()},
              "batch_sizes": [8, 1], "threads": 0, "weights": "/w/x.safetensors", "engine_cache_dir": "/c",
              "flip_test": True}
    assert lifter_options(values.__getitem__) == {
        "weights": "/w/x.safetensors", "backend": "auto", "precision": "fp32", "batch_sizes": (8, 1),
        "threads": None, "cache_dir": "/c", "flip_test": True}


# ----------------------------------------------------------------------------- both nodes in a namespace

def _parameters_reported(tmp_path, node, node_name: str, namespace: str, params_file, names: list[str],
                         overrides=None) -> list:
    """``names`` as the installed ``node``, started in ``namespace`` with ``params_file`` (one path or
    several, in order) and ``overrides`` (autostart off unless given), reports them over its
    get_parameters service (what ``ros2 param get`` asks)."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from cfi_pose_ros.node.process import start_node, stop
    from ros_harness import call_service

    process = start_node(node, params_file=params_file,
                         overrides={"autostart": False} if overrides is None else overrides,
                         log_path=tmp_path / f"{node_name}.log", namespace=namespace)
    try:
        with _probe(f"param_probe_{os.getpid()}") as (client_node, spin):
            client = client_node.create_client(GetParameters, f"{namespace}/{node_name}/get_parameters")
            assert client.wait_for_service(timeout_sec=60), (tmp_path / f"{node_name}.log").read_text()
            answer = call_service(client, GetParameters.Request(names=names), spin, attempts=3)
            return [parameter_value_to_python(value) for value in answer.values]
    finally:
        stop(process)


@contextlib.contextmanager
def _probe(name: str):
    """A node of the test's own, in a context of its own, and ``spin(done, timeout)`` for it."""
    import rclpy

    from ros_harness import spin_until

    context = rclpy.Context()
    rclpy.init(context=context)
    probe = rclpy.create_node(name, context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    try:
        yield probe, lambda done, timeout: spin_until(executor, done, timeout)
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("which", ["lift", "detect"])
def test_shipped_parameters_file_applies_to_the_node_in_a_namespace(ros_env, tmp_path, which):
    """`ros2 launch ... namespace:=robot1 params_file:=my.yaml`: a user's copy of the shipped file
    with one value changed reaches the node in the namespace. With a bare ``node_name:`` section
    (what the file had before) rcl applies the file only in the root namespace: the node kept its
    default without a word, which the second half shows. ``ros2 param load --use-wildcard`` (rclpy's
    parser) reads the shipped section for the node in the namespace too."""
    from rclpy.parameter import parameter_dict_from_yaml_file

    from cfi_pose_ros.node.process import DETECT_NODE, LIFT_NODE, installed_paths

    node, specs, node_name = {"lift": (LIFT_NODE, LIFT_NODE_PARAMETERS, "NODE_NAME"),
                              "detect": (DETECT_NODE, DETECT_NODE_PARAMETERS, "DETECTOR_NODE_NAME")}[which]
    node_name = launch_constants()[node_name]
    spec = next(s for s in specs if type(s.default) is int and s.min_value is not None)
    changed = int(spec.min_value) if spec.default != spec.min_value else int(spec.min_value) + 1
    shipped = yaml.safe_load(installed_paths(node)[1].read_text())
    params = shipped[PARAMS_FILE_SECTION]["ros__parameters"] | {spec.name: changed}
    namespace = f"/robot{os.getpid()}"
    found, loaded = {}, {}
    for key in (PARAMS_FILE_SECTION, node_name):
        path = tmp_path / f"{key.strip('/*') or 'wildcard'}.yaml"
        path.write_text(yaml.safe_dump({key: {"ros__parameters": params}}))
        found[key], = _parameters_reported(tmp_path, node, node_name, namespace, path, [spec.name])
        try:
            loaded[key] = len(parameter_dict_from_yaml_file(str(path), use_wildcard=True,
                                                            target_nodes=[f"{namespace}/{node_name}"]))
        except RuntimeError:        # "Param file does not contain any valid parameters"
            loaded[key] = 0
    assert found == {PARAMS_FILE_SECTION: changed, node_name: spec.default}, spec.name
    assert loaded == {PARAMS_FILE_SECTION: len(specs), node_name: 0}


def test_a_users_parameters_file_keeps_its_values_unless_the_launch_argument_is_given(ros_env, tmp_path):
    """`ros2 launch cfi_pose_ros lift.launch.py params_file:=my_lift.yaml body_size_prior:=0.8`: the
    node gets 0.8 and every other value of the user's file. The launch arguments used to be passed
    with their defaults after the file, so its flip_test, target_frame, weights and topics were
    silently replaced by the node's defaults. The node is started as launch_ros starts it: the
    parameters in order, each file a --params-file."""
    from cfi_pose_ros.node.process import LIFT_NODE, installed_paths

    shipped = yaml.safe_load(installed_paths(LIFT_NODE)[1].read_text())
    users = tmp_path / "my_lift.yaml"
    users.write_text(yaml.safe_dump({PARAMS_FILE_SECTION: {"ros__parameters": shipped[PARAMS_FILE_SECTION][
        "ros__parameters"] | {"flip_test": True, "body_size_prior": 0.5, "target_frame": "base_link",
                              "input_topic": "people_2d"}}}))
    _, launch_file, _ = _launch_parameters("NODE_NAME", {"params_file": str(users), "body_size_prior": "0.8"})
    names = ["body_size_prior", "flip_test", "target_frame", "input_topic", "autostart"]
    reported = _parameters_reported(tmp_path, LIFT_NODE, launch_constants()["NODE_NAME"], f"/launch{os.getpid()}",
                                    [users, launch_file], names)
    assert dict(zip(names, reported)) == {"body_size_prior": 0.8, "flip_test": True, "target_frame": "base_link",
                                          "input_topic": "people_2d", "autostart": False}


def _lifter_launched_with(tmp_path, users_file: str, arguments: dict) -> dict:
    """target_frame, tf_prefix and autostart of the lifter started as launch_ros starts it: the user's
    parameters file (``users_file``, ``{namespace}`` filled in), then the launch-time file of the
    launch ``arguments``, no other override, in the namespace ``cam<pid>``."""
    from cfi_pose_ros.node.process import LIFT_NODE

    namespace = f"cam{os.getpid()}"
    users = tmp_path / "my_lift.yaml"
    users.write_text(users_file.format(namespace=namespace))
    _, launch_file, _ = _launch_parameters("NODE_NAME", {"params_file": str(users), "namespace": namespace,
                                                         **arguments})
    names = ["target_frame", "tf_prefix", "autostart"]
    return dict(zip(names, _parameters_reported(tmp_path, LIFT_NODE, launch_constants()["NODE_NAME"],
                                                f"/{namespace}", [users, launch_file], names, overrides={})))


@pytest.mark.parametrize("section", ["{namespace}/cfi_pose_lifter", "/**/cfi_pose_lifter"])
def test_launch_arguments_win_over_a_section_of_the_users_file_that_names_the_node(ros_env, tmp_path, section):
    """A user's file with a `/**` section (use_sim_time for everyone) and then a section of the
    lifter's own: rcl merges the launch-time file's `/**` into the user's first section, so the
    user's later section won over `target_frame:=odom` and over the launch file's `autostart: false`
    (the node activated itself, launch's transitions failed)."""
    users_file = ("/**:\n  ros__parameters:\n    use_sim_time: false\n"
                  f"{section}:\n  ros__parameters:\n    target_frame: map\n    tf_prefix: users_\n    autostart: true\n")
    assert _lifter_launched_with(tmp_path, users_file, {"target_frame": "odom"}) == {
        "target_frame": "odom", "tf_prefix": "users_", "autostart": False}


@pytest.mark.parametrize("after", ["/**/cfi_pose_lifter", "/{namespace}/*"])
def test_launch_arguments_win_over_a_section_after_the_users_section_of_the_nodes_full_name(ros_env, tmp_path, after):
    """A user's file with `/**`, `/cam/cfi_pose_lifter` and then another section that matches the
    lifter: the launch-time file's `/cam/cfi_pose_lifter` joined the user's section of that name,
    rcl applied the user's later section after it, and its tf_prefix won over `tf_prefix:=cam_`, its
    `autostart: true` over the launch file's false."""
    users_file = ("/**:\n  ros__parameters:\n    use_sim_time: false\n"
                  "/{namespace}/cfi_pose_lifter:\n  ros__parameters:\n    target_frame: map\n"
                  f"{after}:\n  ros__parameters:\n    tf_prefix: users_\n    autostart: true\n")
    assert _lifter_launched_with(tmp_path, users_file, {"tf_prefix": "cam_"}) == {
        "target_frame": "map", "tf_prefix": "cam_", "autostart": False}


def test_log_level_reaches_both_nodes_as_rcl_s_log_level(ros_env, tmp_path):
    """`ros2 launch cfi_pose_ros lift.launch.py log_level:=warn`: both nodes get rcl's `--log-level`
    (launch_ros passes ``ros_arguments`` after `--ros-args`), and a real lifter started with what the
    launch file passes logs no INFO line where it logs its configure at INFO by default."""
    from cfi_pose_ros.node.process import LIFT_NODE, start_node, stop

    with pytest.MonkeyPatch.context() as patch:
        description = run_launch_file(LAUNCH, patch, share_dir=str(REPO))
    argument = next(e for e in description.entities
                    if isinstance(e, fake_launch.DeclareLaunchArgument) and e.args[0] == "log_level")
    assert argument.kwargs["default_value"] == "info"
    assert argument.kwargs["choices"] == ["debug", "info", "warn", "error", "fatal"]
    nodes = [e for e in description.entities if isinstance(e, fake_launch.LifecycleNode)]
    assert {node.kwargs["name"] for node in nodes} == {launch_constants()["NODE_NAME"],
                                                       launch_constants()["DETECTOR_NODE_NAME"]}
    for node in nodes:
        flag, level = node.kwargs["ros_arguments"]
        assert flag == "--log-level" and level.args == ("log_level",), node.kwargs

    def configure_log(level: str) -> str:
        """The log of a lifter started with ``--log-level level`` and configured (waited for)."""
        from lifecycle_msgs.msg import Transition

        from ros_harness import LifecycleClient

        name = f"loglevel_{level}_{os.getpid()}"
        log = tmp_path / f"{level}.log"
        process = start_node(LIFT_NODE, overrides={"autostart": False, "backend": "torch"}, log_path=log,
                             node_name=name, ros_arguments=["--log-level", level])
        try:
            with _probe(f"probe_{name}") as (probe, spin):
                assert LifecycleClient(probe, name, spin).transition(Transition.TRANSITION_CONFIGURE), log.read_text()
        finally:
            stop(process)
        return log.read_text()

    shown = configure_log("info")
    assert "[INFO]" in shown and "inference backend" in shown, shown
    quiet = configure_log("warn")
    assert "[INFO]" not in quiet and "Traceback" not in quiet, quiet
