"""ROS 2 parameters files read as rcl reads them for a node, without ROS: the offline tool
applies a node's parameters file as the node would, and the launch file reads the lifter's
input topic from one. Only PyYAML; nothing of the package's numeric stack.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator

# Parameters rclpy declares on every node itself (``qos_overrides.<topic>...`` a whole family): a
# parameters file may set them (use_sim_time for a bag played with --clock), they are not the node's
# to check, and offline they mean nothing.
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")


def read_params_file(path: str | Path | None, node_name: str) -> dict:
    """The parameters a ROS 2 parameters file gives the node ``node_name`` (``name`` in the root
    namespace, ``namespace/name`` in another), as rclpy reads them: every section whose node name
    matches (``/**``, ``/*``, ``name``, ``/**/name``, namespaces nested as mappings), in the file's
    order, a later one overriding an earlier; nested parameter mappings as dotted names; values
    typed as rcl types them (``1e-3`` and ``-.5`` doubles, ``y`` a bool); rclpy's own parameters
    left out. A file that is no parameters file (which rcl refuses) is a ``ValueError``."""
    values = {}
    for section, parameters in _parameter_sections(_load(path), path):
        if _node_name_matches(section, node_name):
            values.update(parameters)
    return {name: value for name, value in values.items() if name.split(".")[0] not in RCLPY_PARAMETERS}


def section_names(path: str | Path | None) -> set[str]:
    """The node names of a parameters file's ``ros__parameters`` sections, ``/``-led (``/**``,
    ``/robot1/cfi_pose_lifter``; namespaces nested as mappings joined), matching a node or not."""
    return {section for section, _ in _parameter_sections(_load(path), path)}


def read_value(text: str):
    """``text`` typed as rcl types an unquoted parameter value (``-p name:=text``): a bool, int,
    double or string; ``012`` is octal 10 and ``1_0`` a string, as there (Python's ``float()`` took
    ``1_0`` for 10.0). Text YAML cannot read as one scalar (``[1``, ``a: b``) is a ``ValueError``."""
    import yaml

    try:
        value = yaml.load(text, Loader=_params_file_loader())
    except yaml.YAMLError as exc:
        raise ValueError(f"{text!r}: not a value rcl can parse ({' '.join(str(exc).split())})") from exc
    return value


def _load(path: str | Path | None) -> dict:
    """A parameters file's mapping as rcl reads it ({} for no path or an empty file)."""
    if not path:
        return {}
    import yaml

    from cfi_pose_ros.files import open_regular_file, unreadable

    try:
        # Streamed, as rcl reads it: a binary file stops at its first character YAML refuses,
        # instead of being read whole into memory first. A regular file only: a FIFO hung offline
        # in open(), waiting for a writer, and one SIGTERM did not end it; /dev/zero never ended.
        with open_regular_file(path, "not a parameters file") as stream:
            data = yaml.load(stream, Loader=_params_file_loader())
    except OSError as exc:
        raise ValueError(unreadable(path, exc)) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"{path}: not a parameters file rcl can parse ({' '.join(str(exc).split())})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS 2 parameters file (a mapping of node names to ros__parameters), "
                         f"but a {type(data).__name__}")
    return data


# How rcl (rcl_yaml_param_parser) types an unquoted value: one of its bool words, else an int when
# strtoll (base 0: 0x1F, 012 octal) reads all of it, else a double when strtod does (-.5, 1e-3, inf,
# nan, 0x1p3, 08) or YAML's .inf/.nan, else a string. YAML 1.1 (PyYAML) read -.5, 1e-3, inf and y as
# strings, ~ as None, 1_000 and 0b101 as ints.
_RCL_TRUE = ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y")
_RCL_FALSE = ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N")
_RCL_INT = r"[-+]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
_RCL_DOUBLE = (r"[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"
               r"|0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][-+]?[0-9]+)?"
               r"|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN]|\.(inf|Inf|INF|nan|NaN|NAN))")


