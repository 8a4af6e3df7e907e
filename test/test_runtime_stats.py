"""RollingStats: the rates and latency percentiles /diagnostics reports."""
from __future__ import annotations

from collections import Counter

import pytest

from cfi_pose_ros.runtime_stats import RollingStats, ms_value


def test_rates_over_the_last_window_and_over_the_time_since_start_before_that():
    """A node 1 s old receiving 30 Hz read 6 Hz (30 inputs over the 5 s window it had not lived yet)."""
    young = RollingStats(window=5.0, started=100.0)
    legacy = RollingStats(window=5.0)
    for k in range(30):
        for stats in (young, legacy):
            stats.input(100.0 + k / 30)
            stats.output(100.0 + k / 30 + 0.002, 0.002, 2)
    assert young.summary(101.0)["input_rate_hz"] == pytest.approx(30.0)
    assert young.summary(101.0)["output_rate_hz"] == pytest.approx(30.0)
    assert legacy.summary(101.0)["input_rate_hz"] == pytest.approx(6.0)
    # after a window, the window: the 30 inputs are gone by t = 106.1, and the rate is 0
    assert young.summary(106.1)["input_rate_hz"] == 0.0 and young.summary(106.1)["inputs_total"] == 30


def test_latency_percentiles_people_and_drops():
    stats = RollingStats(window=5.0, started=0.0)
    for k in range(100):
        stats.output(1.0 + k * 0.01, (k + 1) / 1000.0, k % 3)
    stats.drop(Counter(too_few_joints=2))
    stats.drop(Counter(too_few_joints=1, bad_image_size=1))
    summary = stats.summary(2.0)
    assert summary["latency_p50_ms"] == pytest.approx(50.5) and summary["latency_p99_ms"] == pytest.approx(99.01)
    assert summary["people_last"] == 99 % 3 and summary["outputs_total"] == 100
    assert summary["dropped"] == {"too_few_joints": 3, "bad_image_size": 1}
    # what makes the next diagnostics WARN: the drops since this summary, none yet
    assert summary["dropped_since_last"] == {"too_few_joints": 3, "bad_image_size": 1}
    stats.drop(Counter(no_transform=1))
    summary = stats.summary(3.0)
    assert summary["dropped_since_last"] == {"no_transform": 1} and summary["dropped"]["too_few_joints"] == 3
    assert stats.summary(4.0)["dropped_since_last"] == {}


def test_seconds_without_input_count_from_activate_or_the_last_input_and_only_while_listening():
    stats = RollingStats(started=0.0)
    assert stats.summary(10.0)["seconds_without_input"] is None        # configured, not subscribed
    stats.input(11.0)                     # an input before activate (a queued one) is not "since"
    stats.listen(20.0)
    assert stats.summary(23.0)["seconds_without_input"] == pytest.approx(3.0)
    stats.input(25.0)
    assert stats.summary(26.5)["seconds_without_input"] == pytest.approx(1.5)
    stats.listen(None)                    # deactivated
    assert stats.summary(40.0)["seconds_without_input"] is None
    stats.listen(50.0)                    # activated again: counted from then, not from the input at 25 s
    assert stats.summary(51.0)["seconds_without_input"] == pytest.approx(1.0)


def test_a_deactivated_node_reads_no_rates_latency_or_people_of_the_period_before():
    """Not listening (inactive), the window held the active period's inputs and outputs for another
    window: /diagnostics said "inactive" at 10 Hz in and out with the last frame's people and latency
    (after a cleanup and configure, the old engine's latency beside the new backend)."""
    stats = RollingStats(window=5.0, started=0.0)
    stats.listen(0.0)
    for k in range(60):                                  # 2 s at 30 Hz, then a deactivate
        stats.input(1.0 + k / 30)
        stats.output(1.0 + k / 30 + 0.01, 0.01, 2)
    stats.listen(None)
    summary = stats.summary(3.5)
    assert summary["input_rate_hz"] == 0.0 and summary["output_rate_hz"] == 0.0, summary
    assert summary["people_last"] == 0 and summary["latency_p99_ms"] is None, summary
    assert ms_value(summary["latency_p99_ms"]) == ""      # on /diagnostics: empty, not "nan"
    assert summary["inputs_total"] == 60 and summary["outputs_total"] == 60    # the lifetime counts go on


def test_rates_after_an_activate_are_over_the_time_since_it():
    """Counted from the node's construction, 1 s of 30 Hz input after an activate 6 s later (a slow
    configure, or a deactivate and activate) read 6 Hz; inputs from before a deactivate were divided
    by the time since the activate."""
    stats = RollingStats(window=5.0, started=0.0)
    for k in range(60):                                  # 2 s of input before a deactivate
        stats.input(1.0 + k / 30)
    stats.listen(None)
    stats.listen(6.0)
    for k in range(30):
        stats.input(6.0 + k / 30)
        stats.output(6.0 + k / 30 + 0.002, 0.002, 1)
    summary = stats.summary(7.0)
    assert summary["input_rate_hz"] == pytest.approx(30.0) and summary["output_rate_hz"] == pytest.approx(30.0)
    assert summary["inputs_total"] == 90                 # the lifetime count goes on


def test_an_input_flood_reads_at_its_rate():
    """10,000 samples over the 5 s window read every rate above 2000 Hz as 2000 Hz."""
    stats = RollingStats(window=5.0, started=0.0)
    for k in range(60_000):                              # 6 s at 10 kHz
        stats.input(k / 10_000)
    assert stats.summary(6.0)["input_rate_hz"] == pytest.approx(10_000, rel=0.03)
    assert stats.summary(6.0)["inputs_total"] == 60_000


@pytest.mark.parametrize("later", [4.95, 5.0, 5.05, 5.099, 5.101])
def test_inputs_and_outputs_leave_the_window_together(later):
    """Inputs are counted in 0.1 s slices, outputs were trimmed to the instant: 100 frames of a
    burst, each answered, read 19.8 Hz in and 0 out 5.05 s later (dropping, to a monitor)."""
    stats = RollingStats(window=5.0, started=0.0)
    for k in range(100):
        stats.input(10.0 + k * 1e-4)
        stats.output(10.0 + k * 1e-4, 0.005, 1)
    summary = stats.summary(10.0 + later)
    assert summary["input_rate_hz"] == summary["output_rate_hz"], summary


def test_a_stream_answered_frame_for_frame_reads_the_same_rate_in_and_out():
    for phase in (0.0, 0.033, 0.066, 0.099):
        stats = RollingStats(window=5.0, started=1000.0)
        for k in range(600):
            stats.input(1000.0 + k / 30)
            stats.output(1000.0 + k / 30, 0.01, 2)
        summary = stats.summary(1000.0 + 599 / 30 + phase)
        assert summary["input_rate_hz"] == summary["output_rate_hz"] == pytest.approx(30.0, rel=0.03), summary
