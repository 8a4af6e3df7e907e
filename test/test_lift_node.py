"""The lifting node as a real process over DDS: accuracy, stamps, lifecycle, every bad input.

Each test starts the installed ``lift_node`` with ``config/lift.yaml``
(``--ros-args --params-file``) on topics of its own, and talks to it from this
process through a real rclpy node.
"""
from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest

from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

if ros_available() is None:
    from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, HumanPose3D, Keypoint2D
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg
    from ros_harness import LifecycleClient, NodeUnderTest, stamp_msg

FRAME = "test_camera_optical_frame"


@pytest.fixture
def clip():
    return Clip.load()


@pytest.fixture
def node_factory(tmp_path, ros_env):
    started = []

    def start(**kwargs):
        node = NodeUnderTest(tmp_path, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.close()


def clip_msg(clip, frame: int, sec: int, people=None):
    index = list(range(clip.pixels.shape[1])) if people is None else people
    msg = keypoints_msg(clip.pixels[frame][index], clip.scores[frame][index], [clip.ids[i] for i in index],
                        clip.image_size, clip.layout, FRAME, 0)
    return stamp_msg(msg, sec)


def send_camera_info(node, clip, matrix=None):
    """Publish CameraInfo until the node has certainly received it (probe frames answered after it)."""
    info = camera_info_msg(clip.camera_matrix if matrix is None else matrix, clip.image_size, FRAME)
    for attempt in range(100):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        probe = node.send_and_receive(clip_msg(clip, 0, sec=1_000_000 + attempt), timeout=5)
        if matrix is None and probe is not None and probe.humans[0].root_source == HumanPose3D.ROOT_FROM_INTRINSICS:
            return
        if matrix is not None and probe is not None and attempt >= 3:
            return      # a bad matrix never changes the output; a few deliveries are enough
    raise AssertionError("the node never used the CameraInfo")


def as_array(human) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in human.keypoints])


def test_known_pose_is_placed_in_camera_frame_with_stamp_and_frame(node_factory, clip):
    node = node_factory()
    send_camera_info(node, clip)
    errors, depth_errors = [], []
    for k, frame in enumerate(range(0, 150, 30)):
        msg = clip_msg(clip, frame, sec=100 + k)
        send_camera_info(node, clip)
        out = node.send_and_receive(msg)
        assert out is not None, node.log()
        assert out.header.frame_id == FRAME and (out.header.stamp.sec, out.header.stamp.nanosec) == (100 + k, 0)
        assert [h.id for h in out.humans] == clip.ids
        for human, truth in zip(out.humans, clip.truth_camera_m[frame]):
            assert human.root_source == HumanPose3D.ROOT_FROM_INTRINSICS
            pred = as_array(human)
            assert pred.shape == (17, 3) and np.isfinite(pred).all()
            errors.append(np.linalg.norm(pred - truth, axis=1).mean())
            depth_errors.append(abs(pred[0, 2] - truth[0, 2]) / truth[0, 2])
            assert len(human.keypoint_scores) == 17
            assert human.body_pose.position.z == pytest.approx(pred[0, 2])
    # Stated tolerance: monocular lifting recovers depth from the learned body size, so the
    # absolute error is dominated by the pelvis depth; people ~5.3 m away.
    assert np.mean(errors) < 0.35, f"mean absolute joint error {np.mean(errors):.3f} m"
    assert np.mean(depth_errors) < 0.10, f"mean relative root depth error {np.mean(depth_errors):.3f}"


def test_in_a_namespace_the_default_topics_are_the_namespace_s(node_factory, clip):
    """`ros2 launch cfi_pose_ros lift.launch.py namespace:=cam_left`: the default (relative) topic
    names resolve in the namespace, so two cameras' lifters neither share nor mix topics, and the
    log says which topics they are."""
    import os

    node = node_factory(namespace=f"/cam_left_{os.getpid()}")
    assert node.topics["output_topic"].endswith("_" + str(os.getpid()) + "/human_pose_3d")
    send_camera_info(node, clip)
    out = node.send_and_receive(clip_msg(clip, 0, sec=6))
    assert out is not None and len(out.humans) == 2, node.log()
    assert out.humans[0].root_source == HumanPose3D.ROOT_FROM_INTRINSICS
    # the log names the topics as resolved (and remapped), not the parameters' relative values
    assert f"active: {node.topics['input_topic']} -> {node.topics['output_topic']}" in node.log()


def test_two_lifters_of_one_name_in_two_namespaces_report_apart(node_factory, clip):
    """`ros2 run cfi_pose_ros lift_node --ros-args -r __node:=my_lifter -r __ns:=/robot1` (and
    /robot2): the two report on the global /diagnostics under their fully qualified names (the
    bare node name was the same for both, so a diagnostic aggregator or monitor, which keys by
    status name, showed one lifter flapping between the two)."""
    import os

    namespaces = [f"/robot1_{os.getpid()}", f"/robot2_{os.getpid()}"]
    nodes = [node_factory(namespace=namespace, node_name="my_lifter") for namespace in namespaces]
    for node in nodes:
        assert node.send_and_receive(clip_msg(clip, 0, sec=8)) is not None, node.log()
    seen = set()
    nodes[0].spin_until(lambda: seen.update(s.name for d in nodes[0].diagnostics for s in d.status)
                        or {f"{namespace[1:]}/my_lifter: lifting" for namespace in namespaces} <= seen, 10.0)
    assert {f"{namespace[1:]}/my_lifter: lifting" for namespace in namespaces} <= seen, seen


def test_each_lifter_reports_its_own_name_as_hardware_id_in_every_state(node_factory):
    """DiagnosticStatus.hardware_id is "a hardware unique string": it was the backend, the same
    ``onnxruntime`` for two lifters on one machine, and the node's name only after a failed
    configure. Each lifter's fully qualified name, active and inactive alike."""
    import os

    from lifecycle_msgs.msg import Transition

    from ros_harness import LifecycleClient

    namespaces = [f"/robot1_{os.getpid()}", f"/robot2_{os.getpid()}"]
    nodes = [node_factory(namespace=namespace) for namespace in namespaces]
    for node, namespace in zip(nodes, namespaces):
        name = f"{namespace}/cfi_pose_lifter"
        active = node.latest_diagnostics(status_name=f"{name[1:]}: lifting")
        assert active.get("_hardware_id") == name, active
        assert LifecycleClient(node.client, name[1:], node.spin_until).transition(Transition.TRANSITION_DEACTIVATE)
        inactive = node.latest_diagnostics(status_name=f"{name[1:]}: lifting")
        assert inactive["_message"].startswith("inactive") and inactive["_hardware_id"] == name, inactive


def test_without_camera_info_poses_are_root_relative(node_factory, clip):
    node = node_factory()
    out = node.send_and_receive(clip_msg(clip, 0, sec=5))
    assert out is not None, node.log()
    assert placed_by(out.humans, HumanPose3D.ROOT_RELATIVE, clip), out.humans
    for human in out.humans:
        pred = as_array(human)
        assert np.allclose(pred[0], 0.0, atol=1e-6)
        # a plausible skeleton: head above the pelvis (y down), body height 1-2.2 m
        assert pred[10, 1] < pred[0, 1]
        assert 1.0 < pred[:, 1].max() - pred[:, 1].min() < 2.2


def test_an_input_without_frame_id_is_lifted_with_a_warning(node_factory, clip):
    """No header.frame_id: the poses are still published (root-relative data is still useful), and
    the log says once why RViz cannot show them and why no TF frames come."""
    node = node_factory()
    msg = clip_msg(clip, 0, sec=7)
    msg.header.frame_id = ""
    out = node.send_and_receive(msg)
    assert out is not None and len(out.humans) == 2 and out.header.frame_id == ""
    node.spin_until(lambda: "without header.frame_id" in node.log(), 5.0)
    assert node.log().count("without header.frame_id") == 1, node.log()


def test_smoothing_starts_over_when_the_input_s_frame_changes(node_factory, clip):
    """Another camera now publishes on the input topic (or its driver restarted with another
    frame_id): the smoothed tracks' history is in the other camera's frame, so the first output in
    the new frame (a state of its own) is the new frame's own pose, as lifted unsmoothed, not a blend
    with the old one."""
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    node = node_factory(overrides={"smoothing": True})
    for k in range(5):              # 30 Hz in camera A: the filters have a history there
        assert node.send_and_receive(stamp_msg(clip_msg(clip, 0, sec=0), 510, k * 33_333_333)) is not None
    in_b = stamp_msg(clip_msg(clip, 120, sec=0), 510, 5 * 33_333_333)
    in_b.header.frame_id = "other_camera_optical_frame"
    out = node.send_and_receive(in_b)
    assert out is not None and out.header.frame_id == "other_camera_optical_frame", node.log()
    unsmoothed = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    in_a = lift_keypoints(unsmoothed, clip_msg(clip, 0, sec=1), None, None).people
    expected = lift_keypoints(unsmoothed, in_b, None, None).people
    assert [h.id for h in out.humans] == [p.track_id for p in expected] == clip.ids
    for human, person, before in zip(out.humans, expected, in_a):
        assert np.abs(person.keypoints - before.keypoints).max() > 0.1      # a blend would show
        np.testing.assert_allclose(as_array(human), person.keypoints, atol=1e-5)


def test_two_cameras_on_one_topic_are_each_smoothed_as_if_alone(node_factory, clip):
    """Two cameras publishing on one keypoints topic into one lifter, frames alternating, their people
    numbered alike: the smoother kept one frame and dropped every track at each change of frame_id, so
    with smoothing on nothing was smoothed (each output was the raw lift). Each camera's output now is
    what a smoothing lifter fed that camera alone publishes, also with camera B's stamps 10 ms behind
    A's (its clock a little off)."""
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    node = node_factory(overrides={"smoothing": True})
    alone = {camera: build_pipeline(lambda name: name == "smoothing" or PARAMETERS_BY_NAME[name].default)
             for camera in (FRAME, "cam_b")}
    raw = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    smoothed_by = []
    for k in range(8):
        for camera, frame, behind in ((FRAME, 3 * k, 0), ("cam_b", 60 + 3 * k, 10_000_000)):
            msg = stamp_msg(clip_msg(clip, frame, sec=0), 520, 100_000_000 + k * 33_333_333 - behind)
            msg.header.frame_id = camera
            out = node.send_and_receive(msg)
            assert out is not None and out.header.frame_id == camera, node.log()
            expected = lift_keypoints(alone[camera], msg, None, None).people
            assert [h.id for h in out.humans] == [p.track_id for p in expected] == clip.ids
            unsmoothed = lift_keypoints(raw, msg, None, None).people
            for human, person, lifted in zip(out.humans, expected, unsmoothed):
                np.testing.assert_allclose(as_array(human), person.keypoints, atol=1e-5)
                smoothed_by.append(np.abs(as_array(human) - lifted.keypoints).max())
    assert min(smoothed_by[4:]) > 1e-3, smoothed_by        # every output after each camera's first is smoothed


def test_empty_people_list_publishes_an_empty_array_with_the_input_stamp(node_factory):
    node = node_factory()
    msg = stamp_msg(HumanKeypoints2DArray(image_width=640, image_height=480), 42, 7)
    msg.header.frame_id = FRAME
    out = node.send_and_receive(msg)
    assert out is not None and out.humans == [] and out.header.stamp.nanosec == 7


def placed_by(humans, source: int, clip) -> bool:
    """Every person of the clip is among ``humans``, each placed by ``source`` (a ``HumanPose3D``
    ROOT_* constant). ``all`` over nobody is true: a node that published no one passed such checks."""
    return [h.id for h in humans] == clip.ids and all(h.root_source == source for h in humans)


def _diag_count(diag: dict, reason: str) -> int:
    return int(diag.get(f"dropped.{reason}", 0))


@pytest.mark.parametrize("reason, spoil", [
    ("wrong_keypoint_count", lambda p: p.keypoints.pop()),
    ("unknown_layout", lambda p: setattr(p, "layout", 7)),
    ("non_finite_coordinates", lambda p: setattr(p.keypoints[3], "x", math.inf)),
    ("too_few_joints", lambda p: [setattr(k, "score", 0.0) for k in p.keypoints]),
    ("score_out_of_range", lambda p: setattr(p.keypoints[2], "score", 1.5)),
    ("track_id_too_long", lambda p: setattr(p, "id", "7" * 1_000_000)),
])
def test_a_malformed_person_is_dropped_and_counted_the_others_published(node_factory, clip, reason, spoil):
    # What is tested is the node's answer to a megabyte id, not best effort's delivery of one.
    node = node_factory(reliable_input=reason == "track_id_too_long")
    msg = clip_msg(clip, 10, sec=7)
    spoil(msg.people[0])
    out = node.send_and_receive(msg)
    assert out is not None, node.log()
    assert [h.id for h in out.humans] == [clip.ids[1]]
    diag = node.latest_diagnostics()
    assert _diag_count(diag, reason) >= 1, diag
    assert node.process.poll() is None


@pytest.mark.parametrize("reason, sec, nanosec", [("negative_stamp", -5, 7),
                                                   ("bad_stamp_nanosec", 30, 4_294_967_295)])
def test_a_frame_stamped_before_time_zero_is_dropped_and_counted_not_passed_on(node_factory, clip, reason, sec,
                                                                               nanosec):
    """stamp.sec is signed in the message, but no ROS time is negative: the lifter answered such a
    frame with poses and markers stamped -5 s, which rclpy's Time.from_msg refuses (ValueError) and
    rclcpp::Time throws on (RViz's marker display makes one of every marker's stamp). A nanosec of
    1e9 or more (builtin_interfaces/Time: [0, 1e9)) was published as it came, and read as 4.3 s
    ahead it restarted every track of the smoother."""
    node = node_factory()
    bad = stamp_msg(clip_msg(clip, 0, sec=0), sec, nanosec)
    for _ in range(10):
        node.client.publish(bad)
        node.spin_for(0.05)
    assert node.send_and_receive(clip_msg(clip, 1, sec=480)) is not None, node.log()    # it goes on
    assert _diag_count(node.latest_diagnostics(), reason) >= 1, node.log()
    node.spin_for(0.5)
    answered = [*node.client.received.poses, *node.client.received.markers]
    assert answered and all(0 <= stamp != sec * 10**9 + nanosec for stamp in answered), answered
    assert reason in node.log()       # the throttled warning names it


def test_of_a_message_of_many_people_only_the_highest_scored_are_read(clip, monkeypatch):
    """20,000 people in one message (4.7 MB) were all converted and judged before max_people cut
    them: 1.1 s of the executor beside rclpy's 0.8 s of deserialising. Only PEOPLE_READ_PER_KEPT x
    max_people of the highest scores are read; the rest count as too_many_people, and who is
    published does not change."""
    import copy

    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    pipeline = lifting.build_pipeline(lambda name: 2 if name == "max_people" else PARAMETERS_BY_NAME[name].default)
    msg = clip_msg(clip, 0, sec=1)
    rng = np.random.default_rng(0)
    crowd = [copy.deepcopy(msg.people[i % 2]) for i in range(50)]
    for i, (person, score) in enumerate(zip(crowd, rng.permutation(50))):
        person.id, person.score = f"p{i}", float(score + 1) / 51
    crowd[7].score = float("nan")
    msg.people = crowd
    lifted = lifting.lift_keypoints(pipeline, msg, None, None)
    assert len(lifted.source.people) == lifting.PEOPLE_READ_PER_KEPT * 2
    assert lifted.dropped == {"too_many_people": 48}
    best = sorted(crowd, key=lambda p: -p.score if p.score == p.score else 0)[:2]
    assert [h.track_id for h in lifted.people] == [p.id for p in crowd if p in best]
    # each is the person of its index in the message (the markers' ids, colours and labels): it was
    # the index among the people read
    assert [crowd[h.source_index].id for h in lifted.people] == [h.track_id for h in lifted.people]
    monkeypatch.setattr(lifting, "PEOPLE_READ_PER_KEPT", 1000)        # everyone read: the same people
    every = lifting.lift_keypoints(pipeline, msg, None, None)
    # read, the NaN-scored person is refused for it; unread, it counts among those past max_people
    assert len(every.source.people) == 50 and every.dropped == {"too_many_people": 47, "score_out_of_range": 1}
    np.testing.assert_array_equal(np.stack([h.keypoints for h in every.people]),
                                  np.stack([h.keypoints for h in lifted.people]))


@pytest.mark.parametrize("blank_id", [" ", "  ", "\t", "\u3000", "\u200b", "\ufeff\u200d", "\u3164"])
def test_a_person_whose_id_shows_nothing_is_untracked_as_one_with_the_empty_id(clip, blank_id):
    """A blank id (a detector's "  ", a zero-width space) was an id: two such people shared one marker colour (its CRC),
    one alone got the TF frame `body___` and a smoothing track, while the empty id, which the
    message calls untracked, gives each person its index's colour, no frame and no smoothing. It
    now lifts as the empty id does, and is published as it."""
    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    def lifted_frames(ids, people):
        pipeline = lifting.build_pipeline(lambda name: name == "smoothing" or PARAMETERS_BY_NAME[name].default)
        frames = []
        for k in range(3):
            msg = clip_msg(clip, 10 * k, sec=1, people=people)
            msg.header.stamp.nanosec = k * 100_000_000
            for person, person_id in zip(msg.people, ids):
                person.id = person_id
            frames.append(lifting.lift_keypoints(pipeline, msg, clip.camera_matrix, clip.image_size))
        return frames

    def colours(frame):
        return [spec.color for spec in frame.marker_specs(0.25) if spec.type == "sphere_list"]

    untracked, blank = lifted_frames(["", ""], [0, 1])[-1], lifted_frames([blank_id, blank_id], [0, 1])[-1]
    assert len(set(colours(untracked))) == 2 and colours(blank) == colours(untracked)
    assert [human.id for human in blank.poses_msg().humans] == ["", ""]
    untracked, blank = lifted_frames([""], [0])[-1], lifted_frames([blank_id], [0])[-1]
    assert blank.tf_frames("body_", True) == untracked.tf_frames("body_", True) == []
    np.testing.assert_array_equal(blank.people[0].keypoints, untracked.people[0].keypoints)   # unsmoothed


