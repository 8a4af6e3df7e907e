"""The lift node's output frame over DDS: with ``target_frame`` and a static
``target_from_camera`` every output (keypoints, body pose, header frame_id, markers) is in the
target frame; a target frame whose transform is unknown drops the frame and counts it; where
tf2_ros is missing (these machines) TF output is reported unavailable once and lifting goes on."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

if ros_available() is None:
    from cfi_pose_ros.msg import HumanPose3D
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg
    from ros_harness import NodeUnderTest, stamp_msg

CAMERA = "frames_test_camera_optical_frame"
# the camera 1.2 m up and 0.3 m forward on a robot, looking along its +x (optical z = base x)
TARGET_FROM_CAMERA = [0.3, 0.0, 1.2, -0.5, 0.5, -0.5, 0.5]


@pytest.fixture
def node_factory(tmp_path, ros_env):
    started = []

    def start(**overrides):
        node = NodeUnderTest(tmp_path, overrides=overrides)
        started.append(node)
        return node

    yield start
    for node in started:
        node.close()


def _frame(clip, sec: int):
    return stamp_msg(keypoints_msg(clip.pixels[20], clip.scores[20], clip.ids, clip.image_size, clip.layout,
                                   CAMERA, 0), sec)


def _use_camera_info(node, clip):
    info = camera_info_msg(clip.camera_matrix, clip.image_size, CAMERA)
    for attempt in range(100):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        out = node.send_and_receive(_frame(clip, 900 + attempt), timeout=5)
        if out is not None and out.humans[0].root_source == HumanPose3D.ROOT_FROM_INTRINSICS:
            return
    raise AssertionError(f"the node never used the CameraInfo:\n{node.log()}")


def _points(msg_points) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in msg_points])


def test_static_target_from_camera_puts_every_output_in_the_target_frame(node_factory):
    """A known pose (the clip frame, lifted here by the same pipeline in the camera frame) and a
    known transform: the node's poses, body poses and markers are that pose moved into base_link."""
    from cfi_pose_ros.frames import RigidTransform, camera_up
    from cfi_pose_ros.markers import skeleton_markers
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    clip = Clip.load()
    node = node_factory(target_frame="base_link", target_from_camera=TARGET_FROM_CAMERA)
    _use_camera_info(node, clip)
    msg = _frame(clip, 1000)
    out = node.send_and_receive(msg)
    assert out is not None, node.log()
    assert out.header.frame_id == "base_link" and (out.header.stamp.sec, out.header.stamp.nanosec) == (1000, 0)
    node.spin_until(lambda: 1000 * 10**9 in node.client.received.markers, 5.0)
    markers = node.client.received.markers[1000 * 10**9]

    in_camera = lift_keypoints(build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default), msg,
                               clip.camera_matrix, None)
    transform = RigidTransform.from_xyz_quaternion(TARGET_FROM_CAMERA)
    assert [h.id for h in out.humans] == [p.track_id for p in in_camera.people] == clip.ids
    for index, (human, person) in enumerate(zip(out.humans, in_camera.people)):
        assert human.root_source == HumanPose3D.ROOT_FROM_INTRINSICS
        expected = transform.apply(person.keypoints)
        assert np.allclose(_points(human.keypoints), expected, atol=1e-6)
        # people stand on the robot's floor plane, ~5 m ahead: up is +z in base_link now
        assert expected[10, 2] > expected[0, 2] > expected[3, 2] and 4.0 < expected[0, 0] < 7.0
        pose = human.body_pose
        assert np.allclose([pose.position.x, pose.position.y, pose.position.z], expected[0], atol=1e-6)
        q = transform.rotate(person.orientation_xyzw)
        assert np.allclose([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], q,
                           atol=1e-6)
        expected_markers = skeleton_markers(index, person.track_id, expected, lifetime=0.25, up=camera_up(transform))
        got = markers.markers[3 * index: 3 * index + 3]
        assert all(m.header.frame_id == "base_link" for m in got)
        assert np.allclose(_points(got[0].points), expected_markers[0].points, atol=1e-6)
        assert np.allclose(_points(got[1].points), expected_markers[1].points, atol=1e-6)
        label = got[2].pose.position
        assert np.allclose([label.x, label.y, label.z], expected_markers[2].points[0], atol=1e-6)


def test_unknown_target_transform_drops_the_frame_and_counts_it(node_factory):
    """No static transform and no tf2 transform camera -> base_link: those frames are dropped and
    counted, never published in the wrong frame; input already in base_link is lifted. Where
    tf2_ros is missing (here), the node says once that TF output is unavailable and goes on."""
    from cfi_pose_ros.node.transforms import load_tf2

    clip = Clip.load()
    node = node_factory(target_frame="base_link", tf_timeout=0.01)
    for k in range(5):
        node.client.publish(_frame(clip, 2000 + k))
        node.spin_for(0.2)
    assert node.client.received.poses == {}
    diag = node.latest_diagnostics()
    assert int(diag.get("dropped.no_transform", 0)) >= 1, diag
    assert "frame dropped (no_transform)" in node.log()
    for k in range(3):
        msg = _frame(clip, 2100 + k)
        msg.header.frame_id = "base_link"
        out = node.send_and_receive(msg)
        assert out is not None and out.header.frame_id == "base_link" and len(out.humans) == 2, node.log()
    if load_tf2()[0] is None:
        assert node.log().count("TF output unavailable") == 1, node.log()


