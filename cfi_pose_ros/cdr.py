"""Serialized (CDR) ROS 2 messages as a subscription takes them: bytes that no message can be, and
``sensor_msgs/Image`` read straight from its bytes, the pixels left in place.

A subscription that takes a message's bytes sees every message that arrives, also one cut short
or with a length past its end, which rmw's typed ``take`` drops without a word (see
``SpecLifecycleNode.subscribe_input``). rclpy's generic ``deserialize_message`` of an image costs
more than rmw's own take; this reader copies no pixel (``data`` is a view of the bytes taken) and
costs less (``benchmarks/bench_image_take.py``).

Layout (OMG XCDR, version 1 as Fast DDS writes ROS 2 messages, or any other kind the type support
reads, which lay these fields out alike: none is wider than 4 bytes): a 4-byte encapsulation header
(its second byte says the byte order), then, each 4-byte number aligned to 4 bytes from the end of that header,
``header.stamp.sec`` (int32), ``header.stamp.nanosec`` (uint32), ``header.frame_id`` (string:
uint32 length counting a closing NUL, the bytes), ``height``, ``width`` (uint32), ``encoding``
(string), ``is_bigendian`` (uint8), ``step`` (uint32), ``data`` (uint32 count, the bytes).
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

# The encapsulation kind (the header's second byte; the first is 0) -> the largest alignment, as
# Kilted's type support (Fast CDR) reads a ROS message of each kind Fast DDS delivers (it passes a
# sample's bytes on as written): CDR and PL_CDR (XCDR1, 8-byte numbers aligned to 8), PLAIN_CDR2,
# D_CDR2 and PL_CDR2 (XCDR2, aligned to 4), the byte order the kind's last bit, and no delimiter or
# parameter list read for any: all lay a message out alike. (0x04 and 0x05 are no kind: the type
# support refuses them.)
_MAX_ALIGNMENT = {0x00: 8, 0x01: 8, 0x02: 8, 0x03: 8, 0x06: 4, 0x07: 4, 0x08: 4, 0x09: 4, 0x0A: 4, 0x0B: 4}
_ENCAPSULATION_BYTES = 4


def encapsulation_problem(serialized: bytes | bytearray | memoryview) -> str | None:
    """Why ``serialized`` cannot be a ROS 2 message of any type, or None. Every message serializes to
    a 4-byte encapsulation header, at least one byte (a message type without fields has a
    placeholder ``uint8``), then as many padding bytes as the header's options state (their last two
    bits). rclpy's ``deserialize_message`` (Fast CDR, Kilted) reads past the end of bytes that end
    before that: a 4-byte message whose options stated padding killed the process (SIGSEGV), where
    rmw's typed take delivers it as a message of default values."""
    size = len(memoryview(serialized).cast("B"))
    if size < _ENCAPSULATION_BYTES:
        return f"{size} bytes: not even an encapsulation header"
    padding = serialized[3] & 0x3
    if size - _ENCAPSULATION_BYTES - padding < 1:
        return f"{size} bytes: an encapsulation header (its options state {padding} padding) and no message"
    return None


class NotAnImage(ValueError):
    """The bytes end before the message does, or a length runs past their end."""