def test_malformed_people_do_not_push_the_good_ones_out_of_those_read(clip):
    """Those read were the highest scores, before any check: malformed people of score 1 (or of a
    score above 1, itself malformed) took every place, and the message's good people were never read,
    counted as too_many_people (a routine drop, no warning). They now rank last, and so do those
    refused for one keypoint (an infinite coordinate, a keypoint score outside [0, 1] or NaN), which
    still took every place (found by a helper session's fuzzing)."""
    import copy

    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    pipeline = lifting.build_pipeline(lambda name: 2 if name == "max_people" else PARAMETERS_BY_NAME[name].default)
    msg = clip_msg(clip, 0, sec=1)
    good = list(msg.people)
    malformed = []
    for k in range(6 * lifting.PEOPLE_READ_PER_KEPT * 2):        # of each kind, enough to fill every place
        person = copy.deepcopy(good[0])
        person.id = f"bad{k}"
        if k % 6 == 0:
            person.keypoints = person.keypoints[:5]        # not its layout's count
        elif k % 6 == 1:
            person.score = 7.0                             # outside [0, 1]
        elif k % 6 == 2:
            person.layout = 99                             # no layout
        elif k % 6 == 3:
            person.id = "x" * 300                          # a track id too long
        elif k % 6 == 4:
            person.keypoints[3].x = float("inf")           # a coordinate no joint has (NaN is a missing one)
        else:
            person.keypoints[3].score = float("nan")       # a keypoint score outside [0, 1]
        person.score = person.score if k % 6 == 1 else 1.0
        malformed.append(person)
    msg.people = malformed + good
    lifted = lifting.lift_keypoints(pipeline, msg, None, None)
    assert sorted(h.track_id for h in lifted.people) == sorted(p.id for p in good), lifted.dropped
    read = lifting.PEOPLE_READ_PER_KEPT * 2
    assert lifted.dropped["too_many_people"] == len(msg.people) - read
    assert sum(lifted.dropped.values()) == len(malformed)


def test_people_seen_in_part_do_not_push_a_whole_person_out_of_those_read(clip):
    """max_people 1 (follow one person) and a message of five: four seen in part (a few joints above
    min_keypoint_score, as at the image's border), of higher detection scores, then one seen whole.
    The four read (PEOPLE_READ_PER_KEPT x max_people, by score) were all dropped as too_few_joints
    and the whole person, never read, as too_many_people (both routine: no warning): nobody was
    published, where with one partial person fewer (all read) the whole one was. Those who cannot
    reach min_valid_joints now rank after those who can (one left unread counts as too_many_people)."""
    import copy

    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    pipeline = lifting.build_pipeline(lambda name: 1 if name == "max_people" else PARAMETERS_BY_NAME[name].default)
    msg = clip_msg(clip, 0, sec=1)
    whole = msg.people[0]
    whole.score = 0.6
    partial = []
    for k in range(lifting.PEOPLE_READ_PER_KEPT):
        person = copy.deepcopy(msg.people[1])
        person.id, person.score = f"part{k}", 0.9
        for j, keypoint in enumerate(person.keypoints):
            if j >= 5:                   # 5 joints seen (min_valid_joints 8); at the threshold is unseen
                keypoint.score = 0.05 if j % 2 else 0.0
        partial.append(person)
    for people in (partial[1:], partial):
        msg.people = people + [whole]
        lifted = lifting.lift_keypoints(pipeline, msg, None, None)
        assert [h.track_id for h in lifted.people] == [whole.id], (len(people), lifted.dropped)
        # each partial person counted once: as too_few_joints where read, too_many_people where not
        assert sum(lifted.dropped.values()) == len(people), lifted.dropped
        assert set(lifted.dropped) <= {"too_few_joints", "too_many_people"}, lifted.dropped


def test_a_frame_with_a_frame_id_no_tf_tree_holds_is_dropped_and_counted_not_passed_on(node_factory, clip):
    """Every output carries the input's frame_id on (the poses, each marker, the /tf frames' parent):
    a 1 MB frame_id was published in the poses and in every marker of the frame. Up to 256
    characters a frame is lifted; past that it is dropped whole (frame_id_too_long), nothing is
    published for it, and the node goes on. So was a frame_id that target_frame and tf_prefix refuse
    as no TF frame name ("camera link", a control character, `a//b`, a trailing '/'): now dropped
    alike (bad_frame_id); a leading '/' (tf2 drops it), an empty frame_id and '/' alone (no frame)
    are read as before. A CameraInfo or depth image of such a frame_id is not used."""
    from sensor_msgs.msg import Image

    from cfi_pose_ros.node.conversions import depth_from_msg
    from cfi_pose_ros.node.lifting import build_pipeline, camera_from_info, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    for frame_id, refused, words in (
            ("f" * 256, None, None), ("/camera", None, None), ("robot1/camera", None, None), ("", None, None),
            ("/", None, None), ("f" * 257, "frame_id_too_long", "frame_id of 257 characters"),
            ("camera link", "bad_frame_id", "no spaces or control characters"),
            ("cam\nera", "bad_frame_id", "no spaces or control characters"),
            ("cam\x00era", "bad_frame_id", "no spaces or control characters"),
            ("a//b", "bad_frame_id", "between two '/'"), ("camera/", "bad_frame_id", "does not end in '/'")):
        msg = clip_msg(clip, 0, sec=1)
        msg.header.frame_id = frame_id
        lifted = lift_keypoints(pipeline, msg, None, None)
        assert (len(lifted.people), lifted.publishable) == ((0, False) if refused else (2, True)), frame_id
        assert lifted.dropped == ({refused: 2} if refused else {}), frame_id
        info = camera_info_msg(clip.camera_matrix, clip.image_size, frame_id)
        depth = Image(encoding="16UC1", width=2, height=2, step=4, data=bytes(8))
        depth.header.frame_id = frame_id
        for read in (lambda: camera_from_info(info), lambda: depth_from_msg(depth)):
            if refused:
                with pytest.raises(ValueError, match=re.escape(words)):
                    read()
            else:
                read()

    node = node_factory(reliable_input=True)          # a megabyte crosses reliably (see NodeUnderTest)
    for sec, frame_id in ((470, "f" * 1_000_000), (471, "camera link"), (472, "cam\nera"), (473, "a//b"),
                          (474, "camera/")):
        bad = clip_msg(clip, 0, sec=sec)
        bad.header.frame_id = frame_id
        for _ in range(3):
            node.client.publish(bad)
            node.spin_for(0.1)
    assert node.send_and_receive(clip_msg(clip, 1, sec=480)) is not None, node.log()    # it goes on
    diag = node.latest_diagnostics()
    assert _diag_count(diag, "frame_id_too_long") >= 1 and _diag_count(diag, "bad_frame_id") >= 1, node.log()
    assert not {sec * 10**9 for sec in range(470, 475)} & {*node.client.received.poses,
                                                           *node.client.received.markers}
    assert "frame_id_too_long" in node.log() and "bad_frame_id" in node.log() and "f" * 300 not in node.log()


def test_nan_joints_are_missing_not_malformed(node_factory, clip):
    node = node_factory()
    msg = clip_msg(clip, 20, sec=8)
    for j in (13, 16):                       # both wrists lost by the detector
        kp = msg.people[0].keypoints[j]
        kp.x = kp.y = math.nan
        kp.score = 0.0
    out = node.send_and_receive(msg)
    assert out is not None and len(out.humans) == 2
    assert np.isfinite(as_array(out.humans[0])).all()
    assert out.humans[0].keypoint_scores[13] == 0.0 and out.humans[0].keypoint_scores[16] == 0.0


def test_coco_layout_is_converted(node_factory, clip):
    node = node_factory()
    msg = clip_msg(clip, 0, sec=9, people=[0])
    h36m = np.array([[k.x, k.y] for k in msg.people[0].keypoints])
    # Build COCO-17 from the H36M joints (eyes/ears around the head), as a detector would give.
    coco = np.zeros((17, 2))
    coco[0] = h36m[9]
    coco[1] = coco[2] = coco[3] = coco[4] = h36m[10]
    for c, h in ((5, 11), (6, 14), (7, 12), (8, 15), (9, 13), (10, 16), (11, 4), (12, 1), (13, 5), (14, 2),
                 (15, 6), (16, 3)):
        coco[c] = h36m[h]
    msg.people[0].layout = HumanKeypoints2D.LAYOUT_COCO_17
    msg.people[0].keypoints = [Keypoint2D(x=float(x), y=float(y), score=0.9) for x, y in coco]
    out = node.send_and_receive(msg)
    assert out is not None and len(out.humans) == 1
    pred = as_array(out.humans[0])
    assert pred[10, 1] < pred[0, 1] < pred[3, 1]       # head above pelvis above right ankle


def test_zero_image_size_without_camera_info_drops_the_frame(node_factory, clip):
    node = node_factory()
    bad = clip_msg(clip, 0, sec=11)
    bad.image_width = 0
    for _ in range(5):
        node.client.publish(bad)
        node.spin_for(0.1)
    assert 11 * 10**9 not in node.client.received.poses
    assert _diag_count(node.latest_diagnostics(), "bad_image_size") >= 1
    good = node.send_and_receive(clip_msg(clip, 0, sec=12))   # and the node goes on
    assert good is not None and len(good.humans) == 2


def test_zero_image_size_falls_back_to_camera_info_size(node_factory, clip):
    node = node_factory()
    send_camera_info(node, clip)
    msg = clip_msg(clip, 0, sec=13)
    msg.image_width = msg.image_height = 0
    out = node.send_and_receive(msg)
    assert out is not None and len(out.humans) == 2


def test_zero_image_size_falls_back_to_an_uncalibrated_camera_info_s_size(node_factory, clip):
    """CameraInfo.msg: an uncalibrated camera leaves K zeroed, and its width and height are still the
    image's: a frame that gives image size 0 takes them and is lifted root-relative (it was dropped as
    bad_image_size, though HumanKeypoints2DArray.msg promises the CameraInfo's size)."""
    node = node_factory()
    send_camera_info(node, clip, np.zeros((3, 3)))
    msg = clip_msg(clip, 0, sec=16)
    msg.image_width = msg.image_height = 0
    out = node.send_and_receive(msg, timeout=10)
    assert out is not None and len(out.humans) == 2, node.log()
    assert placed_by(out.humans, HumanPose3D.ROOT_RELATIVE, clip)


def test_a_refused_camera_info_gives_its_size_only_where_it_is_one_and_for_its_own_camera(clip):
    """The size of a CameraInfo refused for its K was kept whatever it was: one refused for a roi of
    4294967295 pixels a side (or an 8 x 8 image) was the size of every frame that gave 0, and people
    lifted over it were published without a word; an uncalibrated CameraInfo of another frame gave
    its size to this camera's keypoints, where one with a valid K is refused for its frame."""
    from sensor_msgs.msg import RegionOfInterest

    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    uncalibrated = camera_info_msg(np.zeros((3, 3)), clip.image_size, "other_cam")
    matrix, lens, size, refused = lifting.camera_or_size_from_info(uncalibrated)
    assert matrix is None and lens is None and size == clip.image_size and refused is not None
    garbage_roi = camera_info_msg(np.zeros((3, 3)), clip.image_size, FRAME)
    garbage_roi.roi = RegionOfInterest(x_offset=0, y_offset=0, width=4294967295, height=4294967295)
    tiny = camera_info_msg(np.zeros((3, 3)), (8, 8), FRAME)
    for info in (garbage_roi, tiny):
        assert lifting.camera_or_size_from_info(info)[2] is None
    pipeline = lifting.build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    msg = clip_msg(clip, 0, sec=1)
    msg.image_width = msg.image_height = 0
    other = lifting.lift_keypoints(pipeline, msg, None, size, camera_frame_id="other_cam")
    assert other.people == [] and other.dropped == {"bad_camera_info": 1, "bad_image_size": 2}, other.dropped
    own = lifting.lift_keypoints(pipeline, msg, None, size, camera_frame_id=msg.header.frame_id)
    assert len(own.people) == 2 and not own.dropped
    # a frame that gives its own size takes nothing from such a CameraInfo: nothing to refuse or count
    sized = lifting.lift_keypoints(pipeline, clip_msg(clip, 0, sec=2), None, size, camera_frame_id="other_cam")
    assert len(sized.people) == 2 and not sized.dropped and not sized.warnings


@pytest.mark.parametrize("principal_x", [5e5, -9e5])
def test_a_camera_info_of_no_size_has_its_k_judged_against_the_keypoints_image(clip, principal_x):
    """A CameraInfo with width = height = 0 had its K checked against no image: cx = 5e5 px placed
    the clip's person 2.4 km to the side (ROOT_FROM_INTRINSICS); the same K with a size is refused."""
    from cfi_pose_ros.node import lifting
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    matrix = clip.camera_matrix.copy()
    matrix[0, 2] = principal_x
    info = camera_info_msg(matrix, (0, 0), FRAME)
    k, lens, size, refused = lifting.camera_or_size_from_info(info)
    assert refused is None and size is None            # nothing to judge it by, here
    pipeline = lifting.build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    result = lifting.lift_keypoints(pipeline, clip_msg(clip, 0, sec=1), k, size, lens=lens,
                                    camera_frame_id=FRAME)
    assert result.dropped == {"bad_camera_info": 1}, result.dropped
    assert "for the keypoints' 1000x1002 image" in result.warnings["camera_info_matrix"]
    assert [p.root_source for p in result.people] == [HumanPose3D.ROOT_RELATIVE] * 2
    good = lifting.camera_or_size_from_info(camera_info_msg(clip.camera_matrix, (0, 0), FRAME))[0]
    placed = lifting.lift_keypoints(pipeline, clip_msg(clip, 0, sec=2), good, None, camera_frame_id=FRAME)
    assert not placed.dropped and [p.root_source for p in placed.people] == [HumanPose3D.ROOT_FROM_INTRINSICS] * 2


@pytest.mark.parametrize("matrix", [
    np.zeros((3, 3)), np.full((3, 3), np.nan),
    # finite but no camera's (people were placed 6e147 m away as ROOT_FROM_INTRINSICS), and a focal
    # length of 10 px, no camera's for the CameraInfo's 1000 px wide sensor
    np.array([[1e150, 0, 500], [0, 1e150, 500], [0, 0, 1]]), np.array([[10.0, 0, 500], [0, 10, 500], [0, 0, 1]]),
])
def test_bad_camera_info_is_ignored_and_counted(node_factory, clip, matrix):
    node = node_factory()
    send_camera_info(node, clip, matrix)
    out = node.send_and_receive(clip_msg(clip, 0, sec=14))
    assert out is not None and placed_by(out.humans, HumanPose3D.ROOT_RELATIVE, clip), out
    assert _diag_count(node.latest_diagnostics(), "bad_camera_info") >= 1


