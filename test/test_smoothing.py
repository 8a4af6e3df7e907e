import numpy as np
import pytest

from cfi_pose_ros.smoothing import OneEuroFilter, PoseSmoother

FPS = 30.0


def run(filt, times, samples):
    return np.stack([filt(t, x) for t, x in zip(times, samples)])


def test_constant_signal_unchanged():
    rng = np.random.default_rng(0)
    value = rng.normal(size=(17, 3))
    filt = OneEuroFilter(min_cutoff=0.5, beta=2.0)
    times = np.cumsum(rng.uniform(0.005, 0.2, 100))       # irregular
    out = run(filt, times, [value] * 100)
    np.testing.assert_allclose(out, np.broadcast_to(value, out.shape), atol=1e-12)


def test_first_sample_passes_through_and_input_not_modified():
    x = np.arange(6.0).reshape(2, 3)
    filt = OneEuroFilter()
    y = filt(0.0, x)
    np.testing.assert_array_equal(y, x)
    y[0, 0] = 99.0
    filt(0.1, x + 1.0)
    np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))


def test_noise_reduced_on_slow_signal():
    rng = np.random.default_rng(1)
    times = np.arange(300) / FPS
    truth = 0.05 * np.sin(2 * np.pi * 0.1 * times)[:, None, None] + np.zeros((1, 17, 3))
    noisy = truth + rng.normal(0.0, 0.02, truth.shape)
    out = run(OneEuroFilter(min_cutoff=1.0, beta=0.0), times, noisy)
    settle = 30
    raw_err = np.std(noisy[settle:] - truth[settle:])
    smooth_err = np.std(out[settle:] - truth[settle:])
    assert smooth_err < 0.5 * raw_err
    # and the jitter frame-to-frame is much lower
    assert np.std(np.diff(out[settle:], axis=0)) < 0.25 * np.std(np.diff(noisy[settle:], axis=0))


def steady_lag(beta):
    times = np.arange(90) / FPS
    ramp = (2.0 * times)[:, None]                 # 2 m/s
    out = run(OneEuroFilter(min_cutoff=1.0, beta=beta, d_cutoff=1.0), times, ramp)
    return float(ramp[-1, 0] - out[-1, 0])


def test_fast_motion_small_lag_with_beta():
    lag_plain = steady_lag(0.0)
    lag_adaptive = steady_lag(5.0)
    assert lag_plain > 0.2
    assert 0 <= lag_adaptive < 0.25 * lag_plain
    assert lag_adaptive < 0.06


def test_repeated_timestamp_passes_the_sample_through_and_keeps_the_state():
    """A stamp that does not advance must not freeze the output (issue 13, item 5): all-zero
    stamps, as some drivers send, gave the first pose forever."""
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    filt(0.0, np.zeros(3))
    a = filt(0.1, np.ones(3))
    b = filt(0.1, np.full(3, 50.0))
    np.testing.assert_array_equal(b, np.full(3, 50.0))        # followed, unsmoothed
    c = filt(0.2, np.ones(3))                  # the state is the one after the first t = 0.1
    fresh = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    fresh(0.0, np.zeros(3))
    fresh(0.1, np.ones(3))
    np.testing.assert_array_equal(c, fresh(0.2, np.ones(3)))
    assert np.all(a < 1.0) and np.all(c < 1.0)


@pytest.mark.parametrize("step", [1e-9, 1e-6])
def test_stamps_advancing_by_nanoseconds_do_not_freeze_the_output(step):
    """Stamps 1 ns or 1 us apart (a republisher, stamps from one trigger): the filter's gain over such
    a step is 0, so a person walking 1 m stayed at 0.000 m (1 ns) or 0.019 m (1 us); on wall-clock
    stamps, where float rounding makes most such steps 0, the first pose came back every ~240 frames."""
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.5)
    walk = np.linspace(0.0, 1.0, 60)
    for base in (0.0, 1.7e9):
        smoother.reset()
        out = [smoother.smooth_frame(["a"], base + 1.0 + k * step, np.full((1, 17, 3), x))[0, 0, 0]
               for k, x in enumerate(walk)]
        np.testing.assert_allclose(out, walk)           # followed, unsmoothed: no time passed


