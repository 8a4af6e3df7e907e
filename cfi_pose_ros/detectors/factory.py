"""Build a detector from a config dataclass or a plain dict (e.g. ROS parameters or YAML).

Dict form, one ``type`` key per model::

    {"type": "top_down", "max_people": 10,
     "person_detector": {"type": "rtmdet", "model_path": ".../rtmdet_nano_person.onnx"},
     "keypoint_model": {"type": "movenet", "model_path": ".../movenet_singlepose_lightning.onnx"}}

    {"type": "yolo_pose", "model_path": ".../yolov8n-pose.onnx", "score_threshold": 0.3}

Every model's inputs and outputs are checked when it is constructed; a model
that does not match its family's contract raises :class:`DetectorModelError`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .base import DetectorModelError, KeypointModel, PersonDetector, PoseDetector2D
from .movenet import MoveNetConfig, MoveNetSinglePose
from .rtmdet import RTMDetConfig, RTMDetPersonDetector
from .rtmpose import RTMPoseConfig, RTMPoseSimCC
from .topdown import TopDownConfig, TopDownPoseDetector
from .yolo_pose import YoloPoseConfig, YoloPoseDetector

PERSON_DETECTORS = {"rtmdet": (RTMDetConfig, RTMDetPersonDetector)}
KEYPOINT_MODELS = {"movenet": (MoveNetConfig, MoveNetSinglePose), "rtmpose": (RTMPoseConfig, RTMPoseSimCC)}
POSE_DETECTORS = {"yolo_pose": YoloPoseConfig, "top_down": TopDownConfig}
_TYPE_OF_CONFIG = {cfg: name for name, (cfg, _) in {**PERSON_DETECTORS, **KEYPOINT_MODELS}.items()}
_TYPE_OF_CONFIG.update({cfg: name for name, cfg in POSE_DETECTORS.items()})


def _build_config(cls: type, values: Mapping[str, Any], where: str) -> Any:
    values = {k: v for k, v in values.items() if k != "type"}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    converted = {}
    for key, value in values.items():
        # YAML/ROS give lists; the dataclasses hold tuples (sizes, mean/std, providers).
        if isinstance(value, list) and key != "providers":
            value = tuple(value)
        elif key == "providers" and isinstance(value, (list, tuple)):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        converted[key] = value
    return cls(**converted)


def _config_of(value: Any, registry: Mapping[str, Any], where: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a config dataclass or a dict with a 'type' key, got "
                         f"{type(value).__name__}")
    kind = value.get("type")
    if kind not in registry:
        raise ValueError(f"{where}: unknown type {kind!r}; expected one of {sorted(registry)}")
    entry = registry[kind]
    cls = entry[0] if isinstance(entry, tuple) else entry
    return _build_config(cls, value, where)


def config_from_dict(config: Mapping[str, Any] | Any) -> YoloPoseConfig | TopDownConfig:
    """The config dataclass described by ``config`` (a dict as in the module docstring)."""
    config = _config_of(config, POSE_DETECTORS, "detector config")
    if isinstance(config, TopDownConfig):
        config = dataclasses.replace(
            config,
            person_detector=_config_of(config.person_detector, PERSON_DETECTORS, "person_detector"),
            keypoint_model=_config_of(config.keypoint_model, KEYPOINT_MODELS, "keypoint_model"))
    return config


def create_person_detector(config: Mapping[str, Any] | Any) -> PersonDetector:
    config = _config_of(config, PERSON_DETECTORS, "person_detector")
    return PERSON_DETECTORS[_kind(config, PERSON_DETECTORS)][1](config)


def create_keypoint_model(config: Mapping[str, Any] | Any) -> KeypointModel:
    config = _config_of(config, KEYPOINT_MODELS, "keypoint_model")
    return KEYPOINT_MODELS[_kind(config, KEYPOINT_MODELS)][1](config)


def _kind(config: Any, registry: Mapping[str, Any]) -> str:
    kind = _TYPE_OF_CONFIG.get(type(config))
    if kind not in registry:
        raise ValueError(f"{type(config).__name__} is not one of {sorted(registry)}")
    return kind


def create_detector(config: Mapping[str, Any] | Any) -> PoseDetector2D:
    """A :class:`~.base.PoseDetector2D` from a config (dataclass or dict); every model is loaded
    and its inputs/outputs validated now (:class:`DetectorModelError` on a mismatch)."""
    config = config_from_dict(config)
    if isinstance(config, YoloPoseConfig):
        return YoloPoseDetector(config)
    if isinstance(config, TopDownConfig):
        return TopDownPoseDetector(create_person_detector(config.person_detector),
                                   create_keypoint_model(config.keypoint_model),
                                   max_people=config.max_people, config=config)
    raise ValueError(f"unsupported detector config {type(config).__name__}")


__all__ = ["create_detector", "create_person_detector", "create_keypoint_model", "config_from_dict",
           "DetectorModelError"]
