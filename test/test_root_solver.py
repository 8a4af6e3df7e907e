import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfi_pose_ros.camera import CameraIntrinsics, project
from cfi_pose_ros.root_solver import reproject, solve_root_translation, validate_camera_matrix

CAMERA = CameraIntrinsics(fx=1145.0, fy=1143.8, cx=512.5, cy=515.4, width=1000, height=1002)
K = CAMERA.matrix


def standing_person() -> np.ndarray:
    """H36M-17 root-relative skeleton facing the camera (optical frame: y down)."""
    return np.array([
        [0.0, 0.0, 0.0],                                                 # pelvis
        [-0.1, 0.0, 0.0], [-0.1, 0.45, 0.0], [-0.1, 0.9, 0.05],           # right leg
        [0.1, 0.0, 0.0], [0.1, 0.45, 0.0], [0.1, 0.9, 0.05],              # left leg
        [0.0, -0.25, 0.0], [0.0, -0.5, 0.0], [0.0, -0.6, -0.08], [0.0, -0.7, 0.0],
        [0.18, -0.5, 0.0], [0.2, -0.25, 0.0], [0.22, 0.0, -0.05],         # left arm
        [-0.18, -0.5, 0.0], [-0.2, -0.25, 0.0], [-0.22, 0.0, -0.05],      # right arm
    ])


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Yaw about the camera's -y (vertical) axis, then pitch about x, roll about z."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def scene(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rel = np.stack([standing_person() @ rotation(rng.uniform(-np.pi, np.pi),
                                                 rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2)).T
                    for _ in range(n)])
    t = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-0.5, 0.5, n), rng.uniform(2.0, 8.0, n)], -1)
    pixels = project(rel + t[:, None], CAMERA)
    scores = rng.uniform(0.3, 1.0, (n, 17))
    return rel, pixels, scores, t


@pytest.mark.parametrize("refine, robust", [(0, False), (1, False), (3, False), (1, True)])
def test_exact_recovery_noiseless(refine, robust):
    rel, pixels, scores, t = scene(50)
    est, ok = solve_root_translation(rel, pixels, scores, K, refine=refine, robust=robust)
    assert est.shape == (50, 3) and ok.shape == (50,) and ok.dtype == bool
    assert ok.all()
    np.testing.assert_allclose(est, t, atol=1e-8)


def test_single_person_unbatched():
    rel, pixels, scores, t = scene(1, seed=3)
    est, ok = solve_root_translation(rel[0], pixels[0], scores[0], K)
    assert est.shape == (3,) and bool(ok)
    np.testing.assert_allclose(est, t[0], atol=1e-8)


def test_accepts_flat_camera_info_k():
    rel, pixels, scores, t = scene(3, seed=4)
    est, ok = solve_root_translation(rel, pixels, scores, list(K.ravel()))
    assert ok.all()
    np.testing.assert_allclose(est, t, atol=1e-8)


def test_skewed_camera():
    k = K.copy()
    k[0, 1] = 3.0
    rel, _, scores, t = scene(5, seed=5)
    pts = rel + t[:, None]
    pixels = (pts @ k.T)[..., :2] / pts[..., 2:3]
    est, ok = solve_root_translation(rel, pixels, scores, k)
    assert ok.all()
    np.testing.assert_allclose(est, t, atol=1e-8)


def test_missing_joints_ignored():
    rel, pixels, scores, t = scene(20, seed=1)
    # garbage at the ignored joints must not leak into the answer
    pixels[:, 3] = np.nan
    rel[:, 13] = np.nan
    pixels[:, 6] = 1e6
    scores[:, 6] = 0.0
    pixels[:, 16] = -1e6
    scores[:, 16] = np.nan
    pixels[:, 10] = 1e6
    scores[:, 10] = -0.5
    est, ok = solve_root_translation(rel, pixels, scores, K)
    assert ok.all()
    np.testing.assert_allclose(est, t, atol=1e-8)


