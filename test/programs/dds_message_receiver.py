"""Receives one of each cfi_pose_ros message and prints them as JSON lines (test helper)."""
import json
import sys
import time

import rclpy
from rclpy.node import Node

from cfi_pose_ros.msg import (HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3D,
                              HumanPose3DArray, Keypoint2D)

TYPES = {"keypoint_2d": Keypoint2D, "human_keypoints_2d": HumanKeypoints2D,
         "human_keypoints_2d_array": HumanKeypoints2DArray, "human_pose_3d": HumanPose3D,
         "human_pose_3d_array": HumanPose3DArray}


def to_plain(msg):
    """A ROS message as nested dicts/lists (NaN kept as the string 'nan' for JSON)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: to_plain(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)) or type(msg).__name__ == "array":
        return [to_plain(v) for v in msg]
    if isinstance(msg, float) and msg != msg:
        return "nan"
    return msg


def main():
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rclpy.init()
    node = Node("dds_message_receiver")
    received = {}
    for topic, msg_type in TYPES.items():
        node.create_subscription(msg_type, f"/dds_test/{topic}",
                                 lambda m, t=topic: received.setdefault(t, to_plain(m)), 10)
    deadline = time.monotonic() + timeout
    while len(received) < len(TYPES) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    for topic, plain in received.items():
        print(json.dumps({"topic": topic, "msg": plain}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(received) == len(TYPES) else 1


if __name__ == "__main__":
    sys.exit(main())
