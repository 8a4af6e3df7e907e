"""Property test: thousands of random messages thrown at the running node; it keeps publishing valid output."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.slow,
              pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

if ros_available() is None:
    from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3D, Keypoint2D
    from cfi_pose_ros.node.replay import Clip, keypoints_msg
    from ros_harness import NodeUnderTest, stamp_msg

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.floats(min_value=-50.0, max_value=2000.0, width=32))
keypoint = st.builds(lambda x, y, s: (x, y, s), floats, floats,
                     st.one_of(st.floats(0.0, 1.0, width=32), st.floats(width=32)))
person = st.tuples(st.sampled_from([0, 1, 2, 255]),                 # layouts, two of them unknown
                   st.lists(keypoint, min_size=0, max_size=20),
                   st.text(max_size=6), st.floats(width=32))
frame = st.tuples(st.lists(person, max_size=6), st.integers(0, 4000), st.integers(0, 4000))


def to_msg(example, sec: int):
    people, width, height = example
    msg = HumanKeypoints2DArray(image_width=width, image_height=height)
    for layout, keypoints, track_id, score in people:
        p = HumanKeypoints2D(id=track_id, layout=layout, score=score)
        p.keypoints = [Keypoint2D(x=x, y=y, score=s) for x, y, s in keypoints]
        msg.people.append(p)
    msg.header.frame_id = "fuzz_frame"
    return stamp_msg(msg, sec)


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory):
    if ros_available() is not None:
        pytest.skip(ros_available())
    node = NodeUnderTest(tmp_path_factory.mktemp("fuzz"), overrides={"input_reliability": "reliable"})
    node.client.keypoints_pub = node.client.create_publisher(  # reliable, deep queue: every message arrives
        HumanKeypoints2DArray, node.topics["input_topic"], 1000)
    clip = Clip.load()
    probe = keypoints_msg(clip.pixels[0], clip.scores[0], clip.ids, clip.image_size, clip.layout, "fuzz_frame", 0)
    assert node.send_and_receive(stamp_msg(probe, 1), timeout=60) is not None, node.log()
    yield node, clip
    assert node.close() == 0


def test_random_messages_never_break_the_node(fuzz_node):
    node, clip = fuzz_node
    counter = {"sec": 10}

    @settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(frame)
    def throw(example):
        counter["sec"] += 1
        node.client.publish(to_msg(example, counter["sec"]))
        node.executor.spin_once(timeout_sec=0.0)

    throw()
    node.spin_for(3.0)
    assert node.process.poll() is None, node.log()
    # every output that came back is a valid skeleton message
    outputs = [m for s, m in node.client.received.poses.items() if s >= 10 * 10**9]
    assert outputs, "the node published nothing for 2000 random messages"
    for msg in outputs:
        assert msg.header.frame_id == "fuzz_frame"
        for human in msg.humans:
            pts = np.array([[p.x, p.y, p.z] for p in human.keypoints])
            assert pts.shape == (17, 3) and np.isfinite(pts).all()
            assert human.root_source == HumanPose3D.ROOT_RELATIVE
            assert all(0.0 <= s <= 1.0 for s in human.keypoint_scores)
            assert 0.0 <= human.score <= 1.0 and not math.isnan(human.score)
    # and it still lifts a good frame afterwards
    good = keypoints_msg(clip.pixels[5], clip.scores[5], clip.ids, clip.image_size, clip.layout, "fuzz_frame", 0)
    answer = node.send_and_receive(stamp_msg(good, 999_999))
    assert answer is not None and len(answer.humans) == 2
    diag = node.latest_diagnostics()
    assert sum(int(v) for k, v in diag.items() if k.startswith("dropped.")) > 0