@dataclass(frozen=True)
class SerializedImage:
    """The fields of a ``sensor_msgs/Image``; ``data`` is a view of the serialized bytes."""
    stamp_sec: int
    stamp_nanosec: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class _Reader:
    """A message's CDR fields (an Image's, a Header's) from ``view`` in order, each checked against the bytes' end, its 4-byte
    numbers aligned to 4 from the end of the encapsulation header, as CDR counts."""

    def __init__(self, view: memoryview, byte_order: str):
        self.view, self.position, self.end = view, _ENCAPSULATION_BYTES, len(view)
        self.uint32, self.int32 = struct.Struct(byte_order + "I"), struct.Struct(byte_order + "i")

    def number(self, layout: struct.Struct, what: str) -> int:
        self.position += -(self.position - _ENCAPSULATION_BYTES) % 4
        if self.position + 4 > self.end:
            raise NotAnImage(f"the bytes end at {self.end}, before {what}")
        value = layout.unpack_from(self.view, self.position)[0]
        self.position += 4
        return value

    def skip(self, count: int, what: str) -> int:
        """Moves past ``count`` bytes of ``what``; returns where they start."""
        if count > self.end - self.position:
            raise NotAnImage(f"{what} of {count} bytes runs past the end ({max(self.end - self.position, 0)} left)")
        start = self.position
        self.position += count
        return start

    def octets(self, count: int, what: str) -> memoryview:
        start = self.skip(count, what)
        return self.view[start:start + count]

    def string(self, what: str) -> str:
        chunk = self.octets(self.number(self.uint32, f"{what}'s length"), what)
        # as rclpy converts a string it takes: a C string, so it ends at the first NUL (the closing
        # one, or one inside), and bytes that are not UTF-8 become U+FFFD, not an error
        return bytes(chunk).split(b"\0", 1)[0].decode("utf-8", "replace")


def _header_reader(serialized: bytes | bytearray | memoryview) -> _Reader | None:
    """A reader of ``serialized`` at its first field, or None for an encapsulation this module does
    not lay out. :class:`NotAnImage` for bytes that are no message."""
    view = memoryview(serialized).cast("B")
    problem = encapsulation_problem(view)
    if problem is not None:
        raise NotAnImage(problem)
    if view[0] != 0 or view[1] not in _MAX_ALIGNMENT:
        return None
    return _Reader(view, "<" if view[1] & 1 else ">")


def _read_header(reader: _Reader) -> tuple[int, int, str]:
    return (reader.number(reader.int32, "header.stamp.sec"), reader.number(reader.uint32, "header.stamp.nanosec"),
            reader.string("header.frame_id"))


def read_header(serialized: bytes | bytearray | memoryview) -> tuple[int, int, str] | None:
    """``(stamp sec, stamp nanosec, frame_id)`` of a message whose first field is a
    ``std_msgs/Header`` (a keypoints message the lifter does not decode, for one), from its bytes;
    None where they are laid out in an encapsulation this module does not read or end before the
    header does."""
    try:
        reader = _header_reader(serialized)
        return None if reader is None else _read_header(reader)
    except NotAnImage:
        return None


def read_image(serialized: bytes | bytearray | memoryview, kind: type[SerializedImage] = SerializedImage
               ) -> SerializedImage | None:
    """The image in ``serialized`` as a ``kind``, or None for an encapsulation this reader does not
    lay out (deserialize those with the type support). :class:`NotAnImage` when the bytes are not one."""
    reader = _header_reader(serialized)
    if reader is None:
        return None
    stamp_sec, stamp_nanosec, frame_id = _read_header(reader)
    height = reader.number(reader.uint32, "height")
    width = reader.number(reader.uint32, "width")
    encoding = reader.string("encoding")
    is_bigendian = reader.octets(1, "is_bigendian")[0]
    step = reader.number(reader.uint32, "step")
    data = reader.octets(reader.number(reader.uint32, "data's length"), "data")
    return kind(stamp_sec, stamp_nanosec, frame_id, height, width, encoding, is_bigendian, step, data)


# A message type's layout, as :func:`layout_problem` walks it: a tuple of fields, each an int (a
# primitive of that many bytes: 1, 2, 4, 8), STRING, (ARRAY, count, field), (SEQUENCE, field), or a
# tuple (a nested message's fields). Built from a type's rosidl description by the node
# (conversions.cdr_layout); nothing here imports ROS.
STRING, ARRAY, SEQUENCE = "string", "array", "sequence"


