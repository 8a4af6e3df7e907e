"""Pose error metrics as the 3D pose literature reports them.

* MPJPE: mean Euclidean distance per joint (Protocol #1).
* P-MPJPE: MPJPE after a per-pose similarity (rotation, uniform scale,
  translation) Procrustes alignment of the prediction to the truth (Protocol #2).

:class:`PerClassError` accumulates per-frame errors by class (e.g. H36M action)
and reports each class's frame average and their unweighted mean, the number
papers print as "Avg".
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def mpjpe(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pose mean joint error ``(...,)`` for poses ``(..., J, 3)``, in the input's unit."""
    return np.linalg.norm(np.asarray(predicted) - np.asarray(target), axis=-1).mean(axis=-1)


def procrustes_align(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Best similarity transform of each ``predicted`` pose onto ``target`` (both ``(N, J, 3)``)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    # A pose with a NaN or infinite joint has no alignment: LAPACK's SVD refuses the whole batch
    # ("SVD did not converge"), so such a pose is aligned as zeros and comes out NaN, alone.
    unusable = ~(np.isfinite(predicted).all(axis=(1, 2)) & np.isfinite(target).all(axis=(1, 2)))
    if unusable.any():
        predicted, target = predicted.copy(), target.copy()
        predicted[unusable] = target[unusable] = 0.0
    mu_p = predicted.mean(axis=1, keepdims=True)
    mu_t = target.mean(axis=1, keepdims=True)
    p0, t0 = predicted - mu_p, target - mu_t
    norm_p = np.linalg.norm(p0, axis=(1, 2), keepdims=True)
    norm_t = np.linalg.norm(t0, axis=(1, 2), keepdims=True)
    # A pose whose joints all coincide (a lifter collapsed to a point) has no spread to divide by:
    # 0/0 gave NaN, and the SVD of it failed the whole evaluation. Left unscaled (zeros), the
    # cross-covariance is 0, so the scale below is 0 and the pose is aligned onto the other's
    # centroid: the best similarity there is (for a point target the error is then 0).
    norm_p, norm_t = np.where(norm_p > 0, norm_p, 1.0), np.where(norm_t > 0, norm_t, 1.0)
    p0, t0 = p0 / norm_p, t0 / norm_t
    u, s, vt = np.linalg.svd(np.matmul(np.swapaxes(t0, 1, 2), p0))
    v = np.swapaxes(vt, 1, 2)
    rotation = np.matmul(v, np.swapaxes(u, 1, 2))
    # Keep a proper rotation: flip the least significant axis when det(R) < 0.
    sign = np.sign(np.linalg.det(rotation))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    rotation = np.matmul(v, np.swapaxes(u, 1, 2))
    scale = s.sum(axis=1)[:, None, None] * norm_t / norm_p
    aligned = scale * np.matmul(predicted - mu_p, rotation) + mu_t
    aligned[unusable] = np.nan
    return aligned


def p_mpjpe(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pose MPJPE after Procrustes alignment, ``(N,)``."""
    return mpjpe(procrustes_align(predicted, target), target)


class PerClassError:
    """Accumulates per-pose errors by class label; reports per-class means and their mean."""

    def __init__(self, name: str, error_fn, scale: float = 1000.0):
        self.name = name
        self.error_fn = error_fn
        self.scale = scale              # metres -> millimetres by default
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def update(self, predicted: np.ndarray, target: np.ndarray, labels) -> None:
        errors = self.error_fn(predicted, target) * self.scale
        labels = np.asarray(labels)
        for label in np.unique(labels):
            mask = labels == label
            self._sums[str(label)] += float(errors[mask].sum())
            self._counts[str(label)] += int(mask.sum())

    def per_class(self) -> dict[str, float]:
        return {label: self._sums[label] / self._counts[label] for label in self._sums}

    def mean_over_classes(self) -> float:
        values = list(self.per_class().values())
        return float(np.mean(values)) if values else float("nan")

    def mean_over_poses(self) -> float:
        total = sum(self._counts.values())
        return sum(self._sums.values()) / total if total else float("nan")
