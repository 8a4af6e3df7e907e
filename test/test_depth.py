"""Root (pelvis) position from an aligned depth image: units, holes, clothing/background, borders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cfi_pose_ros.depth import (DEFAULT_BODY_OFFSET_M, DEPTH_HISTORY, DepthHistory, check_depth_frame, check_depth_registration,
                                depth_image_to_array, depth_in_metres, root_translation_from_depth, window_depth)

K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
H, W = 480, 640


def scene(pelvis_cam: np.ndarray, background: float = 6.0, radius_px: int = 40) -> np.ndarray:
    """A float32 depth image (metres): background, and a person whose front surface is
    ``DEFAULT_BODY_OFFSET_M`` in front of the pelvis, as a disc around the pelvis pixel."""
    depth = np.full((H, W), background, np.float32)
    u, v = project(pelvis_cam)
    rows, cols = np.mgrid[0:H, 0:W]
    body = (cols - u) ** 2 + (rows - v) ** 2 <= radius_px ** 2
    depth[body] = pelvis_cam[2] - DEFAULT_BODY_OFFSET_M
    return depth


def project(point: np.ndarray) -> np.ndarray:
    uvw = K @ point
    return uvw[:2] / uvw[2]


def test_pelvis_behind_the_surface_on_the_optical_axis():
    pelvis = np.array([0.0, 0.0, 3.0])
    depth = scene(pelvis)
    t, ok = root_translation_from_depth(project(pelvis)[None], None, depth, K)
    assert ok.tolist() == [True]
    np.testing.assert_allclose(t[0], pelvis, atol=1e-5)


def test_off_axis_person_back_projected_through_k():
    pelvis = np.array([1.2, -0.4, 4.0])
    uv = project(pelvis)
    depth = scene(pelvis)
    t, ok = root_translation_from_depth(uv[None], None, depth, K, body_offset=0.0)
    assert ok[0]
    # without the offset: the surface point on the pelvis ray, at the surface's z
    surface_z = pelvis[2] - DEFAULT_BODY_OFFSET_M
    np.testing.assert_allclose(t[0], pelvis * surface_z / pelvis[2], atol=2e-3)
    np.testing.assert_allclose(project(t[0]), uv, atol=0.6)      # the nearest pixel centre's depth
    t_off, _ = root_translation_from_depth(uv[None], None, depth, K)
    # the offset moves the point 0.1 m further along the viewing ray
    assert np.linalg.norm(t_off[0] - t[0]) == pytest.approx(DEFAULT_BODY_OFFSET_M, abs=1e-6)
    np.testing.assert_allclose(np.cross(t_off[0], t[0]), 0.0, atol=1e-6)
    assert abs(t_off[0, 2] - pelvis[2]) < 0.01


def test_ray_pixels_place_the_pelvis_on_another_ray_than_the_pixels_sampled():
    """A distorted image: the depth is read where the pelvis was detected, the pelvis placed along
    the ray of its undistorted pixel (``ray_pixels``)."""
    pelvis = np.array([1.0, -0.3, 3.0])
    detected = project(pelvis) + [25.0, -4.0]            # where a lens put it
    depth = np.full((H, W), 6.0, np.float32)
    u, v = np.round(detected).astype(int)
    depth[v - 3:v + 4, u - 3:u + 4] = pelvis[2] - DEFAULT_BODY_OFFSET_M
    t, ok = root_translation_from_depth(detected[None], None, depth, K, ray_pixels=project(pelvis)[None])
    assert ok[0]
    np.testing.assert_allclose(np.cross(t[0] / np.linalg.norm(t[0]), pelvis / np.linalg.norm(pelvis)), 0.0, atol=1e-9)
    alone, _ = root_translation_from_depth(detected[None], None, depth, K)
    assert alone[0, 2] == pytest.approx(t[0, 2], abs=0.01) and abs(alone[0, 0] - t[0, 0]) > 0.1
    # a ray pixel that is not finite (a joint the lens model cannot undo): no answer
    t, ok = root_translation_from_depth(detected[None], None, depth, K, ray_pixels=np.full((1, 2), np.nan))
    assert not ok[0] and np.isnan(t).all()


def test_uint16_millimetres_equal_float_metres():
    pelvis = np.array([-0.3, 0.2, 2.5])
    depth_m = scene(pelvis)
    depth_mm = np.round(depth_m * 1000.0).astype(np.uint16)
    a, ok_a = root_translation_from_depth(project(pelvis)[None], None, depth_m, K)
    b, ok_b = root_translation_from_depth(project(pelvis)[None], None, depth_mm, K)
    assert ok_a[0] and ok_b[0]
    np.testing.assert_allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(depth_in_metres(depth_mm)[0, 0], 6.0, atol=1e-6)


def test_holes_and_nan_are_ignored():
    pelvis = np.array([0.1, 0.1, 3.0])
    depth = scene(pelvis)
    u, v = np.rint(project(pelvis)).astype(int)
    depth[v - 2:v + 3, u - 2:u + 3] = 0.0          # the 5x5 window: a hole...
    depth[v, u - 1:u + 2] = 2.9                    # ...except three valid pixels
    depth[v - 1, u] = np.nan
    t, ok = root_translation_from_depth(project(pelvis)[None], None, depth, K)
    assert ok[0] and t[0, 2] == pytest.approx(3.0, abs=0.01)


def test_median_ignores_a_minority_of_background_pixels():
    pelvis = np.array([0.0, 0.0, 3.0])
    depth = scene(pelvis, background=8.0)
    u, v = np.rint(project(pelvis)).astype(int)
    depth[v - 2:v + 3, u + 1:u + 3] = 8.0          # 10 of 25 pixels see the wall behind (gap between legs)
    t, ok = root_translation_from_depth(project(pelvis)[None], None, depth, K)
    assert ok[0] and t[0, 2] == pytest.approx(3.0, abs=1e-3)


def test_hips_carry_the_estimate_when_the_pelvis_pixel_is_in_a_hole():
    pelvis = np.array([0.0, 0.2, 3.5])
    depth = scene(pelvis, radius_px=60)
    uv = project(pelvis)
    u, v = np.rint(uv).astype(int)
    depth[v - 3:v + 4, u - 3:u + 4] = 0.0          # dark clothing: no return at the pelvis
    hips = np.stack([uv + [-20.0, 0.0], uv + [20.0, 0.0]])
    without, ok_without = root_translation_from_depth(uv[None], None, depth, K)
    assert not ok_without[0] and np.isnan(without[0]).all()
    t, ok = root_translation_from_depth(uv[None], hips[None], depth, K)
    assert ok[0]
    np.testing.assert_allclose(t[0], pelvis, atol=0.01)


def test_hips_outvote_background_seen_through_the_pelvis_window():
    pelvis = np.array([0.0, 0.0, 3.0])
    depth = scene(pelvis, background=9.0, radius_px=60)
    uv = project(pelvis)
    u, v = np.rint(uv).astype(int)
    depth[v - 2:v + 3, u - 2:u + 3] = 9.0          # pelvis window entirely on the background
    hips = np.stack([uv + [-15.0, 0.0], uv + [15.0, 0.0]])
    t, ok = root_translation_from_depth(uv[None], hips[None], depth, K)
    assert ok[0] and t[0, 2] == pytest.approx(3.0, abs=0.01)


def test_several_people_and_per_person_failures():
    people = np.array([[0.5, 0.0, 2.0], [-0.8, 0.1, 4.0], [0.0, 0.0, 3.0]])
    depth = np.full((H, W), 7.0, np.float32)
    for p in people[:2]:
        depth = np.minimum(depth, scene(p, background=7.0, radius_px=25))
    pixels = np.stack([project(p) for p in people])
    u, v = np.rint(pixels[2]).astype(int)
    depth[v - 10:v + 10, u - 10:u + 10] = 0.0      # third person: a hole
    pixels = np.vstack([pixels, [[np.nan, 10.0]], [[-50.0, 100.0]]])   # missing pelvis, outside the image
    t, ok = root_translation_from_depth(pixels, None, depth, K)
    assert ok.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(t[:2], people[:2], atol=0.01)
    assert np.isnan(t[2:]).all()


def test_window_is_clipped_at_the_image_border():
    depth = np.full((H, W), 2.0, np.float32)
    samples = window_depth(depth_in_metres(depth), np.array([[0.0, 0.0], [W - 1.0, H - 1.0], [W + 10.0, 5.0]]), 5)
    assert [len(s) for s in samples] == [9, 9, 0]
    t, ok = root_translation_from_depth(np.array([[0.0, 0.0]]), None, depth, K)
    assert ok[0] and t[0, 2] > 2.0


@pytest.mark.parametrize("reading", [np.float32(2.9), np.uint16(2900)])
def test_only_the_sampled_windows_are_converted_not_the_whole_image(reading):
    """Every frame converted the whole depth image to metres to read a few 5 x 5 windows from it: a
    4K image added 28 ms to a one-person frame. Not timed: an image of 10**12 pixels (a read-only
    view of one reading, no memory) is placed like a small one, where converting it whole is a
    MemoryError (4 TB)."""
    pelvis = np.array([0.0, 0.0, 3.0])
    huge = np.broadcast_to(reading, (10**6, 10**6))
    t, ok = root_translation_from_depth(project(pelvis)[None], None, huge, K)
    assert ok[0] and t[0, 2] == pytest.approx(3.0, abs=0.01)


def test_depth_range_rejects_implausible_readings():
    pelvis = np.array([0.0, 0.0, 3.0])
    depth = scene(pelvis)
    depth[:] = 50.0                                # all beyond the range (saturated / sky)
    _, ok = root_translation_from_depth(project(pelvis)[None], None, depth, K)
    assert not ok[0]
    _, ok = root_translation_from_depth(project(pelvis)[None], None, depth, K, depth_range=(0.1, 100.0))
    assert ok[0]


def test_no_people():
    t, ok = root_translation_from_depth(np.zeros((0, 2)), np.zeros((0, 2, 2)), np.ones((4, 4), np.float32), K)
    assert t.shape == (0, 3) and ok.shape == (0,)


@pytest.mark.parametrize("bad_k", [np.zeros((3, 3)), np.full((3, 3), np.nan), -K])
def test_invalid_camera_matrix_is_refused(bad_k):
    with pytest.raises(ValueError, match="camera matrix"):
        root_translation_from_depth(np.array([[1.0, 1.0]]), None, np.ones((4, 4), np.float32), bad_k)


@pytest.mark.parametrize("image", [np.ones((4, 4), np.int32), np.ones((4, 4, 3), np.float32),
                                   np.ones((0, 0), np.float32)])
def test_invalid_depth_image_is_refused(image):
    with pytest.raises(ValueError, match="depth image"):
        root_translation_from_depth(np.array([[1.0, 1.0]]), None, image, K)


def test_depth_image_at_another_resolution_than_the_colour_image():
    pelvis = np.array([0.4, -0.2, 3.0])
    full = scene(pelvis, radius_px=60)
    half = full[::2, ::2].copy()                   # registered depth at half the colour resolution
    uv = project(pelvis)
    t, ok = root_translation_from_depth(uv[None], None, half, K, image_size=(W, H))
    assert ok[0]
    np.testing.assert_allclose(t[0], pelvis, atol=0.01)
    with pytest.raises(ValueError, match="image_size"):
        root_translation_from_depth(uv[None], None, half, K, image_size=(0, H))


@pytest.mark.parametrize("depth_size, image_size", [
    ((1000, 1002), (1000, 1002)), ((500, 501), (1000, 1002)), ((250, 250), (1000, 1002)),
    ((620, 188), (1241, 376)),                   # half of an odd-sized image, each side rounded down
    ((1920, 1080), (1280, 720)), ((640, 360), (1920, 1080)),
])
def test_a_depth_image_of_the_image_scaled_is_registered(depth_size, image_size):
    check_depth_registration(depth_size[::-1], image_size)


@pytest.mark.parametrize("depth_size, image_size", [
    ((640, 480), (1280, 720)),                   # 4:3 depth beside a 16:9 colour image
    ((640, 480), (1000, 1002)),
    ((1280, 720), (1280, 800)),                  # a crop, not a scaling
    ((500, 498), (1000, 1002)),                  # three rows short of half: no rounding does that
])
def test_a_depth_image_of_another_aspect_cannot_be_registered(depth_size, image_size):
    with pytest.raises(ValueError, match=rf"the {depth_size[0]}x{depth_size[1]} depth image .* cannot be registered"):
        check_depth_registration(depth_size[::-1], image_size)


@pytest.mark.parametrize("depth_size", [(1, 1), (2, 1), (4, 3), (15, 15), (640, 8)])
def test_a_depth_image_of_a_few_pixels_is_registered_to_nothing(depth_size):
    """Rounding each side of a few pixels explains any aspect ratio: a 1 x 1 depth image of 1 m was
    taken as registered to a 1000 x 1002 camera and placed people 5.3 m away at 1.2 m."""
    with pytest.raises(ValueError, match=rf"the {depth_size[0]}x{depth_size[1]} depth image is too small"):
        check_depth_registration(depth_size[::-1], (1000, 1002))
    check_depth_registration((16, 16), (1000, 1002))         # the smallest taken


@pytest.mark.parametrize("encoding, dtype, scale", [("16UC1", "<u2", 1000.0), ("mono16", ">u2", 1000.0),
                                                    ("32FC1", "<f4", 1.0)])
def test_depth_message_fields_to_array_with_padded_rows(encoding, dtype, scale):
    depth = (np.arange(12, dtype=np.float64).reshape(3, 4) + 1.0) * 0.5          # metres
    values = (depth * scale).astype(dtype)
    pad = 6
    raw = np.zeros((3, 4 * values.itemsize + pad), np.uint8)
    raw[:, :4 * values.itemsize] = values.view(np.uint8).reshape(3, -1)
    array = depth_image_to_array(encoding, 3, 4, raw.shape[1], raw.tobytes(), is_bigendian=dtype[0] == ">")
    assert array.shape == (3, 4) and array.dtype.isnative
    np.testing.assert_allclose(depth_in_metres(array), depth, atol=1e-6)


@pytest.mark.parametrize("fields, match", [
    (("rgb8", 2, 2, 6, bytes(12)), "unsupported depth encoding"),
    (("16UC1", 0, 2, 4, b""), "zero size"),
    (("16UC1", 2, 2, 3, bytes(8)), "step"),
    (("32FC1", 2, 2, 8, bytes(10)), "data has 10 bytes"),
    # millimetres as floats (a 16UC1 image converted without scaling): every reading lay outside
    # depth_range, and each person was placed from the intrinsics alone, nothing counted
    (("32FC1", 2, 2, 8, np.array([[0.0, 2150.0], [2210.0, np.nan]], "<f4").tobytes()), "millimetres"),
])
def test_bad_depth_messages_are_refused(fields, match):
    """Each refused with the reason (the lifter counts them as bad_depth_image)."""
    with pytest.raises(ValueError, match=match):
        depth_image_to_array(*fields)


H36M_META = Path(os.environ.get("CFI_FIXTURES_DIR", Path(__file__).resolve().parents[2] / "shared" / "fixtures"
                                / "camera")) / "images" / "h36m_S1_Directions_1.54138969_000001.json"
# H36M-17 bones, and a rough body radius (m) around each: torso thick, limbs thinner
_BONES = ((0, 1, .13), (1, 2, .08), (2, 3, .06), (0, 4, .13), (4, 5, .08), (5, 6, .06), (0, 7, .14),
          (7, 8, .14), (8, 9, .06), (9, 10, .09), (8, 11, .07), (11, 12, .05), (12, 13, .04), (8, 14, .07),
          (14, 15, .05), (15, 16, .04))


def render_body_depth(joints: np.ndarray, k: np.ndarray, size: tuple[int, int], background: float) -> np.ndarray:
    """Depth (z, metres) of a body made of spheres along the bones, ray-traced through K."""
    width, height = size
    centres, radii = [], []
    for a, b, r in _BONES:
        for f in np.linspace(0.0, 1.0, 12):
            centres.append(joints[a] + f * (joints[b] - joints[a]))
            radii.append(r)
    centres, radii = np.array(centres), np.array(radii)
    depth = np.full((height, width), background, np.float32)
    uv = joints @ k.T
    uv = uv[:, :2] / uv[:, 2:]
    c0, r0 = np.maximum(np.floor(uv.min(axis=0) - 60).astype(int), 0)
    c1, r1 = np.minimum(np.ceil(uv.max(axis=0) + 60).astype(int), [width, height])
    cols, rows = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
    rays = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1) @ np.linalg.inv(k).T
    unit = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    along = unit @ centres.T                                            # (pixels, spheres)
    disc = along ** 2 - (centres ** 2).sum(axis=1) + radii ** 2
    hit = np.where(disc > 0, along - np.sqrt(np.clip(disc, 0, None)), np.inf).min(axis=1)
    z = np.where(np.isfinite(hit), hit * unit[:, 2], background)
    depth[r0:r1, c0:c1] = np.minimum(z.reshape(cols.shape), background)
    return depth


def test_h36m_person_rendered_as_a_depth_image_gives_the_true_pelvis():
    if not H36M_META.exists():
        pytest.skip(f"camera fixtures not found ({H36M_META}); set CFI_FIXTURES_DIR")
    meta = json.loads(H36M_META.read_text())
    truth = np.asarray(meta["keypoints_3d_camera_m"])
    intr = meta["intrinsics"]
    k = np.array([[intr["focal_length"][0], 0, intr["center"][0]], [0, intr["focal_length"][1], intr["center"][1]],
                  [0, 0, 1.0]])
    depth = render_body_depth(truth, k, (intr["res_w"], intr["res_h"]), background=8.0)
    depth_mm = np.round(depth * 1000).astype(np.uint16)
    uvw = truth @ k.T
    pixels = uvw[:, :2] / uvw[:, 2:]
    t, ok = root_translation_from_depth(pixels[None, 0], pixels[None, [1, 4]], depth_mm, k)
    error = np.linalg.norm(t[0] - truth[0])
    surface_only, _ = root_translation_from_depth(pixels[None, 0], pixels[None, [1, 4]], depth_mm, k,
                                                  body_offset=0.0)
    print(f"\nH36M pelvis from a rendered depth image: error {1000 * error:.0f} mm "
          f"(surface only, no body offset: {1000 * np.linalg.norm(surface_only[0] - truth[0]):.0f} mm)")
    # the rendered hips are 0.13 m thick spheres, deeper than the 0.10 m offset assumes: ~5 cm are left
    assert ok[0] and error < 0.06
    assert np.linalg.norm(surface_only[0] - truth[0]) > error + 0.08


def test_keypoints_late_by_a_detector_s_latency_get_the_depth_image_taken_with_theirs():
    """The depth camera runs on while the 2D detector works: when the keypoints of the image stamped
    t arrive, depth images up to t + 100 ms have come. Only the newest was kept, 100 ms from t, past
    depth_max_age (50 ms): the depth was never used."""
    history = DepthHistory(size=15)
    images = {k: np.full((2, 2), float(k), np.float32) for k in range(10)}
    for k, image in images.items():
        history.add(100.0 + k / 30, image)                      # 30 Hz depth camera
    assert history.nearest(100.0 + 6 / 30, 0.05) is images[6]   # the keypoints of frame 6, late by 3 frames
    assert history.nearest(100.0 + 6 / 30 + 0.012, 0.05) is images[6]     # the nearest one
    assert history.nearest(100.0 + 9 / 30 + 0.06, 0.05) is None           # none within max_age
    assert history.nearest(99.0, 0.05) is None
    # bounded: the oldest go first
    for k in range(10, 40):
        history.add(100.0 + k / 30, images[k % 10])
    assert len(history) == 15 and history.nearest(100.0, 0.05) is None


def test_the_history_keeps_at_most_depth_history_bytes_of_images_and_always_the_newest():
    """15 images of a 4K 32FC1 depth camera were kept whatever their size: 500 MB of the lifter's
    memory (570 MB more RSS over DDS at 15 Hz), an 8K camera's 2 GB. Broadcast views: their nbytes
    is the image's size, their memory nothing."""
    history = DepthHistory()
    uhd = [np.broadcast_to(np.float32(k), (2160, 3840)) for k in range(15)]
    for k, image in enumerate(uhd):
        history.add(100.0 + k / 30, image)
    assert 1 < len(history) < 15
    from cfi_pose_ros.depth import DEPTH_HISTORY_BYTES
    assert sum(history.nearest(100.0 + k / 30, 0.01) is not None for k in range(15)) * uhd[0].nbytes \
        <= DEPTH_HISTORY_BYTES
    assert history.nearest(100.0 + 14 / 30, 0.01) is uhd[14] and history.nearest(100.0 + 11 / 30, 0.01) is uhd[11]
    huge = np.broadcast_to(np.float32(1.0), (10**5, 10**5))         # one image past the budget alone
    history.add(101.0, huge)
    assert len(history) == 1 and history.nearest(101.0, 0.01) is huge
    with pytest.raises(ValueError):
        DepthHistory(max_bytes=0)


