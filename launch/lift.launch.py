"""Start the 3D pose lifter (and, with input:=image, the 2D detector) and bring them to active.

    ros2 launch cfi_pose_ros lift.launch.py
    ros2 launch cfi_pose_ros lift.launch.py input_topic:=/people_2d camera_info_topic:=/cam/camera_info \
        backend:=onnxruntime weights:=/path/to/cfi.safetensors body_size_prior:=0.8
    ros2 launch cfi_pose_ros lift.launch.py input:=image image_topic:=/cam/image_raw \
        camera_info_topic:=/cam/camera_info \
        person_detector_model:=/models/rtmdet_nano_person.onnx \
        keypoint_model:=/models/movenet_singlepose_lightning.onnx

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
import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription, Substitution
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from cfi_pose_ros.params_file import read_params_file

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
INPUT_CHOICES = ("keypoints", "image")

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
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"launch argument {name}:={text!r}: expected a number") from None
    return text


class GivenArgumentsFile(Substitution):
    """Path of a parameters file, written at launch, with the launch arguments of ``types`` that
    were given (not left at ``NOT_GIVEN``), typed, then ``fixed`` and what ``derived(configurations)`` adds.

    launch_ros applies a node's parameters in order, the later winning: passed after params_file,
    an argument nobody gave keeps that file's value. (The arguments were passed with their default
    values, so `params_file:=my.yaml` with its own target_frame, weights or topics was silently
    undone.)"""

    def __init__(self, types: dict, fixed: dict, derived=None):
        super().__init__()
        self.types, self.fixed, self.derived = types, fixed, derived

    def describe(self) -> str:
        return f"parameters of the launch arguments given among {', '.join(self.types)}"

    def perform(self, context) -> str:
        given = context.launch_configurations
        values = {name: _typed(name, given[name], ros_type) for name, ros_type in self.types.items()
                  if given.get(name, NOT_GIVEN) != NOT_GIVEN}
        values.update(self.fixed)
        if self.derived is not None:
            values.update(self.derived(given))
        descriptor, path = tempfile.mkstemp(prefix="cfi_pose_launch_", suffix=".yaml")
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            _dump_for_rcl({"/**": {"ros__parameters": values}}, file)
        # the nodes read it once, when they start; left in /tmp it was one more file per launch, for good
        atexit.register(_remove_file, path)
        return path


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
    yaml.dump(data, file, Dumper=QuotedStrings)


def _remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _detector_keypoints_topic(given) -> dict:
    """The detector publishes where the lifter listens: input_topic:= when given, else the lifter's
    parameters file's input_topic."""
    if given.get("input_topic", NOT_GIVEN) != NOT_GIVEN:
        return {"keypoints_topic": given["input_topic"]}
    topic = read_params_file(given["params_file"], _lifter_name(given)).get("input_topic")
    return {"keypoints_topic": str(topic or DEFAULT_INPUT_TOPIC)}


def _lifter_name(given) -> str:
    """The lifter's name in its namespace, as launch_ros places it: a relative namespace:= goes
    below the namespace an including launch file pushed (PushRosNamespace: ``ros_namespace``),
    an absolute one does not."""
    namespace = given.get("namespace", "")
    if not namespace.startswith("/"):
        namespace = f"{given.get('ros_namespace') or ''}/{namespace}"
    return "/".join(name for name in (*namespace.split("/"), NODE_NAME) if name)


def _lifecycle_to_active(node, condition=None):
    """configure now, activate once the first configure has succeeded (the node's own autostart stays off).

    The handler matches only the transition from `configuring` to `inactive`, once: a node also
    reaches `inactive` on `ros2 lifecycle set ... deactivate` and after a failed activation, and
    neither may be undone by the launch file (nor may a later manual configure be turned into an
    activate)."""
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE),
                          condition=condition)
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive", handle_once=True,
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=condition)
    return [activate_when_configured, configure]


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
    ] + (_override_arguments(OVERRIDABLE_PARAMETERS, "node", "params_file")
         + _override_arguments(DETECTOR_OVERRIDABLE_PARAMETERS, "detector node", "detector_params_file")
         + _override_arguments(BOTH_NODES_PARAMETERS, "both nodes'", "the parameters files"))

    lifter = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen",
        # autostart off: the events below drive the lifecycle
        parameters=[LaunchConfiguration("params_file"),
                    GivenArgumentsFile(OVERRIDABLE_PARAMETERS | BOTH_NODES_PARAMETERS,
                                       {"autostart": False})],
    )

    with_detector = IfCondition(PythonExpression(["'", LaunchConfiguration("input"), "' == 'image'"]))
    detector = LifecycleNode(
        package=PACKAGE, executable=DETECTOR_EXECUTABLE, name=DETECTOR_NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen", condition=with_detector,
        parameters=[LaunchConfiguration("detector_params_file"),
                    GivenArgumentsFile(DETECTOR_OVERRIDABLE_PARAMETERS | BOTH_NODES_PARAMETERS,
                                       {"autostart": False}, _detector_keypoints_topic)],
    )
    return LaunchDescription(arguments + [lifter] + _lifecycle_to_active(lifter)
                             + [detector] + _lifecycle_to_active(detector, with_detector))
