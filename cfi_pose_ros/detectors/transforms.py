"""Image-to-model-input geometry and its inverse, as pure functions.

Two families:

* **Letterbox** (whole-image detectors): resize keeping the aspect ratio so
  the image fits the model input, then pad. MMDet pads bottom/right
  (``center=False``), Ultralytics pads both sides equally (``center=True``).
  :class:`Letterbox` records the scale and offset so points and boxes map back.
* **Affine crop** (top-down keypoint models): a box becomes a centre and a
  size ("scale" in MMPose's words) enlarged by ``padding`` and widened or
  heightened to the model's aspect ratio; a 2x3 matrix maps that rectangle
  onto the model input (the rectangle's centre onto the input's centre
  ``(w/2, h/2)``, as MMPose's ``get_warp_matrix`` does). Parts outside the
  image are filled with ``pad_value``.

Points are ``(..., 2)`` arrays of (x, y) pixels; sizes are (width, height).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``image_size`` was placed in a model input of ``input_size``.

    ``input = original * scale + pad`` per axis.
    """
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    image_size: tuple[int, int]
    input_size: tuple[int, int]

    def to_input(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return points * [self.scale_x, self.scale_y] + [self.pad_x, self.pad_y]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return (points - [self.pad_x, self.pad_y]) / [self.scale_x, self.scale_y]

    def boxes_to_original(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """``(P, 4)`` x1, y1, x2, y2 boxes from input to original pixels (clipped to the image)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = self.to_original(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        if clip:
            width, height = self.image_size
            out[:, 0::2] = np.clip(out[:, 0::2], 0.0, width)
            out[:, 1::2] = np.clip(out[:, 1::2], 0.0, height)
        return out


def letterbox_params(image_size: tuple[int, int], input_size: tuple[int, int],
                     center: bool = False) -> Letterbox:
    """Scale and padding that fit ``image_size`` (w, h) into ``input_size`` (w, h) keeping the aspect ratio."""
    width, height = int(image_size[0]), int(image_size[1])
    in_w, in_h = int(input_size[0]), int(input_size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image has zero size ({width}x{height})")
    ratio = min(in_w / width, in_h / height)
    new_w = min(in_w, max(1, int(round(width * ratio))))
    new_h = min(in_h, max(1, int(round(height * ratio))))
    pad_x = pad_y = 0
    if center:
        # Ultralytics' rounding: the odd pixel goes to the right/bottom.
        pad_x = int(round((in_w - new_w) / 2 - 0.1))
        pad_y = int(round((in_h - new_h) / 2 - 0.1))
    return Letterbox(new_w / width, new_h / height, float(pad_x), float(pad_y),
                     (width, height), (in_w, in_h))


def letterbox(image: np.ndarray, input_size: tuple[int, int], pad_value: float = 114,
              center: bool = False, interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, C) into ``input_size`` (w, h) keeping its aspect ratio, pad the rest."""
    height, width = image.shape[:2]
    box = letterbox_params((width, height), input_size, center)
    new_w = int(round(width * box.scale_x))
    new_h = int(round(height * box.scale_y))
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(
        image, (new_w, new_h), interpolation=interpolation)
    in_w, in_h = box.input_size
    out = np.full((in_h, in_w) + image.shape[2:], pad_value, dtype=image.dtype)
    x0, y0 = int(box.pad_x), int(box.pad_y)
    out[y0:y0 + new_h, x0:x0 + new_w] = resized
    return out, box


def box_to_center_scale(boxes: np.ndarray, aspect_ratio: float | None = None,
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(P, 4)`` x1, y1, x2, y2 -> centres ``(P, 2)`` and crop sizes ``(P, 2)`` (w, h).

    The size is the box's enlarged by ``padding``, then the shorter side is
    grown until ``w / h == aspect_ratio`` (when given), so the crop keeps the
    person's proportions in the model input.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    sizes = (boxes[:, 2:] - boxes[:, :2]) * float(padding)
    sizes = np.maximum(sizes, 1e-3)
    if aspect_ratio is not None:
        w, h = sizes[:, 0].copy(), sizes[:, 1].copy()
        wider = w > h * aspect_ratio
        sizes[:, 1] = np.where(wider, w / aspect_ratio, h)
        sizes[:, 0] = np.where(wider, w, h * aspect_ratio)
    return centers, sizes


def crop_matrix(center: np.ndarray, size: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """2x3 matrix taking original pixels to the model input: the ``size`` (w, h) rectangle
    centred on ``center`` fills the ``input_size`` (w, h) input."""
    in_w, in_h = float(input_size[0]), float(input_size[1])
    sx, sy = in_w / float(size[0]), in_h / float(size[1])
    return np.array([[sx, 0.0, in_w / 2.0 - sx * float(center[0])],
                     [0.0, sy, in_h / 2.0 - sy * float(center[1])]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, -linear_inv @ matrix[:, 2:]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to points ``(..., 2)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_crops(image: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
               input_size: tuple[int, int], pad_value: float = 0,
               interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Cut one model input per person: crops ``(P, h, w, C)`` and their matrices ``(P, 2, 3)``
    (original -> input; map predictions back with :func:`invert_affine`)."""
    in_w, in_h = int(input_size[0]), int(input_size[1])
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    channels = image.shape[2:] if image.ndim == 3 else ()
    crops = np.empty((len(centers), in_h, in_w) + channels, dtype=image.dtype)
    matrices = np.empty((len(centers), 2, 3))
    border = (pad_value,) * 4
    for i, (center, size) in enumerate(zip(centers, sizes)):
        matrices[i] = crop_matrix(center, size, (in_w, in_h))
        crops[i] = cv2.warpAffine(image, matrices[i], (in_w, in_h), flags=interpolation,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return crops, matrices


def crops_to_original(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Points ``(P, K, 2)`` in each person's model input back to original pixels."""
    points = np.asarray(points, dtype=np.float64)
    out = np.empty_like(points)
    for i, matrix in enumerate(np.asarray(matrices)):
        out[i] = apply_affine(invert_affine(matrix), points[i])
    return out
