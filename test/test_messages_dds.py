"""Every custom message crosses DDS between two real processes, field by field."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"


def test_each_custom_message_crosses_dds_between_processes(ros_env, python_exe):
    publisher = subprocess.Popen([python_exe, str(PROGRAMS / "dds_message_publisher.py")], env=ros_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        receiver = subprocess.run([python_exe, str(PROGRAMS / "dds_message_receiver.py"), "30"],
                                  env=ros_env, capture_output=True, text=True, timeout=90)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert receiver.returncode == 0, receiver.stdout + receiver.stderr
    got = {line["topic"]: line["msg"] for line in map(json.loads, receiver.stdout.splitlines())}
    assert set(got) == {"keypoint_2d", "human_keypoints_2d", "human_keypoints_2d_array",
                        "human_pose_3d", "human_pose_3d_array"}

    assert got["keypoint_2d"] == {"x": 12.5, "y": -3.25, "score": 0.75}
    person = got["human_keypoints_2d"]
    assert person["id"] == "p7" and person["layout"] == 1 and len(person["keypoints"]) == 17
    assert person["keypoints"][16] == {"x": "nan", "y": "nan", "score": 0.0}
    assert (person["bbox"]["x_offset"], person["bbox"]["height"]) == (10, 40)
    people = got["human_keypoints_2d_array"]
    assert (people["image_width"], people["image_height"], len(people["people"])) == (640, 480, 2)
    assert people["header"] == {"stamp": {"sec": 1234, "nanosec": 5678}, "frame_id": "camera_optical_frame"}
    human = got["human_pose_3d"]
    assert human["root_source"] == 1 and len(human["keypoints"]) == 17
    assert abs(human["keypoints"][3]["x"] - 0.3) < 1e-12 and human["keypoints"][3]["z"] == 3.0
    assert human["body_pose"]["orientation"]["w"] == 1.0
    humans = got["human_pose_3d_array"]
    assert humans["header"]["stamp"] == {"sec": 1234, "nanosec": 5678}
    assert humans["humans"][0]["id"] == "p7"


def test_messages_and_library_import_from_one_install_space(ros_env, python_exe):
    code = ("import cfi_pose_ros, cfi_pose_ros.model, cfi_pose_ros.skeleton, training.h36m;"
            "from cfi_pose_ros.msg import HumanPose3DArray;"
            "import os; print(os.path.dirname(cfi_pose_ros.__file__));"
            "print(os.path.dirname(os.path.dirname(HumanPose3DArray.__module__ and __import__('cfi_pose_ros.msg').msg.__file__)))")
    out = subprocess.run([python_exe, "-c", code], env=ros_env, capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    library_dir, msg_parent = out.stdout.split()
    assert library_dir == msg_parent