def test_one_hundred_people_in_one_message(node_factory, clip):
    node = node_factory(overrides={"max_people": 64})
    index = [i % 2 for i in range(100)]
    msg = clip_msg(clip, 0, sec=15, people=index)
    for i, person in enumerate(msg.people):
        person.id = f"p{i}"
        person.score = 0.5 + i / 1000.0
        for kp in person.keypoints:
            kp.x += (i // 2) * 3.0
    out = node.send_and_receive(msg, timeout=40)
    assert out is not None and len(out.humans) == 64
    # the 64 highest-scoring people are the ones kept
    assert {h.id for h in out.humans} == {f"p{i}" for i in range(36, 100)}
    assert _diag_count(node.latest_diagnostics(), "too_many_people") >= 36


def test_500_hz_input_keeps_the_node_responsive_and_processes_the_newest(node_factory, clip):
    """Input paced at up to 500 Hz for 2 s (however many frames this process manages to send: the
    assertions are about what the node does with what it was sent, not about the sender's speed)."""
    import time

    node = node_factory()
    assert node.send_and_receive(clip_msg(clip, 0, sec=1)) is not None
    sent = []
    start = time.perf_counter()
    while time.perf_counter() - start < 2.0:
        sent.append(node.client.publish(clip_msg(clip, len(sent) % 150, sec=1000 + len(sent))))
        node.executor.spin_once(timeout_sec=0.0)
        target = start + len(sent) / 500.0
        while time.perf_counter() < target:
            pass
    received = node.client.received
    assert node.spin_until(lambda: sent[-1] in received.poses, 10.0), "the newest frame was never processed"
    answered = sorted((s for s in received.poses if s >= sent[0]), key=received.receive_time.__getitem__)
    assert set(answered) <= set(sent)
    # newest first, never a stale queue: no frame is answered after a newer one, the last one answered is
    # the last one sent
    assert answered == sorted(answered) and answered[-1] == sent[-1]
    # every frame the node took in it answered (the rest were replaced in its depth-1 input, not queued)
    node.spin_for(1.0)
    diag = node.latest_diagnostics()
    assert int(diag["inputs_total"]) == int(diag["outputs_total"]), diag
    assert node.send_and_receive(clip_msg(clip, 0, sec=5000), timeout=5) is not None     # still responsive
    assert node.process.poll() is None


@pytest.mark.parametrize("executor, class_name", [("events", "EventsExecutor"),
                                                ("single_threaded", "SingleThreadedExecutor")])
def test_each_executor_answers_every_frame(node_factory, clip, executor, class_name):
    node = node_factory(overrides={"executor": executor})
    assert f"executor: {class_name}" in node.log()
    for k in range(5):
        out = node.send_and_receive(clip_msg(clip, 10 * k, sec=300 + k))
        assert out is not None, node.log()
        assert [h.id for h in out.humans] == clip.ids


def test_replay_after_a_stall_keeps_the_rate_instead_of_bursting(ros_env, clip, monkeypatch):
    """A late sender must not fire a burst: the node's depth-1 input would keep only the last.

    The replay runs on a simulated clock that only its executor advances, so the send times it
    records are exactly the schedule it follows, however busy this machine is."""
    import rclpy

    from cfi_pose_ros.node import replay
    from cfi_pose_ros.node.replay import ReplayClient

    class Clock:
        now = 100.0

        def perf_counter(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(replay, "time", clock)

    class StallingExecutor:       # spins like an executor, but stalls once for 4 periods
        calls = 0

        def spin_once(self, timeout_sec):
            self.calls += 1
            clock.now += 0.13 if self.calls == 3 else timeout_sec

    if not rclpy.ok():
        rclpy.init()
    client = ReplayClient(name="stall_test_client", input_topic="/stall_test/keypoints",
                          camera_info_topic="/stall_test/camera_info", output_topic="/stall_test/poses",
                          markers_topic="/stall_test/markers")
    try:
        client.replay(StallingExecutor(), clip, rate_hz=30.0, frames=12, drain_s=0.0)
    finally:
        client.destroy_node()
    gaps = np.diff(sorted(client.received.send_time.values()))
    assert client.received.sender_stalls == 1
    assert gaps.min() >= 1 / 30 - 1e-9 and gaps.max() > 0.13, gaps     # the stall, then the rate again


def test_bench_node_soak_goes_on_in_time_from_the_timed_run(node_factory, clip):
    """bench_node's memory soak replays the clip in chunks after the timed run. Every chunk started
    over at the timed run's first stamp, so the node was fed the same ten seconds of stamps again
    and again: with tf2 it sends no /tf for a stamp it has sent, and smoothing restarts its filters
    at every jump back, so the soak held a node doing less than on a live stream. A chunk's
    answers are now stamped after everything lifted before it."""
    import importlib.util

    import psutil

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("benchmark_bench_node", REPO / "benchmarks" / "bench_node.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    node = node_factory()
    next_stamp_ns = node.client.replay(node.executor, clip, rate_hz=30.0, frames=15, drain_s=0.5)
    lifted_before = max(node.client.received.people)
    rss = bench.soak(node.client, node.executor, clip, 2, psutil.Process(node.process.pid), 3, 0.5, next_stamp_ns)
    last_chunk = node.client.received.people        # the soak starts each chunk's record afresh
    assert len(rss) == 3 and all(r > 0 for r in rss)
    assert len(last_chunk) >= 5
    # two chunks of 15 frames at 30 Hz came between: the last one's stamps more than 1 s after the run's
    assert min(last_chunk) - lifted_before >= 10**9 - 10**6, (min(last_chunk) - lifted_before) / 1e9


def test_diagnostics_report_backend_rates_latency(node_factory, clip):
    node = node_factory()
    send_camera_info(node, clip)
    for k in range(10):
        node.send_and_receive(clip_msg(clip, k, sec=200 + k))
    diag = node.latest_diagnostics()
    assert diag["backend"] in ("onnxruntime", "torch", "cuda", "tensorrt")
    assert float(diag["latency_p50_ms"]) > 0 and float(diag["latency_p99_ms"]) >= float(diag["latency_p50_ms"])
    assert int(diag["outputs_total"]) >= 10 and diag["people"] == "2"


def test_diagnostics_keep_their_keys_and_leave_a_value_with_nothing_measured_empty(node_factory, clip):
    """With no frame lifted in the window (active before any input, inactive) the latencies were
    ``nan``, which a tool reading values as numbers (``float()``, ``strtod``) takes for a
    measurement, and ``seconds_without_input`` was left out while inactive, so a monitor's rows came
    and went. Every status has the same keys (diagnostic_updater's tasks keep theirs); a value with
    nothing to report is empty."""
    from lifecycle_msgs.msg import Transition

    from ros_harness import LifecycleClient

    def keys(diag: dict) -> set[str]:
        return {key for key in diag if not key.startswith(("dropped.", "_"))}

    node = node_factory(overrides={"diagnostics_period": 0.2})
    idle = node.latest_diagnostics()
    assert idle["latency_p50_ms"] == idle["latency_p99_ms"] == "" and float(idle["seconds_without_input"]) >= 0, idle
    send_camera_info(node, clip)
    for k in range(3):
        assert node.send_and_receive(clip_msg(clip, k, sec=250 + k)) is not None, node.log()
    lifting = node.latest_diagnostics()
    assert 0 < float(lifting["latency_p50_ms"]) <= float(lifting["latency_p99_ms"]), lifting
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
    inactive = node.latest_diagnostics()
    assert inactive["_message"].startswith("inactive"), inactive
    assert inactive["latency_p50_ms"] == inactive["latency_p99_ms"] == inactive["seconds_without_input"] == ""
    assert keys(idle) == keys(lifting) == keys(inactive), (idle, lifting, inactive)


def test_diagnostics_warn_while_input_is_dropped_and_say_ok_again_once_it_is_good(node_factory, clip):
    """An aggregator showed the lifter OK ("lifting") while it dropped every frame's people (here
    an unknown layout id), only a dropped.* value telling: WARN with the reasons while it drops
    (like the detector), OK again once the input is good. A person seen only in part
    (too_few_joints) is what detectors send all the time: no WARN for that."""
    from diagnostic_msgs.msg import DiagnosticStatus

    node = node_factory(overrides={"diagnostics_period": 0.2})
    send_camera_info(node, clip)        # without it the status is WARN (no valid CameraInfo)

    def status_while_sending(spoil, wanted_level):
        """The first status published after a spoiled frame was answered that has ``wanted_level``
        (a status may go out between the drop and the answer: the next one must say it)."""
        for k in range(20):
            msg = clip_msg(clip, k, sec=430 + k + (100 if wanted_level == DiagnosticStatus.OK else 0))
            spoil(msg)
            assert node.send_and_receive(msg) is not None, node.log()
            diag = node.latest_diagnostics()
            if diag.get("_level") == wanted_level:
                break
        return diag

    def unknown_layout(msg):
        for person in msg.people:
            person.layout = 99

    def one_person_in_part(msg):
        for keypoint in msg.people[0].keypoints[:12]:
            keypoint.score = 0.0

    diag = status_while_sending(unknown_layout, DiagnosticStatus.WARN)
    assert diag["_level"] == DiagnosticStatus.WARN and "dropping input: unknown_layout x" in diag["_message"], diag
    diag = status_while_sending(one_person_in_part, DiagnosticStatus.OK)
    assert diag["_level"] == DiagnosticStatus.OK and diag["_message"].startswith("lifting"), diag
    assert int(diag["dropped.too_few_joints"]) >= 1 and int(diag["dropped.unknown_layout"]) >= 2


def test_the_log_calls_only_faulty_input_malformed(node_factory, clip):
    """A person seen only in part was logged as "dropped malformed input: too_few_joints x1" every
    5 s, though detectors send such people all the time: routine drops are counted on
    /diagnostics, and the log names only input that is wrong."""
    node = node_factory()
    for k in range(3):
        msg = clip_msg(clip, k, sec=900 + k)
        for keypoint in msg.people[0].keypoints[:12]:
            keypoint.score = 0.0
        assert node.send_and_receive(msg) is not None, node.log()
    msg = clip_msg(clip, 3, sec=903)
    msg.people[0].layout = 99
    assert node.send_and_receive(msg) is not None, node.log()
    assert node.spin_until(lambda: "dropped malformed input (unknown_layout): person 0: layout unknown(99) is "
                                   "none of h36m_17, coco_17" in node.log(), 10), node.log()
    assert "too_few_joints" not in node.log(), node.log()


def test_each_kind_of_malformed_input_is_logged_within_the_throttle_period_saying_what_was_wrong(
        node_factory, clip):
    """The lifter logged every malformed input under one throttle key, with the reason only: a
    layout of 7, then scores of 2.0, then 16 keypoints within 5 s gave one line, "dropped malformed
    input: unknown_layout x1", and /diagnostics alone told of the other two."""
    node = node_factory()
    spoils = [lambda p: setattr(p, "layout", 7),
              lambda p: setattr(p.keypoints[2], "score", 2.0),
              lambda p: p.keypoints.pop()]
    for k, spoil in enumerate(spoils):
        msg = clip_msg(clip, k, sec=910 + k)
        spoil(msg.people[0])
        assert node.send_and_receive(msg) is not None, node.log()
    expected = ["dropped malformed input (unknown_layout): person 0: layout unknown(7) is none of h36m_17, coco_17",
                "dropped malformed input (score_out_of_range): person 0: keypoint 2 ",
                "has score 2, not in [0, 1]",
                "dropped malformed input (wrong_keypoint_count): person 0: 16 keypoints and 16 scores"]
    assert node.spin_until(lambda: all(text in node.log() for text in expected), 10), node.log()


def test_diagnostics_warn_naming_the_camera_info_topic_while_people_cannot_be_placed(node_factory, clip):
    """Active, solve_root on and no valid CameraInfo on its topic (no publisher, a wrong topic name):
    every pose is root-relative, and the status said OK ("lifting; no valid CameraInfo") without
    the topic to check. WARN naming the topic as resolved, until a valid CameraInfo comes; nothing
    with solve_root off (root-relative output asked for)."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from ros_harness import ParameterClient

    node = node_factory(overrides={"diagnostics_period": 0.2, "warn_latency_ms": 1e6})   # no other WARN
    assert node.send_and_receive(clip_msg(clip, 0, sec=40)) is not None, node.log()
    missing = f"; no valid CameraInfo on {node.topics['camera_info_topic']} (root-relative output)"
    diag = node.latest_diagnostics()
    assert diag["_level"] == DiagnosticStatus.WARN and missing in diag["_message"], diag
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    params.set_ok(solve_root=False)
    assert node.send_and_receive(clip_msg(clip, 0, sec=41)) is not None
    diag = node.latest_diagnostics()
    assert diag["_level"] == DiagnosticStatus.OK and "CameraInfo" not in diag["_message"], diag
    params.set_ok(solve_root=True)
    send_camera_info(node, clip)
    diag = node.latest_diagnostics()
    assert diag["_level"] == DiagnosticStatus.OK and diag["_message"] == "lifting", diag


@pytest.mark.parametrize("problem, expected", [
    ("missing", "weights file missing"),
    ("truncated", "truncated"),
    ("other_architecture", "do not match the architecture"),
])
def test_bad_weights_stop_the_node_at_configure_with_the_reason(node_factory, tmp_path, problem, expected):
    import json
    import shutil

    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    path = tmp_path / "bad.safetensors"
    if problem != "missing":
        shutil.copy(DEFAULT_WEIGHTS, path)
        shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    if problem == "other_architecture":
        config = json.loads(path.with_suffix(".json").read_text())
        config["model"]["dim"] *= 2
        config.pop("tensors_sha256")
        path.with_suffix(".json").write_text(json.dumps(config))
    node = node_factory(overrides={"weights": str(path)}, wait=False)
    node.process.wait(timeout=120)
    assert node.process.returncode == 1
    log = node.log()
    assert "configure failed" in log and expected in log, log


@pytest.mark.parametrize("factor, expected", [
    (1000.0, "to skeletons 15"), (0.01, "to skeletons 0.015"), (-1.0, "m below the ankles"),
], ids=["millimetres", "centimetres_down", "negated"])
def test_weights_that_lift_no_person_in_metres_stop_the_node_at_configure(node_factory, tmp_path, factor, expected):
    """The d128 weights' output layer times 1000 (a model trained in millimetres), times 0.01, or
    negated: checked files that load. Before, the node went active on each (`auto` fell back from
    ONNX Runtime to torch for the first, saying only that it differed by 0.000458 m) and published
    people 1.5 km tall (placed 1000 times too far with body_size_prior 0), 1.5 cm tall, or upside
    down and never placed. Offline lifting builds its lifter the same way (build_pipeline)."""
    from hostile import weights_in_other_units

    from cfi_pose_ros.node.lifting import build_pipeline
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
    from cfi_pose_ros.weights import WeightsError

    path = weights_in_other_units(tmp_path / "other_units", factor)
    node = node_factory(overrides={"weights": str(path)}, wait=False)          # backend: auto
    values = {"weights": str(path), "backend": "torch"}
    with pytest.raises(WeightsError, match=re.escape(f"{path}: these weights cannot be used to publish people: "
                                                     "they lift standing adults ") + ".*" + re.escape(expected)):
        build_pipeline(lambda name: values.get(name, PARAMETERS_BY_NAME[name].default))
    node.process.wait(timeout=120)
    log = node.log()
    assert node.process.returncode == 1, log
    assert f"configure failed: {path}: these weights cannot be used to publish people" in log, log
    assert expected in log and "active: " not in log, log


@pytest.mark.parametrize("how, expected", [
    ("depth", "they lift standing adults as mirror images of themselves: the nose 5"),
    ("x", "they lift standing adults with the left_hip on the other side of the right_hip than their 2D input "
          "has it: 100% of"),
    ("left_right_order", "they lift standing adults as mirror images of themselves: the nose 5"),
])
def test_weights_that_lift_mirrored_or_side_swapped_people_stop_the_node_at_configure(node_factory, tmp_path, how,
                                                                                       expected):
    """The d128 weights with the output layer's depth row negated (people lifted as mirror images),
    its x row negated (each left joint placed where the right one is), or the joint embedding's left
    and right rows swapped (a model that reads and writes left and right joints swapped: mirror
    images): people of the right size, upright. The node went active and published them: a robot
    reaching for a person's left hand reached for the right one. Configure fails now, naming the
    file and what was measured; offline lifting builds its lifter the same way."""
    from hostile import mirrored_weights

    from cfi_pose_ros.node.lifting import build_pipeline
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
    from cfi_pose_ros.weights import WeightsError

    path = mirrored_weights(tmp_path / how, how)
    node = node_factory(overrides={"weights": str(path)}, wait=False)          # backend: auto
    values = {"weights": str(path), "backend": "torch"}
    with pytest.raises(WeightsError, match=re.escape(f"{path}: these weights cannot be used to publish people: "
                                                     f"{expected}")):
        build_pipeline(lambda name: values.get(name, PARAMETERS_BY_NAME[name].default))
    node.process.wait(timeout=120)
    log = node.log()
    assert node.process.returncode == 1, log
    assert f"configure failed: {path}: these weights cannot be used to publish people: {expected}" in log, log
    assert "active: " not in log, log


def test_lifecycle_transitions_over_services(node_factory, clip):
    from lifecycle_msgs.msg import State, Transition

    node = node_factory(overrides={"autostart": False})
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    state, transition = lifecycle.state, lifecycle.transition

    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
    msg = clip_msg(clip, 0, sec=300)
    node.client.publish(msg)
    node.spin_for(1.0)
    assert not node.client.received.poses, "inactive node must not publish"
    # /diagnostics says what the node is doing: nothing while inactive
    assert node.latest_diagnostics()["_message"].startswith("inactive")
    assert transition(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
    assert node.send_and_receive(clip_msg(clip, 0, sec=301)) is not None
    assert node.latest_diagnostics()["_message"].startswith("lifting")
    assert transition(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
    inactive = node.latest_diagnostics()
    assert inactive["_message"].startswith("inactive")
    # nothing is taken while inactive: the active period's rates and people were read for another 5 s
    assert (inactive["input_rate_hz"], inactive["output_rate_hz"], inactive["people"]) == ("0.0", "0.0", "0"), \
        inactive
    node.client.received.poses.clear()
    node.client.publish(clip_msg(clip, 0, sec=302))
    node.spin_for(1.0)
    assert not node.client.received.poses
    assert transition(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
    node.spin_for(0.5)                        # what was on the wire before the transition
    node.diagnostics.clear()
    node.spin_for(2.5)                        # over two diagnostics periods: a configured node's timer is gone
    assert not [s for d in node.diagnostics for s in d.status if s.name.startswith("cfi_pose_lifter")]


def test_a_configure_that_failed_on_its_weights_is_fixed_with_param_set(node_factory, clip, tmp_path):
    """The lifecycle way: configure fails on a bad weights path, `ros2 param set ... weights` while
    unconfigured, configure again. (weights was read-only: only a restart of the process helped.)
    While configured such a change is refused with the way to make it, and changes nothing."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import State, Transition

    from cfi_pose_ros.weights import DEFAULT_WEIGHTS
    from ros_harness import ParameterClient

    node = node_factory(overrides={"autostart": False, "weights": str(tmp_path / "missing.safetensors")})
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and "missing.safetensors" in node.log()
    # a monitor of /diagnostics sees why (the node's diagnostics publisher is made by configure: it
    # said nothing there), again every period, under the node's own status name
    for _ in range(2):
        failed = node.latest_diagnostics()
        assert failed["_level"] == DiagnosticStatus.ERROR and failed["lifecycle_state"] == "unconfigured", failed
        assert failed["_message"].startswith("unconfigured: configure failed: ") and "missing.safetensors" in \
            failed["_message"], failed
    params.set_ok(weights=str(DEFAULT_WEIGHTS))
    assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
    assert node.latest_diagnostics()["_message"].startswith("inactive")     # the error report ended
    assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
    assert node.send_and_receive(clip_msg(clip, 0, sec=320)) is not None
    (refused,) = params.set(output_topic="/elsewhere")
    assert not refused.successful
    assert "takes effect at configure and the node is active" in refused.reason
    assert "deactivate" in refused.reason and "cleanup" in refused.reason
    params.set_ok(output_topic=node.topics["output_topic"])     # `ros2 param load` of the file it runs with
    assert node.send_and_receive(clip_msg(clip, 1, sec=321)) is not None      # still where it was



def test_a_value_configure_would_refuse_is_refused_at_the_set_while_unconfigured(node_factory):
    """`ros2 param set /cfi_pose_lifter batch_sizes "[4096]"` (or a target_from_camera of two
    numbers, or a quaternion of norm 2) on an unconfigured lifter answered "Set parameter
    successful", and the configure after it failed: the set is refused with configure's reason,
    changes nothing, and configure then succeeds."""
    from lifecycle_msgs.msg import State, Transition
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from ros_harness import ParameterClient, call_service

    node = node_factory(overrides={"autostart": False})
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    refused = {"batch_sizes": ([4096], "batch_sizes=[4096]: batch size 4096 is larger than 256"),
               "target_from_camera": ([1.0, 2.0], "target_from_camera=[1.0, 2.0]: expected [x, y, z, qx, qy, qz, qw] "
                                                  "(7 numbers), got 2")}
    for name, (value, reason) in refused.items():
        (result,) = params.set(**{name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    (result,) = params.set(target_from_camera=[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0])
    assert not result.successful and "has norm 2, not 1" in result.reason, result.reason
    get = node.client.create_client(GetParameters, "/cfi_pose_lifter/get_parameters")
    answer = call_service(get, GetParameters.Request(names=list(refused)), node.spin_until, attempts=3)
    assert [list(parameter_value_to_python(v)) for v in answer.values] == [[0], [0.0] * 7]
    params.set_ok(batch_sizes=[1, 2, 4])                    # what configure can build is still taken
    assert lifecycle.transition(Transition.TRANSITION_CONFIGURE), node.log()
    assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE


def test_a_target_frame_or_tf_prefix_no_tf_tree_holds_is_refused_at_the_set(node_factory, clip):
    """`target_frame: "map "` (a trailing space in a file), `a//b`, `map/`, a newline pasted into
    tf_prefix were taken while unconfigured, and the poses then went out stamped with a frame no TF
    tree holds; `/` was taken and meant the input's frame; a megabyte name was carried into every
    marker and /tf frame. Each is refused with the reason; a name
    with a leading slash (dropped, as tf2 drops it) or a namespace is taken and stamps the output."""
    from lifecycle_msgs.msg import Transition

    from ros_harness import ParameterClient

    node = node_factory(overrides={"autostart": False})
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    for name, value, reason in [("target_frame", "map ", "no spaces or control characters"),
                                ("target_frame", "/", "names no frame"), ("target_frame", "a//b", "between two '/'"),
                                ("target_frame", "map/", "does not end in '/'"),
                                ("tf_prefix", "body\n", "no spaces or control characters"),
                                ("target_frame", "m" * 2 ** 20, "at most 256"), ("tf_prefix", "b" * 2 ** 20, "at most 256")]:
        (result,) = params.set(**{name: value})
        assert not result.successful and reason in result.reason, (name, value, result.reason)
    params.set_ok(target_frame="/robot1/map", tf_prefix="robot1/body_",
                  target_from_camera=[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    assert lifecycle.transition(Transition.TRANSITION_CONFIGURE), node.log()
    assert lifecycle.transition(Transition.TRANSITION_ACTIVATE), node.log()
    out = node.send_and_receive(clip_msg(clip, 0, sec=330))
    assert out is not None and out.header.frame_id == "robot1/map", node.log()


def test_a_topic_the_node_already_has_with_another_type_fails_the_transition_with_the_reason(node_factory, clip):
    """markers_topic set while unconfigured to the input topic (configure creates the markers
    publisher, activate the keypoints subscription), or to the output topic: rcl refuses the
    second message type on one topic. rclpy failed the transition without a word and left the node
    UNCONFIGURED with the activate's first subscription still lifting every input (its diagnostics
    counting them); the transition must fail with the reason and release what it created."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import State, Transition

    from ros_harness import ParameterClient

    node = node_factory(overrides={"autostart": False, "diagnostics_period": 0.2})
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    params.set_ok(markers_topic=node.topics["input_topic"])
    assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
    assert not lifecycle.transition(Transition.TRANSITION_ACTIVATE)
    assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
    assert "activate failed" in node.log() and "incompatible type" in node.log(), node.log()
    for k in range(5):
        node.client.publish(clip_msg(clip, k, sec=340 + k))
        node.spin_for(0.1)
    # an inactive node whose activate failed says so: it said OK "inactive", a healthy node to a monitor
    assert node.spin_until(lambda: node.latest_diagnostics()["_message"].startswith("inactive: activate failed"),
                           10), node.latest_diagnostics()
    diagnostics = node.latest_diagnostics()
    assert diagnostics["_level"] == DiagnosticStatus.ERROR and "incompatible type" in diagnostics["_message"]
    assert diagnostics["inputs_total"] == "0", diagnostics

    assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
    params.set_ok(markers_topic=node.topics["output_topic"])
    assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert "configure failed" in node.log() and "incompatible type" in node.log().split("activate failed")[1]
    failed = node.latest_diagnostics()      # an unconfigured node that failed says why, no more
    assert failed["_level"] == DiagnosticStatus.ERROR and "incompatible type" in failed["_message"], failed
    assert "inputs_total" not in failed, failed

    params.set_ok(markers_topic=node.topics["markers_topic"])
    assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
    assert node.send_and_receive(clip_msg(clip, 0, sec=350)) is not None, node.log()
    assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)      # inactive again, no failure to report
    assert node.spin_until(lambda: node.latest_diagnostics()["_message"] == "inactive (configured, not subscribed)",
                           10), node.latest_diagnostics()
    assert node.latest_diagnostics()["_level"] == DiagnosticStatus.OK
    assert "Traceback" not in node.log(), node.log()


def test_a_camera_info_topic_set_while_unconfigured_drops_the_old_cameras_intrinsics(node_factory, clip):
    """camera_info_topic set after cleanup (the lifecycle way to point the node at another camera):
    the intrinsics of the old camera placed the new camera's people until a CameraInfo came on the
    new topic, and for good when none comes there (poses must then be root-relative)."""
    from lifecycle_msgs.msg import Transition

    from ros_harness import ParameterClient

    node = node_factory()
    send_camera_info(node, clip)
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
        assert lifecycle.transition(transition)
    ParameterClient(node.client, "cfi_pose_lifter", node.spin_until).set_ok(
        camera_info_topic=f"{node.prefix}/no_camera_info_here")
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert lifecycle.transition(transition)
    out = node.send_and_receive(clip_msg(clip, 0, sec=330))
    assert out is not None, node.log()
    assert {h.root_source for h in out.humans} == {HumanPose3D.ROOT_RELATIVE}

@pytest.mark.parametrize("how", ["deactivate", "shutdown", "publish_markers false", "SIGINT"])
@pytest.mark.parametrize("lifetime", [0.0, 30.0])
def test_skeletons_rviz_would_keep_are_cleared_when_the_node_stops_updating_them(node_factory, clip, how, lifetime):
    """With marker_lifetime 0 RViz keeps every marker until told: after `ros2 lifecycle set ...
    deactivate` the last frame's skeletons stayed on screen, frozen, although nothing was lifted;
    after `shutdown` from active, `ros2 param set ... publish_markers false` and Ctrl-C they still did.
    With a lifetime RViz expires (up to 60 s) they stayed that long: nothing was sent."""
    import signal

    from lifecycle_msgs.msg import Transition
    from visualization_msgs.msg import Marker

    from ros_harness import ParameterClient

    node = node_factory(overrides={"marker_lifetime": lifetime})
    assert node.send_and_receive(clip_msg(clip, 0, sec=350)) is not None
    assert node.spin_until(lambda: node.client.received.markers, 10)
    node.client.received.markers.clear()
    if how == "SIGINT":
        node.process.send_signal(signal.SIGINT)
    elif how == "publish_markers false":
        ParameterClient(node.client, "cfi_pose_lifter", node.spin_until).set_ok(publish_markers=False)
    else:
        transition = {"deactivate": Transition.TRANSITION_DEACTIVATE, "shutdown": Transition.TRANSITION_ACTIVE_SHUTDOWN}
        assert LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until).transition(transition[how])
    assert node.spin_until(lambda: node.client.received.markers, 10), node.log()
    (last,) = node.client.received.markers.values()
    assert [m.action for m in last.markers] == [Marker.DELETEALL]
    if how == "SIGINT":
        assert node.process.wait(timeout=30) == 0, node.log()


def test_a_live_marker_setting_clears_the_skeletons_without_stalling_the_node(ros_env):
    """Setting publish_markers false cleared the skeletons, then waited up to 0.5 s for
    every reliable subscriber to acknowledge the DELETEALL, in the executor: an active lifter
    stalled at each set and dropped about a dozen frames at 30 Hz (the wait is for a publisher
    destroyed next: cleanup, shutdown). Turning markers on cleared what was not there."""
    import os

    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.lift_node import LiftNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = LiftNode(f"marker_settings_{os.getpid()}", context=context,
                    parameter_overrides=[Parameter("backend", value="torch")])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        published, waits = [], []
        node._marker_pub.publish = published.append
        node._marker_pub.wait_for_all_acked = lambda *args: waits.append(args) or True
        # a lifetime change clears nothing: the next frame redraws (test_a_live_marker_lifetime_change...)
        for name, value, clears in (("marker_lifetime", 1.0, 0), ("publish_markers", False, 1),
                                    ("marker_lifetime", 0.0, 0), ("publish_markers", True, 0)):
            before = len(published)
            assert node.set_parameters([Parameter(name, value=value)])[0].successful
            assert len(published) - before == clears, (name, value)
        assert [m.action for array in published for m in array.markers] == [Marker.DELETEALL]
        assert waits == []
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS    # lifetime 0: cleared there,
        assert len(published) == 2 and len(waits) == 1                          # and waited for
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def rviz_shows(arrays) -> dict:
    """``(ns, id) -> Marker`` that RViz's marker display holds after ``arrays`` in order, expiry aside
    (rviz_default_plugins marker_common.cpp: ADD adds or replaces, DELETE removes that marker,
    DELETEALL every one, or its namespace's when it names one). An array with two markers of one
    (ns, id), whatever their actions, puts the display in Error ("Duplicate Marker Check")."""
    from visualization_msgs.msg import Marker

    shown = {}
    for array in arrays:
        keys = [(marker.ns, marker.id) for marker in array.markers]
        assert len(set(keys)) == len(keys), f"RViz: markers of the same ns and id in one array: {keys}"
        for marker in array.markers:
            if marker.action == Marker.ADD:
                shown[(marker.ns, marker.id)] = marker
            elif marker.action == Marker.DELETE:
                shown.pop((marker.ns, marker.id), None)
            elif marker.action == Marker.DELETEALL:
                shown = {key: m for key, m in shown.items() if marker.ns and key[0] != marker.ns}
    return shown


@pytest.mark.parametrize("lifetime", [1.0, 0.0])
def test_the_skeletons_of_people_who_left_are_deleted_at_the_next_frame(node_factory, clip, lifetime):
    """Marker ids go by the person's index in the input: when one of two people left, the ids the
    next frame did not reuse kept the skeleton of the one still there, where it had been, beside its
    new one for the whole marker_lifetime (1 s: what a camera at a few Hz needs), and every skeleton
    stayed that long after the last person left. The next frame deletes them (a lifetime RViz never
    expires: its DELETEALL)."""
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.conversions import stamp_ns

    node = node_factory(overrides={"marker_lifetime": lifetime})
    arrays = []
    for msg in (clip_msg(clip, 0, sec=470), clip_msg(clip, 30, sec=471, people=[1]),
                clip_msg(clip, 31, sec=472, people=[])):
        assert node.send_and_receive(msg) is not None, node.log()
        stamp = stamp_ns(msg.header)
        node.spin_until(lambda: stamp in node.client.received.markers, 5)
        arrays.append(node.client.received.markers.get(stamp, None))
        if len(arrays) == 2:
            shown = rviz_shows(arrays)
            assert sorted(m.type for m in shown.values()) == sorted(
                [Marker.SPHERE_LIST, Marker.LINE_LIST, Marker.TEXT_VIEW_FACING]), shown.keys()
            assert {m.text for m in shown.values() if m.type == Marker.TEXT_VIEW_FACING} == {clip.ids[1]}
    assert arrays[2] is not None and rviz_shows(arrays) == {}


def test_two_lifters_drawing_on_one_markers_topic_keep_each_other_s_skeletons(node_factory, clip):
    """Two cameras' lifters with their markers remapped to one topic (one RViz display): both drew
    in namespace "skeleton" with ids by person index, so each frame of one replaced the other's
    skeletons, and (with a lifetime RViz never expires) its DELETEALL cleared them. Each lifter now
    draws in its own namespace, its fully qualified name, and deletes only there."""
    import os

    from visualization_msgs.msg import Marker, MarkerArray

    shared = f"/shared_markers_{os.getpid()}"
    namespaces = [f"/cam_left_{os.getpid()}", f"/cam_right_{os.getpid()}"]
    nodes = [node_factory(namespace=namespace, overrides={"markers_topic": shared, "marker_lifetime": 0.0})
             for namespace in namespaces]
    arrays = []
    nodes[0].client.create_subscription(MarkerArray, shared, arrays.append, 10)
    for sec, node in enumerate(nodes + nodes, start=480):       # each draws, then each draws again
        count = len(arrays)
        assert node.send_and_receive(clip_msg(clip, sec - 480, sec=sec)) is not None, node.log()
        assert nodes[0].spin_until(lambda: len(arrays) > count, 10), node.log()
    shown = rviz_shows(arrays)
    # each lifter's namespace for the camera of its input (see the test below)
    lifters = [f"{namespace[1:]}/cfi_pose_lifter/{FRAME}" for namespace in namespaces]
    assert sorted({ns for ns, _ in shown}) == sorted(lifters), shown.keys()
    for lifter in lifters:           # both people of each camera, three markers each
        assert len([key for key in shown if key[0] == lifter]) == 6, shown.keys()
    assert all(a.markers[0].action == Marker.DELETEALL and a.markers[0].ns in lifters for a in arrays)


@pytest.mark.parametrize("lifetime", [1.0, 0.0])
def test_two_cameras_on_one_topic_keep_each_other_s_skeletons(node_factory, clip, lifetime):
    """One lifter fed by two cameras on one keypoints topic (supported: each camera is smoothed as if
    alone): both drew in the lifter's one namespace with ids by person index, so each frame of one
    camera replaced the other's skeletons (ADD of the same ids), DELETEd those it did not reuse, and
    with a lifetime RViz never expires cleared them all (its DELETEALL): after frames of cam_left (2
    people) and cam_right (1) alternating, RViz showed cam_right's one person alone, although every
    /human_pose_3d message had its camera's people. Each camera's skeletons now have a namespace of
    their own within the lifter's, and a stop clears each."""
    from lifecycle_msgs.msg import Transition
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.conversions import stamp_ns

    node = node_factory(overrides={"marker_lifetime": lifetime})
    arrays = []

    def draw(sec: int, camera: str, people: list[int]) -> None:
        msg = clip_msg(clip, 0, sec=sec, people=people)
        msg.header.frame_id = camera
        out = node.send_and_receive(msg)
        assert out is not None and len(out.humans) == len(people), node.log()
        assert node.spin_until(lambda: stamp_ns(msg.header) in node.client.received.markers, 10), node.log()
        arrays.append(node.client.received.markers[stamp_ns(msg.header)])

    def labels() -> list[tuple[str, str]]:
        return sorted((m.header.frame_id, m.text) for m in rviz_shows(arrays).values()
                      if m.type == Marker.TEXT_VIEW_FACING)

    both = sorted([("cam_left", clip.ids[0]), ("cam_left", clip.ids[1]), ("cam_right", clip.ids[0])])
    for sec, camera, people in ((490, "cam_left", [0, 1]), (491, "cam_right", [0]),
                                (492, "cam_left", [0, 1]), (493, "cam_right", [0])):
        draw(sec, camera, people)
    assert labels() == both
    assert {m.ns for a in arrays for m in a.markers} == {"cfi_pose_lifter/cam_left", "cfi_pose_lifter/cam_right"}
    draw(494, "cam_left", [1])          # one of cam_left's people left: cam_right's stays
    assert labels() == sorted([("cam_left", clip.ids[1]), ("cam_right", clip.ids[0])])
    assert len(rviz_shows(arrays)) == 2 * 3
    assert LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until).transition(
        Transition.TRANSITION_DEACTIVATE)
    assert node.spin_until(lambda: len(node.client.received.markers) > len(arrays), 10), node.log()
    arrays.append(max(node.client.received.markers.items())[1])     # stamped now: after the frames
    assert rviz_shows(arrays) == {}


def test_a_parameter_set_to_the_value_it_has_changes_nothing(node_factory, clip):
    """`ros2 param load` of the file the node runs with sets every parameter to the value it has:
    that cleared RViz's skeletons (and restarted the smoothing filters) as if they had changed."""
    from ros_harness import ParameterClient

    node = node_factory(overrides={"marker_lifetime": 0.0})
    assert node.send_and_receive(clip_msg(clip, 0, sec=360)) is not None
    assert node.spin_until(lambda: node.client.received.markers, 10)
    node.client.received.markers.clear()
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    params.set_ok(publish_markers=True, marker_lifetime=0.0)
    node.spin_for(1.0)
    assert not node.client.received.markers
    params.set_ok(publish_markers=False)                 # a real change still clears them
    assert node.spin_until(lambda: node.client.received.markers, 10), node.log()


def test_what_ros2_param_dump_wrote_loads_back_unchanged_in_every_state(node_factory, tmp_path):
    """`ros2 param dump` (GetParameters of ListParameters, written as YAML) and `ros2 param load`
    of that file (rclpy's parser, one SetParameters) on the running node: every parameter is
    accepted and none changes, in every lifecycle state. The read-only ones (executor, autostart,
    rclpy's start_type_description_service) were refused in each, though set to what they were."""
    import yaml
    from lifecycle_msgs.msg import Transition
    from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
    from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

    from ros_harness import call_service

    name = "cfi_pose_lifter"
    node = node_factory(overrides={"autostart": False})
    lifecycle = LifecycleClient(node.client, name, node.spin_until)
    list_names, get, set_ = (node.client.create_client(srv, f"/{name}/{service}") for srv, service in (
        (ListParameters, "list_parameters"), (GetParameters, "get_parameters"), (SetParameters, "set_parameters")))

    def dump() -> dict:
        names = call_service(list_names, ListParameters.Request(), node.spin_until, attempts=3).result.names
        values = call_service(get, GetParameters.Request(names=names), node.spin_until, attempts=3).values
        as_yaml = (lambda v: v if isinstance(v, (bool, int, float, str)) else list(v))     # as ros2 param dump
        return {n: as_yaml(parameter_value_to_python(v)) for n, v in zip(names, values)}

    for transition in (None, Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                       Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                       Transition.TRANSITION_UNCONFIGURED_SHUTDOWN):
        assert transition is None or lifecycle.transition(transition), transition
        dumped = dump()
        assert {"executor", "autostart", "start_type_description_service"} <= set(dumped)
        path = tmp_path / "dump.yaml"
        path.write_text(yaml.dump({f"/{name}": {"ros__parameters": dumped}}, default_flow_style=False))
        loaded = parameter_dict_from_yaml_file(str(path), target_nodes=[f"/{name}"])
        results = call_service(set_, SetParameters.Request(parameters=list(loaded.values())), node.spin_until,
                               attempts=3).results
        assert [(n, r.reason) for n, r in zip(loaded, results) if not r.successful] == [], (transition, node.log())
        assert dump() == dumped, transition


def test_the_parameter_descriptors_say_what_a_set_is_refused_for(node_factory):
    """`ros2 param describe` (DescribeParameters): read-only exactly for the start-time parameters,
    the range of each number, and as additional constraints the choices, the topic-name rule and
    the lifecycle state a configure-time parameter is settable in. additional_constraints was empty
    for every parameter. Checked against what is enforced: a string that is neither a choice nor
    a topic name is refused exactly where the descriptor names such a constraint."""
    from rcl_interfaces.srv import DescribeParameters

    from cfi_pose_ros.node.parameters import AT_CONFIGURE, AT_START, LIFT_NODE_PARAMETERS
    from ros_harness import ParameterClient, call_service

    node = node_factory(overrides={"autostart": False})
    describe = node.client.create_client(DescribeParameters, "/cfi_pose_lifter/describe_parameters")
    request = DescribeParameters.Request(names=[spec.name for spec in LIFT_NODE_PARAMETERS])
    descriptors = call_service(describe, request, node.spin_until, attempts=3).descriptors
    params = ParameterClient(node.client, "cfi_pose_lifter", node.spin_until)
    for spec, descriptor in zip(LIFT_NODE_PARAMETERS, descriptors):
        constraints = descriptor.additional_constraints
        assert descriptor.name == spec.name and descriptor.description == spec.description
        assert descriptor.read_only == (spec.takes_effect == AT_START), spec.name
        assert all(choice in constraints for choice in spec.choices), (spec.name, constraints)
        assert ("settable while unconfigured" in constraints) == (spec.takes_effect == AT_CONFIGURE), spec.name
        # a check of its own says in words what it refuses (batch_sizes' and target_from_camera's did not)
        assert spec.check is None or (spec.constraint and spec.constraint in constraints), (spec.name, constraints)
        if spec.name == "batch_sizes":
            from cfi_pose_ros.inference.batching import MAX_BATCH_SIZE
            assert f"from 1 to {MAX_BATCH_SIZE}" in spec.constraint
        ranges = [(r.from_value, r.to_value) for r in [*descriptor.integer_range, *descriptor.floating_point_range]]
        assert ranges == ([] if spec.min_value is None else [(spec.min_value, spec.max_value)]), spec.name
        if isinstance(spec.default, str) and not descriptor.read_only:
            (result,) = params.set(**{spec.name: "not one, nor a topic!"})
            constrained = bool(spec.choices) or any(rule in constraints for rule in ("a valid ROS topic name",
                                                                                    "a TF frame name"))
            assert result.successful != constrained, (spec.name, constraints, result.reason)
            params.set_ok(**{spec.name: spec.default})


def test_shutdown_from_active_stops_publishing(node_factory, clip):
    """active -> shutdown reaches FINALIZED, and from then on nothing is lifted or published."""
    from lifecycle_msgs.msg import State, Transition

    node = node_factory()
    lifecycle = LifecycleClient(node.client, "cfi_pose_lifter", node.spin_until)
    assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE
    assert node.send_and_receive(clip_msg(clip, 0, sec=400)) is not None
    assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
    node.client.received.poses.clear()
    for k in range(40):
        node.client.publish(clip_msg(clip, k, sec=401 + k))
        node.spin_for(0.025)
    node.spin_for(0.5)
    assert not node.client.received.poses, f"{len(node.client.received.poses)} frames published after shutdown"
    assert node.process.poll() is None


def registered_depth(clip, frame: int, scale: float = 1.0) -> np.ndarray:
    """A depth image (metres) registered to the clip's image at 1 / ``scale`` of its resolution: each
    person's bounding box at their body surface (0.1 m before the pelvis), the background at 9 m."""
    w, h = clip.image_size
    depth = np.full((round(h / scale), round(w / scale)), 9.0, dtype=np.float32)
    for pixels, truth in zip(clip.pixels[frame], clip.truth_camera_m[frame]):
        x0, y0 = np.floor(pixels.min(0) / scale).astype(int)
        x1, y1 = np.ceil(pixels.max(0) / scale).astype(int)
        depth[y0:y1, x0:x1] = truth[0, 2] - 0.1
    return depth


def depth_image_msg(depth: np.ndarray, sec: int = 0, frame_id: str = FRAME):
    """``depth`` (metres) as a 32FC1 ``sensor_msgs/Image`` in ``frame_id`` (the test's), stamped ``sec``."""
    from sensor_msgs.msg import Image

    image = Image(height=depth.shape[0], width=depth.shape[1], encoding="32FC1", step=depth.shape[1] * 4,
                  data=depth.astype(np.float32).tobytes())
    image.header.frame_id = frame_id
    return stamp_msg(image, sec)


def answer_after_depth(node, depth_pub, answers: list, depth: np.ndarray, keypoints, frame_id: str = FRAME,
                       timeout: float = 5.0):
    """Publish ``depth`` stamped as ``keypoints`` (a HumanKeypoints2DArray), let it arrive, send the
    keypoints: the node's answer (None: none in ``timeout``), also appended to ``answers``."""
    sec = keypoints.header.stamp.sec
    depth_pub.publish(depth_image_msg(depth, sec, frame_id))
    node.spin_for(0.1)
    answers.append(node.send_and_receive(keypoints, timeout=timeout))
    return answers[-1]


def test_aligned_depth_image_sets_the_root_depth(node_factory, clip):
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_for_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_for_test", 1)
    send_camera_info(node, clip)
    frame, sec = 40, 500
    image = depth_image_msg(registered_depth(clip, frame), sec)
    msg = clip_msg(clip, frame, sec)

    def answered_from_depth():
        depth_pub.publish(image)
        node.spin_for(0.1)
        node.client.received.poses.pop(sec * 10**9, None)     # wait for a fresh answer
        out = node.send_and_receive(msg, timeout=2)
        return out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip)

    assert node.spin_until(answered_from_depth, 60), node.log()
    out = node.client.received.poses[sec * 10**9]
    for human, truth in zip(out.humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.03


def test_keypoints_a_detector_s_latency_late_are_placed_with_the_depth_image_taken_with_them(node_factory, clip):
    """A 30 Hz depth camera and keypoints that arrive 100 ms after their image (a 2D detector's
    latency; the bundled one takes 67 ms p50 for three people): the newest depth image is then
    100 ms newer than the keypoints, past depth_max_age (50 ms). Only the newest was kept: every
    frame was placed without depth (stale_depth), although the image taken with it had come."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_for_latency_test", "depth_max_age": 0.05})
    depth_pub = node.client.create_publisher(Image, "/depth_for_latency_test", 10)
    send_camera_info(node, clip)
    frame = 40
    image = depth_image_msg(registered_depth(clip, frame, scale=4))    # at a quarter of the keypoints' resolution
    period_ns, start_ns = 33_333_333, 3000 * 10**9
    node.client.received.poses.clear()
    for k in range(30):
        # the depth camera is 3 frames (100 ms) ahead of the keypoints
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(start_ns + (k + 3) * period_ns, 10**9)
        depth_pub.publish(image)
        node.spin_for(0.02)
        msg = keypoints_msg(clip.pixels[frame], clip.scores[frame], clip.ids, clip.image_size, clip.layout,
                            FRAME, start_ns + k * period_ns)
        node.client.publish(msg)
        node.spin_for(0.03)
    node.spin_until(lambda: len(node.client.received.poses) >= 25, 5.0)
    answers = list(node.client.received.poses.values())
    from_depth = [out for out in answers if placed_by(out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip)]
    assert len(answers) >= 20 and len(from_depth) >= 0.75 * len(answers), (
        f"{len(from_depth)} of {len(answers)} frames placed from depth; {node.latest_diagnostics()}")
    for human, truth in zip(from_depth[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.05


def test_a_depth_image_of_another_aspect_than_the_camera_s_is_refused_one_of_another_size_used(node_factory, clip):
    """A registered depth image is the CameraInfo's image scaled. A 640x480 one beside the clip's
    1000x1002 camera (an unaligned depth stream: here a wall 2 m away) was scaled anyway and read as
    the people's depth: placed at 2.1 m, 3 m off. It is refused (bad_depth_image on /diagnostics, the
    sizes in the log) and the people placed from the intrinsics; a quarter-size one of the same view
    (250x250) is used. (Small images: a best-effort sample of megabytes is lost whole with one of its
    UDP fragments, and on a busy machine every one of them was, for a minute, in CI.)"""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_aspect_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_aspect_test", 1)
    send_camera_info(node, clip)
    frame, answers = 40, []

    def answered_with(depth: np.ndarray):
        return answer_after_depth(node, depth_pub, answers, depth, clip_msg(clip, frame, 700 + len(answers)))

    wall = np.full((120, 160), 2.0, dtype=np.float32)
    assert node.spin_until(lambda: answered_with(wall) is not None and _diag_count(
        node.latest_diagnostics(), "bad_depth_image") >= 1, 60), (answers[-1], node.log())
    # the log says which sizes did not fit (it said "dropped malformed input: bad_depth_image x1")
    assert node.spin_until(lambda: "the 160x120 depth image (aspect 1.333) cannot be registered to the 1000x1002"
                           in node.log(), 10), node.log()
    # and only that: the generic line of a drop came as well, its key not the warning's
    assert "dropped malformed input: bad_depth_image" not in node.log(), node.log()
    answered = [out for out in answers if out is not None]
    assert answered and all(placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip) for out in answered), answered
    for human, truth in zip(answered[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.5          # the monocular solve, not the wall

    quarter = registered_depth(clip, frame, scale=4)
    assert quarter.shape == (250, 250)

    def from_depth():
        out = answered_with(quarter)
        return out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip)

    assert node.spin_until(from_depth, 60), node.log()
    for human, truth in zip(answers[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.03


def test_a_depth_image_of_another_camera_s_frame_is_refused(node_factory, clip):
    """A depth image in another frame than the keypoints is another camera's (depth_topic set to the
    wrong camera): read at this camera's pixels, its depth placed the people (here, a wall 2 m away:
    at 2.1 m, 3 m off, as ROOT_FROM_DEPTH). It is refused (bad_depth_image, both frames in the log)
    and the people placed from the intrinsics; the same depth in the keypoints' frame is used."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_frame_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_frame_test", 1)
    send_camera_info(node, clip)
    frame, answers = 40, []

    def answered_with(depth: np.ndarray, frame_id: str):
        return answer_after_depth(node, depth_pub, answers, depth, clip_msg(clip, frame, 800 + len(answers)),
                                  frame_id)

    wall = np.full(registered_depth(clip, frame, scale=4).shape, 2.0, dtype=np.float32)     # small: see above
    assert node.spin_until(lambda: answered_with(wall, "/left_camera_optical_frame") is not None and _diag_count(
        node.latest_diagnostics(), "bad_depth_image") >= 1, 60), (answers[-1], node.log())
    assert node.spin_until(lambda: f"the depth image is in frame 'left_camera_optical_frame', the keypoints in "
                           f"'{FRAME}'" in node.log(), 10), node.log()
    answered = [out for out in answers if out is not None]
    assert answered and all(placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip) for out in answered), answered
    for human, truth in zip(answered[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.5          # the monocular solve, not the wall

    registered = registered_depth(clip, frame, scale=4)
    assert node.spin_until(lambda: (out := answered_with(registered, "/" + FRAME)) is not None and placed_by(
        out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip), 60), node.log()
    for human, truth in zip(answers[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.03


def test_two_cameras_depth_images_on_one_topic_each_place_their_own_camera_s_people(node_factory, clip):
    """Two cameras (keypoints, CameraInfo and depth images each on one topic), not synchronised: the
    right camera's depth image stamped 10 ms after the left's, the left's keypoints 6 ms after its
    own image. The image nearest in stamp was taken whatever its frame: the right camera's (4 ms
    away), refused as another camera's (bad_depth_image, WARN), and the left camera's people were
    placed from the intrinsics although their own depth image had come. The nearest of their own
    camera's is taken first."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/two_depths_test", "depth_max_age": 0.05})
    depth_pub = node.client.create_publisher(Image, "/two_depths_test", 1)
    frame, outs = 40, []
    infos = [camera_info_msg(clip.camera_matrix, clip.image_size, camera) for camera in ("cam_left", "cam_right")]
    wall = np.full(registered_depth(clip, frame, scale=4).shape, 2.0, dtype=np.float32)   # not where they stand

    def left_placed_from_depth(sec: int) -> bool:
        for info in infos:
            node.client.camera_info_pub.publish(info)
            node.spin_for(0.05)
        for depth, camera, nanosec in ((registered_depth(clip, frame, scale=4), "cam_left", 0),
                                       (wall, "cam_right", 10_000_000)):
            image = depth_image_msg(depth, sec, camera)
            image.header.stamp.nanosec = nanosec
            depth_pub.publish(image)
            node.spin_for(0.1)
        msg = clip_msg(clip, frame, sec)
        msg.header.frame_id, msg.header.stamp.nanosec = "cam_left", 6_000_000
        outs.append(node.send_and_receive(msg, timeout=5))
        return outs[-1] is not None and placed_by(outs[-1].humans, HumanPose3D.ROOT_FROM_DEPTH, clip)

    assert any(left_placed_from_depth(sec) for sec in range(1000, 1015)), (
        [out and [h.root_source for h in out.humans] for out in outs], node.log())
    for human, truth in zip(outs[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.03


def test_keypoints_without_a_frame_id_take_no_depth_image_of_another_frame_than_their_camera_info(
        node_factory, clip):
    """Keypoints that name no frame (a detector that leaves header.frame_id empty) are placed with
    the CameraInfo's K, so a depth image must be registered to the CameraInfo's image: one in
    another frame (depth_topic set to another camera's) was read at their pixels with nothing to
    compare it with, and placed the people (a wall 3.5 m away: the clip's people, 5.3-5.5 m away,
    at 3.6 m, ROOT_FROM_DEPTH, nothing counted). It is refused (bad_depth_image, both frames in the
    log) and the people placed from the intrinsics; the same depth in the CameraInfo's frame is used."""
    from sensor_msgs.msg import Image

    from cfi_pose_ros.node.lifting import build_pipeline, depth_warning_key, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    frame = 40
    registered = registered_depth(clip, frame, scale=4)         # small: see above
    wall = np.full(registered.shape, 3.5, dtype=np.float32)     # within the solve's factor 2 of the people
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)

    def unnamed(sec: int):
        msg = clip_msg(clip, frame, sec)
        msg.header.frame_id = ""
        return msg

    lifted = lift_keypoints(pipeline, unnamed(1), clip.camera_matrix, clip.image_size, wall,
                            depth_frame_id="left_camera_optical_frame", camera_frame_id=FRAME)
    assert lifted.dropped == {"bad_depth_image": 1}, lifted.dropped
    words = f"the depth image is in frame 'left_camera_optical_frame', their CameraInfo in '{FRAME}'"
    assert words in lifted.warnings[depth_warning_key("frame")], lifted.warnings
    assert [person.root_source for person in lifted.people] == [HumanPose3D.ROOT_FROM_INTRINSICS] * 2
    own = lift_keypoints(pipeline, unnamed(2), clip.camera_matrix, clip.image_size, registered,
                         depth_frame_id="/" + FRAME, camera_frame_id=FRAME)
    assert not own.dropped and [person.root_source for person in own.people] == [HumanPose3D.ROOT_FROM_DEPTH] * 2

    node = node_factory(overrides={"depth_topic": "/depth_unnamed_keypoints_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_unnamed_keypoints_test", 1)
    send_camera_info(node, clip)
    answers = []

    def answered_with(depth: np.ndarray, frame_id: str):
        return answer_after_depth(node, depth_pub, answers, depth, unnamed(850 + len(answers)), frame_id)

    assert node.spin_until(lambda: answered_with(wall, "left_camera_optical_frame") is not None and _diag_count(
        node.latest_diagnostics(), "bad_depth_image") >= 1, 60), (answers[-1], node.log())
    answered = [out for out in answers if out is not None]
    assert answered and all(placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip) for out in answered), answered
    assert node.spin_until(lambda: words in node.log(), 10), node.log()
    assert node.spin_until(lambda: (out := answered_with(registered, FRAME)) is not None and placed_by(
        out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip), 60), node.log()


@pytest.mark.parametrize("depth_stamp, keypoints_stamp, words", [
    ((900, 1_500_000_000), (901, 500_000_000), "stamped 1500000000 ns past the second"),
    ((-1, 990_000_000), (0, 0), "stamped -1 s: before time 0"),
])
def test_a_depth_image_stamped_outside_ros_time_is_refused(node_factory, clip, depth_stamp, keypoints_stamp, words):
    """A depth image with a stamp no ROS time holds (nanosec of 1e9 or more, a negative second), as
    keypoints with one are dropped: read as seconds, it was paired with the keypoints of another
    time (here 901.5 s, or -0.01 s beside 0 s) and placed their people, nothing counted. It is
    refused (bad_depth_image, the stamp in the log) and the people placed from the intrinsics; the
    same depth image stamped as its keypoints is used."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_stamp_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_stamp_test", 1)
    send_camera_info(node, clip)
    frame, answers = 40, []
    registered = registered_depth(clip, frame, scale=4)         # small: see above

    def answered_with(depth_at: tuple[int, int], keypoints_at: tuple[int, int]):
        depth_pub.publish(stamp_msg(depth_image_msg(registered), *depth_at))
        node.spin_for(0.1)
        answers.append(node.send_and_receive(stamp_msg(clip_msg(clip, frame, 0), *keypoints_at), timeout=5))
        return answers[-1]

    assert node.spin_until(lambda: (out := answered_with((600, 0), (600, 0))) is not None and placed_by(
        out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip), 60), node.log()
    answers.clear()
    assert node.spin_until(lambda: answered_with(depth_stamp, keypoints_stamp) is not None and _diag_count(
        node.latest_diagnostics(), "bad_depth_image") >= 1, 60), (answers[-1], node.log())
    assert node.spin_until(lambda: f"ignoring depth image: {words}" in node.log(), 10), node.log()
    answered = [out for out in answers if out is not None]
    assert answered and all(placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip) for out in answered), answered


def depth_wall(node_factory, clip, topic: str, frame: int, stamp: int):
    """A lifter with a depth topic whose images are a wall 4 m away stamped ``stamp`` (small images:
    see above), and two functions: ``answer()`` sends the clip's ``frame`` at ``stamp`` and returns
    the answer (None: none came), ``answered_from_the_wall()`` first publishes the wall and tells
    whether the answer was placed from it."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": topic, "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, topic, 1)
    send_camera_info(node, clip)
    wall = depth_image_msg(np.full(registered_depth(clip, frame, scale=4).shape, 4.0, np.float32), stamp)

    def answer():
        node.client.received.poses.pop(stamp * 10**9, None)
        return node.send_and_receive(clip_msg(clip, frame, stamp), timeout=5)

    def answered_from_the_wall():
        depth_pub.publish(wall)
        node.spin_for(0.05)
        out = answer()
        return out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip)

    return node, answer, answered_from_the_wall


@pytest.mark.parametrize("stamp", [0, 500], ids=["unstamped", "paused_clock"])
def test_keypoints_are_not_placed_for_good_from_a_depth_stream_that_stopped(node_factory, clip, stamp):
    """Once the depth stream stopped, its last image was as near in stamp as ever to every later
    frame, and placed it (a wall 4 m away: ROOT_FROM_DEPTH at 4.1 m, nothing counted, however long
    after), where a stamped stream's frames are stale_depth. Unstamped: keypoints and depth images
    stamped zero (no time) pair by when each arrived, and 3 s (three depth_max_ages) after the last
    image the frames are placed from the intrinsics. On a paused simulation or bag clock stamping a
    live camera (every message stamped one instant): after more than MAX_STALLED_FRAMES frames at
    that stamp since the last depth image. Both counted as stale_depth; the stream resumed, from
    depth again."""
    frame = 40
    node, answer, answered_from_the_wall = depth_wall(node_factory, clip, f"/depth_stopped_test_{stamp}", frame,
                                                      stamp)
    assert node.spin_until(answered_from_the_wall, 60), node.log()
    stale_before = _diag_count(node.latest_diagnostics(), "stale_depth")
    if stamp == 0:
        node.spin_for(3.0)                          # the depth stream stops, for three times depth_max_age
    else:
        for _ in range(40):                         # the depth stream has stopped: 40 frames (MAX_STALLED_FRAMES is 30)
            answer()
    out = answer()
    assert out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip), (out, node.log())
    for human, truth in zip(out.humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.5          # the monocular solve, not the wall
    assert node.spin_until(lambda: _diag_count(node.latest_diagnostics(), "stale_depth") > stale_before, 30)
    assert node.spin_until(answered_from_the_wall, 60), node.log()


@pytest.mark.parametrize("bad", ["bad_stamp_nanosec", "bad_frame_id"])
def test_frames_dropped_for_their_header_do_not_count_as_frames_of_a_camera_whose_stamps_stand_still(node_factory,
                                                                                                      clip, bad):
    """On a paused clock a camera's frames at one stamp get no depth image once more than
    MAX_STALLED_FRAMES came since its last one (the test above). Frames the lifter drops for their
    header were counted too: one of that camera stamped with a nanosec no ROS time holds restarted
    its count, and its next 30 frames were placed from the wall again; 16 of bad frame_ids pushed it
    out of the bounded record of cameras, alike. A dropped frame changes nothing of it now."""
    from cfi_pose_ros.frame_ids import MAX_CAMERAS

    frame, stamp = 40, 700
    node, answer, answered_from_the_wall = depth_wall(node_factory, clip, "/depth_standing_dropped_test", frame,
                                                      stamp)

    def placed_without_the_wall():
        out = answer()
        return out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip)

    assert node.spin_until(answered_from_the_wall, 60), node.log()
    for _ in range(40):                         # the depth stream has stopped: 40 frames (MAX_STALLED_FRAMES is 30)
        answer()
    assert placed_without_the_wall(), node.log()
    dropped_before = _diag_count(node.latest_diagnostics(), bad)
    dropped = [clip_msg(clip, frame, stamp) for _ in range(MAX_CAMERAS if bad == "bad_frame_id" else 1)]
    for k, msg in enumerate(dropped):
        if bad == "bad_stamp_nanosec":
            msg.header.stamp.nanosec = 4_294_967_295        # the camera's own frame_id
        else:
            msg.header.frame_id = f"bad camera {k}"         # a space: no frame tf2 takes
        node.client.publish(msg)
        node.spin_for(0.05)
    assert node.spin_until(lambda: _diag_count(node.latest_diagnostics(), bad) >= dropped_before + len(dropped),
                           30), node.latest_diagnostics()
    assert placed_without_the_wall(), node.log()     # still standing: no wall


def test_an_unstamped_depth_image_does_not_place_keypoints_stamped_near_time_zero(node_factory, clip):
    """A depth image stamped zero is no time: it pairs with keypoints stamped zero only, by arrival.
    Compared by stamp, keypoints stamped 0.5 s (a simulation's first second) were within
    depth_max_age (1 s) of it and were placed from it: a wall 4 m away, ROOT_FROM_DEPTH."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_near_zero_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_near_zero_test", 1)
    send_camera_info(node, clip)
    frame = 40
    shape = registered_depth(clip, frame, scale=4).shape        # small: see above
    wall = depth_image_msg(np.full(shape, 4.0, np.float32), 0)     # unstamped

    def answer(nanosec: int):
        node.client.received.poses.pop(nanosec, None)
        return node.send_and_receive(stamp_msg(clip_msg(clip, frame, 0), 0, nanosec), timeout=5)

    def unstamped_answered_from_the_wall():
        depth_pub.publish(wall)
        node.spin_for(0.05)
        out = answer(0)
        return out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_DEPTH, clip)

    assert node.spin_until(unstamped_answered_from_the_wall, 60), node.log()    # the node holds the wall
    out = answer(500_000_000)
    assert out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip), (out, node.log())
    for human, truth in zip(out.humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.5          # the monocular solve, not the wall


def test_a_frame_dropped_for_its_header_is_not_also_counted_as_stale_depth(node_factory, clip):
    """A frame whose depth images are all stamped far from it, dropped for its header (a frame_id
    with a space), was counted twice on /diagnostics: stale_depth (the node counted it on pairing)
    and bad_frame_id, two bad frames for one. It is counted once, under the reason that decided its
    fate (bad_frame_id); a frame placed without depth is still counted stale_depth. Alike lifting
    with a CameraInfo it does not use (root-relative: bad_camera_info alone)."""
    from sensor_msgs.msg import Image

    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    frame = 40
    node = node_factory(overrides={"depth_topic": "/depth_stale_header_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_stale_header_test", 1)
    send_camera_info(node, clip)
    image = depth_image_msg(registered_depth(clip, frame, scale=4), 900)       # small: see above

    def stale_counted():
        depth_pub.publish(image)
        node.spin_for(0.1)
        node.client.received.poses.pop(950 * 10**9, None)
        out = node.send_and_receive(clip_msg(clip, frame, 950), timeout=5)      # 50 s after the depth image
        return out is not None and _diag_count(node.latest_diagnostics(), "stale_depth") >= 1

    assert node.spin_until(stale_counted, 60), node.log()
    bad_header = clip_msg(clip, frame, 951)
    bad_header.header.frame_id = "test camera"
    stale_before = _diag_count(node.latest_diagnostics(), "stale_depth")
    assert node.spin_until(lambda: node.client.publish(bad_header) or _diag_count(
        node.latest_diagnostics(), "bad_frame_id") >= 1, 60), node.log()
    diagnostics = node.latest_diagnostics()
    assert _diag_count(diagnostics, "stale_depth") == stale_before, diagnostics

    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    other_camera = lift_keypoints(pipeline, clip_msg(clip, frame, 2), clip.camera_matrix, clip.image_size,
                                  camera_frame_id="left_camera_optical_frame", depth_stale=True)
    assert other_camera.dropped == {"bad_camera_info": 1}, other_camera.dropped
    placed = lift_keypoints(pipeline, clip_msg(clip, frame, 2), clip.camera_matrix, clip.image_size,
                            camera_frame_id=FRAME, depth_stale=True)
    assert placed.dropped == {"stale_depth": 1}, placed.dropped


def test_each_kind_of_bad_depth_image_is_logged_within_another_kind_s_throttle_period(node_factory, clip):
    """Every bad depth image was logged under one throttle key: a depth image of an unsupported
    encoding silenced the warning about one whose data is cut short (or holds millimetres as
    floats) for 5 s, and a depth image of another camera's frame the one about a depth image of
    another aspect: counted, never read in the log. Each kind has its own key, so a second kind
    within the period is logged too."""
    from sensor_msgs.msg import Image

    node = node_factory(overrides={"depth_topic": "/depth_throttle_test", "depth_max_age": 1.0})
    depth_pub = node.client.create_publisher(Image, "/depth_throttle_test", 1)
    send_camera_info(node, clip)
    frame = 40
    registered = registered_depth(clip, frame, scale=4)         # small: see above
    rgb = depth_image_msg(registered, 600)
    rgb.encoding = "rgb8"
    cut_short = depth_image_msg(registered, 601)
    cut_short.data = cut_short.data[:100]
    millimetres = depth_image_msg(registered * 1000.0, 602)
    started = time.monotonic()
    for image, words in ((rgb, "ignoring depth image: unsupported depth encoding 'rgb8'"),
                         (cut_short, "ignoring depth image: depth image data has 100 bytes"),
                         (millimetres, "ignoring depth image: a 32FC1 depth image holds metres")):
        assert node.spin_until(lambda: depth_pub.publish(image) or words in node.log(), 3.0), (words, node.log())
    assert time.monotonic() - started < 5.0         # all within one throttle period (WARN_PERIOD_S)

    answers = []

    def answered_with(depth: np.ndarray, frame_id: str):
        return answer_after_depth(node, depth_pub, answers, depth, clip_msg(clip, frame, 610 + len(answers)),
                                  frame_id, timeout=1)

    other_frame = "the depth image is in frame 'left_camera_optical_frame'"
    other_aspect = "the 160x120 depth image (aspect 1.333) cannot be registered"
    started = time.monotonic()
    assert node.spin_until(lambda: answered_with(registered, "left_camera_optical_frame") is not None
                           and other_frame in node.log(), 3.0), node.log()
    assert node.spin_until(lambda: answered_with(np.full((120, 160), 2.0, np.float32), FRAME) is not None
                           and other_aspect in node.log(), 3.0), node.log()
    assert time.monotonic() - started < 5.0


def test_camera_info_of_another_camera_s_frame_is_not_used(node_factory, clip):
    """camera_info_topic set to another camera's (the stereo pair's other camera, the depth sensor
    beside the colour one): its K placed this camera's people by another lens (a K of twice the focal
    length: twice as far, 6 m off). A CameraInfo whose frame is not the keypoints' is not used for them: root-relative,
    counted (bad_camera_info), both frames in the log; the same CameraInfo in the keypoints' frame
    (a leading '/' aside) places them."""
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    frame = 40
    other = camera_info_msg(clip.camera_matrix * [[2.0], [2.0], [1.0]], clip.image_size, "right_camera_optical_frame")
    lifted = lift_keypoints(build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default), clip_msg(clip, frame, 1),
                            other.k.reshape(3, 3), clip.image_size, camera_frame_id=other.header.frame_id)
    assert lifted.dropped["bad_camera_info"] == 1 and "'right_camera_optical_frame'" in lifted.warnings[
        "camera_info_frame"]
    assert [person.track_id for person in lifted.people] == clip.ids
    assert all(person.root_source == HumanPose3D.ROOT_RELATIVE for person in lifted.people)

    node = node_factory()
    answers = []

    def answered_after(info):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        answers.append(node.send_and_receive(clip_msg(clip, frame, sec=900 + len(answers)), timeout=5))
        return answers[-1]

    assert node.spin_until(lambda: answered_after(other) is not None and _diag_count(
        node.latest_diagnostics(), "bad_camera_info") >= 1, 60), node.log()
    assert all(placed_by(out.humans, HumanPose3D.ROOT_RELATIVE, clip) for out in answers if out is not None)
    assert node.spin_until(lambda: f"it is for frame 'right_camera_optical_frame', the keypoints are in '{FRAME}'"
                           in node.log(), 10), node.log()

    own = camera_info_msg(clip.camera_matrix, clip.image_size, "/" + FRAME)
    assert node.spin_until(lambda: (out := answered_after(own)) is not None and placed_by(
        out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip), 60), node.log()
    for human, truth in zip(answers[-1].humans, clip.truth_camera_m[frame], strict=True):
        assert abs(human.body_pose.position.z - truth[0, 2]) < 0.5


def test_two_cameras_on_one_topic_are_each_placed_with_their_own_camera_info(node_factory, clip):
    """Two cameras' keypoints on one topic (each smoothed, drawn and sent to TF as if alone) and their
    CameraInfo on one topic: only the newest CameraInfo was kept, so a camera's people were placed
    only when no CameraInfo of the other had come since, and else refused as another camera's
    (root-relative, bad_camera_info: WARN); with both CameraInfos sent before the keypoints, the
    first camera's people never were. The last CameraInfo of each camera frame is kept (16 frames
    at most): each camera's people are placed with its own K. The WARN for people that cannot be
    placed asks every camera kept (it read the newest CameraInfo alone) and names the one that cannot."""
    from diagnostic_msgs.msg import DiagnosticStatus

    node = node_factory(overrides={"diagnostics_period": 0.2, "warn_latency_ms": 1e6})   # no other WARN
    frame, cameras = 40, {"cam_left": 1.0, "cam_right": 2.0}     # the right camera's focal length twice
    infos = {camera: camera_info_msg(clip.camera_matrix * [[f], [f], [1.0]], clip.image_size, camera)
             for camera, f in cameras.items()}
    outs = {}

    def both_placed(sec: int) -> bool:
        for info in infos.values():
            node.client.camera_info_pub.publish(info)
            node.spin_for(0.1)
        for k, camera in enumerate(cameras):
            msg = clip_msg(clip, frame, sec=sec)
            msg.header.frame_id = camera
            msg.header.stamp.nanosec = 1000 * k      # each camera's frame its own stamp
            outs[camera] = node.send_and_receive(msg, timeout=5)
        return all(out is not None and placed_by(out.humans, HumanPose3D.ROOT_FROM_INTRINSICS, clip)
                   for out in outs.values())

    assert any(both_placed(sec) for sec in range(950, 965)), (
        {camera: out and [h.root_source for h in out.humans] for camera, out in outs.items()}, node.log())
    for camera, f in cameras.items():       # twice the focal length: the same pixels twice as far
        for human, truth in zip(outs[camera].humans, clip.truth_camera_m[frame], strict=True):
            assert abs(human.body_pose.position.z - f * truth[0, 2]) < 0.5 * f, camera
    diag = node.latest_diagnostics()
    assert _diag_count(diag, "bad_camera_info") == 0 and diag["_level"] == DiagnosticStatus.OK, diag
    # an uncalibrated driver's K (all zero) for one camera: its people cannot be placed, the other's can
    uncalibrated = camera_info_msg(clip.camera_matrix * 0.0, clip.image_size, "cam_right")
    for _ in range(20):
        node.client.camera_info_pub.publish(uncalibrated)
        diag = node.latest_diagnostics()
        if "cam_right" in diag["_message"]:
            break
    topic = node.topics["camera_info_topic"]
    assert diag["_level"] == DiagnosticStatus.WARN and (
        f"; no valid CameraInfo on {topic} for cam_right (root-relative output)" in diag["_message"]), diag


def test_a_camera_renamed_by_its_driver_is_no_longer_said_unplaced_once_its_old_frame_is_unseen():
    """An uncalibrated driver (K all zero) on one frame, restarted calibrated under another: the old
    frame's zero K was kept, and unplaced() named it, the status WARN "no valid CameraInfo ... for
    camera_optical_frame", for as long as the node ran while every person was placed. A camera is
    said unplaced while its CameraInfo or keypoints came in the last 300 keypoint messages; its
    CameraInfo is kept for its keypoints all the same (a driver may latch it, sending it once)."""
    from cfi_pose_ros.node.lifting import CameraInfoByFrame, CameraModel

    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    cameras = CameraInfoByFrame()
    cameras.add(CameraModel(None, None, (640, 480), "camera_optical_frame"))
    cameras.for_keypoints("camera_optical_frame")
    assert cameras.unplaced() == ["camera_optical_frame"]
    cameras.add(CameraModel(k, None, (640, 480), "front_optical_frame"))
    for _ in range(CameraInfoByFrame.UNSEEN_AFTER_KEYPOINTS):
        assert cameras.unplaced() == ["camera_optical_frame"]
        cameras.for_keypoints("front_optical_frame")
    cameras.for_keypoints("front_optical_frame")
    assert cameras.unplaced() == []
    # kept: keypoints of the old frame still find its own camera, and it is said unplaced again
    assert cameras.for_keypoints("camera_optical_frame").frame_id == "camera_optical_frame"
    assert cameras.unplaced() == ["camera_optical_frame"]
    # a latched CameraInfo that places people is used however long ago it came
    cameras.add(CameraModel(k, None, (640, 480), "latched_frame"))
    for _ in range(1000):
        cameras.for_keypoints("front_optical_frame")
    assert cameras.for_keypoints("latched_frame").matrix is k


def test_a_camera_info_naming_no_tf2_frame_is_refused_and_not_kept_as_a_camera(node_factory, clip):
    """A CameraInfo whose header.frame_id no tf2 tree holds (past 256 characters, a space) is refused
    (bad_camera_info) and is no camera: it was kept under that name, so every status from then on
    named it ("no valid CameraInfo ... for <a 100 000-character name>": each /diagnostics message
    that large) and stayed WARN after the camera's valid CameraInfo came, as a camera kept that
    cannot place people. No keypoints can be of such a frame: they are dropped for it."""
    from diagnostic_msgs.msg import DiagnosticStatus

    node = node_factory(overrides={"diagnostics_period": 0.2, "warn_latency_ms": 1e6})   # no other WARN
    topic = node.topics["camera_info_topic"]
    refused = 0
    for name in ("f" * 100_000, "cam era"):
        info = camera_info_msg(clip.camera_matrix, clip.image_size, name)
        for _ in range(50):
            node.client.camera_info_pub.publish(info)
            diag = node.latest_diagnostics()
            if _diag_count(diag, "bad_camera_info") > refused:
                break
        assert _diag_count(diag, "bad_camera_info") > refused, (diag, node.log()[-2000:])
        refused = _diag_count(diag, "bad_camera_info")
        assert diag["_level"] == DiagnosticStatus.WARN and (
            f"; no valid CameraInfo on {topic} (root-relative output)" in diag["_message"]), diag["_message"][:300]
        assert len(diag["_message"]) < 1000 and name not in diag["_message"]
    send_camera_info(node, clip)
    for _ in range(20):
        diag = node.latest_diagnostics()
        if diag["_level"] == DiagnosticStatus.OK:
            break
    assert diag["_level"] == DiagnosticStatus.OK and diag["_message"] == "lifting", diag["_message"][:300]
    assert node.process.poll() is None, node.log()


def test_camera_info_of_a_binned_or_cropped_image_describes_the_published_pixels(clip):
    """CameraInfo's K, width and height are the full sensor's; a driver that bins (binning_x/y) or
    crops (roi, in full-resolution pixels) publishes smaller images, and the 2D keypoints are in
    those. camera_from_info moves K and the size to the published image (as image_geometry's
    PinholeCameraModel does): people lifted from a 2x2-binned image are placed where the
    full-resolution image places them (ignoring binning put them twice as far, metres off); from a
    2x1- or 1x2-binned one too (its fx != fy: taken as square pixels, 1.09 and 0.84 m off)."""
    from sensor_msgs.msg import RegionOfInterest

    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.node.lifting import camera_from_info
    from cfi_pose_ros.pipeline import Frame2D, LiftingPipeline, Person2D
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    pipeline = LiftingPipeline(create_lifter(str(DEFAULT_WEIGHTS), backend="torch", log=lambda *_: None))
    placed = []
    for binning in ((1, 1), (2, 2), (2, 1), (1, 2)):
        info = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME)
        info.binning_x, info.binning_y = binning
        k, _, size = camera_from_info(info)
        pixels = clip.pixels[20, 0] / np.array(binning, dtype=np.float64)
        frame = Frame2D(people=[Person2D(pixels, clip.scores[20, 0].astype(np.float64), "h36m_17",
                                         track_id="a", score=0.9)],
                        image_width=float(size[0]), image_height=float(size[1]), stamp=0.0, camera_matrix=k)
        placed.append(pipeline.process(frame).people[0].keypoints)
    np.testing.assert_allclose(placed[1], placed[0], atol=1e-4)
    for other in placed[2:]:
        np.testing.assert_allclose(other, placed[0], atol=0.01)
    # a region of interest, then 2x binning: a 3D point projects to (full-resolution pixel - offset) / 2
    cropped = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME)
    cropped.roi = RegionOfInterest(x_offset=100, y_offset=40, width=600, height=400)
    cropped.binning_x = cropped.binning_y = 2
    k, _, size = camera_from_info(cropped)
    assert size == (300, 200)
    point = np.array([0.4, -0.3, 4.0])
    full_pixel = (clip.camera_matrix @ point)[:2] / point[2]
    np.testing.assert_allclose((k @ point)[:2] / point[2], (full_pixel - [100, 40]) / 2.0, atol=1e-9)


@pytest.mark.parametrize("roi, binning", [((5000, 5000, 1000, 1002), (0, 0)), ((1, 0, 1000, 1002), (0, 0)),
                                          ((0, 3, 1000, 1000), (0, 0)), ((0, 0, 0, 0), (1000, 1000)),
                                          ((0, 0, 0, 0), (1, 100)), ((0, 0, 10, 600), (0, 0)),
                                          # binning wider than the image: a side of 0 pixels
                                          ((0, 0, 0, 0), (1001, 1)), ((0, 0, 0, 0), (4000000000, 4000000000)),
                                          ((0, 0, 3, 600), (4, 1))])
def test_camera_info_whose_roi_leaves_the_sensor_or_no_image_is_refused(clip, roi, binning):
    """A roi a few sensor widths outside moved the principal point, so people were placed 28 m to
    the side, still marked as placed from the intrinsics: K passed its check, which is against the
    sensor. A binning of the sensor into one pixel, or a roi of a few, left an image nothing can be
    told apart in; one wider than the image left a side of 0 pixels, read as no size at all, and
    K divided by it placed a person 20 m away 1.4 cm from the camera. All are refused as a
    CameraInfo no camera has; the sensor's last pixels and a real binning are used."""
    from sensor_msgs.msg import RegionOfInterest

    from cfi_pose_ros.node.lifting import camera_from_info

    assert clip.image_size == (1000, 1002)
    info = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME)
    info.roi = RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3])
    info.binning_x, info.binning_y = binning
    with pytest.raises(ValueError, match="roi"):
        camera_from_info(info)
    for (x, y, width, height), (bin_x, bin_y), size in (((400, 602, 600, 400), (0, 0), (600, 400)),
                                                        ((0, 0, 0, 0), (8, 8), (125, 125)),
                                                        ((984, 986, 16, 16), (1, 1), (16, 16))):
        info.roi = RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height)
        info.binning_x, info.binning_y = bin_x, bin_y
        assert camera_from_info(info)[2] == size