def test_a_frame_id_with_a_leading_slash_comes_out_as_tf2_names_the_frame(node_factory):
    """A driver's ROS 1 style `/camera_optical_frame`: tf2 stores TF of `/x` as `x` but refuses to look
    up `/x` ("frame_ids cannot start with a '/'"), so poses and markers stamped with the slash could be
    placed by no tf2 consumer, RViz included, while their TF frames hung from the frame without it."""
    from cfi_pose_ros.frames import RigidTransform
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    clip = Clip.load()
    node = node_factory()
    msg = _frame(clip, 1200)
    msg.header.frame_id = "/" + CAMERA
    out = node.send_and_receive(msg)
    assert out is not None and len(out.humans) == 2, node.log()
    assert out.header.frame_id == CAMERA
    assert node.spin_until(lambda: 1200 * 10**9 in node.client.received.markers, 5.0)
    assert {m.header.frame_id for m in node.client.received.markers[1200 * 10**9].markers} == {CAMERA}
    # a target_frame given with the slash, as offline lifting and the node pass it on
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    lifted = lift_keypoints(pipeline, msg, clip.camera_matrix, None, target_frame="/base_link",
                            target_from_camera=RigidTransform.from_xyz_quaternion(TARGET_FROM_CAMERA))
    assert lifted.header.frame_id == "base_link" and lifted.poses_msg().header.frame_id == "base_link"
    assert {f.parent for f in lifted.tf_frames("body_", False)} == {"base_link"}


# A stand-in for tf2_ros (not installable from the Python registry) with the documented API the
# lifter uses; every lookup finds the identity, as a static transform would.
TF2_STAND_IN = """
from geometry_msgs.msg import TransformStamped


class TransformException(Exception):
    pass


class Buffer:
    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        found = TransformStamped()
        found.header.frame_id, found.child_frame_id = target_frame, source_frame
        found.transform.rotation.w = 1.0
        return found


class TransformListener:
    def __init__(self, buffer, node, *args, **kwargs):
        pass

    def unregister(self):
        pass


class TransformBroadcaster:
    def __init__(self, node, *args, **kwargs):
        self.pub_tf = node.create_publisher(TransformStamped, "/tf", 100)    # as tf2_ros' own does

    def sendTransform(self, transforms):
        pass
"""


def _use_tf2_stand_in(tmp_path, ros_env, monkeypatch, source: str = TF2_STAND_IN) -> None:
    """Put ``source`` (the stand-in above, or a variant of it) first on the PYTHONPATH of the nodes
    started from here on, as the module ``tf2_ros``."""
    package = tmp_path / "tf2_stand_in" / "tf2_ros"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", f"{package.parent}:{ros_env.get('PYTHONPATH', '')}")


def test_the_tf2_listener_is_made_once_and_kept_across_cleanup_and_configure(ros_env, monkeypatch):
    """Each configure made the tf2 listener (a node, an executor, a thread) and each cleanup closed
    it: 1.4 MB of memory per cycle were never given back (80 cycles took the lifter from 471 to
    587 MB of RSS; with the listener kept, 481 to 489), so a supervisor reconfiguring it now and
    then grew it for good. It is
    made once, kept (its buffer holds the world's transforms, /tf_static's among them, which would
    not come again) and closed at shutdown."""
    import os
    import sys
    import types

    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from cfi_pose_ros.node.lift_node import LiftNode

    tf2_ros = types.ModuleType("tf2_ros")
    exec(TF2_STAND_IN, tf2_ros.__dict__)
    monkeypatch.setitem(sys.modules, "tf2_ros", tf2_ros)
    if not rclpy.ok():
        rclpy.init()            # the listener's node is in the default context
    context = rclpy.Context()
    rclpy.init(context=context)
    node = LiftNode(f"kept_listener_{os.getpid()}", context=context,
                    parameter_overrides=[Parameter("backend", value="torch"),
                                         Parameter("target_frame", value="base_link")])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        lookup = node._tf_lookup
        assert lookup is not None and lookup._thread.is_alive()
        for _ in range(3):
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node._tf_lookup is lookup and lookup._thread.is_alive()
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert node._tf_lookup is None and not lookup._thread.is_alive()
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_negative_stamp_is_a_failed_tf2_lookup_not_an_exception(ros_env):
    """builtin_interfaces/Time's sec is signed: `ros2 topic pub` sends sec -1 as readily as 1.
    rclpy's Time.from_msg refuses it with a ValueError, which escaped the lookup (only LookupError is
    a dropped frame) and the subscription callback: the lifter aborted."""
    import types

    import rclpy
    from builtin_interfaces.msg import Time

    from cfi_pose_ros.node.transforms import TransformLookup

    tf2_ros = types.ModuleType("tf2_ros")
    exec(TF2_STAND_IN, tf2_ros.__dict__)
    if not rclpy.ok():
        rclpy.init()
    lookup = TransformLookup(tf2_ros, "test_negative_stamp")
    try:
        assert np.allclose(lookup.lookup("base_link", CAMERA, Time(sec=5), 0.01).translation, 0.0)
        with pytest.raises(LookupError, match="at the input's stamp"):
            lookup.lookup("base_link", CAMERA, Time(sec=-1, nanosec=500_000_000), 0.01)
    finally:
        lookup.close()


@pytest.mark.parametrize("translation, rotation, usable", [
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.71, 0.71), True),       # |q|^2 = 1.0082: tf2 stores it as sent
    ((float("inf"), 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), False),
    ((1e30, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), False),       # every joint on one float64 number
])
def test_a_transform_tf2_returns_is_normalised_or_a_failed_lookup_never_an_exception(
        ros_env, translation, rotation, usable):
    """tf2 accepts a quaternion within 0.01 of unit squared norm and any finite or infinite
    translation: RigidTransform refused such a lookup result with a ValueError, which left the
    subscription callback (only LookupError is a dropped frame) and the lifter exited."""
    import types

    import rclpy
    from builtin_interfaces.msg import Time

    from cfi_pose_ros.node.transforms import TransformLookup

    tf2_ros = types.ModuleType("tf2_ros")
    exec(TF2_STAND_IN.replace("found.transform.rotation.w = 1.0",
                              f"t, q = found.transform.translation, found.transform.rotation\n"
                              f"        t.x, t.y, t.z = (float(v) for v in {[str(v) for v in translation]!r})\n"
                              f"        q.x, q.y, q.z, q.w = {rotation!r}"), tf2_ros.__dict__)
    if not rclpy.ok():
        rclpy.init()
    lookup = TransformLookup(tf2_ros, "test_tf2_result")
    try:
        if usable:
            found = lookup.lookup("base_link", CAMERA, Time(sec=5), 0.01)
            assert np.isclose(np.linalg.norm(found.rotation_xyzw), 1.0)
            np.testing.assert_allclose(found.rotation_xyzw, np.array(rotation) / np.linalg.norm(rotation))
        else:
            with pytest.raises(LookupError, match="tf2 gives is unusable"):
                lookup.lookup("base_link", CAMERA, Time(sec=5), 0.01)
    finally:
        lookup.close()


