"""Start the 3D pose lifter (and, with input:=image, the 2D detector) and bring them to active.

    ros2 launch cfi_pose_ros lift.launch.py
    ros2 launch cfi_pose_ros lift.launch.py input_topic:=/people_2d camera_info_topic:=/cam/camera_info \
        backend:=onnxruntime weights:=/path/to/cfi.safetensors body_size_prior:=0.8
    ros2 launch cfi_pose_ros lift.launch.py input:=image image_topic:=/cam/image_raw \
        camera_info_topic:=/cam/camera_info \
        person_detector_model:=/models/rtmdet_nano_person.onnx \
        keypoint_model:=/models/movenet_singlepose_lightning.onnx
    ros2 launch cfi_pose_ros lift.launch.py rviz:=true rviz_fixed_frame:=camera_color_optical_frame
    ros2 launch cfi_pose_ros lift.launch.py log_level:=warn

input:=keypoints (default): the lifter subscribes to HumanKeypoints2DArray from
your own 2D detector. input:=image: the detector node (cfi_pose_detector) turns
camera images into HumanKeypoints2DArray on the lifter's input_topic.

All node parameters come from config/lift.yaml and config/detect.yaml (or
params_file:=... / detector_params_file:=...); the launch arguments below
override the ones people change most, when given: one left out keeps the
parameters file's value; one given empty sets the parameter empty (target_frame:=
puts the poses in the input's frame even where params_file names another). The detector always publishes on the
lifter's input topic: input_topic:=... when given, else the lifter's file's.
"""
import atexit
import contextlib
import math
import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription, Substitution
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from cfi_pose_ros.params_file import read_params_file, read_value, section_names

PACKAGE = "cfi_pose_ros"
EXECUTABLE = "lift_node"
NODE_NAME = "cfi_pose_lifter"
CONFIG_FILE = "lift.yaml"
# launch argument -> the ROS type of the node parameter it overrides (same name)
OVERRIDABLE_PARAMETERS = {
    "input_topic": "string",
    "camera_info_topic": "string",
    "keypoints_image": "string",            # raw | rectified: which image the keypoints are pixels of
    "output_topic": "string",
    "backend": "string",
    "precision": "string",
    "weights": "string",
    "smoothing": "bool",
    "flip_test": "bool",
    "body_size_prior": "double",
    "target_frame": "string",
    "tf_prefix": "string",                  # two cameras' lifters: people of one id need TF frames apart
}
# launch argument -> the ROS type of the parameter rclpy declares on both nodes (a bag played with
# `ros2 bag play --clock` needs it)
BOTH_NODES_PARAMETERS = {"use_sim_time": "bool"}
# The default of every argument above: not given, the parameters file's value stays. Not "": an
# empty string is a value of target_frame (the input's frame), tf_prefix, weights and the model
# paths, and `target_frame:=` was ignored without a word where params_file named a frame.
NOT_GIVEN = "<parameters file>"
DEFAULT_INPUT_TOPIC = "human_keypoints_2d"      # the lifter's input_topic when no file or argument says
RVIZ_CONFIG_FILE = "lift.rviz"
RVIZ_MARKERS_DISPLAY = "rviz_default_plugins/MarkerArray"
# the lifter's output_reliability -> the name RViz's topic property gives it
RVIZ_RELIABILITY = {"reliable": "Reliable", "best_effort": "Best Effort"}
INPUT_CHOICES = ("keypoints", "image")
# rcl's --log-level of both nodes' processes (rcl reads these case-insensitively; launch's choices do not)
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")

DETECTOR_EXECUTABLE = "detect_node"
DETECTOR_NODE_NAME = "cfi_pose_detector"
DETECTOR_CONFIG_FILE = "detect.yaml"
# launch argument -> the ROS type of the detector node parameter it overrides (same name); its
# keypoints_topic is always the lifter's input topic
DETECTOR_OVERRIDABLE_PARAMETERS = {
    "image_topic": "string",
    "compressed": "bool",
    "detector": "string",
    "person_detector_model": "string",
    "keypoint_model": "string",
    "keypoint_model_type": "string",
    "yolo_pose_model": "string",
}


def _typed(name: str, text: str, ros_type: str):
    """A launch argument's text as a value of its parameter's ROS type: the node refuses another
    type (`body_size_prior:=1` must still arrive as a double), and says nothing useful about a
    boolean spelt wrongly, so that is refused here, by name."""
    if ros_type == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"launch argument {name}:={text!r}: expected true or false")
        return text.lower() == "true"
    if ros_type == "double":
        # read as rcl reads `-p name:=text`, as every value of a parameters file is: Python's float()
        # took `0_8` for 8.0 (a typo of 0.8, ten times the body size) and `nan` for a number
        try:
            value = read_value(text)
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"launch argument {name}:={text!r}: expected a number")
        return float(value)
    return text