def _fixed_size(field, max_alignment: int) -> tuple[int, int] | None:
    """(bytes, alignment) of a field laid out the same wherever it starts once aligned (primitives,
    arrays and messages of them, with no padding inside), or None."""
    if isinstance(field, int):
        return field, min(field, max_alignment)
    if isinstance(field, tuple) and field and field[0] == ARRAY:
        inner = _fixed_size(field[2], max_alignment)
        return None if inner is None or inner[0] % inner[1] else (inner[0] * field[1], inner[1])
    if isinstance(field, tuple) and field and field[0] not in (ARRAY, SEQUENCE):
        sizes = [_fixed_size(f, max_alignment) for f in field]
        if any(s is None for s in sizes) or len({a for _, a in sizes}) != 1 or any(n % a for n, a in sizes):
            return None
        return sum(n for n, _ in sizes), sizes[0][1]
    return None


def _least_bytes(field) -> int:
    """The fewest bytes ``field`` takes, padding aside: a string or a sequence its length word."""
    if isinstance(field, int):
        return field
    if field == STRING or field[0] == SEQUENCE:
        return 4
    if field[0] == ARRAY:
        return field[1] * _least_bytes(field[2])
    return sum(_least_bytes(inner) for inner in field)


# The steps of a walk (:func:`_steps`): (_FIXED, what, alignment, bytes), (_STRING, what),
# (_SEQUENCE, what, path, least element bytes, element (bytes, alignment) or None, element steps),
# (_ARRAY, what, count, element steps)
_FIXED, _STRING, _SEQUENCE, _ARRAY = range(4)


@functools.lru_cache(maxsize=None)
def _steps(fields: tuple, max_alignment: int, path: tuple = (), what: str | None = None) -> tuple:
    """The steps that walk ``fields`` (a message's), each nested message's fields among its own
    (XCDR aligns a message as its first field), consecutive fixed-size fields one step: a person
    of a HumanKeypoints2DArray is four steps, not eleven. ``path``: the fields' message's, as
    :func:`walk_layout` counts sequences by; ``what``: the top-level field the fields are inside."""
    steps: list = []
    for index, field in enumerate(fields):
        name = what or f"field {index}"
        fixed = _fixed_size(field, max_alignment)
        if fixed is not None:
            size, alignment = fixed
            last = steps[-1] if steps else None
            if last is not None and last[0] == _FIXED and alignment <= last[2]:
                # it starts at a known offset from the step's aligned start: no alignment of its own
                together = last[1] if last[1] == name else f"{last[1].split(' to ')[0]} to {name}"
                steps[-1] = (_FIXED, together, last[2], last[3] + -last[3] % alignment + size)
            else:
                steps.append((_FIXED, name, alignment, size))
        elif field == STRING:
            steps.append((_STRING, name))
        elif field[0] == SEQUENCE:
            element = field[1]
            inner = () if _fixed_size(element, max_alignment) else _element_steps(element, max_alignment,
                                                                                   path + (index,), name)
            steps.append((_SEQUENCE, name, path + (index,), max(_least_bytes(element), 1),
                          _fixed_size(element, max_alignment), inner))
        elif field[0] == ARRAY:
            steps.append((_ARRAY, name, field[1], _element_steps(field[2], max_alignment, path + (index,), name)))
        else:
            steps.extend(_steps(field, max_alignment, path + (index,), name))
    return tuple(steps)


def _element_steps(element, max_alignment: int, path: tuple, what: str) -> tuple:
    return _steps(element if isinstance(element, tuple) and element[0] not in (ARRAY, SEQUENCE) else (element,),
                  max_alignment, path, what)


class _Over(Exception):
    """A counted sequence longer than its bound: the walk stops there."""


@dataclass(frozen=True)
class LayoutWalk:
    """What :func:`walk_layout` found. ``problem``: where the bytes end before a field does (a
    string's or sequence's length runs past their end), or None. ``lengths``: by path, the summed
    lengths of the counted sequences walked. ``over``: the path of a counted sequence longer than its
    bound (its length in ``lengths``; nothing after it walked, ``problem`` None), or None."""
    problem: str | None
    lengths: dict
    over: tuple | None = None


