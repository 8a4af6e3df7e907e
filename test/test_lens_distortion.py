"""Undoing a ROS camera's lens distortion (cfi_pose_ros.camera): the three CameraInfo models against
OpenCV, which image_geometry and image_proc use, and what the lifter must never get from them; and
moving pixels to the square-pixel camera the lifter learned from."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from cfi_pose_ros.camera import (DISTORTION_COEFFICIENTS, LensDistortion, check_lens_over_image, distort_normalized,
                                 distort_pixels, lens_distortion, published_image_matrix, square_pixel_camera,
                                 undistort_normalized, undistort_pixels)

WIDTH, HEIGHT = 1280, 800
K = np.array([[640.0, 0.0, 639.5], [0.0, 641.0, 399.5], [0.0, 0.0, 1.0]])
# Calibrations of wide-angle lenses as ROS's camera_calibration writes them
LENSES = {
    "plumb_bob": [-0.30, 0.09, 0.0005, -0.0003, 0.0],
    "rational_polynomial": [2.5, 0.8, 0.001, -0.0005, 0.02, 2.8, 1.4, 0.15],
    "equidistant": [0.05, -0.01, 0.003, -0.0005],
}
OPENCV_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 500, 1e-15)   # converged, not 5 steps


def opencv_undistort(pixels: np.ndarray, model: str, d) -> np.ndarray:
    """cv2's undistortion to pixels of the same K (image_geometry's rectifyPoint with P = K)."""
    points = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    if model == "equidistant":
        return cv2.fisheye.undistortPoints(points, K, np.array(d), P=K, criteria=OPENCV_CRITERIA)[:, 0]
    return cv2.undistortPoints(points, K, np.array(d), P=K, criteria=OPENCV_CRITERIA)[:, 0]


def opencv_project(points: np.ndarray, model: str, d) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 1, 3)
    zero = np.zeros(3)
    if model == "equidistant":
        return cv2.fisheye.projectPoints(points, zero, zero, K, np.array(d))[0][:, 0]
    return cv2.projectPoints(points, zero, zero, K, np.array(d))[0][:, 0]


def image_pixels(count: int, margin: float = 0.0, seed: int = 0) -> np.ndarray:
    """Uniform pixels over the image, ``margin`` x its size beyond each border."""
    rng = np.random.default_rng(seed)
    return rng.uniform([-margin * WIDTH, -margin * HEIGHT], [(1 + margin) * WIDTH, (1 + margin) * HEIGHT], (count, 2))


@pytest.mark.parametrize("model", LENSES)
def test_undistortion_matches_opencv_over_the_whole_image(model):
    """Every pixel of the image (5000 at random and the corners) lands where cv2.undistortPoints
    (cv2.fisheye.undistortPoints for equidistant), run to convergence, puts it."""
    lens = lens_distortion(model, LENSES[model])
    pixels = np.concatenate([image_pixels(5000), [[0, 0], [WIDTH - 1, 0], [0, HEIGHT - 1], [WIDTH - 1, HEIGHT - 1]]])
    ours = undistort_pixels(pixels, K, lens)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, opencv_undistort(pixels, model, LENSES[model]), atol=1e-6)
    # the lens moves these points by up to hundreds of pixels: a real test of the model
    assert np.abs(ours - pixels).max() > 100


@pytest.mark.parametrize("model", LENSES)
def test_the_forward_model_is_opencv_s_and_undistortion_inverts_it(model):
    """distort_pixels is cv2.projectPoints' lens (what the node test projects people through), and
    undistortion gives back the ideal pixels, in the image and half an image beyond its borders."""
    lens = lens_distortion(model, LENSES[model])
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(-1.2, 1.2, (3000, 2)), np.ones(3000)]) * rng.uniform(1, 8, (3000, 1))
    ideal = points[:, :2] / points[:, 2:] @ K[:2, :2].T + K[:2, 2]
    raw = distort_pixels(ideal, K, lens)
    np.testing.assert_allclose(raw, opencv_project(points, model, LENSES[model]), atol=1e-6)
    np.testing.assert_allclose(undistort_pixels(raw, K, lens), ideal, atol=1e-6)
    # the other way round, from raw pixels well outside the image: back where they were, or NaN
    # where the model has no answer (the equidistant lens beyond 90 degrees)
    pixels = image_pixels(3000, margin=0.5, seed=2)
    undone = undistort_pixels(pixels, K, lens)
    solved = np.isfinite(undone).all(axis=1)
    assert solved.mean() > 0.7
    np.testing.assert_allclose(distort_pixels(undone[solved], K, lens), pixels[solved], atol=1e-6)


@pytest.mark.parametrize("model", LENSES)
def test_missing_joints_stay_missing_and_nothing_is_ever_inf(model):
    """NaN (a missing joint) stays NaN without touching its neighbours; inf, absurd and
    unreachable coordinates give NaN: never inf, never a number that is not the answer."""
    lens = lens_distortion(model, LENSES[model])
    pixels = np.array([[640.0, 400.0], [np.nan, 400.0], [np.nan, np.nan], [100.0, 50.0], [np.inf, 5.0],
                       [-np.inf, np.inf], [1e300, 1e300], [-1e6, 3.0], [1e12, -1e12], [5e307, 0.0]])
    with np.errstate(all="raise"):          # and no floating-point warning escapes
        out = undistort_pixels(pixels, K, lens)
    assert not np.isinf(out).any()
    assert np.isnan(out[1:3]).all() and np.isnan(out[[4, 5, 6, 8, 9]]).all()
    # -1e6 px: plumb_bob's k2 > 0 has no fold, so the model maps a point 82 degrees off axis there;
    # the answer, or NaN where the model has none
    assert np.isnan(out[7]).all() or np.allclose(distort_pixels(out[7], K, lens), pixels[7], rtol=1e-9)
    np.testing.assert_allclose(out[[0, 3]], opencv_undistort(pixels[[0, 3]], model, LENSES[model]), atol=1e-6)
    # a batch of people (N, 17, 2) keeps its shape and answers each joint as one alone
    people = np.broadcast_to(pixels[None, :4], (3, 4, 2)).copy()
    np.testing.assert_array_equal(undistort_pixels(people, K, lens), np.broadcast_to(out[:4], (3, 4, 2)))


def test_a_lens_fit_that_folds_inside_the_image_gives_nan_there_never_the_opposite_side():
    """A plumb_bob fit with k3 < 0 grows its distorted radius only up to a largest one; past it
    (here near the image corners) no ideal point maps to the pixel on the near side, and Newton's
    method found one 2000 px away on the other side of the image (the radial factor negative). Such
    joints are missing; the rest of the image is undone as OpenCV does."""
    d = [-0.30, 0.09, 0.001, -0.0005, -0.012]
    lens = lens_distortion("plumb_bob", d)
    assert 1.7 < lens.max_radius < 1.8
    pixels = image_pixels(5000)
    out = undistort_pixels(pixels, K, lens)
    lost = np.isnan(out).any(axis=1)
    assert 0 < lost.sum() < 0.1 * len(pixels)
    corner_distance = np.linalg.norm((pixels - K[:2, 2]) / np.diag(K)[:2], axis=1)
    assert corner_distance[lost].min() > 1.0                   # only far from the centre
    np.testing.assert_allclose(out[~lost], opencv_undistort(pixels[~lost], "plumb_bob", d), atol=1e-3)
    # every answer lies on its pixel's side of the principal point (beyond where the tangential
    # terms alone can move a point across an axis)
    away = np.abs(pixels[~lost] - K[:2, 2]) > 20
    assert (np.sign(out[~lost] - K[:2, 2]) == np.sign(pixels[~lost] - K[:2, 2]))[away].all()


def test_equidistant_points_90_degrees_off_axis_or_more_are_missing():
    """A fisheye sees past 90 degrees; a pinhole camera, and so the root solve, cannot: those
    pixels are missing joints, not points far away on the wrong side."""
    d = [0.0, 0.0, 0.0, 0.0001]
    lens = lens_distortion("equidistant", d)
    angles = np.radians([0.0, 45.0, 80.0, 89.0, 90.5, 95.0, 120.0])
    theta_d = angles * (1 + d[3] * angles ** 8)                # where the lens images each angle
    pixels = np.column_stack([K[0, 0] * theta_d + K[0, 2], np.full(len(angles), K[1, 2])])
    out = undistort_pixels(pixels, K, lens)
    assert np.isfinite(out[:4]).all() and np.isnan(out[4:]).all()
    np.testing.assert_allclose((out[:4, 0] - K[0, 2]) / K[0, 0], np.tan(angles[:4]), rtol=1e-6)


def test_zero_or_empty_coefficients_are_nothing_to_undo():
    """The fast path: a camera without distortion (or a rectified image's CameraInfo) gives no
    lens, and undistort_pixels returns the pixels unchanged, bit for bit."""
    for model, d in (("plumb_bob", [0.0] * 5), ("plumb_bob", []), ("", []), ("rational_polynomial", [0.0] * 8),
                     ("equidistant", [-0.0] * 4), ("some_future_model", [0.0] * 14)):
        assert lens_distortion(model, d) is None, (model, d)
    pixels = image_pixels(100)
    assert undistort_pixels(pixels, K, None) is not None
    np.testing.assert_array_equal(undistort_pixels(pixels, K, None), pixels)


@pytest.mark.parametrize("model, d, message", [
    ("plumb_bob", [np.nan, 0, 0, 0, 0], "NaN or inf"),
    ("plumb_bob", [-0.3, np.inf, 0, 0, 0], "NaN or inf"),
    ("fisheye", [0.1, 0.01, 0.0, 0.0], "unknown distortion model 'fisheye'"),
    ("", [-0.3, 0.1, 0, 0, 0], "unknown distortion model ''"),
    ("plumb_bob", [-0.3, 0.1, 0, 0, 0, 0.2, 0, 0], "takes 5"),
    ("equidistant", [0.1, 0.01, 0.0, 0.0, 0.3], "takes 4"),
    ("plumb_bob", [1e30, 0, 0, 0, 0], "no real lens"),
    ("rational_polynomial", [0, 0, 0, 0, 0, -2e4, 0, 0], "no real lens"),
])
def test_a_calibration_nothing_can_undo_is_refused_with_the_reason(model, d, message):
    with pytest.raises(ValueError, match=message):
        lens_distortion(model, d)


def test_the_reason_stays_short_whatever_a_camera_info_holds():
    """CameraInfo.d and distortion_model are unbounded: the warning the node logs for a million
    coefficients or a megabyte of model name is one short line."""
    for model, d in (("plumb_bob", np.ones(10**6)), ("x" * 10**6, [0.1]), ("plumb_bob", np.full(10**5, np.nan))):
        with pytest.raises(ValueError) as error:
            lens_distortion(model, d)
        assert len(str(error.value)) < 300, str(error.value)[:400]


def test_coefficients_the_model_takes_fewer_of_are_zero():
    """OpenCV's 4-coefficient plumb_bob (k3 = 0), and trailing zeros past the model's count."""
    assert lens_distortion("plumb_bob", [-0.3, 0.1, 0.001, 0.002]).coefficients == (-0.3, 0.1, 0.001, 0.002, 0.0)
    assert lens_distortion("plumb_bob", [-0.3, 0.1, 0, 0, 0, 0, 0, 0]).coefficients == (-0.3, 0.1, 0, 0, 0)
    assert set(DISTORTION_COEFFICIENTS) == {"plumb_bob", "rational_polynomial", "equidistant"}


@pytest.mark.parametrize("model", LENSES)
def test_undistorting_a_binned_or_cropped_image_is_undistorting_on_the_sensor(model):
    """A driver's region of interest and binning move the published image's pixels and principal
    point together: undistorting with the moved K (published_image_matrix) gives what undoing them,
    undistorting on the full sensor with its K, and applying them again gives (image_geometry)."""
    lens = lens_distortion(model, LENSES[model])
    offset, binning = (200, 120), (2, 2)
    published = published_image_matrix(K, offset, binning)
    sensor_pixels = image_pixels(2000)
    published_pixels = (sensor_pixels - offset) / binning
    on_sensor = (undistort_pixels(sensor_pixels, K, lens) - offset) / binning
    np.testing.assert_allclose(undistort_pixels(published_pixels, published, lens), on_sensor, atol=1e-6)


def points_in_view(count: int, seed: int = 0) -> np.ndarray:
    """Camera-frame points 2 to 8 m away, within 35 degrees of the optical axis."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 8.0, count)
    return np.column_stack([rng.uniform(-0.7, 0.7, (count, 2)) * z[:, None], z])


def pinhole_pixels(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    uvw = points @ np.asarray(matrix).T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize("binning", [(2, 1), (1, 2), (3, 2)])
def test_the_square_pixel_camera_of_a_binned_sensor_is_the_sensor_resized_alike_on_both_axes(binning):
    """A square-pixel sensor binned 2x1 has fx = fy / 2 in the published image: its square-pixel
    camera is the full sensor again (its focal length and image size); binned 3x2, the sensor
    binned 2x2. A point's pixel moved to it is where that camera sees the point."""
    sensor = np.array([[641.0, 0.0, 639.5], [0.0, 641.0, 399.5], [0.0, 0.0, 1.0]])
    published = published_image_matrix(sensor, (0, 0), binning)
    square, size = square_pixel_camera(published, (WIDTH / binning[0], HEIGHT / binning[1]))
    finest = min(binning)
    np.testing.assert_allclose(square[[0, 1], [0, 1]], [641.0 / finest] * 2, rtol=1e-12)
    np.testing.assert_allclose(size, (WIDTH / finest, HEIGHT / finest), rtol=1e-12)
    assert square[0, 1] == 0.0 and np.array_equal(square[2], [0.0, 0.0, 1.0])
    points = points_in_view(500)
    moved = undistort_pixels(pinhole_pixels(points, published), published, None, square)
    np.testing.assert_allclose(moved, pinhole_pixels(points, square), atol=1e-9)


def test_the_square_pixel_camera_takes_the_skew_and_the_lens_out():
    """A skewed anamorphic K (fx = 1.5 fy) and a distorted lens: the raw pixels moved to the
    square-pixel camera (one call with the lens) are where that ideal camera, without skew, sees
    the points; its image is 1.5 times as tall."""
    skewed = np.array([[900.0, 4.0, 630.0], [0.0, 600.0, 410.0], [0.0, 0.0, 1.0]])
    square, size = square_pixel_camera(skewed, (WIDTH, HEIGHT))
    assert square[0, 0] == square[1, 1] == 900.0 and square[0, 1] == 0.0
    np.testing.assert_allclose(size, (WIDTH, HEIGHT * 1.5))
    lens = lens_distortion("plumb_bob", LENSES["plumb_bob"])
    points = points_in_view(500, seed=1)
    raw = distort_pixels(pinhole_pixels(points, skewed), skewed, lens)
    np.testing.assert_allclose(undistort_pixels(raw, skewed, lens, square), pinhole_pixels(points, square),
                               atol=1e-6)


def test_a_camera_with_square_pixels_and_no_skew_is_left_as_it_is():
    """The lifter's input from such a camera stays bit for bit what it was."""
    square_k = np.array([[700.0, 0.0, 639.3], [0.0, 700.0, 399.7], [0.0, 0.0, 1.0]])
    matrix, size = square_pixel_camera(square_k, (WIDTH, HEIGHT))
    assert matrix.tobytes() == square_k.tobytes() and size == (WIDTH, HEIGHT)
    pixels = image_pixels(10)
    assert undistort_pixels(pixels, square_k, None, matrix).tobytes() == pixels.tobytes()


def test_normalised_models_are_inverse_to_each_other():
    rng = np.random.default_rng(3)
    xy = rng.uniform(-1.0, 1.0, (500, 2))
    for model, d in LENSES.items():
        lens = lens_distortion(model, d)
        np.testing.assert_allclose(undistort_normalized(distort_normalized(xy, lens), lens), xy, atol=1e-9)
    assert LensDistortion("plumb_bob", (0.0,) * 5).max_radius == np.inf


def test_a_steep_rational_lens_is_undone_up_to_its_valid_radius():
    """Near its denominator's pole the profile is steep: Newton started past the pole (the radial
    factor at the observed point is negative there) and never came back, and 170 of 400 points
    inside the model's valid radius (54 to 59 degrees off axis) were dropped as missing joints."""
    lens = lens_distortion("rational_polynomial", [0.5, -0.1, 0, 0, 0, 1.0, -0.2, -0.1])
    assert 1.6 < lens.max_radius < 1.7
    angles = np.linspace(0.0, 2 * np.pi, 400)
    radii = np.linspace(0.0, 0.999 * lens.max_radius, 400)
    ideal = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=-1)
    undone = undistort_normalized(distort_normalized(ideal, lens), lens)
    np.testing.assert_allclose(undone, ideal, atol=1e-8)


# The Human3.6M files, as training.evaluate finds them
H36M_CAMERAS = Path(os.environ.get("CFI_H36M_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "h36m")
                    ) / "cameras.json"


def _fisheye_fit_as_plumb_bob(focal: float) -> list[float]:
    """The plumb_bob (k1, k2, k3) a calibration fits to a fisheye (theta_d = theta) over the
    image's radii up to 83 degrees off axis, with focal length ``focal`` on the 1280 x 800 image."""
    theta = np.linspace(0.0, min(np.hypot(WIDTH / 2, HEIGHT / 2) / focal, 1.45), 400)
    r = np.tan(theta)
    k1, k2, k3 = np.linalg.lstsq(np.stack([r**3, r**5, r**7], axis=1), theta - r, rcond=None)[0]
    return [k1, k2, 0.0, 0.0, k3]


def test_real_lenses_pass_the_check_over_their_image():
    """The wide-angle calibrations above, barrel and pincushion lenses, a fit that folds near the
    corners, fisheye-ish plumb_bob fits (down to a 130 degree lens), a fisheye seeing past 90 degrees
    at the image's edge, and every Human3.6M camera are calibrations of their images."""
    for model, d in LENSES.items():
        check_lens_over_image(lens_distortion(model, d), K, (WIDTH, HEIGHT))
    for d in ([-0.3, 0.1, 0, 0, 0], [0.1, 0.05, 0, 0, 0], [0.3, 0, 0, 0, 0], [-0.45, 0.2, 0, 0, -0.05],
              [-0.30, 0.09, 0.001, -0.0005, -0.012]):
        check_lens_over_image(lens_distortion("plumb_bob", d), K, (WIDTH, HEIGHT))
    for focal in (640.0, 450.0, 380.0):
        wide = np.array([[focal, 0.0, 639.5], [0.0, focal, 399.5], [0.0, 0.0, 1.0]])
        check_lens_over_image(lens_distortion("plumb_bob", _fisheye_fit_as_plumb_bob(focal)), wide, (WIDTH, HEIGHT))
    # 640 px from the centre at 300 px per radian: 122 degrees off axis at the image's side edges
    fisheye = np.array([[300.0, 0.0, 639.5], [0.0, 300.0, 399.5], [0.0, 0.0, 1.0]])
    check_lens_over_image(lens_distortion("equidistant", LENSES["equidistant"]), fisheye, (WIDTH, HEIGHT))
    if not H36M_CAMERAS.exists():
        pytest.skip(f"no {H36M_CAMERAS}")
    cameras = [camera for subject in json.loads(H36M_CAMERAS.read_text()).values() for camera in subject]
    assert len(cameras) >= 20
    for camera in cameras:
        (fx, fy), (cx, cy) = camera["focal_length"], camera["center"]
        (k1, k2, k3), (p1, p2) = camera["radial_distortion"], camera["tangential_distortion"]
        check_lens_over_image(lens_distortion("plumb_bob", [k1, k2, p1, p2, k3]),
                              np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
                              (camera["res_w"], camera["res_h"]))


@pytest.mark.parametrize("model, d, words", [
    ("plumb_bob", [9999.0, 0, 0, 0, 0], "to 0.046 of its distance"),
    ("plumb_bob", [0, 0, 0, 0, 9999.0], "to 0.26 of its distance"),
    ("equidistant", [0, 0, 0, 9999.0], "to 0.36 of its distance"),
    ("plumb_bob", [-9999.0, 0, 0, 0, 0], "cannot be undone at pixel (800, 400)"),
    ("plumb_bob", [0, 0, 0, 9999.0, 0], "cannot be undone"),
    ("rational_polynomial", [0, 0, 0, 0, 0, 0, 0, 9999.0], "cannot be undone"),
])
def test_coefficients_near_1e4_are_no_calibration_of_the_image(model, d, words):
    """Within MAX_DISTORTION_COEFFICIENT, and Newton's method converges on each (k1 = 9999 is
    monotonic), yet the lens undoes the image to a fraction of its size (people placed that many
    times too far) or folds a few pixels from the principal point."""
    with pytest.raises(ValueError, match=re.escape(words)):
        check_lens_over_image(lens_distortion(model, d), K, (WIDTH, HEIGHT))


@pytest.mark.parametrize("model, d", [
    # k3 < 0: the profile grows up to its fold (66 degrees off axis), flat near it
    ("plumb_bob", [0.03, 0.24, 0.0, 0.0, -0.036]),
    # a fisheye fit that images angles further out than they are, folding at 73.5 degrees
    ("equidistant", [-0.034, 0.094, 0.098, -0.078]),
    # one without a fold before 90 degrees that images 81 degrees past 90
    ("equidistant", [0.033, 0.05, 0.092, -0.011]),
])
def test_every_point_within_the_valid_radius_is_undone_whatever_the_start(model, d):
    """Newton's method started past the fold (the fisheye's start, theta_d itself, past it or past
    90 degrees) or stepped past it from near it (plumb_bob: a step across the centre, the next onto
    the outer branch, where the profile comes back down to the observed radius): points from 55
    degrees off axis (plumb_bob), 66 and 81 degrees (the fisheyes) on were dropped as missing
    joints, though the lens maps each of them there."""
    lens = lens_distortion(model, d)
    valid_radius = min(lens.max_radius, np.tan(np.radians(89.0)))
    angles = np.linspace(0.0, 2 * np.pi, 400)
    radii = np.linspace(0.0, 0.995 * valid_radius, 400)
    ideal = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=-1)
    undone = undistort_normalized(distort_normalized(ideal, lens), lens)
    np.testing.assert_allclose(undone, ideal, rtol=1e-8, atol=1e-8)
