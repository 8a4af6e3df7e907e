"""``python -m cfi_pose_ros.node.play_bag --remap FROM:=TO``: the remap rules are the player's own,
not rcl's. rclpy.init() without args handed sys.argv to rcl, which took every ``FROM:=TO`` as a
(deprecated) global remap rule of the player node as well, printed a deprecation warning for each,
and applied it on top: with ``--remap /a:=/b /b:=/a`` the player made /a's publisher on /b, which
rcl then remapped back to /a (and the other way round), so nothing was swapped."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import PEAK_RSS_SOURCE, ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]


def test_play_bag_remap_swaps_two_topics_and_warns_nothing(ros_env, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    base = f"/play_bag_swap_{int(time.time() * 1000) % 100000}"
    a, b = f"{base}/a", f"{base}/b"
    bag = tmp_path / "two.mcap"
    with BagWriter(bag) as writer:
        for k in range(5):
            for topic, frame in ((a, "from_a"), (b, "from_b")):
                msg = HumanKeypoints2DArray()
                msg.header.frame_id = frame
                writer.write(topic, msg, log_time_ns=10**9 + k * 20_000_000)

    if not rclpy.ok():
        rclpy.init()
    listener = rclpy.create_node("test_play_bag_swap_listener")
    received: dict[str, list[str]] = {a: [], b: []}
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for topic in (a, b):
        listener.create_subscription(HumanKeypoints2DArray, topic,
                                     lambda m, t=topic: received[t].append(m.header.frame_id), qos)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    try:
        player = subprocess.Popen(
            [sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--remap", f"{a}:={b}", f"{b}:={a}"],
            env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while player.poll() is None and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        drain = time.monotonic() + 1.0
        while time.monotonic() < drain:
            executor.spin_once(timeout_sec=0.02)
        out, err = player.communicate(timeout=10)
    finally:
        executor.shutdown()
        listener.destroy_node()
    assert player.returncode == 0, err
    # /a's messages went out on /b and /b's on /a (none of them on its own topic)
    assert received[b] and set(received[b]) == {"from_a"}, received
    assert received[a] and set(received[a]) == {"from_b"}, received
    assert "deprecated" not in err, err                # rcl took no rule of its own


def test_play_bag_says_in_one_line_that_a_chunk_is_corrupt(ros_env, tmp_path):
    """A chunk the summary still indexes but whose compressed data is broken ended play_bag with
    zstandard's (or lz4's) traceback: only McapError was taken for a bad bag."""
    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    bag = tmp_path / "corrupt.mcap"
    with BagWriter(bag) as writer:
        for k in range(3):
            writer.write("/human_keypoints_2d", HumanKeypoints2DArray(), log_time_ns=10**9 + k)
    data = bag.read_bytes()
    frame = data.index(b"\x28\xb5\x2f\xfd")          # the zstd frame's magic, zeroed
    bag.write_bytes(data[:frame] + bytes(4) + data[frame + 4:])
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag),
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1].startswith(f"play_bag: error: {bag}: corrupt MCAP data")


def test_play_bag_refuses_a_fifo_at_once(ros_env, tmp_path):
    """A FIFO given as the bag: open() waited for a writer, and play_bag hung there, deaf to SIGTERM
    (rclpy's handler only flags the shutdown). A bag is read by seeking, which a FIFO cannot do."""
    import os

    fifo = tmp_path / "live.mcap"
    os.mkfifo(fifo)
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(fifo),
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=30)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1] == (
        f"play_bag: error: {fifo}: a FIFO, not an MCAP file (a bag is read by seeking to its end)")


def test_play_bag_names_a_bag_that_is_not_there_in_its_own_words(ros_env, tmp_path):
    """It was Python's "[Errno 2] No such file or directory: '.../gone.mcap'"."""
    gone = tmp_path / "gone.mcap"
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(gone),
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=30)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1] == f"play_bag: error: {gone}: no such file", player.stderr


