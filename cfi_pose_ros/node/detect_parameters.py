"""Every parameter of the 2D detector node, as data, and the detector config they describe.

The node (``detect_node.py``) declares exactly these, ``config/detect.yaml``
lists exactly these, and the launch file's detector arguments name some of
them; tests check all three agree. :func:`detector_config` turns the values
into the dict :func:`cfi_pose_ros.detectors.create_detector` takes (ROS-free,
so it is tested without a node).
"""
from __future__ import annotations

from typing import Any, Mapping

from cfi_pose_ros.image import DEFAULT_MAX_IMAGE_PIXELS
from cfi_pose_ros.node.parameters import (AT_CONFIGURE, COMMON_NODE_PARAMETERS, ParamSpec, parameters_yaml,
                                         reliability_parameters)

DETECT_NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("image_topic", "image_raw",
              "camera image input: sensor_msgs/Image, or sensor_msgs/CompressedImage when `compressed` "
              "(then name the transport topic itself, e.g. image_raw/compressed)", takes_effect=AT_CONFIGURE),
    ParamSpec("compressed", False, "subscribe to sensor_msgs/CompressedImage (JPEG/PNG) instead of Image",
              takes_effect=AT_CONFIGURE),
    ParamSpec("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
              "compressed images whose header declares more pixels (width x height) than this are dropped "
              "without being decoded (image_too_large): a small PNG can declare a gigabyte of pixels",
              1, 2 ** 31, takes_effect=AT_CONFIGURE),
    ParamSpec("keypoints_topic", "human_keypoints_2d",
              "HumanKeypoints2DArray output (the lifter's input_topic)", takes_effect=AT_CONFIGURE),
    ParamSpec("detector", "top_down",
              "2D pose detector: top_down = person detector + keypoint model on each box; "
              "yolo_pose = one YOLO-pose model", choices=("top_down", "yolo_pose"), takes_effect=AT_CONFIGURE),
    ParamSpec("person_detector_model", "",
              "top_down: person detector ONNX file (MMDeploy RTMDet end2end export)", takes_effect=AT_CONFIGURE),
    ParamSpec("keypoint_model", "", "top_down: keypoint model ONNX file (MoveNet SinglePose or RTMPose)",
              takes_effect=AT_CONFIGURE),
    ParamSpec("keypoint_model_type", "movenet", "top_down: which family keypoint_model is",
              choices=("movenet", "rtmpose"), takes_effect=AT_CONFIGURE),
    ParamSpec("yolo_pose_model", "", "yolo_pose: Ultralytics YOLO-pose ONNX file", takes_effect=AT_CONFIGURE),
    ParamSpec("providers", ["CPUExecutionProvider"],
              "ONNX Runtime execution providers in priority order (e.g. CUDAExecutionProvider, "
              "CPUExecutionProvider)", takes_effect=AT_CONFIGURE),
    ParamSpec("strict_providers", False,
              "fail configure when a listed provider is unavailable instead of falling back to the CPU",
              takes_effect=AT_CONFIGURE),
    ParamSpec("threads", 0, "ONNX Runtime intra-op threads per model (0 = library default)", 0, 256,
              takes_effect=AT_CONFIGURE),
    ParamSpec("person_score_threshold", 0.3, "person boxes scoring below this are ignored", 0.0, 1.0,
              takes_effect=AT_CONFIGURE),
    ParamSpec("nms_iou_threshold", 0.7, "yolo_pose: IoU above which overlapping boxes are suppressed",
              0.0, 1.0, takes_effect=AT_CONFIGURE),
    ParamSpec("max_people", 20, "most people per image (highest box scores kept)", 1, 1000, takes_effect=AT_CONFIGURE),
    ParamSpec("person_detector_every", 3,
              "top_down: run the person detector on every n-th image (1 = every image); in between, each "
              "person's box follows their keypoints of the previous image, and a person whose keypoints "
              "fade triggers a detection at once", 1, 100, takes_effect=AT_CONFIGURE),
    ParamSpec("tracking", True, "give each person a tracking id stable across frames (box IoU tracker)"),
    ParamSpec("tracker_min_iou", 0.3, "tracker: least box IoU to continue a track", 0.0, 1.0,
              takes_effect=AT_CONFIGURE),
    ParamSpec("tracker_min_hits", 1, "tracker: frames a new track must be seen before it gets an id", 1, 100,
              takes_effect=AT_CONFIGURE),
    ParamSpec("tracker_max_age", 1.0, "tracker: seconds a lost track is kept before its id is retired",
              0.0, 3600.0, takes_effect=AT_CONFIGURE),
    ParamSpec("tracker_id_style", "int", "tracker ids: int = 1, 2, ...; ros4hri = 5 random letters",
              choices=("int", "ros4hri"), takes_effect=AT_CONFIGURE),
    *reliability_parameters("image QoS reliability; best_effort matches camera drivers (sensor data QoS)",
                            "keypoints output QoS reliability"),
    ParamSpec("diagnostics_period", 1.0, "period of /diagnostics updates (s)", 0.05, 60.0),
    ParamSpec("warn_latency_ms", 100.0, "diagnostics turn WARN above this p99 per-frame processing time",
              0.0, 1e6),
) + COMMON_NODE_PARAMETERS

