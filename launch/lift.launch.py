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
override the ones people change most.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "cfi_pose_ros"
EXECUTABLE = "lift_node"
NODE_NAME = "cfi_pose_lifter"
CONFIG_FILE = "lift.yaml"
# launch argument -> node parameter it overrides (same name)
OVERRIDABLE_PARAMETERS = {
    "input_topic": "human_keypoints_2d",
    "camera_info_topic": "camera_info",
    "output_topic": "human_pose_3d",
    "backend": "auto",
    "precision": "fp32",
    "weights": "",
    "smoothing": "false",
    "flip_test": "false",
    "body_size_prior": "1.0",
    "target_frame": "",
}
INPUT_CHOICES = ("keypoints", "image")

DETECTOR_EXECUTABLE = "detect_node"
DETECTOR_NODE_NAME = "cfi_pose_detector"
DETECTOR_CONFIG_FILE = "detect.yaml"
# launch argument -> detector node parameter it overrides (same name); its keypoints_topic is
# always the lifter's input_topic
DETECTOR_OVERRIDABLE_PARAMETERS = {
    "image_topic": "image_raw",
    "compressed": "false",
    "detector": "top_down",
    "person_detector_model": "",
    "keypoint_model": "",
    "keypoint_model_type": "movenet",
    "yolo_pose_model": "",
}


def _typed_overrides(defaults: dict) -> dict:
    """Launch arguments as parameter values of their parameter's type, told by the default:
    "true"/"false" stay booleans; a decimal number is a float even when given as `:=1` (the node
    would refuse an integer for a double parameter); anything else stays a string, so an empty
    one (no weights or model given) does not become YAML null."""
    def typed(name: str, default: str):
        if default in ("true", "false"):
            return LaunchConfiguration(name)
        value_type = float if _is_decimal(default) else str
        return ParameterValue(LaunchConfiguration(name), value_type=value_type)

    return {name: typed(name, default) for name, default in defaults.items()}


def _is_decimal(text: str) -> bool:
    whole, point, fraction = text.partition(".")
    return bool(point) and whole.isdigit() and fraction.isdigit()


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
    ] + [DeclareLaunchArgument(name, default_value=default, description=f"node parameter '{name}'")
         for name, default in OVERRIDABLE_PARAMETERS.items()] + [
        DeclareLaunchArgument(name, default_value=default, description=f"detector node parameter '{name}'")
        for name, default in DETECTOR_OVERRIDABLE_PARAMETERS.items()]

    lifter = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    _typed_overrides(OVERRIDABLE_PARAMETERS),
                    {"autostart": False}],   # the events below drive the lifecycle
    )

    with_detector = IfCondition(PythonExpression(["'", LaunchConfiguration("input"), "' == 'image'"]))
    detector = LifecycleNode(
        package=PACKAGE, executable=DETECTOR_EXECUTABLE, name=DETECTOR_NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen", condition=with_detector,
        parameters=[LaunchConfiguration("detector_params_file"),
                    _typed_overrides(DETECTOR_OVERRIDABLE_PARAMETERS),
                    {"keypoints_topic": ParameterValue(LaunchConfiguration("input_topic"), value_type=str),
                     "autostart": False}],   # the events below drive the lifecycle
    )
    return LaunchDescription(arguments + [lifter] + _lifecycle_to_active(lifter)
                             + [detector] + _lifecycle_to_active(detector, with_detector))
