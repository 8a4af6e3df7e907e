"""The QoS a playback offers from a bag's recorded ``offered_qos_profiles`` (recorded_qos), as
rosbag2 writes them in both of its formats; over DDS in test_bag.py."""
from __future__ import annotations

import pytest

from cfi_pose_ros.recorded_qos import INFINITE, RecordedOffer, UnreadableOffer, parse_offers, playback_offer

# As rosbag2 writes them: bag format 9 on (Jazzy, Kilted) names its policies, format 8 and older numbers them.
NAMED = """- history: keep_last
  depth: 5
  reliability: best_effort
  durability: volatile
  deadline:
    sec: 9223372036
    nsec: 854775807
  lifespan:
    sec: 9223372036
    nsec: 854775807
  liveliness: automatic
  liveliness_lease_duration:
    sec: 9223372036
    nsec: 854775807
  avoid_ros_namespace_conventions: false
"""
NUMBERED_LATCHED = """- history: 1
  depth: 1
  reliability: 1
  durability: 1
  deadline:
    sec: 2147483647
    nsec: 4294967295
  lifespan:
    sec: 2147483647
    nsec: 4294967295
  liveliness: 1
  liveliness_lease_duration:
    sec: 0
    nsec: 250000000
  avoid_ros_namespace_conventions: false
"""


def test_both_formats_are_read_with_their_infinite_durations():
    assert parse_offers(NAMED) == [RecordedOffer("best_effort", "volatile", INFINITE, "automatic", INFINITE)]
    # a Foxy Fast DDS bag's "infinite" deadline, and a finite lease
    assert parse_offers(NUMBERED_LATCHED) == [RecordedOffer("reliable", "transient_local", INFINITE, "automatic",
                                                            250_000_000)]


def test_publishers_that_offered_alike_give_their_offer_whatever_their_history():
    other_history = NAMED.replace("depth: 5", "depth: 100").replace("keep_last", "keep_all")
    offer, warning = playback_offer("/camera/image", [NAMED, other_history])
    assert offer == RecordedOffer("best_effort", "volatile", INFINITE, "automatic", INFINITE) and warning is None


def test_mixed_offers_and_no_offers_give_the_default():
    offer, warning = playback_offer("/camera/image", [NAMED + NUMBERED_LATCHED.replace("- history", "- history", 1)])
    assert offer is None and "/camera/image" in warning and "different QoS (2 kinds)" in warning
    assert playback_offer("/keypoints", []) == (None, None)
    assert playback_offer("/keypoints", [""]) == (None, None)       # rosbag2 writes "" for a topic it saw no offer on


@pytest.mark.parametrize("text, reason", [
    ("{a: [", "not YAML"),
    ("reliability: 1", "not a list of QoS profiles"),
    ("- reliability: 7", "reliability: 7 is no reliability policy"),
    ("- reliability: sometimes", "reliability: 'sometimes' is not one of"),
    ("- reliability: true", "reliability: True is not a policy"),
    ("- deadline: {sec: -1, nsec: 0}", "deadline:"),
    ("- deadline: 5", "deadline: 5 is not a duration"),
    ("[" * 2000 + "]" * 2000, ""),
])
def test_an_unreadable_offer_is_said_and_played_with_the_default(text, reason):
    with pytest.raises(UnreadableOffer, match=None) as error:
        parse_offers(text)
    assert reason in str(error.value)
    offer, warning = playback_offer("/keypoints", [text])
    assert offer is None and warning.startswith("/keypoints: the bag's recorded QoS cannot be read")