def test_a_duplicated_frame_gets_the_output_it_got():
    """One message delivered twice (a relay beside the driver, a bag recorded from both): the second
    passed through unsmoothed, so /human_pose_3d carried two poses at one stamp (6 cm apart on the
    clip through the running lifter), the second a jump off the smoothed track. The same sample at
    the same time now gets the same output; another sample there is still followed."""
    rng = np.random.default_rng(7)
    poses = rng.normal(0.0, 0.05, (6, 2, 17, 3)) + np.array([0.0, 0.0, 5.0])
    poses[3, 1, 4] = np.nan                                         # a joint not seen
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.5)
    for k, pose in enumerate(poses):
        out = smoother.smooth_frame(["a", "b"], 1.0 + k / FPS, pose)
        again = smoother.smooth_frame(["a", "b"], 1.0 + k / FPS, pose.copy())
        np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(smoother.smooth_frame(["a", "b"], 1.0 + 5 / FPS, poses[0]), poses[0])


def test_a_message_again_after_another_at_the_same_stamp_gets_its_first_output():
    """M1, another message M2 at the same stamp, then M1 again: the filter compares a sample only
    with the one before it, so M1 got a second pose (2.0 after 1.61)."""
    smoother = PoseSmoother()
    for k in range(2):
        smoother.smooth_frame(["1"], 1.0 + k / FPS, np.full((1, 17, 3), float(k)))
    t = 1.0 + 2 / FPS
    first = smoother.smooth_frame(["1"], t, np.full((1, 17, 3), 2.0))
    other = smoother.smooth_frame(["1"], t, np.full((1, 17, 3), 2.5))
    assert 1.0 < first[0, 0, 0] < 2.0 and other[0, 0, 0] == 2.5        # smoothed; passed through
    np.testing.assert_array_equal(smoother.smooth_frame(["1"], t, np.full((1, 17, 3), 2.0)), first)


def test_a_message_again_after_one_of_the_person_in_the_other_mode_at_the_same_stamp_gets_its_first_output():
    """M1 of a placed person, M2 at the same stamp of them root-relative (their root solve failed
    there), then M1 again: M2 restarted the track in its mode, and M1 again, no longer of the track's
    mode, got its input unsmoothed (6.0 after 5.61) and restarted the track once more."""
    smoother = PoseSmoother()
    for k in range(2):
        smoother.smooth_frame(["1"], 1.0 + k / FPS, np.full((1, 17, 3), 4.0 + k), modes=[True])
    t = 1.0 + 2 / FPS
    placed, relative = np.full((1, 17, 3), 6.0), np.full((1, 17, 3), 0.3)
    first = smoother.smooth_frame(["1"], t, placed, modes=[True])
    assert 5.0 < first[0, 0, 0] < 6.0
    np.testing.assert_array_equal(smoother.smooth_frame(["1"], t, relative, modes=[False]), relative)
    np.testing.assert_array_equal(smoother.smooth_frame(["1"], t, placed, modes=[True]), first)
    # the track is as M2 left it: root-relative, from M2's sample on
    later = smoother.smooth_frame(["1"], t + 1 / FPS, np.full((1, 17, 3), 0.5), modes=[False])
    assert 0.3 < later[0, 0, 0] < 0.5


def test_a_message_again_after_one_giving_the_person_s_id_twice_at_the_same_stamp_gets_its_first_output():
    """M1, M2 at the same stamp giving M1's person's id to two people (which drops the track), then
    M1 again: its person got the input unsmoothed (6.0 after 5.61)."""
    smoother = PoseSmoother()
    for k in range(2):
        smoother.smooth_frame(["1"], 1.0 + k / FPS, np.full((1, 17, 3), 4.0 + k))
    t = 1.0 + 2 / FPS
    first = smoother.smooth_frame(["1"], t, np.full((1, 17, 3), 6.0))
    assert 5.0 < first[0, 0, 0] < 6.0
    smoother.smooth_frame(["1", "1"], t, np.full((2, 17, 3), 0.3))
    assert "1" not in smoother
    np.testing.assert_array_equal(smoother.smooth_frame(["1"], t, np.full((1, 17, 3), 6.0)), first)


