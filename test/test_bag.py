"""MCAP bags: written with rclpy's CDR and full ros2msg schemas, read back with the ``mcap``
reader and decoded by ``mcap-ros2-support`` into the same messages; replayed over DDS at the
recorded rate (and faster)."""
from __future__ import annotations

import re

import time

import numpy as np
import pytest

from cfi_pose_ros.bag import PlaybackClock
from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

if ros_available() is None:
    from cfi_pose_ros.bag import BagMessage, BagWriter, bag_summary, message_definition, read_bag, type_name
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg


def test_messages_are_due_as_recorded_scaled_by_the_rate():
    times = [5_000_000_000, 5_100_000_000, 5_100_000_000, 5_400_000_000]
    for rate, offsets in ((1.0, [0.0, 0.1, 0.1, 0.4]), (2.0, [0.0, 0.05, 0.05, 0.2])):
        clock = PlaybackClock(rate)
        clock.start(times[0], wall_s=7.0)
        assert [clock.due(t) - 7.0 for t in times] == pytest.approx(offsets)


def _float32_fields(msg) -> set[str]:
    return {name for name, kind in msg.get_fields_and_field_types().items()
            if kind in ("float", "sequence<float>") or kind.startswith("float[")}


def assert_same_message(decoded, msg, where="msg"):
    """``decoded`` (mcap-ros2-support's dynamic type) holds every field of the rclpy ``msg``
    (float32 fields compared at float32, as CDR carries them)."""
    assert type(decoded).__name__ == type(msg).__name__, where
    single = _float32_fields(msg)
    for name in msg.get_fields_and_field_types():
        a, b = getattr(decoded, name), getattr(msg, name)
        path = f"{where}.{name}"
        if hasattr(b, "get_fields_and_field_types"):
            assert_same_message(a, b, path)
        elif isinstance(b, (str, bool, int)) and not isinstance(b, float):
            assert a == b, path
        elif isinstance(b, float):
            cast = np.float32 if name in single else np.float64
            assert cast(a) == cast(b) or (np.isnan(a) and np.isnan(b)), path
        elif isinstance(a, (bytes, bytearray)) or isinstance(b, (bytes, bytearray)):   # uint8[] / byte[]
            assert bytes(a) == bytes(b), path
        else:                                       # sequences and arrays
            b = list(b)
            assert len(a) == len(b), path
            if b and hasattr(b[0], "get_fields_and_field_types"):
                for k, (x, y) in enumerate(zip(a, b)):
                    assert_same_message(x, y, f"{path}[{k}]")
            else:
                cast = np.float32 if name in single else None
                assert np.array_equal(np.asarray(a, dtype=cast), np.asarray(b, dtype=cast), equal_nan=cast is not None), path


def _sample_messages():
    from cfi_pose_ros.frames import RigidTransform
    from cfi_pose_ros.markers import skeleton_markers
    from cfi_pose_ros.node.conversions import markers_to_msg, poses_to_msg
    from cfi_pose_ros.pipeline import ROOT_FROM_INTRINSICS, LiftedPerson
    from std_msgs.msg import Header

    clip = Clip.load()
    keypoints = keypoints_msg(clip.pixels[3], clip.scores[3], clip.ids, clip.image_size, clip.layout, "cam", 3_000_000_123)
    keypoints.people[0].keypoints[5].x = float("nan")          # a missing joint survives as NaN
    info = camera_info_msg(clip.camera_matrix, clip.image_size, "cam")
    truth = clip.truth_camera_m[3, 0]
    person = LiftedPerson("walker", 0.8, truth, np.linspace(0.1, 0.9, 17), ROOT_FROM_INTRINSICS, truth[0],
                          RigidTransform.identity().rotation_xyzw, 0)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 3, 123
    poses = poses_to_msg(header, [person])
    markers = markers_to_msg(header, skeleton_markers(0, "walker", truth))
    return {"/human_keypoints_2d": keypoints, "/camera_info": info, "/human_pose_3d": poses,
            "/human_pose_3d/markers": markers}


