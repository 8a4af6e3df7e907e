"""Both nodes as real processes over DDS, fed what a hostile or careless user would (issue 13,
items 1, 2, 3, 4, 5 and 11): they never publish garbage, drop it with a reason counted in
/diagnostics, and do not let one message take their memory.
"""
from __future__ import annotations

import array
import os

import numpy as np
import pytest

from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

if ros_available() is None:
    from test_lift_node import as_array, clip, clip_msg, node_factory, send_camera_info  # noqa: F401 (fixtures)


def _dropped(node, reason: str) -> int:
    return int(node.latest_diagnostics().get(f"dropped.{reason}", 0))


def test_a_person_the_lifter_returns_nan_for_is_dropped_and_counted(node_factory, clip, tmp_path):
    """Item 2: weights that pass every start-up check but overflow for a joint at 1.45 image widths
    (test/hostile.py); before, that person was published with NaN keypoints."""
    from hostile import OVERFLOW_X_FRACTION, overflowing_model

    from cfi_pose_ros.weights import save_weights

    weights = save_weights(overflowing_model(), tmp_path / "overflowing.safetensors")
    node = node_factory(overrides={"weights": str(weights), "backend": "torch"})
    assert "active: " in node.log(), node.log()
    msg = clip_msg(clip, 0, sec=21)
    msg.people[1].keypoints[16].x = OVERFLOW_X_FRACTION * msg.image_width
    out = node.send_and_receive(msg)
    assert out is not None, node.log()
    assert [h.id for h in out.humans] == [clip.ids[0]]
    assert np.isfinite(as_array(out.humans[0])).all()
    assert _dropped(node, "non_finite_output") >= 1
    assert node.process.poll() is None


def test_nan_weights_with_a_consistent_checksum_stop_the_node_at_configure(node_factory, tmp_path):
    """Item 1: before, ONNX Runtime refused them, `auto` fell back to torch, which checked nothing,
    and the node went active publishing all-NaN keypoints."""
    import torch

    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.weights import save_weights

    model = CFINet(CFIConfig(dim=32, depth=1, heads=4))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    weights = save_weights(model, tmp_path / "diverged.safetensors")
    node = node_factory(overrides={"weights": str(weights)}, wait=False)          # backend: auto
    node.process.wait(timeout=120)
    log = node.log()
    assert node.process.returncode == 1, log
    assert "tensors contain NaN or inf" in log and "active: " not in log, log


