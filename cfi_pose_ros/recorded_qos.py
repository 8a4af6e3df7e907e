"""The QoS a bag's recorded publishers offered, and the one a playback offers from it, as
``ros2 bag play`` chooses it (rosbag2's ``Rosbag2QoS::adapt_offer_to_recorded_offers``).

rosbag2 writes each channel's ``offered_qos_profiles`` metadata: a YAML list of the profiles the
topic's publishers offered while it recorded, policies as numbers (bag format up to 8: rmw's enum
values) or as names (from 9: ``reliable``, ``transient_local``...), durations as ``{sec, nsec}``.
If every profile is the same in what decides delivery and matching (reliability, durability,
deadline, liveliness and its lease; history and lifespan are the publisher's own), the playback
offers that one with a history of keep last 10; otherwise, and for a bag that names none,
rosbag2's default (reliable, volatile, keep last 10) with a warning for the mixed case. So a
camera's best-effort stream plays best effort, and a latched (transient local) topic reaches a
subscriber that joins after it was played. Pure: no ROS."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import yaml

# rmw's enum values (bag format <= 8) and names (>= 9), as rmw/types.h and rmw/qos_string_conversions.c
RELIABILITY = {0: "system_default", 1: "reliable", 2: "best_effort", 4: "best_available"}
DURABILITY = {0: "system_default", 1: "transient_local", 2: "volatile", 4: "best_available"}
LIVELINESS = {0: "system_default", 1: "automatic", 3: "manual_by_topic", 5: "best_available"}
# What RMW implementations wrote for "infinite" before RMW_DURATION_INFINITE existed (Foxy's bags:
# Cyclone DDS, Fast DDS, Connext), and RMW_DURATION_INFINITE itself, as (sec, nsec).
INFINITE_DURATIONS = {(0, 0x7FFFFFFFFFFFFFFF), (0x7FFFFFFF, 0xFFFFFFFF), (0x7FFFFFFF, 0x7FFFFFFF),
                      (9223372036, 854775807)}
INFINITE = -1      # a duration that is infinite; 0 is unspecified (the RMW's default), as in rmw_time_t


@dataclass(frozen=True)
class RecordedOffer:
    """What one recorded publisher offered, in the policies that decide delivery and matching."""
    reliability: str
    durability: str
    deadline_ns: int = 0
    liveliness: str = "system_default"
    liveliness_lease_ns: int = 0


class UnreadableOffer(ValueError):
    """An ``offered_qos_profiles`` text that is not a list of QoS profiles rosbag2 writes."""


def _policy(profile: dict, key: str, names: dict[int, str]) -> str:
    value = profile.get(key, 0)
    if isinstance(value, bool):
        raise UnreadableOffer(f"{key}: {value!r} is not a policy")
    if isinstance(value, int):
        if value not in names:
            raise UnreadableOffer(f"{key}: {value} is no {key} policy")
        return names[value]
    if isinstance(value, str) and value in names.values():
        return value
    raise UnreadableOffer(f"{key}: {value!r} is not one of {', '.join(sorted(names.values()))}")


def _duration_ns(profile: dict, key: str) -> int:
    value = profile.get(key, {"sec": 0, "nsec": 0})
    if not isinstance(value, dict) or not all(isinstance(value.get(part), int) and not isinstance(value.get(part), bool)
                                              and value.get(part) >= 0 for part in ("sec", "nsec")):
        raise UnreadableOffer(f"{key}: {value!r} is not a duration of non-negative sec and nsec")
    sec, nsec = value["sec"], value["nsec"]
    if (sec, nsec) in INFINITE_DURATIONS:
        return INFINITE
    total = sec * 10**9 + nsec
    return total if total < 2**63 else INFINITE      # past int64 nanoseconds: no finite duration rmw holds


def parse_offers(text: str) -> list[RecordedOffer]:
    """The profiles of one channel's ``offered_qos_profiles`` (an empty text: none)."""
    if not text.strip():
        return []
    try:
        profiles = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise UnreadableOffer(f"not YAML ({type(exc).__name__})") from None
    if profiles is None:
        return []
    if not isinstance(profiles, list) or not all(isinstance(p, dict) for p in profiles):
        raise UnreadableOffer("not a list of QoS profiles")
    return [RecordedOffer(_policy(p, "reliability", RELIABILITY), _policy(p, "durability", DURABILITY),
                          _duration_ns(p, "deadline"), _policy(p, "liveliness", LIVELINESS),
                          _duration_ns(p, "liveliness_lease_duration")) for p in profiles]


def playback_offer(topic: str, texts: Iterable[str]) -> tuple[RecordedOffer | None, str | None]:
    """The offer to play ``topic`` with from its channels' ``offered_qos_profiles`` texts, and a
    warning to show; ``None`` for the offer means rosbag2's default (reliable, volatile)."""
    offers: list[RecordedOffer] = []
    for text in texts:
        try:
            offers += parse_offers(text)
        except UnreadableOffer as exc:
            return None, (f"{topic}: the bag's recorded QoS cannot be read ({exc}); playing it reliable, volatile "
                          "(rosbag2's default)")
    if not offers:
        return None, None
    kinds = len(set(offers))
    if kinds > 1:
        return None, (f"{topic}: its recorded publishers offered different QoS ({kinds} kinds); playing it "
                      "reliable, volatile (rosbag2's default), as ros2 bag play does")
    return offers[0], None