def test_a_static_target_frame_the_input_is_already_in_leaves_it_there(node_factory):
    """target_frame base_link with a static target_from_camera, and keypoints stamped in base_link
    itself: the static transform was applied anyway (7 m off, labelled base_link), where the tf2 path
    takes such an input as it is."""
    clip = Clip.load()
    node = node_factory(target_frame="base_link", target_from_camera=TARGET_FROM_CAMERA)
    in_camera = node.send_and_receive(_frame(clip, 300))
    in_target = _frame(clip, 301)
    in_target.header.frame_id = "/base_link"                    # as tf2 names it, a slash or not
    out = node.send_and_receive(in_target)
    assert out is not None and out.header.frame_id == "base_link", node.log()
    from cfi_pose_ros.frames import RigidTransform

    rotation = RigidTransform.from_xyz_quaternion(TARGET_FROM_CAMERA).matrix      # root-relative: rotated only
    for lifted, placed in zip(out.humans, in_camera.humans, strict=True):
        assert lifted.root_source == placed.root_source == HumanPose3D.ROOT_RELATIVE
        np.testing.assert_allclose(_points(lifted.keypoints) @ rotation.T, _points(placed.keypoints), atol=1e-4)


def test_no_person_frame_takes_the_camera_frame_s_name_under_a_robot_frame():
    """With target_frame base_link, prefix head_ and a person of id `camera`, base_link -> head_camera
    was sent at that person's pose: tf2 re-parents the camera frame to it."""
    from cfi_pose_ros.frames import RigidTransform
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    clip = Clip.load()
    msg = keypoints_msg(clip.pixels[20], clip.scores[20], ["camera", "greeter"], clip.image_size, clip.layout,
                        "head_camera", 0)
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    lifted = lift_keypoints(pipeline, stamp_msg(msg, 5), clip.camera_matrix, None, target_frame="base_link",
                            target_from_camera=RigidTransform.from_xyz_quaternion(TARGET_FROM_CAMERA))
    assert [p.track_id for p in lifted.people] == ["camera", "greeter"]
    assert [f.child for f in lifted.tf_frames("head_", False)] == ["head_greeter"]


def test_a_negative_stamp_with_a_tf2_target_frame_drops_that_frame_and_the_node_goes_on(
        tmp_path, ros_env, node_factory, monkeypatch):
    """The lifter with target_frame through tf2 (the stand-in above, on its PYTHONPATH): a frame
    stamped sec -3 aborted the process (exit -6), then failed its tf2 lookup (no_transform); now it
    is dropped as negative_stamp before any lookup."""
    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch)
    clip = Clip.load()
    node = node_factory(target_frame="base_link", tf_timeout=0.01)
    assert "(tf2 lookup)" in node.log(), node.log()
    out = node.send_and_receive(_frame(clip, 100))
    assert out is not None and out.header.frame_id == "base_link", node.log()
    for _ in range(5):
        node.client.publish(_frame(clip, -3))
        node.spin_for(0.1)
    out = node.send_and_receive(_frame(clip, 101))
    assert out is not None and out.header.stamp.sec == 101, node.log()
    assert node.process.poll() is None and "Traceback" not in node.log(), node.log()
    assert int(node.latest_diagnostics().get("dropped.negative_stamp", 0)) >= 1


def test_an_output_topic_set_to_the_tf_topic_answers_success_saying_configure_would_fail(tmp_path, ros_env,
                                                                                       node_factory, monkeypatch):
    """With tf2 (the stand-in here) and publish_tf, configure makes a TF broadcaster, whose /tf
    publisher is of another type than any output: `ros2 param set /cfi_pose_lifter output_topic /tf`
    while unconfigured answered a plain success, and only configure said no. The reason says so at
    once, as for the node's other topics; with publish_tf false /tf is free."""
    from lifecycle_msgs.msg import Transition

    from ros_harness import LifecycleClient, ParameterClient

    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch)
    node = node_factory(publish_tf=True, autostart=False)
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    (result,) = params.set(output_topic="/tf")
    assert result.successful and result.reason == (
        "set; configure would fail as the parameters now stand: output_topic /tf is its /tf (publish_tf) too, a "
        "topic of one message type (tf2_msgs/msg/TFMessage, not cfi_pose_ros/msg/HumanPose3DArray)"), result.reason
    assert not LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until).transition(
        Transition.TRANSITION_CONFIGURE)
    assert "rt/tf with incompatible type" in node.log()
    params.set_ok(publish_tf=False)
    assert params.set(output_topic="/tf")[0].reason == ""


def test_the_tf_publisher_is_there_while_publish_tf_is_and_goes_at_shutdown(tmp_path, ros_env, node_factory,
                                                                           monkeypatch):
    """The /tf publisher (through the stand-in broadcaster, which makes one as tf2_ros' does) was made
    once and never released: a node configured with publish_tf false, and a finalized one, still
    advertised /tf. Each configure with publish_tf true after one with it false had also made another
    broadcaster and kept the last one's publisher and clock-jump callback. Read from the graph, in
    the running lifter."""
    from lifecycle_msgs.msg import Transition

    from ros_harness import LifecycleClient, ParameterClient

    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch)
    node = node_factory(publish_tf=True)
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)

    def tf_publishers() -> int:
        return sum(info.node_name == "cfi_pose_lifter" for info in node.client.get_publishers_info_by_topic("/tf"))

    assert node.spin_until(lambda: tf_publishers() == 1, 10), node.log()
    for publish_tf in (False, True, False, True):
        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        params.set_ok(publish_tf=publish_tf)
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert node.spin_until(lambda: tf_publishers() == int(publish_tf), 10), (publish_tf, node.log())
    assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert node.spin_until(lambda: tf_publishers() == 0, 10), node.log()
    assert node.process.poll() is None


