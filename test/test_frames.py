"""Output frames: rigid transforms of a known pose (keypoints, body pose, markers), the TF frames
of each person (plain data and TransformStamped), and the tf2 glue where tf2_ros exists."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from cfi_pose_ros.body_pose import body_poses, quaternion_to_rotation_matrix
from cfi_pose_ros.frames import (TF_BUFFER_NS, OncePerStamp, OneCameraPerFrame, RigidTransform, camera_up, frame_name,
                                 person_frames, static_target_transform, transform_people)
from cfi_pose_ros.markers import skeleton_markers
from cfi_pose_ros.pipeline import ROOT_FROM_INTRINSICS, ROOT_RELATIVE, LiftedPerson
from cfi_pose_ros.skeleton import H36M_17
from conftest import ros_available

# A camera 1.2 m above base_link looking along base_link's +x: optical z (forward) = base x,
# optical x (right) = base -y, optical y (down) = base -z. Quaternion of that rotation matrix:
BASE_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
BASE_FROM_OPTICAL_Q = [-0.5, 0.5, -0.5, 0.5]
CAMERA_HEIGHT = 1.2


def standing_person(track_id="7", root_source=ROOT_FROM_INTRINSICS) -> LiftedPerson:
    """A person 4 m in front of the camera, 0.5 m to its right, facing it (optical frame, y down)."""
    rng = np.random.default_rng(3)
    kp = np.zeros((17, 3))
    kp[:, 1] = np.linspace(0.0, -0.9, 17)           # spread upwards
    kp[:, 0] = rng.normal(0.0, 0.1, 17)
    kp[H36M_17.index("right_hip")] = [-0.12, 0.0, 0.0]   # the person's right = the camera's left
    kp[H36M_17.index("left_hip")] = [0.12, 0.0, 0.0]
    kp[H36M_17.index("thorax")] = [0.0, -0.5, 0.02]
    kp[0] = 0.0
    kp += [0.5, 0.3, 4.0]
    position, orientation, ok = body_poses(kp)
    assert ok
    return LiftedPerson(track_id=track_id, score=0.9, keypoints=kp, keypoint_scores=np.ones(17),
                        root_source=root_source, position=position, orientation_xyzw=orientation, source_index=0)


def test_static_transform_parameter_is_parsed_and_checked():
    transform = RigidTransform.from_xyz_quaternion([0.0, 0.0, CAMERA_HEIGHT, *BASE_FROM_OPTICAL_Q])
    assert np.allclose(transform.matrix, BASE_FROM_OPTICAL)
    assert np.allclose(transform.apply([0.0, 0.0, 2.0]), [2.0, 0.0, CAMERA_HEIGHT])   # 2 m ahead of the camera
    for bad in ([0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 2.0], [0, 0, np.nan, 0, 0, 0, 1], [1, 2, 3]):
        with pytest.raises(ValueError):
            RigidTransform.from_xyz_quaternion(bad)


def test_a_static_transform_farther_than_any_earth_fixed_frame_is_refused():
    """target_from_camera [1e300, ...] was accepted: every person came out at the same float64 number.
    A UTM or ECEF translation (millions of metres) still passes."""
    utm = static_target_transform([4.5e5, 5.4e6, 120.0, 0, 0, 0, 1])
    assert np.allclose(utm.apply([0.0, 0.0, 2.0]), [4.5e5, 5.4e6, 122.0])
    for far in ([1e300, 0, 0, 0, 0, 0, 1], [0, 0, -2e8, 0, 0, 0, 1]):
        with pytest.raises(ValueError, match="from the target frame's origin"):
            static_target_transform(far)


def test_a_root_relative_person_in_the_target_frame_is_rotated_not_placed():
    """HumanPose3D: ROOT_RELATIVE keypoints have the pelvis at the origin. Moved like a placed person
    they stood at the camera's mount point (0, 0, 1.2 in base_link), markers included."""
    placed = standing_person()
    relative = LiftedPerson(**{**placed.__dict__, "root_source": ROOT_RELATIVE,
                               "keypoints": placed.keypoints - placed.position, "position": np.zeros(3)})
    transform = RigidTransform.from_xyz_quaternion([0.3, 0.0, CAMERA_HEIGHT, *BASE_FROM_OPTICAL_Q])
    [moved] = transform_people([relative], transform)
    assert np.allclose(moved.position, 0.0) and np.allclose(moved.keypoints[0], 0.0)
    assert np.allclose(moved.keypoints, relative.keypoints @ BASE_FROM_OPTICAL.T)


