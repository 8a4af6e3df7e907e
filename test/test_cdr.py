"""sensor_msgs/Image read from its serialized bytes (cfi_pose_ros.cdr) against rclpy's own
serialization: the same fields, the pixels left in place, and bytes that are not an image refused."""
from __future__ import annotations

import itertools
import struct
import subprocess
import sys

import pytest

from cfi_pose_ros.cdr import NotAnImage, encapsulation_problem, read_image
from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]


def _image(frame_id: str = "camera_optical_frame", encoding: str = "rgb8", data: bytes = bytes(range(18)),
           sec: int = 5, nanosec: int = 7, height: int = 2, width: int = 3, step: int = 9, big: int = 0):
    from sensor_msgs.msg import Image

    msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=big)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.data = data
    return msg


def _fields(msg) -> tuple:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id, msg.height, msg.width,
            msg.encoding, msg.is_bigendian, msg.step, bytes(msg.data))


def _read_fields(image) -> tuple:
    return (image.stamp_sec, image.stamp_nanosec, image.frame_id, image.height, image.width, image.encoding,
            image.is_bigendian, image.step, bytes(image.data))


# every frame_id and encoding length modulo 4 (each moves the alignment of what follows), empty
# strings and data, non-ASCII text, the extreme stamps, big-endian pixels
CASES = [dict(frame_id=f, encoding=e, data=d) for f, e, d in itertools.product(
    ["", "a", "ab", "abc", "abcd", "kamera_ü"], ["", "8UC1", "rgb8", "mono16", "yuv422_yuy2"],
    [b"", b"\x01", bytes(range(7)), bytes(range(256)) * 3])] + [
    dict(sec=-2**31, nanosec=2**32 - 1), dict(sec=2**31 - 1, nanosec=0), dict(big=1, encoding="16UC1"),
    dict(height=2**32 - 1, width=2**32 - 1, step=2**32 - 1)]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_reads_what_rclpy_serializes(case):
    from rclpy.serialization import serialize_message

    msg = _image(**case)
    image = read_image(serialize_message(msg))
    assert _read_fields(image) == _fields(msg)


def test_the_pixels_are_a_view_of_the_bytes_taken_not_a_copy():
    from rclpy.serialization import serialize_message

    serialized = bytearray(serialize_message(_image(data=bytes(300))))
    image = read_image(serialized)
    serialized[-1] = 0xAB
    assert image.data[-1] == 0xAB and image.data.readonly is False


def test_every_cut_short_image_is_refused_with_what_is_missing():
    from rclpy.serialization import serialize_message

    serialized = serialize_message(_image(frame_id="cam", data=bytes(range(40))))
    for end in range(len(serialized)):
        with pytest.raises(NotAnImage, match="bytes end|runs past the end|encapsulation"):
            read_image(serialized[:end])


def test_a_length_past_the_end_is_refused_without_allocating_it():
    from rclpy.serialization import serialize_message

    serialized = serialize_message(_image(data=bytes(12)))
    overlong = serialized[:-16] + struct.pack("<I", 2**32 - 1)       # data's count, nothing after it
    with pytest.raises(NotAnImage, match="data of 4294967295 bytes runs past the end"):
        read_image(overlong)
    frame_id_at = 12        # encapsulation 4, sec 4, nanosec 4
    overlong_string = serialized[:frame_id_at] + struct.pack("<I", 2**31) + serialized[frame_id_at + 4:]
    with pytest.raises(NotAnImage, match="header.frame_id of 2147483648 bytes"):
        read_image(overlong_string)


