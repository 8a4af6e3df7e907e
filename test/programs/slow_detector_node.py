"""The detect node as its installed script runs it, whose 2D detection of an image stamped at or
after second ``SLOW_FROM_SEC`` (see below) takes the first argument's seconds longer: a slow backend
(a large model on the CPU, a GPU shared with training) that no fixture model is. The ROS arguments
follow. No input is known to make the fixture models that slow, so the tests inject it into a real
node process (test helper)."""
import sys
import time

from cfi_pose_ros.node.startup import start_ros_process

start_ros_process()

from cfi_pose_ros.node import detect_node  # noqa: E402
from cfi_pose_ros.node.base import exit_process, run  # noqa: E402

SLOW_FROM_SEC = 90_000      # images stamped earlier are detected as fast as the models go


def main() -> int:
    seconds = float(sys.argv[1])
    detect_and_track = detect_node.detect_and_track

    def slow_detect_and_track(detector, tracker, image, stamp_s, frame_id=None):
        if stamp_s is not None and stamp_s >= SLOW_FROM_SEC:
            time.sleep(seconds)
        return detect_and_track(detector, tracker, image, stamp_s, frame_id)

    detect_node.detect_and_track = slow_detect_and_track
    return run(detect_node.DetectNode, sys.argv[:1] + sys.argv[2:])


if __name__ == "__main__":
    exit_process(main())