def test_an_unknown_orientation_stays_the_identity_in_the_target_frame():
    """HumanPose3D: identity orientation = the facing direction cannot be computed; rotated into the
    target frame it looked like a real orientation."""
    unknown = LiftedPerson(**{**standing_person().__dict__, "orientation_xyzw": np.array([0.0, 0.0, 0.0, 1.0])})
    transform = RigidTransform.from_xyz_quaternion([0.3, 0.0, CAMERA_HEIGHT, *BASE_FROM_OPTICAL_Q])
    [moved] = transform_people([unknown], transform)
    assert np.array_equal(moved.orientation_xyzw, [0.0, 0.0, 0.0, 1.0])


def test_a_known_pose_in_the_target_frame():
    person = standing_person()
    transform = RigidTransform.from_xyz_quaternion([0.0, 0.0, CAMERA_HEIGHT, *BASE_FROM_OPTICAL_Q])
    [moved] = transform_people([person], transform)
    expected = person.keypoints @ BASE_FROM_OPTICAL.T + [0.0, 0.0, CAMERA_HEIGHT]
    assert np.allclose(moved.keypoints, expected)
    # the pelvis, 4 m ahead and 0.5 m right of the camera, 0.3 m below it
    assert np.allclose(moved.position, [4.0, -0.5, CAMERA_HEIGHT - 0.3])
    # the body pose in the target frame is the one computed from the moved joints
    position, orientation, _ = body_poses(moved.keypoints)
    assert np.allclose(moved.position, position)
    assert np.allclose(quaternion_to_rotation_matrix(moved.orientation_xyzw),
                       quaternion_to_rotation_matrix(orientation), atol=1e-9)
    # facing the camera: the body's forward axis points back along base_link's -x, up is +z
    rotation = quaternion_to_rotation_matrix(moved.orientation_xyzw)
    assert rotation[:, 0] @ [-1.0, 0.0, 0.0] > 0.95 and rotation[:, 2] @ [0.0, 0.0, 1.0] > 0.95
    assert transform_people([person], None) == [person]


def test_markers_in_the_target_frame_are_the_camera_markers_moved():
    person = standing_person()
    transform = RigidTransform.from_xyz_quaternion([0.3, -0.2, CAMERA_HEIGHT, *BASE_FROM_OPTICAL_Q])
    [moved] = transform_people([person], transform)
    in_camera = skeleton_markers(0, person.track_id, person.keypoints, up=camera_up(None))
    in_target = skeleton_markers(0, moved.track_id, moved.keypoints, up=camera_up(transform))
    assert [m.type for m in in_target] == ["sphere_list", "line_list", "text"]
    for camera_marker, target_marker in zip(in_camera, in_target):
        assert np.allclose(transform.apply(camera_marker.points), target_marker.points)
    assert np.allclose(camera_up(transform), [0.0, 0.0, 1.0])    # the label floats up in base_link