TF2_CACHE_NS = 10 * 10**9        # tf2_ros.Buffer's default cache time


def tf2_problems(sent: list[dict]) -> list[str]:
    """What one tf2 listener would refuse or warn about in the transforms ``sent`` (in order; dicts of
    parent, child, sec, nanosec, t, q), by tf2's rules (ros2/geometry2: BufferCore::setTransformImpl,
    TimeCache::insertData): one leading '/' of a name is dropped and a name still starting with one can
    be looked up by no one; a frame its own parent, an empty name, a NaN or a quaternion whose squared
    norm is 0.01 or more off 1 is refused; a stamp more than the cache time older than the newest of
    that frame is TF_OLD_DATA; a stamp the frame holds already, TF_REPEATED_DATA. Plus a loop in the
    tree the newest transforms make."""
    problems, stamps, parents = [], {}, {}
    for transform in sent:
        parent, child = (name[1:] if name.startswith("/") else name
                         for name in (transform["parent"], transform["child"]))
        stamp = transform["sec"] * 10**9 + transform["nanosec"]
        values = transform["t"] + transform["q"]
        where = f"{transform['parent']!r} -> {transform['child']!r} at {stamp} ns"
        refused = [reason for reason, bad in (
            ("TF_SELF_TRANSFORM", parent == child), ("TF_NO_CHILD_FRAME_ID", not child),
            ("TF_NO_FRAME_ID", not parent), ("TF_NAN_INPUT", any(np.isnan(values))),
            ("TF_DENORMALIZED_QUATERNION", not abs(sum(v * v for v in transform["q"]) - 1.0) < 10e-3),
            ("a name starting with '/'", parent.startswith("/") or child.startswith("/"))) if bad]
        held = stamps.setdefault(child, [])
        if not refused and held and stamp < max(held) - TF2_CACHE_NS:
            refused.append("TF_OLD_DATA")
        if not refused and stamp in held:
            refused.append("TF_REPEATED_DATA")
        problems += [f"{reason}: {where}" for reason in refused]
        if refused:
            continue
        held.append(stamp)
        parents[child], frame, seen = parent, child, set()
        while frame in parents and frame not in seen:
            seen.add(frame)
            frame = parents[frame]
        if frame in seen:
            problems.append(f"a loop through {frame!r}: {where}")
    return problems