def test_a_depth_stamp_going_back_drops_the_images_of_the_timeline_left():
    """A bag loop: the first depth image of the new pass is older than every kept one; the kept
    ones must not be paired with the new pass's keypoints."""
    history = DepthHistory()
    end, start = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
    history.add(10.0, end)
    history.add(10.03, end)
    history.add(5.0, start)
    assert len(history) == 1 and history.nearest(5.0, 0.05) is start
    assert history.nearest(10.0, 0.05) is None
    # zero stamps (no stamp at all): the last image received
    history.add(0.0, end)
    history.add(0.0, start)
    assert history.nearest(0.0, 0.05) is start
    with pytest.raises(ValueError):
        DepthHistory(size=0)


def test_one_unstamped_depth_image_in_a_stamped_stream_drops_no_other():
    """A zero stamp is no time (ROS: not set), as for the smoother: one depth image without a stamp in a
    stamped stream was a step back to 0 s, a new timeline, and dropped every kept image; the keypoints
    still in flight (a detector's latency behind) found no depth and were placed without it."""
    history = DepthHistory()
    images = [np.full((2, 2), float(k), np.float32) for k in range(5)]
    for k in range(3):
        history.add(100.0 + k / 30, images[k])
    history.add(0.0, images[3])
    history.add(100.0 + 4 / 30, images[4])
    assert history.nearest(100.0 + 1 / 30, 0.05) is images[1]      # frame 1's keypoints, 100 ms late
    assert history.nearest(0.0, 0.05) is images[3]                 # pairs with unstamped keypoints only