def test_written_bag_reads_back_and_decodes_with_mcap_ros2_support(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import serialize_message

    messages = _sample_messages()
    path = tmp_path / "sample.mcap"
    with BagWriter(path) as writer:
        for k, (topic, msg) in enumerate(messages.items()):
            writer.write(topic, msg, log_time_ns=1_000 + k)
            writer.write(topic, msg, log_time_ns=2_000 + k)

    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        seen = []
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
            original = messages[channel.topic]
            assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
            assert schema.name == type_name(original)               # e.g. cfi_pose_ros/msg/HumanPose3DArray
            assert schema.data.decode() == message_definition(schema.name)
            # rclpy's CDR (its alignment padding is not zeroed, so compare sizes, and values below)
            assert len(message.data) == len(serialize_message(original))
            assert_same_message(decoded, original, channel.topic)
            seen.append((channel.topic, message.log_time, message.sequence))
    assert [s[0] for s in seen] == list(messages) * 2
    assert [s[1] for s in seen] == [1_000, 1_001, 1_002, 1_003, 2_000, 2_001, 2_002, 2_003]
    assert [s[2] for s in seen] == [0, 0, 0, 0, 1, 1, 1, 1]          # per-channel sequence numbers

    # and our own reader gives back the same rclpy messages
    for message in read_bag(path):
        assert_same_message(message.decode(), messages[message.topic], message.topic)
    topics, (start, end) = bag_summary(path)
    assert {t: (s.type_name, s.count) for t, s in topics.items()} == {
        t: (type_name(m), 2) for t, m in messages.items()}
    assert (start, end) == (1_000, 2_003)


@pytest.mark.parametrize("compression, chunk_index, sized", [
    ("zstd", True, True), ("lz4", True, True), ("zstd", False, True), ("lz4", True, False), ("lz4", False, False)],
    ids=["zstd", "lz4", "zstd_without_chunk_index", "lz4_frame_without_size", "lz4_without_size_or_chunk_index"])
def test_a_chunk_of_more_than_a_bag_holds_is_refused_before_it_is_decompressed(tmp_path, monkeypatch,
                                                                                 compression, chunk_index, sized):
    """73 kB of zstd held a chunk of 2 GiB of zeros: the offline CLI and play_bag decompressed it
    whole (4.6 GB peak; 20 GiB in 700 kB takes all the memory a robot has). Here the bound is
    lowered to 16 MiB and a chunk holds 40 MB of zeros; without a chunk index the file is read
    through for the chunks' headers. An lz4 frame need not state its size (``sized``): such a chunk
    passed as 0 bytes (6.5 MB of bag inflated to 1.5 GiB, and play_bag published it); its size is
    then counted by inflating it in pieces, up to just past the bound."""
    import lz4.frame
    from mcap.writer import CompressionType, IndexType, Writer

    import cfi_pose_ros.bag as bag

    monkeypatch.setattr(bag, "MAX_CHUNK_BYTES", 16 << 20, raising=False)
    if not sized:
        compress = lz4.frame.compress
        monkeypatch.setattr(lz4.frame, "compress", lambda data, **kwargs: compress(data, store_size=False))
    path = tmp_path / "zeros.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, compression=CompressionType[compression.upper()],
                        index_types=IndexType.ALL if chunk_index else IndexType.NONE)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name="sensor_msgs/msg/Image", encoding="ros2msg", data=b"")
        channel = writer.register_channel(topic="/image", message_encoding="cdr", schema_id=schema)
        writer.add_message(channel_id=channel, log_time=1, publish_time=1, data=bytes(40 << 20), sequence=0)
        writer.finish()
    assert path.stat().st_size < 1 << 20
    counted = r"4\d{7}" if sized else r"\d{8}"
    with pytest.raises(ValueError, match=rf"a chunk would decompress to at least {counted} bytes \(more than 16777216\)"):
        next(read_bag(path))