def test_camera_info_gives_the_lens_for_raw_keypoints_and_p_for_rectified_ones():
    """keypoints_image raw: K and the lens of d (None for an all-zero or empty d: the fast path,
    K exactly as before); rectified: P's left 3x3 and no lens, K where P is all zero. ROI and
    binning move P as they move K; a d nothing can undo is refused like a bad K."""
    from sensor_msgs.msg import RegionOfInterest

    from cfi_pose_ros.camera import lens_distortion
    from cfi_pose_ros.node.lifting import camera_from_info
    from poses import WIDE_K, WIDE_LENS, WIDE_SIZE

    plain = camera_info_msg(WIDE_K, WIDE_SIZE, FRAME)
    for d in ([0.0] * 5, [], [0.0] * 8):
        plain.d = d
        k, lens, size = camera_from_info(plain)
        assert lens is None and size == WIDE_SIZE and k.tobytes() == WIDE_K.tobytes()
    info = camera_info_msg(WIDE_K, WIDE_SIZE, FRAME, lens_distortion(*WIDE_LENS))
    k, lens, size = camera_from_info(info, "raw")
    assert lens == lens_distortion(*WIDE_LENS) and np.array_equal(k, WIDE_K)
    projection = np.array([[520.0, 0.0, 650.0], [0.0, 521.0, 390.0], [0.0, 0.0, 1.0]])
    info.p = [float(v) for v in np.column_stack([projection, [-31.2, 0.0, 0.0]]).ravel()]   # a stereo pair's right P
    k, lens, _ = camera_from_info(info, "rectified")
    assert lens is None and np.array_equal(k, projection)
    info.roi = RegionOfInterest(x_offset=100, y_offset=40, width=600, height=400)
    info.binning_x = info.binning_y = 2
    k, lens, size = camera_from_info(info, "rectified")
    assert size == (300, 200)
    np.testing.assert_allclose(k, [[260.0, 0.0, 275.0], [0.0, 260.5, 175.0], [0.0, 0.0, 1.0]])
    info.p = [0.0] * 12
    assert np.allclose(camera_from_info(info, "rectified")[0], camera_from_info(info, "raw")[0])
    info.d = [-0.3, np.nan, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="distortion coefficients contain NaN"):
        camera_from_info(info, "raw")
    assert camera_from_info(info, "rectified")[1] is None       # a rectified image has nothing to undo
    info.p = [float(v) for v in np.column_stack([np.full((3, 3), np.nan), np.zeros(3)]).ravel()]
    with pytest.raises(ValueError, match="NaN or inf"):
        camera_from_info(info, "rectified")


