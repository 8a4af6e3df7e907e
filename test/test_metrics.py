"""MPJPE, P-MPJPE and the per-class averaging papers report."""
import numpy as np
import pytest

from cfi_pose_ros.metrics import PerClassError, mpjpe, p_mpjpe, procrustes_align


def random_pose(rng: np.random.Generator, n: int = 1, joints: int = 17) -> np.ndarray:
    return rng.normal(0, 0.3, (n, joints, 3))


def rotation_matrix(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mpjpe_constant_offset_is_its_length():
    target = random_pose(np.random.default_rng(0), 4)
    for offset in ([3.0, 4.0, 0.0], [0.0, 3.0, 4.0], [4.0, 0.0, -3.0]):
        np.testing.assert_allclose(mpjpe(target + np.array(offset), target), 5.0, rtol=1e-12)


def test_mpjpe_is_mean_of_joint_distances():
    target = np.zeros((1, 3, 3))
    predicted = np.array([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 6.0]]])
    np.testing.assert_allclose(mpjpe(predicted, target), [3.0])
    # (1 + 5) / 2: distances 1 and 5 (a 3-4-5 triangle)
    np.testing.assert_allclose(mpjpe(np.array([[[1.0, 0, 0], [3.0, 4.0, 0]]]), np.zeros((1, 2, 3))), [3.0])


def test_mpjpe_shapes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 2, 17, 3)), rng.normal(size=(5, 2, 17, 3))
    assert mpjpe(a, b).shape == (5, 2)
    assert mpjpe(a[0, 0], b[0, 0]).shape == ()
    assert mpjpe(a, a).max() == 0.0


def test_p_mpjpe_removes_rotation_scale_and_translation():
    rng = np.random.default_rng(2)
    target = random_pose(rng, 8)
    predicted = np.empty_like(target)
    for i in range(len(target)):
        r = rotation_matrix(rng.normal(size=3), rng.uniform(0, np.pi))
        predicted[i] = rng.uniform(0.5, 2.0) * target[i] @ r.T + rng.normal(0, 2.0, 3)
    assert mpjpe(predicted, target).min() > 0.1
    np.testing.assert_allclose(p_mpjpe(predicted, target), 0.0, atol=1e-9)
    np.testing.assert_allclose(procrustes_align(predicted, target), target, atol=1e-9)


def test_p_mpjpe_of_identical_poses_is_zero():
    target = random_pose(np.random.default_rng(3), 3)
    np.testing.assert_allclose(p_mpjpe(target, target), 0.0, atol=1e-12)


def test_p_mpjpe_does_not_align_reflections():
    """A mirror image is not a similarity transform with a proper rotation."""
    rng = np.random.default_rng(4)
    target = random_pose(rng, 16)
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    errors = p_mpjpe(mirrored, target)
    assert errors.min() > 0.02          # poses are ~0.3 m across; a reflection fit stays far off
    # the alignment it finds is a proper rotation: same handedness as the input
    aligned = procrustes_align(mirrored, target)
    for i in range(len(target)):
        a = aligned[i, 1:4] - aligned[i, 0]
        m = mirrored[i, 1:4] - mirrored[i, 0]
        assert np.sign(np.linalg.det(a)) == np.sign(np.linalg.det(m))


def test_p_mpjpe_scale_only():
    target = random_pose(np.random.default_rng(5), 2)
    np.testing.assert_allclose(p_mpjpe(2.5 * target, target), 0.0, atol=1e-10)
    np.testing.assert_allclose(mpjpe(2.5 * target, target),
                               1.5 * np.linalg.norm(target, axis=-1).mean(axis=-1))


def test_procrustes_alignment_is_least_squares_optimal():
    """No nearby similarity transform of the aligned pose gets closer (sum of squares)."""
    rng = np.random.default_rng(6)
    target = random_pose(rng, 1)
    predicted = target + rng.normal(0, 0.05, target.shape)
    aligned = procrustes_align(predicted, target)[0]
    best = np.sum((aligned - target[0]) ** 2)
    centre = aligned.mean(axis=0)
    for _ in range(200):
        r = rotation_matrix(rng.normal(size=3), rng.normal(0, 0.05))
        s = 1 + rng.normal(0, 0.02)
        t = rng.normal(0, 0.01, 3)
        moved = s * (aligned - centre) @ r.T + centre + t
        assert np.sum((moved - target[0]) ** 2) >= best - 1e-12
    assert p_mpjpe(predicted, target)[0] <= mpjpe(predicted, target)[0]