def test_a_bag_cut_short_in_its_summary_is_refused_in_words(tmp_path):
    """A bag cut anywhere in its last bytes (the summary section, its offsets, the footer): the mcap
    reader raised struct.error at some of those lengths ("unpack requires a buffer of 8 bytes"),
    which came out of the offline CLI and play_bag as a traceback, exit 1. Each is one ValueError
    that says the file is not a complete MCAP file."""
    messages = _sample_messages()
    whole = tmp_path / "whole.mcap"
    with BagWriter(whole) as writer:
        for k, (topic, msg) in enumerate(messages.items()):
            writer.write(topic, msg, log_time_ns=1_000 + k)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mcap"
    for length in range(len(data) - 160, len(data)):
        cut.write_bytes(data[:length])
        with pytest.raises(ValueError, match="not a complete MCAP file|no MCAP summary section"):
            bag_summary(cut)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_chunk_whose_bytes_were_damaged_is_refused_by_its_checksum(tmp_path, compression):
    """The reader skipped the chunks' CRCs: a bag damaged on disk was lifted (or replayed) with
    garbage keypoints and exit 0, read as good data. Damage that still decodes (uncompressed, or
    zstd whose frame survives) is caught by the chunk's CRC: ValueError after the messages of the
    chunks before it."""
    from mcap.writer import CompressionType, Writer

    path = tmp_path / "damaged.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, compression=CompressionType[compression.upper()], chunk_size=2048)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name="std_msgs/msg/String", encoding="ros2msg", data=b"string data")
        channel = writer.register_channel(topic="/t", message_encoding="cdr", schema_id=schema)
        for k in range(30):
            writer.add_message(channel_id=channel, log_time=k, publish_time=k, sequence=k,
                               data=bytes([k]) * 8 + b"payload" * 60)
        writer.finish()
    assert len(list(read_bag(path))) == 30
    data = bytearray(path.read_bytes())
    # a byte of the 16th message's payload (uncompressed) or in the middle of the file (zstd)
    at = data.index(bytes([15]) * 8 + b"payload") + 20 if compression == "none" else len(data) // 2
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    read = []
    with pytest.raises(ValueError, match="corrupt MCAP data"):
        for message in read_bag(path):
            read.append(message)
    assert 0 < len(read) < 30


def _string_bag(path, count: int, compression: str = "none") -> bytes:
    """An MCAP of ``count`` std_msgs/String messages on /t in one chunk; its bytes."""
    from mcap.writer import CompressionType, Writer
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    with open(path, "wb") as f:
        writer = Writer(f, compression=CompressionType[compression.upper()])
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name="std_msgs/msg/String", encoding="ros2msg",
                                        data=message_definition("std_msgs/msg/String").encode())
        channel = writer.register_channel(topic="/t", message_encoding="cdr", schema_id=schema)
        for k in range(count):
            writer.add_message(channel_id=channel, log_time=k, publish_time=k, data=serialize_message(String(data=f"m{k}")))
        writer.finish()
    return path.read_bytes()


def test_a_message_whose_length_runs_past_its_chunk_is_refused_not_the_rest_of_the_chunk_lost(tmp_path):
    """A message record in a chunk declaring 150 MB (a writer's bug, or damage under a chunk CRC of 0,
    which says "not computed"): the mcap reader took the rest of the chunk as that message's bytes and
    ended the chunk there without a word. Of 10 messages 3 came out, exit 0, the other 7 lost. What the
    file's statistics state and what was read differ: ValueError once the chunk is read."""
    import struct

    path = tmp_path / "long_record.mcap"
    data = bytearray(_string_bag(path, 10))
    assert [m.decode().data for m in read_bag(path)] == [f"m{k}" for k in range(10)]
    chunk = 8
    while data[chunk] != 0x06:                       # the records up to the (one) chunk
        chunk += 9 + struct.unpack_from("<Q", data, chunk + 1)[0]
    struct.pack_into("<I", data, chunk + 9 + 24, 0)  # its CRC: 0, not computed
    records = chunk + 9 + 28 + 4 + len("") + 8       # past times, sizes, CRC, compression "" and records length
    at = records
    for _ in range(4):                               # the schema, the channel, m0, m1: the third message's record
        at += 9 + struct.unpack_from("<Q", data, at + 1)[0]
    assert data[at] == 0x05
    struct.pack_into("<Q", data, at + 1, 150 * 2**20)
    path.write_bytes(bytes(data))
    read = []
    with pytest.raises(ValueError, match=r"long_record.mcap: corrupt MCAP data: 7 of the 10 messages its "
                                         r"statistics state could not be read"):
        for message in read_bag(path):
            read.append(message)
    assert [m.log_time_ns for m in read] == [0, 1, 2]      # the third with the chunk's rest as its bytes


