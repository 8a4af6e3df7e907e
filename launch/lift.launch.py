"""Start the 3D pose lifter and bring it to the active state.

    ros2 launch cfi_pose_ros lift.launch.py
    ros2 launch cfi_pose_ros lift.launch.py input_topic:=/people_2d camera_info_topic:=/cam/camera_info \
        backend:=onnxruntime weights:=/path/to/cfi.safetensors

All node parameters come from config/lift.yaml (or params_file:=...); the launch
arguments below override the ones people change most.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "cfi_pose_ros"
EXECUTABLE = "lift_node"
NODE_NAME = "cfi_pose_lifter"
CONFIG_FILE = "lift.yaml"
# launch argument -> node parameter it overrides (same name)
OVERRIDABLE_PARAMETERS = {
    "input_topic": "/human_keypoints_2d",
    "camera_info_topic": "/camera_info",
    "output_topic": "/human_pose_3d",
    "backend": "auto",
    "precision": "fp32",
    "weights": "",
    "smoothing": "false",
}


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", CONFIG_FILE),
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ] + [DeclareLaunchArgument(name, default_value=default, description=f"node parameter '{name}'")
         for name, default in OVERRIDABLE_PARAMETERS.items()]

    lifter = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {name: LaunchConfiguration(name) for name in OVERRIDABLE_PARAMETERS},
                    {"autostart": False}],   # the events below drive the lifecycle
    )
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(lifter),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=lifter, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(lifter),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription(arguments + [lifter, activate_when_configured, configure])