def test_per_class_error_means():
    metric = PerClassError("mpjpe", mpjpe, scale=1.0)
    target = np.zeros((4, 2, 3))
    # per-pose errors 1, 2, 3 for class "a" and 10 for class "b"
    predicted = np.zeros((4, 2, 3))
    predicted[:, :, 0] = np.array([1.0, 2.0, 10.0, 3.0])[:, None]
    metric.update(predicted, target, ["a", "a", "b", "a"])
    assert metric.per_class() == pytest.approx({"a": 2.0, "b": 10.0})
    assert metric.mean_over_classes() == pytest.approx(6.0)         # unweighted over classes
    assert metric.mean_over_poses() == pytest.approx(16.0 / 4)       # weighted by frames


def test_per_class_error_accumulates_and_scales_to_mm():
    metric = PerClassError("mpjpe", mpjpe)                           # metres -> millimetres
    target = np.zeros((2, 1, 3))
    metric.update(target + np.array([0.003, 0.004, 0.0]), target, np.array([0, 0]))
    metric.update(target + np.array([0.0, 0.0, 0.010]), target, np.array([0, 1]))
    assert metric.per_class() == pytest.approx({"0": (5 + 5 + 10) / 3, "1": 10.0})
    assert metric.mean_over_classes() == pytest.approx(((20 / 3) + 10) / 2)
    assert metric.mean_over_poses() == pytest.approx(30 / 4)


def test_per_class_error_empty_is_nan():
    metric = PerClassError("p_mpjpe", p_mpjpe)
    assert metric.per_class() == {}
    assert np.isnan(metric.mean_over_classes())
    assert np.isnan(metric.mean_over_poses())


def test_p_mpjpe_of_a_pose_collapsed_to_a_point_is_the_target_s_spread_without_nan():
    """All joints at one place (a lifter whose output collapsed): the best similarity maps it onto
    the target's centroid (scale 0), so the error is the target's mean distance from its centroid;
    a target collapsed to a point is met exactly by scale 0. It was 0/0: NaN, or LAPACK's
    'SVD did not converge' for the whole batch."""
    rng = np.random.default_rng(7)
    target = random_pose(rng, 3)
    # exact in binary, so the joints' mean is the point itself and the spread exactly 0 (as for a
    # root-centred collapsed pose: all zeros)
    point = np.broadcast_to(np.array([0.5, -1.0, 4.0]), target.shape)
    spread = np.linalg.norm(target - target.mean(axis=1, keepdims=True), axis=-1).mean(axis=-1)
    with np.errstate(all="raise"):
        np.testing.assert_allclose(p_mpjpe(point, target), spread, rtol=1e-12)
        np.testing.assert_allclose(procrustes_align(point, target), np.broadcast_to(
            target.mean(axis=1, keepdims=True), target.shape), atol=1e-12)
        np.testing.assert_allclose(p_mpjpe(target, point), 0.0, atol=1e-12)
        np.testing.assert_allclose(p_mpjpe(point, point), 0.0, atol=1e-12)
        np.testing.assert_allclose(p_mpjpe(np.zeros_like(target), target), spread, rtol=1e-12)
        # beside ordinary poses in one batch, which keep their own alignment
        mixed = np.concatenate([point[:1], target[1:] * 2.0])
        np.testing.assert_allclose(p_mpjpe(mixed, target), [spread[0], 0.0, 0.0], atol=1e-9)


def test_p_mpjpe_of_a_pose_with_a_non_finite_joint_is_nan_for_that_pose_alone():
    rng = np.random.default_rng(8)
    target = random_pose(rng, 3)
    for bad in (np.nan, np.inf):
        predicted = target * 1.5
        predicted[1, 4, 2] = bad
        errors = p_mpjpe(predicted, target)
        assert np.isnan(errors[1])
        np.testing.assert_allclose(errors[[0, 2]], 0.0, atol=1e-9)