def test_zeroed_weights_stop_the_node_at_configure(node_factory, tmp_path):
    """Before, finite weights of all zeros passed every check and the node went active publishing
    skeletons of 17 joints at one point."""
    import torch

    from cfi_pose_ros.model import CFIConfig, CFINet
    from cfi_pose_ros.weights import save_weights

    model = CFINet(CFIConfig(dim=32, depth=1, heads=4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    weights = save_weights(model, tmp_path / "zeroed.safetensors")
    node = node_factory(overrides={"weights": str(weights)}, wait=False)          # backend: auto
    node.process.wait(timeout=120)
    log = node.log()
    assert node.process.returncode == 1, log
    assert "lift every pose to one point" in log and "untrained or zeroed" in log and "active: " not in log, log


@pytest.mark.parametrize("spoil", [
    lambda kp, w: setattr(kp, "x", kp.x * 1e30) or setattr(kp, "y", kp.y * 1e30),
    lambda kp, w: setattr(kp, "x", kp.x + 1e6),
])
def test_a_person_far_outside_the_image_is_dropped_as_out_of_image(node_factory, clip, spoil):
    """Item 3: before, published as a skeleton collapsed to a point with no drop counted."""
    node = node_factory()
    send_camera_info(node, clip)
    msg = clip_msg(clip, 5, sec=22)
    for keypoint in msg.people[0].keypoints:
        spoil(keypoint, msg.image_width)
    out = node.send_and_receive(msg)
    assert out is not None, node.log()
    assert [h.id for h in out.humans] == [clip.ids[1]]
    assert _dropped(node, "out_of_image") >= 1


def test_one_bad_joint_does_not_move_the_published_person(node_factory, clip):
    """Item 4 through the node: the issue's person 5.3 m away, with one wrist moved past the image's
    right edge (x = 1100 px in a 1000 px image; before: placed at 3.04 m), or one hip moved 100 px
    sideways inside the image (before: up to 30 % off). The published pelvis depth stays within
    10 % / 5 % of the clean one, the other person is untouched, and the wrist goes out as missing."""
    node = node_factory()
    send_camera_info(node, clip)
    clean = node.send_and_receive(clip_msg(clip, 0, sec=23))
    assert clean is not None, node.log()
    clean_depths = [as_array(h)[0, 2] for h in clean.humans]
    assert clean_depths[0] > 4.5                          # the walker, truly 5.3 m away
    for sec, (joint, dx, bound) in enumerate([(16, None, 0.10), (1, 100.0, 0.05), (1, -100.0, 0.05)], start=24):
        msg = clip_msg(clip, 0, sec=sec)
        keypoint = msg.people[0].keypoints[joint]
        keypoint.x = 1100.0 if dx is None else keypoint.x + dx
        out = node.send_and_receive(msg)
        assert out is not None, node.log()
        depths = [as_array(h)[0, 2] for h in out.humans]
        assert abs(depths[0] - clean_depths[0]) / clean_depths[0] <= bound, (joint, dx, depths, clean_depths)
        assert abs(depths[1] - clean_depths[1]) < 1e-4
        if dx is None:
            assert out.humans[0].keypoint_scores[joint] == 0.0


def test_two_people_with_one_id_keep_their_own_skeletons_when_smoothing(node_factory, clip):
    """Item 5: with smoothing on, the second person got the first one's skeleton."""
    plain = node_factory()
    smoothed = node_factory(overrides={"smoothing": True})
    for node in (plain, smoothed):
        send_camera_info(node, clip)
    for k in range(3):
        msgs = [clip_msg(clip, 10 * k, sec=30 + k) for _ in range(2)]
        for person in msgs[1].people:
            person.id = "same"
        expected = plain.send_and_receive(msgs[0])
        got = smoothed.send_and_receive(msgs[1])
        assert expected is not None and got is not None
        assert len(got.humans) == 2
        for a, b in zip(got.humans, expected.humans):
            np.testing.assert_allclose(as_array(a), as_array(b), atol=1e-4)
    first, second = (as_array(h) for h in got.humans)
    assert np.abs(first - second).max() > 0.1


def test_batch_sizes_past_the_bound_stop_the_node_at_start(node_factory):
    """Item 11: `batch_sizes: [4096]` was accepted (4 GB, 10-15 s per one-person frame)."""
    node = node_factory(overrides={"batch_sizes": [4096]}, wait=False)
    node.process.wait(timeout=120)
    log = node.log()
    assert node.process.returncode == 1, log
    assert "batch size 4096 is larger than 256" in log, log


def _not_messages(msg) -> list[bytes]:
    """``msg`` serialized and cut in half; with its last sequence's length raised past the bytes
    that follow (2^31 - 1 elements in a message of a few hundred bytes); and its encapsulation
    header alone, with options that state padding (rclpy's deserialize_message read past the end
    of those 4 bytes: the node died of SIGSEGV)."""
    import struct

    from rclpy.serialization import serialize_message

    data = serialize_message(msg)
    return [data[:len(data) // 2], data[:-len(data) // 4] + struct.pack("<I", 2**31 - 1),
            data[:3] + b"\x01"]


def test_bytes_that_are_not_the_input_s_type_are_dropped_counted_and_warned_of(node_factory, clip):
    """Before, rmw dropped them inside take: no count in /diagnostics, no line in the node's log.
    Depth images kept rmw's take until they were read in place (cfi_pose_ros.cdr)."""
    from sensor_msgs.msg import CameraInfo, Image

    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.base import UNDESERIALIZABLE

    depth_topic = f"/depth_undeserializable_{os.getpid()}"
    node = node_factory(overrides={"depth_topic": depth_topic})
    topics = {HumanKeypoints2DArray: node.topics["input_topic"], CameraInfo: node.topics["camera_info_topic"],
              Image: depth_topic}
    raw = {msg_type: node.client.create_publisher(msg_type, topic, 10) for msg_type, topic in topics.items()}
    assert node.send_and_receive(clip_msg(clip, 0, sec=31)) is not None, node.log()
    depth = Image(height=10, width=10, encoding="32FC1", step=40)
    depth.data = array.array("B", bytes(400))
    bad = {HumanKeypoints2DArray: _not_messages(clip_msg(clip, 1, sec=32)),
           CameraInfo: _not_messages(CameraInfo(width=640, height=480,
                                                          k=[500.0, 0, 320, 0, 500, 240, 0, 0, 1])),
           Image: _not_messages(depth)}

    def dropped_all() -> bool:
        for msg_type, messages in bad.items():
            for data in messages:
                raw[msg_type].publish(data)
        node.spin_for(0.2)
        return _dropped(node, UNDESERIALIZABLE) >= 9

    assert node.spin_until(dropped_all, 60), node.log()
    for msg_type, topic in topics.items():
        type_name = f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"
        assert f"dropped a message on {topic}: its " in node.log() and f"bytes are not a {type_name}" in node.log()
    out = node.send_and_receive(clip_msg(clip, 2, sec=33))       # and it goes on
    assert out is not None and [h.id for h in out.humans] == list(clip.ids), node.log()
    assert node.process.poll() is None


def test_a_message_of_more_people_than_any_max_people_reads_is_dropped_undecoded(node_factory, clip):
    """Only the people read were cut to the highest scores: the node deserialized every person a
    message held first, so one message of 100,000 people (24.8 MB) held the executor 8 s and grew the
    lifter by 340 MB, for 64 people kept (offline lifting already skipped such a bag message). One of
    more than MOST_PEOPLE_READ is now dropped undecoded, counted and warned of; one of that many is
    still lifted, and the node goes on."""
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.node.conversions import stamp_ns
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    node = node_factory(reliable_input=True)        # a megabyte message crosses whole (see NodeUnderTest)
    assert node.send_and_receive(clip_msg(clip, 0, sec=41)) is not None, node.log()
    crowd = clip_msg(clip, 1, sec=42)
    crowd.people = [crowd.people[0]] * (MOST_PEOPLE_READ + 1)
    node.client.keypoints_pub.publish(serialize_message(crowd))
    assert node.spin_until(lambda: _dropped(node, "too_many_people_to_decode") == 1, 30), node.log()
    assert stamp_ns(crowd.header) not in node.client.received.poses
    assert (f"dropped a message on {node.topics['input_topic']}: it holds {MOST_PEOPLE_READ + 1} people, more "
            f"than the lifter reads of a message ({MOST_PEOPLE_READ}); not decoded") in node.log()
    crowd.people = crowd.people[:MOST_PEOPLE_READ]      # as many as max_people's bound reads: lifted
    crowd.header.stamp.sec = 43
    out = node.send_and_receive(crowd, timeout=60, resend_every=5.0)
    assert out is not None and len(out.humans) == 64, node.log()
    assert _dropped(node, "too_many_people_to_decode") == 1 and node.process.poll() is None
    # a count of 4 billion people in a message of two is no crowd but bytes that are no message
    two = serialize_message(clip_msg(clip, 2, sec=44))
    start = two.index((len(clip.ids)).to_bytes(4, "little"), 20)     # the people's count, after the header
    node.client.keypoints_pub.publish(two[:start] + b"\xff\xff\xff\xff" + two[start + 4:])
    assert node.spin_until(lambda: _dropped(node, "undeserializable") == 1, 30), node.log()
    assert _dropped(node, "too_many_people_to_decode") == 1


def test_a_message_of_more_keypoints_than_its_people_could_have_is_dropped_undecoded(node_factory, clip):
    """One person of 2,000,000 keypoints (24 MB) held the lifter's executor 5.7 s deserializing them,
    to refuse that person for their count (wrong_keypoint_count). A message of more keypoints than
    MOST_PEOPLE_READ people have in any layout is now dropped undecoded, counted and warned of; a
    person of a few keypoints too many is still refused alone, the others lifted."""
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import Keypoint2D
    from cfi_pose_ros.node.conversions import stamp_ns
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    most = MOST_PEOPLE_READ * 17
    node = node_factory(reliable_input=True)
    assert node.send_and_receive(clip_msg(clip, 0, sec=51)) is not None, node.log()
    msg = clip_msg(clip, 1, sec=52)
    msg.people[1].keypoints = [Keypoint2D(x=1.0, y=2.0, score=0.5)] * (most + 1 - len(msg.people[0].keypoints))
    node.client.keypoints_pub.publish(serialize_message(msg))
    assert node.spin_until(lambda: _dropped(node, "too_many_keypoints_to_decode") == 1, 30), node.log()
    assert stamp_ns(msg.header) not in node.client.received.poses
    assert (f"dropped a message on {node.topics['input_topic']}: it holds {most + 1} keypoints, more than the "
            f"lifter reads of a message ({most}); not decoded") in node.log()
    msg.people[1].keypoints = msg.people[1].keypoints[:18]      # one too many: that person alone refused
    msg.header.stamp.sec = 53
    out = node.send_and_receive(msg)
    assert out is not None and [h.id for h in out.humans] == [msg.people[0].id], node.log()
    assert _dropped(node, "wrong_keypoint_count") == 1 and node.process.poll() is None


def test_a_sequence_length_past_the_end_puts_one_throttled_warning_in_the_log(node_factory, clip):
    """Fast DDS's type support printed "sequence size exceeds remaining buffer" for every such message,
    unthrottled, beside the node's throttled warning: a fuzzed lifter's log was 238 of those lines in 304."""
    import struct

    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.base import UNDESERIALIZABLE

    node = node_factory()
    raw = node.client.create_publisher(HumanKeypoints2DArray, node.topics["input_topic"], 10)
    assert node.send_and_receive(clip_msg(clip, 0, sec=34)) is not None, node.log()
    data = serialize_message(HumanKeypoints2DArray())
    bad = data[:-4] + struct.pack("<I", 1000) + bytes(8)          # 1000 people in 8 bytes

    def dropped() -> bool:
        for _ in range(5):
            raw.publish(bad)
        node.spin_for(0.2)
        return _dropped(node, UNDESERIALIZABLE) >= 5

    assert node.spin_until(dropped, 60), node.log()
    log = node.log()
    assert "sequence size exceeds remaining buffer" not in log, log
    assert "field 3 of 1000 elements runs past the end" in log, log
    assert node.process.poll() is None


def test_keypoints_of_every_encapsulation_fast_dds_delivers_are_walked_before_they_are_decoded(node_factory, clip):
    """Fast DDS delivers a sample's bytes as written, whatever their encapsulation header says, and
    Kilted's type support reads PL_CDR, PLAIN_CDR2, D_CDR2 and PL_CDR2 as it reads CDR (byte order
    from the header, 8-byte numbers aligned to 4 in version 2), no delimiter or parameter list read:
    a keypoints message of any of them is a message to the node. The walk read XCDR1 alone: a crowd
    of MOST_PEOPLE_READ + 1 people labelled PLAIN_CDR2 or PL_CDR2 was decoded whole (what the crowd
    screen spares the executor), and 1000 people in 8 bytes labelled PL_CDR or D_CDR2 put the type
    support's unthrottled "sequence size exceeds remaining buffer" line in the log for each."""
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.base import UNDESERIALIZABLE
    from cfi_pose_ros.node.conversions import stamp_ns
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    def labelled(data: bytes, kind: int) -> bytes:
        assert data[:2] == b"\x00\x01"        # rclpy writes CDR, little endian: the same bytes as each kind here
        return data[:1] + bytes([kind]) + data[2:]

    node = node_factory(reliable_input=True)        # a megabyte message crosses whole (see NodeUnderTest)
    assert node.send_and_receive(clip_msg(clip, 0, sec=61)) is not None, node.log()
    for sec, kind in ((62, 0x07), (63, 0x0B)):          # PLAIN_CDR2_LE, PL_CDR2_LE
        crowd = clip_msg(clip, 1, sec=sec)
        crowd.people = [crowd.people[0]] * (MOST_PEOPLE_READ + 1)
        node.client.keypoints_pub.publish(labelled(serialize_message(crowd), kind))
        assert node.spin_until(lambda: _dropped(node, "too_many_people_to_decode") == sec - 61, 30), node.log()
        assert stamp_ns(crowd.header) not in node.client.received.poses
    data = serialize_message(HumanKeypoints2DArray())
    cut = data[:-4] + (1000).to_bytes(4, "little") + bytes(8)          # 1000 people in 8 bytes
    for dropped, kind in ((1, 0x03), (2, 0x09)):         # PL_CDR_LE, D_CDR2_LE; one at a time: the input is depth 1
        node.client.keypoints_pub.publish(labelled(cut, kind))
        assert node.spin_until(lambda: _dropped(node, UNDESERIALIZABLE) == dropped, 30), node.log()
    whole = clip_msg(clip, 2, sec=64)
    node.client.keypoints_pub.publish(labelled(serialize_message(whole), 0x09))        # and read as it was sent
    assert node.spin_until(lambda: stamp_ns(whole.header) in node.client.received.poses, 30), node.log()
    assert [h.id for h in node.client.received.poses[stamp_ns(whole.header)].humans] == list(clip.ids)
    log = node.log()
    assert "sequence size exceeds remaining buffer" not in log and "field 3 of 1000 elements" in log, log
    assert _dropped(node, "too_many_people") == 0 and node.process.poll() is None


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "raw"])
def test_bytes_that_are_not_an_image_are_dropped_counted_and_warned_of(started, h36m_image, compressed):
    """The same for the detector's input. Raw images kept rmw's typed take until they were read in
    place (cfi_pose_ros.cdr): cut short, they were lost without a count or a word."""
    from sensor_msgs.msg import CompressedImage, Image

    from cfi_pose_ros.node.base import UNDESERIALIZABLE

    if compressed:
        path, good = _compressed_detector_answering(started, h36m_image, sec=6200)
        small = CompressedImage(format="jpeg")
        small.data = good.data[:400]
    else:
        path, good = _raw_detector_answering(started, h36m_image, sec=6200)
        small = Image(height=10, width=10, encoding="bgr8", step=30)
        small.data = array.array("B", bytes(300))
    bad = _not_messages(small)

    def dropped() -> int:
        return int(path.diagnostics_of(path.detector_name, timeout=1).get(f"dropped.{UNDESERIALIZABLE}", 0))

    assert path.spin_until(lambda: [path.image_pub.publish(data) for data in bad] and dropped() >= 3, 60), \
        path.report()
    log = path.detector_log.read_text()
    assert f"dropped a message on {path.topics['image']}: its " in log, log
    assert f"bytes are not a sensor_msgs/msg/{type(small).__name__}" in log, log
    good.header.stamp.sec = 6202
    assert path.send(good, until="keypoints") is not None, path.logs()
    assert path.detector.poll() is None


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _raw_detector_answering(started, h36m_image, sec: int):
    """A detector on raw images (no lifter) that has answered a good one stamped ``sec``; returns
    the path and that image, to send again with a later stamp."""
    from test_camera_node import image_msg

    path = started(lifter=False)
    good = image_msg(h36m_image, "rgb8", sec=sec)
    assert path.send(good, until="keypoints") is not None, path.logs()
    return path, good


def _compressed_detector_answering(started, h36m_image, sec: int):
    """A detector on compressed images (no lifter) that has answered a good JPEG stamped ``sec``;
    returns the path and that image, to send again with a later stamp."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from test_camera_node import FRAME

    path = started(detector={"compressed": True}, lifter=False)
    good = CompressedImage(format="jpeg")
    good.data = array.array("B", cv2.imencode(".jpg", h36m_image)[1].tobytes())
    good.header.frame_id = FRAME
    good.header.stamp.sec = sec
    assert path.send(good, until="keypoints") is not None, path.logs()
    return path, good


def test_an_animated_png_is_dropped_undecoded_and_the_detector_lives(started, h36m_image):
    """OpenCV 5.0's PNG decoder died of SIGSEGV on this 1 x 1 animated PNG (a frame row naming a
    filter PNG has not): one such message published on a compressed image topic ended the detector."""
    from hostile import damaged_apng
    from sensor_msgs.msg import CompressedImage

    path, good = _compressed_detector_answering(started, h36m_image, sec=6300)
    animated = CompressedImage(format="png")
    animated.data = array.array("B", damaged_apng(7))
    animated.header.stamp.sec = 6301

    def dropped() -> int:
        return int(path.diagnostics_of(path.detector_name, timeout=1).get("dropped.bad_image", 0))

    assert path.spin_until(lambda: path.image_pub.publish(animated) or dropped() >= 1, 60), path.report()
    assert "is an animated PNG" in path.detector_log.read_text()
    good.header.stamp.sec = 6302
    assert path.send(good, until="keypoints") is not None, path.logs()
    assert path.detector.poll() is None


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_a_small_file_declaring_a_huge_image_is_dropped_undecoded(started, h36m_image, kind):
    """Item 11: a 0.25 MB PNG raised the detector's peak memory from 212 to 1677 MiB. This one is
    140 kB and would decode to 432 MB (12000 x 12000 grey to BGR). The 702-byte JPEG's header was
    read as 64 x 48 (0xFF 0x00 taken for a marker), while libjpeg decodes it as 12000 x 12000: the
    detector's peak memory grew by 824 MiB before the image was dropped as damaged."""
    from hostile import hidden_frame_jpeg, zero_png
    from sensor_msgs.msg import CompressedImage

    path, good = _compressed_detector_answering(started, h36m_image, sec=6000)
    before = _peak_rss_mib(path.detector.pid)
    huge = CompressedImage(format=kind)
    huge.data = array.array("B", zero_png(12000, 12000) if kind == "png" else hidden_frame_jpeg(12000, 12000))
    huge.header.stamp.sec = 6001
    for _ in range(3):
        path.image_pub.publish(huge)
        path.spin_until(lambda: False, 0.5)
    diag = path.diagnostics_of(path.detector_name)
    reason = "image_too_large" if kind == "png" else "bad_image"
    assert int(diag.get(f"dropped.{reason}", 0)) >= 1, path.report()
    grown = _peak_rss_mib(path.detector.pid) - before
    assert grown < 100, f"the detector's peak memory grew by {grown:.0f} MiB"
    good.header.stamp.sec = 6002
    assert path.send(good, until="keypoints") is not None          # and it goes on
    assert path.detector.poll() is None


