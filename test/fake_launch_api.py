"""A minimal stand-in for the parts of `launch` / `launch_ros` that launch/lift.launch.py uses.

`launch` and `launch_ros` are not installable here (no wheels), so the launch file
is run against these fakes: each class takes the documented constructor
arguments of the real one (keyword-only where the real one is, so a misspelt or
misplaced argument fails here as it would under `ros2 launch`) and records them.
:class:`OnStateTransition` matches events exactly as launch_ros documents: every
matching option that is not None must equal the event's, and ``handle_once``
(from launch's ``EventHandler``) unregisters the handler after its first match; its entities
see the event as ``context.locals.event`` (an :class:`OpaqueFunction` among them is run with
that context, as launch runs it).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path


class Recorded:
    """Keeps the arguments it was made with: ``.args`` and ``.kwargs``."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription(Recorded):
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        super().__init__(initial_entities)
        self.entities = list(initial_entities or [])


class Substitution:
    """launch.Substitution: a subclass overrides ``perform(context) -> str`` and ``describe()``."""

    def perform(self, context) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass
class LaunchContext:
    """The part of launch.LaunchContext a substitution reads: ``launch_configurations`` holds every
    declared argument, given on the command line or else its default."""

    launch_configurations: dict


class DeclareLaunchArgument(Recorded):
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        super().__init__(name, default_value=default_value, description=description, choices=choices, **kwargs)


class EmitEvent(Recorded):
    def __init__(self, *, event, **kwargs):
        super().__init__(event=event, **kwargs)
        self.event = event


class OpaqueFunction(Recorded):
    """launch.actions.OpaqueFunction: ``function(context, *args, **kwargs)`` returns the actions to run."""

    def __init__(self, *, function, args=None, kwargs=None, **left_over):
        super().__init__(function=function, args=args, kwargs=kwargs, **left_over)
        self.function, self.function_args, self.function_kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context) -> list:
        return list(self.function(context, *self.function_args, **self.function_kwargs) or [])


class OnProcessExit(Recorded):
    """launch.event_handlers.OnProcessExit: ``on_exit`` runs when ``target_action``'s process exits."""

    def __init__(self, *, target_action=None, on_exit, **kwargs):
        super().__init__(target_action=target_action, on_exit=on_exit, **kwargs)
        self.target_action, self.on_exit = target_action, on_exit


class Shutdown(Recorded):
    """launch.events.Shutdown: ends the launch (every process gets SIGINT)."""

    def __init__(self, *, reason="reason not given", due_to_sigint=False):
        super().__init__(reason=reason, due_to_sigint=due_to_sigint)
        self.reason = reason


class RegisterEventHandler(Recorded):
    def __init__(self, event_handler, **kwargs):
        super().__init__(event_handler, **kwargs)
        self.event_handler = event_handler


class LifecycleNode(Recorded):
    """launch_ros.actions.LifecycleNode: ``name`` and ``namespace`` are required keywords."""

    is_lifecycle_node = property(lambda self: True)

    def __init__(self, *, name, namespace, **kwargs):
        super().__init__(name=name, namespace=namespace, **kwargs)


class Node(Recorded):
    """launch_ros.actions.Node: keyword-only, ``executable`` required; ``arguments`` are the
    command line's, each a string or a substitution."""

    def __init__(self, *, executable, package=None, name=None, namespace=None, arguments=None, **kwargs):
        super().__init__(executable=executable, package=package, name=name, namespace=namespace,
                         arguments=arguments, **kwargs)


class ChangeState(Recorded):
    def __init__(self, *, lifecycle_node_matcher, transition_id):
        super().__init__(lifecycle_node_matcher=lifecycle_node_matcher, transition_id=transition_id)
        self.transition_id = transition_id


@dataclass
class StateTransition:
    """The event launch_ros emits for each lifecycle transition event of a node (state labels)."""

    action: object
    start_state: str
    goal_state: str
    transition: str = ""


class OnStateTransition:
    """launch_ros.event_handlers.OnStateTransition, matching as documented."""

    def __init__(self, *, entities, target_lifecycle_node=None, transition=None, start_state=None,
                 goal_state=None, matcher=None, handle_once=False):
        self.entities = entities if isinstance(entities, list) else [entities]
        self.target_lifecycle_node, self.transition = target_lifecycle_node, transition
        self.start_state, self.goal_state = start_state, goal_state
        self.custom_matcher, self.handle_once = matcher, handle_once
        self.unregistered = False

    def matches(self, event: StateTransition) -> bool:
        if self.custom_matcher is not None:
            return self.custom_matcher(event)
        return ((self.target_lifecycle_node is None or event.action is self.target_lifecycle_node)
                and (self.transition is None or event.transition == self.transition)
                and (self.start_state is None or event.start_state == self.start_state)
                and (self.goal_state is None or event.goal_state == self.goal_state))

    def handle(self, event: StateTransition) -> list:
        """The actions it runs for ``event`` (none when it does not match or is unregistered), each
        :class:`OpaqueFunction` replaced by what it returns, with the event in the context's locals."""
        if self.unregistered or not self.matches(event):
            return []
        self.unregistered = self.handle_once
        context = types.SimpleNamespace(locals=types.SimpleNamespace(event=event))
        return [action for entity in self.entities
                for action in (entity.execute(context) if isinstance(entity, OpaqueFunction) else [entity])]


def _module(name: str, **members) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(members)
    return module


def fake_modules(share_dir: str) -> dict[str, types.ModuleType]:
    class Transition:      # lifecycle_msgs/msg/Transition ids
        TRANSITION_CONFIGURE, TRANSITION_CLEANUP, TRANSITION_ACTIVATE, TRANSITION_DEACTIVATE = 1, 2, 3, 4

    return {
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module(
            "ament_index_python.packages", get_package_share_directory=lambda package: share_dir),
        "launch": _module("launch", LaunchDescription=LaunchDescription, Substitution=Substitution),
        "launch.actions": _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument,
                                  EmitEvent=EmitEvent, OpaqueFunction=OpaqueFunction,
                                  RegisterEventHandler=RegisterEventHandler),
        "launch.conditions": _module("launch.conditions", IfCondition=Recorded),
        "launch.event_handlers": _module("launch.event_handlers", OnProcessExit=OnProcessExit),
        "launch.events": _module("launch.events", Shutdown=Shutdown,
                                 matches_action=lambda action: ("matches_action", action)),
        "launch.substitutions": _module("launch.substitutions", LaunchConfiguration=Recorded,
                                        PythonExpression=Recorded),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", LifecycleNode=LifecycleNode, Node=Node),
        "launch_ros.event_handlers": _module("launch_ros.event_handlers", OnStateTransition=OnStateTransition),
        "launch_ros.events": _module("launch_ros.events"),
        "launch_ros.events.lifecycle": _module("launch_ros.events.lifecycle", ChangeState=ChangeState),
        "lifecycle_msgs": _module("lifecycle_msgs"),
        "lifecycle_msgs.msg": _module("lifecycle_msgs.msg", Transition=Transition),
    }


def run_launch_file(path: Path, monkeypatch, share_dir: str = "/opt/share/cfi_pose_ros") -> LaunchDescription:
    """``generate_launch_description()`` of the launch file at ``path``, built from the fakes."""
    for name, module in fake_modules(share_dir).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("launch_file_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()