class GivenArgumentsFile(Substitution):
    """Path of a parameters file, written at launch, with the launch arguments of ``types`` that
    were given (not left at ``NOT_GIVEN``), typed, then ``fixed`` and what ``derived(configurations)`` adds,
    for the node ``node_name``, whose parameters file the launch argument ``file_argument`` names
    (refused when that is no file).

    launch_ros applies a node's parameters in order, the later winning: passed after params_file,
    an argument nobody gave keeps that file's value. (The arguments were passed with their default
    values, so `params_file:=my.yaml` with its own target_frame, weights or topics was silently
    undone.) The values go under the node's full name as well as under `/**`: rcl merges every
    parameters file of a node into one list of sections, in the order each name first appears,
    and applies every section that matches the node in that order. Under `/**` alone they joined
    the user's `/**` section, and a `cfi_pose_lifter:` section after it in the user's file won over
    them: its target_frame over `target_frame:=odom`, its `autostart: true` over the launch file's
    false (the node activated itself and launch's transitions failed). The node's name is spelt
    as no section of the user's file is (`_section_after`), so it is a new section after all of the
    user's. `/**` still reaches the node under any name (launch_ros's own dict parameters use the
    full name the same way)."""

    def __init__(self, node_name: str, file_argument: str, types: dict, fixed: dict, derived=None):
        super().__init__()
        self.node_name, self.file_argument = node_name, file_argument
        self.types, self.fixed, self.derived = types, fixed, derived

    def describe(self) -> str:
        return f"parameters of the launch arguments given among {', '.join(self.types)}"

    def perform(self, context) -> str:
        given = context.launch_configurations
        # launch_ros passes a parameters file that is no file (a typo, `params_file:=`) with nothing
        # but a WARNING ("Parameter file path is not a file") and starts the node without it, on its
        # defaults: your target_frame, topics and weights gone
        if not os.path.isfile(given[self.file_argument]):
            raise ValueError(f"launch argument {self.file_argument}:={given[self.file_argument]!r}: no such file")
        values = {name: _typed(name, given[name], ros_type) for name, ros_type in self.types.items()
                  if given.get(name, NOT_GIVEN) != NOT_GIVEN}
        values.update(self.fixed)
        if self.derived is not None:
            values.update(self.derived(given))
        section = {"ros__parameters": values}
        return _file_for_this_launch(".yaml", lambda file: _dump_for_rcl(
            {"/**": section, _section_after(given[self.file_argument], _full_name(given, self.node_name)): section},
            file))


def _section_after(params_file: str, full_name: str) -> str:
    """A node name for ``full_name`` that ``params_file`` has no section of: rcl applies it after
    all of that file's sections. `/robot1/cfi_pose_lifter` where the file has one already joins it,
    and a matching section after it in the file (`/**/cfi_pose_lifter`, `/robot1/*`) won over the
    launch arguments and `autostart: false`; `/**/robot1/cfi_pose_lifter` names the node too."""
    taken = section_names(params_file)
    name = "/" + full_name
    while name in taken:
        name = "/**" + name
    return name


class RvizConfigFile(Substitution):
    """Path of config/lift.rviz as written at launch for this launch's lifter. The shipped file
    subscribes to /human_pose_3d/markers, reliably, in camera_optical_frame: under namespace:=cam_left,
    with a params_file that sets output_reliability: best_effort or target_frame: odom, RViz
    showed nothing and said only that no messages came or that the frame did not exist."""

    def __init__(self, share: str):
        super().__init__()
        self.share = share

    def describe(self) -> str:
        return f"{RVIZ_CONFIG_FILE} for the lifter's markers topic, reliability and frame"

    def perform(self, context) -> str:
        import yaml

        with open(os.path.join(self.share, "config", RVIZ_CONFIG_FILE), encoding="utf-8") as file:
            config = yaml.safe_load(file)
        lifter = _lifter_parameters(context.launch_configurations, self.share)
        manager = config["Visualization Manager"]
        (markers,) = [d for d in manager["Displays"] if d["Class"] == RVIZ_MARKERS_DISPLAY]
        markers["Topic"]["Value"] = _lifter_topic(context.launch_configurations, str(lifter["markers_topic"]),
                                                  "markers_topic")
        # a value the lifter refuses keeps the file's: the lifter then says what is wrong with it
        markers["Topic"]["Reliability Policy"] = RVIZ_RELIABILITY.get(str(lifter["output_reliability"]),
                                                                       markers["Topic"]["Reliability Policy"])
        given_frame = context.launch_configurations.get("rviz_fixed_frame", NOT_GIVEN)
        fixed_frame = lifter["target_frame"] if given_frame in (NOT_GIVEN, "") else given_frame
        if fixed_frame:
            manager["Global Options"]["Fixed Frame"] = str(fixed_frame)
        return _file_for_this_launch(".rviz", lambda file: yaml.safe_dump(config, file, sort_keys=False))