def test_a_jpeg_of_thousands_of_scans_is_dropped_undecoded(started, h36m_image):
    """A 200 kB progressive JPEG of 4096 x 4096 pixels repeating one scan 3000 times: libjpeg passes
    over the whole image for each scan, so the detector decoded it for about a minute and answered
    nothing meanwhile."""
    from hostile import many_scan_jpeg
    from sensor_msgs.msg import CompressedImage

    path, good = _compressed_detector_answering(started, h36m_image, sec=6100)
    inputs = int(path.diagnostics_of(path.detector_name)["inputs_total"])
    bomb = CompressedImage(format="jpeg")
    bomb.data = array.array("B", many_scan_jpeg(4096, 4096, 3000))
    bomb.header.stamp.sec = 6101
    path.image_pub.publish(bomb)
    # taken in (and so handed to the worker) before the next image could supersede it
    assert path.spin_until(lambda: int(path.diagnostics_of(path.detector_name, timeout=1).get(
        "inputs_total", 0)) > inputs, 20), path.report()
    good.header.stamp.sec = 6102
    assert path.send(good, until="keypoints", timeout=20) is not None, path.report()
    assert int(path.diagnostics_of(path.detector_name).get("dropped.bad_image", 0)) == 1
    assert "is a JPEG of 3000 scans" in path.detector_log.read_text()
    assert path.detector.poll() is None