def _record_tf(tmp_path, ros_env, monkeypatch):
    """The stand-in on the PYTHONPATH of the nodes started from here on, its broadcaster recording
    what it sends; returns a function that reads the transforms sent so far (dicts of parent, child,
    sec, nanosec, t, q, in order)."""
    import json

    record = tmp_path / "tf_sent.jsonl"
    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch, TF2_STAND_IN.replace(
        "    def sendTransform(self, transforms):\n        pass",
        "    def sendTransform(self, transforms):\n"
        "        import json\n"
        f"        with open({str(record)!r}, 'a') as out:\n"
        "            out.writelines(json.dumps({'parent': t.header.frame_id, 'child': t.child_frame_id,\n"
        "                'sec': t.header.stamp.sec, 'nanosec': t.header.stamp.nanosec,\n"
        "                't': [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],\n"
        "                'q': [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,\n"
        "                      t.transform.rotation.w]}) + '\\n' for t in transforms)"))
    return lambda: [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_nothing_the_lifter_sends_on_tf_trips_tf2_s_rules(tmp_path, ros_env, node_factory, monkeypatch):
    """The running lifter (publish_tf, tf_joints, the ROS 1 style tf_prefix `/`), its TF output recorded
    through the stand-in's broadcaster, fed hostile ids (spaces, '/', unicode, empty, one id twice, an id
    that is the camera frame's name, `3` beside `3_head`), frame ids (`/cam`, `//cam`, empty; one with a
    space is dropped before any output, test_lift_node.py) and stamps (a message twice, a late one, one
    in 2038, zero; a negative one is dropped before any output, test_lift_node.py): tf2 refuses or warns about
    nothing it sends. With the prefix `/` the frame of the id named like the camera frame was
    sent as its own child (`/cam` under `cam`: tf2 drops the slash, TF_SELF_TRANSFORM in every
    listener); the frames of the input stamped ahead went out, and every later one was TF_OLD_DATA."""
    import time

    tf_sent = _record_tf(tmp_path, ros_env, monkeypatch)
    clip = Clip.load()
    node = node_factory(publish_tf=True, tf_joints=True, tf_prefix="/")
    _use_camera_info(node, clip)
    now = int(time.time())          # a live camera's stamps: the node's clock (zero stamps go out at it)
    inputs = [(clip.ids, CAMERA, (now, 0)), (clip.ids, CAMERA, (now, 0)), (clip.ids, CAMERA, (now - 1, 980_000_000)),
              ([CAMERA, "x"], CAMERA, (now + 1, 0)), (["3", "3_head"], CAMERA, (now + 2, 0)),
              (["a b", "a/b"], CAMERA, (now + 3, 0)), (["ü", ""], CAMERA, (now + 4, 0)),
              (["7", "7"], CAMERA, (now + 5, 0)), (clip.ids, "/" + CAMERA, (now + 6, 0)),
              (clip.ids, "//" + CAMERA, (now + 7, 0)), (clip.ids, "", (now + 8, 0)),
              (clip.ids, CAMERA, (2**31 - 1, 0)), (clip.ids, CAMERA, (now + 10, 0)),
              (clip.ids, CAMERA, (0, 0))]
    for ids, frame_id, (sec, nanosec) in inputs:
        msg = _frame(clip, sec)
        msg.header.frame_id, msg.header.stamp.nanosec = frame_id, nanosec
        for person, track_id in zip(msg.people, ids):
            person.id = track_id
        assert node.send_and_receive(msg) is not None, node.log()
        node.spin_for(0.2)          # the input is newest-only: the node is done with it before the next
    sent = tf_sent()
    assert tf2_problems(sent) == []
    assert "TF frames not sent: the input is stamped" in node.log()
    # named as tf2 names them; no frame for the id named like the camera frame, `3`'s head joint (it
    # would be `3_head`'s body frame), `3_head`, `a b` and `a/b` (both `a_b`), `7` twice, nor the empty id
    children = {t["child"] for t in sent}
    assert {"walker", "walker_head", "x", "x_head", "3", "3_left_wrist", "_", CAMERA, "3_head", "a_b", "7",
            ""} & children == {"walker", "walker_head", "x", "x_head", "3", "3_left_wrist", "_"}, children


# The stand-in's buffer with tf2's rule for a transform /tf carries at every stamp of a bag (a camera on
# a moving robot): tf2 refuses data more than its 10 s buffer older than the newest it holds
# (TimeCache::insertData, TF_OLD_DATA), so a lookup there fails, until the buffer is cleared.
TF2_CACHE_BUFFER = """
class Buffer:
    def __init__(self, *args, **kwargs):
        self.newest_ns = None

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        if self.newest_ns is not None and time.nanoseconds < self.newest_ns - 10 * 10**9:
            raise TransformException("TF_OLD_DATA: older than the buffer's newest transform - 10 s")
        self.newest_ns = max(self.newest_ns or 0, time.nanoseconds)
        found = TransformStamped()
        found.header.frame_id, found.child_frame_id = target_frame, source_frame
        found.transform.rotation.w = 1.0
        return found

    def clear(self):
        self.newest_ns = None
"""


def clock_reads(node, clock_pub, sec: int, timeout: float = 20.0) -> bool:
    """Whether the lifter's clock comes to read ``sec`` (its diagnostics are stamped with it) while
    /clock says so, within ``timeout`` s."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    def there() -> bool:
        clock_pub.publish(Clock(clock=Time(sec=sec)))
        return any(array.header.stamp == Time(sec=sec) for array in node.diagnostics[-5:])
    return node.spin_until(there, timeout)


def test_a_sim_time_bag_loop_clears_the_tf2_lookup_buffer(tmp_path, ros_env, node_factory, monkeypatch):
    """`ros2 bag play --loop --clock` of a 30 s bag, the lifter on sim time with target_frame through
    tf2: its buffer, made without a node, ran on the system clock and was never cleared at the loop,
    so every input of the next pass (until its stamps came within 10 s of the last pass's end) was
    dropped as no_transform. Now it is cleared when the lifter's clock jumps back, as every
    tf2_ros.Buffer on that clock clears itself."""
    from rosgraph_msgs.msg import Clock

    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch, TF2_STAND_IN.split("class Buffer:")[0] + TF2_CACHE_BUFFER
                      + "\n\nclass TransformListener:" + TF2_STAND_IN.split("class TransformListener:")[1])
    clip = Clip.load()
    node = node_factory(use_sim_time=True, target_frame="base_link", tf_timeout=0.01, diagnostics_period=0.1)
    clock_pub = node.client.create_publisher(Clock, "/clock", 10)

    def clock_at(sec: int) -> None:
        assert clock_reads(node, clock_pub, sec), node.log()

    for sec in (100, 115, 130):             # the first pass
        clock_at(sec)
        assert node.send_and_receive(_frame(clip, sec)) is not None, node.log()
    clock_at(100)                           # the bag again
    out = node.send_and_receive(_frame(clip, 101), timeout=5.0)
    assert out is not None and out.header.frame_id == "base_link", node.log()
    assert "dropped.no_transform" not in node.latest_diagnostics(), node.log()


def test_the_tf_listener_node_keeps_a_name_of_its_own_under_launch_s_node_rename(ros_env):
    """launch_ros starts a named node with `-r __node:=cfi_pose_lifter __ns:=/robot1`, global rules
    that rename every node of the process: the lifter's tf2 listener node became a second
    /robot1/cfi_pose_lifter. It keeps its own name, the namespace and the /tf remap."""
    import rclpy

    from cfi_pose_ros.node.transforms import listener_node

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "-r", "__node:=cfi_pose_lifter", "-r", "__ns:=/robot1",
                                      "-r", "/tf:=tf"])
    try:
        lifter = rclpy.create_node("lift_node", context=context)
        listener = listener_node(lifter.get_name(), context=context)
        assert lifter.get_fully_qualified_name() == "/robot1/cfi_pose_lifter"
        assert listener.get_fully_qualified_name() == "/robot1/cfi_pose_lifter_tf_listener"
        assert listener.resolve_topic_name("/tf") == "/robot1/tf"
        assert not [srv.srv_name for srv in listener.services if "parameter" in srv.srv_name]
    finally:
        rclpy.shutdown(context=context)


def test_two_lifters_moved_into_two_namespaces_have_their_tf_listeners_there(tmp_path, ros_env, monkeypatch):
    """`ros2 run cfi_pose_ros lift_node --ros-args -r cfi_pose_lifter:__ns:=/robot1 -p target_frame:=map`
    (and /robot2): a namespace rule for the lifter alone left its tf2 listener node in the root
    namespace, so the two lifters made two /cfi_pose_lifter_tf_listener (ROS warns that nodes share a
    name, and tools address one of them). Each listener is in its lifter's namespace now. Seen in the
    ROS graph from here, with the tf2 stand-in on the lifters' PYTHONPATH."""
    import os
    import subprocess

    import rclpy

    from cfi_pose_ros.node.process import LIFT_NODE, node_command, stop
    from ros_harness import spin_until

    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch)
    namespaces = [f"/robot{k}_{os.getpid()}" for k in (1, 2)]
    logs = [tmp_path / f"lifter{k}.log" for k in (1, 2)]
    overrides = {"autostart": True, "target_frame": "base_link",
                 "engine_cache_dir": str(tmp_path.parent / "engine_cache")}
    outputs = [log.open("w") for log in logs]
    processes = [subprocess.Popen(node_command(LIFT_NODE, overrides=overrides) + ["-r", f"cfi_pose_lifter:__ns:={ns}"],
                                  stdout=output, stderr=subprocess.STDOUT)
                 for ns, output in zip(namespaces, outputs)]
    if not rclpy.ok():
        rclpy.init()
    probe = rclpy.create_node(f"graph_probe_{os.getpid()}")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(probe)
    expected = {f"{ns}/{name}" for ns in namespaces for name in ("cfi_pose_lifter", "cfi_pose_lifter_tf_listener")}
    try:
        def logs_text() -> str:
            return "\n".join(log.read_text() for log in logs)

        assert spin_until(executor, lambda: logs_text().count("active: ") == 2
                          or any(p.poll() is not None for p in processes), 240.0), logs_text()
        assert all(p.poll() is None for p in processes) and "(tf2 lookup)" in logs_text(), logs_text()
        spin_until(executor, lambda: expected <= set(probe.get_fully_qualified_node_names()), 60.0)
        names = probe.get_fully_qualified_node_names()
        assert expected <= set(names), names
        assert len(names) == len(set(names)), names
    finally:
        executor.shutdown()
        probe.destroy_node()
        for process, output in zip(processes, outputs):
            stop(process)
            output.close()


def test_markers_with_lifetime_0_clear_the_last_frame_s_and_keep_each_person_s_input_index():
    """Marker.msg: lifetime 0 is forever, so without a DELETEALL the markers of people who left stayed
    in RViz for good; and an untracked person's colour and "person <index>" label follow its index in
    the input (what the 2D drawing uses), not its rank among the people that were not dropped."""
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.lifting import LiftedFrame
    from cfi_pose_ros.pipeline import ROOT_FROM_INTRINSICS, LiftedPerson

    keypoints = np.zeros((17, 3)) + [0.0, 0.0, 4.0]
    keypoints[:, 1] = np.linspace(0.0, -1.0, 17)
    person = LiftedPerson(track_id="", score=0.9, keypoints=keypoints, keypoint_scores=np.ones(17),
                          root_source=ROOT_FROM_INTRINSICS, position=keypoints[0],
                          orientation_xyzw=np.array([0.0, 0.0, 0.0, 1.0]), source_index=2)
    frame = LiftedFrame(Header(frame_id=CAMERA), [person])
    forever = frame.markers_msg(0.0).markers
    assert forever[0].action == Marker.DELETEALL and all(m.action == Marker.ADD for m in forever[1:])
    assert all(m.action == Marker.ADD for m in frame.markers_msg(0.25).markers)
    assert LiftedFrame(Header(frame_id=CAMERA), []).markers_msg(0.0).markers[0].action == Marker.DELETEALL
    label = next(m for m in forever if m.type == Marker.TEXT_VIEW_FACING)
    assert label.text == "person 2" and {m.id for m in forever[1:]} == {6, 7, 8}


@pytest.mark.parametrize("lifetime", [5e-5, 1e-4])
def test_a_lifetime_rviz_never_expires_also_clears_the_last_frame_s_markers(lifetime):
    """RViz2 (marker_common.cpp, configureMarker) expires a marker only when its lifetime is over
    100 us: with marker_lifetime 5e-5 neither RViz nor a DELETEALL removed the skeletons of people
    who left, and they stayed for good."""
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.lifting import LiftedFrame

    assert [m.action for m in LiftedFrame(Header(frame_id=CAMERA), []).markers_msg(lifetime).markers] \
        == [Marker.DELETEALL]
    assert LiftedFrame(Header(frame_id=CAMERA), []).markers_msg(2e-4).markers == []   # RViz expires these


def _one_placed_one_not(clip):
    """The clip's frame 20 through a telescope's focal length (1.5e5 px, which the camera checks
    accept), its walker shrunk to half size around the pelvis: the greeter is placed about 650 m away,
    the walker's solve lands past 1 km and the walker stays root-relative (too_far_to_place)."""
    pixels = clip.pixels[20].copy()
    pixels[0] = pixels[0, 0] + 0.5 * (pixels[0] - pixels[0, 0])
    camera_matrix = clip.camera_matrix.copy()
    camera_matrix[0, 0] = camera_matrix[1, 1] = 1.5e5
    msg = keypoints_msg(pixels, clip.scores[20], clip.ids, clip.image_size, clip.layout, CAMERA, 0)
    return stamp_msg(msg, 7), camera_matrix


@pytest.mark.parametrize("target", [False, True])
def test_a_root_relative_person_is_not_drawn_where_the_frame_places_people(target):
    """A person who cannot be placed in a frame lifted with intrinsics (here too_far_to_place) was
    drawn at root-relative coordinates in the output frame: a skeleton standing inside the camera (or
    at base_link's origin), beside the placed people. The poses still carry them (root_source 0);
    the markers draw the placed people only. Without intrinsics, where nobody can be placed, every
    person is drawn as before (root-relative, about the frame's origin)."""
    from cfi_pose_ros.frames import RigidTransform
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
    from cfi_pose_ros.pipeline import ROOT_FROM_INTRINSICS, ROOT_RELATIVE

    clip = Clip.load()
    msg, camera_matrix = _one_placed_one_not(clip)
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    where = dict(target_frame="base_link",
                 target_from_camera=RigidTransform.from_xyz_quaternion(TARGET_FROM_CAMERA)) if target else {}
    lifted = lift_keypoints(pipeline, msg, camera_matrix, None, **where)
    assert [(p.track_id, p.root_source) for p in lifted.people] == [("walker", ROOT_RELATIVE),
                                                                      ("greeter", ROOT_FROM_INTRINSICS)]
    assert [h.id for h in lifted.poses_msg().humans] == ["walker", "greeter"]
    drawn = lifted.marker_specs(0.25)
    assert {spec.id for spec in drawn} == {3, 4, 5}         # the greeter's (input index 1)
    assert min(np.linalg.norm(spec.points, axis=1).min() for spec in drawn) > 100.0
    assert [m.text for m in lifted.markers_msg(0.25).markers if m.text] == ["greeter"]

    unplaced = lift_keypoints(build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default), msg, None, None,
                              **where)
    assert {p.root_source for p in unplaced.people} == {ROOT_RELATIVE}
    assert {spec.id for spec in unplaced.marker_specs(0.25)} == {0, 1, 2, 3, 4, 5}