def test_body_and_joint_frames_of_a_known_pose():
    person = standing_person("a/b 1")
    frames = person_frames([person], "base_link", prefix="body_", joints=True)
    body, joints = frames[0], frames[1:]
    assert (body.parent, body.child) == ("base_link", "body_a_b_1")
    assert np.allclose(body.translation, person.position) and np.allclose(body.rotation_xyzw, person.orientation_xyzw)
    assert [j.child for j in joints] == [frame_name("body_", "a/b 1", name) for name in H36M_17.joint_names]
    rotation = quaternion_to_rotation_matrix(body.rotation_xyzw)
    for joint, point in zip(joints, person.keypoints):
        assert joint.parent == "body_a_b_1" and np.allclose(joint.rotation_xyzw, [0, 0, 0, 1])
        # chaining parent -> body -> joint gives the joint where the pose message has it
        assert np.allclose(rotation @ joint.translation + body.translation, point)
    assert len(person_frames([person], "cam")) == 1                       # joints off by default


def test_no_frames_without_an_id_or_an_absolute_position():
    assert person_frames([standing_person("")], "cam") == []
    assert person_frames([standing_person("3", ROOT_RELATIVE)], "cam") == []
    # no parent frame (an input without header.frame_id), or a body frame named like its parent:
    # tf2 would reject either in every listener
    assert person_frames([standing_person("5")], "") == [] and person_frames([standing_person("5")], "/") == []
    assert person_frames([standing_person("cam")], "cam", prefix="") == []
    # the parent as tf2 and the poses' header name it: only a leading slash goes
    assert [f.parent for f in person_frames([standing_person("5")], "/cam/")] == ["cam/"]
    missing = standing_person("4")
    missing.keypoints[13] = np.nan
    assert len(person_frames([missing], "cam", joints=True)) == 1 + 16    # the NaN wrist has no frame


def test_an_id_two_people_share_gives_neither_a_frame():
    """Two people of one input with one id (or ids that become one frame name) gave two transforms of
    one child frame in one /tf message: tf2 keeps one and rejects the other, so body_<id> named either
    person. Smoothing already treats such an id as naming no single person; TF now does too."""
    twin = standing_person("7")
    twin.keypoints = twin.keypoints + [1.0, 0.0, 0.0]
    twin.position = twin.position + [1.0, 0.0, 0.0]
    other = standing_person("8")
    frames = person_frames([standing_person("7"), twin, other], "cam", joints=True)
    assert {f.child for f in frames if f.parent == "cam"} == {"body_8"}
    assert len(frames) == 1 + 17
    assert [f.child for f in person_frames([standing_person("a/b"), standing_person("a_b")], "cam")] == []
    assert len(person_frames([standing_person("7"), standing_person("7", ROOT_RELATIVE)], "cam")) == 1



def test_a_joint_frame_named_like_another_person_s_body_frame_is_nobody_s():
    """With tf_joints, person `3`'s head frame and person `3_head`'s body frame are both body_3_head:
    one /tf message held both, tf2 kept the first (the node's once-per-stamp gate even dropped the
    second) and 3_head's joint frames hung from 3's head. A joint frame named like the parent would
    close a loop in the tree."""
    frames = person_frames([standing_person("3"), standing_person("3_head")], "cam", joints=True)
    children = [f.child for f in frames]
    assert len(children) == len(set(children)) == 1 + 16
    assert "body_3_head" not in children and not any(f.parent == "body_3_head" for f in frames)
    assert {f.parent for f in frames} == {"cam", "body_3"}
    looped = person_frames([standing_person("3")], "body_3_head", joints=True)
    assert [f.child for f in looped] == [f.child for f in frames]

@pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))
def test_transform_stamped_from_a_known_pose():
    from builtin_interfaces.msg import Time

    from cfi_pose_ros.node.transforms import rigid_transform_from_msg, transform_stamped

    person = standing_person()
    frames = person_frames([person], "camera_optical_frame", joints=True)
    msgs = [transform_stamped(Time(sec=12, nanosec=5), frame) for frame in frames]
    body = msgs[0]
    assert (body.header.frame_id, body.child_frame_id) == ("camera_optical_frame", "body_7")
    assert (body.header.stamp.sec, body.header.stamp.nanosec) == (12, 5)
    t, q = body.transform.translation, body.transform.rotation
    assert np.allclose([t.x, t.y, t.z], person.position)
    assert np.allclose([q.x, q.y, q.z, q.w], person.orientation_xyzw)
    assert msgs[1 + 11].child_frame_id == "body_7_left_shoulder" and msgs[1 + 11].header.frame_id == "body_7"
    round_trip = rigid_transform_from_msg(body.transform)
    assert np.allclose(round_trip.apply(np.zeros(3)), person.position)


def test_each_tf_frame_goes_out_once_per_stamp():
    """tf2 warns TF_REPEATED_DATA in every listener for a transform at a stamp it holds: an input
    sent twice (or a zero-stamping driver) would do that every frame."""
    gate = OncePerStamp(max_frames=3)
    frames = person_frames([standing_person("7"), standing_person("8")], "camera")
    assert gate.admit(100, frames) == frames
    assert gate.admit(100, frames) == []                                      # the same stamp again
    assert gate.admit(99, frames) == frames                                   # a late frame: tf2 files it
    assert gate.admit(99, frames) == []                                       # ... once
    later = person_frames([standing_person("8"), standing_person("9")], "camera")
    assert [f.child for f in gate.admit(101, later)] == ["body_8", "body_9"]  # per frame, a new one passes
    assert gate.admit(100 - TF_BUFFER_NS - 1, frames) == frames               # the bag again: starts over
    assert gate.admit(100, frames) == frames                                  # ... and its stamps are new
    crowd = person_frames([standing_person(str(i)) for i in range(10, 14)], "camera")
    assert gate.admit(200, crowd) == crowd
    assert gate.admit(200, crowd) == crowd[:1]        # 3 frames remembered at most: body_10 was forgotten


def test_one_input_stamped_ahead_does_not_hold_a_persons_tf_frame_back():
    """A driver's clock glitch: one input stamped 9 s ahead (the node sends up to tf2's 10 s
    buffer ahead of its clock). Letting out only stamps newer than a frame's last kept the
    person's frame off /tf for the 9 s until the stamps caught up with the glitch."""
    gate = OncePerStamp()
    period_ns = 10**9 // 30
    person = person_frames([standing_person("7")], "camera")
    assert gate.admit(0, person) == person
    assert gate.admit(9 * 10**9, person) == person                  # the glitch
    for i in range(1, 60):                                         # the 2 s after it, on time
        assert gate.admit(i * period_ns, person) == person
    assert gate.admit(9 * 10**9, person) == []                       # the glitch's stamp is still sent once


def test_a_tf_frame_remembers_a_bounded_number_of_stamps():
    """Per frame at most ``max_stamps`` stamps are kept; a late stamp before the oldest one kept could
    repeat a forgotten one, so it is not sent; newer stamps still are."""
    gate = OncePerStamp(max_stamps=4)
    person = person_frames([standing_person("7")], "camera")
    for stamp in range(10, 16):
        assert gate.admit(stamp, person) == person
    assert gate.admit(11, person) == []            # forgotten (only 12-15 are kept), maybe sent: not again
    assert gate.admit(13, person) == []            # kept: sent
    assert gate.admit(16, person) == person


def test_tf_frames_of_people_gone_are_forgotten():
    """Every new person is a new frame: a node running for days among passers-by held the last
    stamp of each one it ever sent (up to 65,536 frames, 12-28 MB) though only a stamp within tf2's
    buffer of a frame's last one can repeat it."""
    gate = OncePerStamp()
    period_ns = 10**9 // 30
    for i in range(20_000):                             # 11 minutes at 30 Hz, a new person every frame
        assert len(gate.admit(i * period_ns, person_frames([standing_person(str(i))], "camera"))) == 1
    assert len(gate) <= 2 * TF_BUFFER_NS // period_ns + 1
    stays = person_frames([standing_person("stays")], "camera")
    assert gate.admit(20_000 * period_ns, stays) == stays
    assert gate.admit(20_000 * period_ns, stays) == []          # one still in view is still gated