def test_a_frame_delivered_again_late_gets_the_output_it_got():
    """The same message again after newer frames (a relay, a bag recorded from both): a late frame
    passes through unsmoothed, so /human_pose_3d carried two poses of a person at one stamp. Each
    person of a frame smoothed before now gets its output again; a changed person, a frame never
    seen and one further back than the frames kept pass through, and no track changes."""
    rng = np.random.default_rng(11)
    poses = rng.normal(0.0, 0.05, (12, 2, 17, 3)) + np.array([0.0, 0.0, 5.0])
    times = 1.0 + np.arange(12) / FPS
    smoother, plain = PoseSmoother(min_cutoff=1.0, beta=0.5), PoseSmoother(min_cutoff=1.0, beta=0.5)
    outputs = [smoother.smooth_frame(["a", "b"], t, pose) for t, pose in zip(times[:6], poses)]
    for t, pose in zip(times[:6], poses):
        plain.smooth_frame(["a", "b"], t, pose)
    assert not np.allclose(outputs[3], poses[3])                           # smoothing did something
    np.testing.assert_array_equal(smoother.smooth_frame(["a", "b"], times[3], poses[3].copy()), outputs[3])
    np.testing.assert_array_equal(smoother.smooth_frame(["b"], times[4], poses[4][1:].copy()), outputs[4][1:])
    changed = poses[3].copy()
    changed[1] += 0.2                                                      # "b" is another pose now
    again = smoother.smooth_frame(["a", "b"], times[3], changed)
    np.testing.assert_array_equal(again[0], outputs[3][0])
    np.testing.assert_array_equal(again[1], changed[1])
    between = times[3] + 0.5 / FPS                                         # no frame was stamped then
    np.testing.assert_array_equal(smoother.smooth_frame(["a", "b"], between, poses[3]), poses[3])
    for t, pose in zip(times[6:], poses[6:]):                              # the tracks did not change
        np.testing.assert_array_equal(smoother.smooth_frame(["a", "b"], t, pose),
                                      plain.smooth_frame(["a", "b"], t, pose))
    # 8 frames kept: at a fast rate a duplicate within the late window but older passes through
    fast = PoseSmoother(min_cutoff=1.0, beta=0.5)
    fast_out = [fast.smooth_frame(["a"], 1.0 + k / 1000, pose[:1]) for k, pose in enumerate(poses)]
    np.testing.assert_array_equal(fast.smooth_frame(["a"], 1.0 + 4 / 1000, poses[4][:1]), fast_out[4])
    np.testing.assert_array_equal(fast.smooth_frame(["a"], 1.0 + 3 / 1000, poses[3][:1]), poses[3][:1])


def test_all_zero_stamps_follow_the_input():
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.5)
    poses = np.arange(10, dtype=float)[:, None, None] * np.ones((10, 17, 3))
    out = np.stack([smoother.smooth("a", 0.0, pose) for pose in poses])
    np.testing.assert_array_equal(out, poses)


def _smoothing_with_one_odd_frame(odd_time):
    """Two people over 12 frames at FPS, once as they are and once with a frame at ``odd_time(t)``
    (a shifted pose) before the 7th: the odd frame must come back unsmoothed, keep both tracks,
    and leave every later output equal to the uninterrupted run's. Returns the interrupted smoother."""
    rng = np.random.default_rng(4)
    poses = rng.normal(0.0, 0.03, (12, 2, 17, 3)) + np.array([0.0, 0.0, 5.0])
    times = 1000.0 + np.arange(12) / FPS
    plain, interrupted = PoseSmoother(min_cutoff=1.0, beta=0.5), PoseSmoother(min_cutoff=1.0, beta=0.5)
    for k, (t, pose) in enumerate(zip(times, poses)):
        expected = plain.smooth_frame(["a", "b"], t, pose)
        if k == 6:
            odd = interrupted.smooth_frame(["a", "b"], odd_time(t), pose + 1.0)
            np.testing.assert_array_equal(odd, pose + 1.0)           # followed, unsmoothed
            assert interrupted.track_ids == ("a", "b")
        np.testing.assert_array_equal(interrupted.smooth_frame(["a", "b"], t, pose), expected)
    return interrupted, poses


