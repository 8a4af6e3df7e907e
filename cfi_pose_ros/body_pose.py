"""A person's pose (position + orientation) from their 3D H36M-17 joints.

Body frame (REP-103 body convention): **x forward** (the way the chest faces),
**y left** (the person's own left), **z up** (pelvis towards thorax). It is
built from the hips and the spine:

* ``z`` (up): pelvis -> thorax (the spine joint if the thorax is missing),
  normalised. Up is kept exactly: the torso's long axis is what "upright"
  means, and it is long (about 0.5 m) so it is the better-determined of the
  two directions.
* ``y`` (left): right hip -> left hip, with its component along ``z``
  removed (Gram-Schmidt), normalised.
* ``x`` (forward): ``y x z`` (left cross up), which makes ``(x, y, z)``
  right-handed (``x x y = z``) and points out of the chest: for a person
  standing upright facing the camera (camera optical frame, y down), their
  left is the camera's ``+x`` and up is ``-y``, so forward is
  ``(+x) x (-y) = -z``: towards the camera.

The returned quaternion ``(x, y, z, w)`` is the rotation whose matrix has the
body axes (forward, left, up) as its columns, expressed in the frame of the
input joints (e.g. the camera optical frame): it maps body-frame vectors into
that frame, exactly what a ``geometry_msgs/Pose`` in the keypoints' frame
means. The position is the pelvis (joint 0).
"""
from __future__ import annotations

import numpy as np

from .skeleton import H36M_17

__all__ = ["body_pose", "body_poses", "body_frames", "rotation_matrix_to_quaternion",
           "quaternion_to_rotation_matrix", "IDENTITY_QUATERNION"]

IDENTITY_QUATERNION = np.array([0.0, 0.0, 0.0, 1.0])

PELVIS = H36M_17.index("pelvis")
RIGHT_HIP = H36M_17.index("right_hip")
LEFT_HIP = H36M_17.index("left_hip")
SPINE = H36M_17.index("spine")
THORAX = H36M_17.index("thorax")

# Shorter hip-to-hip or pelvis-to-spine vectors than this (metres) are degenerate.
MIN_SEGMENT = 1e-3
# The hip line must make at least asin(0.1) ~ 6 degrees with the spine.
MIN_SINE = 0.1


def _quaternion_candidate_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The four classic candidate quaternions are affine in the matrix entries: with ``r`` flattened
    to 9 values, ``candidates = r @ LINEAR + CONSTANT`` (4 candidates x (x, y, z, w)) and the branch
    scores ``(trace, m00, m11, m22) = r @ SCORES``. Two matrix products instead of ~20 small numpy
    calls: this runs for every person of every frame in the node."""
    terms = {   # candidate -> its (x, y, z, w) as (constant, {(row, col): sign})
        "w": [(0, {(2, 1): 1, (1, 2): -1}), (0, {(0, 2): 1, (2, 0): -1}), (0, {(1, 0): 1, (0, 1): -1}),
              (1, {(0, 0): 1, (1, 1): 1, (2, 2): 1})],
        "x": [(1, {(0, 0): 1, (1, 1): -1, (2, 2): -1}), (0, {(0, 1): 1, (1, 0): 1}),
              (0, {(0, 2): 1, (2, 0): 1}), (0, {(2, 1): 1, (1, 2): -1})],
        "y": [(0, {(0, 1): 1, (1, 0): 1}), (1, {(0, 0): -1, (1, 1): 1, (2, 2): -1}),
              (0, {(1, 2): 1, (2, 1): 1}), (0, {(0, 2): 1, (2, 0): -1})],
        "z": [(0, {(0, 2): 1, (2, 0): 1}), (0, {(1, 2): 1, (2, 1): 1}),
              (1, {(0, 0): -1, (1, 1): -1, (2, 2): 1}), (0, {(1, 0): 1, (0, 1): -1})],
    }
    linear, constant = np.zeros((9, 4, 4)), np.zeros((4, 4))
    for c, name in enumerate(("w", "x", "y", "z")):        # each accurate when its 4 q_i^2 is largest
        for component, (const, signs) in enumerate(terms[name]):
            constant[c, component] = const
            for (row, col), sign in signs.items():
                linear[3 * row + col, c, component] = sign
    scores = np.zeros((9, 4))
    scores[[0, 4, 8], 0] = 1.0                              # trace
    scores[0, 1] = scores[4, 2] = scores[8, 3] = 1.0        # m00, m11, m22
    return linear.reshape(9, 16), constant.reshape(16), scores


_CANDIDATE_LINEAR, _CANDIDATE_CONSTANT, _BRANCH_SCORES = _quaternion_candidate_maps()


def rotation_matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` as ``(x, y, z, w)``,
    with ``w >= 0``. Uses the numerically stable largest-diagonal branch."""
    r = np.asarray(rotation, dtype=np.float64)
    flat = r.reshape(r.shape[:-2] + (9,))
    candidates = (flat @ _CANDIDATE_LINEAR + _CANDIDATE_CONSTANT).reshape(r.shape[:-2] + (4, 4))
    branch = np.argmax(flat @ _BRANCH_SCORES, axis=-1)
    q = np.take_along_axis(candidates, branch[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:4] < 0, -q, q)