DETECT_PARAMETERS_BY_NAME = {p.name: p for p in DETECT_NODE_PARAMETERS}


def detector_config(values: Mapping[str, Any]) -> dict:
    """The ``create_detector`` dict for the parameter ``values`` (name -> value, defaults filled in).

    Model paths are passed as given: an empty or missing file is reported by
    the detector itself (:class:`~cfi_pose_ros.detectors.DetectorModelError`).
    """
    v = {spec.name: spec.default for spec in DETECT_NODE_PARAMETERS} | dict(values)
    runtime = {"providers": [str(p) for p in v["providers"]], "strict_providers": bool(v["strict_providers"]),
               "intra_op_num_threads": int(v["threads"])}
    if v["detector"] == "yolo_pose":
        return {"type": "yolo_pose", "model_path": str(v["yolo_pose_model"]),
                "score_threshold": float(v["person_score_threshold"]),
                "iou_threshold": float(v["nms_iou_threshold"]), "max_people": int(v["max_people"]), **runtime}
    if v["detector"] == "top_down":
        return {"type": "top_down", "max_people": int(v["max_people"]),
                "detect_every": int(v["person_detector_every"]),
                "person_detector": {"type": "rtmdet", "model_path": str(v["person_detector_model"]),
                                    "score_threshold": float(v["person_score_threshold"]),
                                    "max_people": int(v["max_people"]), **runtime},
                "keypoint_model": {"type": str(v["keypoint_model_type"]), "model_path": str(v["keypoint_model"]),
                                   **runtime}}
    raise ValueError(f"parameter detector={v['detector']!r} is not one of "
                     f"{DETECT_PARAMETERS_BY_NAME['detector'].choices}")


def tracker_config(values: Mapping[str, Any]) -> dict:
    """Keyword arguments of :class:`cfi_pose_ros.tracking.TrackerConfig` for the parameter ``values``."""
    v = {spec.name: spec.default for spec in DETECT_NODE_PARAMETERS} | dict(values)
    return {"min_iou": float(v["tracker_min_iou"]), "min_hits": int(v["tracker_min_hits"]),
            "max_age": float(v["tracker_max_age"]), "id_style": str(v["tracker_id_style"])}


DETECT_YAML_HEADER = """Parameters of the cfi_pose_ros 2D detector node: every one it declares, with its default.
Generated from cfi_pose_ros/node/detect_parameters.py
(python -m cfi_pose_ros.node.detect_parameters > config/detect.yaml).
Used by launch/lift.launch.py (input:=image) and by
`ros2 run cfi_pose_ros detect_node --ros-args --params-file config/detect.yaml`.
Bring your own ONNX models: set person_detector_model + keypoint_model (top_down) or
yolo_pose_model (yolo_pose); configure fails with the reason when a file is missing or is not
the model family it is configured as."""

if __name__ == "__main__":
    print(parameters_yaml("cfi_pose_detector", DETECT_NODE_PARAMETERS, DETECT_YAML_HEADER), end="")