def test_a_late_frame_changes_no_track_and_a_bag_loop_restarts():
    """A frame 20 ms out of order restarted both filters (t before their last time), so the smoothing
    started over for one late frame; it now passes through. A step back of seconds still restarts."""
    interrupted, poses = _smoothing_with_one_odd_frame(lambda t: t - 0.02 - 1 / FPS)
    looped = interrupted.smooth_frame(["a", "b"], 990.0, poses[0] + 1.0)
    np.testing.assert_array_equal(looped, poses[0] + 1.0)            # restarted from the sample
    assert interrupted.smooth_frame(["a", "b"], 990.0 + 1 / FPS, poses[1])[0, 0, 0] != poses[1][0, 0, 0]


def test_a_person_away_at_a_bag_loop_starts_fresh_when_back():
    """`ros2 bag play --loop` of a short bag (a step back of 0.9 s): a person out of view in the loop's
    first frames kept the last pass's filter, and once the new pass's stamps passed that filter's time
    its output was a blend of the last pass's pose and the new one (0.5 m off on the clip, through the
    running lifter). A step back starts a new timeline: no track carries over."""
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.0)
    before, after = np.zeros((2, 17, 3)), np.zeros((2, 17, 3)) + [0.0, 0.0, 3.0]
    times = 10.0 + np.arange(16) / FPS
    for t in times:
        smoother.smooth_frame(["a", "b"], t, before)
    t = times[-1] - 0.9                                             # the bag again: "b" not in view yet
    while t <= times[-1]:
        smoother.smooth_frame(["a"], t, after[:1])
        t += 1 / FPS
    np.testing.assert_array_equal(smoother.smooth_frame(["a", "b"], t, after)[1], after[1])   # "b" starts fresh


def test_one_frame_without_a_time_in_a_stamped_stream_changes_no_track():
    """A zero stamp (ROS: not set) in a stamped stream was 0 s, a jump back of every track's clock:
    every track expired, and the frames after it were unsmoothed while the filters started over."""
    _smoothing_with_one_odd_frame(lambda t: None)


def test_time_going_backwards_restarts():
    filt = OneEuroFilter()
    filt(10.0, np.zeros(3))
    filt(10.1, np.ones(3))
    np.testing.assert_array_equal(filt(5.0, np.full(3, 7.0)), np.full(3, 7.0))
    assert filt.last_time == 5.0


def test_long_gap_follows_new_measurement():
    filt = OneEuroFilter(min_cutoff=1.0)
    filt(0.0, np.zeros(3))
    out = filt(100.0, np.ones(3))
    np.testing.assert_allclose(out, 1.0, atol=1e-2)


def test_nan_joints_pass_through_and_reset():
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    kp = np.zeros((17, 3))
    filt(0.0, kp)
    filt(1 / FPS, kp)
    moved = kp + 1.0
    gap = moved.copy()
    gap[5] = np.nan
    out = filt(2 / FPS, gap)
    assert np.isnan(out[5]).all()
    assert np.isfinite(np.delete(out, 5, axis=0)).all()
    assert np.all(out[0] < 1.0)                        # others still smoothed
    back = filt(3 / FPS, moved)
    np.testing.assert_array_equal(back[5], moved[5])   # restarted from the sample
    assert np.all(back[0] < 1.0)


def test_single_nan_coordinate():
    filt = OneEuroFilter()
    filt(0.0, np.zeros((2, 3)))
    x = np.ones((2, 3))
    x[1, 2] = np.nan
    out = filt(0.1, x)
    assert np.isnan(out[1, 2]) and np.isfinite(out[1, :2]).all()


def test_shape_change_restarts():
    filt = OneEuroFilter()
    filt(0.0, np.zeros((17, 3)))
    out = filt(0.1, np.ones((5, 3)))
    np.testing.assert_array_equal(out, np.ones((5, 3)))


@pytest.mark.parametrize("kwargs", [dict(min_cutoff=0.0), dict(min_cutoff=-1.0), dict(beta=-0.1),
                                    dict(d_cutoff=0.0), dict(min_cutoff=float("nan"))])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        OneEuroFilter(**kwargs)
    with pytest.raises(ValueError):
        PoseSmoother(**kwargs)
    with pytest.raises(ValueError):
        PoseSmoother(forget_after=0.0)


def test_non_finite_timestamp_raises():
    with pytest.raises(ValueError):
        OneEuroFilter()(float("nan"), np.zeros(3))
    with pytest.raises(ValueError):
        PoseSmoother().smooth("a", float("inf"), np.zeros((17, 3)))


