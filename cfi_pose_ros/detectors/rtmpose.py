"""RTMPose (SimCC head) exported by MMDeploy / used by rtmlib, as a top-down keypoint model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..skeleton import COCO_17
from .base import (DetectorModelError, OnnxModelConfig, TensorSpec, check_image, check_output_shape,
                   create_session, normalise_images, numpy_dtype, resolve_input_size, resolve_tensor,
                   run_batched, static_dim)
from .decode import decode_simcc
from .transforms import box_to_center_scale, crops_to_original, warp_crops


@dataclass(kw_only=True)
class RTMPoseConfig(OnnxModelConfig):
    """Pre/post-processing of an RTMPose SimCC export; defaults match the COCO/Body7 256x192 models.

    * ``input_size`` (w, h): read from the model when it fixes it, else 192x256.
    * Each box is enlarged by ``bbox_padding`` and widened or heightened to the
      input's aspect ratio, then warped to the input (MMPose's
      ``TopdownAffine``), ``pad_value`` outside the image.
    * ``mean``/``std`` in the order of the channels fed to the model. MMPose's
      RTMPose configs normalise RGB (``bgr_to_rgb=True``) with ImageNet's
      mean ``(123.675, 116.28, 103.53)``/std ``(58.395, 57.12, 57.375)``: the
      defaults. For a pipeline that feeds BGR set ``input_rgb=False`` and give
      ``mean``/``std`` in BGR order.
    * ``simcc_split_ratio``: SimCC bins per input pixel (2.0 for RTMPose).
    * People go through the model ``max_batch`` at a time when its batch axis
      is dynamic, else one fixed-size batch at a time.
    """
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    input_rgb: bool = True
    bbox_padding: float = 1.25
    pad_value: float = 0.0
    simcc_split_ratio: float = 2.0
    max_batch: int = 16
    input_name: str | None = None
    simcc_x_output: str = "simcc_x"
    simcc_y_output: str = "simcc_y"


class RTMPoseSimCC:
    """COCO-17 keypoints for each person box with an RTMPose SimCC model.

    Model contract (checked when constructed): input ``[B, 3, H, W]`` float;
    outputs ``simcc_x`` ``[B, 17, W * r]`` and ``simcc_y`` ``[B, 17, H * r]``
    with ``r = simcc_split_ratio``. Decoding: see :func:`~.decode.decode_simcc`.
    """
    layout = COCO_17.name

    def __init__(self, config: RTMPoseConfig):
        self.config = config
        name = f"RTMPose model {config.model_path}"
        self.session = create_session(config)
        self._input = resolve_tensor(self.session, TensorSpec(config.input_name, ("B", 3, "H", "W"),
                                                              ("tensor(float)", "tensor(float16)")),
                                     "input", name)
        self.input_size = resolve_input_size(config.input_size, self._input.shape, (192, 256), name)
        width, height = self.input_size
        ratio = config.simcc_split_ratio
        if ratio <= 0:
            raise ValueError(f"simcc_split_ratio must be positive, got {ratio}")
        self._x_spec = TensorSpec(config.simcc_x_output, ("B", 17, int(round(width * ratio))))
        self._y_spec = TensorSpec(config.simcc_y_output, ("B", 17, int(round(height * ratio))))
        resolve_tensor(self.session, self._x_spec, "output", name)
        resolve_tensor(self.session, self._y_spec, "output", name)
        self.static_batch = static_dim(self._input.shape, 0)
        self._dtype = numpy_dtype(self._input.type)
        self._name = name

    @property
    def batched(self) -> bool:
        """True when the model takes any number of people in one run."""
        return self.static_batch is None

    def preprocess(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs ``(P, 3, H, W)`` and the matrices ``(P, 2, 3)`` original -> input."""
        width, height = self.input_size
        centers, sizes = box_to_center_scale(boxes, aspect_ratio=width / height,
                                             padding=self.config.bbox_padding)
        crops, matrices = warp_crops(image_bgr, centers, sizes, self.input_size, self.config.pad_value)
        blob = normalise_images(crops, self.config.mean, self.config.std, self.config.input_rgb, self._dtype)
        return blob, matrices

    def estimate(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(P, 17, 2)`` in original pixels and scores ``(P, 17)`` for boxes ``(P, 4)``."""
        check_image(image_bgr)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 17, 2)), np.zeros((0, 17))
        batch, matrices = self.preprocess(image_bgr, boxes)
        simcc_x, simcc_y = run_batched(self.session, self._input.name, batch,
                                       [self.config.simcc_x_output, self.config.simcc_y_output],
                                       self.static_batch, self.config.max_batch)
        check_output_shape(simcc_x, self._x_spec, self._name, self.config.simcc_x_output)
        check_output_shape(simcc_y, self._y_spec, self._name, self.config.simcc_y_output)
        if simcc_x.shape[0] != len(boxes):
            raise DetectorModelError(f"{self._name}: {len(boxes)} crops in, {simcc_x.shape[0]} out")
        keypoints, scores = decode_simcc(simcc_x, simcc_y, self.config.simcc_split_ratio)
        return crops_to_original(keypoints, matrices), scores
