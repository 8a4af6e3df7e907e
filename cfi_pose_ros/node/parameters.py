"""Every parameter of the lifting node, as data: name, default, description, range.

The node declares exactly these (with descriptors and ranges), ``config/lift.yaml``
lists exactly these, and the launch file's arguments name some of them; tests
check all three agree.
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any, Callable

from cfi_pose_ros.frame_ids import MAX_FRAME_ID_LENGTH, frame_name_problem, tf2_frame_id
from cfi_pose_ros.skeleton import MEAN_BODY_HEIGHT_M


# When a parameter's value takes effect: see ParamSpec
LIVE, AT_CONFIGURE, AT_START = "live", "configure", "start"


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. Its ROS type is the type of ``default``; ``min_value``/``max_value``
    bound a number (each element of an array), ``choices`` list the allowed strings, and a name
    ending in ``_topic`` must be a valid ROS topic name (or empty when the default is empty).

    When a value takes effect (``takes_effect``), one of three:

    * ``LIVE``: ``ros2 param set`` is validated like a start-up value and takes effect from the
      next frame on. The node either reads the value where it uses it, or rebuilds what depends on
      it in ``on_parameters_changed`` (the lifter's PipelineConfig fields of the same name are
      rebuilt automatically). ``test/test_node_robustness.py`` has one probe per live parameter
      that sees the output change over the parameter service: a new live parameter needs one
      there too.
    * ``AT_CONFIGURE``: what configure builds once (topics, QoS, the engine, the detector models).
      Settable while the node is unconfigured, as in any lifecycle node (a configure that failed on
      a bad weights path is fixed with ``ros2 param set``, then configure again); refused with the
      way there (cleanup) while inactive or active, where it could not change what runs.
    * ``AT_START``: read once by the process (executor, autostart); the descriptor says read-only.

    ``check``, where a range cannot say what a value must be (an array's length, its entries taken
    together): called with a value of the right type, raises ValueError with the reason. It is the
    check what the value builds makes (configure's), run at start-up and on every set as well, so
    that ``ros2 param set`` refuses a value configure would fail on instead of answering success.
    """

    name: str
    default: object
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    takes_effect: str = LIVE
    check: Callable[[Any], object] | None = None
    constraint: str = ""        # what ``check`` requires, in words, where the description does not say

    @property
    def is_topic(self) -> bool:
        """Whether the value must be a ROS topic name (the name ends in ``_topic``)."""
        return self.name.endswith("_topic")


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a double", str: "a string", bytes: "a byte",
               # what rclpy gives for an empty array in a parameters file or a -p (`providers: []`)
               type(None): "no value (rcl passes an empty array [] as none)"}


def _type_name(value) -> str:
    """The ROS parameter type of ``value`` in words ("an integer", "an array of doubles")."""
    if isinstance(value, (list, tuple, array.array)):      # rclpy gives numeric arrays as array.array
        # any element type: a params file's `weights: [{a: 1}]` (a dict) ended offline in an
        # IndexError traceback here, taking "dict" for "a dict"
        kinds = {_ELEMENT_NAMES.get(type(v), f"{type(v).__name__} values") for v in value}
        return f"an array of {kinds.pop()}" if len(kinds) == 1 else "an array"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_ELEMENT_NAMES = {bool: "booleans", int: "integers", float: "doubles", str: "strings", bytes: "bytes",
                  list: "arrays", tuple: "arrays", dict: "mappings"}


def type_problem(declared, value, other_type: bool = False) -> str | None:
    """Why ``value`` is not of the ROS type of ``declared`` (a value of the parameter's type, such
    as its default), or None. An empty array has no element type to tell (rcl gives it none), so
    it passes for any array type unless ``other_type`` says its ROS type is not the parameter's
    (`ros2 param set` sends ``[]`` as an array of booleans)."""
    expected, got = _type_name(declared), _type_name(value)
    if got == expected or (got == "an array" and expected.startswith("an array") and not other_type):
        return None
    if got == "an array":
        got = "an empty array of another type"
    return f"expected {expected}, got {got}{_how_to_write(expected, got, value)}"