def test_smoother_ids_isolated():
    rng = np.random.default_rng(2)
    times = np.arange(40) / FPS
    a = rng.normal(0, 0.05, (40, 17, 3))
    b = rng.normal(5, 0.05, (40, 17, 3))
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.5, forget_after=1.0)
    out_a = []
    for i, t in enumerate(times):
        out_a.append(smoother.smooth("a", t, a[i]))
        smoother.smooth("b", t, b[i])
    expected = run(OneEuroFilter(1.0, 0.5, 1.0), times, a)
    np.testing.assert_allclose(np.stack(out_a), expected)
    assert set(smoother.track_ids) == {"a", "b"} and len(smoother) == 2


def test_smoother_forgets_stale_ids():
    smoother = PoseSmoother(forget_after=0.5)
    kp = np.zeros((17, 3))
    smoother.smooth("old", 0.0, kp)
    smoother.smooth("old", 0.1, kp)
    smoother.smooth("new", 0.4, kp)
    assert "old" in smoother
    smoother.smooth("new", 0.7, kp)
    assert "old" not in smoother and "new" in smoother
    assert smoother.forget_stale(10.0) == ["new"]
    assert len(smoother) == 0
    # an id seen again after being forgotten starts fresh
    smoother.smooth("x", 20.0, kp)
    out = smoother.smooth("x", 21.0, kp + 3.0)        # > forget_after later: fresh filter
    np.testing.assert_array_equal(out, kp + 3.0)


def test_smoother_clock_reset_forgets():
    smoother = PoseSmoother(forget_after=1.0)
    smoother.smooth("a", 100.0, np.zeros((17, 3)))
    smoother.smooth("b", 2.0, np.zeros((17, 3)))
    assert smoother.track_ids == ("b",)


def test_empty_id_is_not_smoothed_nor_stored():
    smoother = PoseSmoother()
    smoother.smooth("", 0.0, np.zeros((17, 3)))
    kp = np.ones((17, 3))
    kp[3] = np.nan
    out = smoother.smooth("", 0.1, kp)
    np.testing.assert_array_equal(out, kp)
    assert out is not kp and len(smoother) == 0


def test_forget_and_reset():
    smoother = PoseSmoother()
    smoother.smooth("a", 0.0, np.zeros((17, 3)))
    smoother.smooth("b", 0.0, np.zeros((17, 3)))
    smoother.forget("a")
    smoother.forget("missing")
    assert smoother.track_ids == ("b",)
    smoother.reset()
    assert len(smoother) == 0


def test_duplicate_ids_in_one_frame_do_not_share_a_filter():
    """Two people with the same id in one frame: each keeps its own skeleton (issue 13, item 5)."""
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.5)
    a, b = np.zeros((17, 3)), np.full((17, 3), 4.0)
    smoother.smooth_frame(["7"], 0.0, a[None])
    out = smoother.smooth_frame(["7", "7", "8"], 1 / FPS, np.stack([a + 0.1, b, b]))
    np.testing.assert_array_equal(out[0], a + 0.1)           # unsmoothed, not the other one's pose
    np.testing.assert_array_equal(out[1], b)
    assert "7" not in smoother and "8" in smoother            # the ambiguous id's history is dropped
    # once the id is unique again it starts fresh
    np.testing.assert_array_equal(smoother.smooth_frame(["7"], 2 / FPS, b[None])[0], b)