def test_two_cameras_numbering_people_alike_on_one_input_never_move_a_tf_frame_between_them(
        tmp_path, ros_env, node_factory, monkeypatch):
    """Two cameras' detectors whose ids both start from the same numbers, on one keypoints topic into
    one lifter (header.frame_id cam_a, cam_b; one CameraInfo naming no frame places both): body_walker
    went out under cam_a, then under cam_b, every frame: each tf2 lookup of it got one person or the
    other. A TF frame sent for one camera's people is not sent for another's while the first sent it
    within tf2's 10 s buffer (by the inputs' stamps); the poses are still published, the frames left
    out counted (dropped.tf_frame_conflict) and a throttled warning names both frames and the fix.
    Once the first camera has not sent it for more than the buffer, the other's person gets it."""
    import time

    tf_sent = _record_tf(tmp_path, ros_env, monkeypatch)
    clip = Clip.load()
    node = node_factory(publish_tf=True)
    info = camera_info_msg(clip.camera_matrix, clip.image_size, "")
    start = int(time.time()) - 60
    for attempt in range(100):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        out = node.send_and_receive(_frame(clip, start - 100 + attempt), timeout=5)
        if out is not None and out.humans[0].root_source == HumanPose3D.ROOT_FROM_INTRINSICS:
            break
    for k in range(6):
        for camera, shift, nanosec in (("cam_a", 0, 0), ("cam_b", 400, 500_000_000)):
            msg = _frame(clip, start + k)
            msg.header.frame_id, msg.header.stamp.nanosec = camera, nanosec
            for person in msg.people:
                for keypoint in person.keypoints:
                    keypoint.x += shift             # another view of other people
            out = node.send_and_receive(msg)
            assert out is not None and out.header.frame_id == camera and len(out.humans) == 2, node.log()
            assert {h.root_source for h in out.humans} == {HumanPose3D.ROOT_FROM_INTRINSICS}, node.log()
            node.spin_for(0.1)
    node.spin_for(0.5)
    sent = [t for t in tf_sent() if t["sec"] >= start]
    assert {(t["parent"], t["child"]) for t in sent} == {("cam_a", "body_walker"), ("cam_a", "body_greeter")}, sent
    assert len(sent) == 12
    log = node.log()
    assert "'cam_a'" in log and "'cam_b'" in log and "tf_prefix" in log, log
    assert int(node.latest_diagnostics().get("dropped.tf_frame_conflict", 0)) >= 2
    # cam_a silent for more than tf2's buffer (by the stamps): cam_b's people get the frames
    msg = _frame(clip, start + 5 + 11)
    msg.header.frame_id = "cam_b"
    assert node.send_and_receive(msg) is not None, node.log()
    assert node.spin_until(lambda: len([t for t in tf_sent() if t["sec"] >= start]) == 14, 5.0), tf_sent()
    assert {(t["parent"], t["child"]) for t in tf_sent() if t["sec"] == start + 16} \
        == {("cam_b", "body_walker"), ("cam_b", "body_greeter")}