def test_play_bag_streams_the_bag_instead_of_holding_it_in_memory(ros_env, tmp_path):
    """Every message was read into a list before the first was published: 300 720p images (a
    100 kB file, they compress to nothing) took 890 MB, a 10-minute camera bag 50 GB."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from cfi_pose_ros.bag import BagWriter

    image = Image(width=1280, height=720, encoding="rgb8", step=1280 * 3, data=bytes(1280 * 720 * 3))
    data, count = serialize_message(image), 300
    bag = tmp_path / "camera.mcap"
    with BagWriter(bag) as writer:
        for k in range(count):
            writer.write_serialized("/camera/image_raw", "sensor_msgs/msg/Image", data, 10**9 + k * 1_000_000)
    probe = (PEAK_RSS_SOURCE + "import sys\n"
             "from cfi_pose_ros.node.play_bag import main\n"
             "code = main(sys.argv[1:])\n"
             "print(peak_rss())\n"
             "sys.exit(code)\n")
    player = subprocess.run([sys.executable, "-P", "-c", probe, str(bag), "--wait-for-subscribers", "0"],
                            env=ros_env, capture_output=True, text=True, timeout=120)
    assert player.returncode == 0, player.stderr
    assert f"published {count} messages" in player.stdout
    peak = int(player.stdout.strip().splitlines()[-1])
    assert peak < count * len(data) / 4, f"peak {peak / 2**20:.0f} MiB for {count * len(data) / 2**20:.0f} MiB of images"


@pytest.mark.parametrize("schema_name, expected", [
    ("os/path/join", "not a ROS message type name: 'os/path/join'"),          # AttributeError traceback
    ("this/msg/X", "no ROS interface package 'this'"),                        # imported `this`: the Zen on stdout
    ("rcl_interfaces/srv/GetParameters", "is not a ROS message type"),        # RuntimeError traceback
])
def test_play_bag_imports_only_ros_message_types_a_bag_names(ros_env, tmp_path, schema_name, expected):
    """The type of a topic given with --topics is the bag's schema name, which play_bag imported as
    a Python module path: any installed module was imported (run) and any attribute of it taken
    for a message class."""
    from mcap.writer import Writer

    bag = tmp_path / "odd_schema.mcap"
    with open(bag, "wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(name=schema_name, encoding="ros2msg", data=b"")
        channel = writer.register_channel(topic="/odd", message_encoding="cdr", schema_id=schema)
        writer.add_message(channel_id=channel, log_time=10**9, publish_time=10**9, data=b"\x00\x01\x00\x00", sequence=0)
        writer.finish()
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--topics", "/odd",
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1].startswith("play_bag: error: ") and expected in player.stderr
    assert "Beautiful is better than ugly" not in player.stdout


@pytest.mark.parametrize("rule, expected", [
    ("/cam/camera_info:=/people", "--remap puts /cam/camera_info (sensor_msgs/msg/CameraInfo) and /people "
                                  "(cfi_pose_ros/msg/HumanKeypoints2DArray) on one topic /people"),
    ("/cam/camera_info:=/bad topic!", "--remap /cam/camera_info:=/bad topic!: not a valid ROS topic name"),
    ("/cam/camera_info:=", "--remap /cam/camera_info:=: not a valid ROS topic name"),
])
def test_play_bag_refuses_a_remap_no_topic_can_take(ros_env, tmp_path, rule, expected):
    """Two recorded topics of different types remapped onto one: the player made one publisher,
    and the second type's bytes went out through the first's (a CameraInfo subscriber got keypoints
    as CameraInfo, 150 deserialisation errors), exit 0. A target that is no topic name ended in
    rclpy's traceback. Both are one line, exit 2, before anything is published."""
    from sensor_msgs.msg import CameraInfo

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    bag = tmp_path / "two_types.mcap"
    with BagWriter(bag) as writer:
        writer.write("/cam/camera_info", CameraInfo(), log_time_ns=10**9)
        writer.write("/people", HumanKeypoints2DArray(), log_time_ns=10**9 + 1)
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--remap", rule,
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1].startswith(f"play_bag: error: {expected}"), player.stderr


