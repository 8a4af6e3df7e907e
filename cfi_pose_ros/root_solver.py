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

Why robust (the default)
------------------------
Least squares lets one wrong joint move the whole person: a detector's wrist
at 100 px from its true place changed a person's root depth by up to 17 %, at
1000 px the solve failed outright (people of the demo clip, 5.3 m away;
``benchmarks/bench_root_solver.py``). Real detectors produce such joints every
few frames. The robust solve:

1. starts from a consensus that one joint cannot sway: the weak-perspective
   depth ``tz = f * median_ij(|P_i - P_j|_xy / |p_i - p_j|)`` over all pairs
   of valid joints (one bad joint spoils 16 of 136 pairs, not the median), and
   ``tx``, ``ty`` as medians over the joints of the back-projected offsets;
2. then iteratively reweighted least squares (the same batched 3x3 solve) on
   the *pixel* reprojection residual ``r_j`` (the algebraic row divided by the
   joint's depth), each joint's weight ``score_j * tukey(r_j / sigma)`` with
   Tukey's biweight (``c = 4.685``: 95 % efficiency under Gaussian noise) and
   ``sigma = 1.4826 * median(r)`` (the MAD scale of this person's own fit),
   floored at 1 % of the person's 2D extent and 1 px, so a near-perfect fit
   does not declare its joints outliers. A joint past ``c * sigma`` gets weight
   zero: it cannot pull at all.

Measured on the demo clip with the shipped weights (every joint of 300 people
moved in 8 directions; ``python benchmarks/bench_root_solver.py``): one joint
moved 100 px changes the root depth by at most 0.6 % (least squares: 17 %),
moved 1000 px by at most 0.6 % (least squares: fails); the clean-case depth
error against the truth is unchanged (3.24 % mean). Huber weights (bounded, not
zero, influence) left 3.7 % at 100 px, and IRLS started from the least-squares
answer failed at 1000 px (the start was already behind the camera), so the
consensus start and the redescending weight are both needed. The cost is in
the README (robustness section) and printed by the benchmark.

Pixels must be undistorted (rectified image, or points undistorted with the
camera's distortion model: the pipeline does that with ``Frame2D.lens``,
:func:`cfi_pose_ros.camera.undistort_pixels`); raw pixels of a wide-angle lens
put people tens of centimetres off (README: lens distortion).
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

__all__ = ["validate_camera_matrix", "solve_root_translation", "outlier_joints", "reproject"]

# A normal matrix whose determinant is this small relative to its scale is
# treated as singular (e.g. all valid joints on one viewing ray).
_SINGULAR_RTOL = 1e-10
# Robust solve (see the module docstring).
_TUKEY_C = 4.685                  # Tukey's biweight constant: 95 % efficiency for Gaussian residuals
_MAD_TO_SIGMA = 1.4826            # median absolute deviation -> standard deviation (Gaussian)
_SIGMA_FLOOR_FRACTION = 0.01      # of the person's 2D extent: a near-perfect fit keeps its joints
_SIGMA_FLOOR_PX = 1.0
_MIN_PAIR_SEPARATION_M = 0.05     # joint pairs closer than this (in x, y) say little about the depth
_CONVERGED_M = 1e-4               # stop iterating once no translation moves more than this (0.1 mm)
MAX_ITERATIONS = 10               # reweighted passes at most (clean people converge in 2-4)
# What a real camera's K can hold. A focal length of 1e6 px is a 0.7 degree field of view across a
# 100-megapixel sensor; a focal length of 1 px or a principal point a million pixels away is no
# camera. Finite values beyond these placed people 1e147 m away (fx = 1e150) or silently not at
# all (fx = 1e308), as if they came from a calibrated camera.
_MIN_FOCAL_PX, _MAX_FOCAL_PX = 1.0, 1e6
_MAX_PRINCIPAL_POINT_PX = 1e6
_MAX_FOCAL_ASPECT = 10.0          # fy / fx: anamorphic lenses squeeze 2x at most
# With the sensor's size known: a focal length of 0.05 widths is a field of view wider than any
# fisheye's pinhole K (a 190 degree equidistant fisheye has ~0.3); 1000 widths is 0.06 degrees.
_FOCAL_PER_WIDTH = (0.05, 1000.0)


# Nearer than this to the camera, a joint seen in the image is no real placement: no camera focuses
# closer, and a detector finds no body part that fills the view (see seen_joints_in_front).
MIN_SEEN_JOINT_DEPTH_M = 0.05


def validate_camera_matrix(camera_matrix: Sequence[float] | np.ndarray,
                           sensor_size: tuple[float, float] | None = None) -> np.ndarray:
    """Check a pinhole matrix and return it as a float64 ``(3, 3)`` array.

    Accepts ``(3, 3)`` or the 9 row-major floats of ``sensor_msgs/CameraInfo.k``.
    A bottom row ``(0, 0, k)`` with ``k > 0`` is rescaled so that ``K[2, 2] == 1``.

    Raises ``ValueError`` with the reason for: a wrong size, NaN/inf entries,
    an all-zero matrix (``CameraInfo`` of an uncalibrated camera), a zero or
    negative focal length, a bottom row that is not ``(0, 0, k > 0)``, or values
    no camera has (focal lengths outside 1..1e6 px or more than 10x apart, a skew
    larger than the focal length, a principal point 1e6 px away). With
    ``sensor_size`` (the ``(width, height)`` K is for) also a focal length outside
    0.05..1000 widths or a principal point more than one size outside the sensor.
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
    scale = k[2, 2]
    with np.errstate(over="ignore"):    # a K[2, 2] of 1e-320 (a damaged CameraInfo's): said below, not warned
        k /= scale
    if not np.all(np.isfinite(k)):
        raise ValueError(f"camera matrix is no real camera's: K[2, 2] = {scale:g} scales its entries past the "
                         "largest float")
    fx, fy = k[0, 0], k[1, 1]
    if not (fx > 0.0 and fy > 0.0):
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    if k[1, 0] != 0.0:
        raise ValueError(f"camera matrix K[1, 0] must be 0, got {k[1, 0]}")
    problem = _implausible_intrinsics(k, sensor_size)
    if problem:
        raise ValueError(f"camera matrix is no real camera's: {problem}")
    return k


def _implausible_intrinsics(k: np.ndarray, sensor_size: tuple[float, float] | None) -> str | None:
    fx, fy, skew, cx, cy = k[0, 0], k[1, 1], k[0, 1], k[0, 2], k[1, 2]
    if not (_MIN_FOCAL_PX <= fx <= _MAX_FOCAL_PX and _MIN_FOCAL_PX <= fy <= _MAX_FOCAL_PX):
        return f"focal lengths fx={fx:g}, fy={fy:g} px are outside {_MIN_FOCAL_PX:g}..{_MAX_FOCAL_PX:g} px"
    if not 1.0 / _MAX_FOCAL_ASPECT <= fy / fx <= _MAX_FOCAL_ASPECT:
        return f"focal lengths fx={fx:g}, fy={fy:g} px are more than {_MAX_FOCAL_ASPECT:g}x apart"
    if abs(skew) > fx:
        return f"skew {skew:g} is larger than the focal length fx={fx:g}"
    if max(abs(cx), abs(cy)) > _MAX_PRINCIPAL_POINT_PX:
        return f"principal point ({cx:g}, {cy:g}) px is more than {_MAX_PRINCIPAL_POINT_PX:g} px away"
    if sensor_size is not None:
        width, height = sensor_size
        low, high = _FOCAL_PER_WIDTH
        if not low * width <= min(fx, fy) <= max(fx, fy) <= high * width:
            return (f"focal lengths fx={fx:g}, fy={fy:g} px do not fit a {width:g} px wide image "
                    f"({low:g}..{high:g} widths)")
        if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
            return f"principal point ({cx:g}, {cy:g}) px is far outside the {width:g}x{height:g} image"
    return None


class _LinearSystem:
    """The two rows per joint ``A_j t = b_j`` of every person, and their products, built once
    and re-solved with new joint weights by each pass."""

    def __init__(self, rel: np.ndarray, px: np.ndarray, k: np.ndarray):
        fx, s, cx = k[0, 0], k[0, 1], k[0, 2]
        fy, cy = k[1, 1], k[1, 2]
        x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
        du = px[..., 0] - cx
        dv = px[..., 1] - cy
        n, j = rel.shape[:2]
        # Rows A t = b:  [fx, s, -du] t = du z - fx x - s y ;  [0, fy, -dv] t = dv z - fy y
        a = np.zeros((n, j, 2, 3))
        a[..., 0, 0] = fx
        a[..., 0, 1] = s
        a[..., 0, 2] = -du
        a[..., 1, 1] = fy
        a[..., 1, 2] = -dv
        self.a = a
        self.b = np.stack([du * z - fx * x - s * y, dv * z - fy * y], axis=-1)   # (N, J, 2)
        # per joint A^T A (9 entries) and A^T b (3), side by side: one matmul with the
        # weights gives every person's normal equations
        self.products = np.concatenate([np.einsum("njra,njrb->njab", a, a).reshape(n, j, 9),
                                        np.einsum("njra,njr->nja", a, self.b)], axis=-1)   # (N, J, 12)
        self.depth_offset = z

    def solve(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One weighted least-squares pass; ``w`` (N, J) weighs each joint's squared residual
        (0 for absent joints). Returns (t (N, 3), solvable (N,)).

        The symmetric 3x3 normal equations are solved by their adjugate: the same
        answer as ``np.linalg.solve``, at a third of its cost for a few people."""
        sums = (w[:, None, :] @ self.products)[:, 0].T          # (12, N)
        m, r = sums[:9].reshape(3, 3, -1), sums[9:]
        c00 = m[1, 1] * m[2, 2] - m[1, 2] ** 2
        c01 = m[0, 2] * m[1, 2] - m[0, 1] * m[2, 2]
        c02 = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
        c11 = m[0, 0] * m[2, 2] - m[0, 2] ** 2
        c12 = m[0, 1] * m[0, 2] - m[0, 0] * m[1, 2]
        c22 = m[0, 0] * m[1, 1] - m[0, 1] ** 2
        det = m[0, 0] * c00 + m[0, 1] * c01 + m[0, 2] * c02
        scale = (m[0, 0] + m[1, 1] + m[2, 2]) / 3.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            solvable = (np.isfinite(det) & (scale > 0)
                        & (np.abs(det) > _SINGULAR_RTOL * np.where(scale > 0, scale, 1.0) ** 3))
            t = np.stack([c00 * r[0] + c01 * r[1] + c02 * r[2],
                          c01 * r[0] + c11 * r[1] + c12 * r[2],
                          c02 * r[0] + c12 * r[1] + c22 * r[2]], axis=-1) / np.where(solvable, det, 1.0)[:, None]
        return np.where(solvable[:, None], t, 0.0), solvable

    def pixel_residuals(self, t: np.ndarray) -> np.ndarray:
        """``(N, J)`` reprojection error in pixels at ``t`` (the algebraic residual over the
        joint's depth ``Z_j + tz``; NaN where that depth is not positive)."""
        algebraic = np.einsum("njra,na->njr", self.a, t) - self.b
        depth = self.depth_offset + t[:, None, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(depth > 0, np.sqrt(np.sum(algebraic ** 2, axis=-1)) / depth, np.nan)


def _row_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of ``values[i, mask[i]]`` per row (NaN for an empty row); a sort, not masked arrays
    (``np.nanmedian`` costs ten times more at these sizes)."""
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    count = mask.sum(axis=1)
    rows = np.arange(len(ordered))
    middle = 0.5 * (ordered[rows, np.maximum(count - 1, 0) // 2] + ordered[rows, count // 2 - (count == 0)])
    return np.where(count > 0, middle, np.nan)


@functools.lru_cache(maxsize=4)
def _pairs(joints: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(joints, 1)


def _consensus_start(rel: np.ndarray, px: np.ndarray, valid: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Weak-perspective translation from medians, which one bad joint cannot move (NaN rows
    where no pair of valid joints is usable). See the module docstring."""
    first, second = _pairs(valid.shape[1])
    sep_2d = np.hypot(px[:, first, 0] - px[:, second, 0], px[:, first, 1] - px[:, second, 1])
    sep_3d = np.hypot(rel[:, first, 0] - rel[:, second, 0], rel[:, first, 1] - rel[:, second, 1])
    pairs = valid[:, first] & valid[:, second] & (sep_3d > _MIN_PAIR_SEPARATION_M) & (sep_2d > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tz = 0.5 * (k[0, 0] + k[1, 1]) * _row_median(sep_3d / np.where(pairs, sep_2d, 1.0), pairs)
        depth = rel[..., 2] + tz[:, None]
        tx = _row_median((px[..., 0] - k[0, 2] - k[0, 1] * (px[..., 1] - k[1, 2]) / k[1, 1]) * depth / k[0, 0]
                         - rel[..., 0], valid)
        ty = _row_median((px[..., 1] - k[1, 2]) * depth / k[1, 1] - rel[..., 1], valid)
    return np.stack([tx, ty, tz], axis=-1)


def _tukey(u: np.ndarray) -> np.ndarray:
    """Tukey's biweight ``(1 - (u / c)^2)^2`` inside ``|u| < c``, zero outside (and for NaN)."""
    with np.errstate(invalid="ignore"):
        inside = np.abs(u) < _TUKEY_C
    return np.where(inside, (1.0 - (np.where(inside, u, 0.0) / _TUKEY_C) ** 2) ** 2, 0.0)


def _sigma_floor(px: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(N,)`` the least residual scale: 1 % of the person's 2D extent, and 1 px."""
    spread = (np.max(np.where(valid[..., None], px, -np.inf), axis=1)
              - np.min(np.where(valid[..., None], px, np.inf), axis=1)).max(axis=-1)
    size = np.where(np.isfinite(spread), spread, 0.0)
    return np.maximum(_SIGMA_FLOOR_FRACTION * size, _SIGMA_FLOOR_PX)


def _scaled_residuals(system: _LinearSystem, t: np.ndarray, usable: np.ndarray,
                      sigma_floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(r / sigma (N, J), usable (N, J))``: each joint's pixel reprojection error at ``t`` over
    the person's MAD scale; ``usable`` narrowed to joints with a finite residual."""
    residual = system.pixel_residuals(t)
    usable = usable & np.isfinite(residual)
    median = _row_median(residual, usable)
    sigma = np.maximum(_MAD_TO_SIGMA * np.where(np.isfinite(median), median, 0.0), sigma_floor)
    return residual / sigma[:, None], usable


def _solve_robust(system: _LinearSystem, px: np.ndarray, valid: np.ndarray, weights: np.ndarray,
                  k: np.ndarray, rel: np.ndarray, max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    t = _consensus_start(rel, px, valid, k)
    ok = np.isfinite(t).all(-1) & (t[:, 2] > 0)
    if not ok.all():                      # no usable pair: start from the plain solve instead
        t_ls, ok_ls = system.solve(weights)
        t = np.where(ok[:, None], t, t_ls)
        ok = ok | ok_ls
    t = np.where(ok[:, None], t, 0.0)
    sigma_floor = _sigma_floor(px, valid)
    for _ in range(max_iterations):
        scaled, usable = _scaled_residuals(system, t, valid & ok[:, None], sigma_floor)
        depth = system.depth_offset + t[:, None, 2]
        w = np.where(usable, weights * _tukey(scaled) / np.where(usable, depth, 1.0) ** 2, 0.0)
        t_new, solved = system.solve(w)
        take = ok & solved & np.isfinite(t_new).all(-1)
        step = np.abs(t_new - t).max(axis=-1)
        t = np.where(take[:, None], t_new, t)
        if not np.any(take & (step > _CONVERGED_M)):
            break
    return t, ok


def _prepare(root_relative, pixels, scores, camera_matrix):
    """Checked float64 inputs with a leading N axis: ``(K, rel, px, weights, valid, single)``;
    invalid joints (NaN anywhere, ``score <= 0``) have weight 0 and zeroed coordinates."""
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
    return (k, np.where(valid[..., None], rel, 0.0), np.where(valid[..., None], px, 0.0),
            np.where(valid, sc, 0.0), valid, single)


def seen_joints_in_front(root_relative: np.ndarray, translations: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether every ``seen`` joint (``(N, J)``) of ``root_relative + translations``
    lies at least MIN_SEEN_JOINT_DEPTH_M in front of the camera: a joint the detector saw in the
    image is in front of the lens, so a placement that puts one behind it is wrong (a person 0.4 m
    from a wide lens was placed with a detected knee at -4 cm; a depth reading of an object in front
    of a person 5 m away put two joints behind the camera). Unseen joints (the lifter's guess of
    legs out of the image) are not judged."""
    depth = np.asarray(root_relative)[..., 2] + np.asarray(translations)[:, None, 2]
    return np.all((depth >= MIN_SEEN_JOINT_DEPTH_M) | ~np.asarray(seen, dtype=bool), axis=1)


def solve_root_translation(root_relative: np.ndarray, pixels: np.ndarray, scores: np.ndarray,
                           camera_matrix: np.ndarray, refine: int = 1, robust: bool = True,
                           max_iterations: int = MAX_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Translation ``t`` per person so that ``root_relative + t`` projects onto ``pixels``.

    Args:
        root_relative: ``(N, J, 3)`` root-relative joints, camera axes, metres
            (``(J, 3)`` for a single person: outputs then lose the N axis).
        pixels: ``(N, J, 2)`` undistorted keypoints in pixels.
        scores: ``(N, J)`` detection confidences; a joint with NaN coordinates
            (3D or 2D) or ``score <= 0`` (or NaN) is ignored.
        camera_matrix: pinhole ``K`` (see :func:`validate_camera_matrix`, which
            this calls: an invalid ``K`` raises ``ValueError``).
        refine: least squares only (``robust=False``): depth-reweighted passes
            after the linear solve (0 = plain algebraic least squares; 1 is plenty).
        robust: the outlier-proof solve of the module docstring (consensus
            start, then Tukey-weighted reprojection passes); ``False`` is plain
            score-weighted least squares, where one bad joint moves the answer.
        max_iterations: robust only: reweighted passes at most.

    Returns:
        ``(translations (N, 3), ok (N,) bool)``. ``ok`` is False -- and the
        translation NaN -- when fewer than 2 joints are valid, the system is
        singular, the solution is not finite, or it puts the root at ``tz <= 0``
        (behind the camera) or a valid joint nearer than MIN_SEEN_JOINT_DEPTH_M
        (:func:`seen_joints_in_front`). Never raises for bad keypoint data.
    """
    k, rel, px, weights, valid, single = _prepare(root_relative, pixels, scores, camera_matrix)
    system = _LinearSystem(rel, px, k)
    if robust:
        t, ok = _solve_robust(system, px, valid, weights, k, rel, max(0, int(max_iterations)))
    else:
        t, ok = system.solve(weights)
        for _ in range(max(0, int(refine))):
            depth = rel[..., 2] + t[:, None, 2]
            usable = ok & np.all((depth > 0) | ~valid, axis=1)
            if not usable.any():
                break
            inv_depth2 = np.where(valid & usable[:, None], 1.0 / np.where(depth > 0, depth, 1.0) ** 2, 0.0)
            t_ref, ok_ref = system.solve(weights * inv_depth2)
            take = usable & ok_ref & np.isfinite(t_ref).all(-1)
            t = np.where(take[:, None], t_ref, t)

    ok = (ok & (valid.sum(axis=1) >= 2) & np.isfinite(t).all(-1) & (t[:, 2] > 0)
          & seen_joints_in_front(rel, t, valid))
    t = np.where(ok[:, None], t, np.nan)
    if single:
        return t[0], ok[0]
    return t, ok


def outlier_joints(root_relative: np.ndarray, pixels: np.ndarray, scores: np.ndarray,
                   camera_matrix: np.ndarray, translations: np.ndarray, at_most: int | None = None,
                   threshold: float = _TUKEY_C) -> np.ndarray:
    """``(N, J)`` bool: the valid joints whose reprojection error at ``translations`` is past
    ``threshold`` times the person's residual scale (by default Tukey's ``c``: the joints the
    robust solve gives no weight); with ``at_most`` only that many per person, the worst.

    Arguments as for :func:`solve_root_translation`, plus its ``translations``; a person
    with a NaN translation has no outliers. Such a joint is wrong in 2D, and the lifter,
    which saw it, may have bent the whole skeleton around it: the pipeline lifts those
    people again with the joint treated as missing.
    """
    scaled = scaled_reprojection_errors(root_relative, pixels, scores, camera_matrix, translations)
    single = scaled.ndim == 1
    scaled = np.atleast_2d(scaled)
    outliers = np.isfinite(scaled) & (scaled >= threshold)
    if at_most is not None:
        # keep the at_most worst of each person: its neighbours may fit badly only because
        # the lifter bent them towards the bad joint
        rank = np.argsort(np.argsort(-np.where(outliers, scaled, -np.inf), axis=1), axis=1)
        outliers &= rank < at_most
    return outliers[0] if single else outliers


def scaled_reprojection_errors(root_relative: np.ndarray, pixels: np.ndarray, scores: np.ndarray,
                               camera_matrix: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """``(N, J)`` each joint's reprojection error at ``translations`` in units of the person's
    residual scale (1.4826 x the median error of its valid joints, as in the solve, with the
    same floor); NaN for a joint that is not valid, a NaN translation or a joint behind the camera."""
    k, rel, px, _, valid, single = _prepare(root_relative, pixels, scores, camera_matrix)
    t = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
    solved = np.isfinite(t).all(-1)
    scaled, usable = _scaled_residuals(_LinearSystem(rel, px, k), np.where(solved[:, None], t, 0.0),
                                       valid & solved[:, None], _sigma_floor(px, valid))
    scaled = np.where(usable, scaled, np.nan)
    return scaled[0] if single else scaled


def reproject(root_relative: np.ndarray, translations: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """``(N, J, 2)`` pixels of ``root_relative + translations`` (``(N, J, 3)`` and ``(N, 3)``, or one
    person's ``(J, 3)`` and ``(3,)``, as :func:`solve_root_translation` takes them) through the pinhole
    ``camera_matrix`` (the model the solve fits); NaN for a joint not in front of the camera or a NaN
    translation."""
    k = validate_camera_matrix(camera_matrix)
    points = np.asarray(root_relative, dtype=np.float64) + np.asarray(translations, dtype=np.float64)[..., None, :]
    depth = points[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pixels = (points @ k[:2].T) / depth                 # the whole K: skew too, as the solve
        return np.where(depth > 1e-6, pixels, np.nan)