def _how_to_write(expected: str, got: str, value) -> str:
    """How to write a number ``ros2 param set`` sent as another type, or "". It reads its value as
    YAML 1.1: ``1`` is an integer, ``[0, 0, 1]`` an array of integers, and ``1e-3`` a string (a
    float needs a dot there); rclpy refuses each for a double."""
    if (expected, got) == ("a double", "an integer"):
        return f" (write {float(value)!r})"
    if (expected, got) == ("a double", "a string"):
        try:
            number = float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value!r} as a string: write {number!r})" if math.isfinite(number) else ""
    if (expected, got) == ("an array of doubles", "an array of integers") and len(value) <= 16:
        return f" (write {[float(v) for v in value]})"
    return ""


def parameter_problem(spec: ParamSpec, value) -> str | None:
    """What is wrong with ``value`` for ``spec`` (its ROS type, range, choices), or None.

    The one check of a parameter value, at start-up and on every live change (the ROS glue adds
    the topic-name check, which needs rcl)."""
    problem = type_problem(spec.default, value)
    if problem:
        return problem
    expected = _type_name(spec.default)
    elements = list(value) if expected.startswith("an array") else [value]
    if spec.min_value is not None and not all(spec.min_value <= v <= spec.max_value for v in elements):
        return f"out of range [{spec.min_value}, {spec.max_value}]"
    if spec.choices and value not in spec.choices:
        return f"not one of {', '.join(spec.choices)}"
    if spec.check is not None:
        try:
            spec.check(value)
        except ValueError as exc:
            return str(exc)
    return None


def _check_batch_sizes(sizes) -> None:
    """``[0]`` (the backend's default) or sizes the engine is built for (positive, at most
    MAX_BATCH_SIZE): what create_lifter checks at configure."""
    if list(sizes) != [0]:
        from cfi_pose_ros.inference.batching import normalize_batch_sizes    # imports torch: not for [0]

        normalize_batch_sizes(sizes)


def _check_target_from_camera(values) -> None:
    """Seven numbers, finite, a unit quaternion, or all zeros: what configure reads."""
    from cfi_pose_ros.frames import static_target_transform

    static_target_transform(values)


FRAME_NAME_RULE = f"a TF frame name: no spaces, control characters or '//', at most {MAX_FRAME_ID_LENGTH} characters"


def _check_tf_prefix(prefix: str) -> None:
    """The start of every person's frame name (see :func:`frame_name_problem`)."""
    problem = frame_name_problem(prefix, prefix=True)
    if problem:
        raise ValueError(problem)


def _check_target_frame(frame: str) -> None:
    """Empty (the input's frame) or a TF frame name; a leading '/' is dropped as tf2 drops it, and
    what is left must name a frame: ``/`` was taken and meant the input's frame."""
    if frame and not tf2_frame_id(frame):
        raise ValueError("names no frame (tf2 drops a leading '/'); empty = the input's frame")
    problem = frame_name_problem(frame)
    if problem:
        raise ValueError(problem)


# The smallest body_size_prior short of 0 (off): a body 0.42 m tall, smaller than a newborn. The
# prior sets each person's depth (0.5 places them half as far away), so a prior that describes no
# person is no setting of a scene: at 0.001 the demo clip's people, 5 m away, came within the
# 5 cm the root solve needs (root_solver.MIN_SEEN_JOINT_DEPTH_M) and were published root-relative,
# skeletons of 2 mm, without a word, while the set had answered success.
MIN_BODY_SIZE_PRIOR = 0.25


def _check_body_size_prior(prior: float) -> None:
    if 0.0 < prior < MIN_BODY_SIZE_PRIOR:
        raise ValueError(f"below {MIN_BODY_SIZE_PRIOR} (a body {MIN_BODY_SIZE_PRIOR * MEAN_BODY_HEIGHT_M:.2f} m tall) describes "
                         "no person, and places people near the camera where they cannot be solved; 0 = the "
                         "lifter's own size")


RELIABILITY_CHOICES = ("best_effort", "reliable")
KEYPOINTS_IMAGES = ("raw", "rectified")


def reliability_parameters(input_description: str, output_description: str) -> tuple[ParamSpec, ParamSpec]:
    """``input_reliability`` (best effort by default, as camera drivers publish) and
    ``output_reliability`` (reliable) with each node's own descriptions."""
    return (ParamSpec("input_reliability", "best_effort", input_description, choices=RELIABILITY_CHOICES,
                      takes_effect=AT_CONFIGURE),
            ParamSpec("output_reliability", "reliable", output_description, choices=RELIABILITY_CHOICES,
                      takes_effect=AT_CONFIGURE))