def test_an_unstamped_depth_image_never_pairs_with_stamped_keypoints_near_time_zero():
    """A zero stamp is no time, also beside a stamp within depth_max_age of 0 s (a simulation's first
    frames): an unstamped depth image was 0.02 s from keypoints stamped 0.02 s, and placed them; an
    unstamped keypoints frame took an image stamped 0.03 s alike."""
    unstamped, stamped = np.full((2, 2), 1.0, np.float32), np.full((2, 2), 2.0, np.float32)
    history = DepthHistory()
    history.add(0.0, unstamped, received=10.0)
    assert history.paired(0.02, 0.05, received=10.0) == (None, True, "")
    history = DepthHistory()
    history.add(0.03, stamped, received=10.0)
    assert history.paired(0.0, 0.05, received=10.0) == (None, True, "")
    history.add(0.0, unstamped, received=10.01)
    assert history.paired(0.0, 0.05, received=10.02).image is unstamped
    assert history.paired(0.02, 0.05, received=10.02).image is stamped


def test_unstamped_depth_images_pair_with_unstamped_keypoints_by_arrival_and_go_stale():
    """Images and keypoints stamped zero have no time but when each arrived. Compared by stamp, every
    unstamped image was as near as the newest: once the depth stream stopped, its last image placed
    the unstamped keypoints of every later frame (ROOT_FROM_DEPTH from a frozen depth, nothing counted)."""
    history = DepthHistory()
    images = [np.full((2, 2), float(k), np.float32) for k in range(3)]
    for k, image in enumerate(images):
        history.add(0.0, image, received=50.0 + k / 30)                  # a 30 Hz depth camera, unstamped
    assert history.paired(0.0, 0.05, received=50.0 + 2 / 30 + 0.02).image is images[2]     # the newest, 20 ms old
    assert history.nearest(0.0, 0.05, received=50.0 + 1 / 30 + 0.005) is images[1]
    assert history.paired(0.0, 0.05, received=60.0) == (None, True, "")   # the stream stopped 10 s ago: stale


