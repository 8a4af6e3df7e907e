"""MoveNet SinglePose (Lightning/Thunder) as the keypoint stage of a top-down pipeline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..skeleton import COCO_17
from .base import (OnnxModelConfig, TensorSpec, check_image, check_output_shape, create_session, numpy_dtype,
                   resolve_input_size, resolve_tensor, run_batched, static_dim)
from .decode import decode_movenet
from .transforms import box_to_center_scale, crops_to_original, warp_crops


@dataclass(kw_only=True)
class MoveNetConfig(OnnxModelConfig):
    """Pre/post-processing of MoveNet SinglePose; defaults match Lightning (192x192).

    Each person box becomes a square crop of ``crop_scale`` times its long side,
    centred on the box, filled with ``pad_value`` where it leaves the image,
    resized to the model input (RGB, the model's own integer or float type,
    0..255, no normalisation). ``input_size`` (w, h) is read from the model
    when it fixes it (192 Lightning, 256 Thunder). ``max_batch`` bounds one
    run of a model whose batch axis is dynamic (the published ones fix it at 1).
    """
    input_size: tuple[int, int] | None = None
    crop_scale: float = 1.25
    pad_value: float = 0.0
    max_batch: int = 16
    input_name: str | None = None
    output_name: str | None = None


class MoveNetSinglePose:
    """COCO-17 keypoints for each person box, with MoveNet SinglePose on a square crop.

    Model contract (checked when constructed): input ``[B, H, W, 3]`` RGB
    (uint8, int32 or float); output ``[B, 1, 17, 3]`` = (y, x, score), y and x
    normalised to [0, 1] of the input.
    """
    layout = COCO_17.name

    def __init__(self, config: MoveNetConfig):
        self.config = config
        name = f"MoveNet model {config.model_path}"
        self.session = create_session(config)
        self._input = resolve_tensor(
            self.session, TensorSpec(config.input_name, ("B", "H", "W", 3),
                                     ("tensor(uint8)", "tensor(int32)", "tensor(float)")), "input", name)
        self._output_spec = TensorSpec(config.output_name, ("B", 1, 17, 3))
        self._output = resolve_tensor(self.session, self._output_spec, "output", name)
        self.input_size = resolve_input_size(config.input_size, self._input.shape, (192, 192), name,
                                             channels_last=True)
        self.static_batch = static_dim(self._input.shape, 0)
        self._dtype = numpy_dtype(self._input.type)
        self._name = name

    def preprocess(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs ``(P, H, W, 3)`` RGB and the matrices ``(P, 2, 3)`` original -> input."""
        width, height = self.input_size
        centers, sizes = box_to_center_scale(boxes, aspect_ratio=width / height, padding=self.config.crop_scale)
        crops, matrices = warp_crops(image_bgr, centers, sizes, self.input_size, self.config.pad_value)
        return np.ascontiguousarray(crops[..., ::-1], dtype=self._dtype), matrices

    def estimate(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(P, 17, 2)`` in original pixels and scores ``(P, 17)`` for boxes ``(P, 4)``."""
        check_image(image_bgr)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 17, 2)), np.zeros((0, 17))
        batch, matrices = self.preprocess(image_bgr, boxes)
        (output,) = run_batched(self.session, self._input.name, batch, [self._output.name],
                                self.static_batch, self.config.max_batch)
        check_output_shape(output, self._output_spec, self._name, self._output.name)
        keypoints, scores = decode_movenet(output, self.input_size)
        return crops_to_original(keypoints, matrices), scores
