"""Helpers for tests that run the real lifting node as a process and talk to it over DDS."""
from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path

import numpy as np

_counter = itertools.count()


def spin_until(executor, predicate, timeout: float = 30.0) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout`` seconds pass; the predicate's last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.02)
    return predicate()


class NodeUnderTest:
    """The installed lift_node in its own process, with topics of its own, and a client node here."""

    def __init__(self, tmp_path: Path, overrides: dict | None = None, params_file: str | None = None,
                 camera_info_topic: str | None = None, wait: bool = True, namespace: str | None = None,
                 node_name: str | None = None, reliable_input: bool = False):
        """Topics of its own (under a unique prefix); with ``namespace`` the node runs there with
        its default (relative) topic names instead, and the client uses them as resolved there.
        ``node_name`` renames the node (its parameter and lifecycle services with it).
        ``reliable_input`` makes the node's inputs and the client's publishers reliable: a
        message of a megabyte crosses as many fragments, and best effort loses the whole message
        with any one of them (here one took 8.7 s of resends to arrive, in a fresh-clone CI run
        none of the resends in 20 s did; reliable, 0.03 s)."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from cfi_pose_ros.node.parameters import PARAMETERS_BY_NAME
        from cfi_pose_ros.node.process import start_lift_node
        from cfi_pose_ros.node.replay import ReplayClient

        n = next(_counter)
        self.prefix = namespace or f"/t{n}_{int(time.time() * 1000) % 100000}"
        names = ("input_topic", "camera_info_topic", "output_topic", "markers_topic")
        self.topics = ({name: f"{namespace}/{PARAMETERS_BY_NAME[name].default}" for name in names} if namespace else
                       {"input_topic": f"{self.prefix}/keypoints",
                        "camera_info_topic": camera_info_topic or f"{self.prefix}/camera_info",
                        "output_topic": f"{self.prefix}/human_pose_3d",
                        "markers_topic": f"{self.prefix}/markers"})
        self.log_path = tmp_path / f"node{n}.log"
        params = {"autostart": True, "engine_cache_dir": str(tmp_path.parent / "engine_cache"),
                  **({} if namespace else self.topics),
                  **({"input_reliability": "reliable"} if reliable_input else {}), **(overrides or {})}
        self.process = start_lift_node(params_file=params_file, overrides=params, log_path=self.log_path,
                                       namespace=namespace, node_name=node_name)
        if not rclpy.ok():
            rclpy.init()
        self.client = ReplayClient(name=f"test_client_{n}", reliable_input=reliable_input, **self.topics)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.client)
        self.diagnostics = []
        from diagnostic_msgs.msg import DiagnosticArray
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        if (overrides or {}).get("autostart", True) and wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 240.0) -> bool:
        """Until the node logs that it is active (weights loaded, engine built) or exits."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "active: " in self.log():
                self.spin_for(0.5)          # let discovery match our endpoints too
                return True
            if self.process.poll() is not None:
                return False
            self.spin_for(0.1)
        return False

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def spin_until(self, predicate, timeout: float = 30.0) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def send_and_receive(self, msg, timeout: float = 20.0, resend_every: float = 0.5):
        """Publish ``msg`` (re-sent until answered: the input is best effort) and return the answer."""
        from cfi_pose_ros.node.conversions import stamp_ns

        stamp = stamp_ns(msg.header)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"the node exited with {self.process.returncode}:\n{self.log()}")
            self.client.publish(msg)
            if self.spin_until(lambda: stamp in self.client.received.poses, resend_every):
                return self.client.received.poses[stamp]
        return None

    def latest_diagnostics(self, timeout: float = 10.0, status_name: str = "cfi_pose_lifter") -> dict:
        """The lifter's status (named ``status_name...``: another lifter's, in a namespace), from
        diagnostics published after this call (stamped by the node's
        clock; one on sim time, far from the wall clock, counts once it arrives after the call). Not
        merely the next to arrive: under load one still in flight was published before what the
        caller just saw happen (an output whose drop it did not count yet)."""
        since_ns, count = time.time_ns(), len(self.diagnostics)

        def published_since(index: int) -> bool:
            stamp = self.diagnostics[index].header.stamp
            stamp_ns = stamp.sec * 10**9 + stamp.nanosec
            ours = any(status.name.startswith(status_name) for status in self.diagnostics[index].status)
            return ours and (stamp_ns >= since_ns or (index >= count and stamp_ns < since_ns - 3600 * 10**9))

        self.spin_until(lambda: any(map(published_since, range(max(count - 20, 0), len(self.diagnostics)))),
                        timeout)
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.startswith(status_name):
                    return {kv.key: kv.value for kv in status.values} | {"_level": status.level,
                                                                          "_message": status.message,
                                                                          "_hardware_id": status.hardware_id}
        return {}

    def close(self) -> int:
        from cfi_pose_ros.node.process import stop

        self.executor.shutdown()
        self.client.destroy_node()
        return stop(self.process)