def test_one_hundred_thousand_ids_keep_the_state_bounded():
    """Tracks unseen for a while expire, with advancing stamps and with stamps that never advance
    (issue 13, item 5: 14.6 k ids made a 64-person frame 3x slower, and memory kept growing). With
    the stamps stuck, the answers kept for late duplicates of that one time grew by every new id
    (1.24 KiB each, measured: 159 MiB for 128 000 ids) while the tracks stayed bounded."""
    import tracemalloc

    kp = np.zeros((64, 17, 3))
    for stamps_advance in (True, False):
        tracemalloc.start()
        smoother = PoseSmoother(forget_after=1.0, forget_after_frames=30, max_tracks=1000)
        largest = 0
        for frame in range(100_000 // 64 + 1):
            ids = [str(frame * 64 + i) for i in range(64)]
            smoother.smooth_frame(ids, frame / FPS if stamps_advance else 0.0, kp)
            largest = max(largest, len(smoother))
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        # one second of 30 Hz frames (advancing stamps), or 30 frames (stamps stuck): 31 frames of 64
        assert largest <= 31 * 64, largest
        assert len(smoother) <= 31 * 64
        assert held < 10 << 20, (stamps_advance, held)


def test_max_tracks_drops_the_least_recently_seen():
    smoother = PoseSmoother(max_tracks=3)
    kp = np.zeros((17, 3))
    for i, track_id in enumerate("abcd"):
        smoother.smooth(track_id, i * 0.01, kp)
    assert smoother.track_ids == ("b", "c", "d")
    smoother.smooth("b", 0.05, kp)                # seen again: now the most recent
    smoother.smooth("e", 0.06, kp)
    assert smoother.track_ids == ("d", "b", "e")


def test_tracks_expire_after_frames_when_stamps_do_not_advance():
    smoother = PoseSmoother(forget_after_frames=5)
    kp = np.zeros((17, 3))
    smoother.smooth("gone", 0.0, kp)
    for _ in range(5):
        smoother.smooth("stays", 0.0, kp)
    assert "gone" in smoother
    smoother.smooth("stays", 0.0, kp)
    assert smoother.track_ids == ("stays",)


@pytest.mark.parametrize("kwargs", [{"forget_after_frames": 0}, {"max_tracks": 0}, {"max_tracks": 1.5}])
def test_bad_state_bounds_raise(kwargs):
    with pytest.raises(ValueError):
        PoseSmoother(**kwargs)


def test_a_track_whose_mode_changes_restarts_from_the_new_sample():
    """Root-relative joints (pelvis at 0) and camera-frame joints (pelvis ~5 m away) of one id must
    never be blended: CameraInfo arriving after the first frames, solve_root switched off live."""
    rng = np.random.default_rng(3)
    relative = rng.normal(0, 0.3, (17, 3))
    placed = relative + np.array([0.2, -0.1, 5.0])
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.0)
    for k in range(5):
        smoother.smooth_frame(["a"], k / FPS, relative[None], modes=[False])
    np.testing.assert_array_equal(smoother.smooth_frame(["a"], 5 / FPS, placed[None], modes=[True])[0], placed)
    np.testing.assert_array_equal(smoother.smooth_frame(["a"], 6 / FPS, relative[None], modes=[False])[0], relative)
    # the same jump without a mode change is smoothed (what the mode prevents)
    blended = smoother.smooth_frame(["a"], 7 / FPS, placed[None], modes=[False])[0]
    assert 0.5 < blended[:, 2].mean() < 4.5
    with pytest.raises(ValueError, match="modes"):
        smoother.smooth_frame(["a"], 8 / FPS, placed[None], modes=[True, False])


def test_a_frame_in_another_camera_frame_starts_with_that_camera_s_own_tracks():
    """Another camera now publishes on the topic (or a driver restarted with another frame_id): the
    tracks' history is in the old camera's frame. The first output in the new frame is its sample,
    not a blend, and the new camera's clock is a timeline of its own (stamps 50 ms behind the old
    camera's are not late frames passed through unsmoothed); the old camera's tracks stay its own."""
    smoother = PoseSmoother(min_cutoff=1.0, beta=0.0)
    in_a, in_b = np.zeros((2, 17, 3)), np.zeros((2, 17, 3)) + [1.0, 0.0, 3.0]
    for k in range(10):
        smoother.smooth_frame(["a", "b"], k / FPS, in_a, frame_id="cam_a")
    behind = 10 / FPS - 0.05
    np.testing.assert_array_equal(smoother.smooth_frame(["a"], behind, in_b[:1], frame_id="cam_b"), in_b[:1])
    assert smoother.cameras == ("cam_a", "cam_b")
    assert smoother.tracks_in("cam_a") == ("a", "b") and smoother.tracks_in("cam_b") == ("a",)
    moved = in_b[:1] + 0.5
    smoothed = smoother.smooth_frame(["a"], behind + 1 / FPS, moved, frame_id="cam_b")[0]
    assert (in_b[0] < smoothed).all() and (smoothed < moved[0]).all()       # smoothed from B's first frame on
    np.testing.assert_array_equal(smoother.smooth_frame(["a"], behind + 2 / FPS, in_a[:1], frame_id="cam_a"),
                                  in_a[:1])                                 # A's own history: still at A's pose
    # the same jump within one frame is smoothed (what the frame_id keeps apart)
    blended = smoother.smooth_frame(["a"], behind + 3 / FPS, in_b[:1], frame_id="cam_a")[0]
    assert 0.5 < blended[:, 2].mean() < 2.5