def test_a_clock_message_of_no_ros_time_is_ignored_not_the_end_of_the_lifter(tmp_path, ros_env, node_factory,
                                                                              monkeypatch):
    """On sim time (`-p use_sim_time:=true`, which reaches the tf2 listener node too), one /clock message
    stamped before time 0 (a simulator's or bridge's bug): rclpy's TimeSource raised ValueError out of
    the executor and the lifter exited with a traceback (the listener's spin thread died of it too). It
    is ignored with a warning, the clock stays where it was and goes on with the next valid /clock."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    _use_tf2_stand_in(tmp_path, ros_env, monkeypatch)
    clip = Clip.load()
    node = node_factory(use_sim_time=True, target_frame="base_link", tf_timeout=0.01, diagnostics_period=0.1)
    clock_pub = node.client.create_publisher(Clock, "/clock", 10)

    assert clock_reads(node, clock_pub, 100), node.log()
    for bad in (Time(sec=-5), Time(sec=-1, nanosec=999_999_999)):
        clock_pub.publish(Clock(clock=bad))
        node.spin_for(0.3)
    node.spin_for(1.0)
    assert node.process.poll() is None, node.log()
    assert node.diagnostics[-1].header.stamp == Time(sec=100), node.diagnostics[-1].header.stamp
    assert "/clock message ignored, the node's clock stays at its time: stamped -5 s" in node.log(), node.log()
    assert "Traceback" not in node.log(), node.log()
    assert clock_reads(node, clock_pub, 101), node.log()
    out = node.send_and_receive(_frame(clip, 101), timeout=5.0)
    assert out is not None and out.header.frame_id == "base_link", node.log()


def test_the_detector_and_the_tf2_listener_node_ignore_a_clock_message_of_no_ros_time(ros_env):
    """As the lifter (above): the detector's /clock subscription, and the tf2 listener node's where
    use_sim_time reaches every node of the process, drop a /clock stamped before time 0 (it raised
    ValueError out of the executor, or out of the listener's spin thread) and keep their time."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from cfi_pose_ros.node.detect_node import DetectNode
    from cfi_pose_ros.node.transforms import listener_node

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "-p", "use_sim_time:=true"])
    try:
        for node in (DetectNode(context=context, parameter_overrides=[Parameter("use_sim_time", value=True)]),
                     listener_node("cfi_pose_lifter", context=context)):
            subscription, = [sub for sub in node.subscriptions if sub.topic_name == "/clock"]
            for sec in (100, -3):
                subscription.callback(Clock(clock=Time(sec=sec)))
            assert node.get_clock().now().nanoseconds == 100 * 10**9, node.get_name()
    finally:
        rclpy.shutdown(context=context)