def test_keypoints_whose_stamps_stand_still_stop_taking_a_depth_image_that_came_no_more():
    """A paused clock stamping a live camera: every keypoints frame and depth image one instant. The last
    depth image stayed as near as ever in stamp once the stream stopped; after more than
    MAX_STALLED_FRAMES frames of a camera at that stamp since its last depth image, none is paired."""
    from cfi_pose_ros.depth import MAX_STALLED_FRAMES

    history = DepthHistory()
    image = np.full((2, 2), 4.0, np.float32)
    history.add(12.5, image, "cam")
    for _ in range(MAX_STALLED_FRAMES + 1):
        assert history.paired(12.5, 0.05, frame_id="cam").image is image
    assert history.paired(12.5, 0.05, frame_id="cam") == (None, True, "")
    assert history.paired(12.5, 0.05, frame_id="other_cam").image is image     # its own count
    history.add(12.5, image, "cam")                     # the stream again: paired again
    assert history.paired(12.5, 0.05, frame_id="cam").image is image
    for k in range(3 * MAX_STALLED_FRAMES):             # stamps that move on: by stamp, as before
        history.add(20.0 + k / 30, image, "cam")
        assert history.paired(20.0 + k / 30, 0.05, frame_id="cam").image is image


def test_a_late_depth_image_keeps_the_newer_ones():
    """Depth images out of order by a few ms are late, not a bag loop: the newer images stay, and
    each keypoints message still finds the one taken with its image."""
    history = DepthHistory(size=15)
    newer, late = np.full((2, 2), 2.0), np.full((2, 2), 1.0)
    history.add(10.10, newer)
    history.add(10.08, late)
    assert len(history) == 2
    assert history.nearest(10.10, 0.005) is newer and history.nearest(10.08, 0.005) is late
    history.add(3.0, late)                                 # seconds back: a new timeline
    assert len(history) == 1 and history.nearest(10.10, 0.05) is None