def _file_for_this_launch(suffix: str, write) -> str:
    """A new file in the temporary directory, filled by ``write(file)``, removed when launch exits."""
    descriptor, path = tempfile.mkstemp(prefix="cfi_pose_launch_", suffix=suffix)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        write(file)
    # read once, when the process starts; left in /tmp it was one more file per launch, for good
    atexit.register(_remove_file, path)
    return path


def _lifter_parameters(given, share: str) -> dict:
    """The lifter's parameters as it will start with them: the shipped config's values (the node's
    defaults), then params_file's section(s) for the lifter, then the launch arguments given."""
    lifter = _full_name(given, NODE_NAME)
    values = read_params_file(os.path.join(share, "config", CONFIG_FILE), lifter)
    values.update(read_params_file(given["params_file"], lifter))
    values.update({name: _typed(name, given[name], ros_type) for name, ros_type in OVERRIDABLE_PARAMETERS.items()
                   if given.get(name, NOT_GIVEN) != NOT_GIVEN})
    return values


def _dump_for_rcl(data: dict, file) -> None:
    """YAML that rcl reads back with the same types: every string value quoted. PyYAML quotes only
    what YAML 1.1 would read as another type, and rcl types bare scalars by its own rules
    (``params_file._RCL_INT``): ``target_frame:=08`` was written bare and read as the double 8.0,
    ``tf_prefix:=y`` as true, and the node refused to start."""
    import yaml

    class QuotedStrings(yaml.SafeDumper):
        pass

    QuotedStrings.add_representer(str, lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="'"))
    QuotedStrings.ignore_aliases = lambda self, data: True     # each section written out in full
    yaml.dump(data, file, Dumper=QuotedStrings, sort_keys=False)


def _remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _detector_keypoints_topic(given) -> dict:
    """The detector publishes where the lifter listens: input_topic:= when given, else the lifter's
    parameters file's input_topic. A name that means something else in each node (private `~/...`,
    `{node}`) is the lifter's as rcl expands it: passed on as it was, `~/keypoints` was
    /cfi_pose_detector/keypoints for the detector, and the two never met."""
    if given.get("input_topic", NOT_GIVEN) != NOT_GIVEN:
        topic = given["input_topic"]
    else:
        lifter = _full_name(given, NODE_NAME)
        topic = str(read_params_file(given["params_file"], lifter).get("input_topic") or DEFAULT_INPUT_TOPIC)
    if "~" in topic or "{" in topic:
        topic = _lifter_topic(given, topic, "input_topic")
    return {"keypoints_topic": topic}


def _lifter_topic(given, topic: str, parameter: str) -> str:
    """``topic`` as rcl expands it for the lifter: absolute, in the lifter's namespace, ``~`` and
    ``{node}`` the lifter's."""
    from rclpy.expand_topic_name import expand_topic_name

    namespace, _, name = _full_name(given, NODE_NAME).rpartition("/")
    try:
        return expand_topic_name(topic, name, "/" + namespace)
    except ValueError as exc:       # rcl's own words; the lifter would refuse it too
        raise ValueError(f"the lifter's {parameter} {topic!r}: {exc}") from None


def _full_name(given, node_name: str) -> str:
    """``node_name`` in its namespace, as launch_ros places it (no leading slash): a relative
    namespace:= goes below the namespace an including launch file pushed (PushRosNamespace:
    ``ros_namespace``), an absolute one does not."""
    namespace = given.get("namespace", "")
    if not namespace.startswith("/"):
        namespace = f"{given.get('ros_namespace') or ''}/{namespace}"
    return "/".join(name for name in (*namespace.split("/"), node_name) if name)


def _activate_if_configured(context, node) -> list:
    """Activate ``node`` when the transition being handled (``context.locals.event``, as launch
    gives an event handler's entities) ended its configure in `inactive`; nothing when it failed."""
    if context.locals.event.goal_state != "inactive":
        return []
    return [EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                        transition_id=Transition.TRANSITION_ACTIVATE))]