def test_two_valid_joints_suffice():
    rel, pixels, scores, t = scene(5, seed=2)
    scores[:, 1:] = 0.0          # only the pelvis and the right knee remain
    scores[:, 2] = 1.0
    est, ok = solve_root_translation(rel, pixels, scores, K)
    assert ok.all()
    np.testing.assert_allclose(est, t, atol=1e-6)


def test_noisy_pixels_give_small_error():
    rel, pixels, scores, t = scene(200, seed=7)
    rng = np.random.default_rng(8)
    noisy = pixels + rng.normal(0.0, 2.0, pixels.shape)
    est, ok = solve_root_translation(rel, noisy, scores, K)
    assert ok.all()
    err = est - t
    # lateral error is tiny; depth is the hard direction, still within a few cm
    assert np.sqrt(np.mean(err[:, :2] ** 2)) < 0.02
    assert np.sqrt(np.mean(err[:, 2] ** 2)) < 0.08
    assert np.abs(err[:, 2] / t[:, 2]).max() < 0.05


def reprojection_rms(rel, t, pixels):
    return np.sqrt(np.mean(np.sum((project(rel + t[:, None], CAMERA) - pixels) ** 2, -1)))


def test_refinement_does_not_worsen_reprojection():
    rel, pixels, scores, t = scene(200, seed=9)
    rng = np.random.default_rng(10)
    noisy = pixels + rng.normal(0.0, 3.0, pixels.shape)
    ones = np.ones_like(scores)
    plain, ok0 = solve_root_translation(rel, noisy, ones, K, refine=0, robust=False)
    refined, ok1 = solve_root_translation(rel, noisy, ones, K, refine=2, robust=False)
    assert ok0.all() and ok1.all()
    assert reprojection_rms(rel, refined, noisy) <= reprojection_rms(rel, plain, noisy) + 1e-9


def test_scores_weight_outliers():
    rel, pixels, scores, t = scene(10, seed=11)
    pixels[:, 13] += 60.0            # a badly detected wrist
    high = np.ones_like(scores)
    low = high.copy()
    low[:, 13] = 0.01
    est_high, _ = solve_root_translation(rel, pixels, high, K, robust=False)
    est_low, _ = solve_root_translation(rel, pixels, low, K, robust=False)
    err_high = np.linalg.norm(est_high - t, axis=-1)
    err_low = np.linalg.norm(est_low - t, axis=-1)
    assert np.all(err_low < err_high)
    # the robust solve gives the outlier no weight at all, whatever its score
    robust_high, _ = solve_root_translation(rel, pixels, high, K)
    assert np.abs(robust_high - t).max() < 1e-6 < err_high.min()


def test_degenerate_inputs_give_not_ok_without_raising():
    rel, pixels, scores, t = scene(8, seed=12)
    rel[0] = np.nan                              # nothing valid
    scores[1, 1:] = 0.0                          # one joint only
    scores[2] = 0.0                              # all scores zero
    rel[3] = 0.0                                 # collapsed skeleton: all on one ray
    pixels[3] = pixels[3, :1]
    pixels[4] = np.inf
    scores[5] = np.nan
    # person behind the camera: exact solution has tz < 0
    rel_b = standing_person()
    pts = rel_b + np.array([0.2, 0.1, -3.0])
    pixels[6] = (pts @ K.T)[:, :2] / pts[:, 2:3]
    rel[6] = rel_b
    est, ok = solve_root_translation(rel, pixels, scores, K)
    assert ok.tolist() == [False] * 7 + [True]
    assert np.isnan(est[:7]).all()
    np.testing.assert_allclose(est[7], t[7], atol=1e-8)


