"""Shared test set-up.

Every process a test starts talks DDS only over this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and in a domain of its own, so
parallel runs and other projects never see each other's traffic.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CFI_SHARED_DIR", REPO.parent / "shared"))

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain derived from the pid unless the runner chose one (0-101 are valid; 0 is the default domain).
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))


def ros_available() -> str | None:
    """None when rclpy and our generated messages import, else the reason they don't."""
    try:
        import rclpy  # noqa: F401
        from cfi_pose_ros.msg import HumanPose3DArray  # noqa: F401
    except Exception as exc:  # ImportError, or a broken ROS environment
        return (f"ROS 2 not usable here ({type(exc).__name__}: {exc}); "
                "run `bash scripts/setup.sh && source scripts/env.sh` first")
    return None


def pytest_sessionstart(session):
    """CI and scripts/test.sh set CFI_REQUIRE_ROS=1: there a ROS that does not import fails the run
    at once. The test modules' own skip markers (``skipif(ros_available() ...)``) would otherwise
    report every node test as skipped, before the ``ros_env`` fixture's check could fail them."""
    reason = ros_available()
    if reason and os.environ.get("CFI_REQUIRE_ROS") == "1":
        pytest.exit(f"CFI_REQUIRE_ROS=1: {reason}", returncode=1)


# For a test's child process: its own peak resident memory in bytes. /proc's VmHWM, not getrusage's
# ru_maxrss: Linux carries a parent's peak across fork and exec into the child's ru_maxrss, so under
# a pytest that has imported torch that read ~300 MB whatever the child did.
PEAK_RSS_SOURCE = (
    "def peak_rss():\n"
    "    with open('/proc/self/status') as status:\n"
    "        line = next(line for line in status if line.startswith('VmHWM:'))\n"
    "    return int(line.split()[1]) * 1024\n")


@pytest.fixture
def ros_env() -> dict:
    """Environment for a child process that uses rclpy and the built package."""
    reason = ros_available()
    if reason:
        # CI and scripts/test.sh set CFI_REQUIRE_ROS=1: there a missing ROS is a failure.
        if os.environ.get("CFI_REQUIRE_ROS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def lifter():
    """The shipped weights on the torch backend."""
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS
    return create_lifter(str(DEFAULT_WEIGHTS), backend="torch", log=lambda *_: None)


@pytest.fixture(scope="session")
def h36m_lifter():
    """The bundled weights trained on Human3.6M's cameras only (``cfi_h36m``, the default before
    ``cfi_h36m_wide``) on the torch backend: the people the node zooms, turns and re-lifts for
    such weights are far more often wrong, so the tests of those corrections measure them."""
    from cfi_pose_ros.inference import create_lifter
    from cfi_pose_ros.weights import resolve_weights
    return create_lifter(resolve_weights("cfi_h36m"), backend="torch", log=lambda *_: None)


@pytest.fixture(scope="session")
def clip() -> dict:
    """The demo clip (two S9 people seen by an H36M camera, keypoints and truth) as arrays."""
    import numpy as np
    from cfi_pose_ros.weights import DEFAULT_WEIGHTS
    with np.load(DEFAULT_WEIGHTS.parents[1] / "data" / "demo_clip_h36m_s9.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@contextlib.contextmanager
def no_longer_than(seconds: int, what: str):
    """Fail (``TimeoutError``) where the body still runs after ``seconds``: a call that waits on a FIFO
    for a writer blocks in ``open()``, and SIGALRM's exception ends the wait instead of the suite's."""
    def expire(signum, frame):
        raise TimeoutError(f"{what}: still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def file_size_limit():
    """``limit(n)``: a context in which this process's writes past ``n`` bytes of a file fail with
    EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored), as a full disk fails them; root's permissions do not stop it."""
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limit(size: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)
    return limit