def test_a_megabyte_encoding_is_quoted_cut_short_in_the_warning(started):
    """The throttled warning quoted the image's encoding whole: three images whose encoding was 2 MB
    of 'x', 5 s apart, put 6 MB in the detector's log (a warning per 5 s, each 2 MB)."""
    from sensor_msgs.msg import Image

    from cfi_pose_ros.node.base import WARN_MAX_CHARS

    path = started(lifter=False)
    assert path.spin_until(lambda: path.image_pub.get_subscription_count() > 0, 30), path.logs()
    bad = Image(height=2, width=2, encoding="x" * 2_000_000, step=6)
    bad.data = array.array("B", bytes(12))

    def dropped() -> int:
        return int(path.diagnostics_of(path.detector_name, timeout=1).get("dropped.unsupported_encoding", 0))

    assert path.spin_until(lambda: path.image_pub.publish(bad) or dropped() >= 1, 30), path.report()
    (line,) = [line for line in path.detector_log.read_text().splitlines() if "unsupported_encoding" in line]
    assert "unsupported image encoding 'xxx" in line and line.endswith("more characters)"), line[-300:]
    assert len(line) < WARN_MAX_CHARS + 200
    assert path.detector.poll() is None


if ros_available() is None:
    from test_camera_node import h36m_image, meta, started  # noqa: E402, F401 (fixtures)