def stamp_msg(msg, sec: int, nanosec: int = 0):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def person_pixels_from_truth(truth_camera: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """Pinhole projection of (17, 3) camera-frame joints to pixels."""
    uvw = truth_camera @ np.asarray(camera_matrix).T
    return uvw[:, :2] / uvw[:, 2:3]


def call_service(client, request, spin_until, attempts: int = 1, timeout: float = 60.0):
    """The answer to ``request``, asked up to ``attempts`` times (only for requests that may be
    repeated: right after discovery a reply can be lost while the server has not yet matched our
    reply reader)."""
    for _ in range(attempts):
        future = client.call_async(request)
        if spin_until(future.done, timeout / attempts):
            return future.result()
        client.remove_pending_request(future)
    raise AssertionError(f"no answer from {client.srv_name} in {timeout} s")


class ParameterClient:
    """Sets a node's parameters through its ``set_parameters`` service: what ``ros2 param set`` calls."""

    def __init__(self, ros_node, node_name: str, spin_until):
        from rcl_interfaces.srv import SetParameters

        self._spin_until = spin_until
        self._set = ros_node.create_client(SetParameters, f"/{node_name}/set_parameters")
        assert self._set.wait_for_service(timeout_sec=30), f"{node_name} offers no parameter services"

    def set(self, **values) -> list:
        """One SetParametersResult (``successful``, ``reason``) per value, in order."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()
                                                    for name, value in values.items()])
        return call_service(self._set, request, self._spin_until, attempts=3, timeout=30.0).results

    def set_typed(self, **texts) -> list:
        """As ``set``, each value typed from its text as `ros2 param set <node> <name> <text>` types
        it (YAML: ``1`` is an integer, ``[]`` an empty array of booleans)."""
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import get_parameter_value

        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=get_parameter_value(text))
                                                    for name, text in texts.items()])
        return call_service(self._set, request, self._spin_until, attempts=3, timeout=30.0).results

    def set_ok(self, **values) -> None:
        for name, result in zip(values, self.set(**values)):
            assert result.successful, f"set {name}={values[name]!r} refused: {result.reason}"


class LifecycleClient:
    """get_state / change_state of a lifecycle node through its services."""

    def __init__(self, ros_node, node_name: str, spin_until):
        from lifecycle_msgs.srv import ChangeState, GetState

        self._spin_until = spin_until
        self._ros_node, self._node_name = ros_node, node_name
        self._get = ros_node.create_client(GetState, f"/{node_name}/get_state")
        self._change = ros_node.create_client(ChangeState, f"/{node_name}/change_state")
        assert self._get.wait_for_service(timeout_sec=30), f"{node_name} offers no lifecycle services"

    def _call(self, client, request, attempts: int = 1, timeout: float = 60.0):
        return call_service(client, request, self._spin_until, attempts, timeout)

    def state(self) -> int:
        """Re-asked until answered (see call_service); asking for the state twice is harmless.

        Unanswered, it is asked once more through a client created afresh, which tells a node that
        answers nothing from a client whose reply path DDS never matched (seen once in CI: an idle,
        spinning node answered none of 12 requests in 60 s); the latter passes with a warning, so
        that the test output still shows it."""
        from lifecycle_msgs.srv import GetState

        try:
            return self._call(self._get, GetState.Request(), attempts=12).current_state.id
        except AssertionError as lost:
            fresh = self._ros_node.create_client(GetState, f"/{self._node_name}/get_state")
            if not fresh.wait_for_service(timeout_sec=10):
                raise AssertionError(f"{lost}, and its service is gone") from None
            try:
                answer = self._call(fresh, GetState.Request(), attempts=4, timeout=20.0)
            except AssertionError:
                raise AssertionError(f"{lost}, nor to a client created afresh: the node answers nothing") from None
            warnings.warn(f"{lost} through the first client, answered through a client created afresh: "
                          "that client's reply path was lost, not the node", stacklevel=2)
            self._get = fresh
            return answer.current_state.id

    def transition(self, transition_id: int) -> bool:
        return self._call(self._change, self._change_request(transition_id)).success

    def request_transition(self, transition_id: int):
        """Ask for a transition without waiting for the answer: the future of it."""
        return self._change.call_async(self._change_request(transition_id))

    @staticmethod
    def _change_request(transition_id: int):
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        return ChangeState.Request(transition=Transition(id=transition_id))