@pytest.mark.parametrize("character, read", [(0xFF, "\ufffdbcd"), (0x00, ""), (0x41, "Abcd")])
def test_text_reads_as_rclpy_reads_it(character, read):
    """Bytes that are not UTF-8 become U+FFFD; a NUL inside ends the text (rclpy reads a C string)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    serialized = bytearray(serialize_message(_image(frame_id="abcd")))
    serialized[16] = character          # the frame_id's first character
    assert read_image(serialized).frame_id == deserialize_message(bytes(serialized), Image).header.frame_id == read
    serialized[16:18] = b"a\0"          # a NUL inside: the text before it
    assert read_image(serialized).frame_id == deserialize_message(bytes(serialized), Image).header.frame_id == "a"


def test_damaged_images_read_as_rclpy_reads_them_or_are_refused_as_it_refuses_them():
    """Differential fuzzing: 3000 small images, each damaged one to three ways (a byte changed, cut
    short, bytes added, a 4-byte word set to a length like 2^32 - 1). Where rclpy's deserialize_message
    reads one, the reader reads the same fields; where it refuses one, so does the reader (or leaves
    an encapsulation it does not lay out to it)."""
    import random

    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    rng = random.Random(0)
    outcomes = {"read alike": 0, "refused alike": 0, "left to rclpy": 0}
    for _ in range(3000):
        msg = _image(frame_id="f" * rng.randrange(6), encoding=rng.choice(["", "a", "rgb8", "mono16"]),
                     data=rng.randbytes(rng.randrange(12)), height=rng.randrange(5), width=rng.randrange(5),
                     step=rng.randrange(20), big=rng.randrange(2))
        damaged = bytearray(serialize_message(msg))
        for _ in range(rng.randrange(1, 4)):
            way = rng.randrange(4)
            if way == 0 and len(damaged) > 4:
                damaged[rng.randrange(4, len(damaged))] = rng.randrange(256)
            elif way == 1 and damaged:
                del damaged[rng.randrange(len(damaged)):]
            elif way == 2:
                damaged += rng.randbytes(rng.randrange(8))
            elif way == 3 and len(damaged) > 8:
                at = rng.randrange(4, len(damaged) - 3) & ~3
                damaged[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 3, 100, 2**31 - 1, 2**32 - 1]))
        damaged = bytes(damaged)
        if encapsulation_problem(damaged) is not None:      # rclpy may crash on those (test below)
            with pytest.raises(NotAnImage):
                read_image(damaged)
            continue
        try:
            expected = _fields(deserialize_message(damaged, Image))
        except Exception:       # noqa: BLE001 - rclpy's RMWError
            expected = None
        try:
            image = read_image(damaged)
        except NotAnImage:
            assert expected is None, damaged.hex()
            outcomes["refused alike"] += 1
            continue
        if image is None:
            outcomes["left to rclpy"] += 1
            continue
        assert _read_fields(image) == expected, damaged.hex()
        outcomes["read alike"] += 1
    assert min(outcomes.values()) >= 5, outcomes         # every kind of outcome was tried


def _write_image(msg, order: str, kind: int) -> bytes:
    """XCDR of ``msg`` written here, field by field, in either byte order (rclpy writes the
    machine's): checked against rclpy's for little endian, so the big-endian one is read right."""
    out = bytearray([0, kind, 0, 0])

    def number(fmt: str, value: int) -> None:
        out.extend(bytes(-(len(out) - 4) % 4))
        out.extend(struct.pack(order + fmt, value))

    def text(value: str) -> None:
        encoded = value.encode() + b"\0"
        number("I", len(encoded))
        out.extend(encoded)

    number("i", msg.header.stamp.sec)
    number("I", msg.header.stamp.nanosec)
    text(msg.header.frame_id)
    number("I", msg.height)
    number("I", msg.width)
    text(msg.encoding)
    out.append(msg.is_bigendian)
    number("I", msg.step)
    number("I", len(msg.data))
    out.extend(bytes(msg.data))
    return bytes(out)


KINDS = {"CDR_BE": 0x00, "CDR_LE": 0x01, "PL_CDR_BE": 0x02, "PL_CDR_LE": 0x03, "PLAIN_CDR2_BE": 0x06,
         "PLAIN_CDR2_LE": 0x07, "D_CDR2_BE": 0x08, "D_CDR2_LE": 0x09, "PL_CDR2_BE": 0x0A, "PL_CDR2_LE": 0x0B}


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_both_byte_orders_of_every_encapsulation_the_type_support_reads_are_read(kind):
    """Kilted's type support reads every one of these kinds as it reads CDR, and Fast DDS delivers
    them as written (test_hostile_input_nodes.py -k every_encapsulation_fast_dds): the reader left
    all but CDR and PLAIN_CDR2 to the type support."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    for case in CASES[::7]:
        msg = _image(**case)
        little = _write_image(msg, "<", 0x01)
        # rclpy's padding bytes are whatever was in memory: compare the fields, not the bytes
        assert _read_fields(read_image(serialize_message(msg))) == _read_fields(read_image(little))
        order = "<" if kind & 1 else ">"
        written = _write_image(msg, order, kind)
        assert _read_fields(read_image(written)) == _fields(msg) == _fields(deserialize_message(written, Image))


@pytest.mark.parametrize("header", [b"\x00\x05\x00\x00", b"\x01\x01\x00\x00"], ids=["no_kind", "not_an_encapsulation"])
def test_an_encapsulation_it_does_not_lay_out_is_left_to_the_type_support(header):
    from rclpy.serialization import serialize_message

    assert read_image(header + serialize_message(_image())[4:]) is None


def test_the_node_s_image_from_bytes_carries_a_header_it_can_publish(monkeypatch):
    """conversions.image_from_serialized: a std_msgs Header (the detector's keypoints carry it on),
    the pixels a view; the type support's Image for an encapsulation the reader leaves to it."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from cfi_pose_ros.node import conversions
    from cfi_pose_ros.node.conversions import image_from_serialized

    msg = _image(frame_id="cam", sec=12, nanosec=34)
    image = image_from_serialized(serialize_message(msg))
    assert isinstance(image.header, Header) and image.header == msg.header
    assert isinstance(image.data, memoryview) and bytes(image.data) == bytes(msg.data)
    with pytest.raises(NotAnImage):
        image_from_serialized(serialize_message(msg)[:30])
    monkeypatch.setattr(conversions, "read_image", lambda serialized, kind: None)     # not laid out
    fallback = image_from_serialized(serialize_message(msg))
    assert isinstance(fallback, Image) and fallback == msg


def test_the_take_benchmark_times_the_three_ways_over_dds(capsys):
    """benchmarks/bench_image_take.py, the smallest run: every way received every image."""
    from test_tool_signals import benchmark

    assert benchmark("bench_image_take").main(["--images", "2", "--rounds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and " x " in line]
    assert len(rows) == 3 and all(line.count("(n=2)") == 3 for line in rows), rows


@pytest.mark.parametrize("serialized, problem", [
    (b"", "0 bytes: not even an encapsulation header"),
    (b"\x00\x01", "2 bytes: not even an encapsulation header"),
    (b"\x00\x01\x00\x00", "4 bytes: an encapsulation header (its options state 0 padding) and no message"),
    (b"\x00\x01\x00\x01", "4 bytes: an encapsulation header (its options state 1 padding) and no message"),
    (b"\x00\x01\x00\x03ab", "6 bytes: an encapsulation header (its options state 3 padding) and no message"),
    (b"\x00\x01\x00\x03abcd", None),
    (b"\x00\x01\x00\x00\x00", None),           # a message type without fields: its placeholder byte
])
def test_bytes_that_are_no_message_of_any_type(serialized, problem):
    assert encapsulation_problem(serialized) == problem


def test_every_message_rclpy_serializes_has_no_encapsulation_problem():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Empty

    for msg in (Empty(), CameraInfo(), *(_image(**case) for case in CASES)):
        assert encapsulation_problem(serialize_message(msg)) is None


def test_a_bag_message_the_type_support_would_crash_on_is_refused_before_it():
    """rclpy's deserialize_message of 4 bytes whose options state padding read past their end: the
    process died of SIGSEGV (a bag with such a message killed `offline`). A process of its own."""
    code = ("from cfi_pose_ros.bag import BagMessage\n"
            "try:\n"
            "    BagMessage('/camera_info', 'sensor_msgs/msg/CameraInfo', b'\\x00\\x01\\x00\\x01', 0, 0).decode()\n"
            "except ValueError as exc:\n"
            "    print('refused:', exc)\n")
    # -P: the installed cfi_pose_ros, not a checkout's in the working directory (no generated messages)
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == ("refused: a message on /camera_info: 4 bytes: an encapsulation header (its "
                                   "options state 1 padding) and no message"), done.stdout


def _input_messages() -> list:
    """A message of each type the nodes deserialize, each string and sequence length in turn 0..7
    (each moves the alignment of what follows, 8-byte numbers included)."""
    from sensor_msgs.msg import CameraInfo, CompressedImage

    from cfi_pose_ros.msg import HumanKeypoints2D, HumanKeypoints2DArray, Keypoint2D

    messages = []
    for n in range(8):
        keypoints = HumanKeypoints2DArray(image_width=640, image_height=480)
        keypoints.header.frame_id = "f" * n
        keypoints.people = [HumanKeypoints2D(id="p" * k, score=0.5, layout=1,
                                             keypoints=[Keypoint2D(x=1.0, y=2.0, score=0.5)] * (n + k))
                            for k in range(n % 3)]
        info = CameraInfo(width=640, height=480, distortion_model="m" * n, d=[0.1] * n)
        info.header.frame_id = "c" * (7 - n)
        image = CompressedImage(format="j" * n)
        image.header.frame_id = "i" * (n // 2)
        image.data = bytes(range(n))
        messages += [keypoints, info, image]
    return messages


def test_the_layout_walk_passes_every_whole_message_and_refuses_every_cut_one():
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.cdr import layout_problem
    from cfi_pose_ros.node.conversions import cdr_layout

    for msg in _input_messages():
        data, layout = serialize_message(msg), cdr_layout(type(msg))
        assert layout_problem(data, layout) is None, msg
        padding = data[3] & 0x3             # what the encapsulation header says follows the message
        for end in range(4, len(data) - padding):
            assert layout_problem(data[:end], layout) is not None, (msg, end)


def _keypoints_of_1000_people_in_8_bytes() -> bytes:
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import HumanKeypoints2DArray

    data = serialize_message(HumanKeypoints2DArray())
    return data[:-4] + struct.pack("<I", 1000) + bytes(8)


def _image_data_into_its_padding() -> bytes:
    """A CompressedImage of 3 bytes of data and one of padding after them, as a writer pads it (the
    header's options state 1), its data's length raised to 4: the 4th is the padding, which Fast
    CDR does not read."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    data = serialize_message(CompressedImage(format="png", data=b"abc"))
    assert data[1] == 0x01 and data[3] == 0 and data.endswith(struct.pack("<I", 3) + b"abc")
    return data[:3] + b"\x01" + data[4:-7] + struct.pack("<I", 4) + b"abc\x00"


@pytest.mark.parametrize("case, problem", [
    ("keypoints", "field 3 of 1000 elements runs past the end (8 bytes left)"),
    ("compressed", "field 2 of 4 elements runs past the end (3 bytes left)"),
])
def test_a_sequence_length_past_the_end_is_refused_before_the_type_support_prints_it(case, problem):
    """Fast DDS's type support wrote "sequence size exceeds remaining buffer" to stderr for each such
    message (one unthrottled line in the node's log per bad message: 238 of a fuzzed lifter's 304 log
    lines); the walk refuses it first, saying which length. The padding the encapsulation header
    states is past the end for both."""
    from sensor_msgs.msg import CompressedImage

    from cfi_pose_ros.cdr import layout_problem
    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.conversions import cdr_layout

    msg_type, bad = ((HumanKeypoints2DArray, _keypoints_of_1000_people_in_8_bytes()) if case == "keypoints"
                     else (CompressedImage, _image_data_into_its_padding()))
    assert layout_problem(bad, cdr_layout(msg_type)) == problem
    printed = subprocess.run([sys.executable, "-P", "-c", (
        "from rclpy.serialization import deserialize_message\n"
        f"from {msg_type.__module__.split('.')[0]}.msg import {msg_type.__name__} as T\n"
        f"try: deserialize_message(bytes.fromhex('{bad.hex()}'), T)\nexcept Exception: pass")],
        capture_output=True, text=True, timeout=60)
    assert "sequence size exceeds remaining buffer" in printed.stderr      # why the walk comes first


def test_the_layout_walk_reads_every_encapsulation_as_the_type_support_does():
    """Kilted's type support reads PL_CDR, PLAIN_CDR2, D_CDR2 and PL_CDR2 as it reads CDR (byte
    order from the kind, 8-byte numbers aligned to 4 in version 2, no delimiter or parameter list
    read), and Fast DDS delivers them: the walk read XCDR1 alone, and such a message whose length ran
    past its end was left to the type support's unthrottled line. Every input message's bytes,
    whole and cut, labelled each kind (read in both byte orders): where the walk finds the bytes
    whole, the type support reads them; whole ones it finds whole in the byte order written."""
    import os

    from rclpy.serialization import deserialize_message, serialize_message

    from cfi_pose_ros.cdr import layout_problem
    from cfi_pose_ros.node.conversions import cdr_layout

    stderr = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)      # the type support's line for each it refuses
    try:
        for msg in _input_messages():
            data, layout = serialize_message(msg), cdr_layout(type(msg))
            for kind in KINDS.values():
                for end in range(5, len(data) + 1, 3):
                    labelled = data[:1] + bytes([kind]) + data[2:end]
                    if layout_problem(labelled, layout) is None:
                        deserialize_message(labelled, type(msg))       # raises where the type support refuses
                    elif end == len(data):
                        assert not kind & 1, (msg, kind)         # read big endian: lengths past the end
    finally:
        os.dup2(stderr, 2)


def keypoints_counts(serialized, most_people: int) -> tuple[int, int | None] | None:
    """``(people, keypoints)`` of a HumanKeypoints2DArray's bytes from one walk of its layout (as
    lifting.keypoints_not_to_decode walks them), keypoints None past ``most_people`` people (not
    walked); None where the walk finds the bytes no message or does not walk them."""
    from cfi_pose_ros.cdr import walk_layout
    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.conversions import cdr_layout
    from cfi_pose_ros.node.lifting import KEYPOINTS_PATH, PEOPLE_PATH

    walked = walk_layout(serialized, cdr_layout(HumanKeypoints2DArray),
                         {PEOPLE_PATH: most_people, KEYPOINTS_PATH: None})
    if walked.over == PEOPLE_PATH:
        return walked.lengths[PEOPLE_PATH], None
    if walked.problem is not None:
        return None
    return walked.lengths[PEOPLE_PATH], walked.lengths[KEYPOINTS_PATH]


def test_the_people_count_of_a_keypoints_message_is_read_without_deserializing_it():
    """offline counts a bag's keypoints message of more people than the lifter reads rather than
    deserializing it (test_offline_cli.py -k more_people_than_the_lifter_reads): the count read from
    the bytes is the message's, whatever the frame_id's length (each moves what follows); bytes cut
    before it give None; PLAIN_CDR2's are laid out as CDR's (the type support reads them so)."""
    import numpy as np
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.node.replay import keypoints_msg

    def people_count(serialized):
        counts = keypoints_counts(serialized, most_people=-1)
        return None if counts is None else counts[0]

    for frame_id in ("", "c", "ca", "cam", "camera", "kamera_ü"):
        for people in (0, 1, 2, 5000):
            msg = keypoints_msg(np.zeros((people, 17, 2)), np.ones((people, 17)), [""] * people, (640, 480),
                                "h36m_17", frame_id, 10**9)
            serialized = serialize_message(msg)
            assert people_count(serialized) == people, (frame_id, people)
    head = serialize_message(keypoints_msg(np.zeros((1, 17, 2)), np.ones((1, 17)), ["a"], (640, 480), "h36m_17",
                                           "cam", 10**9))
    assert people_count(head[:24]) is None                      # cut before the count
    assert people_count(b"\x00\x07\x00\x00" + head[4:]) == 1       # PLAIN_CDR2: laid out alike


def test_the_keypoints_of_a_keypoints_message_are_counted_without_deserializing_it():
    """The lifter drops undecoded a message of more keypoints than it reads of one (a person of
    millions: see lifting.keypoints_not_to_decode): the sum read from the bytes is the message's for
    people of every id length and keypoint count (each moves what follows into another alignment);
    past most_people the keypoints are not walked; bytes cut inside a person give None."""
    import random

    import numpy as np
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import Keypoint2D
    from cfi_pose_ros.node.replay import keypoints_msg

    rng = random.Random(5)
    for trial in range(40):
        people = rng.randrange(0, 6)
        msg = keypoints_msg(np.zeros((people, 17, 2)), np.ones((people, 17)), [""] * people, (640, 480), "h36m_17",
                            "c" * rng.randrange(0, 5), 10**9)
        for person in msg.people:
            person.id = "i" * rng.randrange(0, 7)
            person.keypoints = [Keypoint2D(x=1.0, y=2.0, score=0.5)] * rng.choice([0, 1, 5, 17, 18, 1000])
        serialized = serialize_message(msg)
        total = sum(len(person.keypoints) for person in msg.people)
        assert keypoints_counts(serialized, most_people=5) == (people, total), trial
        assert keypoints_counts(serialized, most_people=people - 1) == (people, None) or people == 0
        if total:
            assert keypoints_counts(serialized[:-20], most_people=5) is None, trial
    # a people count the bytes cannot hold is no crowd to drop undecoded but bytes that are no message
    # (the node counts them undeserializable): 4 billion people in 500 bytes
    two = serialize_message(keypoints_msg(np.zeros((2, 17, 2)), np.ones((2, 17)), ["a", "b"], (640, 480), "h36m_17",
                                          "cam", 10**9))
    start = len(serialize_message(keypoints_msg(np.zeros((0, 17, 2)), np.ones((0, 17)), [], (640, 480), "h36m_17",
                                                "cam", 10**9))) - 4          # where the people's count is
    assert keypoints_counts(two, most_people=5) == (2, 34) and two[start:start + 4] == (2).to_bytes(4, "little")
    assert keypoints_counts(two[:start] + b"\xff\xff\xff\xff" + two[start + 4:], most_people=5) is None
