import colorsys
import zlib

import numpy as np
import pytest

from cfi_pose_ros.markers import (MARKERS_PER_PERSON, DrawnMarkers, MarkerSpec, skeleton_markers, track_color)
from cfi_pose_ros.skeleton import COCO_17, H36M_17
from poses import standing_person


def by_type(markers):
    return {m.type: m for m in markers}


def test_three_markers_with_expected_content():
    kp = standing_person(3.0)
    markers = skeleton_markers(2, "track-7", kp, lifetime=0.5, joint_scale=0.04, line_width=0.015)
    assert [m.type for m in markers] == ["sphere_list", "line_list", "text"]
    assert [m.id for m in markers] == [6, 7, 8]
    assert all(m.namespace == "skeleton" and m.lifetime == 0.5 for m in markers)
    m = by_type(markers)
    np.testing.assert_array_equal(m["sphere_list"].points, kp)
    assert m["sphere_list"].scale == (0.04, 0.04, 0.04)
    assert m["line_list"].scale[0] == 0.015
    assert m["line_list"].points.shape == (2 * len(H36M_17.edges), 3)
    for i, (a, b) in enumerate(H36M_17.edges):
        np.testing.assert_array_equal(m["line_list"].points[2 * i], kp[a])
        np.testing.assert_array_equal(m["line_list"].points[2 * i + 1], kp[b])
    text = m["text"]
    assert text.text == "track-7" and text.points.shape == (1, 3) and text.scale[2] > 0
    head = kp[H36M_17.index("head")]
    # above the head in the optical frame means smaller y
    assert text.points[0, 1] < head[1]
    np.testing.assert_allclose(text.points[0, [0, 2]], head[[0, 2]])


def test_nan_joints_skipped():
    kp = standing_person(3.0)
    kp[3] = np.nan                       # right ankle: one bone
    kp[12, 1] = np.nan                   # left elbow: two bones
    m = by_type(skeleton_markers(0, "a", kp))
    assert len(m["sphere_list"].points) == 15
    assert np.isfinite(m["sphere_list"].points).all()
    assert len(m["line_list"].points) == 2 * (len(H36M_17.edges) - 3)
    assert np.isfinite(m["line_list"].points).all()


def test_label_falls_back_to_highest_joint_when_head_missing():
    kp = standing_person(3.0)
    kp[10] = np.nan
    text = by_type(skeleton_markers(0, "a", kp, label_offset=0.2))["text"]
    np.testing.assert_allclose(text.points[0], kp[9] + [0.0, -0.2, 0.0])   # neck/nose is highest


def test_custom_up_direction():
    kp = standing_person(3.0)
    text = by_type(skeleton_markers(0, "a", kp, up=(0.0, 0.0, 2.0), label_offset=0.3))["text"]
    np.testing.assert_allclose(text.points[0], kp[10] + [0.0, 0.0, 0.3])


def test_all_nan_gives_no_markers():
    assert skeleton_markers(0, "a", np.full((17, 3), np.nan)) == []


def test_single_joint_gives_empty_line_list():
    kp = np.full((17, 3), np.nan)
    kp[0] = [0.0, 0.0, 2.0]
    m = by_type(skeleton_markers(0, "a", kp))
    assert m["line_list"].points.shape == (0, 3)
    assert m["sphere_list"].points.shape == (1, 3)


def test_ids_unique_across_people():
    kp = standing_person(3.0)
    ids = [m.id for i in range(6) for m in skeleton_markers(i, f"id{i}", kp)]
    assert len(ids) == len(set(ids)) == 6 * MARKERS_PER_PERSON


def test_drawn_markers_name_those_the_next_array_does_not_draw_again():
    kp = standing_person(3.0)
    drawn = DrawnMarkers()
    three = [m for i in range(3) for m in skeleton_markers(i, f"id{i}", kp)]
    assert drawn.gone(three) == []
    one = skeleton_markers(0, "id2", kp)          # two people left: the one still there is index 0
    assert drawn.gone(one) == [("skeleton", i) for i in range(MARKERS_PER_PERSON, 3 * MARKERS_PER_PERSON)]
    assert drawn.gone(one) == []
    assert drawn.gone([]) == [("skeleton", i) for i in range(MARKERS_PER_PERSON)]
    drawn.gone(one)
    drawn.forget()                                # a DELETEALL went out
    assert drawn.gone([]) == []


def test_colour_deterministic_from_track_id():
    kp = standing_person(3.0)
    a1 = skeleton_markers(0, "alice", kp)
    a2 = skeleton_markers(5, "alice", kp + 1.0)
    b = skeleton_markers(0, "bob", kp)
    assert a1[0].color == a2[0].color == a1[1].color == a1[2].color
    assert a1[0].color != b[0].color
    # the hue comes from CRC-32, stable across processes (Python's hash() is salted)
    hue = colorsys.rgb_to_hsv(*track_color("alice")[:3])[0]
    assert abs(hue - zlib.crc32(b"alice") / 2 ** 32) < 1e-9


def test_colour_from_index_when_id_empty():
    kp = standing_person(3.0)
    colours = [skeleton_markers(i, "", kp)[0].color for i in range(5)]
    assert len(set(colours)) == 5
    assert colours[3] == skeleton_markers(3, "", kp)[0].color
    assert skeleton_markers(3, "", kp)[2].text == "person 3"


@pytest.mark.parametrize("blank_id", [" ", "   ", "\n", " \n ", "\t", "\u3000",
                                      "\u200b", "\ufeff", " \u2060\u200b ", "\x7f", "\u3164", "\u2800"])