@pytest.mark.parametrize("args, expected", [
    (["--remap", "/cam/image_raw:=/image_raw"], "--remap /cam/image_raw:=/image_raw: /cam/image_raw is not played "
                                                "(played: /cam/camera_info, /people)"),
    (["--remap", "/diagnostics:=/d"], "--remap /diagnostics:=/d: /diagnostics is not played (played: "
                                      "/cam/camera_info, /people; name it in --topics)"),
    (["--topics", "/people", "/cam/camera_inf"], "--topics /cam/camera_inf: not in the bag (its topics: "
                                                 "/cam/camera_info, /diagnostics, /people)"),
])
def test_play_bag_refuses_a_remap_or_topic_it_would_not_play(ros_env, tmp_path, args, expected):
    """A --remap FROM or a --topics name the bag does not play (a typo, another recording's topic) was
    dropped without a word: exit 0, and the subscriber on the intended topic got nothing."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    bag = tmp_path / "bag.mcap"
    with BagWriter(bag) as writer:
        writer.write("/cam/camera_info", CameraInfo(), log_time_ns=10**9)
        writer.write("/people", HumanKeypoints2DArray(), log_time_ns=10**9 + 1)
        writer.write("/diagnostics", DiagnosticArray(), log_time_ns=10**9 + 2)
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), *args,
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr and not player.stdout, player
    assert player.stderr.strip().splitlines()[-1].startswith("play_bag: error: ") and \
        expected in player.stderr.strip().splitlines()[-1], player.stderr


def test_play_bag_refuses_a_topic_a_subscriber_of_another_type_listens_on(ros_env, tmp_path):
    """`--remap /people:=/camera_info` where a CameraInfo subscriber listens: it was never matched and
    got nothing, and the replay said "not every topic has a subscriber; playing anyway", exit 0."""
    import rclpy
    from sensor_msgs.msg import CameraInfo

    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    topic = f"/play_bag_clash_{os.getpid()}/camera_info"
    bag = tmp_path / "people.mcap"
    with BagWriter(bag) as writer:
        writer.write("/people", HumanKeypoints2DArray(), log_time_ns=10**9)
    if not rclpy.ok():
        rclpy.init()
    listener = rclpy.create_node(f"test_play_bag_clash_{os.getpid()}")
    listener.create_subscription(CameraInfo, topic, lambda msg: None, 10)
    try:
        player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--remap",
                                 f"/people:={topic}", "--wait-for-subscribers", "3"],
                                env=ros_env, capture_output=True, text=True, timeout=60)
    finally:
        listener.destroy_node()
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines()[-1] == (
        f"play_bag: error: {topic} is sensor_msgs/msg/CameraInfo on the graph, the bag's messages for it "
        "cfi_pose_ros/msg/HumanKeypoints2DArray: its subscribers would get nothing"), player.stderr


@pytest.mark.parametrize("name, content, expected", [
    ("recorded.db3", b"SQLite format 3\x00" + bytes(84),
     "an SQLite database (rosbag2's sqlite3 storage, .db3), not MCAP: only MCAP bags are read"),
    ("other.mcap", b"PK\x03\x04 a zip file, not a bag", "not an MCAP file (it does not begin with MCAP's magic bytes)"),
    ("empty.mcap", b"", "an empty file (0 bytes), not an MCAP bag"),
], ids=["sqlite", "zip", "empty"])
def test_a_file_that_is_no_mcap_is_named_for_what_it_is_by_play_bag_and_offline(ros_env, tmp_path, name, content,
                                                                                expected):
    """rosbag2's sqlite3 bag, another file's bytes or an empty file: play_bag said "not a complete MCAP
    file (InvalidMagic: not a valid MCAP file, invalid magic: (83, 81, 76, ...)); was it cut short or its
    recorder killed?", and the offline CLI opened a .db3 as a video ("OpenCV cannot open the video").
    Each says what the file is, in one line, exit 2; offline writes nothing."""
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    for tool, args in (("cfi_pose_ros.node.play_bag", ["--wait-for-subscribers", "0"]),
                       ("cfi_pose_ros.offline", ["--out", str(out), "--quiet", "--no-video"])):
        run = subprocess.run([sys.executable, "-P", "-m", tool, str(path), *args], env=ros_env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().splitlines()[-1] == f"{tool.split('.')[-1]}: error: {path}: {expected}" + (
            " (convert it with `ros2 bag convert` to storage mcap, or record with -s mcap)" if name.endswith(".db3")
            else ""), run.stderr
    assert not out.exists() or not any(out.iterdir())


def test_play_bag_names_a_bag_topic_that_is_no_ros_topic_name_as_the_bag_s(ros_env, tmp_path):
    """A bag of another recorder with a topic "/cam 1" (a space): play_bag said "--remap /cam 1:=/cam 1:
    not a valid ROS topic name", a remap nobody gave. It names the bag's topic and the ways round it;
    with --remap to a valid name the bag plays."""
    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    bag = tmp_path / "spaced.mcap"
    with BagWriter(bag) as writer:
        for k in range(2):
            writer.write("/cam 1", HumanKeypoints2DArray(), log_time_ns=10**9 + k)
    play = [sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--wait-for-subscribers", "0"]
    player = subprocess.run(play, env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    line = player.stderr.strip().splitlines()[-1]
    assert line.startswith("play_bag: error: the bag's topic '/cam 1' is not a valid ROS topic name ("), line
    assert line.endswith("): publish it under one with --remap, or leave it out with --topics") and "--remap /cam" not in line
    player = subprocess.run(play + ["--remap", "/cam 1:=/cam_1"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 0 and player.stdout.startswith("published 2 messages"), player.stderr


@pytest.mark.parametrize("metadata, expected", [
    ("rosbag2_bagfile_information:\n  relative_file_paths: rec_0.mcap\n",
     "metadata.yaml: not rosbag2's metadata (TypeError: relative_file_paths is 'rec_0.mcap', not a list of file names)"),
    ("rosbag2_bagfile_information:\n\t- rec_0.mcap\n",
     "metadata.yaml: not rosbag2's metadata (ScannerError: while scanning for the next token found character '\\t' "
     "that cannot start any token"),
    ("rosbag2_bagfile_information:\n  relative_file_paths: [rec_0.mcap, rec_1.mcap]\n",
     "metadata.yaml lists rec_1.mcap, and {folder}/rec_1.mcap is not there"),
], ids=["paths_a_string", "not_yaml", "listed_file_missing"])
def test_a_recorded_folder_whose_metadata_is_wrong_is_one_line_that_says_how(ros_env, tmp_path, metadata, expected):
    """relative_file_paths given as one string was read character by character ("a ros2 bag record
    folder of r, e, c, _, 0, ., m, c, a, p: only MCAP files are read"); metadata.yaml that is not YAML
    gave play_bag an error of four lines (YAML's mark); a listed file not there was "[Errno 2] No such
    file or directory: '.../rec_1.mcap'", not saying who named it. Each is one line that says what is
    wrong, exit 2."""
    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    folder = tmp_path / "rec"
    folder.mkdir()
    with BagWriter(folder / "rec_0.mcap") as writer:
        writer.write("/human_keypoints_2d", HumanKeypoints2DArray(), log_time_ns=10**9)
    (folder / "metadata.yaml").write_text(metadata)
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(folder),
                             "--wait-for-subscribers", "0"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    lines = player.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"play_bag: error: {folder}/"), player.stderr
    assert expected.format(folder=folder) in lines[0], lines


def test_a_folder_of_mcap_files_without_metadata_is_named_so_by_play_bag_and_offline(ros_env, tmp_path):
    """A recording folder copied without its metadata.yaml: play_bag said "a directory, not an MCAP
    file", and offline took it for a folder of photos, "no images in [...]". Both name the MCAP files it
    holds and the ways on (one file, or ros2 bag reindex), one line, exit 2."""
    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    folder = tmp_path / "rec"
    for part in range(2):
        with BagWriter(folder / f"rec_{part}.mcap") as writer:
            writer.write("/human_keypoints_2d", HumanKeypoints2DArray(), log_time_ns=10**9 + part)
    expected = (f"{folder}: a folder of MCAP files (rec_0.mcap, rec_1.mcap) without the metadata.yaml of ros2 bag "
                "record: give one MCAP file, or write the folder's metadata.yaml with `ros2 bag reindex`")
    for tool, args in (("cfi_pose_ros.node.play_bag", ["--wait-for-subscribers", "0"]),
                       ("cfi_pose_ros.offline", ["--out", str(tmp_path / "out"), "--quiet", "--no-video"])):
        run = subprocess.run([sys.executable, "-P", "-m", tool, str(folder), *args], env=ros_env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().splitlines()[-1] == f"{tool.split('.')[-1]}: error: {expected}", run.stderr


@pytest.mark.parametrize("encoding, schema", [("json", True), ("cdr", False)], ids=["json", "no_schema"])
def test_a_topic_with_no_ros2_channel_is_named_so_by_play_bag_and_offline(ros_env, tmp_path, encoding, schema):
    """A topic recorded as json, or as cdr with no schema: play_bag --topics named it "not a ROS message
    type name: ''" (no topic, no bag) or waited for its subscribers and then said "no messages on
    [...]" (it held 3); offline's --keypoints-topic said it "holds , not ...". Each names the topic and
    why it holds nothing to publish or lift, one line, exit 2."""
    from mcap.writer import Writer
    from rclpy.serialization import serialize_message

    from cfi_pose_ros.bag import message_definition
    from cfi_pose_ros.msg import HumanKeypoints2DArray

    bag = tmp_path / "foreign.mcap"
    with open(bag, "wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="test")
        name = "cfi_pose_ros/msg/HumanKeypoints2DArray"
        schema_id = writer.register_schema(name=name, encoding="ros2msg", data=message_definition(name).encode()) \
            if schema else 0
        channel = writer.register_channel(topic="/human_keypoints_2d", message_encoding=encoding, schema_id=schema_id)
        for k in range(3):
            writer.add_message(channel_id=channel, log_time=10**9 + k, publish_time=10**9 + k,
                               data=serialize_message(HumanKeypoints2DArray()))
        writer.finish()
    player = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.node.play_bag", str(bag), "--topics",
                             "/human_keypoints_2d", "--wait-for-subscribers", "0"], env=ros_env, capture_output=True,
                            text=True, timeout=60)
    assert player.returncode == 2 and "Traceback" not in player.stderr, player.stderr
    assert player.stderr.strip().splitlines() == [
        f"play_bag: error: {bag}: /human_keypoints_2d holds no ROS 2 messages (no channel of cdr messages with a "
        "schema): nothing to publish"], player.stderr
    if not schema:
        lifter = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(bag), "--keypoints-topic",
                                 "/human_keypoints_2d", "--out", str(tmp_path / "out"), "--quiet", "--no-video"],
                                env=ros_env, capture_output=True, text=True, timeout=120)
        assert lifter.returncode == 2 and lifter.stderr.strip().splitlines()[-1] == (
            "offline: error: --keypoints-topic /human_keypoints_2d holds messages of no schema (their type unknown), "
            "not cfi_pose_ros/msg/HumanKeypoints2DArray"), lifter.stderr