def _lifecycle_to_active(node, name: str, condition=None):
    """configure now, activate if that configure succeeds (the node's own autostart stays off), and
    end the launch when the node's process ends.

    The handler takes the first transition out of `configuring`, once, and activates only if it
    ended in `inactive`: a node also reaches `inactive` on `ros2 lifecycle set ... deactivate` and
    after a failed activation, and neither may be undone by the launch file; nor may a manual
    configure be turned into an activate, which a handler of `configuring` -> `inactive` alone did
    after the launch's own configure had failed (input:=image before the models were set).

    A node whose process exits (a parameter it refuses at start, a crash; a finalized node's process
    stays up until stopped) shuts the launch down: launch_ros waits for the lifecycle services of a
    node that is gone until launch ends, so `ros2 launch` stayed up with nothing running."""
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE),
                          condition=condition)
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", handle_once=True,
        entities=[OpaqueFunction(function=_activate_if_configured, args=[node])]),
        condition=condition)
    shut_down_when_gone = RegisterEventHandler(OnProcessExit(
        target_action=node, on_exit=[EmitEvent(event=Shutdown(reason=f"{name} exited"))]), condition=condition)
    return [activate_when_configured, shut_down_when_gone, configure]


def _override_arguments(types: dict, whose: str, file_argument: str) -> list:
    """One launch argument per parameter of ``types``, ``NOT_GIVEN`` by default (the file's value stays)."""
    return [DeclareLaunchArgument(name, default_value=NOT_GIVEN,
                                  description=f"{whose} parameter '{name}' ({ros_type}); not given: {file_argument}'s value")
            for name, ros_type in types.items()]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", CONFIG_FILE),
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of both nodes and of their (relative) topics: "
                                          "namespace:=cam_left gives /cam_left/human_pose_3d"),
        DeclareLaunchArgument("input", default_value=INPUT_CHOICES[0], choices=list(INPUT_CHOICES),
                              description="keypoints: 2D keypoints from your detector on input_topic; "
                                          "image: also start the 2D detector node on image_topic"),
        DeclareLaunchArgument("detector_params_file",
                              default_value=os.path.join(share, "config", DETECTOR_CONFIG_FILE),
                              description="YAML file with the detector node's parameters (input:=image)"),
        DeclareLaunchArgument("log_level", default_value="info", choices=list(LOG_LEVELS),
                              description="log level of both nodes (rcl's --log-level): warn keeps the "
                                          "console to what needs attention"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="true: also start RViz (rviz2) showing the skeletons"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value=NOT_GIVEN,
                              description="RViz's fixed frame (rviz:=true); not given: the lifter's "
                                          "target_frame, else camera_optical_frame"),
    ] + (_override_arguments(OVERRIDABLE_PARAMETERS, "node", "params_file")
         + _override_arguments(DETECTOR_OVERRIDABLE_PARAMETERS, "detector node", "detector_params_file")
         + _override_arguments(BOTH_NODES_PARAMETERS, "both nodes'", "the parameters files"))

    log_level = ["--log-level", LaunchConfiguration("log_level")]
    lifter = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen", ros_arguments=log_level,
        # autostart off: the events below drive the lifecycle
        parameters=[LaunchConfiguration("params_file"),
                    GivenArgumentsFile(NODE_NAME, "params_file", OVERRIDABLE_PARAMETERS | BOTH_NODES_PARAMETERS,
                                       {"autostart": False})],
    )

    with_detector = IfCondition(PythonExpression(["'", LaunchConfiguration("input"), "' == 'image'"]))
    detector = LifecycleNode(
        package=PACKAGE, executable=DETECTOR_EXECUTABLE, name=DETECTOR_NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen", condition=with_detector,
        ros_arguments=log_level,
        parameters=[LaunchConfiguration("detector_params_file"),
                    GivenArgumentsFile(DETECTOR_NODE_NAME, "detector_params_file",
                                       DETECTOR_OVERRIDABLE_PARAMETERS | BOTH_NODES_PARAMETERS,
                                       {"autostart": False}, _detector_keypoints_topic)],
    )
    # not tied to the launch's end: closing RViz leaves the nodes running
    rviz = Node(package="rviz2", executable="rviz2", namespace=LaunchConfiguration("namespace"), output="screen",
                arguments=["-d", RvizConfigFile(share)], condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(arguments + [lifter] + _lifecycle_to_active(lifter, NODE_NAME)
                             + [detector] + _lifecycle_to_active(detector, DETECTOR_NODE_NAME, with_detector)
                             + [rviz])