def test_a_placement_with_a_seen_joint_at_or_behind_the_lens_is_no_placement():
    """A person 0.6 m away whose lifted wrist reaches 0.58 m toward the camera, where the image has
    it at the body: placed, that seen wrist was 2 cm from the lens (the audit's case: a detected
    knee 4 cm behind it, published as ROOT_FROM_INTRINSICS). Unseen, the wrist is not judged."""
    truth = standing_person()
    t = np.array([0.0, 0.0, 0.6])
    pixels = (truth + t) @ K.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    lifted = truth.copy()
    lifted[13, 2] = -0.58
    scores = np.ones(17)
    est, ok = solve_root_translation(lifted, pixels, scores, K)
    assert not ok and np.isnan(est).all(), est
    scores[13] = 0.0
    est, ok = solve_root_translation(lifted, pixels, scores, K)
    assert ok and np.allclose(est, t, atol=1e-6), est


def test_empty_batch():
    est, ok = solve_root_translation(np.zeros((0, 17, 3)), np.zeros((0, 17, 2)), np.zeros((0, 17)), K)
    assert est.shape == (0, 3) and ok.shape == (0,)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        solve_root_translation(np.zeros((2, 17, 3)), np.zeros((2, 16, 2)), np.ones((2, 17)), K)
    with pytest.raises(ValueError):
        solve_root_translation(np.zeros((2, 17, 3)), np.zeros((2, 17, 2)), np.ones((2, 16)), K)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 3)), "not calibrated"),
    (np.zeros(9), "not calibrated"),
    (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "NaN"),
    (np.array([[0.0, 0, 320], [0, 500, 240], [0, 0, 1]]), "focal"),
    (np.array([[-500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), "focal"),
    (np.array([[500.0, 0, 320], [0, -1, 240], [0, 0, 1]]), "focal"),
    (np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 0]]), "bottom row"),
    (np.eye(4), "9 entries"),
    # finite, but no camera's: fx = 1e150 placed a person 6e147 m away, fx = 1e308 silently not at all,
    # cx = 1e300 6e297 m to the side, fx = 1e-3 at z = 6 um, all as if from a calibrated camera
    (np.array([[1e150, 0, 320], [0, 1e150, 240], [0, 0, 1]]), "no real camera's: focal lengths"),
    (np.array([[1e308, 0, 320], [0, 1e308, 240], [0, 0, 1]]), "no real camera's: focal lengths"),
    (np.array([[1e-3, 0, 320], [0, 1e-3, 240], [0, 0, 1]]), "no real camera's: focal lengths"),
    (np.array([[500.0, 0, 320], [0, 1, 240], [0, 0, 1]]), "more than 10x apart"),
    (np.array([[500.0, 1e200, 320], [0, 500, 240], [0, 0, 1]]), "skew"),
    (np.array([[500.0, 0, 1e300], [0, 500, 240], [0, 0, 1]]), "principal point"),
])
def test_validate_camera_matrix_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_camera_matrix(bad)
    with pytest.raises(ValueError):
        solve_root_translation(np.zeros((1, 17, 3)), np.zeros((1, 17, 2)), np.ones((1, 17)), bad)


def test_a_bottom_row_that_scales_k_past_the_largest_float_is_refused_without_a_warning():
    """A byte-fuzzed CameraInfo's K[2, 2] of 6.4e-322 overflowed ``k /= k[2, 2]``: numpy's RuntimeWarning
    (two lines on stderr) in the lifter's log before the matrix was refused for its infinite focal length."""
    import warnings

    bad = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 6.4e-322]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="K\\[2, 2\\] = 6.4[0-9]*e-322 scales its entries past the largest float"):
            validate_camera_matrix(bad)


