"""ROS 2 parameters files read as rcl reads them for a node, without ROS: the offline tool
applies a node's parameters file as the node would, and the launch file reads the lifter's
input topic from one. Only PyYAML; nothing of the package's numeric stack.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

# Parameters rclpy declares on every node itself (``qos_overrides.<topic>...`` a whole family): a
# parameters file may set them (use_sim_time for a bag played with --clock), they are not the node's
# to check, and offline they mean nothing.
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")


def read_params_file(path: str | Path | None, node_name: str) -> dict:
    """The parameters a ROS 2 parameters file gives the node ``node_name`` (``name`` in the root
    namespace, ``namespace/name`` in another), as rclpy reads them: every section whose node name matches (``/**``, ``/*``, ``name``,
    ``/**/name``, namespaces nested as mappings), in the file's order, a later one overriding an
    earlier; nested parameter mappings as dotted names; ``1e-3`` a float; rclpy's own parameters
    left out. A file that is no parameters file (which rcl refuses) is a ``ValueError``."""
    if not path:
        return {}
    import yaml

    data = yaml.load(Path(path).read_text(), Loader=_params_file_loader())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS 2 parameters file (a mapping of node names to ros__parameters), "
                         f"but a {type(data).__name__}")
    values = {}
    for section, parameters in _parameter_sections(data, path):
        if _node_name_matches(section, node_name):
            values.update(parameters)
    return {name: value for name, value in values.items() if name.split(".")[0] not in RCLPY_PARAMETERS}


def _params_file_loader():
    """PyYAML's safe loader, with rcl's floats: YAML 1.1 reads ``1e-3`` (no dot) as a string, rcl as a double."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
    return Loader


def _parameter_sections(mapping: dict, path, namespace: str = "") -> Iterator[tuple[str, dict]]:
    """``(node name, {parameter: value})`` of each ``ros__parameters`` in a parameters file, in order."""
    for key, value in mapping.items():
        name = namespace.rstrip("/") + "/" + str(key).strip("/")
        if not isinstance(value, dict):
            raise ValueError(f"{path}: {name} holds {value!r:.40}, not ros__parameters (or nodes under a namespace)")
        if "ros__parameters" not in value:
            yield from _parameter_sections(value, path, name)
            continue
        parameters = value["ros__parameters"]
        if not isinstance(parameters, dict):
            raise ValueError(f"{path}: the ros__parameters of {name} are {parameters!r:.40}, not name: value pairs")
        yield name, _dotted(parameters)


def _dotted(parameters: dict, prefix: str = "") -> dict:
    """Nested parameter mappings as rcl names them: ``{a: {b: 1}}`` is ``a.b``."""
    flat = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _node_name_matches(pattern: str, node_name: str) -> bool:
    """Whether a parameters file's node name applies to ``/node_name``: ``*`` is one name token,
    ``**`` any number of them (rcl's wildcards)."""
    regex = "".join("(/[^/]+)*" if token == "**" else "/[^/]+" if token == "*" else "/" + re.escape(token)
                    for token in pattern.strip("/").split("/"))
    return re.fullmatch(regex, "/" + node_name) is not None