@pytest.mark.parametrize("model, d, words", [
    ("plumb_bob", [9999.0, 0.0, 0.0, 0.0, 0.0], "to 0.077 of its distance from the principal point"),
    ("plumb_bob", [0.0, 9999.0, 0.0, 0.0, 0.0], "to 0.28 of its distance"),
    ("equidistant", [9999.0, 0.0, 0.0, 0.0], "to 0.077 of its distance"),
    ("plumb_bob", [-9999.0, 0.0, 0.0, 0.0, 0.0], "cannot be undone at pixel (625, 501) of the 1000x1002 image"),
    ("plumb_bob", [0.0, 0.0, 9999.0, 0.0, 0.0], "cannot be undone"),
    ("rational_polynomial", [0.0, 0.0, 0.0, 0.0, 0.0, 9999.0, 0.0, 0.0], "cannot be undone"),
])
def test_a_camera_info_whose_lens_shrinks_or_folds_its_image_is_refused(clip, model, d, words):
    """Distortion coefficients near 1e4 (under MAX_DISTORTION_COEFFICIENT: a mis-scaled or
    corrupt d) undid the image to a tenth of its size or folded it a few pixels from the principal
    point: people were placed tens of metres away, or all dropped as out_of_image. Such a CameraInfo
    is refused with the reason, as a K no camera has (and with it, lift_keypoints lifts root-relative)."""
    from cfi_pose_ros.camera import LensDistortion
    from cfi_pose_ros.node.lifting import build_pipeline, camera_or_size_from_info, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    info = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME, LensDistortion(model, tuple(d)))
    matrix, lens, size, refused = camera_or_size_from_info(info)
    assert matrix is None and lens is None and size == clip.image_size
    assert isinstance(refused, ValueError) and words in str(refused), refused
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    lifted = lift_keypoints(pipeline, clip_msg(clip, 40, 3), matrix, size, lens=lens, camera_frame_id=FRAME)
    assert [person.root_source for person in lifted.people] == [HumanPose3D.ROOT_RELATIVE] * 2