@pytest.mark.parametrize("matrix, size, ok", [
    ([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], (640, 480), True),
    ([[190.0, 0, 640], [0, 190, 480], [0, 0, 1]], (1280, 960), True),        # a fisheye's pinhole K
    ([[2.9e5, 0, 2048], [0, 2.9e5, 1080], [0, 0, 1]], (4096, 2160), True),   # a 1000 mm telephoto
    ([[1e5, 0, 320], [0, 1e5, 240], [0, 0, 1]], (640, 480), True),           # 0.37 degrees: still a lens
    ([[1e6, 0, 320], [0, 1e6, 240], [0, 0, 1]], (640, 480), False),          # 0.04 degrees on 640 px
    ([[20.0, 0, 320], [0, 20, 240], [0, 0, 1]], (640, 480), False),
    ([[500.0, 0, 2000], [0, 500, 240], [0, 0, 1]], (640, 480), False),
    ([[500.0, 0, 320], [0, 500, -600], [0, 0, 1]], (640, 480), False),
])
def test_validate_camera_matrix_judges_k_against_the_sensor_it_is_for(matrix, size, ok):
    if ok:
        validate_camera_matrix(np.array(matrix), size)
    else:
        with pytest.raises(ValueError, match="do not fit|far outside"):
            validate_camera_matrix(np.array(matrix), size)
        validate_camera_matrix(np.array(matrix))           # without the size: only absolute bounds


def test_validate_camera_matrix_normalises():
    k = validate_camera_matrix(2.0 * K)
    np.testing.assert_allclose(k, K)
    assert validate_camera_matrix(K.ravel().tolist()).shape == (3, 3)


@settings(max_examples=60, deadline=None)
@given(yaw=st.floats(-np.pi, np.pi), pitch=st.floats(-0.5, 0.5),
       tx=st.floats(-3, 3), ty=st.floats(-2, 2), tz=st.floats(1.0, 20.0))
def test_recovery_property(yaw, pitch, tx, ty, tz):
    rel = standing_person() @ rotation(yaw, pitch).T
    t = np.array([tx, ty, tz])
    pixels = project(rel + t, CAMERA)
    est, ok = solve_root_translation(rel, pixels, np.ones(17), K)
    assert ok
    np.testing.assert_allclose(est, t, atol=1e-7 * tz)


# ---------------------------------------------------------------- one bad joint (issue 13, item 4)

@pytest.fixture(scope="module")
def lifted_clip():
    """The demo clip's people (5.3 m away, 1000 px image) as the shipped weights lift them: real
    lifter error, so the clean solve is not exact and an outlier has to be told from it."""
    from cfi_pose_ros.camera import normalize_screen
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS

    with np.load(DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz") as data:
        pixels = data["pixels"][::5].reshape(-1, 17, 2).astype(np.float64)
        scores = data["scores"][::5].reshape(-1, 17).astype(np.float64)
        truth = data["truth_camera_m"][::5].reshape(-1, 17, 3)
        width, height = data["image_size"]
        camera = data["camera_matrix"]
    lifter = create_lifter(DEFAULT_WEIGHTS, backend="torch", log=lambda *_: None)
    rel = lifter.lift(normalize_screen(pixels, width, height).astype(np.float32)).astype(np.float64)
    return rel - rel[:, :1], pixels, scores, truth, camera


DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1), (0.6, 0.8), (-0.6, 0.8), (0.6, -0.8), (-0.6, -0.8)]


@pytest.mark.parametrize("shift, bound", [(100.0, 0.05), (1000.0, 0.10)])
def test_one_displaced_joint_barely_moves_the_root_depth(lifted_clip, shift, bound):
    rel, pixels, scores, truth, camera = lifted_clip
    clean, ok = solve_root_translation(rel, pixels, scores, camera)
    assert ok.all()
    # the clean case is as accurate as before (least squares: 3.2 % mean depth error on the clip)
    assert np.mean(np.abs(clean[:, 2] - truth[:, 0, 2]) / truth[:, 0, 2]) < 0.04
    worst = 0.0
    for joint in range(17):
        for direction in DIRECTIONS:
            moved = pixels.copy()
            moved[:, joint] += shift * np.array(direction)
            est, ok = solve_root_translation(rel, moved, scores, camera)
            assert ok.all(), (joint, direction)
            worst = max(worst, float(np.max(np.abs(est[:, 2] - clean[:, 2]) / clean[:, 2])))
    assert worst <= bound, f"one joint moved {shift:g} px changed the root depth by {worst:.1%}"