def test_messages_of_a_channel_that_is_not_cdr_are_given_to_a_reader_that_counts_them(tmp_path):
    """A JSON channel beside the cdr one on a topic: read_bag skipped its messages where nobody could
    count them (the offline CLI said "dropped": {}), and bag_summary gave the topic the count of
    whichever channel came last. Asked for (``every_encoding``), they come with their encoding, and
    decoding one is refused rather than reading JSON as CDR; by default (play_bag publishes the
    bytes as recorded) they are still left out. The summary counts the topic's every channel."""
    from mcap.writer import Writer
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    path = tmp_path / "mixed.mcap"
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name="std_msgs/msg/String", encoding="ros2msg",
                                        data=message_definition("std_msgs/msg/String").encode())
        cdr = writer.register_channel(topic="/t", message_encoding="cdr", schema_id=schema)
        json_channel = writer.register_channel(topic="/t", message_encoding="json", schema_id=schema)
        for k in range(3):
            writer.add_message(channel_id=cdr, log_time=2 * k, publish_time=2 * k,
                               data=serialize_message(String(data=f"cdr {k}")))
        writer.add_message(channel_id=json_channel, log_time=3, publish_time=3, data=b'{"data": "json"}')
        writer.finish()
    assert [m.decode().data for m in read_bag(path)] == ["cdr 0", "cdr 1", "cdr 2"]
    every = list(read_bag(path, every_encoding=True))
    assert [(m.log_time_ns, m.message_encoding) for m in every] == [(0, "cdr"), (2, "cdr"), (3, "json"), (4, "cdr")]
    with pytest.raises(ValueError, match="a message on /t is 'json', not 'cdr'"):
        every[2].decode()
    topics, _ = bag_summary(path)
    assert {t: (s.type_name, s.count) for t, s in topics.items()} == {"/t": ("std_msgs/msg/String", 4)}


def test_bag_info_names_a_bag_that_is_not_there_in_its_own_words(tmp_path, capsys):
    """It was Python's "[Errno 2] No such file or directory: '.../gone.mcap'"."""
    from cfi_pose_ros.bag import main as bag_main

    gone = tmp_path / "gone.mcap"
    assert bag_main(["info", str(gone)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"bag: error: {gone}: no such file"]


def test_bag_info_counts_the_messages_of_a_file_without_statistics(tmp_path):
    """MCAP's Statistics record is optional (a writer with use_statistics=False, other recorders):
    `bag info` said "messages: 0" and "duration: 0.000 s", each topic 0, for a file of 5 messages
    over 4 s. Its messages are counted as read."""
    import subprocess
    import sys

    from mcap.writer import Writer
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    path = tmp_path / "no_statistics.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, use_statistics=False)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name="std_msgs/msg/String", encoding="ros2msg",
                                        data=message_definition("std_msgs/msg/String").encode())
        channels = [writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema)
                    for topic in ("/a", "/b")]
        for k in range(5):
            writer.add_message(channel_id=channels[k % 2], log_time=10**9 * (k + 1), publish_time=10**9 * (k + 1),
                               data=serialize_message(String(data=str(k))))
        writer.finish()
    topics, times = bag_summary(path)
    assert {t: (s.type_name, s.count) for t, s in topics.items()} == {
        "/a": ("std_msgs/msg/String", 3), "/b": ("std_msgs/msg/String", 2)}
    assert times == (10**9, 5 * 10**9)
    info = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.bag", "info", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert info.returncode == 0 and "duration: 4.000 s" in info.stdout and "messages: 5" in info.stdout, info


def test_a_topic_s_type_is_its_ros_channel_s_whatever_channel_comes_first(tmp_path):
    """A protobuf channel registered before the cdr one on a topic named the topic's type: play_bag
    left its ROS messages out without a word and offline refused the bag (it holds valid ROS 2 data)."""
    from mcap.writer import Writer
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    path = tmp_path / "protobuf_first.mcap"
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="test")
        other = writer.register_schema(name="foxglove.Log", encoding="protobuf", data=b"")
        ros = writer.register_schema(name="std_msgs/msg/String", encoding="ros2msg",
                                     data=message_definition("std_msgs/msg/String").encode())
        protobuf = writer.register_channel(topic="/t", message_encoding="protobuf", schema_id=other)
        cdr = writer.register_channel(topic="/t", message_encoding="cdr", schema_id=ros)
        writer.add_message(channel_id=protobuf, log_time=0, publish_time=0, data=b"\x08\x01")
        writer.add_message(channel_id=cdr, log_time=1, publish_time=1, data=serialize_message(String(data="x")))
        writer.finish()
    topics, _ = bag_summary(path)
    assert {t: (s.type_name, s.count) for t, s in topics.items()} == {"/t": ("std_msgs/msg/String", 2)}


