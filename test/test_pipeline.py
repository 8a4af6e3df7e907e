"""The ROS-free lifting pipeline with the real shipped weights on the torch backend."""
from __future__ import annotations

import numpy as np
import pytest

from cfi_pose_ros.inference import create_lifter
from cfi_pose_ros.pipeline import (ROOT_FROM_INTRINSICS, ROOT_RELATIVE, Frame2D, LiftingPipeline, Person2D,
                                   PipelineConfig, check_person, fill_missing_joints)
from cfi_pose_ros.skeleton import H36M_17
from cfi_pose_ros.smoothing import PoseSmoother
from cfi_pose_ros.weights import DEFAULT_WEIGHTS

CLIP = DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz"


@pytest.fixture(scope="module")
def lifter():
    return create_lifter(str(DEFAULT_WEIGHTS), backend="torch", log=lambda *_: None)


@pytest.fixture(scope="module")
def clip():
    with np.load(CLIP) as data:
        return {k: data[k] for k in data.files}


def frame_from_clip(clip, t, camera=True, people=(0, 1)) -> Frame2D:
    w, h = clip["image_size"]
    return Frame2D(people=[Person2D(clip["pixels"][t, p].astype(np.float64), clip["scores"][t, p].astype(np.float64),
                                    "h36m_17", track_id=str(clip["ids"][p]), score=0.9) for p in people],
                   image_width=float(w), image_height=float(h), stamp=t / 30.0,
                   camera_matrix=clip["camera_matrix"] if camera else None)


def test_absolute_position_from_intrinsics(lifter, clip):
    pipeline = LiftingPipeline(lifter)
    errors, depth = [], []
    for t in range(0, 150, 15):
        result = pipeline.process(frame_from_clip(clip, t))
        assert not result.dropped and len(result.people) == 2
        for person, truth in zip(result.people, clip["truth_camera_m"][t]):
            assert person.root_source == ROOT_FROM_INTRINSICS
            errors.append(np.linalg.norm(person.keypoints - truth, axis=1).mean())
            depth.append(abs(person.position[2] - truth[0, 2]) / truth[0, 2])
            assert np.allclose(person.position, person.keypoints[0])
    assert np.mean(errors) < 0.35 and np.mean(depth) < 0.10


def test_root_relative_without_camera(lifter, clip):
    result = LiftingPipeline(lifter).process(frame_from_clip(clip, 0, camera=False))
    for person in result.people:
        assert person.root_source == ROOT_RELATIVE
        assert np.allclose(person.keypoints[0], 0.0)


def test_malformed_people_are_dropped_with_reasons_others_kept(lifter, clip):
    frame = frame_from_clip(clip, 3)
    good = frame.people[1]
    frame.people = [
        Person2D(good.keypoints[:16], good.scores[:16], "h36m_17"),              # wrong count
        Person2D(good.keypoints, good.scores, "openpose_25"),                      # unknown layout
        Person2D(np.where(np.arange(17)[:, None] == 4, np.inf, good.keypoints), good.scores, "h36m_17"),
        Person2D(good.keypoints, np.full(17, 1.5), "h36m_17"),                     # bad scores
        Person2D(good.keypoints, np.zeros(17), "h36m_17"),                         # all missing
        good,
    ]
    result = LiftingPipeline(lifter).process(frame)
    assert [p.source_index for p in result.people] == [5]
    assert result.dropped == {"wrong_keypoint_count": 1, "unknown_layout": 1, "non_finite_coordinates": 1,
                              "score_out_of_range": 1, "too_few_joints": 1}


def test_bad_image_size_and_bad_camera(lifter, clip):
    frame = frame_from_clip(clip, 0)
    frame.image_width = 0
    assert LiftingPipeline(lifter).process(frame).dropped == {"bad_image_size": 2}
    frame = frame_from_clip(clip, 0)
    frame.camera_matrix = np.zeros((3, 3))
    result = LiftingPipeline(lifter).process(frame)
    assert result.dropped == {"bad_camera_info": 1}
    assert all(p.root_source == ROOT_RELATIVE for p in result.people)


def test_max_people_keeps_the_highest_scores(lifter, clip):
    frame = frame_from_clip(clip, 0, people=[0, 1] * 5)
    for i, person in enumerate(frame.people):
        person.score = i / 10
    result = LiftingPipeline(lifter, PipelineConfig(max_people=4)).process(frame)
    assert [p.source_index for p in result.people] == [6, 7, 8, 9]
    assert result.dropped == {"too_many_people": 6}


def test_fill_missing_joints_uses_nearest_valid_ancestor():
    keypoints = np.arange(34, dtype=float).reshape(17, 2)
    valid = np.ones(17, dtype=bool)
    valid[[12, 13]] = False                      # left elbow and wrist lost
    filled = fill_missing_joints(np.where(valid[:, None], keypoints, np.nan), valid)
    assert np.array_equal(filled[12], keypoints[11]) and np.array_equal(filled[13], keypoints[11])
    assert np.isfinite(filled).all()


def test_smoothing_reduces_jitter_per_track(lifter, clip):
    rng = np.random.default_rng(0)
    raw, smooth = LiftingPipeline(lifter), LiftingPipeline(lifter, smoother=PoseSmoother(min_cutoff=0.5, beta=0.0))
    out_raw, out_smooth = [], []
    for t in range(40):
        frame = frame_from_clip(clip, 0, people=[0])   # a still person with pixel jitter
        frame.stamp = t / 30.0
        frame.people[0].keypoints = frame.people[0].keypoints + rng.normal(0, 3.0, (17, 2))
        out_raw.append(raw.process(frame).people[0].keypoints)
        frame.people[0].track_id = "a"
        out_smooth.append(smooth.process(frame).people[0].keypoints)
    assert np.std(np.array(out_smooth)[10:], axis=0).mean() < 0.5 * np.std(np.array(out_raw)[10:], axis=0).mean()


def test_check_person_accepts_valid_coco():
    assert check_person(Person2D(np.zeros((17, 2)), np.ones(17), "coco_17")) is None
    assert H36M_17.num_joints == 17


def test_depth_image_gives_the_root_and_says_so(lifter, clip):
    frame = frame_from_clip(clip, 30)
    truth = clip["truth_camera_m"][30]
    w, h = clip["image_size"]
    # A registered depth image (uint16 mm) in which each person's body surface lies 0.1 m
    # in front of their pelvis; the background far away.
    depth = np.full((h, w), 9000, dtype=np.uint16)
    for person_pixels, person_truth in zip(clip["pixels"][30], truth):
        x0, y0 = np.floor(person_pixels.min(0)).astype(int)
        x1, y1 = np.ceil(person_pixels.max(0)).astype(int)
        depth[max(y0, 0):y1, max(x0, 0):x1] = round((person_truth[0, 2] - 0.1) * 1000)
    frame.depth = depth
    result = LiftingPipeline(lifter).process(frame)
    for person, person_truth in zip(result.people, truth):
        assert person.root_source == 2                     # ROOT_FROM_DEPTH
        assert abs(person.position[2] - person_truth[0, 2]) < 0.03
    # a hole in the depth image: that person falls back to the intrinsics solve
    frame.depth = np.zeros_like(depth)
    assert [p.root_source for p in LiftingPipeline(lifter).process(frame).people] == [ROOT_FROM_INTRINSICS] * 2
