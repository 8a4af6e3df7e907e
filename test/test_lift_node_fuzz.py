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
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg
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
    node = NodeUnderTest(tmp_path_factory.mktemp("fuzz"), reliable_input=True)
    node.client.keypoints_pub = node.client.create_publisher(  # reliable and 1000 deep: every message arrives
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


# Lifecycle transitions by label, as `ros2 lifecycle set` names them: {label: {from state: to state}}
UNCONFIGURED, INACTIVE, ACTIVE = 1, 2, 3
TRANSITIONS = {"configure": {UNCONFIGURED: INACTIVE}, "cleanup": {INACTIVE: UNCONFIGURED},
               "activate": {INACTIVE: ACTIVE}, "deactivate": {ACTIVE: INACTIVE}}
# (name, value, the states that accept it): live, configure-time (or the value it has), read-only;
# valid, out of range, wrong type
PARAMETER_SETS = [("max_people", 1, "any"), ("max_people", 3, "any"), ("max_people", 64, "any"),
                  ("max_people", 0, "none"), ("flip_test", True, "any"), ("flip_test", False, "any"),
                  ("publish_markers", False, "any"), ("publish_markers", True, "any"),
                  ("body_size_prior", 1, "none"), ("min_valid_joints", 18, "none"),
                  ("tf_prefix", "robot_body_", "unconfigured"), ("tf_prefix", "body_", "unconfigured"),
                  ("executor", "single_threaded", "none")]


def test_interleaved_lifecycle_parameters_and_frames_keep_the_node_consistent(tmp_path, ros_env):
    """A seeded walk over what an operator and the other nodes do at once (the tests above take
    them one at a time): `ros2 lifecycle set` (valid and invalid labels), `ros2 param set` of live,
    configure-time and read-only parameters (valid, out of range, wrong type) in every state, and
    clip frames of 2 or 6 people. After every step: get_state is what the transitions said, a set
    is accepted exactly when it should be and get_parameters then returns what was accepted, a
    frame is answered only while active and with at most max_people finite skeletons, the
    diagnostics' totals never go back, no error in the log; SIGINT at the end exits 0."""
    import random

    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from ros_harness import LifecycleClient, ParameterClient, call_service

    name = "cfi_pose_walk"          # not the module's fuzz_node, which may still run
    node = NodeUnderTest(tmp_path, overrides={"autostart": False, "diagnostics_period": 0.2}, node_name=name)
    lifecycle = LifecycleClient(node.client, name, node.spin_until)
    params = ParameterClient(node.client, name, node.spin_until)
    change = node.client.create_client(ChangeState, f"/{name}/change_state")
    get = node.client.create_client(GetParameters, f"/{name}/get_parameters")
    clip = Clip.load()
    rng, state, sec = random.Random(4), UNCONFIGURED, 20_000
    values = {"max_people": 64, "flip_test": False, "publish_markers": True, "tf_prefix": "body_"}
    try:
        for step in range(60):
            action = rng.choice(["transition", "transition", "parameter", "parameter", "frame", "frame"])
            if action == "transition":
                # mostly towards active (and back), sometimes one the state does not have
                label = rng.choice(list(TRANSITIONS) + 3 * [{UNCONFIGURED: "configure", INACTIVE: "activate",
                                                             ACTIVE: "deactivate"}[state]])
                answer = call_service(change, ChangeState.Request(transition=Transition(label=label)),
                                      node.spin_until)
                assert answer.success == (state in TRANSITIONS[label]), (step, label, state)
                state = TRANSITIONS[label].get(state, state)
                if label == "activate" and answer.success:      # until our publisher is matched
                    node.spin_until(lambda: node.client.keypoints_pub.get_subscription_count() > 0, 10)
            elif action == "parameter":
                parameter, value, accepted_in = rng.choice(PARAMETER_SETS)
                (result,) = params.set(**{parameter: value})
                same = values.get(parameter) == value
                expected = accepted_in == "any" or (accepted_in == "unconfigured" and (state == UNCONFIGURED or same))
                assert result.successful == expected, (step, parameter, value, state, result.reason)
                if result.successful:
                    values[parameter] = value
                answer = call_service(get, GetParameters.Request(names=list(values)), node.spin_until, attempts=3)
                assert dict(zip(values, map(parameter_value_to_python, answer.values))) == values, step
            else:
                sec += 1
                people = rng.choice([[0, 1], [0, 1] * 3])
                msg = stamp_msg(keypoints_msg(clip.pixels[step % 50][people], clip.scores[step % 50][people],
                                              [f"p{k}" for k in range(len(people))], clip.image_size, clip.layout,
                                              "walk_frame", 0), sec)
                if state == ACTIVE:
                    out = node.send_and_receive(msg)
                    assert out is not None and len(out.humans) == min(len(people), values["max_people"]), step
                    assert all(np.isfinite([[p.x, p.y, p.z] for p in h.keypoints]).all() for h in out.humans)
                else:
                    node.client.publish(msg)
                    node.spin_for(0.3)
                    assert sec * 10**9 not in node.client.received.poses, (step, state)
            assert node.process.poll() is None and lifecycle.state() == state, (step, node.log())
        totals = [[int(kv.value) for kv in status.values if kv.key in ("inputs_total", "outputs_total")]
                  for array in node.diagnostics for status in array.status if status.name == f"{name}: lifting"]
        assert totals and all(list(column) == sorted(column) for column in zip(*totals)), totals
    finally:
        code = node.close()
    assert code == 0, node.log()
    assert not [line for line in node.log().splitlines() if "[ERROR]" in line or "Traceback" in line], node.log()


# Values a float32 keypoint field can carry over the wire (1e308 arrives as inf), and float64 ones
# for CameraInfo's k, d and p
HOSTILE_FLOAT32 = [math.nan, math.inf, -math.inf, -0.0, 0.0, 3.4e38, -3.4e38, 1e-45, 1e-40, -1.0, 1e9, 5e5, 0.5]
HOSTILE_FLOAT64 = HOSTILE_FLOAT32 + [1e308, -1e308, 5e-324]
HOSTILE_IDS = ["", " ", "\x00", "\x01\n\t", "ü名前🙂", "a/b", "a b", "//", "..", "x" * 300, "dup", "dup", "\u202e"]
HOSTILE_FRAME_IDS = ["cam", "", "/", "//", "/cam", "ü名前🙂", "a" * 5000, "\x00x", "x\ny", "other_cam"]
HOSTILE_SIZES = [0, 1, 2, 640, 1000, 4000, 65535, 2**31, 2**32 - 1]


def test_hostile_frames_and_camera_infos_leave_the_next_valid_frame_lifted_as_before():
    """A seeded walk, in-process (the node's lift_keypoints and camera_or_size_from_info): frames of
    non-finite, denormal and float32-extreme coordinates and scores, 0 to 1000 joints, unknown
    layouts, up to 3000 people, hostile ids, frame ids, image sizes and stamps, CameraInfos of
    hostile k, d, p, binning and roi, and depth images of non-finite or extreme depths. Nothing
    raises (the node counts that as processing_error), whatever is published is finite and of 17
    joints, and a valid frame with a valid CameraInfo, every 40 steps, is lifted exactly as before
    the walk (no state left behind)."""
    import random

    from cfi_pose_ros.markers import DrawnMarkers
    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    rng, clip = random.Random(7), Clip.load()
    pipeline = lifting.build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    drawn = DrawnMarkers()

    def valid():
        msg = keypoints_msg(clip.pixels[3], clip.scores[3], clip.ids, clip.image_size, clip.layout, "cam", 0)
        return stamp_msg(msg, 5)

    good = lifting.camera_or_size_from_info(camera_info_msg(clip.camera_matrix, clip.image_size, "cam"))

    def lift_valid():
        k, lens, size, _ = good
        lifted = lifting.lift_keypoints(pipeline, valid(), k, size, None, "", None, lens, "", "cam")
        assert [h.root_source for h in lifted.poses_msg().humans] == [HumanPose3D.ROOT_FROM_INTRINSICS] * 2
        return np.array([h.keypoints for h in lifted.people])

    reference = lift_valid()

    def f32():
        return rng.choice(HOSTILE_FLOAT32) if rng.random() < 0.6 else rng.uniform(-100, 2000)

    def person():
        count = rng.choice([0, 16, 17, 17, 17, 18, 1000])
        if rng.random() < 0.4:          # one of the clip's people, a few joints spoiled
            f, i = rng.randrange(len(clip.pixels)), rng.randrange(2)
            points = [(*clip.pixels[f][i][j], clip.scores[f][i][j]) for j in range(17)]
            for _ in range(rng.randrange(4)):
                points[rng.randrange(17)] = (f32(), f32(), rng.random())
            count = 17
        elif rng.random() < 0.3:          # everyone at one pixel, or on one line
            x, y, slope = f32(), f32(), rng.choice([0.0, 1.0, math.inf])
            points = [(x + j * (slope != 0), y + j * (slope == 0), 1.0) for j in range(count)]
        else:
            points = [(f32(), f32(), f32() if rng.random() < 0.5 else rng.random()) for _ in range(count)]
        p = HumanKeypoints2D(id=rng.choice(HOSTILE_IDS), layout=0 if count == 17 and rng.random() < 0.5 else
                             rng.choice([0, 0, 1, 2, 255]),
                             score=f32() if rng.random() < 0.5 else rng.random())
        with np.errstate(over="ignore", invalid="ignore"):    # as the wire's float32 fields carry them
            p.keypoints = [Keypoint2D(x=float(np.float32(x)), y=float(np.float32(y)), score=float(np.float32(s)))
                           for x, y, s in points]
        return p

    def frame():
        width, height = (clip.image_size if rng.random() < 0.7
                         else (rng.choice(HOSTILE_SIZES), rng.choice(HOSTILE_SIZES)))
        msg = HumanKeypoints2DArray(image_width=width, image_height=height)
        count = rng.choice([0, 1, 2, 5, 65, 3000])
        msg.people = [person() for _ in range(min(count, 5))] * max(count // 5, 1) if count else []
        msg.header.frame_id = rng.choice(HOSTILE_FRAME_IDS + ["cam"] * 5)
        return stamp_msg(msg, rng.choice([0, 5, 5, 4, 2**31 - 1, -1]),
                         rng.choice([0, 0, 0, 1, 10**9 - 1, 10**9, 2**32 - 1]))

    def camera_info():
        f64 = lambda: rng.choice(HOSTILE_FLOAT64) if rng.random() < 0.6 else rng.uniform(-100, 2000)  # noqa: E731
        info = camera_info_msg(np.array([[f64(), 0, f64()], [0, f64(), f64()], [0, 0, 1]]) if rng.random() < 0.5
                               else clip.camera_matrix, (rng.choice(HOSTILE_SIZES), rng.choice(HOSTILE_SIZES)),
                               rng.choice(HOSTILE_FRAME_IDS))
        if rng.random() < 0.4:
            info.distortion_model = rng.choice(["plumb_bob", "rational_polynomial", "equidistant", "", "weird"])
            info.d = [f64() for _ in range(rng.choice([0, 1, 4, 5, 8, 14, 100]))]
        if rng.random() < 0.3:
            info.p = [f64() for _ in range(12)]
        if rng.random() < 0.3:
            info.binning_x, info.binning_y = rng.choice([0, 2, 2**32 - 1]), rng.choice([0, 3])
            info.roi.x_offset, info.roi.width = rng.choice([0, 10, 2**31]), rng.choice([0, 100, 2**32 - 1])
        return info

    camera = good + ("cam",)
    for step in range(400):
        if rng.random() < 0.2:
            camera = lifting.camera_or_size_from_info(camera_info(), rng.choice(["raw", "rectified"])) + (
                rng.choice(HOSTILE_FRAME_IDS),)
        k, lens, size, _, camera_frame = camera
        depth = None
        if rng.random() < 0.2:
            depth = np.full(rng.choice([(1, 1), (1002, 1000), (501, 500), (3, 2000)]),
                            rng.choice([np.nan, np.inf, 0.0, -1.0, 1e30, 3.0, 1e-30]), np.float32)
        lifted = lifting.lift_keypoints(pipeline, frame(), k, size, depth, "", None, lens, "", camera_frame)
        if lifted.publishable:
            for human in lifted.poses_msg().humans:
                points = np.array([[p.x, p.y, p.z] for p in human.keypoints])
                pose = human.body_pose
                assert points.shape == (17, 3) and np.isfinite(points).all(), step
                assert np.isfinite([pose.position.x, pose.position.y, pose.position.z, pose.orientation.w]).all()
            for marker in lifted.markers_msg(0.25, drawn=drawn).markers:
                assert np.isfinite([c for p in marker.points for c in (p.x, p.y, p.z)]).all(), step
        if step % 40 == 39:
            np.testing.assert_array_equal(lift_valid(), reference, err_msg=f"step {step}")