def test_a_blank_track_id_is_labelled_by_index(blank_id):
    """A text marker of only spaces / newlines is a zero-vertex caption in RViz2's MovableText (only
    an empty one is skipped), and other whitespace, zero-width and control characters and blank
    glyphs draw nothing: the label falls back to the index."""
    kp = standing_person(3.0)
    text = by_type(skeleton_markers(4, blank_id, kp))["text"]
    assert text.text == "person 4"
    assert by_type(skeleton_markers(4, " id 7 ", kp))["text"].text == " id 7 "    # visible: kept as given
    assert by_type(skeleton_markers(4, "\u200b7", kp))["text"].text == "\u200b7"


def test_palette_is_pleasant():
    for tid in ["a", "b", "person-42", "", "ü"]:
        r, g, b, alpha = track_color(tid, 7)
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        assert alpha == 1.0 and 0.5 <= s <= 0.8 and v >= 0.9
        assert all(0.0 <= c <= 1.0 for c in (r, g, b))


def test_other_layout():
    kp = np.random.default_rng(0).normal(size=(17, 3))
    m = by_type(skeleton_markers(1, "x", kp, layout=COCO_17))
    assert len(m["line_list"].points) == 2 * len(COCO_17.edges)
    np.testing.assert_allclose(m["text"].points[0], kp[0] + [0.0, -0.2, 0.0])   # above the nose


def test_wrong_shape_raises():
    with pytest.raises(ValueError):
        skeleton_markers(0, "a", np.zeros((16, 3)))


def test_marker_spec_validation():
    spec = MarkerSpec("ns", 0, "sphere_list", [[1, 2, 3]], (1, 0, 0, 1), (0.1, 0.1, 0.1))
    assert spec.points.dtype == np.float64 and spec.points.shape == (1, 3)
    assert spec.text == "" and spec.lifetime == 0.0
    with pytest.raises(ValueError):
        MarkerSpec("ns", 0, "cube", np.zeros((1, 3)), (1, 0, 0, 1), (1, 1, 1))
    with pytest.raises(ValueError):
        MarkerSpec("ns", 0, "line_list", np.zeros((3, 3)), (1, 0, 0, 1), (1, 1, 1))
    with pytest.raises(ValueError):
        MarkerSpec("ns", 0, "text", np.zeros((1, 3)), (1, 0, 0), (1, 1, 1))


def test_lifetimes_rviz_keeps_forever_do_not_expire():
    """RViz2 (marker_common.cpp) expires a marker only when its lifetime is over 100 us: 0 < lifetime
    <= 100 us is forever too, and the publisher must clear the old markers itself."""
    from cfi_pose_ros.markers import lifetime_expires, lifetime_ns

    assert [lifetime_expires(t) for t in (0.0, 1e-10, 5e-5, 1e-4)] == [False] * 4
    assert [lifetime_expires(t) for t in (1.01e-4, 0.25, 60.0)] == [True] * 3
    assert lifetime_ns(0.25) == 250_000_000 and lifetime_ns(1.9999999999) == 2_000_000_000


def test_drawn_markers_of_one_camera_leave_another_camera_s_and_stay_bounded():
    """Two cameras on one keypoints topic draw in namespaces of their own (camera_namespace): an
    array of one camera deletes only its own markers not drawn again, and the record keeps at most
    MAX_NAMESPACES cameras, the least recently drawn given up (for the caller to clear)."""
    from cfi_pose_ros.markers import camera_namespace

    kp = standing_person(3.0)
    left, right = camera_namespace("lifter", "cam_left"), camera_namespace("lifter", "cam_right")
    assert (left, camera_namespace("lifter", "")) == ("lifter/cam_left", "lifter")
    drawn = DrawnMarkers()
    two_left = [m for i in range(2) for m in skeleton_markers(i, f"id{i}", kp, namespace=left)]
    assert drawn.gone(two_left, left) == []
    assert drawn.gone(skeleton_markers(0, "id0", kp, namespace=right), right) == []      # left's stay
    assert drawn.gone(skeleton_markers(0, "id1", kp, namespace=left), left) == [
        (left, i) for i in range(MARKERS_PER_PERSON, 2 * MARKERS_PER_PERSON)]
    assert drawn.gone([], right) == [(right, i) for i in range(MARKERS_PER_PERSON)]
    assert drawn.namespaces == (left,) and drawn.evicted() == []
    for k in range(DrawnMarkers.MAX_NAMESPACES):
        camera = camera_namespace("lifter", f"cam{k}")
        drawn.gone(skeleton_markers(0, "a", kp, namespace=camera), camera)
    assert drawn.evicted() == [left] and len(drawn.namespaces) == DrawnMarkers.MAX_NAMESPACES


def test_a_camera_that_stopped_drawing_is_given_up_after_forget_after_arrays():
    """A camera whose stream stopped (or whose driver came back with another frame id): with a
    lifetime RViz never expires its skeletons stayed on screen beside the others' for as long as
    they drew on; after FORGET_AFTER_ARRAYS arrays of others it is given up, for the caller to clear."""
    kp = standing_person(3.0)
    drawn = DrawnMarkers()
    drawn.gone(skeleton_markers(0, "a", kp, namespace="lifter/gone"), "lifter/gone")
    for k in range(DrawnMarkers.FORGET_AFTER_ARRAYS):
        drawn.gone(skeleton_markers(0, "b", kp, namespace="lifter/on"), "lifter/on")
        assert drawn.evicted() == []
    drawn.gone(skeleton_markers(0, "b", kp, namespace="lifter/on"), "lifter/on")
    assert drawn.evicted() == ["lifter/gone"] and drawn.namespaces == ("lifter/on",)
