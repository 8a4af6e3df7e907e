"""Pinhole camera with Brown-Conrady distortion, and the 2D normalisation the model expects.

Conventions: camera optical frame (x right, y down, z forward, metres);
pixels with the origin at the image's top-left corner.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    # radial (k1, k2, k3) and tangential (p1, p2) distortion, as Human3.6M stores them
    radial: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tangential: tuple[float, float] = (0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def validate(self) -> None:
        """Raise ``ValueError`` for intrinsics that cannot place a person in 3D."""
        values = np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"camera intrinsics contain NaN or inf: {values.tolist()}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")


def world_to_camera(points_world: np.ndarray, rotation_world_to_cam: np.ndarray,
                    center_world: np.ndarray) -> np.ndarray:
    """``X_cam = R (X_world - C)`` for points ``(..., 3)``."""
    return (np.asarray(points_world) - np.asarray(center_world)) @ np.asarray(rotation_world_to_cam).T


def project(points_cam: np.ndarray, camera: CameraIntrinsics) -> np.ndarray:
    """Project camera-frame points ``(..., 3)`` to pixels ``(..., 2)`` with distortion.

    Distortion is applied exactly as the Human3.6M/3d-pose-baseline code does,
    so that "ground-truth 2D" matches the literature's.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    r2 = np.sum(xy ** 2, axis=-1, keepdims=True)
    k1, k2, k3 = camera.radial
    p1, p2 = camera.tangential
    radial = 1.0 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = p1 * xy[..., 1:2] + p2 * xy[..., 0:1]
    distorted = xy * (radial + tan) + np.array([p2, p1]) * r2
    return distorted * np.array([camera.fx, camera.fy]) + np.array([camera.cx, camera.cy])


def rescale_camera_matrix(k: np.ndarray, from_size: tuple[float, float], to_size: tuple[float, float]) -> np.ndarray:
    """K of an image of ``from_size`` (width, height) for the same view resized to ``to_size``: the
    focal lengths and skew scale with the image, the principal point keeps the pixel-centre
    convention (centres at integer coordinates, as OpenCV resizes)."""
    k = np.array(k, dtype=np.float64)
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    k[0, :2] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def normalize_screen(pixels: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels -> the model's input space: ``uv / w * 2 - [1, h / w]``.

    x spans [-1, 1] and y keeps the aspect ratio, so the image's own size must
    be used (the most common cause of "random" 3D output in lifting models).
    """
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.float64)
    offset = np.stack(np.broadcast_arrays(np.ones_like(height), height / width), axis=-1)
    return pixels / width[..., None, None] * 2.0 - offset[..., None, :]


def denormalize_screen(normalized: np.ndarray, width: float, height: float) -> np.ndarray:
    """Inverse of :func:`normalize_screen`."""
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    offset = np.stack(np.broadcast_arrays(np.ones_like(height), height / width), axis=-1)
    return (np.asarray(normalized) + offset[..., None, :]) * width[..., None, None] / 2.0