def _params_file_loader():
    """PyYAML's safe loader with rcl's types for values (see _RCL_INT) and every key a string (a
    parameter named y or on is no bool); an empty value is None, which rcl refuses."""
    import yaml

    class Loader(yaml.SafeLoader):
        yaml_implicit_resolvers: dict = {}

        def compose_node(self, parent, index):
            # rcl refuses every alias ("Will not support aliasing"); read, a few lines of nested
            # aliases expand to billions of parameters (hours and all the memory there is)
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, "an alias (*name): rcl does not support aliasing",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            # A name given twice in one mapping is one, as rcl reads it: the sections merged where the
            # name first stood, the later values winning. A dict kept only the last: a /** section
            # appended to a copy of config/lift.yaml (use_sim_time) dropped every parameter above it.
            self.flatten_mapping(node)
            mapping = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    # rcl refuses the file ("Sequences cannot be key"); read here, `? [a, b]` ended
                    # offline in a TypeError traceback (unhashable type: 'list')
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a {'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'} as a "
                        "key: rcl's keys are node, namespace and parameter names", key_node.start_mark)
                key = key_node.value
                _set_merged(mapping, key, self.construct_object(value_node, deep=True))   # whole, to be merged
            return mapping

    def double(loader, node):
        written = loader.construct_scalar(node)
        text = re.sub(r"^([-+]?)\.(?=[a-zA-Z])", r"\1", written)     # .inf: inf
        value = float.fromhex(text) if re.match(r"[-+]?0[xX]", text) else float(text)
        # strtod overflows (ERANGE) on 1e400: rcl reads it as a string, not infinity
        return written if math.isinf(value) and "inf" not in text.lower() else value

    def integer(loader, node):
        value = yaml.SafeLoader.construct_yaml_int(loader, node)
        # strtoll overflows beyond int64, and rcl reads such a number as strtod does: a double
        return value if -2**63 <= value < 2**63 else float(loader.construct_scalar(node))

    resolvers = (("bool", "|".join(_RCL_TRUE + _RCL_FALSE)), ("int", _RCL_INT), ("float", _RCL_DOUBLE), ("null", ""))
    for tag, pattern in resolvers:
        Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(f"^({pattern})$"), None)
    Loader.add_constructor("tag:yaml.org,2002:bool", lambda loader, node: loader.construct_scalar(node) in _RCL_TRUE)
    Loader.add_constructor("tag:yaml.org,2002:float", double)
    Loader.add_constructor("tag:yaml.org,2002:int", integer)
    return Loader


_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _set_merged(mapping: dict, key, value) -> None:
    """``mapping[key] = value``, where a mapping already there and a mapping given are merged the
    same way, key by key (the later values win, the earlier keys keep their places)."""
    earlier = mapping.get(key)
    if isinstance(earlier, dict) and isinstance(value, dict):
        merged = dict(earlier)
        for inner_key, inner_value in value.items():
            _set_merged(merged, inner_key, inner_value)
        value = merged
    mapping[key] = value


def _parameter_sections(mapping: dict, path, namespace: str = "") -> Iterator[tuple[str, dict]]:
    """``(node name, {parameter: value})`` of each ``ros__parameters`` in a parameters file, in order."""
    for key, value in mapping.items():
        tokens = str(key).removeprefix("/").split("/")
        if not all(token in ("*", "**") or _NAME_TOKEN.fullmatch(token) for token in tokens):
            # rcl refuses the file ("node name must not contain ...", "contains repeated forward
            # slash"); read here, `/robot1/cfi_pose_lifter/` was even applied
            raise ValueError(f"{path}: {key!r} is no node name or namespace (tokens of letters, digits and _, "
                             f"not starting with a digit, or * and **, between single slashes)")
        name = namespace.rstrip("/") + "/" + "/".join(tokens)
        if not isinstance(value, dict):
            raise ValueError(f"{path}: {name} holds {value!r:.40}, not ros__parameters (or nodes under a namespace)")
        if "ros__parameters" in value:
            parameters = value["ros__parameters"]
            if not isinstance(parameters, dict):
                raise ValueError(f"{path}: the ros__parameters of {name} are {parameters!r:.40}, not name: value pairs")
            yield name, _dotted(parameters, path)
        # a namespace may hold its own ros__parameters beside the nodes under it (rcl reads both)
        yield from _parameter_sections({k: v for k, v in value.items() if k != "ros__parameters"}, path, name)


def _dotted(parameters: dict, path, prefix: str = "") -> dict:
    """Nested parameter mappings as rcl names them: ``{a: {b: 1}}`` is ``a.b``."""
    flat = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, path, f"{prefix}{key}."))
        elif value is None:
            raise ValueError(f"{path}: parameter {prefix}{key} has no value")
        elif value == []:
            continue            # rcl gives an empty array no value: the parameter keeps its default
        elif isinstance(value, list) and any(isinstance(item, (list, dict)) for item in value):
            # No ROS parameter type: rcl refuses `v: [[1], [2]]` ("Sequences cannot be key") and
            # misreads others (`v: [{a: 1}]` as a parameter v.a: [1], `v: [[1]]` as v: [1]); read
            # here, `weights: [{a: 1}]` ended offline in an IndexError traceback
            raise ValueError(f"{path}: parameter {prefix}{key} is an array of "
                             f"{'arrays' if any(isinstance(item, list) for item in value) else 'mappings'}: a ROS "
                             "parameter array holds booleans, integers, doubles or strings (rcl refuses such a "
                             "file or misreads it)")
        elif isinstance(value, list) and len({type(item) for item in value}) > 1:
            raise ValueError(f"{path}: parameter {prefix}{key} is an array of mixed types "
                             f"({', '.join(sorted({type(item).__name__ for item in value}))}), which rcl refuses")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _node_name_matches(pattern: str, node_name: str) -> bool:
    """Whether a parameters file's node name applies to ``/node_name``: ``*`` is one name token,
    ``**`` any number of them (rcl's wildcards)."""
    regex = "".join("(/[^/]+)*" if token == "**" else "/[^/]+" if token == "*" else "/" + re.escape(token)
                    for token in pattern.strip("/").split("/"))
    return re.fullmatch(regex, "/" + node_name) is not None
