import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfi_pose_ros.body_pose import (IDENTITY_QUATERNION, body_frames, body_pose, body_poses,
                                    quaternion_to_rotation_matrix, rotation_matrix_to_quaternion)
from poses import standing_person


def yaw_about_vertical(angle: float) -> np.ndarray:
    """Rotation about the camera's y axis (the vertical for a level camera)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return quaternion_to_rotation_matrix(q / np.linalg.norm(q))


def axes(quaternion):
    r = quaternion_to_rotation_matrix(quaternion)
    return r[:, 0], r[:, 1], r[:, 2]          # forward, left, up


def test_facing_camera():
    kp = standing_person() + np.array([0.3, -0.1, 4.0])
    position, q, ok = body_pose(kp)
    assert ok is True
    np.testing.assert_allclose(position, [0.3, -0.1, 4.0])
    forward, left, up = axes(q)
    np.testing.assert_allclose(forward, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(left, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(up, [0, -1, 0], atol=1e-12)
    assert q.shape == (4,) and np.isclose(np.linalg.norm(q), 1.0) and q[3] >= 0


def test_facing_away_and_sideways():
    base = standing_person()
    # turned around: back to the camera
    _, q, ok = body_pose(base @ yaw_about_vertical(np.pi).T)
    assert ok
    np.testing.assert_allclose(axes(q)[0], [0, 0, 1], atol=1e-12)
    # turned so that the chest faces the camera's +x (image right)
    r = yaw_about_vertical(-np.pi / 2)
    assert np.allclose(r @ [0, 0, -1], [1, 0, 0])
    _, q, ok = body_pose(base @ r.T)
    assert ok
    np.testing.assert_allclose(axes(q)[0], [1, 0, 0], atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_rotated_person_rotates_frame(seed):
    rng = np.random.default_rng(seed)
    r = random_rotation(rng)
    t = rng.uniform(-3, 3, 3)
    _, q0, _ = body_pose(standing_person())
    position, q, ok = body_pose(standing_person() @ r.T + t)
    assert ok
    np.testing.assert_allclose(position, t, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_rotation_matrix(q),
                               r @ quaternion_to_rotation_matrix(q0), atol=1e-9)


def test_frame_is_right_handed_and_orthonormal_with_bent_spine():
    kp = standing_person()
    kp[8] += [0.05, 0.0, -0.15]        # leaning forward, hips slightly not square to the spine
    kp[4] += [0.0, -0.03, 0.02]
    r, ok = body_frames(kp)
    assert ok
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
    np.testing.assert_allclose(r[:, 2], (kp[8] - kp[0]) / np.linalg.norm(kp[8] - kp[0]), atol=1e-12)
    assert r[:, 0] @ [0, 0, -1] > 0.9          # still roughly towards the camera
    assert r[:, 1] @ (kp[4] - kp[1]) > 0


def test_thorax_missing_falls_back_to_spine():
    kp = standing_person()
    kp[8] = np.nan
    _, q, ok = body_pose(kp)
    assert ok
    np.testing.assert_allclose(axes(q)[0], [0, 0, -1], atol=1e-12)


def degenerate_cases():
    base = standing_person()
    coincident = base.copy()
    coincident[4] = coincident[1]
    nan_hip = base.copy()
    nan_hip[1] = np.nan
    nan_pelvis = base.copy()
    nan_pelvis[0] = np.nan
    no_spine = base.copy()
    no_spine[7:9] = np.nan
    hips_along_spine = base.copy()
    hips_along_spine[1] = [0.0, 0.1, 0.0]
    hips_along_spine[4] = [0.0, -0.1, 0.0]
    zero_spine = base.copy()
    zero_spine[8] = zero_spine[0]
    inf = base.copy()
    inf[4, 2] = np.inf
    return [coincident, nan_hip, nan_pelvis, no_spine, hips_along_spine, zero_spine, inf,
            np.zeros((17, 3)), np.full((17, 3), np.nan)]


@pytest.mark.parametrize("kp", degenerate_cases())
def test_degenerate_gives_identity(kp):
    position, q, ok = body_pose(kp)
    assert ok is False
    np.testing.assert_array_equal(q, IDENTITY_QUATERNION)
    assert np.isfinite(position).all()


def test_position_kept_when_only_orientation_degenerate():
    kp = standing_person() + [1.0, 2.0, 3.0]
    kp[4] = kp[1]
    position, _, ok = body_pose(kp)
    assert not ok
    np.testing.assert_allclose(position, [1.0, 2.0, 3.0])


def test_batched_matches_single():
    rng = np.random.default_rng(0)
    people = np.stack([standing_person() @ random_rotation(rng).T + rng.uniform(-2, 2, 3)
                       for _ in range(5)] + degenerate_cases()[:2])
    positions, quats, ok = body_poses(people)
    assert positions.shape == (7, 3) and quats.shape == (7, 4) and ok.shape == (7,)
    for i in range(7):
        p, q, o = body_pose(people[i])
        np.testing.assert_allclose(positions[i], p)
        np.testing.assert_allclose(quats[i], q)
        assert ok[i] == o
    assert ok.tolist() == [True] * 5 + [False] * 2
    assert body_poses(people.reshape(7, 1, 17, 3))[1].shape == (7, 1, 4)


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        body_pose(np.zeros((16, 3)))
    with pytest.raises(ValueError):
        body_poses(np.zeros((2, 17, 2)))


def test_quaternion_round_trip_all_branches():
    rng = np.random.default_rng(1)
    rotations = [random_rotation(rng) for _ in range(200)]
    # rotations by ~pi about each axis exercise every branch of the conversion
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]),
                  np.eye(3)]
    r = np.stack(rotations)
    q = rotation_matrix_to_quaternion(r)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0)
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(quaternion_to_rotation_matrix(q), r, atol=1e-12)
    np.testing.assert_allclose(rotation_matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0],
                               atol=1e-12)


def test_empty_batch():
    positions, quats, ok = body_poses(np.zeros((0, 17, 3)))
    assert positions.shape == (0, 3) and quats.shape == (0, 4) and ok.shape == (0,)
