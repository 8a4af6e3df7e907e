"""The offline CLI (``python -m cfi_pose_ros.offline``) on bad inputs and awkward bags: a bad file,
path or setting is one line and exit 2 (argparse's own errors too), never a traceback; a bag
whose stamps repeat or whose other topics span longer still gives one video frame per lifted frame
at the frame topic's rate."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ros_available

pytestmark = [pytest.mark.ros, pytest.mark.skipif(ros_available() is not None, reason=str(ros_available()))]

if ros_available() is None:
    from cfi_pose_ros.bag import BagWriter
    from cfi_pose_ros.node.replay import Clip, camera_info_msg, keypoints_msg
    from cfi_pose_ros.offline import main as offline

FRAME = "offline_camera_optical_frame"
PERIOD_NS = 100_000_000          # 10 Hz


def _bag(path, stamps, extra_span_s: float = 0.0):
    """CameraInfo then one keypoints frame per stamp (log times 10 Hz apart); with ``extra_span_s`` a
    /diagnostics message that long after stretches the bag but not the frames."""
    from diagnostic_msgs.msg import DiagnosticArray

    clip = Clip.load()
    start = 10**9 * 100
    with BagWriter(path) as writer:
        writer.write("/camera_info", camera_info_msg(clip.camera_matrix, clip.image_size, FRAME), start - PERIOD_NS)
        for k, stamp in enumerate(stamps):
            msg = keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size, clip.layout, FRAME, stamp)
            writer.write("/human_keypoints_2d", msg, start + k * PERIOD_NS)
        if extra_span_s:
            writer.write("/diagnostics", DiagnosticArray(), start + int(extra_span_s * 1e9))
    return path


def _raw_bag(path, messages, empty_channels=()):
    """An MCAP bag, written as other recorders may write one: ``messages`` are (topic, message encoding,
    ROS type, bytes, log time ns), one channel per topic and encoding; ``empty_channels`` (topic, ROS
    type) are cdr channels with no message."""
    from mcap.writer import CompressionType, Writer

    from cfi_pose_ros.bag import message_definition

    schemas, channels = {}, {}

    def channel(topic, encoding, ros_type):
        if ros_type not in schemas:
            schemas[ros_type] = writer.register_schema(name=ros_type, encoding="ros2msg",
                                                       data=message_definition(ros_type).encode())
        if (topic, encoding) not in channels:
            channels[topic, encoding] = writer.register_channel(topic=topic, message_encoding=encoding,
                                                                schema_id=schemas[ros_type])
        return channels[topic, encoding]

    with open(path, "wb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="test")
        for topic, ros_type in empty_channels:
            channel(topic, "cdr", ros_type)
        for topic, encoding, ros_type, data, log_time in messages:
            writer.add_message(channel_id=channel(topic, encoding, ros_type), log_time=log_time,
                               publish_time=log_time, data=data)
        writer.finish()
    return path


def _corrupt_chunk(bag, path):
    """``bag`` with its (zstd) chunk's frame magic zeroed: the summary at the end still reads."""
    data = bag.read_bytes()
    frame = data.index(b"\x28\xb5\x2f\xfd")
    path.write_bytes(data[:frame] + bytes(4) + data[frame + 4:])
    return path


def _video_frames_and_fps(path) -> tuple[int, float]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames, fps = 0, capture.get(cv2.CAP_PROP_FPS)
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, fps


