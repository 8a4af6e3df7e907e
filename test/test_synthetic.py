"""The synthetic pose generator: determinism, anatomy, joint limits, cameras, detections."""
import numpy as np
import pytest

from cfi_pose_ros.camera import normalize_screen, project
from cfi_pose_ros.skeleton import H36M_17
from training.h36m import PoseSet
from training.synthetic import (DOFS, FAMILY_NAMES, IMAGE_SIZES, JOINT_LIMITS, NO_NOISE, REST_LENGTHS,
                                DetectorNoise, forward_kinematics, mirror_poses, random_bone_lengths,
                                random_camera, random_poses, sample_joint_angles, synthetic_pose_set,
                                synthetic_scene)

BONES = [(p, c) for c, p in enumerate(H36M_17.parents) if p >= 0]
J = H36M_17.index


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(1500, seed=0)


def bone_lengths(poses: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(poses[:, c] - poses[:, p], axis=-1) for p, c in BONES], axis=1)


def test_deterministic_by_seed():
    np.testing.assert_array_equal(random_poses(50, seed=7), random_poses(50, seed=7))
    assert not np.allclose(random_poses(50, seed=7), random_poses(50, seed=8))
    a, b = synthetic_scene(30, seed=2), synthetic_scene(30, seed=2)
    for field in ("joints_cam", "pixels", "pixels_clean", "scores", "image_sizes", "families"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.cameras == b.cameras
    s1, s2 = synthetic_pose_set(40, seed=5), synthetic_pose_set(40, seed=5)
    np.testing.assert_array_equal(s1.inputs_2d, s2.inputs_2d)
    np.testing.assert_array_equal(s1.targets_3d, s2.targets_3d)


def test_random_poses_shape_and_root():
    poses = random_poses(64, seed=1)
    assert poses.shape == (64, 17, 3)
    np.testing.assert_array_equal(poses[:, 0], 0.0)
    assert np.isfinite(poses).all()
    # the same people as the scene with that seed, before placement
    np.testing.assert_allclose(poses, synthetic_scene(64, seed=1).root_relative, atol=1e-12)


def test_bone_lengths_are_anatomical_and_symmetric():
    poses = random_poses(2000, seed=2)
    lengths = bone_lengths(poses)
    by_child = {c: lengths[:, i] for i, (_, c) in enumerate(BONES)}
    # adult ranges (metres) covering statures 1.5-1.95 m
    ranges = {"right_hip": (0.08, 0.18), "right_knee": (0.36, 0.56), "right_ankle": (0.35, 0.55),
              "spine": (0.18, 0.30), "thorax": (0.19, 0.33), "neck_nose": (0.08, 0.16),
              "head": (0.08, 0.16), "right_shoulder": (0.10, 0.20), "right_elbow": (0.22, 0.35),
              "right_wrist": (0.19, 0.32)}
    for name, (lo, hi) in ranges.items():
        values = by_child[J(name)]
        assert lo <= values.min() and values.max() <= hi, name
    for left, right in H36M_17.flip_pairs:
        if H36M_17.parents[left] >= 0:
            np.testing.assert_allclose(by_child[left], by_child[right], rtol=1e-9)
    # averages near the Human3.6M subjects' (hip->knee ~0.45, upper arm ~0.28)
    assert by_child[J("left_knee")].mean() == pytest.approx(0.45, abs=0.03)
    assert by_child[J("left_elbow")].mean() == pytest.approx(0.28, abs=0.02)


def test_stature_scales_the_skeleton():
    rng = np.random.default_rng(3)
    lengths, stature = random_bone_lengths(rng, 3000)
    assert stature.min() >= 1.5 and stature.max() <= 1.95
    leg = lengths[:, J("left_knee")] + lengths[:, J("left_ankle")]
    assert np.corrcoef(leg, stature)[0, 1] > 0.8
    np.testing.assert_allclose(np.median(lengths / REST_LENGTHS.clip(1e-9), axis=0)[1:],
                               np.median(stature) / 1.72, rtol=0.03)


def test_people_stand_upright_in_the_camera_frame(scene):
    """y points down: the head is above (smaller y than) both ankles in every family."""
    poses = scene.root_relative
    head_y = poses[:, J("head"), 1]
    ankles_y = poses[:, [J("left_ankle"), J("right_ankle")], 1].min(axis=1)
    assert np.all(head_y < ankles_y - 0.15)
    upright = np.isin(scene.families, [FAMILY_NAMES.index(f) for f in ("standing", "walking", "turning")])
    assert np.all(ankles_y[upright] - head_y[upright] > 0.85)
    # the trunk's up direction (pelvis -> thorax) points to -y
    up = poses[:, J("thorax")] - poses[:, J("pelvis")]
    up /= np.linalg.norm(up, axis=-1, keepdims=True)
    assert np.median(up[:, 1]) < -0.85


def test_yaw_all_around(scene):
    poses = scene.root_relative
    left = poses[:, J("left_hip")] - poses[:, J("right_hip")]
    up = -(poses[:, J("thorax")] - poses[:, J("pelvis")])
    forward = np.cross(left, up)
    # angle of the facing direction seen from above: 0 = towards the camera (-z)
    angle = np.degrees(np.arctan2(forward[:, 0], -forward[:, 2]))
    counts, _ = np.histogram(angle, bins=8, range=(-180, 180))
    assert counts.min() > len(poses) / 8 * 0.7


def test_all_families_appear(scene):
    assert set(np.unique(scene.families)) == set(range(len(FAMILY_NAMES)))
    assert len(FAMILY_NAMES) >= 10


def test_joint_angles_respect_limits():
    rng = np.random.default_rng(4)
    families = np.repeat(np.arange(len(FAMILY_NAMES)), 200)
    angles = sample_joint_angles(rng, families)
    assert angles.shape == (len(families), len(DOFS))
    for i, name in enumerate(DOFS):
        lo, hi = JOINT_LIMITS[name[2:] if name[:2] in ("l_", "r_") else name]
        assert lo <= angles[:, i].min() and angles[:, i].max() <= hi, name
    for side in ("l_", "r_"):
        assert angles[:, DOFS.index(side + "knee_flex")].min() >= 0
        assert angles[:, DOFS.index(side + "elbow_flex")].min() >= 0


def test_knees_and_elbows_bend_one_way():
    """In the thigh's frame the shank only swings backwards; in the upper arm's the forearm forwards."""
    rng = np.random.default_rng(5)
    families = np.repeat(np.arange(len(FAMILY_NAMES)), 100)
    angles = sample_joint_angles(rng, families)
    lengths, _ = random_bone_lengths(rng, len(families))
    positions, frames = forward_kinematics(angles, lengths)
    for side in ("left", "right"):
        knee, ankle = J(f"{side}_knee"), J(f"{side}_ankle")
        elbow, wrist = J(f"{side}_elbow"), J(f"{side}_wrist")
        shank = np.einsum("nji,nj->ni", frames[:, knee], positions[:, ankle] - positions[:, knee])
        forearm = np.einsum("nji,nj->ni", frames[:, elbow], positions[:, wrist] - positions[:, elbow])
        assert np.all(shank[:, 2] <= 1e-9), side          # z = forward of the thigh
        assert np.all(forearm[:, 2] >= -1e-9), side       # z = forward of the upper arm
        # the hinge does not move sideways
        np.testing.assert_allclose(shank[:, 0], 0.0, atol=1e-9)
        np.testing.assert_allclose(forearm[:, 0], 0.0, atol=1e-9)
    # sitting: the knees are well in front of the hips
    body = positions[families == FAMILY_NAMES.index("sitting")]
    assert np.all(body[:, J("left_knee"), 2] > body[:, J("left_hip"), 2] + 0.2)


def test_mirror_is_an_involution():
    poses = random_poses(10, seed=6)
    np.testing.assert_array_equal(mirror_poses(mirror_poses(poses)), poses)
    np.testing.assert_allclose(bone_lengths(mirror_poses(poses)), bone_lengths(poses)[:, _flip_bones()])


def _flip_bones():
    perm = H36M_17.flip_permutation()
    index = {c: i for i, (_, c) in enumerate(BONES)}
    return [index[perm[c]] for _, c in BONES]


def test_random_camera_is_realistic():
    rng = np.random.default_rng(7)
    cameras = [random_camera(rng) for _ in range(500)]
    sizes = {(c.width, c.height) for c in cameras}
    assert sizes == set(IMAGE_SIZES)
    for c in cameras:
        c.validate()
        assert 500 <= c.fx <= 1500 and abs(c.fy / c.fx - 1) < 0.01
        assert abs(c.cx - c.width / 2) <= 0.02 * c.width + 1e-9
        assert abs(c.cy - c.height / 2) <= 0.02 * c.height + 1e-9
        hfov = 2 * np.degrees(np.arctan(c.width / 2 / c.fx))
        assert 35 - 1e-6 <= hfov <= 100 + 1e-6
        assert c.radial == (0.0, 0.0, 0.0) and c.tangential == (0.0, 0.0)
    assert any(random_camera(rng, distortion=True).radial != (0.0, 0.0, 0.0) for _ in range(3))


def test_people_are_in_front_and_inside_the_image(scene):
    root_z = scene.joints_cam[:, 0, 2]
    assert root_z.min() >= 2.0 and root_z.max() <= 8.0
    assert np.all(scene.joints_cam[..., 2] > 1.0)
    sizes = scene.image_sizes[:, None, :]
    assert np.all((scene.pixels_clean >= 0) & (scene.pixels_clean <= sizes))
    for i in range(0, len(scene), 97):
        np.testing.assert_allclose(scene.pixels_clean[i], project(scene.joints_cam[i], scene.cameras[i]))
        assert tuple(scene.image_sizes[i]) == (scene.cameras[i].width, scene.cameras[i].height)


def test_distorted_cameras_still_fit():
    s = synthetic_scene(100, seed=8, distortion_prob=1.0)
    assert all(c.radial != (0.0, 0.0, 0.0) for c in s.cameras)
    assert np.all((s.pixels_clean >= 0) & (s.pixels_clean <= s.image_sizes[:, None, :]))


def test_detector_noise():
    clean = synthetic_scene(800, seed=9, noise=NO_NOISE)
    np.testing.assert_array_equal(clean.pixels, clean.pixels_clean)
    noisy = synthetic_scene(800, seed=9, noise=DetectorNoise(std_px=3.0, outlier_prob=0.0))
    np.testing.assert_array_equal(noisy.pixels_clean, clean.pixels_clean)     # same people and cameras
    error = noisy.pixels - noisy.pixels_clean
    assert 2.5 < np.std(error) < 4.5
    outliers = synthetic_scene(800, seed=9, noise=DetectorNoise(std_px=2.0, outlier_prob=0.05,
                                                                  outlier_std_px=40.0))
    distance = np.linalg.norm(outliers.pixels - outliers.pixels_clean, axis=-1)
    share = np.mean(distance > 25)
    assert 0.02 < share < 0.08
    assert outliers.scores[distance > 40].mean() < outliers.scores[distance < 5].mean()
    assert np.all((outliers.scores > 0) & (outliers.scores <= 1))
    assert np.all((outliers.pixels >= 0) & (outliers.pixels <= outliers.image_sizes[:, None, :]))


def test_missing_joints_are_nan_with_score_zero():
    s = synthetic_scene(500, seed=10, noise=DetectorNoise(missing_prob=0.2))
    missing = np.isnan(s.pixels).any(axis=-1)
    assert np.array_equal(missing, np.isnan(s.pixels).all(axis=-1))
    assert 0.15 < missing.mean() < 0.25
    assert np.all(s.scores[missing] == 0) and np.all(s.scores[~missing] > 0)


def test_pose_set():
    poses = synthetic_pose_set(300, seed=11)
    assert isinstance(poses, PoseSet) and len(poses) == 300
    assert poses.inputs_2d.shape == (300, 17, 2) and poses.inputs_2d.dtype == np.float32
    assert poses.targets_3d.shape == (300, 17, 3) and poses.targets_3d.dtype == np.float32
    np.testing.assert_array_equal(poses.targets_3d[:, 0], 0.0)
    assert poses.subjects == ("synthetic",)
    assert np.all(poses.subject_ids == 0) and np.all(poses.camera_ids == 0)
    assert poses.action_ids.dtype == np.int16 and 0 <= poses.action_ids.min() and poses.action_ids.max() < 15
    assert len(np.unique(poses.action_ids)) > 5
    # the inputs are the scene's projections, normalised with each image's own size
    s = synthetic_scene(300, seed=11, noise=NO_NOISE)
    w, h = s.image_sizes[:, 0].astype(float), s.image_sizes[:, 1].astype(float)
    np.testing.assert_allclose(poses.inputs_2d, normalize_screen(s.pixels_clean, w, h), atol=1e-6)
    np.testing.assert_allclose(poses.targets_3d, s.root_relative, atol=1e-6)
    assert np.abs(poses.inputs_2d[..., 0]).max() <= 1.0


def test_pose_set_with_noise_and_without_missing_joints():
    poses = synthetic_pose_set(100, seed=12, noise=DetectorNoise(std_px=2.0))
    clean = synthetic_pose_set(100, seed=12)
    np.testing.assert_array_equal(poses.targets_3d, clean.targets_3d)
    assert not np.array_equal(poses.inputs_2d, clean.inputs_2d)
    with pytest.raises(ValueError, match="missing"):
        synthetic_pose_set(10, seed=0, noise=DetectorNoise(missing_prob=0.1))
