"""The lift or detect node (first argument: lift, detect) as its installed script runs it, whose
transition callbacks raise RuntimeError at their start on the calls the second argument names
(comma-separated ``<callback>:<n>``: ``on_activate:1,on_cleanup:3`` raises in the first call of
on_activate and the third of on_cleanup, calls from the node's own callbacks counted: both nodes'
on_shutdown calls on_cleanup, their on_error on_shutdown); the ROS arguments follow. No input is
known to make a transition raise, so the tests inject one into a real node process (test helper)."""
import sys

from cfi_pose_ros.node.startup import start_ros_process

start_ros_process()

from cfi_pose_ros.node.base import exit_process, run  # noqa: E402


def raising(node_class, calls: set[tuple[str, int]]):
    """A subclass of ``node_class`` whose callback ``name`` raises at its ``n``-th call for each
    ``(name, n)`` of ``calls``."""
    counts = {}

    def callback_of(name):
        def callback(self, state):
            counts[name] = counts.get(name, 0) + 1
            if (name, counts[name]) in calls:
                raise RuntimeError(f"injected into {name}")
            return getattr(node_class, name)(self, state)
        callback.__name__ = name        # as the node names what raised
        return callback

    # the node's own name and diagnostics: the subclass only raises
    return type(node_class.__name__, (node_class,), {name: callback_of(name) for name, _ in calls})


def main() -> int:
    kind = sys.argv[1]
    calls = {(name, int(n)) for name, n in (call.split(":") for call in sys.argv[2].split(","))}
    if kind == "lift":
        from cfi_pose_ros.node.lift_node import LiftNode as node_class
    else:
        from cfi_pose_ros.node.detect_node import DetectNode as node_class
    return run(raising(node_class, calls), sys.argv[:1] + sys.argv[3:])


if __name__ == "__main__":
    exit_process(main())