def test_repeated_stamps_and_a_longer_bag_give_one_video_frame_per_lifted_frame(tmp_path, capsys):
    """Frames were matched to the video by stamp (ten frames stamped 0 became one video frame) and the
    rate came from the whole bag's span (a 1 Hz topic over 20 s made a 10 Hz clip play 20x slow)."""
    import json

    bag = _bag(tmp_path / "zero_stamps.mcap", [0] * 10, extra_span_s=20.0)
    assert offline([str(bag), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 10 and summary["video"]
    if summary["video"].endswith(".mp4"):
        frames, fps = _video_frames_and_fps(summary["video"])
        assert frames == 10 and fps == pytest.approx(10.0, rel=0.05)


def test_an_uncalibrated_camera_info_still_gives_a_zero_size_frame_its_size(tmp_path):
    """K zeroed (CameraInfo.msg: uncalibrated) with the image's width and height, keypoints with image
    size 0: lifted root-relative at the CameraInfo's size, as the node does (both dropped them)."""
    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.msg import HumanPose3D

    clip = Clip.load()
    start = 10**9 * 100
    with BagWriter(tmp_path / "uncalibrated.mcap") as writer:
        writer.write("/camera_info", camera_info_msg(np.zeros((3, 3)), clip.image_size, FRAME), start - PERIOD_NS)
        for k in range(2):
            msg = keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, (0, 0), clip.layout, FRAME,
                                start + k * PERIOD_NS)
            writer.write("/human_keypoints_2d", msg, start + k * PERIOD_NS)
    assert offline([str(tmp_path / "uncalibrated.mcap"), "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 0
    poses = [m.decode() for m in read_bag(tmp_path / "out" / "lifted.mcap", ["/human_pose_3d"])]
    assert len(poses) == 2 and all(len(p.humans) == 2 for p in poses)
    assert all(h.root_source == HumanPose3D.ROOT_RELATIVE for p in poses for h in p.humans)


def test_two_cameras_in_one_bag_are_each_placed_with_their_own_camera_info(tmp_path):
    """Two cameras' keypoints on one topic, their CameraInfo on one topic, each CameraInfo before the
    other camera's keypoints: as the node (test_lift_node.py -k each_placed_with_their_own_camera_info),
    each camera's people are placed with its own K, where the newest CameraInfo alone placed the
    first camera's never (root-relative, bad_camera_info)."""
    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.msg import HumanPose3D

    clip = Clip.load()
    start = 10**9 * 100
    cameras = {"cam_left": 1.0, "cam_right": 2.0}
    with BagWriter(tmp_path / "two.mcap") as writer:
        for k in range(2):
            t = start + k * PERIOD_NS
            for camera, f in cameras.items():
                writer.write("/camera_info", camera_info_msg(clip.camera_matrix * [[f], [f], [1.0]], clip.image_size,
                                                             camera), t)
            for j, camera in enumerate(cameras):
                msg = keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size, clip.layout, camera,
                                    t + j)
                writer.write("/human_keypoints_2d", msg, t + 1 + j)
    assert offline([str(tmp_path / "two.mcap"), "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 0
    poses = [m.decode() for m in read_bag(tmp_path / "out" / "lifted.mcap", ["/human_pose_3d"])]
    assert sorted(p.header.frame_id for p in poses) == ["cam_left", "cam_left", "cam_right", "cam_right"]
    for pose in poses:
        assert [h.root_source for h in pose.humans] == [HumanPose3D.ROOT_FROM_INTRINSICS] * 2, pose.header
        k = (pose.header.stamp.sec * 10**9 + pose.header.stamp.nanosec - start) // PERIOD_NS
        f = cameras[pose.header.frame_id]
        for human, truth in zip(pose.humans, clip.truth_camera_m[k], strict=True):
            assert abs(human.body_pose.position.z - f * truth[0, 2]) < 0.5 * f


def test_a_folder_of_ros2_bag_record_split_in_two_is_lifted_as_one_bag(tmp_path):
    """offline took the folder `ros2 bag record` writes for one of photos ("no images in [...]")."""
    import json

    from cfi_pose_ros.bag import read_bag

    whole = _bag(tmp_path / "whole.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(8)])
    folder = tmp_path / "recorded"
    folder.mkdir()
    messages = list(read_bag(whole))
    for part, chunk in enumerate((messages[:4], messages[4:])):      # split as rosbag2 splits, by time
        with BagWriter(folder / f"recorded_{part}.mcap") as writer:
            for m in chunk:
                writer.write_serialized(m.topic, m.type_name, m.data, m.log_time_ns)
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  relative_file_paths:\n"
                                          "    - recorded_0.mcap\n    - recorded_1.mcap\n")
    out = tmp_path / "out"
    assert offline([str(folder), "--out", str(out), "--quiet", "--no-video"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["people"] == 16 and summary["dropped"] == {}, summary


@pytest.mark.parametrize("problem, expected", [
    ("missing_bag", "nowhere.mcap: no such file"),
    ("truncated_bag", "not a complete MCAP file"),
    ("not_a_clip", "not a clip in the bundled format"),
    ("bad_params_file_value", "parameter max_people=-5 for cfi_pose_lifter: out of range"),
    ("wrong_topic_type", "holds sensor_msgs/msg/CameraInfo"),
    ("corrupt_chunk", "corrupt MCAP data after 0 messages (ZstdError"),      # was zstandard's traceback
    # params files rcl refuses to parse: AttributeError and TypeError tracebacks before
    ("params_file_of_a_list", "not a ROS 2 parameters file (a mapping of node names to ros__parameters), but a list"),
    ("params_section_of_a_string", "/** holds 'hello', not ros__parameters"),
    ("params_of_a_list", "the ros__parameters of /cfi_pose_lifter are [1, 2], not name: value pairs"),
])
def test_a_bad_input_is_one_line_and_exit_2(tmp_path, capsys, problem, expected):
    good = _bag(tmp_path / "good.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    args = {"missing_bag": [str(tmp_path / "nowhere.mcap")],
            "truncated_bag": [str(tmp_path / "cut.mcap")],
            "not_a_clip": [str(tmp_path / "other.npz")],
            "bad_params_file_value": [str(good), "--params-file", str(tmp_path / "lift.yaml")],
            "wrong_topic_type": [str(good), "--keypoints-topic", "/camera_info"],
            "corrupt_chunk": [str(_corrupt_chunk(good, tmp_path / "corrupt.mcap"))],
            "params_file_of_a_list": [str(good), "--params-file", str(tmp_path / "list.yaml")],
            "params_section_of_a_string": [str(good), "--params-file", str(tmp_path / "string.yaml")],
            "params_of_a_list": [str(good), "--params-file", str(tmp_path / "params_list.yaml")]}[problem]
    (tmp_path / "cut.mcap").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    (tmp_path / "lift.yaml").write_text("/**:\n  ros__parameters:\n    max_people: -5\n")
    (tmp_path / "list.yaml").write_text("- max_people\n- 5\n")
    (tmp_path / "string.yaml").write_text("/**: hello\n")
    (tmp_path / "params_list.yaml").write_text("cfi_pose_lifter:\n  ros__parameters: [1, 2]\n")
    assert offline(args + ["--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and err[-1].startswith("offline: error: ") and expected in err[-1], err


@pytest.mark.parametrize("inputs, expected", [
    (["a.mcap", "b.mcap"], "a.mcap: a bag is lifted alone (one bag, clip or video a run); several inputs are photos"),
    (["photo.png", "clip.npz"], "clip.npz: a clip is lifted alone"),
    (["photo.png", "walk.mp4"], "walk.mp4: no photo's name (.bmp .jpeg .jpg .png .tif .tiff .webp), and a video is "
                                "lifted alone"),
])
def test_several_inputs_that_are_not_all_photos_are_refused_naming_the_one_that_is_not(tmp_path, capsys, inputs,
                                                                                      expected):
    """Every file of several inputs was taken for a photo: two bags (a bag split in two) were "2 photos:
    images need a 2D detector", and with the detector's models each would be an unreadable photo."""
    import cv2

    _bag(tmp_path / "a.mcap", [10**9 * 100])
    _bag(tmp_path / "b.mcap", [10**9 * 100])
    cv2.imwrite(str(tmp_path / "photo.png"), np.full((40, 60, 3), 128, np.uint8))
    np.savez(tmp_path / "clip.npz", something=np.zeros(3))
    (tmp_path / "walk.mp4").write_bytes(b"not decoded")
    assert offline([str(tmp_path / name) for name in inputs] + ["--out", str(tmp_path / "out"), "--quiet",
                                                                "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"offline: error: {tmp_path}/{expected}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out, expected", [
    ("a_file", "a_file: a file, not a folder"),
    ("a_file/sub", "a_file/sub: cannot make it (Not a directory)"),
    # found after the whole pass, "[Errno 21] Is a directory", the bag written and no summary
    ("taken", "taken: {tmp_path}/taken/summary.json is a directory, where a run writes its summary.json; move it "
              "or choose another --out"),
])
def test_an_out_that_cannot_be_a_folder_is_named_as_the_out_flag(tmp_path, capsys, out, expected):
    """It was the bare OSError, "[Errno 17] File exists: '.../a_file'", naming neither --out nor why."""
    (tmp_path / "a_file").write_text("mine\n")
    (tmp_path / "taken" / "summary.json").mkdir(parents=True)
    bag = _bag(tmp_path / "in.mcap", [10**9 * 100])
    assert offline([str(bag), "--out", str(tmp_path / out), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"offline: error: --out {tmp_path}/{expected.format(tmp_path=tmp_path)}", err
    assert (tmp_path / "a_file").read_text() == "mine\n" and not (tmp_path / "taken" / "lifted.mcap").exists()


@pytest.mark.parametrize("flags, expected", [
    ([], "images need a 2D detector, and --person-detector-model and --keypoint-model are not given"),
    (["--person-detector-model", "det.onnx"], "and --keypoint-model is not given"),
])
def test_images_without_the_detector_s_models_are_refused_naming_the_flags(tmp_path, capsys, flags, expected):
    """Photos, a video or an image bag without models loaded the lifter, then failed with
    "RTMDetConfig.model_path is empty", which names no flag."""
    import cv2

    cv2.imwrite(str(tmp_path / "photo.png"), np.full((40, 60, 3), 128, np.uint8))
    assert offline([str(tmp_path / "photo.png"), "--hfov", "60", *flags, "--out", str(tmp_path / "out"),
                    "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("offline: error: ") and expected in err[-1], err
    assert "lifter" not in "\n".join(err[:-1])          # refused before the lifter loaded


def test_lifting_an_output_again_into_the_same_out_is_refused_before_the_input_is_overwritten(tmp_path, capsys):
    """out/lifted.mcap lifted again with --out out: the bag writer truncated the input before it was
    read (303 kB became 321 bytes) and the run failed with 'EndOfFile': the recording was gone."""
    bag = _bag(tmp_path / "good.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--quiet", "--no-video"]) == 0
    lifted = (out / "lifted.mcap").read_bytes()
    capsys.readouterr()
    for again in (out / "lifted.mcap", tmp_path / "out" / ".." / "out" / "lifted.mcap"):
        assert offline([str(again), "--out", str(out), "--quiet", "--no-video"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"offline: error: --out {out} would overwrite the input {again} with its "
                           "lifted.mcap: choose another --out"), err
        assert (out / "lifted.mcap").read_bytes() == lifted


def test_a_failed_run_leaves_no_earlier_run_s_summary_or_video_to_read_as_its_own(tmp_path, capsys):
    """A run that failed or was interrupted left the previous run's summary.json (150 frames) and
    video beside its own partial outputs. Each run starts by removing them; the summary is written
    last, and the video is written as lifted.partial.mp4 and renamed only when whole."""
    bag = _bag(tmp_path / "good.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(5)])
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--quiet"]) == 0
    assert (out / "summary.json").is_file() and (out / "lifted.mp4").is_file()
    assert sorted(path.name for path in out.iterdir()) == ["lifted.mcap", "lifted.mp4", "summary.json"]
    assert offline([str(_corrupt_chunk(bag, tmp_path / "bad.mcap")), "--out", str(out), "--quiet"]) == 2
    assert "corrupt MCAP data" in capsys.readouterr().err
    assert not (out / "summary.json").exists() and not (out / "lifted.mp4").exists()


def test_a_video_is_under_its_own_name_only_once_it_is_whole(tmp_path):
    from cfi_pose_ros.offline import VideoOut

    video = VideoOut(tmp_path / "lifted", 10.0)
    for k in range(5):
        video.add(np.full((48, 64, 3), 40 * k, np.uint8))
    assert [path.name for path in tmp_path.iterdir()] == ["lifted.partial.mp4"]
    assert video.close() == tmp_path / "lifted.mp4"
    assert [path.name for path in tmp_path.iterdir()] == ["lifted.mp4"]
    assert _video_frames_and_fps(tmp_path / "lifted.mp4") == (5, 10.0)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGINT twice"])
def test_sigterm_in_the_middle_of_a_pass_leaves_a_closed_readable_bag(ros_env, tmp_path, stop):
    """SIGTERM (systemd, docker stop, timeout) killed the pass outright: the bag had no summary, and
    none of what had been lifted could be read back ('not a complete MCAP file'). Now as Ctrl-C. And
    either, landing inside rclpy's deserializer, came out as pybind11's TypeError (exit 1): now both
    stop the pass between frames. A second Ctrl-C while the pass ended (a user's impatience) gave
    exit -2 after "offline: interrupted", and one inside the bag's closing would leave it unreadable."""
    import signal
    import subprocess
    import sys
    import time

    from cfi_pose_ros.bag import read_bag

    frames = 3000
    bag = _bag(tmp_path / "long.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(150)])
    with BagWriter(tmp_path / "longer.mcap") as writer:       # the 150 frames 20 times over
        for message in read_bag(bag):
            copies = 1 if message.topic == "/camera_info" else frames // 150
            for k in range(copies):
                writer.write_serialized(message.topic, message.type_name, message.data,
                                        message.log_time_ns + k * 150 * PERIOD_NS)
    out = tmp_path / "out"
    lifter = subprocess.Popen([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(tmp_path / "longer.mcap"),
                               "--out", str(out), "--quiet", "--no-video"], env=ros_env,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "lifted.mcap").exists() and lifter.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)                                          # lifting, well before the end
    signum = getattr(signal, stop.split()[0])
    lifter.send_signal(signum)
    if stop.endswith("twice"):
        for _ in range(10):                                  # the first may still be pending, the pass ending
            time.sleep(0.01)
            lifter.send_signal(signum)
    err = lifter.communicate(timeout=60)[1]
    assert lifter.returncode == 128 + signum and err.strip().splitlines()[-1] == "offline: interrupted", err
    poses = sum(1 for _ in read_bag(out / "lifted.mcap", ["/human_pose_3d"]))
    assert 0 < poses < frames


def _avi_stating(path, scale: int, rate: int, frames: int = 25):
    """An MJPG .avi of ``frames`` grey frames whose stream header states ``rate / scale`` frames per second."""
    import struct

    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    struct.pack_into("<II", data, data.index(b"strh") + 28, scale, rate)     # dwScale, dwRate
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("scale, rate, fps", [
    (1, 10, 10.0),
    (10**9, 1, 30.0),         # 1e-9 fps: frame 3 past ROS time's int32 seconds, frame 19 a struct.error traceback
    (1, 2**31 - 1, 30.0),     # every frame stamped 0
])
def test_a_video_stating_no_cameras_frame_rate_is_stamped_at_30_fps(tmp_path, capsys, scale, rate, fps):
    from cfi_pose_ros.offline import video_source

    source = video_source(_avi_stating(tmp_path / "stated.avi", scale, rate))
    stamps = [item.log_time_ns for item in source.items(False) if item.image is not None]
    assert source.fps == pytest.approx(fps) and len(stamps) == 25
    assert stamps == [round(1e9 / fps) * (k + 1) for k in range(25)] and stamps[-1] < 2**31 * 10**9
    assert ("no camera's: stamping its frames at 30" in capsys.readouterr().err) == (fps == 30.0)


@pytest.mark.parametrize("problem, flags, expected", [
    # a bag of images and no CameraInfo lifted root-relative, as if the intrinsics had not been given
    ("bag", ["--intrinsics", "600", "600", "320", "240"], "--intrinsics: for videos and photos; a bag's camera is "
                                                           "its CameraInfo topic"),
    ("clip", ["--hfov", "60"], "--hfov: for videos and photos; a clip's camera is the one it holds"),
    ("photo", ["--image-topic", "/camera/image_raw", "--depth-topic", "/depth"],
     "--image-topic and --depth-topic: for an .mcap bag"),
])
def test_a_flag_the_input_has_no_use_for_is_refused_not_dropped(tmp_path, capsys, problem, flags, expected):
    from cfi_pose_ros.node.replay import DEFAULT_CLIP

    (tmp_path / "photo.jpg").write_bytes(b"not read")
    path = {"bag": lambda: _bag(tmp_path / "good.mcap", [10**9 * 100]), "clip": lambda: DEFAULT_CLIP,
            "photo": lambda: tmp_path / "photo.jpg"}[problem]()
    assert offline([str(path), *flags, "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("offline: error: ") and expected in err[-1], err
    assert not (tmp_path / "out").exists()


def _mp4_with_frame_durations(path, durations):
    """``path`` (an .mp4 as OpenCV writes it, its moov box last) with its frames' durations, in the
    track's time units, set to ``durations``: a variable frame rate, as phones record."""
    import struct

    data = bytearray(path.read_bytes())
    offset, boxes = 0, []
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"):
        while data[offset + 4:offset + 8] != name:                # siblings before it
            offset += struct.unpack_from(">I", data, offset)[0]
        boxes.append(offset)
        offset += 8                                               # into its children
    stts = boxes.pop()
    size = struct.unpack_from(">I", data, stts)[0]
    entries = b"".join(struct.pack(">II", 1, duration) for duration in durations)
    box = struct.pack(">I4s4sI", 16 + len(entries), b"stts", bytes(4), len(durations)) + entries
    for parent in boxes:
        struct.pack_into(">I", data, parent, struct.unpack_from(">I", data, parent)[0] + len(box) - size)
    data[stts:stts + size] = box
    path.write_bytes(bytes(data))
    return path


def test_a_variable_frame_rate_video_is_stamped_at_its_frames_own_times(tmp_path):
    """A phone's video is often variable-rate: frames were stamped at the average rate (10 Hz frames
    around a 2.2 s pause came out 0.33 s apart, the pause gone; here 20 Hz around a 0.55 s pause came
    out 0.1 s apart), so the bag's times and anything timed from them (tracking, smoothing) were not
    the video's."""
    import cv2

    from cfi_pose_ros.offline import video_source

    path = tmp_path / "phone.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MP4 here")
    for _ in range(10):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    # 20 Hz, a 0.55 s pause, 20 Hz: the same 1 s in all (the track's stated duration), on average 10 fps
    timescale = 10240                                                         # OpenCV's, at 10 fps
    _mp4_with_frame_durations(path, [timescale // 20] * 5 + [timescale * 55 // 100] + [timescale // 20] * 4)
    stamps = [item.log_time_ns for item in video_source(path).items(False) if item.image is not None]
    assert np.diff(stamps) * 1e-9 == pytest.approx([0.05] * 5 + [0.55] + [0.05] * 3, abs=1e-3)


def test_a_bag_or_clip_named_in_capitals_is_read_as_one(tmp_path, capsys):
    """RUN.MCAP and CLIP.NPZ were opened as videos: 'OpenCV cannot open the video', exit 2."""
    from cfi_pose_ros.node.replay import DEFAULT_CLIP

    bag = _bag(tmp_path / "RUN.MCAP", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    (tmp_path / "CLIP.NPZ").write_bytes(DEFAULT_CLIP.read_bytes())
    assert offline([str(bag), "--out", str(tmp_path / "bag"), "--quiet", "--no-video"]) == 0
    assert offline([str(tmp_path / "CLIP.NPZ"), "--out", str(tmp_path / "clip"), "--quiet", "--no-video"]) == 0
    assert "OpenCV" not in capsys.readouterr().err


def _clip_file(path, **changes):
    """The demo clip's arrays with ``changes`` (None: left out), as an .npz at ``path``."""
    from cfi_pose_ros.node.replay import DEFAULT_CLIP

    with np.load(DEFAULT_CLIP) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(path, **{name: array for name, array in {**arrays, **changes}.items() if array is not None})
    return path


def _npy_stating(shape) -> bytes:
    """A .npy file that states ``shape`` float64 values and holds none of them."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("problem, expected", [
    # each was a traceback (exit 1): SystemError, IndexError, TypeError, EOFError, AttributeError, MemoryError
    ("negative_image_size", "image_size [-5, 480] is no image size in pixels"),
    ("scores_of_fewer_frames", "scores has shape (3, 2, 17), expected (150, 2, 17)"),
    ("pixels_of_one_axis", "pixels has shape (5,), expected (frames, people, 17, 2)"),
    ("empty_file", "empty file"),
    ("single_array", "a single array, not an .npz archive"),
    ("array_stating_2e40_values", "an array states more data than the file holds"),
    ("complex_pixels", "pixels holds complex128"),                     # the imaginary parts were dropped
    # a 52 kB clip of 500,000 people took 30 s and 2.4 GB, every one of them then dropped
    ("people_past_the_lifter_s_most", "pixels has 100000 people a frame, more than the lifter lifts in one (1024)"),
    ("ids_of_a_megabyte", "ids hold strings of up to 1000000 characters, more than 256"),
    # "0 frames", exit 1 and a summary.json, with the model loaded first
    ("no_frames", "pixels has shape (0, 2, 17, 2): no frame"),
])
def test_a_clip_that_is_no_clip_is_one_line_and_exit_2(tmp_path, capsys, problem, expected):
    import zipfile

    path = tmp_path / f"{problem}.npz"
    clip = Clip.load()
    if problem == "negative_image_size":
        _clip_file(path, image_size=np.array([-5, 480]))
    elif problem == "scores_of_fewer_frames":
        _clip_file(path, scores=clip.scores[:3])
    elif problem == "pixels_of_one_axis":
        _clip_file(path, pixels=np.zeros(5))
    elif problem == "empty_file":
        path.write_bytes(b"")
    elif problem == "single_array":
        with open(path, "wb") as f:
            np.save(f, clip.pixels)
    elif problem == "array_stating_2e40_values":
        with zipfile.ZipFile(_clip_file(path, pixels=None), "a") as archive:
            archive.writestr("pixels.npy", _npy_stating((2**40, 2, 17, 2)))
    elif problem == "complex_pixels":
        _clip_file(path, pixels=clip.pixels.astype(complex))
    elif problem == "people_past_the_lifter_s_most":
        many = 100_000
        np.savez_compressed(path, pixels=np.zeros((1, many, 17, 2), np.int8), scores=np.zeros((1, many, 17), np.int8),
                            truth_camera_m=np.zeros((1, many, 17, 3), np.int8), ids=np.zeros(many, np.int8),
                            camera_matrix=clip.camera_matrix, image_size=np.array(clip.image_size),
                            layout=np.array(clip.layout))
        assert path.stat().st_size < 1 << 20
    elif problem == "ids_of_a_megabyte":
        _clip_file(path, ids=np.array(["a" * 1_000_000, "b"]))
    elif problem == "no_frames":
        _clip_file(path, pixels=clip.pixels[:0], scores=clip.scores[:0], truth_camera_m=clip.truth_camera_m[:0])
    assert offline([str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and err[-1].startswith(f"offline: error: {path}: not a clip"), err
    assert expected in err[-1], err
    assert not (tmp_path / "out").exists()


def test_a_clip_stating_more_than_a_clip_holds_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    """An archive of a few MB states gigabytes of zeros (deflated): np.load read them all (a 3 MB file
    took 3.6 GB) before anything was checked. The sizes the archive states are checked first."""
    import cfi_pose_ros.node.replay as replay

    monkeypatch.setattr(replay, "MAX_CLIP_BYTES", 1 << 20)
    frames = 3000                                                        # 2.7 MB of float64 zeros
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, pixels=np.zeros((frames, 2, 17, 2)), scores=np.zeros((frames, 2, 17)),
                        truth_camera_m=np.zeros((frames, 2, 17, 3)), ids=np.array(["a", "b"]),
                        camera_matrix=np.eye(3), image_size=np.array([640, 480]), layout=np.array("h36m_17"))
    assert path.stat().st_size < 1 << 20
    assert offline([str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"offline: error: {path}: not a clip") and "more than a clip's 1048576" in err[-1], err


PARAMS_FILE = """\
/**:
  ros__parameters:
    max_people: 7
    min_keypoint_score: 2e-1
    use_sim_time: true
cfi_pose_lifter:
  ros__parameters:
    publish_markers: false
    max_people: 3
/**/cfi_pose_lifter:
  ros__parameters:
    marker_lifetime: 0.5
/*/cfi_pose_lifter:
  ros__parameters:
    max_people: 100
cfi_pose_detector:
  ros__parameters:
    max_people: 200
/*:
  ros__parameters:
    flip_test: true
    qos_overrides:
      /human_pose_3d:
        publisher:
          depth: 5
"""


def test_a_params_file_gives_the_offline_cli_what_rclpy_gives_the_node(tmp_path, capsys):
    """Only the first matching section was read (cfi_pose_lifter before /**, so this file's /** values
    were lost, and in another order the node's own section was), 2e-1 was a string, and rclpy's own
    use_sim_time (set for bags played with --clock) was refused as an unknown parameter."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from cfi_pose_ros.params_file import RCLPY_PARAMETERS, read_params_file

    path = tmp_path / "lift.yaml"
    path.write_text(PARAMS_FILE)
    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node = Node("cfi_pose_lifter", context=context, automatically_declare_parameters_from_overrides=True)
        given = {name: p.value for name, p in node.get_parameters_by_prefix("").items()
                 if name.split(".")[0] not in RCLPY_PARAMETERS}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert given == {"max_people": 3, "min_keypoint_score": 0.2, "publish_markers": False, "marker_lifetime": 0.5,
                     "flip_test": True}
    assert read_params_file(path, "cfi_pose_lifter") == given
    good = _bag(tmp_path / "good.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    assert offline([str(good), "--params-file", str(path), "--out", str(tmp_path / "out"), "--quiet",
                    "--no-video"]) == 0, capsys.readouterr().err



def test_a_params_file_for_both_nodes_is_taken_as_the_nodes_take_it(tmp_path, capsys):
    """A /** section may hold both nodes' parameters: each node starts on it (a WARN naming the other
    node's), and the same file as --params-file and --detect-params-file was refused,
    "unknown parameter(s) ['image_topic'] for cfi_pose_lifter", exit 2. A name neither node has
    is still refused."""
    import json

    path = tmp_path / "both.yaml"
    path.write_text("/**:\n  ros__parameters:\n    max_people: 1\n    image_topic: /cam/image_raw\n"
                    "    person_score_threshold: 0.5\n")
    bag = _bag(tmp_path / "in.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    assert offline([str(bag), "--params-file", str(path), "--detect-params-file", str(path),
                    "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 0
    err = capsys.readouterr().err
    assert "cfi_pose_lifter has no parameter image_topic, person_score_threshold (another node's): ignored" in err
    assert "cfi_pose_detector has no parameter" not in err          # max_people is both nodes'
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["people"] == 3        # max_people: 1 reached the lifter
    path.write_text("/**:\n  ros__parameters:\n    max_poeple: 1\n")
    assert offline([str(bag), "--params-file", str(path), "--out", str(tmp_path / "out2"), "--quiet",
                    "--no-video"]) == 2
    assert "unknown parameter(s) ['max_poeple'] for cfi_pose_lifter" in capsys.readouterr().err


def _rclpy_parameters(path, node_name: str, namespace: str = "") -> dict:
    """What rclpy gives the node ``namespace/node_name`` from the parameters file ``path``."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from cfi_pose_ros.params_file import RCLPY_PARAMETERS

    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node = Node(node_name, namespace=namespace or None, context=context,
                    automatically_declare_parameters_from_overrides=True)
        given = {name: p.value for name, p in node.get_parameters_by_prefix("").items()
                 if name.split(".")[0] not in RCLPY_PARAMETERS}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return given


RCL_VALUES = ["-.5", "+.5e1", "y", "N", "~", "null", "inf", "-Infinity", "0x1p3", "08", "1_000", "0b101", "012",
              "0x1F", "1.", "[-.5, 1.0]", "[y, n]", "'-.5'", '"y"']


def test_values_of_a_params_file_are_typed_as_rcl_types_them(tmp_path):
    """rcl reads an unquoted value as a bool (its words: y and N too), else an int (strtoll: 0x1F,
    012 octal), else a double (strtod: -.5, inf, 0x1p3, 08), else a string; YAML 1.1 (PyYAML) made
    -.5 and inf strings, y a string, ~ a None, 1_000 and 0b101 ints."""
    from cfi_pose_ros.params_file import read_params_file

    path = tmp_path / "values.yaml"
    path.write_text("/**:\n  ros__parameters:\n" + "".join(f"    v{k}: {value}\n" for k, value in enumerate(RCL_VALUES))
                    + "    nested:\n      y: 1\n      on: 2\n")
    given = _rclpy_parameters(path, "cfi_pose_lifter")
    assert given["v0"] == -0.5 and given["v2"] is True and given["nested.y"] == 1, given
    assert read_params_file(path, "cfi_pose_lifter") == given


def test_sections_of_a_params_file_apply_as_rcl_applies_them(tmp_path):
    """A namespace may hold its own ros__parameters beside the nodes under it."""
    from cfi_pose_ros.params_file import read_params_file

    path = tmp_path / "sections.yaml"
    path.write_text("robot1:\n  ros__parameters: {a: 1, b: 1}\n  cfi_pose_lifter:\n    ros__parameters: {a: 2}\n")
    for namespace in ("", "/robot1"):
        given = _rclpy_parameters(path, "cfi_pose_lifter", namespace)
        assert read_params_file(path, f"{namespace.strip('/')}/cfi_pose_lifter".lstrip("/")) == given
    assert given == {"a": 2}
    assert read_params_file(path, "robot1") == _rclpy_parameters(path, "robot1") == {"a": 1, "b": 1}


def test_a_params_file_value_rcl_refuses_is_refused(tmp_path):
    """`weights:` without a value: rcl refuses the file (the node does not start), PyYAML read a None."""
    from cfi_pose_ros.params_file import read_params_file

    path = tmp_path / "empty.yaml"
    path.write_text("/**:\n  ros__parameters:\n    weights:\n")
    with pytest.raises(Exception):
        _rclpy_parameters(path, "cfi_pose_lifter")
    with pytest.raises(ValueError, match="weights"):
        read_params_file(path, "cfi_pose_lifter")


def test_a_params_file_alias_is_refused_as_rcl_refuses_it(tmp_path):
    """rcl refuses every YAML alias ("Will not support aliasing"); PyYAML expanded them, so nine lines
    of nested aliases flattened to 10**9 parameters (the offline CLI stopped at 40 s and 3.7 GB)."""
    from cfi_pose_ros.params_file import read_params_file

    path = tmp_path / "aliases.yaml"
    path.write_text("/**:\n  ros__parameters:\n    a: &x 5\n    b: *x\n")
    with pytest.raises(Exception, match="aliasing"):
        _rclpy_parameters(path, "cfi_pose_lifter")
    with pytest.raises(ValueError, match=f"{path}: .*aliasing"):
        read_params_file(path, "cfi_pose_lifter")
    anchor_only = tmp_path / "anchor.yaml"
    anchor_only.write_text("/**:\n  ros__parameters:\n    a: &x 5\n")
    assert read_params_file(anchor_only, "cfi_pose_lifter") == _rclpy_parameters(anchor_only, "cfi_pose_lifter")


def test_a_params_file_that_never_ends_is_one_line_and_exit_2(ros_env, tmp_path):
    """--params-file /dev/zero was read whole before it was parsed: the offline CLI took memory until
    a MemoryError traceback (3.4 GB in 3 s under a 4 GB cap; without a cap, all there is)."""
    import subprocess
    import sys

    probe = ("import resource, sys\n"
             "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
             "from cfi_pose_ros.offline import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    run = subprocess.run([sys.executable, "-P", "-c", probe, str(tmp_path / "clip.npz"), "--params-file", "/dev/zero",
                          "--out", str(tmp_path / "out"), "--quiet", "--no-video"],
                         env=ros_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    # refused before a byte is read since a FIFO hung there (see the test below)
    assert run.stderr.strip().splitlines()[-1] == \
        "offline: error: --params-file /dev/zero: a device or socket, not a parameters file", run.stderr


@pytest.mark.parametrize("flag", ["--params-file", "--detect-params-file"])
def test_a_params_file_that_is_a_fifo_is_one_line_and_exit_2(ros_env, tmp_path, flag):
    """--params-file naming a FIFO with no writer hung the offline CLI in open(), and one SIGTERM
    (timeout's) did not end it: it was only remembered for a first frame that never came."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "lift.yaml")
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(tmp_path / "clip.npz"), flag,
                          str(tmp_path / "lift.yaml"), "--out", str(tmp_path / "out"), "--quiet", "--no-video"],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == \
        f"offline: error: {flag} {tmp_path / 'lift.yaml'}: a FIFO, not a parameters file", run.stderr


@pytest.mark.parametrize("flag", ["--params-file", "--detect-params-file"])
def test_a_params_file_that_is_not_there_is_named_by_its_flag(tmp_path, capsys, flag):
    """It was Python's "[Errno 2] No such file or directory: '.../lift.yaml'", naming neither the
    option nor the problem in the tool's words."""
    from cfi_pose_ros.node.replay import DEFAULT_CLIP

    gone = tmp_path / "lift.yaml"
    assert offline([str(DEFAULT_CLIP), flag, str(gone), "--out", str(tmp_path / "out"), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"offline: error: {flag} {gone}: no such file", err


@pytest.mark.parametrize("out, before", [("new", ""), ("new/deeper/out", ""), ("there", "made"),
                                         ("there", "holds a file")])
def test_a_failed_run_removes_the_out_folders_it_made_and_left_empty_only(tmp_path, capsys, out, before):
    """--out is made before the models load: a --weights typo left it behind, empty (as the evaluation
    CLI no longer does). A folder that was there before, or that holds anything, stays as it was."""
    from cfi_pose_ros.node.replay import DEFAULT_CLIP

    work = tmp_path / "work"
    work.mkdir()
    if before:
        (work / out).mkdir()
    if before == "holds a file":
        (work / out / "notes.txt").write_text("mine")
    assert offline([str(DEFAULT_CLIP), "--weights", str(tmp_path / "gone.safetensors"), "--out", str(work / out),
                    "--quiet", "--no-video"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("offline: error: weights file missing: ")
    left = sorted(str(path.relative_to(work)) for path in work.rglob("*"))
    assert left == {"": [], "made": ["there"], "holds a file": ["there", "there/notes.txt"]}[before], left

@pytest.mark.parametrize("flags, expected", [
    (["--hfov", "0"], "--hfov must be"), (["--hfov", "180"], "--hfov must be"), (["--hfov", "nan"], "--hfov must be"),
    (["--intrinsics", "0", "0", "0", "0"], "focal lengths must be positive"),
    (["--intrinsics", "500", "nan", "1", "1"], "NaN or inf"),
    # finite but no camera's: people were placed 1e147 m away
    (["--intrinsics", "1e150", "1e150", "320", "240"], "no real camera's: focal lengths"),
    (["--intrinsics", "600", "600", "1e300", "240"], "no real camera's: principal point"),
    (["--target-from-camera", "0", "0", "0", "0", "0", "0", "1"], "--target-from-camera needs --target-frame"),
    # the lift node's target_frame check: a frame name no TF tree holds, or one of a megabyte
    (["--target-frame", "map ", "--target-from-camera", "0", "0", "0", "0", "0", "0", "1"], "no spaces"),
    (["--target-frame", "m" * 2 ** 20, "--target-from-camera", "0", "0", "0", "0", "0", "0", "1"], "at most 256"),
    (["--distortion", "-0.3", "0.1"], "--distortion needs --intrinsics or --hfov"),
    (["--hfov", "90", "--distortion", "-0.3", "nan"], "NaN or inf"),
    (["--hfov", "90", "--distortion", "1e30"], "no real lens"),
    (["--hfov", "90", "--distortion-model", "equidistant", "--distortion", "0.1", "0", "0", "0", "0.2"], "takes 4"),
])
def test_a_bad_setting_is_refused_before_anything_runs(tmp_path, capsys, flags, expected):
    """--hfov 180 used to place people 1e15 m away, labelled as placed from the intrinsics."""
    with pytest.raises(SystemExit) as exit_info:
        offline([str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_a_target_from_camera_of_all_zeros_is_refused_not_taken_as_none(tmp_path, capsys):
    """All zeros is the target_from_camera parameter's "not given": with --target-frame base the poses
    were stamped in base with the camera frame's coordinates, exit 0."""
    bag = _bag(tmp_path / "in.mcap", [10**9 * 100])
    with pytest.raises(SystemExit) as exit_info:
        offline([str(bag), "--out", str(tmp_path / "out"), "--quiet", "--no-video", "--target-frame", "base",
                 "--target-from-camera", "0", "0", "0", "0", "0", "0", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: --target-from-camera 0 0 0 0 0 0 0: a zero quaternion is no rotation (none is X Y Z 0 0 0 1)")
    assert not (tmp_path / "out").exists()


def test_the_lens_of_a_video_or_photos_goes_into_their_camera_info(tmp_path):
    """--distortion (and --distortion-model) describe the lens of the camera that took a video or
    photos: their CameraInfo carries it, and lifting undoes it as the node undoes a driver's."""
    import types

    import cv2

    from cfi_pose_ros.node.lifting import camera_from_info
    from cfi_pose_ros.offline import open_source

    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((40, 60, 3), np.uint8))
    bag_flags = dict.fromkeys(("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic"))
    for model, d in (("plumb_bob", [-0.3, 0.09, 0.001, 0.0]), ("equidistant", [0.05, -0.01, 0.0, 0.0])):
        args = types.SimpleNamespace(intrinsics=None, hfov=90.0, distortion=d, distortion_model=model, **bag_flags)
        info = next(open_source([tmp_path / "photo.png"], args).items(False)).camera_info
        assert info.distortion_model == model and list(info.d)[:len(d)] == d
        k, lens, size = camera_from_info(info)
        assert size == (60, 40) and lens is not None and lens.model == model and k[0, 0] == pytest.approx(30.0)
    args.distortion = None
    info = next(open_source([tmp_path / "photo.png"], args).items(False)).camera_info
    assert camera_from_info(info)[1] is None


def test_intrinsics_that_do_not_fit_the_images_are_refused_with_the_reason(tmp_path):
    """--intrinsics (and --distortion) pass the checks that need no image size at start; against the
    images' size (the intrinsics of a 1000 px camera, the README's example, given with a 60 px wide
    photo) they were counted as one bad_camera_info at the end of a pass that lifted everyone
    root-relative."""
    import types

    import cv2

    from cfi_pose_ros.offline import open_source

    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((40, 60, 3), np.uint8))
    bag_flags = dict.fromkeys(("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic"))
    args = types.SimpleNamespace(intrinsics=[1145, 1144, 512, 515], hfov=None, distortion=None,
                                 distortion_model="plumb_bob", **bag_flags)
    with pytest.raises(ValueError, match=r"^--intrinsics 1145 1144 512 515: .*principal point \(512, 515\) px "
                                         r"is far outside the 60x40 image"):
        next(open_source([tmp_path / "photo.png"], args).items(False))
    args.intrinsics = [70000, 70000, 30, 20]          # a 0.05 degree field of view
    with pytest.raises(ValueError, match="focal lengths fx=70000, fy=70000 px do not fit a 60 px wide image"):
        next(open_source([tmp_path / "photo.png"], args).items(False))
    args.intrinsics = [60, 60, 30, 20]
    assert list(next(open_source([tmp_path / "photo.png"], args).items(False)).camera_info.k)[:3] == [60, 0, 30]
    # a lens no camera of these images could have (k1 = 9999, under the coefficients' own bound): it
    # was counted as one bad_camera_info at the end of a pass that lifted everyone root-relative
    args.distortion = [9999.0, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"^--distortion 9999 0 0 0 0: plumb_bob distortion .* of the 60x40 image to "
                                         r"0\.\d+ of its distance from the principal point"):
        next(open_source([tmp_path / "photo.png"], args).items(False))
    args.distortion = [-0.3, 0.1, 0.0, 0.0, 0.0]      # a real lens's
    assert list(next(open_source([tmp_path / "photo.png"], args).items(False)).camera_info.d)[:2] == [-0.3, 0.1]


@pytest.mark.parametrize("problem, expected", [
    ("missing_video", "walk.mp4: no such file"),       # was "0 frames ... from 1 photos", exit 1
    ("missing_photo", "photo.jpg: no such file"),
    ("symlink_loop", "loop.jpg: cannot read (Too many levels of symbolic links)"),
    ("fifo_video", "live.mp4: a FIFO, not a file or folder"),         # these three hung
    ("fifo_clip", "live.npz: a FIFO, not a file or folder"),
    ("folder_of_a_fifo", "no images in"),
])
def test_a_video_photo_or_clip_path_that_is_no_file_is_one_line_and_exit_2(ros_env, tmp_path, problem, expected):
    """A path that is not there was lifted as one unreadable photo: the detector models loaded and an
    empty bag came out (exit 1). A FIFO (as the input, or named like a photo in a folder) hung the pass."""
    import os
    import subprocess
    import sys

    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    for name in ("live.mp4", "live.npz"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "photos").mkdir()
    os.mkfifo(tmp_path / "photos" / "live.jpg")
    path = {"missing_video": "walk.mp4", "missing_photo": "photo.jpg", "symlink_loop": "loop.jpg",
            "fifo_video": "live.mp4", "fifo_clip": "live.npz", "folder_of_a_fifo": "photos"}[problem]
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(tmp_path / path), "--out",
                          str(tmp_path / "out"), "--quiet", "--no-video", "--hfov", "60"],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert err[-1].startswith("offline: error: ") and expected in err[-1], err


def test_a_video_of_no_frames_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys):
    """A video OpenCV opens but reads no frame from (a recorder stopped before its first frame) was
    lifted into "0 frames", exit 1, a summary.json and a bag of nothing, the models loaded first; a
    bag with nothing to lift is refused so."""
    import cv2

    cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48)).release()
    out = tmp_path / "out"
    assert offline([str(tmp_path / "empty.avi"), "--hfov", "60", "--person-detector-model", "det.onnx",
                    "--keypoint-model", "kp.onnx", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"offline: error: {tmp_path / 'empty.avi'}: OpenCV opens it but reads no frame from it (a video of 0 frames)"]
    assert not out.exists()


def test_a_video_of_frames_larger_than_max_image_pixels_is_refused_before_decoding(tmp_path):
    """A video's frames were decoded whatever their size (16000 x 16000 frames of a 4 MB MJPEG: 3.2 GB),
    where the node, a bag's images and photos are held to the detector's max_image_pixels; the size
    the container states is checked before any frame is decoded."""
    import types

    import cv2

    from cfi_pose_ros.offline import open_source

    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    args = types.SimpleNamespace(intrinsics=None, hfov=60.0, distortion=None,
                                 **dict.fromkeys(("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic")))
    assert open_source([tmp_path / "clip.avi"], args).frames == 3
    with pytest.raises(ValueError, match=r"clip.avi: frames of 64x48 = 3072 pixels, more than the detector's "
                                         r"max_image_pixels = 3000 \(--detect-params-file\); not decoded"):
        open_source([tmp_path / "clip.avi"], args, max_image_pixels=3000)


@pytest.mark.parametrize("tool, args, expected", [
    ("play_bag", ["some.mcap", "--rate", "0"], "argument --rate: must be a number > 0, not 0"),
    ("play_bag", ["some.mcap", "--delay", "-1"], "argument --delay: must be a number >= 0, not -1"),
    ("play_bag", ["some.mcap", "--wait-for-subscribers", "nan"], "argument --wait-for-subscribers: must be a number >= 0"),
    ("play_bag", ["some.mcap", "--remap", "/camera_info"], "--remap takes FROM:=TO"),
    ("demo", ["--rate", "inf"], "argument --rate: must be a number > 0, not inf"),
    ("demo", ["--frames", "0"], "argument --frames: must be an integer >= 1, not 0"),
    ("demo", ["--out", "/dev/null/demo"], "--out /dev/null/demo: /dev/null is a FIFO, device or socket, not a folder"),
    ("demo", ["--out", ""], "--out must name a folder"),
    ("demo", ["--backend", "bogus"], "invalid choice: 'bogus'"),
])
def test_play_bag_and_the_demo_refuse_a_bad_argument_before_starting_anything(capsys, tool, args, expected):
    """--rate 0 waited for subscribers (play_bag, 10 s) or started the lift node (demo) first, then
    died of a division by zero."""
    from cfi_pose_ros.demo import main as demo
    from cfi_pose_ros.node.play_bag import main as play_bag

    with pytest.raises(SystemExit) as exit_info:
        {"play_bag": play_bag, "demo": demo}[tool](args)
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_the_demo_says_in_one_line_why_the_node_stopped(ros_env, tmp_path):
    """A bad --weights ended the demo in a traceback ("the node did not answer; see node.log"), the
    reason only in the log: it is the node's own FATAL or ERROR line, exit 1."""
    import subprocess
    import sys

    missing = tmp_path / "missing.safetensors"
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.demo", "--out", str(tmp_path / "demo"),
                          "--weights", str(missing)], env=ros_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("demo: error: the lifting node stopped: [") and str(missing) in last, last
    assert f"(log: {tmp_path / 'demo' / 'node.log'})" in last, last


def test_the_demo_reports_the_weights_and_backend_the_node_ran(ros_env, tmp_path):
    """report.md said "default weights" whatever --weights was, and neither report named the backend."""
    import json
    import subprocess
    import sys

    from cfi_pose_ros.weights import read_weights_info, resolve_weights

    weights = resolve_weights("cfi_h36m_d128")
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.demo", "--out", str(tmp_path / "demo"),
                          "--weights", "cfi_h36m_d128", "--backend", "torch", "--frames", "10"],
                         env=ros_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["weights"] == weights and report["backend"] == "torch", report
    assert report["weights_sha256"] == read_weights_info(weights).sha256
    assert report["person_frames_measured"] == 2 * report["frames_received"], report
    assert "weights `cfi_h36m_d128.safetensors`, backend torch" in (tmp_path / "demo" / "report.md").read_text()


def test_a_second_demo_in_the_domain_of_a_running_one_refuses_in_one_line(ros_env, tmp_path):
    """Two demos in one ROS domain (the caller's ROS_DOMAIN_ID, or two shells' pids 90 apart) each lifted
    the other's frames and counted its answers: 60 frames sent, 92 received, latency p50 -131 ms. The
    second one is one line, exit 1, before it starts a node."""
    import signal
    import subprocess
    import sys

    first = subprocess.Popen([sys.executable, "-P", "-m", "cfi_pose_ros.demo", "--out", str(tmp_path / "one"),
                              "--frames", "100000"], env=ros_env, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr.readline().startswith("waiting for the lifting node"), "the first demo did not start"
        second = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.demo", "--out", str(tmp_path / "two"),
                                 "--frames", "10"], env=ros_env, capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"demo: error: another demo or benchmark is running in ROS_DOMAIN_ID {int(ros_env['ROS_DOMAIN_ID'])}: the "
        "two would take each other's messages (unset ROS_DOMAIN_ID to run in a free domain)"], second.stderr
    assert not (tmp_path / "two" / "report.json").exists()


def test_a_demo_without_a_domain_takes_none_a_dds_participant_listens_in(ros_env):
    """Its own domain was 10 + its pid % 90, whatever else ran there (another demo, a robot's nodes)."""
    import rclpy

    from cfi_pose_ros.ros_domain import DomainTaken, claim_domain

    domain = int(ros_env["ROS_DOMAIN_ID"])
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("test_demo_domain_taken", context=context)
    try:
        with pytest.raises(DomainTaken, match=f"no free ROS domain on this machine in {domain}..{domain} "):
            claim_domain(None, [domain])
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_benchmark_in_the_domain_of_a_running_demo_refuses_in_one_line(ros_env, capsys):
    """The benchmarks that start nodes took the shell's ROS_DOMAIN_ID or 10 + their pid % 90 whoever
    else ran there: two runs (or a demo beside one) timed each other's nodes. They claim their
    domain as the demo does."""
    from test_tool_signals import benchmark

    from cfi_pose_ros.ros_domain import own_ros_domain

    with own_ros_domain() as domain:        # what a running demo holds
        assert domain == int(ros_env["ROS_DOMAIN_ID"])
        assert benchmark("bench_image_take").main(["--images", "1", "--rounds", "1"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"bench_image_take: error: another demo or benchmark is running in ROS_DOMAIN_ID {domain}: the two would "
        "take each other's messages (unset ROS_DOMAIN_ID to run in a free domain)"]
    assert benchmark("bench_image_take").main(["--images", "1", "--rounds", "1"]) == 0     # the claim went with it


def test_a_params_file_target_frame_is_the_output_frame_as_in_the_node(tmp_path, capsys):
    """The lift node publishes in a --params-file's target_frame (with its target_from_camera); offline
    lifting with the same file wrote the camera frame: the bag disagreed with what the node publishes."""
    from cfi_pose_ros.bag import read_bag

    bag = _bag(tmp_path / "good.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(2)])
    mount = ["0.3", "0.0", "1.2", "-0.5", "0.5", "-0.5", "0.5"]
    (tmp_path / "lift.yaml").write_text("/**:\n  ros__parameters:\n    target_frame: base_link\n"
                                        f"    target_from_camera: [{', '.join(mount)}]\n")
    common = ["--quiet", "--no-video"]
    assert offline([str(bag), "--out", str(tmp_path / "file"), "--params-file", str(tmp_path / "lift.yaml"),
                    *common]) == 0
    assert offline([str(bag), "--out", str(tmp_path / "cli"), "--target-frame", "base_link",
                    "--target-from-camera", *mount, *common]) == 0

    def poses(out):
        return [m.decode() for m in read_bag(tmp_path / out / "lifted.mcap", ["/human_pose_3d"])]

    from_file, from_cli = poses("file"), poses("cli")
    assert len(from_file) == len(from_cli) == 2
    for a, b in zip(from_file, from_cli):
        assert a.header.frame_id == b.header.frame_id == "base_link"
        assert np.allclose([[p.x, p.y, p.z] for h in a.humans for p in h.keypoints],
                           [[p.x, p.y, p.z] for h in b.humans for p in h.keypoints], atol=1e-9)
    # a target_frame the node would look up in tf2: offline there is no tf2 buffer, so it is refused
    (tmp_path / "lift.yaml").write_text("/**:\n  ros__parameters:\n    target_frame: base_link\n")
    capsys.readouterr()
    assert offline([str(bag), "--out", str(tmp_path / "tf"), "--params-file", str(tmp_path / "lift.yaml"),
                    *common]) == 2
    assert "needs target_from_camera" in capsys.readouterr().err


def test_an_aligned_depth_topic_places_people_from_depth_as_the_node_does(tmp_path):
    """The node places people from an aligned depth image (depth_topic); offline lifting ignored the
    bag's depth images, so the same bag gave ROOT_FROM_INTRINSICS offline and ROOT_FROM_DEPTH from
    the node. The depth image is paired by stamp (the one nearest, within depth_max_age) as the node
    pairs it, here 67 ms after the keypoints' image, as a detector's latency puts it."""
    import json

    from sensor_msgs.msg import Image

    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.msg import HumanPose3D
    from cfi_pose_ros.offline import bag_source

    clip = Clip.load()
    frames, scale, start = 3, 4, 10**9 * 100
    w, h = clip.image_size
    path = tmp_path / "with_depth.mcap"
    with BagWriter(path) as writer:
        writer.write("/camera_info", camera_info_msg(clip.camera_matrix, clip.image_size, FRAME), start - PERIOD_NS)
        for k in range(frames):
            depth = np.full((h // scale, w // scale), 9.0, dtype=np.float32)
            for pixels, truth in zip(clip.pixels[k], clip.truth_camera_m[k]):
                x0, y0 = np.floor(pixels.min(0) / scale).astype(int)
                x1, y1 = np.ceil(pixels.max(0) / scale).astype(int)
                depth[y0:y1, x0:x1] = truth[0, 2] - 0.1          # the body surface, 10 cm before the pelvis
            image = Image(height=depth.shape[0], width=depth.shape[1], encoding="32FC1", step=depth.shape[1] * 4,
                          data=depth.tobytes())
            image.header.frame_id = FRAME
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(start + k * PERIOD_NS, 10**9)
            writer.write("/camera/depth", image, start + k * PERIOD_NS)
            msg = keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size, clip.layout, FRAME,
                                start + k * PERIOD_NS)
            writer.write("/human_keypoints_2d", msg, start + k * PERIOD_NS + 67_000_000)
    (tmp_path / "lift.yaml").write_text("/**:\n  ros__parameters:\n    depth_topic: camera/depth\n")
    for name, extra in (("flag", ["--depth-topic", "/camera/depth"]),
                        ("params", ["--params-file", str(tmp_path / "lift.yaml")]), ("none", [])):
        assert offline([str(path), "--out", str(tmp_path / name), "--quiet", "--no-video", *extra]) == 0
        poses = [m.decode() for m in read_bag(tmp_path / name / "lifted.mcap", ["/human_pose_3d"])]
        assert len(poses) == frames
        expected = HumanPose3D.ROOT_FROM_INTRINSICS if name == "none" else HumanPose3D.ROOT_FROM_DEPTH
        assert all(human.root_source == expected for pose in poses for human in pose.humans), name
        if name != "none":
            for pose, truth in zip(poses, clip.truth_camera_m[:frames]):
                for human, person in zip(pose.humans, truth):
                    assert abs(human.body_pose.position.z - person[0, 2]) < 0.05
            assert json.loads((tmp_path / name / "summary.json").read_text())["dropped"] == {}
    assert offline([str(path), "--out", str(tmp_path / "x"), "--quiet", "--no-video",
                    "--depth-topic", "/human_keypoints_2d"]) == 2        # not an Image topic
    source = bag_source(path, depth_topic="/camera/depth")
    assert sum(item.depth is not None for item in source.items(False)) == frames
    # the video's pass places nobody: it decoded every depth image again for nothing
    assert not any(item.depth is not None for item in source.items(True))


@pytest.mark.parametrize("problem, words", [
    ("another_frame", "depth image not used: the depth image is in frame 'other_optical_frame', the keypoints in "
                      f"'{FRAME}'"),
    ("another_aspect", "depth image not used: the 300x100 depth image (aspect 3.000) cannot be registered to the "
                       "1000x1002 image"),
    ("stamped_long_before", "no depth image stamped within depth_max_age of the keypoints"),
])
def test_a_depth_image_not_used_is_told_why_not_only_counted(tmp_path, capsys, problem, words):
    """The node logs why it does not use a depth image (another camera's frame, another aspect, none
    stamped near the keypoints); offline only counted it: "dropped: bad_depth_image x3", nothing
    saying which fault, so nothing to fix it by. The node's words are told once (and a CameraInfo
    not used alike), the frames still lifted."""
    from sensor_msgs.msg import Image

    clip = Clip.load()
    frames, start = 3, 10**9 * 100
    w, h = clip.image_size
    path = tmp_path / f"{problem}.mcap"
    with BagWriter(path) as writer:
        writer.write("/camera_info", camera_info_msg(clip.camera_matrix, clip.image_size, FRAME), start - PERIOD_NS)
        for k in range(frames):
            depth = np.full((100, 300) if problem == "another_aspect" else (h // 4, w // 4), 5.0, dtype=np.float32)
            image = Image(height=depth.shape[0], width=depth.shape[1], encoding="32FC1", step=depth.shape[1] * 4,
                          data=depth.tobytes())
            image.header.frame_id = "other_optical_frame" if problem == "another_frame" else FRAME
            stamp = start + k * PERIOD_NS - (10**10 if problem == "stamped_long_before" else 0)
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
            writer.write("/camera/depth", image, start + k * PERIOD_NS)
            writer.write("/human_keypoints_2d", keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size,
                                                              clip.layout, FRAME, start + k * PERIOD_NS),
                         start + k * PERIOD_NS + 67_000_000)
    assert offline([str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-video",
                    "--depth-topic", "/camera/depth"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum(words in line for line in err) == 1, err
    nan_k = _clip_file(tmp_path / "nan_k.npz", camera_matrix=np.full((3, 3), np.nan))
    assert offline([str(nan_k), "--out", str(tmp_path / "out_nan_k"), "--quiet", "--no-video"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("not used: camera matrix contains NaN or inf" in line for line in err) == 1, err


def test_a_keypoints_message_of_more_people_than_the_lifter_reads_is_counted_not_decoded(tmp_path):
    """A bag's chunk may decompress to up to 1 GiB, and deserializing a keypoints message costs about
    36 bytes of memory a byte of it: 20 kB of zstd held one message of 100,000 people (24 MB of CDR),
    which took the pass 9 s and 875 MB, every person then dropped (a million fit the bound). A message
    of more people than the lifter reads of one is counted (too_many_people_to_decode) and not
    decoded; the frames around it are lifted."""
    import json

    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.node.lifting import PEOPLE_READ_PER_KEPT
    from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME

    clip = Clip.load()
    crowd = PEOPLE_READ_PER_KEPT * PARAMETERS_BY_NAME["max_people"].max_value + 1   # one past what the lifter reads
    start = 10**9 * 100
    path = tmp_path / "crowd.mcap"
    with BagWriter(path) as writer:
        writer.write("/camera_info", camera_info_msg(clip.camera_matrix, clip.image_size, FRAME), start - PERIOD_NS)
        for k in range(3):
            pixels, scores, ids = clip.pixels[k], clip.scores[k], clip.ids
            if k == 1:
                pixels, scores, ids = (np.repeat(pixels[:1], crowd, 0), np.repeat(scores[:1], crowd, 0),
                                       [str(i) for i in range(crowd)])
            writer.write("/human_keypoints_2d", keypoints_msg(pixels, scores, ids, clip.image_size, clip.layout, FRAME,
                                                              start + k * PERIOD_NS), start + k * PERIOD_NS)
    out = tmp_path / "out"
    assert offline([str(path), "--out", str(out), "--quiet", "--no-video"]) == 0
    assert json.loads((out / "summary.json").read_text())["dropped"] == {"too_many_people_to_decode": 1}
    poses = [m.decode() for m in read_bag(out / "lifted.mcap", ["/human_pose_3d"])]
    assert [len(pose.humans) for pose in poses] == [2, 2]


def test_markers_in_the_bag_clear_the_last_frame_when_rviz_would_keep_them_forever(tmp_path):
    """marker_lifetime 5e-5 (s) is forever to RViz2 (it expires only lifetimes over 100 us): every
    markers message of the bag starts with a DELETEALL, as with 0, so people who left go away. And
    the bag ends with one, as the node clears at its stop: the last frame's skeletons stayed on
    RViz's screen after the bag's end, for good."""
    from visualization_msgs.msg import Marker

    from cfi_pose_ros.bag import read_bag

    bag = _bag(tmp_path / "short_lifetime.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(2)])
    params = tmp_path / "lift.yaml"
    params.write_text("/**:\n  ros__parameters:\n    marker_lifetime: 5.0e-5\n")
    assert offline([str(bag), "--out", str(tmp_path / "out"), "--quiet", "--no-video",
                    "--params-file", str(params)]) == 0
    messages = list(read_bag(tmp_path / "out" / "lifted.mcap", ["/human_pose_3d/markers"]))
    arrays = [m.decode() for m in messages]
    assert len(arrays) == 3
    closing = arrays.pop()
    assert [(m.action, m.ns) for m in closing.markers] == [(Marker.DELETEALL, arrays[-1].markers[0].ns)]
    assert closing.markers[0].header == arrays[-1].markers[0].header and messages[-1].log_time_ns == messages[-2].log_time_ns
    assert all(a.markers[0].action == Marker.DELETEALL and a.markers[0].lifetime.nanosec == 0 for a in arrays)
    assert all(len(a.markers) > 1 for a in arrays)          # skeletons after the DELETEALL: all over none is true
    assert all(m.lifetime.nanosec == 50_000 for a in arrays for m in a.markers[1:])


def test_a_keypoints_message_of_more_people_than_the_lifter_reads_is_not_decoded_in_any_encapsulation(tmp_path):
    """Kilted's type support reads a keypoints message labelled PLAIN_CDR2 (or PL_CDR, D_CDR2,
    PL_CDR2) as it reads CDR: a crowd so labelled was decoded whole, which the count from its bytes
    is there to spare (only CDR's was read). It is counted too_many_people_to_decode; a whole
    message so labelled is lifted."""
    import json

    from rclpy.serialization import serialize_message

    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    clip = Clip.load()
    start, kp_type, info_type = 10**9 * 100, "cfi_pose_ros/msg/HumanKeypoints2DArray", "sensor_msgs/msg/CameraInfo"
    info = serialize_message(camera_info_msg(clip.camera_matrix, clip.image_size, FRAME))
    messages = [("/camera_info", "cdr", info_type, info, start - PERIOD_NS)]
    for k, kind in enumerate((0x01, 0x07, 0x09)):           # CDR_LE, PLAIN_CDR2_LE, D_CDR2_LE
        pixels, scores, ids = clip.pixels[k], clip.scores[k], clip.ids
        if k == 1:
            crowd = MOST_PEOPLE_READ + 1
            pixels, scores, ids = (np.repeat(pixels[:1], crowd, 0), np.repeat(scores[:1], crowd, 0),
                                   [str(i) for i in range(crowd)])
        msg = keypoints_msg(pixels, scores, ids, clip.image_size, clip.layout, FRAME, start + k * PERIOD_NS)
        data = serialize_message(msg)
        assert data[:2] == b"\x00\x01"       # rclpy writes CDR, little endian: the same bytes as each kind here
        messages.append(("/human_keypoints_2d", "cdr", kp_type, data[:1] + bytes([kind]) + data[2:],
                         start + k * PERIOD_NS))
    bag = _raw_bag(tmp_path / "labelled.mcap", messages)
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--quiet", "--no-video"]) == 0
    assert json.loads((out / "summary.json").read_text())["dropped"] == {"too_many_people_to_decode": 1}
    poses = [m.decode() for m in read_bag(out / "lifted.mcap", ["/human_pose_3d"])]
    assert [len(pose.humans) for pose in poses] == [len(clip.ids)] * 2


def test_a_bag_message_with_a_length_past_its_end_is_refused_before_the_type_support_prints_it(tmp_path, capfd):
    """Fast DDS's type support printed "sequence size exceeds remaining buffer" to stderr for each
    message of a bag whose sequence length ran past its bytes (beside offline lifting's one line
    for them all, whose reason read "failed to deserialize ROS message: error not set"): a bag of
    many such CameraInfos filled stderr. The bytes are walked against the type's layout first, as
    the nodes walk their inputs."""
    import json
    import struct

    from rclpy.serialization import serialize_message

    clip = Clip.load()
    start, kp_type, info_type = 10**9 * 100, "cfi_pose_ros/msg/HumanKeypoints2DArray", "sensor_msgs/msg/CameraInfo"
    info_msg = camera_info_msg(clip.camera_matrix, clip.image_size, FRAME)
    info = serialize_message(info_msg)
    model = info_msg.distortion_model.encode() + b"\0"
    d_at = info.index(model) + len(model)
    d_at += -(d_at - 4) % 4                       # d's length, aligned to 4 after the encapsulation header
    assert info[d_at:d_at + 4] == struct.pack("<I", len(info_msg.d))
    bad = info[:d_at] + struct.pack("<I", 10**6) + info[d_at + 4:]
    messages = [("/camera_info", "cdr", info_type, info, start - PERIOD_NS)]
    for k in range(3):
        messages += [("/camera_info", "cdr", info_type, bad, start + k * PERIOD_NS - 1000),
                     ("/human_keypoints_2d", "cdr", kp_type,
                      serialize_message(keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size,
                                                      clip.layout, FRAME, start + k * PERIOD_NS)),
                      start + k * PERIOD_NS)]
    bag = _raw_bag(tmp_path / "long_d.mcap", messages)
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--no-video"]) == 0
    err = capfd.readouterr().err
    assert json.loads((out / "summary.json").read_text())["dropped"] == {"undecodable": 3}
    assert "sequence size exceeds remaining buffer" not in err, err
    told = [line for line in err.splitlines() if line.startswith("skipping ")]
    assert len(told) == 1 and f"it does not decode as {info_type}" in told[0], err
    assert "of 1000000 elements runs past the end" in told[0], told


def test_a_keypoints_message_whose_person_runs_past_its_end_is_undecodable_as_the_node_has_it(tmp_path, capfd):
    """A person's keypoints length past the message's end: Fast DDS's type support printed "sequence
    size exceeds remaining buffer" and still returned a message, that person with no keypoints and
    a zero bbox, which offline lifting then counted wrong_keypoint_count, the others lifted; the
    lifter node, which walks the bytes first, dropped the message whole (undeserializable). Offline
    lifting walks them too now (its crowd screen's walk): undecodable, and no line from the type
    support."""
    import json
    import struct

    from rclpy.serialization import serialize_message

    clip = Clip.load()
    start, kp_type, info_type = 10**9 * 100, "cfi_pose_ros/msg/HumanKeypoints2DArray", "sensor_msgs/msg/CameraInfo"
    info = serialize_message(camera_info_msg(clip.camera_matrix, clip.image_size, FRAME))
    messages = [("/camera_info", "cdr", info_type, info, start - PERIOD_NS)]
    for k in range(3):
        data = serialize_message(keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size, clip.layout,
                                               FRAME, start + k * PERIOD_NS))
        if k == 1:      # the last person's keypoints' length (17 of 12 bytes, then a 17-byte bbox, end)
            at = len(data) - (data[3] & 0x3) - 17 - 17 * 12 - 4
            assert data[at:at + 4] == struct.pack("<I", 17)
            data = data[:at] + struct.pack("<I", 10**6) + data[at + 4:]
        messages.append(("/human_keypoints_2d", "cdr", kp_type, data, start + k * PERIOD_NS))
    bag = _raw_bag(tmp_path / "long_keypoints.mcap", messages)
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--no-video"]) == 0
    err = capfd.readouterr().err
    assert json.loads((out / "summary.json").read_text())["dropped"] == {"undecodable": 1}
    assert "sequence size exceeds remaining buffer" not in err, err
    assert "of 1000000 elements runs past the end" in err, err


def test_frames_that_cannot_be_read_are_counted_told_once_and_the_others_lifted(tmp_path, capsys):
    """Messages that did not decode as the topic's type (here CameraInfo bytes on the keypoints topic)
    and messages of a channel that is not ROS 2 CDR (JSON beside it) were skipped with one stderr line
    each, none of them in the dropped counts: "dropped": {}, exit 0, and the progress bar stopped
    short of its total. Now each is counted under its reason, said once with its details, and the
    closing summary gives how many; the good frames are still lifted."""
    import json

    from rclpy.serialization import serialize_message

    from cfi_pose_ros.bag import read_bag

    clip = Clip.load()
    start, kp_type, info_type = 10**9 * 100, "cfi_pose_ros/msg/HumanKeypoints2DArray", "sensor_msgs/msg/CameraInfo"
    info = serialize_message(camera_info_msg(clip.camera_matrix, clip.image_size, FRAME))
    messages = [("/camera_info", "cdr", info_type, info, start - PERIOD_NS)]
    for k in range(6):
        good = serialize_message(keypoints_msg(clip.pixels[k], clip.scores[k], clip.ids, clip.image_size,
                                               clip.layout, FRAME, start + k * PERIOD_NS))
        # k = 5: an encapsulation header alone, stating padding (rclpy's deserialize_message read past
        # its end: SIGSEGV)
        data = {1: info, 3: info, 5: b"\x00\x01\x00\x01"}.get(k, good)
        messages.append(("/human_keypoints_2d", "cdr", kp_type, data, start + k * PERIOD_NS))
    messages += [("/human_keypoints_2d", "json", kp_type, b'{"people": []}', start + k * PERIOD_NS + 1)
                 for k in (2, 4)]
    bag = _raw_bag(tmp_path / "mixed.mcap", messages)
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--no-video"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["dropped"] == {"undecodable": 3, "non_cdr_channel": 2}
    assert len(list(read_bag(out / "lifted.mcap", ["/human_pose_3d"]))) == 3
    told = [line for line in captured.err.splitlines() if line.startswith("skipping ")]
    assert len(told) == 2, captured.err
    assert (f"skipping a message on /human_keypoints_2d at {start + PERIOD_NS} ns: it does not decode as {kp_type}"
            in told[0] and told[0].endswith("counted as dropped undecodable (the closing summary says how many)"))
    assert (f"skipping a message on /human_keypoints_2d at {start + 2 * PERIOD_NS + 1} ns: its channel is 'json', "
            "not ROS 2 'cdr'" in told[1] and "counted as dropped non_cdr_channel" in told[1])
    assert "dropped: non_cdr_channel x2, undecodable x3" in captured.out.splitlines()
    assert "| 8/8 [" in captured.err          # the progress bar: every frame read, lifted or dropped


def test_images_that_cannot_be_read_are_passed_on_to_be_counted(tmp_path):
    """An image of an encoding the detector cannot read, in a bag or as a photo, was skipped where it
    was read, with a line on stderr and no count; now it reaches the pass as unreadable_image, one of
    the frames."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from cfi_pose_ros.offline import bag_source, photos_source

    good = Image(height=2, width=3, encoding="bgr8", step=9, data=bytes(18))
    bad = Image(height=2, width=3, encoding="bogus", step=9, data=bytes(18))
    bag = _raw_bag(tmp_path / "images.mcap", [("/image_raw", "cdr", "sensor_msgs/msg/Image", serialize_message(image),
                                             10**9 + k) for k, image in enumerate((good, bad, good))])
    items = list(bag_source(bag).items(False))
    assert [item.image is not None for item in items] == [True, False, True]
    assert items[1].unread.reason == "unreadable_image" and items[1].unread.frame
    assert "a message on /image_raw at 1000000001 ns: " in items[1].unread.detail and "bogus" in items[1].unread.detail

    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 128, np.uint8))
    (tmp_path / "b.png").write_bytes(b"not a png")
    items = [item for item in photos_source([tmp_path], hfov_deg=60).items(False) if item.camera_info is None]
    assert [item.image is not None for item in items] == [True, False]
    assert (items[1].unread.reason, items[1].unread.detail, items[1].unread.frame) == (
        "unreadable_image", f"{tmp_path / 'b.png'}: not an image whose size its header states (JPEG, PNG, BMP, WebP, "
        "TIFF; 9 bytes, starting 6e6f74206120706e)", True)


def test_the_detector_s_max_image_pixels_bounds_a_bag_s_compressed_images(tmp_path):
    """A bag's compressed images were bounded by the default 4096 x 4096 whatever the detector's
    max_image_pixels (--detect-params-file) said: 8K frames could not be let through, nor a lower
    bound set."""
    import types

    import cv2
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    from cfi_pose_ros.offline import open_source

    png = cv2.imencode(".png", np.full((20, 30, 3), 128, np.uint8))[1].tobytes()
    bag = _raw_bag(tmp_path / "images.mcap", [("/image_raw/compressed", "cdr", "sensor_msgs/msg/CompressedImage",
                                             serialize_message(CompressedImage(format="png", data=png)), 10**9)])
    bag_flags = dict.fromkeys(("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic"))
    args = types.SimpleNamespace(intrinsics=None, hfov=None, distortion=None, **bag_flags)
    assert next(open_source([bag], args).items(False)).image.shape == (20, 30, 3)
    unread = next(open_source([bag], args, max_image_pixels=500).items(False)).unread
    assert unread.reason == "unreadable_image" and "declares 30x20 = 600 pixels, more than max_image_pixels = 500" in (
        unread.detail)


def test_a_photo_too_large_or_cut_short_is_counted_not_decoded(tmp_path):
    """Photos were read by cv2.imread, unbounded and unchecked: an 875 kB PNG declaring 30000 x 30000
    pixels took 5.8 GB (a 10 kB WebP 1.5 GB, a 593 kB TIFF 2.4 GB), and a JPEG cut short was lifted
    with its lower half grey, exit 0 and nothing dropped. Each is now bounded and checked as the
    detector's compressed images are (its max_image_pixels), and an unreadable_image."""
    import types

    import cv2
    from PIL import Image

    from hostile import zero_png

    from cfi_pose_ros.offline import open_source, photos_source

    (tmp_path / "big.png").write_bytes(zero_png(5000, 4000))       # 20 MP: over the default 4096 x 4096
    for suffix in (".webp", ".tiff"):
        Image.new("L", (5000, 4000)).save(tmp_path / f"big{suffix}", lossless=True, compression="tiff_deflate")
    whole = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    cv2.imwrite(str(tmp_path / "ok.png"), np.full((20, 30, 3), 128, np.uint8))
    items = [item for item in photos_source([tmp_path], hfov_deg=60).items(False) if item.camera_info is None]
    assert [item.image is not None for item in items] == [False, False, False, False, True]
    for item, name in zip(items[:3], ("big.png", "big.tiff", "big.webp")):
        assert item.unread.reason == "unreadable_image" and item.unread.detail.startswith(f"{tmp_path / name}: ")
        assert "declares 5000x4000 = 20000000 pixels, more than max_image_pixels = 16777216" in item.unread.detail
    assert "could not decode the photo" in items[3].unread.detail
    # the detector's max_image_pixels (--detect-params-file) is the bound
    bag_flags = dict.fromkeys(("keypoints_topic", "image_topic", "camera_info_topic", "depth_topic"))
    args = types.SimpleNamespace(intrinsics=None, hfov=60.0, distortion=None, distortion_model="plumb_bob", **bag_flags)
    small = [item for item in open_source([tmp_path / "ok.png"], args, max_image_pixels=500).items(False)]
    assert "declares 30x20 = 600 pixels, more than max_image_pixels = 500" in small[0].unread.detail


def test_a_bag_with_no_messages_on_its_frame_topic_is_one_line_and_exit_2(tmp_path, capsys):
    """A bag whose keypoints topic holds no message was lifted into "0 frames", exit 1, a summary.json
    and no error line. It is bad input: one line naming the file, the topic and the topics that do
    hold messages, exit 2, and nothing written."""
    from rclpy.serialization import serialize_message

    clip = Clip.load()
    info = serialize_message(camera_info_msg(clip.camera_matrix, clip.image_size, FRAME))
    bag = _raw_bag(tmp_path / "empty.mcap", [("/camera_info", "cdr", "sensor_msgs/msg/CameraInfo", info, 10**9)],
                   empty_channels=[("/human_keypoints_2d", "cfi_pose_ros/msg/HumanKeypoints2DArray")])
    out = tmp_path / "out"
    assert offline([str(bag), "--out", str(out), "--quiet", "--no-video"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"offline: error: {bag}: no messages on /human_keypoints_2d (the bag's topics with messages: "
                   "/camera_info (1))"]
    assert not (out / "summary.json").exists() and not (out / "lifted.mcap").exists()


def test_the_outputs_are_on_the_disk_before_the_summary_says_the_run_was_whole(ros_env, tmp_path):
    """summary.json, written last, says the run was whole; nothing was synced to the disk, so a power
    loss (a robot's battery) could keep its rename and lose the data it and lifted.mcap / the video
    hold: a summary.json (or an empty one) beside an empty or cut bag. Watched in the real process's
    system calls: the bag and the video are fsync'ed before the summary's rename, the summary before
    its rename, and the folder after it."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-o", os.devnull, "true"]).returncode != 0:
        pytest.skip("needs strace, allowed to trace")
    bag = _bag(tmp_path / "in.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    out, trace = tmp_path / "out", tmp_path / "trace"
    run = subprocess.run([strace, "-f", "-y", "-qq", "-o", str(trace), "-e", "trace=fsync,rename,renameat,renameat2",
                          sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(bag), "--out", str(out), "--quiet"],
                         env=ros_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    folder = os.path.realpath(out)
    calls = [re.sub(r"^\d+ +", "", line) for line in trace.read_text().splitlines()]

    def first(pattern: str) -> int:
        found = [k for k, call in enumerate(calls) if re.fullmatch(pattern, call)]
        assert found, (pattern, calls)
        return found[0]

    video = next(path.name for path in out.iterdir() if path.name.startswith("lifted.") and path.suffix != ".mcap")
    partial = f"lifted.partial{os.path.splitext(video)[1]}"
    summary_renamed = first(rf'rename(at2?)?\(.*"{re.escape(folder)}/summary\.partial\.json".*"{re.escape(folder)}'
                            rf'/summary\.json".*= 0')
    assert first(rf"fsync\(\d+<{re.escape(folder)}/lifted\.mcap>\) += 0") < summary_renamed
    assert first(rf"fsync\(\d+<{re.escape(folder)}/{re.escape(partial)}>\) += 0") < first(
        rf'rename(at2?)?\(.*"{re.escape(folder)}/{re.escape(partial)}".*= 0') < summary_renamed
    assert first(rf"fsync\(\d+<{re.escape(folder)}/summary\.partial\.json>\) += 0") < summary_renamed
    assert any(re.fullmatch(rf"fsync\(\d+<{re.escape(folder)}>\) += 0", call) for call in calls[summary_renamed:]), calls


def test_a_run_that_fails_loading_its_model_leaves_the_earlier_run_s_outputs(ros_env, tmp_path):
    """The earlier run's lifted.mcap and summary.json were removed as a run started, before its model
    loaded: a --weights typo ended in one line, exit 2, and an empty --out, the earlier results lost
    for a run that wrote nothing. They are removed once the models are loaded, as the new bag is opened."""
    import subprocess
    import sys

    bag = _bag(tmp_path / "in.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    out = tmp_path / "out"
    lift = [sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(bag), "--out", str(out), "--quiet", "--no-video"]
    assert subprocess.run(lift, env=ros_env, capture_output=True, timeout=300).returncode == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(before) == ["lifted.mcap", "summary.json"]
    run = subprocess.run(lift + ["--weights", str(tmp_path / "nowhere")], env=ros_env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("offline: error: weights file missing: "), run.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


@pytest.mark.parametrize("how, expected", [
    ("millimetres", "to skeletons 15"),
    ("depth", "as mirror images of themselves: the nose 5"),
    ("x", "with the left_hip on the other side of the right_hip than their 2D input has it"),
])
def test_offline_lifting_refuses_weights_that_lift_no_person_in_metres(ros_env, tmp_path, how, expected):
    """The d128 weights' output layer times 1000 (a model trained in millimetres), or with its depth
    row (x row) negated (people of the right size, upright, lifted as mirror images; with each left
    joint where the right one is): checked files that load. Offline lifting wrote a bag of people
    1.5 km tall, or mirrored; it now stops as for a bad weights file, in one line naming the file and
    what was measured, and writes nothing."""
    import subprocess
    import sys

    from hostile import mirrored_weights, weights_in_other_units

    weights = (weights_in_other_units(tmp_path / how, 1000.0) if how == "millimetres"
               else mirrored_weights(tmp_path / how, how))
    bag = _bag(tmp_path / "in.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(3)])
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(bag), "--out", str(out), "--quiet",
                          "--no-video", "--weights", str(weights), "--backend", "torch"],
                         env=ros_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"offline: error: {weights}: these weights cannot be used to publish people: they lift "
                           f"standing adults {expected}"), run.stderr
    assert not out.exists() or not any(out.iterdir())


def _limited_file_size(limit_bytes: int):
    """A child's preexec_fn: files it writes stop at ``limit_bytes``, a write past it failing with EFBIG as
    on a full disk (SIGXFSZ ignored, else the kernel ends the process)."""
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return limit


def test_a_video_the_disk_cannot_hold_is_not_named_whole(ros_env, tmp_path):
    """OpenCV's video writer says nothing of a write that fails: on a full disk (here a file size
    limit of 120 kB, the 70 kB bag under it, the video over) the cut video, with no index, was renamed
    lifted.mp4 and named in summary.json, exit 0. Now one line and exit 2, no summary, no lifted.mp4."""
    import subprocess
    import sys

    bag = _bag(tmp_path / "in.mcap", [10**9 * 100 + k * PERIOD_NS for k in range(20)])
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-P", "-m", "cfi_pose_ros.offline", str(bag), "--out", str(out), "--quiet"],
                         env=ros_env, capture_output=True, text=True, timeout=300,
                         preexec_fn=_limited_file_size(120_000))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"offline: error: {out / 'lifted.partial.mp4'}: "), run.stderr
    names = sorted(path.name for path in out.iterdir())
    assert "lifted.mcap" in names and not {"lifted.mp4", "lifted.gif", "summary.json"} & set(names), names


def test_a_camera_s_frames_dropped_whole_clear_its_never_expiring_skeletons_in_the_bag(tmp_path):
    """With a lifetime RViz never expires, the frames of a bag that were dropped whole (stamped before
    time zero: nothing published for them) wrote no markers, so the last published frame's skeletons
    stayed on RViz's screen through all of them, to the bag's end. The first such frame clears them,
    as the node does (the bag's end then has nothing left to clear)."""
    import json

    from visualization_msgs.msg import Marker

    from cfi_pose_ros.bag import read_bag

    start = 10**9 * 100
    bag = _bag(tmp_path / "dropped.mcap", [start, start + PERIOD_NS, -5 * 10**9, -4 * 10**9])
    params = tmp_path / "lift.yaml"
    params.write_text("/**:\n  ros__parameters:\n    marker_lifetime: 0.0\n")
    assert offline([str(bag), "--out", str(tmp_path / "out"), "--quiet", "--no-video",
                    "--params-file", str(params)]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["dropped"] == {"negative_stamp": 4}     # a count per person
    messages = list(read_bag(tmp_path / "out" / "lifted.mcap", ["/human_pose_3d/markers"]))
    assert [m.log_time_ns for m in messages] == [start + k * PERIOD_NS for k in range(3)]
    *drawn, cleared = [m.decode() for m in messages]
    assert all(len(a.markers) > 1 for a in drawn)
    assert [(m.action, m.ns) for m in cleared.markers] == [(Marker.DELETEALL, drawn[-1].markers[0].ns)]
    assert cleared.markers[0].header.stamp == drawn[-1].markers[0].header.stamp      # no stamp before zero


def test_a_keypoints_message_dropped_undecoded_clears_its_camera_s_never_expiring_skeletons(tmp_path):
    """A keypoints message of more people than the lifter reads of one is a frame dropped whole too
    (nothing published for it), but with a lifetime RViz never expires it wrote no markers: the last
    decoded frame's skeletons stayed on RViz's screen through it, to the bag's end's DELETEALL (logged
    at that last frame's time). Its header names its camera, whose skeletons it now clears, as the
    node does."""
    import json

    from visualization_msgs.msg import Marker

    from cfi_pose_ros.bag import read_bag
    from cfi_pose_ros.node.lifting import MOST_PEOPLE_READ

    clip = Clip.load()
    start = 10**9 * 100
    path = tmp_path / "crowd.mcap"
    with BagWriter(path) as writer:
        writer.write("/camera_info", camera_info_msg(clip.camera_matrix, clip.image_size, FRAME), start - PERIOD_NS)
        for k, count in enumerate((1, MOST_PEOPLE_READ + 1)):
            writer.write("/human_keypoints_2d", keypoints_msg(
                np.repeat(clip.pixels[k][:1], count, 0), np.repeat(clip.scores[k][:1], count, 0),
                [str(i) for i in range(count)], clip.image_size, clip.layout, FRAME, start + k * PERIOD_NS),
                start + k * PERIOD_NS)
    params = tmp_path / "lift.yaml"
    params.write_text("/**:\n  ros__parameters:\n    marker_lifetime: 0.0\n")
    out = tmp_path / "out"
    assert offline([str(path), "--out", str(out), "--quiet", "--no-video", "--params-file", str(params)]) == 0
    assert json.loads((out / "summary.json").read_text())["dropped"] == {"too_many_people_to_decode": 1}
    messages = list(read_bag(out / "lifted.mcap", ["/human_pose_3d/markers"]))
    assert [m.log_time_ns for m in messages] == [start, start + PERIOD_NS]
    drawn, cleared = [m.decode() for m in messages]
    assert [(m.action, m.ns) for m in cleared.markers] == [(Marker.DELETEALL, drawn.markers[0].ns)]


def test_the_gif_fallback_writes_each_frame_as_it_comes_not_all_at_the_end(tmp_path, monkeypatch):
    """Where OpenCV cannot write MP4 (a build without FFmpeg; stood in for by a writer that does not
    open), the video is a GIF; its writer kept every frame in memory and wrote them all at close
    (pillow's save_all): 0.85 MB a frame of a 560 x 1200 video, 511 MB more after 600 frames, 15 GB
    for a 10-minute clip at 30 Hz. Each frame is now on the disk once added, and the GIF is the one
    it was: every frame, half size, the frame rate's duration, looping."""
    import cv2
    from PIL import Image

    from cfi_pose_ros.offline import VideoOut, partial_path

    class WithoutMp4:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoWriter", WithoutMp4)
    video = VideoOut(tmp_path / "lifted", 20.0)
    frames = [np.full((120, 200, 3), 40 * k, np.uint8) for k in range(5)]
    sizes = []
    for frame in frames:
        video.add(frame)
        partial = partial_path(tmp_path / "lifted.gif")
        sizes.append(partial.stat().st_size if partial.exists() else 0)
    assert all(later > earlier for earlier, later in zip([0, *sizes], sizes)), sizes
    assert video.close() == tmp_path / "lifted.gif" and not partial_path(tmp_path / "lifted.gif").exists()
    with Image.open(tmp_path / "lifted.gif") as gif:
        assert (gif.size, gif.n_frames, gif.info["duration"], gif.info["loop"]) == ((100, 60), 5, 50, 0)
        for k in range(5):
            gif.seek(k)
            assert (np.asarray(gif.convert("RGB")) == 40 * k).all(), k