def test_a_late_frame_after_a_sim_reset_to_time_0_does_not_poison_every_tf2_listener(
        tmp_path, ros_env, node_factory, monkeypatch):
    """A simulator reset (Gazebo, Isaac Sim) sends /clock back to 0 and often stays paused there. A
    frame of the run before still in flight (a detector's latency) came in stamped 129.5 s: the lifter
    took a clock reading 0 for "sim time, no /clock yet" and sent its TF frames, which every listener on
    sim time (its buffer cleared at the jump back) then kept as the newest, refusing each frame of the new
    run (stamped 0.1 s, 0.2 s, ...) as TF_OLD_DATA for the next 119.5 s of sim time. A clock that has run
    and is back at 0 is a time: the frame is more than tf2's buffer ahead of it and is not sent."""
    from rosgraph_msgs.msg import Clock

    tf_sent = _record_tf(tmp_path, ros_env, monkeypatch)
    clip = Clip.load()
    node = node_factory(use_sim_time=True, publish_tf=True, diagnostics_period=0.1)
    clock_pub = node.client.create_publisher(Clock, "/clock", 10)

    def clock_at(sec: int) -> None:
        assert clock_reads(node, clock_pub, sec), node.log()

    def lift(sec: int, nanosec: int = 0) -> None:
        msg = _frame(clip, sec)
        msg.header.stamp.nanosec = nanosec
        assert node.send_and_receive(msg) is not None, node.log()
        node.spin_for(0.2)          # the input is newest-only: the node is done with it before the next

    clock_at(130)                   # the run before the reset
    _use_camera_info(node, clip)    # (its frames are stamped 900 s on: too far ahead to be sent)
    lift(129)
    lift(130)
    assert {t["sec"] for t in tf_sent()} == {129, 130}, tf_sent()
    clock_at(0)                     # reset, and paused there
    after_reset = len(tf_sent())
    lift(129, 500_000_000)          # the old run's, late
    lift(0, 100_000_000)            # the new run's
    lift(0, 200_000_000)
    sent = tf_sent()[after_reset:]
    assert {(t["sec"], t["nanosec"]) for t in sent} == {(0, 100_000_000), (0, 200_000_000)}, sent
    # a listener on sim time cleared its buffer at the jump back: nothing it is sent since is refused
    assert tf2_problems(sent) == [], tf2_problems(sent)


def test_play_bag_clock_drives_a_sim_time_lifter_through_each_loop(tmp_path, ros_env, node_factory, monkeypatch):
    """The whole path of a robot's replay: ``play_bag --clock --loop`` into a real lift node with
    ``use_sim_time``. Each pass gives the recorded stamps on /human_pose_3d and each person's TF at
    every one of them: at the jump back the node's clock goes back with the bag's, listeners on sim
    time clear their buffers, and the node sends the same stamps again (it would otherwise hold them
    back as repeats, and the second pass had no TF), never one twice within a pass. The node's
    diagnostics read the bag's time."""
    import os
    import signal
    import subprocess
    import sys

    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanPose3DArray
    from cfi_pose_ros.node.conversions import stamp_ns

    sent_tf = _record_tf(tmp_path, ros_env, monkeypatch)
    frame, count, spacing_ns, t0 = "bag_loop_camera_optical_frame", 8, 50_000_000, 1_700_000_000 * 10**9
    node = node_factory(use_sim_time=True, publish_tf=True, diagnostics_period=0.1)
    clip = Clip.load()
    stamps = [t0 + k * spacing_ns for k in range(count)]
    with BagWriter(tmp_path / "loop.mcap") as writer:
        writer.write(node.topics["camera_info_topic"], camera_info_msg(clip.camera_matrix, clip.image_size, frame),
                     t0 - spacing_ns)
        for k, stamp in enumerate(stamps):
            writer.write(node.topics["input_topic"], keypoints_msg(
                clip.pixels[3 * k], clip.scores[3 * k], clip.ids, clip.image_size, clip.layout, frame, stamp), stamp)
    outputs, diagnostics = [], []
    node.client.create_subscription(HumanPose3DArray, node.topics["output_topic"],
                                    lambda msg: outputs.append(stamp_ns(msg.header)),
                                    QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.client.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: diagnostics.append(
        stamp_ns(msg.header)) if any(s.name.startswith("cfi_pose_lifter") for s in msg.status) else None, 100)
    player = subprocess.Popen([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(tmp_path / "loop.mcap"),
                               "--clock", "100", "--loop", "--wait-for-subscribers", "20", "--delay", "0.3"],
                              env={**ros_env, "PYTHONPATH": os.environ["PYTHONPATH"]}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    node.spin_until(lambda: sum(s == stamps[-1] for s in outputs) >= 2 or player.poll() is not None, 60)
    player.send_signal(signal.SIGINT)
    err = player.communicate(timeout=20)[1]
    assert player.returncode == 130, err
    # by pass, where the stamps go back (the input is best effort of depth 1: one may be lost to a
    # stall, nearly all arrive)
    def by_pass(stamped: list[tuple[str, int]]) -> list[set]:
        passes = [set()]
        for k, (what, stamp) in enumerate(stamped):
            if k and stamp < stamped[k - 1][1]:
                passes.append(set())
            passes[-1].add((what, stamp))
        return passes

    answered = [{stamp for _, stamp in p} for p in by_pass([("", stamp) for stamp in outputs])]
    assert len(answered) >= 2 and all(p <= set(stamps) and len(p) >= count - 1 for p in answered[:2]), \
        ([sorted((s - t0) // 10**6 for s in p) for p in answered], node.log())
    transforms = [(t["child"], t["sec"] * 10**9 + t["nanosec"]) for t in sent_tf() if t["parent"] == frame]
    sent = by_pass(transforms)
    people = {f"body_{person_id}" for person_id in clip.ids}
    for k in range(2):
        missing = {(child, stamp) for child in people for stamp in answered[k]} - sent[k]
        assert not missing, (k, sorted(missing), node.log())
    assert len(transforms) == sum(map(len, sent)), "a (person, stamp) sent twice within a pass"
    # stamped 0 before the first /clock (they keep coming on steady time), then the bag's time
    on_clock = [s for s in diagnostics if s != 0]
    assert on_clock and all(t0 - spacing_ns <= s <= stamps[-1] + 10**9 for s in on_clock), \
        [(s - t0) * 1e-9 for s in diagnostics]
