"""Every parameter of the lifting node, as data: name, default, description, range.

The node declares exactly these (with descriptors and ranges), ``config/lift.yaml``
lists exactly these, and the launch file's arguments name some of them; tests
check all three agree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False   # takes effect at configure; changing it later needs cleanup + configure


LIFT_NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("input_topic", "/human_keypoints_2d",
              "HumanKeypoints2DArray input (2D people of one image)", read_only=True),
    ParamSpec("camera_info_topic", "/camera_info",
              "sensor_msgs/CameraInfo of the camera the keypoints come from; without it poses are root-relative",
              read_only=True),
    ParamSpec("output_topic", "/human_pose_3d", "HumanPose3DArray output", read_only=True),
    ParamSpec("markers_topic", "/human_pose_3d/markers", "visualization_msgs/MarkerArray skeletons for RViz",
              read_only=True),
    ParamSpec("publish_markers", True, "publish RViz markers"),
    ParamSpec("weights", "", "weights file (.safetensors with its .json beside it); empty = the packaged default",
              read_only=True),
    ParamSpec("backend", "auto", "inference backend; auto = fastest that works here",
              choices=("auto", "tensorrt", "cuda", "onnxruntime", "torch"), read_only=True),
    ParamSpec("precision", "fp32", "numeric precision (fp16/bf16 only on GPU backends)",
              choices=("fp32", "fp16", "bf16"), read_only=True),
    ParamSpec("batch_sizes", [1, 2, 4, 8, 16],
              "fixed batch sizes the engine is compiled for; people are padded up to the next one",
              read_only=True),
    ParamSpec("threads", 0, "CPU threads for the CPU backends (0 = library default)", 0, 256, read_only=True),
    ParamSpec("engine_cache_dir", "", "where compiled engines are cached (empty = ~/.cache/cfi_pose_ros)",
              read_only=True),
    ParamSpec("input_reliability", "best_effort",
              "input QoS reliability; best_effort matches camera drivers (sensor data QoS)",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("output_reliability", "reliable", "output QoS reliability",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("min_keypoint_score", 0.05, "2D joints at or below this score are treated as missing", 0.0, 1.0),
    ParamSpec("min_valid_joints", 8, "people with fewer valid joints are dropped", 1, 17),
    ParamSpec("max_people", 64, "most people lifted per frame (highest scores kept)", 1, 1024),
    ParamSpec("solve_root", True, "place people in metres in the camera frame when CameraInfo is known"),
    ParamSpec("smoothing", False, "One-Euro smoothing per person and joint, keyed by tracking id"),
    ParamSpec("smoothing_min_cutoff", 1.0, "One-Euro min cutoff (Hz): lower = smoother when still", 0.001, 100.0),
    ParamSpec("smoothing_beta", 1.0, "One-Euro speed coefficient: higher = less lag when moving", 0.0, 100.0),
    ParamSpec("marker_lifetime", 0.25, "RViz marker lifetime (s), so vanished people disappear", 0.0, 60.0),
    ParamSpec("diagnostics_period", 1.0, "period of /diagnostics updates (s)", 0.05, 60.0),
    ParamSpec("warn_latency_ms", 100.0, "diagnostics turn WARN above this p99 processing latency", 0.0, 1e6),
    ParamSpec("autostart", False,
              "configure and activate at start-up (for `ros2 run`; the launch file drives the lifecycle itself)",
              read_only=True),
)

PARAMETERS_BY_NAME = {p.name: p for p in LIFT_NODE_PARAMETERS}