def test_a_tf_frame_stays_with_the_camera_that_sent_it_within_tf2_s_buffer():
    """Two cameras numbering people alike on one input: cam_b's person 7 (with its joint frames)
    does not get body_7 while cam_a's sent it within tf2's 10 s buffer of the stamp, on either side;
    after more than that without cam_a's, or at a stamp more than that before (a bag played again),
    cam_b's does, and then keeps it from cam_a's."""
    s = 10**9
    gate = OneCameraPerFrame()
    a_frames = person_frames([standing_person("7"), standing_person("8")], "cam_a", joints=True)
    b_frames = person_frames([standing_person("7")], "cam_b", joints=True)
    assert gate.admit("cam_a", 100 * s, a_frames) == (a_frames, {})
    assert gate.admit("cam_b", 100 * s + 1, b_frames) == ([], {"body_7": "cam_a"})
    assert gate.admit("cam_b", 90 * s, b_frames) == ([], {"body_7": "cam_a"})          # late, within the buffer
    assert gate.admit("cam_a", 105 * s, a_frames[:18]) == (a_frames[:18], {})          # body_7 and its joints
    assert gate.admit("cam_b", 115 * s, b_frames) == ([], {"body_7": "cam_a"})
    assert gate.admit("cam_b", 115 * s + 1, b_frames) == (b_frames, {})               # cam_a's newest + 10 s
    assert gate.admit("cam_a", 116 * s, a_frames)[1] == {"body_7": "cam_b"}
    assert gate.admit("cam_a", 106 * s, a_frames)[1] == {"body_7": "cam_b"}
    assert gate.admit("cam_a", 105 * s - 1, a_frames) == (a_frames, {})               # more than 10 s back
    assert gate.admit("cam_a", 105 * s, a_frames) == (a_frames, {})                   # the same camera again


@contextlib.contextmanager
def recorded_broadcast(name: str, **node_options):
    """``(node, broadcast, sent)``: a TransformBroadcast on an rclpy node, over a recorder of the
    documented ``TransformBroadcaster(node).sendTransform`` calls (tf2_ros is not installable here)."""
    if ros_available() is not None:
        pytest.skip(str(ros_available()))
    import types

    import rclpy

    from cfi_pose_ros.node.transforms import TransformBroadcast

    sent = []
    recorder = types.SimpleNamespace(TransformBroadcaster=lambda node: types.SimpleNamespace(
        sendTransform=lambda transforms: sent.append(list(transforms))))
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(name, **node_options)
    try:
        yield node, TransformBroadcast(recorder, node), sent
    finally:
        node.destroy_node()


def test_tf_broadcast_sends_a_frame_once_per_stamp_and_a_zero_or_negative_stamp_at_now():
    """The glue over tf2_ros' broadcaster (the node and its clock are rclpy's)."""
    from builtin_interfaces.msg import Time

    with recorded_broadcast("test_tf_broadcast_stamps") as (node, broadcast, sent):
        frames = person_frames([standing_person("7")], "camera")
        for _ in range(3):
            broadcast.send(Time(sec=50, nanosec=5), frames)
        assert len(sent) == 1 and sent[0][0].header.stamp == Time(sec=50, nanosec=5)
        before = node.get_clock().now().nanoseconds
        broadcast.send(Time(), frames)
        broadcast.send(Time(), frames)
        assert len(sent) == 3                       # each zero-stamped input at its own now
        stamps = [t[0].header.stamp.sec * 10**9 + t[0].header.stamp.nanosec for t in sent[1:]]
        assert before <= stamps[0] < stamps[1]
        # a negative stamp (sec is signed) is no time either: it went out as -5 s, older than tf2's
        # buffer from the frames before it (TF_OLD_DATA in every listener, every frame)
        broadcast.send(Time(sec=-5, nanosec=5), frames)
        assert len(sent) == 4 and sent[3][0].header.stamp.sec * 10**9 + sent[3][0].header.stamp.nanosec > stamps[1]