def quaternion_to_rotation_matrix(quaternion: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` as ``(x, y, z, w)`` -> rotation matrices ``(..., 3, 3)``."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def body_frames(keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body axes for ``(..., 17, 3)`` H36M-17 joints.

    Returns ``(rotation (..., 3, 3), ok (...,))``: the columns of ``rotation``
    are forward, left, up in the joints' frame; identity where ``ok`` is False
    (missing/NaN hips, pelvis or spine+thorax; coincident hips; a spine of
    zero length; a hip line nearly parallel to the spine).
    """
    kp = np.asarray(keypoints_3d, dtype=np.float64)
    if kp.shape[-2:] != (H36M_17.num_joints, 3):
        raise ValueError(f"expected (..., {H36M_17.num_joints}, 3) H36M-17 joints, got {kp.shape}")
    pelvis = kp[..., PELVIS, :]
    top = np.where(np.isfinite(kp[..., THORAX, :]).all(-1, keepdims=True),
                   kp[..., THORAX, :], kp[..., SPINE, :])
    up = top - pelvis
    left = kp[..., LEFT_HIP, :] - kp[..., RIGHT_HIP, :]
    ok = np.isfinite(up).all(-1) & np.isfinite(left).all(-1)
    up = np.where(ok[..., None], up, [0.0, 0.0, 1.0])
    left = np.where(ok[..., None], left, [0.0, 1.0, 0.0])

    up_len = np.linalg.norm(up, axis=-1)
    left_len = np.linalg.norm(left, axis=-1)
    ok &= (up_len > MIN_SEGMENT) & (left_len > MIN_SEGMENT)
    z = up / np.where(ok, up_len, 1.0)[..., None]
    y = left - np.sum(left * z, -1, keepdims=True) * z
    y_len = np.linalg.norm(y, axis=-1)
    ok &= y_len > MIN_SINE * np.where(ok, left_len, 1.0)
    y = y / np.where(ok, y_len, 1.0)[..., None]
    x = np.cross(y, z)
    rotation = np.stack([x, y, z], axis=-1)
    rotation = np.where(ok[..., None, None], rotation, np.eye(3))
    return rotation, ok


def body_poses(keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`body_pose`: ``(..., 17, 3)`` -> ``(positions (..., 3),
    quaternions_xyzw (..., 4), ok (...,))``."""
    kp = np.asarray(keypoints_3d, dtype=np.float64)
    rotation, ok = body_frames(kp)
    pelvis = kp[..., PELVIS, :]
    pelvis_ok = np.isfinite(pelvis).all(-1)
    ok = ok & pelvis_ok
    position = np.where(pelvis_ok[..., None], pelvis, 0.0)
    quaternion = np.where(ok[..., None], rotation_matrix_to_quaternion(rotation), IDENTITY_QUATERNION)
    return position, quaternion, ok


def body_pose(keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Pose of one person from ``(17, 3)`` H36M-17 joints.

    Returns ``(position (3,), quaternion_xyzw (4,), ok)``: position is the
    pelvis (zeros if the pelvis is not finite); the quaternion rotates the body
    frame (x forward, y left, z up) into the joints' frame. When ``ok`` is
    False the quaternion is the identity ``(0, 0, 0, 1)`` and should not be
    published as a real orientation.
    """
    kp = np.asarray(keypoints_3d, dtype=np.float64)
    if kp.shape != (H36M_17.num_joints, 3):
        raise ValueError(f"expected ({H36M_17.num_joints}, 3) H36M-17 joints, got {kp.shape}")
    position, quaternion, ok = body_poses(kp)
    return position, quaternion, bool(ok)