def test_a_folder_of_ros2_bag_record_is_read_as_one_bag_over_its_split_files(tmp_path):
    """`ros2 bag record` writes a folder (metadata.yaml beside name_0.mcap, name_1.mcap when split by
    size or duration): refused as "a directory", and offline read it as a folder of photos ("no
    images"). Its files are read in the order metadata.yaml lists them, as one bag; a folder of
    another storage is refused in one line."""
    from std_msgs.msg import String

    folder = tmp_path / "rosbag2_2026_12_05"
    folder.mkdir()
    names = ["rosbag2_2026_12_05_0.mcap", "rosbag2_2026_12_05_1.mcap"]
    for part, name in enumerate(names):
        with BagWriter(folder / name) as writer:
            for k in range(3):
                writer.write("/t", String(data=f"{part}.{k}"), 10 * part + k)
    (folder / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  storage_identifier: mcap\n  relative_file_paths:\n"
        + "".join(f"    - {name}\n" for name in names))
    assert [m.decode().data for m in read_bag(folder)] == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
    topics, times = bag_summary(folder)
    assert {t: (s.type_name, s.count) for t, s in topics.items()} == {"/t": ("std_msgs/msg/String", 6)}
    assert times == (0, 12)
    sqlite = tmp_path / "sqlite_bag"
    sqlite.mkdir()
    (sqlite / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  relative_file_paths: [b_0.db3]\n")
    with pytest.raises(ValueError, match="a ros2 bag record folder of b_0.db3: only MCAP files are read"):
        bag_summary(sqlite)
    # rosbag2's own compression keeps the .mcap names, but the messages are no CDR as read
    (folder / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  compression_format: zstd\n  compression_mode: MESSAGE\n"
        "  relative_file_paths:\n" + "".join(f"    - {name}\n" for name in names))
    with pytest.raises(ValueError, match="recorded with --compression-mode message"):
        list(read_bag(folder))


def test_full_definition_holds_every_nested_type_once():
    text = message_definition("cfi_pose_ros/msg/HumanPose3DArray")
    blocks = text.split("=" * 80 + "\n")
    assert blocks[0].startswith("# Every person's 3D skeleton")
    names = [block.splitlines()[0] for block in blocks[1:]]
    assert sorted(names) == sorted({"MSG: std_msgs/Header", "MSG: builtin_interfaces/Time",
                                    "MSG: cfi_pose_ros/HumanPose3D", "MSG: geometry_msgs/Point",
                                    "MSG: geometry_msgs/Pose", "MSG: geometry_msgs/Quaternion"})


@pytest.mark.parametrize("name", ["cfi_pose_ros/msg/HumanPose3DArray", "cfi_pose_ros/msg/HumanKeypoints2DArray",
                                  "visualization_msgs/msg/MarkerArray", "sensor_msgs/msg/CameraInfo"])
def test_every_field_type_of_a_definition_has_the_block_of_that_name(name):
    """What Foxglove's parser (@foxglove/rosmsg, ros2) requires: a field of type pkg/Type is defined
    by the block headed exactly ``MSG: pkg/Type`` (rosbag2 writes them so). The blocks were headed
    ``MSG: pkg/msg/Type``, and Foxglove decoded no topic of a bag this package wrote."""
    blocks = message_definition(name).split("=" * 80 + "\n")
    defined = {block.splitlines()[0].removeprefix("MSG: ") for block in blocks[1:]}
    used = set()
    for block in blocks:
        package = block.splitlines()[0].removeprefix("MSG: ").split("/")[0] if block.startswith("MSG: ") \
            else name.split("/")[0]
        for line in block.splitlines()[1 if block.startswith("MSG: ") else 0:]:
            field = line.split("#", 1)[0].split()
            if not field:
                continue
            base = re.sub(r"(\[.*\]|<=\d+)$", "", field[0])
            if base[0].isupper() or "/" in base:          # a message type, not a primitive
                used.add(base if "/" in base else f"{package}/{base}")
    assert used == defined, (used ^ defined)


def test_bag_player_keeps_the_recorded_timing(ros_env, monkeypatch):
    """Played over DDS into a subscriber: every message arrives, in order, sent on the recorded
    schedule, and twice as fast at rate 2. The player runs on a simulated clock that only its
    executor's spins advance, so the send times it records are exactly the schedule it follows,
    however busy this machine is (play_bag prints the real lateness of a real playback)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node import play_bag
    from cfi_pose_ros.node.play_bag import BagPlayer

    clip = Clip.load()
    topic = f"/bag_timing_{int(time.time() * 1000) % 100000}/keypoints"
    period_ns, count = 40_000_000, 12
    messages = [BagMessage(topic, "cfi_pose_ros/msg/HumanKeypoints2DArray", serialize_message(
        keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size, clip.layout, "cam", 10**9 + k)),
        10**9 + k * period_ns, 10**9 + k * period_ns) for k in range(count)]
    if not rclpy.ok():
        rclpy.init()
    player_node = rclpy.create_node("test_bag_player")
    listener = rclpy.create_node("test_bag_listener")
    received: list[int] = []
    listener.create_subscription(HumanKeypoints2DArray, topic, lambda m: received.append(m.header.stamp.nanosec),
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(player_node)
    executor.add_node(listener)

    class SimulatedClock:
        now = 1000.0

        def perf_counter(self):
            return self.now

    class ClockedExecutor:          # the real executor; each spin advances the simulated clock
        def spin_once(self, timeout_sec):
            executor.spin_once(timeout_sec=0.0)
            clock.now += timeout_sec

    clock = SimulatedClock()
    try:
        player = BagPlayer(player_node, messages)
        assert player.wait_for_subscribers(executor, 10.0)
        monkeypatch.setattr(play_bag, "time", clock)
        for rate in (1.0, 2.0):
            received.clear()
            report = player.play(ClockedExecutor(), rate=rate)
            end = time.monotonic() + 5.0
            while len(received) < count and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
            assert received == list(range(count))                  # all of them, in order
            assert report.published == count
            assert min(report.lateness_s) >= 0.0 and max(report.lateness_s) < 1e-9    # never early, on time
            np.testing.assert_allclose(np.diff(report.publish_times), period_ns * 1e-9 / rate, atol=1e-9)
            assert report.duration_s == pytest.approx((count - 1) * period_ns * 1e-9 / rate, abs=1e-9)
        # what a playback keeps of each message is bounded: a --loop plays until stopped
        monkeypatch.setattr(play_bag, "REPORTED_MESSAGES", 3)
        report = player.play(ClockedExecutor())
        assert report.published == count and len(report.lateness_s) == len(report.publish_times) == 3
    finally:
        executor.shutdown()
        player_node.destroy_node()
        listener.destroy_node()


def test_a_bag_that_names_no_qos_is_played_reliable_volatile_keep_last_10(ros_env, tmp_path):
    """A bag whose channels name no offered QoS (this package's writer, an older rosbag2, another
    tool's MCAP) is published as ``ros2 bag play`` publishes one: reliable, volatile, keep last
    10, as a subscriber sees over DDS."""
    import rclpy
    from mcap.reader import make_reader
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.play_bag import BagPlayer

    topic = f"/bag_no_qos_{int(time.time() * 1000) % 100000}/keypoints"
    path = tmp_path / "no_qos.mcap"
    with BagWriter(path) as writer:
        writer.write(topic, HumanKeypoints2DArray(), 10**9)
    with open(path, "rb") as f:
        channels = make_reader(f).get_summary().channels.values()
    assert [c.topic for c in channels] == [topic]
    assert all(c.metadata == {"offered_qos_profiles": ""} for c in channels)     # the ros2 profile's key, no offer
    if not rclpy.ok():
        rclpy.init()
    player_node = rclpy.create_node("test_bag_no_qos_player")
    listener = rclpy.create_node("test_bag_no_qos_listener")
    listener.create_subscription(HumanKeypoints2DArray, topic, lambda m: None, QoSProfile(depth=1))
    executor = SingleThreadedExecutor()
    executor.add_node(player_node)
    executor.add_node(listener)
    try:
        player = BagPlayer.from_bag(player_node, path)
        assert player.topics == [topic] and player.wait_for_subscribers(executor, 10.0)
        own = player._publishers[topic].qos_profile
        assert (own.history, own.depth) == (HistoryPolicy.KEEP_LAST, 10)
        end = time.monotonic() + 10.0
        while not (seen := listener.get_publishers_info_by_topic(topic)) and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert len(seen) == 1, seen
        assert seen[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert seen[0].qos_profile.durability == DurabilityPolicy.VOLATILE
    finally:
        executor.shutdown()
        player_node.destroy_node()
        listener.destroy_node()


def test_a_bag_is_played_with_the_qos_its_publishers_offered(ros_env, tmp_path, capsys):
    """rosbag2 records each topic's offered QoS; ros2 bag play offers it again. play_bag offered
    reliable, volatile whatever a bag said: a latched topic recorded transient local (a map, a
    robot description, a static calibration) never reached a subscriber that joined after it
    was played, and a best-effort camera stream went out reliable. Here, over DDS: a topic its
    publisher offered best effort is offered best effort; one offered reliable and transient local
    reaches a transient-local subscriber created after the playback ended; one whose publishers
    offered differently is offered reliable, volatile, with a warning."""
    import rclpy
    from mcap.writer import Writer
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.bag import MESSAGE_ENCODING, PROFILE, SCHEMA_ENCODING, message_definition
    from cfi_pose_ros.msg import HumanKeypoints2DArray
    from cfi_pose_ros.node.play_bag import BagPlayer

    def offer(reliability: str, durability: str) -> str:      # as rosbag2's bag format 9 writes one profile
        infinite = "{sec: 9223372036, nsec: 854775807}"
        return (f"- history: keep_last\n  depth: 1\n  reliability: {reliability}\n  durability: {durability}\n"
                f"  deadline: {infinite}\n  lifespan: {infinite}\n  liveliness: automatic\n"
                f"  liveliness_lease_duration: {infinite}\n  avoid_ros_namespace_conventions: false\n")

    base = f"/bag_qos_{int(time.time() * 1000) % 100000}"
    offers = {f"{base}/best_effort": offer("best_effort", "volatile"),
              f"{base}/latched": offer("reliable", "transient_local"),
              f"{base}/mixed": offer("best_effort", "volatile") + offer("reliable", "transient_local")}
    type_name = "cfi_pose_ros/msg/HumanKeypoints2DArray"
    path = tmp_path / "recorded_qos.mcap"
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile=PROFILE, library="test")
        schema = writer.register_schema(name=type_name, encoding=SCHEMA_ENCODING,
                                        data=message_definition(type_name).encode())
        for k, (topic, profiles) in enumerate(sorted(offers.items())):
            channel = writer.register_channel(topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=schema,
                                              metadata={"offered_qos_profiles": profiles})
            message = HumanKeypoints2DArray()
            message.header.frame_id = topic
            writer.add_message(channel_id=channel, log_time=10**9 + k, publish_time=10**9 + k,
                               data=serialize_message(message))
        writer.finish()
    if not rclpy.ok():
        rclpy.init()
    player_node = rclpy.create_node("test_bag_qos_player")
    listener = rclpy.create_node("test_bag_qos_listener")
    executor = SingleThreadedExecutor()
    executor.add_node(player_node)
    executor.add_node(listener)
    try:
        player = BagPlayer.from_bag(player_node, path, topics=sorted(offers))
        assert len(player.qos_warnings) == 1 and player.qos_warnings[0].startswith(f"{base}/mixed: "), \
            player.qos_warnings
        end = time.monotonic() + 10.0
        seen = {}
        while len(seen) < 3 and time.monotonic() < end:
            seen = {topic: info[0].qos_profile for topic in offers
                    if (info := listener.get_publishers_info_by_topic(topic))}
            executor.spin_once(timeout_sec=0.05)
        assert (seen[f"{base}/best_effort"].reliability, seen[f"{base}/best_effort"].durability) == \
            (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)
        assert (seen[f"{base}/latched"].reliability, seen[f"{base}/latched"].durability) == \
            (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
        assert (seen[f"{base}/mixed"].reliability, seen[f"{base}/mixed"].durability) == \
            (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)
        assert player.play(executor).published == 3

        received = []                    # a subscriber that joins after the playback ended
        listener.create_subscription(HumanKeypoints2DArray, f"{base}/latched",
                                     lambda m: received.append(m.header.frame_id),
                                     QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))
        end = time.monotonic() + 10.0
        while not received and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert received == [f"{base}/latched"]
    finally:
        executor.shutdown()
        player_node.destroy_node()
        listener.destroy_node()