def walk_layout(serialized: bytes | bytearray | memoryview, layout: tuple,
                counted: dict[tuple, int | None] | None = None) -> LayoutWalk:
    """The bytes walked against ``layout``, once: whether a field runs past their end, and the
    lengths of the sequences ``counted`` names (a path: the field's index in the message, then in
    each message a sequence's element is, as (3,) for a HumanKeypoints2DArray's people and (3, 3)
    for each person's keypoints), summed over the walk; where one is longer than its bound (None:
    none), the walk stops there. Bytes with no message after their encapsulation header are no
    message (:func:`encapsulation_problem`); nothing is found of bytes that are not of an
    encapsulation the type support reads (left to it to refuse).

    Fast DDS's generated type support (Kilted) prints "sequence size exceeds remaining buffer" to
    stderr, unthrottled, for every message whose sequence length runs past its bytes before it fails:
    one line in the node's log per such message, at whatever rate a faulty publisher sends them. A
    message this finds whole the type support reads without that line. Deserializing a message
    costs about 36 bytes of memory a byte of it (20 kB of zstd in a bag held 100,000 people, 24 MB
    of CDR: 875 MB and 9 s to decode), which a counted sequence's bound spares."""
    counted = counted or {}
    lengths = dict.fromkeys(counted, 0)
    view = memoryview(serialized).cast("B")
    problem = encapsulation_problem(view)
    if problem is not None or view[0] != 0 or view[1] not in _MAX_ALIGNMENT:
        return LayoutWalk(problem, lengths)
    max_alignment = _MAX_ALIGNMENT[view[1]]
    # aligned from the end of the encapsulation header, as CDR counts; the padding the header's
    # options state is no field's (Fast CDR)
    body = view[_ENCAPSULATION_BYTES:len(view) - (view[3] & 0x3)]
    end = len(body)
    uint32 = struct.Struct("<I" if view[1] & 1 else ">I").unpack_from

    def length(position: int, what: str) -> int:
        if position + 4 > end:
            raise NotAnImage(f"the bytes end at {end + _ENCAPSULATION_BYTES}, before {what}'s length")
        return uint32(body, position)[0]

    def walk(steps: tuple, position: int) -> int:
        for step in steps:
            kind = step[0]
            if kind == _FIXED:
                position += -position % step[2]
                if position + step[3] > end:
                    raise NotAnImage(f"{step[1]} of {step[3]} bytes runs past the end ({max(end - position, 0)} left)")
                position += step[3]
            elif kind == _STRING:
                position += -position % 4
                size = length(position, step[1])
                position += 4
                if size > end - position:
                    raise NotAnImage(f"{step[1]} of {size} bytes runs past the end ({end - position} left)")
                position += size
            elif kind == _SEQUENCE:
                position += -position % 4
                items = length(position, step[1])
                position += 4
                if items * step[3] > end - position:
                    raise NotAnImage(f"{step[1]} of {items} elements runs past the end ({end - position} bytes left)")
                if step[2] in lengths:
                    lengths[step[2]] += items
                    bound = counted[step[2]]
                    if bound is not None and items > bound:
                        raise _Over(step[2])
                if step[4] is not None:
                    if items:
                        position += -position % step[4][1]
                        if position + step[4][0] * items > end:     # an 8-byte element's alignment
                            raise NotAnImage(f"{step[1]} of {items} elements runs past the end "
                                             f"({max(end - position, 0)} bytes left)")
                        position += step[4][0] * items
                else:
                    for _ in range(items):
                        position = walk(step[5], position)
            else:
                for _ in range(step[2]):
                    position = walk(step[3], position)
        return position

    try:
        walk(_steps(layout, max_alignment), 0)
    except NotAnImage as exc:
        return LayoutWalk(str(exc), lengths)
    except _Over as over:
        return LayoutWalk(None, lengths, over.args[0])
    return LayoutWalk(None, lengths)


def layout_problem(serialized: bytes | bytearray | memoryview, layout: tuple) -> str | None:
    """Where the bytes end before a field of ``layout`` does, or None: :func:`walk_layout`."""
    return walk_layout(serialized, layout).problem