def test_tf_broadcast_sends_no_stamp_further_ahead_of_the_clock_than_tf2_s_buffer():
    """Every tf2 listener keeps a transform as the frame's newest for as long as it runs, and refuses
    each one more than its 10 s buffer older (TF_OLD_DATA, per message): one input stamped years
    ahead of the clock cut that person's frame out of every listener for good, and each later frame
    went out (more than 10 s back of the last: a new pass) to be refused again."""
    from builtin_interfaces.msg import Time

    with recorded_broadcast("test_tf_broadcast_future") as (node, broadcast, sent):
        frames = person_frames([standing_person("7")], "camera")
        now = node.get_clock().now().nanoseconds // 10**9
        assert broadcast.send(Time(sec=now + 3 * 10**8), frames) is False and sent == []
        assert broadcast.send(Time(sec=now + 5), frames) and len(sent) == 1        # within the buffer: sent
        assert broadcast.send(Time(sec=now + 6), frames) and len(sent) == 2


def test_tf_broadcast_starts_over_when_sim_time_jumps_back():
    """`ros2 bag play --loop --clock` with use_sim_time: at each loop the clock jumps back and every
    tf2_ros.Buffer on it clears itself, but the once-per-stamp record still held the first pass's
    stamps: a bag shorter than tf2's 10 s buffer never had a body frame on /tf again."""
    import time

    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    with recorded_broadcast("test_tf_broadcast_sim_time",
                            parameter_overrides=[Parameter("use_sim_time", value=True)]) as (node, broadcast, sent):
        clock_pub = node.create_publisher(Clock, "/clock", 10)
        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def clock_at(sec: int) -> None:
            deadline = time.monotonic() + 10.0
            while node.get_clock().now().nanoseconds != sec * 10**9 and time.monotonic() < deadline:
                clock_pub.publish(Clock(clock=Time(sec=sec)))
                executor.spin_once(timeout_sec=0.05)
            assert node.get_clock().now().nanoseconds == sec * 10**9

        try:
            frames = person_frames([standing_person("7")], "camera")
            for sec in (100, 101, 102):
                clock_at(sec)
                broadcast.send(Time(sec=sec), frames)
            assert len(sent) == 3
            clock_at(100)                                   # the bag again, 2 s back
            broadcast.send(Time(sec=100), frames)
            broadcast.send(Time(sec=100), frames)           # still once per stamp
            assert len(sent) == 4 and sent[3][0].header.stamp == Time(sec=100)
        finally:
            executor.shutdown()



def test_tf2_glue_broadcasts_and_looks_up():
    """The tf2_ros glue against the real tf2_ros: a broadcast transform is found by the lookup."""
    if ros_available() is not None:
        pytest.skip(str(ros_available()))
    from cfi_pose_ros.node.transforms import load_tf2

    tf2_ros, reason = load_tf2()
    if tf2_ros is None:
        pytest.skip(reason)
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cfi_pose_ros.frames import FrameTransform
    from cfi_pose_ros.node.transforms import TransformBroadcast, TransformLookup

    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node("test_tf2_glue")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    lookup = TransformLookup(tf2_ros, "test_tf2_glue")
    try:
        broadcast = TransformBroadcast(tf2_ros, node)
        frame = FrameTransform("base_link", "camera_optical_frame", np.array([0.0, 0.0, CAMERA_HEIGHT]),
                               np.array(BASE_FROM_OPTICAL_Q))
        found, deadline = None, time.monotonic() + 10.0
        while found is None and time.monotonic() < deadline:
            stamp = node.get_clock().now().to_msg()        # one frame goes out once per stamp
            broadcast.send(stamp, [frame])
            executor.spin_once(timeout_sec=0.05)
            try:
                found = lookup.lookup("base_link", "camera_optical_frame", stamp, 0.1)
            except LookupError:
                pass
        assert found is not None
        assert np.allclose(found.matrix, BASE_FROM_OPTICAL) and np.allclose(found.translation, [0, 0, CAMERA_HEIGHT])
        with pytest.raises(LookupError):
            lookup.lookup("map", "camera_optical_frame", stamp, 0.05)
    finally:
        lookup.close()
        executor.shutdown()
        node.destroy_node()


