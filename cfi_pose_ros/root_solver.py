"""Place a root-relative 3D skeleton in the camera frame from its 2D keypoints.

The lifter predicts joints relative to the pelvis (``P_j``, camera axes,
metres). The absolute skeleton is ``P_j + t`` for an unknown translation
``t = (tx, ty, tz)``; with a pinhole camera ``K`` it must project onto the
detected pixels ``(u_j, v_j)``::

    u_j = cx + (fx (X_j + tx) + s (Y_j + ty)) / (Z_j + tz)
    v_j = cy +  fy (Y_j + ty)                 / (Z_j + tz)

(``s`` is the skew ``K[0, 1]``, zero for nearly every camera.)

Why the linear form
-------------------
The projection is non-linear in ``t`` because the unknown depth divides. Multiply
each equation by the depth ``Z_j + tz`` instead and it becomes *linear* in ``t``::

    fx (X_j + tx) + s (Y_j + ty) - (u_j - cx) (Z_j + tz) = 0
    fy (Y_j + ty)                - (v_j - cy) (Z_j + tz) = 0

Two rows per joint, three unknowns: with two or more joints this is an ordinary
(weighted) linear least-squares problem with a closed-form answer -- no initial
guess, no iterations, no local minima, and it vectorises over many people as a
batch of 3x3 normal equations.

The price is that the residual of each row is the pixel reprojection error
*multiplied by that joint's depth* ``Z_j + tz`` (the "algebraic" error), so far
joints count slightly more than near ones. For a person a few metres away the
depths differ by a few percent and the answer is nearly the geometric one; the
optional refinement (``refine`` passes, default one) removes even that: it
re-solves the same linear system with each row divided by the depth found in
the previous pass, ``1 / (Z_j + tz)``, which turns the residual back into the
pixel reprojection error (iteratively reweighted least squares). Each pass is
one more batched 3x3 solve, so it is cheap.

Weighting by score: each joint's rows are multiplied by ``sqrt(score)`` (the
squared residual by ``score``), so a doubtful detection pulls the translation
less than a confident one, and a missing joint (NaN, or ``score <= 0``) is
simply absent from the sums.

Pixels must be undistorted (rectified image, or points undistorted with the
camera's distortion model); for a lens with mild distortion raw pixels give a
small bias only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["validate_camera_matrix", "solve_root_translation"]

# A normal matrix whose determinant is this small relative to its scale is
# treated as singular (e.g. all valid joints on one viewing ray).
_SINGULAR_RTOL = 1e-10


def validate_camera_matrix(camera_matrix: Sequence[float] | np.ndarray) -> np.ndarray:
    """Check a pinhole matrix and return it as a float64 ``(3, 3)`` array.

    Accepts ``(3, 3)`` or the 9 row-major floats of ``sensor_msgs/CameraInfo.k``.
    A bottom row ``(0, 0, k)`` with ``k > 0`` is rescaled so that ``K[2, 2] == 1``.

    Raises ``ValueError`` with the reason for: a wrong size, NaN/inf entries,
    an all-zero matrix (``CameraInfo`` of an uncalibrated camera), a zero or
    negative focal length, or a bottom row that is not ``(0, 0, k > 0)``.
    """
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.size != 9:
        raise ValueError(f"camera matrix must have 9 entries (3x3), got shape {k.shape}")
    k = k.reshape(3, 3).copy()
    if not np.all(np.isfinite(k)):
        raise ValueError(f"camera matrix contains NaN or inf: {k.tolist()}")
    if not np.any(k):
        raise ValueError("camera matrix is all zeros: the camera is not calibrated "
                         "(CameraInfo.k unset), cannot place people in 3D")
    if k[2, 0] != 0.0 or k[2, 1] != 0.0 or not k[2, 2] > 0.0:
        raise ValueError(f"camera matrix bottom row must be (0, 0, 1), got {k[2].tolist()}")
    k /= k[2, 2]
    fx, fy = k[0, 0], k[1, 1]
    if not (fx > 0.0 and fy > 0.0):
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    if k[1, 0] != 0.0:
        raise ValueError(f"camera matrix K[1, 0] must be 0, got {k[1, 0]}")
    return k


def _solve_weighted(rel: np.ndarray, px: np.ndarray, w: np.ndarray,
                    k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One weighted linear least-squares pass. ``w`` (N, J) is the weight of the
    squared residual (0 for absent joints). Returns (t (N, 3), solvable (N,))."""
    fx, s, cx = k[0, 0], k[0, 1], k[0, 2]
    fy, cy = k[1, 1], k[1, 2]
    x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
    du = px[..., 0] - cx
    dv = px[..., 1] - cy
    n, j = w.shape
    # Rows A t = b:  [fx, s, -du] t = du z - fx x - s y ;  [0, fy, -dv] t = dv z - fy y
    a = np.zeros((n, j, 2, 3))
    a[..., 0, 0] = fx
    a[..., 0, 1] = s
    a[..., 0, 2] = -du
    a[..., 1, 1] = fy
    a[..., 1, 2] = -dv
    b = np.stack([du * z - fx * x - s * y, dv * z - fy * y], axis=-1)   # (N, J, 2)
    normal = np.einsum("nj,njra,njrb->nab", w, a, a)
    rhs = np.einsum("nj,njra,njr->na", w, a, b)

    scale = np.trace(normal, axis1=1, axis2=2) / 3.0
    det = np.linalg.det(normal)
    solvable = np.isfinite(det) & (scale > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        solvable &= np.abs(det) > _SINGULAR_RTOL * np.where(scale > 0, scale, 1.0) ** 3
    safe = np.where(solvable[:, None, None], normal, np.eye(3))
    t = np.linalg.solve(safe, np.where(solvable[:, None], rhs, 0.0)[..., None])[..., 0]
    return t, solvable


def solve_root_translation(root_relative: np.ndarray, pixels: np.ndarray, scores: np.ndarray,
                           camera_matrix: np.ndarray, refine: int = 1,
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Translation ``t`` per person so that ``root_relative + t`` projects onto ``pixels``.

    Args:
        root_relative: ``(N, J, 3)`` root-relative joints, camera axes, metres
            (``(J, 3)`` for a single person: outputs then lose the N axis).
        pixels: ``(N, J, 2)`` undistorted keypoints in pixels.
        scores: ``(N, J)`` detection confidences; a joint with NaN coordinates
            (3D or 2D) or ``score <= 0`` (or NaN) is ignored.
        camera_matrix: pinhole ``K`` (see :func:`validate_camera_matrix`, which
            this calls: an invalid ``K`` raises ``ValueError``).
        refine: reweighted passes after the linear solve (0 = plain algebraic
            least squares; 1 is plenty).

    Returns:
        ``(translations (N, 3), ok (N,) bool)``. ``ok`` is False -- and the
        translation NaN -- when fewer than 2 joints are valid, the system is
        singular, the solution is not finite, or it puts the root at ``tz <= 0``
        (behind the camera). Never raises for bad keypoint data.
    """
    k = validate_camera_matrix(camera_matrix)
    rel = np.asarray(root_relative, dtype=np.float64)
    px = np.asarray(pixels, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    single = rel.ndim == 2
    if single:
        rel, px, sc = rel[None], px[None], sc[None]
    if rel.ndim != 3 or rel.shape[-1] != 3:
        raise ValueError(f"root_relative must be (N, J, 3), got {np.shape(root_relative)}")
    if px.shape != rel.shape[:-1] + (2,):
        raise ValueError(f"pixels must be {rel.shape[:-1] + (2,)}, got {np.shape(pixels)}")
    if sc.shape != rel.shape[:-1]:
        raise ValueError(f"scores must be {rel.shape[:-1]}, got {np.shape(scores)}")

    valid = (np.isfinite(rel).all(-1) & np.isfinite(px).all(-1)
             & np.isfinite(sc) & (sc > 0))
    weights = np.where(valid, sc, 0.0)
    rel = np.where(valid[..., None], rel, 0.0)
    px = np.where(valid[..., None], px, 0.0)

    t, ok = _solve_weighted(rel, px, weights, k)
    for _ in range(max(0, int(refine))):
        depth = rel[..., 2] + t[:, None, 2]
        usable = ok & np.all((depth > 0) | ~valid, axis=1)
        if not usable.any():
            break
        inv_depth2 = np.where(valid & usable[:, None], 1.0 / np.where(depth > 0, depth, 1.0) ** 2, 0.0)
        t_ref, ok_ref = _solve_weighted(rel, px, weights * inv_depth2, k)
        take = usable & ok_ref & np.isfinite(t_ref).all(-1)
        t = np.where(take[:, None], t_ref, t)

    ok = ok & (valid.sum(axis=1) >= 2) & np.isfinite(t).all(-1) & (t[:, 2] > 0)
    t = np.where(ok[:, None], t, np.nan)
    if single:
        return t[0], ok[0]
    return t, ok