# Process-level parameters both nodes declare (read by ``cfi_pose_ros.node.base.run``).
COMMON_NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("executor", "events",
              "rclpy executor: events = the C++ EventsExecutor (lower latency per message), "
              "single_threaded = the classic Python one", choices=("events", "single_threaded"),
              takes_effect=AT_START),
    ParamSpec("autostart", False,
              "configure and activate at start-up (for `ros2 run`; the launch file drives the lifecycle itself)",
              takes_effect=AT_START),
    ParamSpec("warn_no_input_s", 5.0,
              "diagnostics turn WARN when the active node has had no input for this long (no publisher, a QoS "
              "mismatch, a wrong topic name, or an upstream that sends nothing while nobody is in view); 0 = never",
              0.0, 1e6),
)

LIFT_NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    # Topics are relative names, resolved in the node's namespace (/human_pose_3d in the root one):
    # two lifters launched with namespace:=cam_left / cam_right then neither share nor mix topics.
    ParamSpec("input_topic", "human_keypoints_2d",
              "HumanKeypoints2DArray input (2D people of one image)", takes_effect=AT_CONFIGURE),
    ParamSpec("camera_info_topic", "camera_info",
              "sensor_msgs/CameraInfo of the camera the keypoints come from; without it poses are root-relative",
              takes_effect=AT_CONFIGURE),
    # which image the input topic's pixels are of: fixed with the topics, at configure
    ParamSpec("keypoints_image", "raw",
              "the image the 2D keypoints are pixels of: raw = the camera's image_raw (CameraInfo's lens "
              "distortion d is undone, then k places people), rectified = image_rect (no distortion; p's left "
              "3x3 places people, k where p is all zero)", choices=KEYPOINTS_IMAGES, takes_effect=AT_CONFIGURE),
    ParamSpec("output_topic", "human_pose_3d", "HumanPose3DArray output", takes_effect=AT_CONFIGURE),
    ParamSpec("markers_topic", "human_pose_3d/markers", "visualization_msgs/MarkerArray skeletons for RViz",
              takes_effect=AT_CONFIGURE),
    ParamSpec("publish_markers", True, "publish RViz markers"),
    ParamSpec("weights", "", "weights file (.safetensors with its .json beside it); empty = the packaged default, "
              "cfi_h36m_wide_cut (trained with people also 2-15 m away, up to 30 degrees off axis, and cut off "
              "by the image's bottom edge); a bare name = a packaged file (cfi_h36m_wide: the default before, "
              "whole people only; cfi_h36m: Human3.6M's cameras only; cfi_h36m_d128: a quarter of the compute)",
              takes_effect=AT_CONFIGURE),
    ParamSpec("backend", "auto", "inference backend; auto = fastest that works here",
              choices=("auto", "tensorrt", "cuda", "onnxruntime", "torch"), takes_effect=AT_CONFIGURE),
    ParamSpec("precision", "fp32", "numeric precision (fp16/bf16 only on GPU backends)",
              choices=("fp32", "fp16", "bf16"), takes_effect=AT_CONFIGURE),
    ParamSpec("batch_sizes", [0],
              "fixed batch sizes the engine is compiled for; people are padded up to the next one. "
              "[0] = the backend's default: every count 1-16 on CPU (nothing to compile, padding only costs), "
              "1, 2, 4, 8, 16 on GPU (one engine or CUDA graph each)", takes_effect=AT_CONFIGURE,
              check=_check_batch_sizes, constraint="exactly [0], or sizes from 1 to 256 (inference.batching's "
                                                   "MAX_BATCH_SIZE)"),
    ParamSpec("flip_test", False,
              "test-time flip augmentation: each person is also lifted mirrored (in the same batch) and the "
              "two predictions are averaged; more accurate (README: S9 table), costs the model about twice "
              "the rows (README: node latency)"),
    ParamSpec("threads", 1,
              "CPU threads for the CPU backends (0 = the library's default, one per core). One by default: "
              "with 30 Hz input on 2 cores the node's end-to-end p50 and p99 were lower with one than with "
              "two (a second worker must be woken for every frame), and the other core stays free "
              "(benchmarks/bench_node.py --threads 0 measures the library's default)", 0, 256,
              takes_effect=AT_CONFIGURE),
    ParamSpec("engine_cache_dir", "", "where compiled engines are cached (empty = $CFI_POSE_CACHE_DIR, else "
              "$XDG_CACHE_HOME/cfi_pose_ros, else ~/.cache/cfi_pose_ros)",
              takes_effect=AT_CONFIGURE),
    *reliability_parameters("input QoS reliability; best_effort matches camera drivers (sensor data QoS)",
                            "output QoS reliability"),
    ParamSpec("min_keypoint_score", 0.05, "2D joints at or below this score are treated as missing", 0.0, 1.0),
    ParamSpec("min_valid_joints", 8, "people with fewer valid joints are dropped", 1, 17),
    ParamSpec("max_people", 64, "most people lifted per frame (highest scores kept)", 1, 1024),
    ParamSpec("solve_root", True, "place people in metres in the camera frame when CameraInfo is known"),
    ParamSpec("body_size_prior", 1.0,
              f"with CameraInfo, each skeleton is scaled to this times the mean adult body (about {MEAN_BODY_HEIGHT_M} m tall) "
              "before it is placed, so one bad 2D joint cannot change the person's depth through the size the "
              "lifter gives; 0 = keep the lifter's size (README: Robustness)", 0.0, 3.0,
              check=_check_body_size_prior, constraint=f"0, or from {MIN_BODY_SIZE_PRIOR} to 3.0"),
    ParamSpec("depth_topic", "",
              "aligned depth image (registered to the keypoints' image; 16UC1 mm or 32FC1 m); empty = no depth",
              takes_effect=AT_CONFIGURE),
    ParamSpec("depth_window", 5, "depth pixels sampled around the pelvis and hips", 1, 51),
    ParamSpec("depth_body_offset", 0.10, "metres from the body surface the sensor sees to the pelvis joint",
              0.0, 0.5),
    ParamSpec("depth_max_age", 0.05, "largest stamp difference (s) between a depth image and the keypoints",
              0.0, 10.0),
    ParamSpec("smoothing", False, "One-Euro smoothing per person and joint, keyed by tracking id"),
    ParamSpec("smoothing_min_cutoff", 1.0, "One-Euro min cutoff (Hz): lower = smoother when still", 0.001, 100.0),
    ParamSpec("smoothing_beta", 1.0, "One-Euro speed coefficient: higher = less lag when moving", 0.0, 100.0),
    ParamSpec("marker_lifetime", 0.25, "RViz marker lifetime (s), so vanished people disappear", 0.0, 60.0),
    ParamSpec("diagnostics_period", 1.0, "period of /diagnostics updates (s)", 0.05, 60.0),
    ParamSpec("warn_latency_ms", 100.0, "diagnostics turn WARN above this p99 processing latency", 0.0, 1e6),
    ParamSpec("target_frame", "",
              "express every output (keypoints, body poses, header frame_id, markers, TF parent) in this frame; "
              "empty = the input's camera frame. The transform: target_from_camera when given, else tf2 at the "
              "input's stamp; a frame whose transform is unknown is dropped and counted (no_transform)",
              takes_effect=AT_CONFIGURE, check=_check_target_frame, constraint=FRAME_NAME_RULE),
    ParamSpec("target_from_camera", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
              "static transform camera frame -> target_frame as [x, y, z, qx, qy, qz, qw] (metres, unit "
              "quaternion, translation within 1e8 m), for a fixed camera or where tf2 is not installed; all "
              "zeros = not given (tf2 lookup); given without target_frame, configure fails",
              takes_effect=AT_CONFIGURE, check=_check_target_from_camera,
              constraint="7 finite numbers: a unit quaternion and a translation within 1e8 m, or all zeros"),
    ParamSpec("tf_timeout", 0.05, "longest wait (s) for target_frame's transform at the input's stamp", 0.0, 1.0,
              takes_effect=AT_CONFIGURE),
    ParamSpec("publish_tf", True,
              "publish each tracked person's body frame <tf_prefix><id> on /tf, parent = the output frame "
              "(needs tf2_ros; people without an id or a position get none)", takes_effect=AT_CONFIGURE),
    ParamSpec("tf_prefix", "body_", "TF frame name prefix of each person (ros4hri: body_<id>)",
              takes_effect=AT_CONFIGURE, check=_check_tf_prefix, constraint=FRAME_NAME_RULE),
    ParamSpec("tf_joints", False,
              "also publish every joint as the frame <tf_prefix><id>_<joint>, child of the body frame",
              takes_effect=AT_CONFIGURE),
) + COMMON_NODE_PARAMETERS