@pytest.mark.parametrize("rotation", [(0.0, 0.0, 0.71, 0.71), (0.0, 0.0, 0.0, 1.004)])
def test_a_tf2_transform_is_normalised_as_tf2_stores_it(rotation):
    from cfi_pose_ros.frames import tf2_transform

    transform = tf2_transform((1.0, 2.0, 3.0), rotation)
    np.testing.assert_allclose(transform.rotation_xyzw, np.array(rotation) / np.linalg.norm(rotation))


@pytest.mark.parametrize("translation, rotation", [
    ((np.inf, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), ((1e30, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)), ((0.0, 0.0, 0.0), (np.nan, 0.0, 0.0, 1.0)),
])
def test_a_tf2_transform_no_frame_can_use_is_refused(translation, rotation):
    from cfi_pose_ros.frames import tf2_transform

    with pytest.raises(ValueError):
        tf2_transform(translation, rotation)


def test_a_clock_back_at_0_after_it_ran_is_a_time_for_stamps_ahead_of_it():
    """0 on a clock that never ran (sim time, no /clock yet) says nothing about the stamps; a clock
    reset to 0 (a simulator's reset) does: a frame of the run before is too far ahead to be sent."""
    from cfi_pose_ros.frames import TF_BUFFER_NS, ahead_of_clock

    late = 129_500_000_000
    assert not ahead_of_clock(late, 0, clock_ran=False)
    assert ahead_of_clock(late, 0, clock_ran=True)
    assert not ahead_of_clock(100_000_000, 0, clock_ran=True)
    assert ahead_of_clock(late, late - TF_BUFFER_NS - 1, clock_ran=False)
    assert not ahead_of_clock(late, late - TF_BUFFER_NS, clock_ran=False)


def test_recently_seen_keeps_the_most_recent_within_capacity_and_age():
    """The one record of every per-camera state: past ``capacity`` the least recently seen goes
    first, a name seen again moves to the end, ``forget_after`` ticks unseen drop a name, and
    :meth:`evict` returns what it gave up, least recently seen first."""
    from cfi_pose_ros.frame_ids import RecentlySeen

    seen = RecentlySeen(capacity=3, forget_after=5)
    for name in "abcd":
        seen.tick()
        seen.put(name, name.upper())
    seen.put("b", "B2")                         # seen again: now the most recent
    assert seen.names() == ("a", "c", "d", "b")
    assert seen.evict() == [("a", "A")]         # past capacity
    assert seen.get("b") == "B2" and seen.get("a") is None and "a" not in seen
    assert seen.evict() == []
    for _ in range(5):                          # c was seen at tick 3, d and b at tick 4: now tick 9
        seen.tick()
    assert seen.evict() == [("c", "C")]
    seen.tick()
    assert seen.evict() == [("d", "D"), ("b", "B2")] and len(seen) == 0
    unbounded_in_age = RecentlySeen(capacity=2)
    unbounded_in_age.put("x", 1)
    for _ in range(10_000):
        unbounded_in_age.tick()
    assert unbounded_in_age.evict() == [] and list(unbounded_in_age.items()) == [("x", 1)]
    assert unbounded_in_age.pop("x") == 1 and unbounded_in_age.pop("x", 0) == 0