def test_a_depth_image_pairs_with_its_frame_id_and_another_camera_s_is_named():
    history = DepthHistory()
    assert history.paired(1.0, 0.05) == (None, False, "")
    image = np.ones((4, 4), np.float32)
    history.add(1.0, image, "/left_optical")
    paired = history.paired(1.01, 0.05)
    assert paired.image is image and not paired.stale and paired.frame_id == "/left_optical"
    assert history.paired(2.0, 0.05) == (None, True, "")
    check_depth_frame("/left_optical", "left_optical")          # a leading '/' aside, as tf2 reads them
    check_depth_frame("", "left_optical")                       # unnamed: nothing to tell
    check_depth_frame("left_optical", "")
    with pytest.raises(ValueError, match="the depth image is in frame 'right_optical', the keypoints in 'left_optical'"):
        check_depth_frame("right_optical", "left_optical")


def test_depth_history_pairs_keypoints_with_their_own_camera_s_image_before_a_nearer_one_of_another():
    """Two cameras' depth images on one topic, 10 ms apart: keypoints of the left camera stamped 6 ms
    after its image were given the right camera's (4 ms away), which the lifter then refused as
    another camera's (bad_depth_image: placed without depth). The nearest of their own frame (or of
    none) is taken first; another camera's only where none is within max_age (to be refused)."""
    left, right = np.full((4, 4), 1.0), np.full((4, 4), 2.0)
    history = DepthHistory()
    history.add(10.0, left, "cam_left")
    history.add(10.01, right, "/cam_right")
    assert history.paired(10.006, 0.05, frame_id="/cam_left").image is left
    assert history.paired(10.006, 0.05, frame_id="cam_right").image is right
    assert history.paired(10.006, 0.05).image is right              # no frame to prefer: the nearest
    assert history.paired(10.006, 0.05, frame_id="cam_top").image is right    # none of its own: the nearest
    assert history.paired(10.2, 0.05, frame_id="cam_left").stale    # none within max_age
    history.add(10.02, np.full((4, 4), 3.0), "")                    # an image of no frame is anyone's
    assert history.paired(10.019, 0.05, frame_id="cam_left").image[0, 0] == 3.0