PARAMETERS_BY_NAME = {p.name: p for p in LIFT_NODE_PARAMETERS}


def lifter_options(value=lambda name: PARAMETERS_BY_NAME[name].default) -> dict:
    """``create_lifter`` keyword arguments from the lifting node's parameters (``value(name)``;
    the defaults when not given), so the node and the benchmarks build the same engine."""
    from cfi_pose_ros.weights import resolve_weights

    sizes = [int(b) for b in value("batch_sizes")]
    return {"weights": resolve_weights(value("weights")), "backend": value("backend"),
            "precision": value("precision"), "batch_sizes": None if sizes == [0] else tuple(sizes),
            "threads": int(value("threads")) or None, "cache_dir": value("engine_cache_dir") or None,
            "flip_test": bool(value("flip_test"))}


TARGET_WITHOUT_FRAME = ("target_from_camera is given but target_frame is empty: set target_frame to the frame "
                        "the transform leads to, or target_from_camera to all zeros")


def lift_configure_problems(value=lambda name: PARAMETERS_BY_NAME[name].default) -> list[str]:
    """What the lifting node's configure refuses in its parameters (``value(name)``) taken together,
    each valid alone: a backend that does not run the precision (for ``auto``: none here does), a
    transform without the frame it leads to. A set cannot refuse these: `ros2 param set` sets one parameter at a time, `ros2 param
    load` one after another, and the value that mends the pair may come next."""
    from cfi_pose_ros.inference.base import check_precision

    problems = []
    if value("backend") != "auto":
        try:
            check_precision(value("backend"), value("precision"))
        except ValueError as error:
            problems.append(str(error))
    elif value("precision") != "fp32":
        # auto takes the first backend that runs it here: on a machine with none (no GPU), `precision
        # fp16` answered a plain success and configure alone said "no backend can run fp16 here"
        from cfi_pose_ros.inference.factory import available_backends

        reasons = available_backends(value("precision"))
        if all(reasons.values()):
            problems.append(f"backend auto: no backend can run {value('precision')} here ("
                            + "; ".join(f"{name}: {why}" for name, why in reasons.items()) + ")")
    if any(value("target_from_camera")) and not tf2_frame_id(value("target_frame")):
        problems.append(TARGET_WITHOUT_FRAME)
    return problems


