"""A ROS domain of this machine's own for one run of a tool (the demo, the benchmarks that start
nodes): its DDS traffic stays on this machine and never mixes with another run's. ROS-free."""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Callable, Iterator

# the RTPS port base of domain d is 7400 + 250 d (the DDS interoperability wire protocol's defaults)
_PORT_BASE, _DOMAIN_GAIN = 7400, 250


class DomainTaken(RuntimeError):
    """The ROS domain asked for is another run's, or every candidate is in use."""


def claim_domain(chosen: str | None, candidates: list[int]) -> tuple[int | None, socket.socket | None]:
    """The ROS domain a run uses and its claim on it (held for the run: a second run cannot claim
    it, so two never exchange messages). ``chosen``: the caller's ROS_DOMAIN_ID, kept, but refused
    (``DomainTaken``) while another run holds it; none (or empty): the first of ``candidates`` that
    no run holds and no DDS participant on this machine listens in. Two demos in one domain each
    lifted the other's frames and counted its answers (60 frames sent, 92 received, latency p50
    -131 ms); two benchmarks timed each other's nodes."""
    def claim(domain: int) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", _PORT_BASE + _DOMAIN_GAIN * domain))   # TCP: DDS uses UDP
        except OSError:
            sock.close()
            return None
        return sock

    def participant_in(domain: int) -> bool:
        for participant in range(8):          # where the discovery of its first participants listens
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("", _PORT_BASE + _DOMAIN_GAIN * domain + 10 + 2 * participant))
                except OSError:
                    return True
        return False

    if chosen and chosen.strip():
        if not chosen.strip().isdigit() or int(chosen) > 232:
            return None, None                                  # rcl says what is wrong with it
        held = claim(int(chosen))
        if held is None:
            raise DomainTaken(f"another demo or benchmark is running in ROS_DOMAIN_ID {int(chosen)}: the two would "
                              "take each other's messages (unset ROS_DOMAIN_ID to run in a free domain)")
        return int(chosen), held
    for domain in candidates:
        held = claim(domain)
        if held is not None and not participant_in(domain):
            return domain, held
        if held is not None:
            held.close()
    raise DomainTaken(f"no free ROS domain on this machine in {min(candidates)}..{max(candidates)} (set ROS_DOMAIN_ID)")


@contextlib.contextmanager
def own_ros_domain() -> Iterator[int | None]:
    """For the ``with`` block: DDS discovery on this machine only (whatever the shell says: a robot's
    .bashrc often exports SUBNET) and ROS_DOMAIN_ID a domain this run holds (see claim_domain; None
    where ROS_DOMAIN_ID is no domain number: rcl says what is wrong with it). ``DomainTaken`` on entry."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain, held = claim_domain(os.environ.get("ROS_DOMAIN_ID"), [10 + (os.getpid() + k) % 90 for k in range(90)])
    if domain is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
    try:
        yield domain
    finally:
        if held is not None:
            held.close()


def run_in_own_domain(tool: str, run: Callable[[], int]) -> int:
    """``run()``'s exit status, run in a ROS domain of its own (see own_ros_domain); 1 with one line
    on stderr where ROS_DOMAIN_ID names a domain another run holds. The benchmarks took
    ``10 + pid % 90`` (or the shell's ROS_DOMAIN_ID) whoever else ran there."""
    try:
        with own_ros_domain():
            return run()
    except DomainTaken as exc:
        print(f"{tool}: error: {exc}", file=sys.stderr)
        return 1