def test_a_camera_s_depth_images_stamped_far_behind_another_s_leave_the_other_s_history():
    """Two cameras' depth images on one topic, the right one's stamped 0.15 s behind the left's (its
    own latency): each right image read as a step back to a new timeline (a bag loop) and emptied
    the history, the left camera's images too, so left keypoints found no image of theirs (stale).
    A step back is judged against the images of the same frame; a loop still empties that frame's."""
    history = DepthHistory()
    for k in range(5):
        t = 10.0 + k / 30
        history.add(t, np.full((4, 4), 1.0 + k), "cam_left")
        history.add(t - 0.15, np.full((4, 4), 100.0 + k), "cam_right")
    assert history.paired(10.0 + 4 / 30, 0.05, frame_id="cam_left").image[0, 0] == 5.0
    assert history.paired(10.0 + 4 / 30 - 0.15, 0.05, frame_id="cam_right").image[0, 0] == 104.0
    history.add(2.0, np.full((4, 4), 7.0), "cam_left")              # the left camera's bag looped
    assert history.paired(10.0 + 4 / 30, 0.05, frame_id="cam_left").stale       # its old timeline's gone
    assert history.paired(2.0, 0.05, frame_id="cam_left").image[0, 0] == 7.0
    assert history.paired(10.0 + 4 / 30 - 0.15, 0.05, frame_id="cam_right").image[0, 0] == 104.0   # kept