# The section of the shipped parameters files. A bare `cfi_pose_lifter:` key is matched by rcl
# only to the node in the root namespace: under `namespace:=robot1` (launch) or
# `-r __ns:=/robot1` the file was ignored without a word. `/**/cfi_pose_lifter:` would fix that,
# but `ros2 param load` (rclpy's parser) does not read it; `/**` both apply in any namespace, and
# `ros2 param load --use-wildcard <node> config/lift.yaml` reads it. Each file is given to one node.
PARAMS_FILE_SECTION = "/**"


def parameters_yaml(node_name: str, specs: tuple[ParamSpec, ...], header: str) -> str:
    """A ROS 2 parameters file for ``node_name`` listing ``specs`` with their defaults, each under
    its description, in the section :data:`PARAMS_FILE_SECTION` (the node in any namespace)."""
    def literal(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return f'"{value}"'
        return str(value)

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"# {PARAMS_FILE_SECTION}: {node_name} in any namespace; on a running node: "
              f"ros2 param load --use-wildcard /{node_name} <this file>",
              f"{PARAMS_FILE_SECTION}:", "  ros__parameters:"]
    for spec in specs:
        notes = [f"one of: {', '.join(spec.choices)}"] if spec.choices else []
        if spec.min_value is not None:
            notes.append(f"range [{spec.min_value}, {spec.max_value}]")
        lines.append(f"    # {spec.description}" + (f" ({'; '.join(notes)})" if notes else ""))
        lines.append(f"    {spec.name}: {literal(spec.default)}")
    return "\n".join(lines) + "\n"


LIFT_YAML_HEADER = """Parameters of the cfi_pose_ros lifting node: every one it declares, with its default.
Generated from cfi_pose_ros/node/parameters.py (python -m cfi_pose_ros.node.parameters > config/lift.yaml).
Used by launch/lift.launch.py and by
`ros2 run cfi_pose_ros lift_node --ros-args --params-file config/lift.yaml`."""

if __name__ == "__main__":
    print(parameters_yaml("cfi_pose_lifter", LIFT_NODE_PARAMETERS, LIFT_YAML_HEADER), end="")