def test_diagnostics_keep_their_period_while_input_comes_faster_than_it_is_lifted(node_factory, clip):
    """Frames of 1000 people (64 lifted, the rest dropped as too_many_people), sent as fast as this
    process can: every frame takes the node longer than the next one takes to arrive. rclpy's
    EventsExecutor (the default) then ran the diagnostics timer about once in 10 s, so /diagnostics,
    and the drop counts in it, went silent while the node was overloaded."""
    import time

    node = node_factory()
    assert node.send_and_receive(clip_msg(clip, 0, sec=40)) is not None, node.log()
    crowd = clip_msg(clip, 0, sec=41)
    crowd.people = [crowd.people[0]] * 1000
    seconds, start = 8.0, len(node.diagnostics)
    end, k = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        k += 1
        crowd.header.stamp.sec, crowd.header.stamp.nanosec = 41 + k // 1000, (k % 1000) * 1000
        node.client.publish(crowd)
        node.executor.spin_once(timeout_sec=0.0)
    statuses = [s for array in node.diagnostics[start:] for s in array.status if s.name.startswith("cfi_pose_lifter")]
    assert len(statuses) >= seconds - 3, f"{len(statuses)} diagnostics in {seconds} s (diagnostics_period 1 s)"
    assert any(kv.key == "dropped.too_many_people" for kv in statuses[-1].values)
    assert node.send_and_receive(clip_msg(clip, 5, sec=50)) is not None          # and it goes on