def test_outlier_joints_at_most_keeps_the_worst_and_the_threshold_decides():
    from cfi_pose_ros.root_solver import outlier_joints
    rel, pixels, scores, t = scene(6, seed=21)
    pixels += np.random.default_rng(22).normal(0.0, 1.0, pixels.shape)   # a lifter is never exact
    pixels[:, 13, 0] += 80.0                     # a wrist far off
    pixels[:, 2, 1] += 40.0                      # and a knee somewhat off
    est, ok = solve_root_translation(rel, pixels, scores, K)
    assert ok.all()
    both = outlier_joints(rel, pixels, scores, K, est)
    assert both[:, 13].all() and both[:, 2].all()
    worst = outlier_joints(rel, pixels, scores, K, est, at_most=1)
    assert worst[:, 13].all() and not worst[:, 2].any() and (worst.sum(axis=1) == 1).all()
    assert not outlier_joints(rel, pixels, scores, K, est, threshold=1e6).any()


def test_scaled_reprojection_errors_measure_each_joint_in_the_persons_residual_scale():
    from cfi_pose_ros.root_solver import scaled_reprojection_errors
    rel, pixels, scores, t = scene(3, seed=5)
    noise = np.random.default_rng(6).normal(0.0, 6.0, pixels.shape)    # above the scale floor (1 % of 2D size)
    pixels = pixels + noise
    pixels[:, 13, 0] += 150.0
    scores[:, 4] = 0.0                                          # a missing joint has no error
    scaled = scaled_reprojection_errors(rel, pixels, scores, K, t)
    residual = np.linalg.norm(noise, axis=-1)
    residual[:, 13] = np.linalg.norm(noise[:, 13] + [150.0, 0.0], axis=-1)
    valid = np.arange(17) != 4
    sigma = 1.4826 * np.median(residual[:, valid], axis=1)      # at the true root: the residuals are the noise
    np.testing.assert_allclose(scaled[:, valid], residual[:, valid] / sigma[:, None], rtol=1e-6)
    assert np.isnan(scaled[:, 4]).all() and (scaled[:, 13] > 10).all()
    assert np.isnan(scaled_reprojection_errors(rel, pixels, scores, K, np.full_like(t, np.nan))).all()
    assert scaled_reprojection_errors(rel[0], pixels[0], scores[0], K, t[0]).shape == (17,)


def test_reproject_inverts_the_pinhole_and_refuses_points_behind_the_camera():
    k = np.array([[1000.0, 0, 500], [0, 990.0, 480], [0, 0, 1]])
    rel = np.array([[[0.0, 0, 0], [0.5, -0.2, 0.1], [0.0, 0, -6.0]]])
    pixels = reproject(rel, np.array([[0.1, 0.2, 5.0]]), k)
    np.testing.assert_allclose(pixels[0, 0], [500 + 1000 * 0.1 / 5, 480 + 990 * 0.2 / 5])
    np.testing.assert_allclose(pixels[0, 1], [500 + 1000 * 0.6 / 5.1, 480 + 990 * 0.0 / 5.1])
    assert np.isnan(pixels[0, 2]).all()                      # 1 m behind the camera
    assert np.isnan(reproject(rel, np.full((1, 3), np.nan), k)).all()
    skewed = k + np.array([[0, 3.0, 0], [0, 0, 0], [0, 0, 0]])       # the solve's model has skew
    np.testing.assert_allclose(reproject(rel, np.array([[0.1, 0.2, 5.0]]), skewed)[0, 1],
                               [500 + (1000 * 0.6 + 3.0 * 0.0) / 5.1, 480 + 990 * 0.0 / 5.1])
    np.testing.assert_allclose(reproject(rel, np.array([[0.1, 0.3, 5.0]]), skewed)[0, 0],
                               [500 + (1000 * 0.1 + 3.0 * 0.3) / 5, 480 + 990 * 0.3 / 5])
    # one person alone, as solve_root_translation takes one (an IndexError before)
    np.testing.assert_array_equal(reproject(rel[0], np.array([0.1, 0.2, 5.0]), k), pixels[0])
