"""Serialized (CDR) ROS 2 messages as a subscription takes them: bytes that no message can be, and
``sensor_msgs/Image`` read straight from its bytes, the pixels left in place.

A subscription that takes a message's bytes sees every message that arrives, also one cut short
or with a length past its end, which rmw's typed ``take`` drops without a word (see
``SpecLifecycleNode.subscribe_input``). rclpy's generic ``deserialize_message`` of an image costs
more than rmw's own take; this reader copies no pixel (``data`` is a view of the bytes taken) and
costs less (``benchmarks/bench_image_take.py``).

Layout (OMG XCDR, version 1 as Fast DDS writes ROS 2 messages, or version 2's plain form, which
lays out these fields alike: none is wider than 4 bytes): a 4-byte encapsulation header (its second
byte says the byte order), then, each 4-byte number aligned to 4 bytes from the end of that header,
``header.stamp.sec`` (int32), ``header.stamp.nanosec`` (uint32), ``header.frame_id`` (string:
uint32 length counting a closing NUL, the bytes), ``height``, ``width`` (uint32), ``encoding``
(string), ``is_bigendian`` (uint8), ``step`` (uint32), ``data`` (uint32 count, the bytes).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# The encapsulation kind (the header's second byte; the first is 0) -> struct's byte order. Other
# kinds (parameter lists, XCDR2's delimited form with its extra length word) are not read here.
_BYTE_ORDER = {0x00: ">", 0x01: "<", 0x06: ">", 0x07: "<"}
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
    """CDR fields from ``view`` in order, each checked against ``end`` (the bytes' end, less the
    padding the encapsulation header states where the caller says so), numbers aligned from the end
    of the encapsulation header to at most ``max_alignment`` (4 for the 4-byte fields of an Image;
    XCDR1 aligns an 8-byte number to 8)."""

    def __init__(self, view: memoryview, byte_order: str, end: int | None = None, max_alignment: int = 4):
        self.view, self.position = view, _ENCAPSULATION_BYTES
        self.end = len(view) if end is None else end
        self.max_alignment = max_alignment
        self.uint32, self.int32 = struct.Struct(byte_order + "I"), struct.Struct(byte_order + "i")

    def align(self, size: int) -> None:
        # aligned from the end of the encapsulation header, as CDR counts
        self.position += -(self.position - _ENCAPSULATION_BYTES) % min(size, self.max_alignment)

    def number(self, layout: struct.Struct, what: str) -> int:
        self.align(4)
        if self.position + 4 > self.end:
            raise NotAnImage(f"the bytes end at {self.end}, before {what}")
        value = layout.unpack_from(self.view, self.position)[0]
        self.position += 4
        return value

    def skip(self, count: int, what: str, alignment: int = 1) -> int:
        """Moves past ``count`` bytes of ``what`` (aligned to ``alignment``); returns where they start."""
        self.align(alignment)
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


def read_image(serialized: bytes | bytearray | memoryview, kind: type[SerializedImage] = SerializedImage
               ) -> SerializedImage | None:
    """The image in ``serialized`` as a ``kind``, or None for an encapsulation this reader does not
    lay out (deserialize those with the type support). :class:`NotAnImage` when the bytes are not one."""
    view = memoryview(serialized).cast("B")
    problem = encapsulation_problem(view)
    if problem is not None:
        raise NotAnImage(problem)
    byte_order = _BYTE_ORDER.get(view[1]) if view[0] == 0 else None
    if byte_order is None:
        return None
    reader = _Reader(view, byte_order)
    stamp_sec = reader.number(reader.int32, "header.stamp.sec")
    stamp_nanosec = reader.number(reader.uint32, "header.stamp.nanosec")
    frame_id = reader.string("header.frame_id")
    height = reader.number(reader.uint32, "height")
    width = reader.number(reader.uint32, "width")
    encoding = reader.string("encoding")
    is_bigendian = reader.octets(1, "is_bigendian")[0]
    step = reader.number(reader.uint32, "step")
    data = reader.octets(reader.number(reader.uint32, "data's length"), "data")
    return kind(stamp_sec, stamp_nanosec, frame_id, height, width, encoding, is_bigendian, step, data)


# the fewest bytes a HumanKeypoints2D takes: the id's and the keypoints' length words, score, layout, bbox
_LEAST_PERSON_BYTES = 4 + 4 + 1 + 4 + 17


def keypoints_counts(serialized: bytes | bytearray | memoryview, most_people: int) -> tuple[int, int | None] | None:
    """``(people, keypoints)`` of a ``cfi_pose_ros/HumanKeypoints2DArray``'s XCDR1 bytes, read without
    deserializing them: the length of its ``people`` sequence and the sum of their ``keypoints``
    sequences' lengths, the latter None where there are more than ``most_people`` people (their
    keypoints are not walked). None where this reader does not lay the bytes out or they end before
    what it reads (the type support then judges them). Deserializing costs about 36 bytes of memory
    a byte: 20 kB of zstd in a bag held 100,000 people (24 MB of CDR), 875 MB and 9 s to decode,
    every one of them then dropped; a person of a million keypoints (12 MB) costs as much as 60,000
    people of 17. ``most_people`` -1: the people counted only."""
    view = memoryview(serialized).cast("B")
    # XCDR2 puts a length word before a sequence of structs: only version 1's layout is read here
    byte_order = _BYTE_ORDER.get(view[1]) if len(view) >= 2 and view[0] == 0 and view[1] in (0x00, 0x01) else None
    if byte_order is None or encapsulation_problem(view) is not None:
        return None
    reader = _Reader(view, byte_order)
    try:
        reader.number(reader.int32, "header.stamp.sec")
        reader.number(reader.uint32, "header.stamp.nanosec")
        reader.skip(reader.number(reader.uint32, "header.frame_id's length"), "header.frame_id")
        reader.number(reader.uint32, "image_width")
        reader.number(reader.uint32, "image_height")
        people = reader.number(reader.uint32, "people's length")
        if people * _LEAST_PERSON_BYTES > reader.end - reader.position:
            return None     # a length past the bytes' end: no message, not a crowd (the type support says so)
        if people > most_people:
            return people, None
        keypoints = 0
        for _ in range(people):
            reader.skip(reader.number(reader.uint32, "id's length"), "id")
            reader.skip(4, "score", 4)
            reader.skip(1, "layout")
            count = reader.number(reader.uint32, "keypoints' length")
            reader.skip(12 * count, "keypoints", 4)         # x, y, score: float32 each
            reader.skip(17, "bbox", 4)                      # four uint32 and a bool
            keypoints += count
        return people, keypoints
    except NotAnImage:
        return None


# A message type's layout, as :func:`layout_problem` walks it: a tuple of fields, each an int (a
# primitive of that many bytes: 1, 2, 4, 8), STRING, (ARRAY, count, field), (SEQUENCE, field), or a
# tuple (a nested message's fields). Built from a type's rosidl description by the node
# (conversions.cdr_layout); nothing here imports ROS.
STRING, ARRAY, SEQUENCE = "string", "array", "sequence"
# encapsulation kind -> the largest alignment (XCDR1 aligns an 8-byte number to 8). Only XCDR1, which
# every ROS 2 middleware writes for ROS types: XCDR2 puts a delimiter before each struct of a type
# that is not final, which a walk that does not know the types' extensibility would misread, and a
# whole message refused is worse than a line printed by the type support.
_MAX_ALIGNMENT = {0x00: 8, 0x01: 8}


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


def layout_problem(serialized: bytes | bytearray | memoryview, layout: tuple) -> str | None:
    """Where the bytes end before a field of ``layout`` does (a string's or sequence's length runs past
    their end), or None; None too for an encapsulation not walked here (all but XCDR1's: left to the
    type support).

    Fast DDS's generated type support (Kilted) prints "sequence size exceeds remaining buffer" to
    stderr, unthrottled, for every message whose sequence length runs past its bytes before it fails:
    one line in the node's log per such message, at whatever rate a faulty publisher sends them. A
    message this finds whole the type support reads without that line."""
    view = memoryview(serialized).cast("B")
    if len(view) < _ENCAPSULATION_BYTES or view[0] != 0 or view[1] not in _MAX_ALIGNMENT:
        return None
    max_alignment = _MAX_ALIGNMENT[view[1]]
    # the padding the header's options state is no field's (Fast CDR)
    reader = _Reader(view, _BYTE_ORDER[view[1]], end=len(view) - (view[3] & 0x3), max_alignment=max_alignment)

    def walk(field, what: str) -> None:
        if isinstance(field, int):
            reader.skip(field, what, field)
        elif field == STRING:
            reader.skip(reader.number(reader.uint32, f"{what}'s length"), what)
        elif field[0] in (ARRAY, SEQUENCE):
            items = field[1] if field[0] == ARRAY else reader.number(reader.uint32, f"{what}'s length")
            element = field[-1]
            left = reader.end - reader.position
            if items > left:      # every element takes a byte at least
                raise NotAnImage(f"{what} of {items} elements runs past the end ({left} bytes left)")
            fixed = _fixed_size(element, max_alignment)
            if fixed is not None:
                if items:
                    reader.skip(fixed[0] * items, what, fixed[1])
            else:
                for _ in range(items):
                    walk(element, what)
        else:
            for inner in field:
                walk(inner, what)

    try:
        for index, field in enumerate(layout):
            walk(field, f"field {index}")
    except NotAnImage as exc:
        return str(exc)
    return None
