"""2D human pose detectors on ONNX Runtime (ROS-free).

One interface, :class:`PoseDetector2D` (``detect(image_bgr) -> Detections2D``),
and its implementations: :class:`YoloPoseDetector` (one model) and
:class:`TopDownPoseDetector` (:class:`RTMDetPersonDetector` then
:class:`MoveNetSinglePose` or :class:`RTMPoseSimCC`). Build one from a config
with :func:`create_detector`. The pre/post-processing is in
:mod:`.transforms` and :mod:`.decode` as pure functions.
"""
from .base import (Detections2D, DetectorModelError, KeypointModel, OnnxModelConfig, PersonDetector,
                   PoseDetector2D)
from .factory import config_from_dict, create_detector, create_keypoint_model, create_person_detector
from .movenet import MoveNetConfig, MoveNetSinglePose
from .rtmdet import RTMDetConfig, RTMDetPersonDetector
from .rtmpose import RTMPoseConfig, RTMPoseSimCC
from .topdown import TopDownConfig, TopDownPoseDetector
from .yolo_pose import YoloPoseConfig, YoloPoseDetector

__all__ = [
    "Detections2D", "DetectorModelError", "KeypointModel", "OnnxModelConfig", "PersonDetector",
    "PoseDetector2D", "config_from_dict", "create_detector", "create_keypoint_model",
    "create_person_detector", "MoveNetConfig", "MoveNetSinglePose", "RTMDetConfig",
    "RTMDetPersonDetector", "RTMPoseConfig", "RTMPoseSimCC", "TopDownConfig", "TopDownPoseDetector",
    "YoloPoseConfig", "YoloPoseDetector",
]