def test_two_cameras_on_one_topic_are_each_smoothed_as_if_alone():
    """Two cameras publishing on one topic into one lifter, frames alternating, each numbering its
    people from "1": one smoother state dropped every track at each change of frame_id, so nothing
    was smoothed at all (every output was its raw input). Each camera's output now equals a smoother
    fed that camera's frames alone, also with the two clocks' stamps interleaved a little out of
    order (B 20 ms behind A: neither a late frame nor a bag loop of A's)."""
    rng = np.random.default_rng(11)
    n = 60
    times_a = 100.0 + np.arange(n) / FPS
    times_b = times_a - 0.02 + 0.5 / FPS         # B's frames fall between A's, its clock a little off
    base_a = rng.normal(0.0, 0.3, (2, 17, 3)) + [0.0, 0.0, 4.0]
    base_b = rng.normal(0.0, 0.3, (2, 17, 3)) + [1.0, 0.0, 3.0]
    raw_a = base_a + rng.normal(0.0, 0.02, (n, 2, 17, 3))
    raw_b = base_b + rng.normal(0.0, 0.02, (n, 2, 17, 3))
    both = PoseSmoother(min_cutoff=1.0, beta=0.5)
    alone_a, alone_b = PoseSmoother(min_cutoff=1.0, beta=0.5), PoseSmoother(min_cutoff=1.0, beta=0.5)
    out_a, out_b = [], []
    for k in range(n):
        out_a.append(both.smooth_frame(["1", "2"], times_a[k], raw_a[k], frame_id="cam_a"))
        out_b.append(both.smooth_frame(["1", "2"], times_b[k], raw_b[k], frame_id="cam_b"))
    expected_a = np.stack([alone_a.smooth_frame(["1", "2"], t, x, frame_id="cam_a") for t, x in zip(times_a, raw_a)])
    expected_b = np.stack([alone_b.smooth_frame(["1", "2"], t, x, frame_id="cam_b") for t, x in zip(times_b, raw_b)])
    np.testing.assert_array_equal(np.stack(out_a), expected_a)
    np.testing.assert_array_equal(np.stack(out_b), expected_b)
    for out, raw in ((np.stack(out_a), raw_a), (np.stack(out_b), raw_b)):
        assert np.abs(out[1:] - raw[1:]).min(axis=(1, 2, 3)).min() > 0        # every frame after the first smoothed
        jitter, raw_jitter = np.std(np.diff(out[10:], axis=0)), np.std(np.diff(raw[10:], axis=0))
        assert jitter < 0.5 * raw_jitter, (jitter, raw_jitter)
    assert both.cameras == ("cam_a", "cam_b") and both.track_ids == ("1", "2", "1", "2") and len(both) == 4


def test_cameras_kept_are_bounded_and_an_unseen_one_ages_out():
    """A driver restarted with another frame_id gets a fresh state; the old camera's goes once it has
    not been seen for forget_after_frames frames, and at most max_cameras are kept (least recently
    seen dropped first)."""
    kp = np.zeros((1, 17, 3))
    smoother = PoseSmoother(forget_after_frames=5, max_cameras=3)
    smoother.smooth_frame(["1"], 1.0, kp, frame_id="old")
    for k in range(5):
        smoother.smooth_frame(["1"], 1.0 + k / FPS, kp, frame_id="restarted")
    assert smoother.cameras == ("old", "restarted")
    smoother.smooth_frame(["1"], 1.0 + 5 / FPS, kp, frame_id="restarted")
    assert smoother.cameras == ("restarted",)
    for k, camera in enumerate(["c1", "c2", "c3", "restarted", "c4"]):
        smoother.smooth_frame(["1"], 2.0 + k / FPS, kp, frame_id=camera)
    assert smoother.cameras == ("c3", "restarted", "c4")
    with pytest.raises(ValueError, match="max_cameras"):
        PoseSmoother(max_cameras=0)
