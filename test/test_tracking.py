"""MultiPersonTracker: IoU + Hungarian assignment, birth, death and stable ids."""
from __future__ import annotations

import numpy as np
import pytest

from cfi_pose_ros.tracking import MultiPersonTracker, TrackerConfig


def box(cx: float, cy: float = 200.0, w: float = 80.0, h: float = 200.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_ids_are_stable_and_aligned_with_the_input_order():
    tracker = MultiPersonTracker()
    first = tracker.update([box(100), box(400)], t=0.0)
    assert first == ["1", "2"]
    # Same people, listed in the other order and moved a little.
    assert tracker.update([box(405), box(104)], t=0.1) == ["2", "1"]
    assert tracker.update(np.array([box(110), box(410)]), t=0.2) == ["1", "2"]


def test_two_people_crossing_paths_keep_their_ids():
    # 30 px per frame for 80 px wide boxes: fast enough that plain IoU with the
    # last box swaps the two people as they pass; the constant-velocity
    # prediction keeps them apart.
    tracker = MultiPersonTracker(min_iou=0.2)
    ids_seen = []
    for step in range(14):
        a, b = 100 + 30 * step, 500 - 30 * step      # they pass each other between steps 6 and 7
        boxes = [box(a, 200), box(b, 215)]
        order = [1, 0] if step % 2 else [0, 1]      # detectors list people in no fixed order
        ids = tracker.update([boxes[i] for i in order], t=step / 30.0)
        by_person = {order[k]: ids[k] for k in range(2)}
        ids_seen.append((by_person[0], by_person[1]))
    assert all(pair == ("1", "2") for pair in ids_seen), ids_seen


def test_person_leaving_and_new_one_entering_gets_a_new_id():
    tracker = MultiPersonTracker(max_age=0.5)
    assert tracker.update([box(100), box(400)], t=0.0) == ["1", "2"]
    assert tracker.update([box(400)], t=0.1) == ["2"]            # person 1 leaves
    assert tracker.update([box(401)], t=0.4) == ["2"]
    assert tracker.update([box(402)], t=0.7) == ["2"]            # 1 has been gone > max_age
    assert tracker.update([box(100), box(404)], t=0.8) == ["3", "2"]  # someone new where 1 was


def test_short_occlusion_within_max_age_keeps_the_id():
    tracker = MultiPersonTracker(max_age=0.5)
    tracker.update([box(100), box(400)], t=0.0)
    tracker.update([box(400)], t=0.2)
    assert tracker.update([box(100), box(400)], t=0.4) == ["1", "2"]


def test_empty_frames():
    tracker = MultiPersonTracker(max_age=2)                # frames: no timestamps
    assert tracker.update(np.zeros((0, 4))) == []
    assert tracker.update([box(100)]) == ["1"]
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([box(100)]) == ["1"]             # missed 2 frames: still alive
    for _ in range(3):
        assert tracker.update(np.empty((0, 4))) == []
    assert tracker.update([box(100)]) == ["2"]             # missed 3 > max_age frames
    assert len(tracker.tracks) == 1


def test_birth_after_min_hits_and_tentative_tracks_die_on_a_miss():
    tracker = MultiPersonTracker(min_hits=3)
    assert tracker.update([box(100)], t=0) == [""]
    assert tracker.update([box(102)], t=1) == [""]
    assert tracker.update([box(104), box(400)], t=2) == ["1", ""]
    assert tracker.update([box(106)], t=3) == ["1"]          # the tentative one at 400 is dropped
    assert tracker.update([box(108), box(400)], t=4) == ["1", ""]
    assert tracker.tracks[0].id == "1" and len(tracker.tracks) == 1


def test_gating_by_min_iou():
    tracker = MultiPersonTracker(min_iou=0.5, predict_motion=False)
    tracker.update([box(100)], t=0)
    # 40 px shift of an 80 px wide box: IoU 1/3 < 0.5 -> a new person.
    assert tracker.update([box(140)], t=1) == ["2"]


def test_ros4hri_ids_are_five_lowercase_letters_and_unique():
    tracker = MultiPersonTracker(TrackerConfig(id_style="ros4hri", seed=3, max_age=0))
    seen = set()
    for step in range(50):
        (new,) = tracker.update([box(100 + 300 * (step % 2))], t=step)
        assert len(new) == 5 and new.isalpha() and new.islower()
        seen.add(new)
    assert len(seen) == 50


def test_time_going_backwards_starts_over_without_reusing_ids():
    tracker = MultiPersonTracker()
    tracker.update([box(100)], t=10.0)
    assert tracker.update([box(100)], t=1.0) == ["2"]


def test_two_stamps_a_microsecond_apart_do_not_throw_the_motion_model_off():
    """A box moved 3 px between stamps 0.5 us apart was a velocity of 6e6 px/s: the next frame's
    predicted box left the image and the same person got a new id."""
    tracker = MultiPersonTracker()
    for t, x in ((0.0, 100.0), (0.1, 103.0), (0.1000005, 106.0), (0.2, 109.0), (0.3, 112.0)):
        assert tracker.update([box(x)], t=t) == ["1"], t


@pytest.mark.parametrize("bad", [dict(min_iou=1.5), dict(min_hits=0), dict(max_age=-1), dict(id_style="uuid")])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        TrackerConfig(**bad)


def test_nan_boxes_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        MultiPersonTracker().update([[0, 0, np.nan, 1]], t=0)


def test_the_tracker_state_stays_bounded_over_20000_frames():
    """Issue 13, item 11: the set of issued ids was never pruned (200 k ids held for 30 live
    tracks after 20 k frames). Now the state is the live tracks; ids still never repeat."""
    for style in ("int", "ros4hri"):
        tracker = MultiPersonTracker(TrackerConfig(id_style=style, seed=1, max_age=0))
        seen = set()
        for frame in range(20_000):
            # 10 people, each a new track every frame (they jump by more than a box width)
            ids = tracker.update([box(100 + 200 * i + 97 * (frame % 2)) for i in range(10)], t=frame)
            seen.update(ids)
        assert len(seen) == len(tracker.tracks) + 10 * 19_999 == 200_000
        assert len(tracker.tracks) == 10
        assert sum(len(v) if hasattr(v, "__len__") else 1 for v in vars(tracker).values()
                   if isinstance(v, (set, dict, list))) <= 10


def test_a_frame_without_a_stamp_in_a_stamped_stream_keeps_the_ids():
    """An image with a zero stamp used the monotonic clock, a different clock from the stamps: time
    went backwards (every track started over) and at the next stamp forwards by years (all expired)."""
    tracker = MultiPersonTracker()
    ids = [tracker.update([box(100), box(400)], t=tracker.clock(stamp))
           for stamp in (1000.0, 1000.033, 0.0, None, 1000.1, 1000.133)]
    assert ids == [["1", "2"]] * 6
    fresh = MultiPersonTracker()                           # never stamped: the monotonic clock
    assert fresh.clock(None) <= fresh.clock(0.0) and fresh.clock(5.0) == 5.0
