"""RTMDet person detector exported by MMDeploy ("end2end": NMS inside the model)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import (DetectorModelError, OnnxModelConfig, TensorSpec, check_image, check_one_image_batch,
                   check_output_shape, create_session, normalise_images, numpy_dtype, resolve_input_size,
                   resolve_tensor)
from .decode import decode_rtmdet
from .transforms import letterbox


@dataclass(kw_only=True)
class RTMDetConfig(OnnxModelConfig):
    """Pre/post-processing of an MMDeploy RTMDet export; defaults match RTMDet-nano person.

    * ``input_size`` (w, h): read from the model when it fixes it, else 320x320.
      The image is resized keeping its aspect ratio to fit, and padded at the
      bottom/right with ``pad_value`` (MMDet's ``Resize(keep_ratio=True)`` + ``Pad``).
    * ``mean``/``std`` in the order of the channels fed to the model: BGR
      (``input_rgb=False``) for MMDet's RTMDet configs.
    * ``score_threshold`` on the box score; ``person_label`` the class kept
      (None keeps all classes); at most ``max_people`` boxes, best first.
    """
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (103.53, 116.28, 123.675)
    std: tuple[float, float, float] = (57.375, 57.12, 58.395)
    input_rgb: bool = False
    pad_value: float = 114.0
    score_threshold: float = 0.3
    person_label: int | None = 0
    max_people: int = 20
    input_name: str | None = None
    dets_output: str = "dets"
    labels_output: str = "labels"


class RTMDetPersonDetector:
    """Person boxes in original pixels from an MMDeploy RTMDet ``end2end`` ONNX model.

    Model contract (checked when constructed): input ``[B, 3, H, W]`` float;
    outputs ``dets`` ``[B, N, 5]`` (x1, y1, x2, y2, score in input pixels) and
    ``labels`` ``[B, N]`` integer class ids.
    """

    def __init__(self, config: RTMDetConfig):
        self.config = config
        name = f"RTMDet model {config.model_path}"
        self.session = create_session(config)
        self._input = resolve_tensor(self.session, TensorSpec(config.input_name, ("B", 3, "H", "W"),
                                                              ("tensor(float)", "tensor(float16)")),
                                     "input", name)
        check_one_image_batch(self._input, name)
        self._dets_spec = TensorSpec(config.dets_output, ("B", "N", 5))
        self._labels_spec = TensorSpec(config.labels_output, ("B", "N"),
                                       ("tensor(int64)", "tensor(int32)", "tensor(float)"))
        resolve_tensor(self.session, self._dets_spec, "output", name)
        resolve_tensor(self.session, self._labels_spec, "output", name)
        self.input_size = resolve_input_size(config.input_size, self._input.shape, (320, 320), name)
        self._dtype = numpy_dtype(self._input.type)
        self._name = name

    def preprocess(self, image_bgr: np.ndarray):
        """The model input ``(1, 3, H, W)`` and the :class:`~.transforms.Letterbox` that made it."""
        check_image(image_bgr)
        padded, box = letterbox(image_bgr, self.input_size, self.config.pad_value, center=False)
        blob = normalise_images(padded[None], self.config.mean, self.config.std, self.config.input_rgb,
                                self._dtype)
        return blob, box

    def detect_boxes(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes ``(P, 4)`` x1, y1, x2, y2 in original pixels and scores ``(P,)``, best first."""
        blob, box = self.preprocess(image_bgr)
        dets, labels = self.session.run([self.config.dets_output, self.config.labels_output],
                                        {self._input.name: blob})
        check_output_shape(dets, self._dets_spec, self._name, self.config.dets_output)
        if labels.shape != dets.shape[:2]:
            # one label per box: others failed every frame in the decoding's broadcast, or one
            # label was broadcast to every box
            raise DetectorModelError(f"{self._name}: '{self.config.labels_output}' has shape {list(labels.shape)}, "
                                     f"'{self.config.dets_output}' {list(dets.shape)}: expected one label per box, "
                                     f"{list(dets.shape[:2])}")
        boxes, scores = decode_rtmdet(dets[0], labels[0], self.config.score_threshold,
                                      self.config.person_label)
        boxes, scores = boxes[:self.config.max_people], scores[:self.config.max_people]
        boxes = box.boxes_to_original(boxes)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[valid], scores[valid]
