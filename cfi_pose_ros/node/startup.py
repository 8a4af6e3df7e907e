"""What a node's entry script does before its first heavy import (rclpy, numpy, torch: about 0.2 s)."""
import faulthandler
import os
import signal
from pathlib import Path

from ..interrupts import exit_quietly_on_stop_signals


# `kill -USR1 <pid>`: every thread's stack to the log, the process goes on (where is it stuck?)
STACKS_SIGNAL = signal.SIGUSR1


# Where every thread's stack is written on a crash, a hang or STACKS_SIGNAL: stderr, or once
# tell_where_a_crash_happened has run, a copy of it (see there).
_crash_report_fd = 2


def crash_report_fd() -> int:
    """The file descriptor faulthandler and the nodes' deadlines write every thread's stack to."""
    return _crash_report_fd


def tell_where_a_crash_happened() -> None:
    """A crash in native code (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL: a codec, the middleware, an
    inference library) writes every Python thread's stack to stderr, the node's log, before the
    process dies: without it a node ended with exit -11 and not a word, and the log's last lines
    could be lost in the C library's buffer. :data:`STACKS_SIGNAL` writes them without a crash.

    They go to a copy of stderr's descriptor, not to descriptor 2 itself: while a codec decodes,
    ``image.decode_refusing_damage`` points 2 at a temporary file to read what the codec prints, and
    a crash in the codec, where one is likeliest, left the stack in that file, gone with the process
    (exit -11 and not a word again)."""
    global _crash_report_fd
    if _crash_report_fd == 2:
        _crash_report_fd = os.dup(2)
    faulthandler.enable(file=_crash_report_fd, all_threads=True)
    faulthandler.register(STACKS_SIGNAL, file=_crash_report_fd, all_threads=True)


# the Fast DDS participant profile the package's processes start with (see without_type_lookup)
FASTDDS_PROFILE = Path(__file__).with_name("fastdds_profile.xml")
# where Fast DDS 3 (FASTDDS_) and 2 (FASTRTPS_) read a user's own profile file from
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp")     # "": ROS 2 Kilted's default, rmw_fastrtps_cpp
# rmw_fastrtps's variables that decide whether it sets history memory and publication mode itself
RMW_QOS_VARIABLES = ("RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_FASTRTPS_PUBLICATION_MODE")


def without_type_lookup(environ=os.environ) -> bool:
    """Start this process's DDS participants without Fast DDS's type lookup, unless the user names
    a profile file of their own or another middleware: True where it set ``FASTDDS_DEFAULT_PROFILES_FILE``.

    Fast DDS 3.2's type-lookup thread answers the requests of participants it discovers while its
    own participant is torn down (or not yet built): a SIGSEGV on a null mutex in
    ``WriterHistory::create_change``, under ``TypeLookupManager::send`` (core dump, a helper
    session's stress runs: about 1 in 300 starts where ten nodes start and stop at once beside
    others), with the main thread in ``rmw_destroy_node`` joining that thread. ROS 2 needs no type
    lookup: every process has the support code of the types it uses. Must run before rclpy
    creates a participant (Fast DDS reads the variable then)."""
    if any(environ.get(name) for name in PROFILE_VARIABLES):
        return False
    if environ.get("RMW_IMPLEMENTATION", "") not in FASTDDS_RMWS:
        return False
    environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return True


def reader_memory_from_profile(environ=os.environ) -> bool:
    """Let rmw_fastrtps take history memory and publication mode from the package's profile
    (``RMW_FASTRTPS_USE_QOS_FROM_XML=1``) where that profile is the one Fast DDS reads and the user
    asks rmw_fastrtps for neither itself: True where it set the variable.

    The profile is what rmw_fastrtps sets but for its readers' history memory, DYNAMIC instead of
    PREALLOCATED_WITH_REALLOC, which keeps every payload a reader ever held at the largest sample it
    held: a detector with a reliable image subscription grew without a bound under raw images of
    many sizes (196 -> 727 MiB in 40 s at 200 Hz; one size levels off). rmw_fastrtps overrides a
    profile's history memory policy unless this variable is set. Must run after
    :func:`without_type_lookup` and before rclpy creates a participant."""
    if environ.get("FASTDDS_DEFAULT_PROFILES_FILE") != str(FASTDDS_PROFILE):
        return False
    if any(name in environ for name in RMW_QOS_VARIABLES):
        return False
    environ["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "1"
    return True


def start_ros_process(tool: str | None = None) -> None:
    """The first lines of every entry point that takes part in ROS (both nodes, ``play_bag``, the
    demo; ``tool`` as for :func:`exit_quietly_on_stop_signals`): a native crash says where, Fast DDS
    starts without type lookup and with readers that free what they held, and a stop signal before
    the heavy imports ends the process cleanly."""
    tell_where_a_crash_happened()
    without_type_lookup()
    reader_memory_from_profile()
    exit_quietly_on_stop_signals(tool)