def test_each_camera_keeps_its_own_depth_history_span():
    """Four cameras' depth images on one topic, 30 Hz each: one shared history of 15 images reached
    back 0.13 s, so keypoints of a detector 0.3 s behind found no image of their camera (stale,
    placed without depth) where one camera alone keeps half a second. Each camera keeps its own 15;
    the byte bound still holds for all of them, the least recently seen camera's oldest first."""
    history = DepthHistory()
    cameras = [f"cam_{c}" for c in range(4)]
    for k in range(30):
        for c, camera in enumerate(cameras):
            history.add(10.0 + k / 30 + c * 0.002, np.full((4, 4), 100.0 * c + k), camera)
    assert len(history) == 4 * DEPTH_HISTORY
    back = 10.0 + 29 / 30 - 0.3                # 9 frames behind the newest
    for c, camera in enumerate(cameras):
        paired = history.paired(back + c * 0.002, 0.01, frame_id=camera)
        assert not paired.stale and paired.image[0, 0] == 100.0 * c + 20
    image_bytes = np.full((4, 4), 0.0).nbytes
    bounded = DepthHistory(size=15, max_bytes=10 * image_bytes)
    for k in range(6):
        for camera in ("cam_a", "cam_b"):
            bounded.add(10.0 + k / 30, np.full((4, 4), float(k)), camera)
    assert len(bounded) == 10
    # the newest kept whatever the bound
    tiny = DepthHistory(max_bytes=1)
    tiny.add(1.0, np.full((4, 4), 1.0), "cam_a")
    tiny.add(1.0, np.full((4, 4), 2.0), "cam_b")
    assert len(tiny) == 1 and tiny.paired(1.0, 0.01, frame_id="cam_b").image[0, 0] == 2.0
