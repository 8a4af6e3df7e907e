"""Publishes one known instance of every cfi_pose_ros message until killed (test helper)."""
import math
import sys

import rclpy
from geometry_msgs.msg import Point
from rclpy.node import Node

from cfi_pose_ros.msg import (HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3D,
                              HumanPose3DArray, Keypoint2D)


def sample_messages():
    kp = Keypoint2D(x=12.5, y=-3.25, score=0.75)
    missing = Keypoint2D(x=math.nan, y=math.nan, score=0.0)
    person = HumanKeypoints2D(id="p7", score=0.9, layout=HumanKeypoints2D.LAYOUT_COCO_17,
                              keypoints=[kp] * 16 + [missing])
    person.bbox.x_offset, person.bbox.y_offset, person.bbox.width, person.bbox.height = 10, 20, 30, 40
    people = HumanKeypoints2DArray(image_width=640, image_height=480, people=[person, person])
    people.header.frame_id = "camera_optical_frame"
    people.header.stamp.sec, people.header.stamp.nanosec = 1234, 5678
    human = HumanPose3D(id="p7", score=0.5, root_source=HumanPose3D.ROOT_FROM_INTRINSICS,
                        keypoints=[Point(x=0.1 * i, y=-0.2, z=3.0) for i in range(17)],
                        keypoint_scores=[0.5] * 17)
    human.body_pose.position.z = 3.0
    human.body_pose.orientation.w = 1.0
    humans = HumanPose3DArray(humans=[human])
    humans.header = people.header
    return {"keypoint_2d": kp, "human_keypoints_2d": person, "human_keypoints_2d_array": people,
            "human_pose_3d": human, "human_pose_3d_array": humans}


def main():
    rclpy.init()
    node = Node("dds_message_publisher")
    messages = sample_messages()
    publishers = {topic: node.create_publisher(type(msg), f"/dds_test/{topic}", 10)
                  for topic, msg in messages.items()}

    def publish_all():
        for topic, msg in messages.items():
            publishers[topic].publish(msg)

    node.create_timer(0.05, publish_all)
    print("publishing", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