@pytest.mark.parametrize("d", [[-0.3, 0.1, 0.0, 0.0, 0.0], [0.1, 0.05, 0.0, 0.0, 0.0],
                               [-0.45, 0.2, 0.0, 0.0, -0.05], [-0.30, 0.09, 0.001, -0.0005, -0.012]])
def test_a_camera_info_of_a_real_lens_places_its_people_through_it(clip, d):
    """Real lenses' plumb_bob calibrations (barrel, pincushion, a wide lens's fit that folds near the
    corners) pass the check of the lens over the image: their people are placed, not root-relative."""
    from cfi_pose_ros.camera import LensDistortion
    from cfi_pose_ros.node.lifting import build_pipeline, camera_or_size_from_info, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    info = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME, LensDistortion("plumb_bob", tuple(d)))
    matrix, lens, size, refused = camera_or_size_from_info(info)
    assert refused is None and lens is not None, refused
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    lifted = lift_keypoints(pipeline, clip_msg(clip, 40, 3), matrix, size, lens=lens, camera_frame_id=FRAME)
    assert [person.root_source for person in lifted.people] == [HumanPose3D.ROOT_FROM_INTRINSICS] * 2


def test_a_camera_info_of_another_resolution_is_scaled_to_the_keypoints_image(clip):
    """Keypoints of a 1000x1002 image with CameraInfo of the same camera at 2000x2004 (a detector's
    resized input, a mode change): K was used as it was, people landed 6 m off and were still
    ROOT_FROM_INTRINSICS. K is moved to the keypoints' image: the same placement as a matching one."""
    from cfi_pose_ros.camera import rescale_camera_matrix
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.node.conversions import frame_from_msg
    from cfi_pose_ros.pipeline import LiftingPipeline
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    width, height = clip.image_size
    k = np.asarray(clip.camera_matrix, dtype=np.float64)
    double = rescale_camera_matrix(k, (width, height), (2 * width, 2 * height))
    assert np.allclose(rescale_camera_matrix(double, (2 * width, 2 * height), (width, height)), k)
    point = np.array([0.3, -0.2, 4.0])                       # one point seen in both images
    assert np.allclose((double @ point)[:2] / point[2], ((k @ point)[:2] / point[2] + 0.5) * 2 - 0.5)
    pipeline = LiftingPipeline(create_lifter(str(DEFAULT_WEIGHTS), backend="torch", log=lambda *_: None))
    msg = clip_msg(clip, 20, sec=1)
    placed = [pipeline.process(frame_from_msg(msg, matrix, size)).people[0].position
              for matrix, size in ((k, (width, height)), (double, (2 * width, 2 * height)),
                                   (rescale_camera_matrix(k, (width, height), (width // 2, height // 2)),
                                    (width // 2, height // 2)))]
    assert np.allclose(placed[1], placed[0], atol=0.02) and np.allclose(placed[2], placed[0], atol=0.02), placed


def test_a_camera_info_of_another_aspect_ratio_than_the_keypoints_image_is_not_used(clip):
    """Keypoints of the 1000x1002 image in a message that says 1000x750 (a letterboxed detector
    input, the network's input size written into image_width/height): K was moved to 1000x750 by two
    factors and the person was placed 1.7 m off, still from the intrinsics, nothing logged nor
    counted. Not the same view resized: the CameraInfo is not used (root-relative, bad_camera_info,
    both sizes in the warning); resized by one factor, each side rounded, it still places them."""
    from cfi_pose_ros.camera import is_resized_view
    from cfi_pose_ros.node.lifting import build_pipeline, lift_keypoints
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    width, height = clip.image_size
    assert is_resized_view((width // 2, height // 2), (width, height))
    assert is_resized_view((641, 360), (1920, 1080)) and not is_resized_view((640, 640), (1920, 1080))
    pipeline = build_pipeline(lambda name: PARAMETERS_BY_NAME[name].default)
    frame = 20
    truth = clip.truth_camera_m[frame][0, 0]

    def lifted(size):
        msg = clip_msg(clip, frame, 1)
        msg.image_width, msg.image_height = size
        return lift_keypoints(pipeline, msg, np.asarray(clip.camera_matrix, float), clip.image_size)

    same = lifted((width, height))
    assert same.people[0].root_source == HumanPose3D.ROOT_FROM_INTRINSICS and not same.dropped
    assert np.linalg.norm(same.people[0].position - truth) < 0.5
    letterboxed = lifted((width, 750))
    assert letterboxed.dropped == {"bad_camera_info": 1}
    assert len(letterboxed.people) == len(same.people) == len(clip.ids)
    assert all(person.root_source == HumanPose3D.ROOT_RELATIVE for person in letterboxed.people)
    assert (f"the keypoints are pixels of a {width}x750 image (aspect {width / 750:.3f}), its image is "
            f"{width}x{height}") in letterboxed.warnings["camera_info_size"]


def test_a_person_of_very_many_keypoints_is_refused_for_its_count_without_converting_them(clip):
    """All of a person's keypoints were turned into floats before the count refused them: 76 ms for
    one person of 100,000 keypoints, every frame. One more than any layout has is enough to refuse."""
    from cfi_pose_ros.msg import Keypoint2D
    from cfi_pose_ros.node.conversions import frame_from_msg
    from cfi_pose_ros.pipeline import check_person

    msg = clip_msg(clip, 20, sec=1)
    msg.people[0].keypoints = [Keypoint2D(x=1.0, y=2.0, score=0.5)] * 100_000
    frame = frame_from_msg(msg, None, None)
    assert frame.people[0].keypoints.shape == (18, 2)
    assert check_person(frame.people[0]) == "wrong_keypoint_count" and check_person(frame.people[1]) is None


def lifted_once_the_camera_info_is_used(node, info, msg, sec: int, previous: np.ndarray | None = None):
    """``msg``'s answer once the node places people with ``info``: ``info`` published before each try
    until two answers in a row agree (and differ from ``previous``, the position the camera info
    the node had before gave). The first person's position and the answer."""
    last = None
    for attempt in range(60):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        out = node.send_and_receive(stamp_msg(msg, sec + attempt), timeout=5)
        if out is None or not out.humans or out.humans[0].root_source != HumanPose3D.ROOT_FROM_INTRINSICS:
            continue
        p = out.humans[0].body_pose.position
        position = np.array([p.x, p.y, p.z])
        if previous is not None and np.allclose(position, previous, atol=1e-3):
            continue                                    # still the camera info before
        if last is not None and np.allclose(position, last, atol=1e-6):
            return position, out
        last = position
    raise AssertionError(f"the node never settled on the CameraInfo\n{node.log()}")


def test_keypoints_of_a_wide_angle_camera_s_raw_image_are_placed_with_its_distortion(node_factory, clip):
    """A person 31 degrees off axis, 2 m away, seen by a wide-angle camera (k1 = -0.30, which moved
    the pelvis 37 px in the raw image): with the CameraInfo's d and the default keypoints_image
    (raw) the node places them within 7 cm of the truth (6.55 cm, as through LiftingPipeline in
    test_pipeline.py; 5.2 cm with the cfi_h36m weights); with the undistortion skipped
    (keypoints_image: rectified, the CameraInfo's P equal to K) the same pixels put them 34.5 cm off.
    Keypoints of the rectified image (image_proc, P's own focal length and centre) are placed with
    P, as close (the same rays: the lifter sees them through the reference camera); with K
    (P left all zero) 58 cm off. (The default weights; `pytest -s` prints the figures.)"""
    from cfi_pose_ros.camera import lens_distortion
    from poses import WIDE_K, WIDE_LENS, WIDE_SIZE, wide_angle_view

    root = 2.0 * np.array([0.6, 0.0, 1.0])
    projection = np.array([[520.0, 0.0, 650.0], [0.0, 520.0, 390.0], [0.0, 0.0, 1.0]])   # alpha = 0: zoomed in
    raw, rectified, _ = wide_angle_view(clip.truth_camera_m[50, 0], root, projection)
    info = camera_info_msg(WIDE_K, WIDE_SIZE, FRAME, lens_distortion(*WIDE_LENS))
    assert list(info.d) == WIDE_LENS[1] and info.distortion_model == "plumb_bob"

    def message(pixels):
        return keypoints_msg(pixels[None], np.ones((1, 17)), ["a"], WIDE_SIZE, "h36m_17", FRAME, 0)

    raw_node = node_factory()
    placed, out = lifted_once_the_camera_info_is_used(raw_node, info, message(raw), sec=10)
    print(f"\nwide-angle raw keypoints through the node: placed {np.linalg.norm(placed - root) * 100:.2f} cm "
          "from the truth")
    assert np.linalg.norm(placed - root) < 0.07, placed
    assert np.allclose(as_array(out.humans[0])[0], placed)

    rectified_node = node_factory(overrides={"keypoints_image": "rectified"})
    skipped, _ = lifted_once_the_camera_info_is_used(rectified_node, info, message(raw), sec=10)
    assert np.linalg.norm(skipped - root) > 0.2, skipped
    info.p = [float(v) for v in np.column_stack([projection, np.zeros(3)]).ravel()]
    placed, _ = lifted_once_the_camera_info_is_used(rectified_node, info, message(rectified), sec=100,
                                                    previous=skipped)
    print(f"rectified keypoints placed with P: {np.linalg.norm(placed - root) * 100:.2f} cm; the undistortion "
          f"skipped: {np.linalg.norm(skipped - root) * 100:.1f} cm")
    assert np.linalg.norm(placed - root) < 0.07, placed
    # an uncalibrated driver's all-zero P: K, as image_geometry falls back
    info.p = [0.0] * 12
    placed_with_k, _ = lifted_once_the_camera_info_is_used(rectified_node, info, message(rectified), sec=200,
                                                           previous=placed)
    print(f"rectified keypoints placed with K (P all zero): {np.linalg.norm(placed_with_k - root) * 100:.1f} cm")
    assert np.linalg.norm(placed_with_k - root) > 0.2, placed_with_k


@pytest.mark.parametrize("model, d", [("plumb_bob", [np.nan, 0.0, 0.0, 0.0, 0.0]), ("fisheye", [0.1, 0.01, 0.0, 0.0]),
                                      ("plumb_bob", [-1e30, 0.0, 0.0, 0.0, 0.0]),
                                      ("plumb_bob", [9999.0, 0.0, 0.0, 0.0, 0.0]),
                                      ("plumb_bob", [-9999.0, 0.0, 0.0, 0.0, 0.0])])
def test_a_distortion_nothing_can_undo_is_ignored_and_counted(node_factory, clip, model, d):
    """A lens the node cannot undo (non-finite, an unknown model, no real lens's coefficients, a
    model that shrinks the image to a tenth or folds inside it) is treated like a K no camera has:
    root-relative poses and bad_camera_info, never people placed through a wrong model (k1 = 9999,
    within the coefficients' bound, placed the clip's people 34-40 m away instead of 5.3 m; k1 =
    -9999 dropped them all as out_of_image)."""
    node = node_factory()
    info = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME)
    info.distortion_model, info.d = model, d
    for attempt in range(5):
        node.client.camera_info_pub.publish(info)
        node.spin_for(0.05)
        out = node.send_and_receive(clip_msg(clip, 0, sec=20 + attempt))
        assert out is not None and placed_by(out.humans, HumanPose3D.ROOT_RELATIVE, clip), out
    assert _diag_count(node.latest_diagnostics(), "bad_camera_info") >= 1
    assert "ignoring CameraInfo: " in node.log() and ("distortion" in node.log())


def test_subscribers_the_outputs_cannot_serve_are_warned_of_throttled(node_factory):
    """A subscriber asking for what the outputs do not offer (TRANSIENT_LOCAL on the VOLATILE poses and
    markers), restarted in a loop: at most one warning per output topic every 5 s, naming the topic
    and the policy. rclpy's default logged one line for each subscriber on each topic (300 restarts:
    600 lines)."""
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    from cfi_pose_ros.msg import HumanPose3DArray
    from cfi_pose_ros.node.base import WARN_PERIOD_S

    node = node_factory()
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    outputs = {node.topics["output_topic"]: HumanPose3DArray, node.topics["markers_topic"]: MarkerArray}
    refused = []        # this side's own incompatible-QoS events: each subscriber has met the node's publisher
    started, restarts = time.monotonic(), 8
    for restart in range(restarts):
        subscriptions = [node.client.create_subscription(
            msg_type, topic, lambda msg: None, latched,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=refused.append))
            for topic, msg_type in outputs.items()]
        assert node.spin_until(lambda: len(refused) >= len(outputs) * (restart + 1), 20.0), refused
        for subscription in subscriptions:
            node.client.destroy_subscription(subscription)
    allowed = 1 + int((time.monotonic() - started) / WARN_PERIOD_S)     # a throttled warning may come again
    for topic in outputs:
        def warnings() -> list[str]:
            return [line for line in node.log().splitlines()
                    if f"{topic}'" in line and "incompatible" in line or f"a subscriber on {topic} " in line]

        assert node.spin_until(warnings, 10.0), node.log()
        assert len(warnings()) <= allowed < restarts, warnings()
        assert (f"a subscriber on {topic} asks for a QoS this node's publisher does not offer (policy DURABILITY); "
                "nothing will be sent to it. the outputs are VOLATILE") in warnings()[0], warnings()


def test_the_incompatible_qos_warning_is_throttled_and_diagnostics_run_without_a_clock(node_factory):
    """A RELIABLE input with a BEST_EFFORT driver that restarts in a loop: one warning per input,
    naming its topic, not one per restart. And with use_sim_time but no /clock (a bag played
    without --clock), /diagnostics still comes (its timer ran on ROS time, which never advanced)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from cfi_pose_ros.msg import HumanKeypoints2DArray

    node = node_factory(overrides={"input_reliability": "reliable", "use_sim_time": True,
                                   "diagnostics_period": 0.2, "warn_no_input_s": 1.0})
    assert node.latest_diagnostics(timeout=5.0), node.log()
    for restart in range(6):    # a driver restarting: each new mismatched publisher raises an event
        publisher = node.client.create_publisher(HumanKeypoints2DArray, node.topics["input_topic"],
                                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        node.spin_for(0.4)
        if restart < 5:
            node.client.destroy_publisher(publisher)          # the last one stays
    # which of its inputs: the client's CameraInfo publisher is BEST_EFFORT too (one warning hid that)
    for topic in (node.topics["input_topic"], node.topics["camera_info_topic"]):
        warning = f"a publisher on {topic} has a QoS incompatible with this node's subscription (policy RELIABILITY)"
        node.spin_until(lambda: warning in node.log(), 5.0)
        assert node.log().count(warning) == 1, node.log()
    # and /diagnostics says why nothing comes, where it only guessed ("no publisher, incompatible QoS,
    # a wrong topic, ...?") though the node had been told
    why = (f"no input on {node.topics['input_topic']} for ", " s: a publisher on it has a QoS incompatible "
           "with the subscription (policy RELIABILITY; see the log)")
    assert node.spin_until(lambda: all(text in node.latest_diagnostics().get("_message", "") for text in why),
                           10), node.latest_diagnostics()
    # once the mismatched publishers are gone (the test client's own is BEST_EFFORT too), none is
    # blamed any more (one was, for as long as the node ran)
    node.client.destroy_publisher(publisher)
    node.client.destroy_publisher(node.client.keypoints_pub)
    assert node.spin_until(lambda: "(no publisher, incompatible QoS" in node.latest_diagnostics().get("_message", ""),
                           10), node.latest_diagnostics().get("_message")


@pytest.mark.parametrize("reason", ["bad_stamp_nanosec", "bad_image_size", "too_many_people_to_decode"])
def test_a_camera_whose_frames_are_dropped_whole_has_its_never_expiring_skeletons_cleared(node_factory, clip, reason):
    """With a lifetime RViz never expires, a frame of a camera dropped whole (a stamp no ROS time
    holds, no image size to normalise by: nothing is published for it) sent no markers, so the
    skeletons of that camera's last published frame stayed on RViz's screen for as long as its frames
    kept being dropped, frozen, where a frame whose every person was dropped clears them (its
    DELETEALL). The dropped frame now clears its camera's skeletons; another camera's stay. So does
    a message dropped undecoded (more people than the lifter reads of one), of the camera its
    header names: it sent nothing either."""
    from rclpy.serialization import serialize_message
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.conversions import stamp_ns
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    # a megabyte message crosses whole over reliable input (see NodeUnderTest)
    node = node_factory(overrides={"marker_lifetime": 0.0}, reliable_input=reason == "too_many_people_to_decode")
    other = clip_msg(clip, 0, sec=610, people=[0])
    other.header.frame_id = "other_camera_optical_frame"
    for msg in (clip_msg(clip, 0, sec=600), other):
        assert node.send_and_receive(msg) is not None, node.log()
        assert node.spin_until(lambda: stamp_ns(msg.header) in node.client.received.markers, 10), node.log()
    drawn = dict(node.client.received.markers)
    assert {m.ns for m in rviz_shows(drawn[k] for k in sorted(drawn)).values()} == {
        f"cfi_pose_lifter/{FRAME}", "cfi_pose_lifter/other_camera_optical_frame"}
    bad = clip_msg(clip, 1, sec=620)
    if reason == "bad_stamp_nanosec":
        bad.header.stamp.nanosec = 4_294_967_295
    elif reason == "bad_image_size":
        bad.image_width = bad.image_height = 0      # and no CameraInfo to take the size from
    else:
        bad.people = [bad.people[0]] * (MOST_PEOPLE_READ + 1)
    for _ in range(5):
        node.client.keypoints_pub.publish(serialize_message(bad))
        node.spin_for(0.1)
    assert node.spin_until(lambda: _diag_count(node.latest_diagnostics(), reason) >= 1, 20), node.log()
    node.spin_for(0.5)
    arrays = [node.client.received.markers[k] for k in sorted(node.client.received.markers)]
    after = arrays[len(drawn):]
    assert after and all(m.action == Marker.DELETEALL for a in after for m in a.markers), after
    assert {m.ns for m in rviz_shows(arrays).values()} == {"cfi_pose_lifter/other_camera_optical_frame"}


@pytest.mark.parametrize("lifetime, new_lifetime", [(1.0, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_a_live_marker_lifetime_change_keeps_the_skeletons_drawn(node_factory, clip, lifetime, new_lifetime):
    """`ros2 param set ... marker_lifetime` sent a DELETEALL at once and the next frame drew the people
    again: RViz showed nobody for a frame's period at each set (over DDS: the people's skeletons,
    then none, then the next frame's), a blink of every skeleton for a change of how long they last.
    The next frame draws everyone with the new lifetime (an ADD replaces a marker, lifetime and all)
    and deletes who left, as any frame does; a lifetime RViz never expires still starts it with a
    DELETEALL, in the same array."""
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.node.conversions import stamp_ns
    from ros_harness import ParameterClient

    node = node_factory(overrides={"marker_lifetime": lifetime})
    first = clip_msg(clip, 0, sec=700)
    assert node.send_and_receive(first) is not None, node.log()
    assert node.spin_until(lambda: stamp_ns(first.header) in node.client.received.markers, 10), node.log()
    ParameterClient(node.client, "cfi_pose_lifter", node.spin_until).set_ok(marker_lifetime=new_lifetime)
    second = clip_msg(clip, 1, sec=701, people=[1])        # one of the two left
    assert node.send_and_receive(second) is not None, node.log()
    assert node.spin_until(lambda: stamp_ns(second.header) in node.client.received.markers, 10), node.log()
    node.spin_for(0.3)
    arrays = list(node.client.received.markers.values())     # as they came (a DELETEALL is stamped now)
    for shown in range(1, len(arrays) + 1):       # what RViz shows after each array in turn
        assert rviz_shows(arrays[:shown]), [[m.action for m in a.markers] for a in arrays[:shown]]
    labels = [m.text for m in rviz_shows(arrays).values() if m.type == Marker.TEXT_VIEW_FACING]
    assert labels == [clip.ids[1]]
    drawn = [m for m in arrays[-1].markers if m.action == Marker.ADD]
    assert drawn and all(m.lifetime.sec + m.lifetime.nanosec * 1e-9 == new_lifetime for m in drawn)
