"""Frame ids as tf2 reads them, which names a tf2 tree can hold, and whether two messages name the
same camera frame.

Apart from frames.py (which imports the pipeline, which imports depth.py) so that every module can
use the one rule."""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterator, TypeVar

# The longest frame name either node takes, from a message's header.frame_id or from an operator's
# target_frame / tf_prefix: every output carries the name on (the poses, each marker, the /tf
# frames, the warnings that name it), so one of a megabyte made a frame's markers a megabyte each.
# tf2 frame names are short (`camera_color_optical_frame`, with a robot's prefix); 256 is the
# track id's bound too.
MAX_FRAME_ID_LENGTH = 256
# The most camera frames whose state each per-camera record keeps (the smoother's tracks, the
# detector's tracks, the lifter's CameraInfos and marker namespaces), the least recently seen given
# up first: several cameras may share one topic, a driver restarted with ever new frame ids must not
# grow any of them without end.
MAX_CAMERAS = 16

# Letters and symbols a font draws as nothing: the Hangul fillers (default-ignorable, yet letters
# that Python calls printable) and the blank braille pattern.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

_Value = TypeVar("_Value")


class RecentlySeen(Generic[_Value]):
    """A record of each camera frame (or other name), least recently seen first, bounded: at most
    ``capacity`` names, and, with ``forget_after``, none not seen for more than that many ticks (the
    owner's frames or arrays, counted by :meth:`tick`). :meth:`evict` gives up the names past those
    bounds and returns them with their records, for the owner to clear what they stood for (a
    camera's markers on RViz's screen). The one shape of every per-camera record: the smoother's
    tracks, the detector's tracker, the lifter's CameraInfos and marker namespaces."""

    def __init__(self, capacity: int = MAX_CAMERAS, forget_after: int | None = None):
        self.capacity = capacity
        self.forget_after = forget_after
        self._records: OrderedDict[str, tuple[_Value, int]] = OrderedDict()    # name -> (record, tick seen)
        self._tick = 0

    def tick(self) -> None:
        """One frame (or array) of the owner's has passed, seen names or not."""
        self._tick += 1

    def put(self, name: str, record: _Value) -> None:
        """``name``'s record, seen now: the most recently seen."""
        self._records.pop(name, None)
        self._records[name] = (record, self._tick)

    def get(self, name: str, default: _Value | None = None) -> _Value | None:
        """``name``'s record (not counted as seen), or ``default``."""
        entry = self._records.get(name)
        return default if entry is None else entry[0]

    def pop(self, name: str, default: _Value | None = None) -> _Value | None:
        entry = self._records.pop(name, None)
        return default if entry is None else entry[0]

    def evict(self) -> list[tuple[str, _Value]]:
        """Give up the names past ``capacity`` or unseen for more than ``forget_after`` ticks, least
        recently seen first; returns them with their records."""
        evicted = []
        while self._records and (len(self._records) > self.capacity or (
                self.forget_after is not None
                and self._tick - next(iter(self._records.values()))[1] > self.forget_after)):
            name, (record, _) = self._records.popitem(last=False)
            evicted.append((name, record))
        return evicted

    def names(self) -> tuple[str, ...]:
        """The names kept, least recently seen first."""
        return tuple(self._records)

    def records(self) -> Iterator[_Value]:
        return (record for record, _ in self._records.values())

    def items(self) -> Iterator[tuple[str, _Value]]:
        return ((name, record) for name, (record, _) in self._records.items())

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: str) -> bool:
        return name in self._records

    def clear(self) -> None:
        self._records.clear()


def frame_name_problem(name: str, *, prefix: bool = False) -> str | None:
    """What keeps ``name`` from naming a frame a tf2 tree can hold, in words, or None: more than
    MAX_FRAME_ID_LENGTH characters, a space or control character (a parameters file's ``map `` or a
    pasted newline), an empty name between two slashes or after a last one; tf2 never finds such a
    frame. ``prefix``: the start of frame names (``tf_prefix``), whose trailing '/' is part of them
    (``body/3``). Empty passes: each caller says what empty means."""
    if len(name) > MAX_FRAME_ID_LENGTH:
        return f"a TF frame name of {len(name)} characters (at most {MAX_FRAME_ID_LENGTH})"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "a TF frame name holds no spaces or control characters"
    if "//" in name:
        return "a TF frame name holds no empty name between two '/'"
    if name.endswith("/") and not prefix:
        return "a TF frame name does not end in '/'"
    return None


def shows_nothing(text: str) -> bool:
    """True when ``text`` has no character that draws anything: only spaces and newlines, format
    characters (a zero-width space, a byte order mark), controls or blank glyphs. A track id of such
    characters names no track: as an id, two people with it shared one marker colour and one alone
    got a TF frame (``body__``) and a smoothing track, and as a label RViz drew nothing."""
    return all(c.isspace() or not c.isprintable() or c in _BLANK_GLYPHS for c in text)


def tf2_frame_id(frame_id: str) -> str:
    """``frame_id`` as tf2 names the frame: without a leading ``/`` (a ROS 1 global name, still sent
    by some drivers). tf2 stores a transform of ``/camera`` as ``camera`` but refuses to look up
    ``/camera`` ("frame_ids cannot start with a '/'"): poses and markers stamped ``/camera`` could
    be placed by no tf2 consumer, RViz included, while their TF frames hung from ``camera``."""
    return frame_id.lstrip("/")


def other_camera_frame(frame_id: str, image_frame_id: str) -> bool:
    """True when a message said to describe the image of ``image_frame_id`` (its CameraInfo, its
    registered depth image) names another frame: another camera's. Both must be named (an empty
    frame_id tells nothing); a leading '/' aside, as tf2 reads them."""
    frame, image_frame = tf2_frame_id(frame_id), tf2_frame_id(image_frame_id)
    return bool(frame and image_frame and frame != image_frame)
