"""Ultralytics YOLOv8/YOLO11-pose: people and their keypoints in one model (bottom-up boxes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..skeleton import COCO_17
from .base import (DetectorModelError, Detections2D, OnnxModelConfig, TensorSpec, check_image,
                   check_one_image_batch, create_session, normalise_images, numpy_dtype, resolve_input_size,
                   resolve_tensor)
from .decode import decode_yolo_pose
from .transforms import letterbox


@dataclass(kw_only=True)
class YoloPoseConfig(OnnxModelConfig):
    """Pre/post-processing of an Ultralytics pose export (``yolo export format=onnx``); defaults
    match its ``predict`` defaults.

    * ``input_size`` (w, h): read from the model when it fixes it, else 640x640;
      letterboxed (aspect kept, ``pad_value`` 114, centred padding), RGB, /255.
    * ``score_threshold`` 0.25 (Ultralytics ``conf``), ``iou_threshold`` 0.7
      (``iou``) for the class-agnostic NMS done here (the export has none),
      at most ``max_people``.
    * ``keypoint_logits``: the export already applies the sigmoid to keypoint
      visibilities; set True for a model that outputs raw logits.
    """
    input_size: tuple[int, int] | None = None
    pad_value: float = 114.0
    letterbox_center: bool = True
    score_threshold: float = 0.25
    iou_threshold: float = 0.7
    max_people: int = 100
    keypoint_logits: bool = False
    input_name: str | None = None
    output_name: str | None = None


class YoloPoseDetector:
    """:class:`~.base.PoseDetector2D` on an Ultralytics YOLO-pose ONNX model.

    Model contract (checked when constructed): input ``[1, 3, H, W]`` float;
    output ``[1, 56, N]`` (cx, cy, w, h, person score, 17 x (x, y, visibility)
    in input pixels), or its transpose ``[1, N, 56]``.
    """
    layout = COCO_17.name
    channels = 5 + 3 * 17

    def __init__(self, config: YoloPoseConfig):
        self.config = config
        name = f"YOLO-pose model {config.model_path}"
        self.session = create_session(config)
        self._input = resolve_tensor(self.session, TensorSpec(config.input_name, ("B", 3, "H", "W"),
                                                              ("tensor(float)", "tensor(float16)")),
                                     "input", name)
        check_one_image_batch(self._input, name)
        self._output = resolve_tensor(self.session, TensorSpec(config.output_name, ("B", "C", "N")),
                                      "output", name)
        self.input_size = resolve_input_size(config.input_size, self._input.shape, (640, 640), name)
        self._dtype = numpy_dtype(self._input.type)
        self._name = name
        shape = list(self._output.shape)
        fixed = [d for d in shape[1:] if isinstance(d, int) and d > 0]
        if len(fixed) < 2 and self.channels not in fixed:
            # the export leaves the channel axis open (e.g. dynamic=True: ['batch', 84, 'anchors']): run it once
            width, height = self.input_size
            blob, _ = self.preprocess(np.full((height, width, 3), 114, np.uint8))
            try:
                (probe,) = self.session.run([self._output.name], {self._input.name: blob})
            except Exception as exc:  # onnxruntime raises its own exception types
                raise DetectorModelError(f"{name}: a test run on a {width}x{height} input failed: {exc}") from exc
            shape = list(np.shape(probe))
            fixed = shape[1:] if len(shape) == 3 else []
        if self.channels not in fixed:
            raise DetectorModelError(
                f"{name}: expected output [B,{self.channels},N] (cx, cy, w, h, score, 17 x (x, y, v)); "
                f"model has outputs: '{self._output.name}' {shape} {self._output.type}")

    def preprocess(self, image_bgr: np.ndarray):
        """The model input ``(1, 3, H, W)`` and the :class:`~.transforms.Letterbox` that made it."""
        check_image(image_bgr)
        padded, box = letterbox(image_bgr, self.input_size, self.config.pad_value,
                                center=self.config.letterbox_center)
        blob = normalise_images(padded[None], (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), True, self._dtype)
        return blob, box

    def detect(self, image_bgr: np.ndarray) -> Detections2D:
        blob, box = self.preprocess(image_bgr)
        (output,) = self.session.run([self._output.name], {self._input.name: blob})
        output = np.asarray(output)
        if output.ndim != 3 or self.channels not in output.shape[1:]:
            raise DetectorModelError(f"{self._name}: expected output [1,{self.channels},N], model returned "
                                     f"'{self._output.name}' with shape {list(output.shape)}")
        boxes, box_scores, keypoints, scores = decode_yolo_pose(
            output[0], self.config.score_threshold, self.config.iou_threshold, self.config.max_people,
            17, self.config.keypoint_logits)
        return Detections2D(box.to_original(keypoints), scores, box.boxes_to_original(boxes), box_scores,
                            self.layout)
