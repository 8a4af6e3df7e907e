"""MCAP bags that ``ros2 bag`` (rosbag2's MCAP storage) and Foxglove open, without rosbag2.

Writing follows rosbag2's MCAP layout: the ``ros2`` profile, one schema per message type
named by its ROS type (``cfi_pose_ros/msg/HumanPose3DArray``) in the ``ros2msg`` encoding
holding the complete message definition (the type's ``.msg`` text, then every type it uses,
each after a line of 80 ``=`` and ``MSG: pkg/Type``, as rosbag2's LocalMessageDefinitionSource
writes it and its tests expect), channels with the ``cdr`` message encoding (and the profile's
``offered_qos_profiles`` metadata, empty: no recorded offer), and messages serialized by
rclpy's own serializer (the bytes DDS carries). Reading gives the raw CDR bytes with their
type and times, and decodes them with rclpy.

Needs the ROS Python message packages (for serialization and the ``.msg`` files in their
share directories) but no running ROS graph: offline tools use it without DDS.

    python -m cfi_pose_ros.bag info outputs/demo/demo.mcap
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from cfi_pose_ros.cdr import encapsulation_problem, layout_problem
from cfi_pose_ros.files import open_regular_file, unreadable

__all__ = ["BagWriter", "BagMessage", "read_bag", "bag_summary", "message_definition", "type_name",
           "message_class", "PlaybackClock"]

PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
_SEPARATOR = "=" * 80
MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"      # the first 16 bytes of every SQLite 3 database
# pkg/msg/Type as rosidl names them (an action's or service's topics: pkg/action/Type_FeedbackMessage)
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*/(msg|srv|action)/[A-Z][A-Za-z0-9_]*")
_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring"}


def type_name(msg_or_class) -> str:
    """``pkg/msg/Type`` of a generated ROS message (instance or class)."""
    cls = msg_or_class if isinstance(msg_or_class, type) else type(msg_or_class)
    package, kind = cls.__module__.split(".")[:2]      # e.g. cfi_pose_ros.msg._human_pose3_d_array
    return f"{package}/{kind}/{cls.__name__}"


def message_class(name: str):
    """The generated Python class of ``pkg/msg/Type`` (also accepts ``pkg/Type``).

    The name comes from a bag's schema: only a package that installs ROS interfaces is imported
    (``this/msg/X`` or ``antigravity/msg/X`` would run those modules), and what it holds by that
    name must be a message type (not a service's or action's class)."""
    from ament_index_python import has_resource
    from rclpy.type_support import check_is_valid_msg_type

    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not _TYPE_NAME.fullmatch("/".join(parts)):
        raise ValueError(f"not a ROS message type name: {name!r}")
    if not has_resource("rosidl_interfaces", parts[0]):
        raise ValueError(f"message type {name!r} is not installed here (no ROS interface package {parts[0]!r})")
    try:
        cls = getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {name!r} is not installed here ({exc})") from exc
    try:
        check_is_valid_msg_type(cls)
    except (AttributeError, RuntimeError) as exc:      # a service's or action's own class
        raise ValueError(f"{name!r} is not a ROS message type ({exc})") from exc
    return cls


def _msg_file(package: str, name: str) -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"


def _field_types(text: str, package: str) -> list[tuple[str, str]]:
    """(package, Type) of every non-primitive field of a ``.msg`` text, in order."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type = line.split()[0]                       # constants are primitives: skipped below
        base = re.sub(r"\[.*\]$", "", field_type)          # arrays: T[], T[N], T[<=N]
        base = re.sub(r"<=\d+$", "", base)                 # bounded strings: string<=N
        if base in _PRIMITIVES:
            continue
        parts = base.split("/")
        found.append((parts[0], parts[-1]) if len(parts) > 1 else (package, base))
    return found


def message_definition(name: str) -> str:
    """The complete ``ros2msg`` definition of ``pkg/msg/Type``: its ``.msg`` text, then each
    type it uses (recursively, each once) after the rosbag2 delimiter."""
    package, _, top = name.split("/")
    text = _msg_file(package, top).read_text()
    parts, seen = [text.rstrip("\n")], {(package, top)}
    pending = _field_types(text, package)
    while pending:
        dep = pending.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        dep_text = _msg_file(*dep).read_text()
        # named as the fields name it (pkg/Type), as rosbag2 writes it: Foxglove's parser looks a
        # field's type up by that exact name, and with pkg/msg/Type decoded no topic of our bags
        parts.append(f"{_SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{dep_text.rstrip(chr(10))}")
        pending.extend(_field_types(dep_text, dep[0]))
    return "\n".join(parts) + "\n"


class BagWriter:
    """Writes ROS messages (or already serialized CDR bytes) to an MCAP file.

    ``write(topic, msg, log_time_ns)``: the first message of a topic registers its schema
    and channel. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path):
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile=PROFILE, library=f"cfi_pose_ros bag.py, mcap {_mcap_version()}")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}      # topic -> (channel id, type name)
        self._sequence: dict[int, int] = {}
        self.count = 0

    def _channel(self, topic: str, ros_type: str) -> int:
        known = self._channels.get(topic)
        if known is not None:
            if known[1] != ros_type:
                raise ValueError(f"topic {topic} already holds {known[1]}, not {ros_type}")
            return known[0]
        if ros_type not in self._schemas:
            self._schemas[ros_type] = self._writer.register_schema(
                name=ros_type, encoding=SCHEMA_ENCODING, data=message_definition(ros_type).encode())
        # The ros2 profile requires the key; rosbag2 reads "" as no recorded offer (played reliable, volatile).
        channel = self._writer.register_channel(topic=topic, message_encoding=MESSAGE_ENCODING,
                                                schema_id=self._schemas[ros_type],
                                                metadata={"offered_qos_profiles": ""})
        self._channels[topic] = (channel, ros_type)
        return channel

    def write_serialized(self, topic: str, ros_type: str, data: bytes, log_time_ns: int,
                         publish_time_ns: int | None = None) -> None:
        channel = self._channel(topic, ros_type)
        sequence = self._sequence.get(channel, 0)
        self._sequence[channel] = sequence + 1
        self._writer.add_message(channel_id=channel, log_time=int(log_time_ns), data=bytes(data),
                                 publish_time=int(log_time_ns if publish_time_ns is None else publish_time_ns),
                                 sequence=sequence)
        self.count += 1

    def write(self, topic: str, msg, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        from rclpy.serialization import serialize_message

        self.write_serialized(topic, type_name(msg), serialize_message(msg), log_time_ns, publish_time_ns)

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._writer.finish()
            self._file.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mcap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcap")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class BagMessage:
    topic: str
    type_name: str
    data: bytes                # CDR, as published (see message_encoding)
    log_time_ns: int
    publish_time_ns: int
    message_encoding: str = MESSAGE_ENCODING    # its channel's: only read_bag(every_encoding=True) gives others

    def decode(self, walked: bool = False):
        """The message; ValueError where the bytes are none of its type. ``walked``: the caller has
        walked them against the type's layout (``cdr.walk_layout``) and found them whole."""
        from rclpy.serialization import deserialize_message

        from cfi_pose_ros.node.conversions import cdr_layout

        if self.message_encoding != MESSAGE_ENCODING:
            raise ValueError(f"a message on {self.topic} is {self.message_encoding!r}, not {MESSAGE_ENCODING!r}: "
                             "not a ROS 2 message to decode")
        msg_type = message_class(self.type_name)
        problem = encapsulation_problem(self.data)       # bytes the type support would crash on
        if problem is None and not walked:
            # a length past the end: the type support printed a line to stderr for each such message
            # (beside offline lifting's one for them all) and raised "error not set"
            problem = layout_problem(self.data, cdr_layout(msg_type))
        if problem is not None:
            raise ValueError(f"a message on {self.topic}: {problem}")
        return deserialize_message(self.data, msg_type)


# The mcap reader decompresses a chunk whole and then holds it twice over (a 1 GiB chunk took 2.3 GB).
# rosbag2 closes a chunk after about 1 MB (one big message makes it bigger: a 4K image is 25 MB), but
# 73 kB of zstd can state 2 GiB of zeros.
MAX_CHUNK_BYTES = 1 << 30


def _decompressed_size(compression: str, stated: int, data: bytes) -> int:
    """What a chunk is decompressed into, from the sizes it and its frame state: zstd into the frame's
    content size, else the chunk's stated size; lz4 into the frame's content size, or where the frame
    states none (``data`` is then the whole frame: see _lz4_data_needed), what it inflates to, counted
    up to just past MAX_CHUNK_BYTES; uncompressed, nothing."""
    import lz4.frame
    import zstandard

    if compression == "zstd":
        framed = zstandard.frame_content_size(data)
        return stated if framed < 0 else framed
    if compression == "lz4":
        framed = lz4.frame.get_frame_info(data)["content_size"]
        return framed if framed else _lz4_inflated_size(data, MAX_CHUNK_BYTES + 1)
    return 0


def _lz4_data_needed(compression: str, head: bytes) -> bool:
    """Whether a chunk's size can only be known from its whole data: an lz4 frame that does not state
    its content size (lz4 encoders may leave it out). The mcap reader inflates such a chunk whole: a
    6.5 MB bag of one inflated to 1.5 GiB (3.1 GB of memory, and play_bag published it), the chunk
    size check passed it as 0 bytes."""
    import lz4.frame

    return compression == "lz4" and not lz4.frame.get_frame_info(head)["content_size"]


def _lz4_inflated_size(frame: bytes, limit: int) -> int:
    """How many bytes an lz4 frame inflates to, counted in 16 MiB pieces (none kept), up to ``limit``."""
    import lz4.frame

    decompressor, total = lz4.frame.LZ4FrameDecompressor(), 0
    piece = decompressor.decompress(frame, max_length=1 << 24)
    while piece and total < limit:
        total += len(piece)
        piece = b"" if decompressor.eof else decompressor.decompress(b"", max_length=1 << 24)
    return total


def _chunk_heads(f, summary) -> Iterator[tuple[str, int, bytes]]:
    """(compression, stated uncompressed size, first bytes of the data) of each chunk of the bag: from
    the chunk indexes, reading only each record's header, or (no index) reading the file through."""
    from mcap.data_stream import ReadDataStream
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    if summary is not None and summary.chunk_indexes:
        for index in summary.chunk_indexes:
            f.seek(index.chunk_start_offset + 1 + 8)              # past the opcode and the record length
            stream = ReadDataStream(f)
            stream.read(8 + 8)                                     # message start and end times
            stated = stream.read8()
            stream.read(4)                                         # uncompressed CRC
            compression = stream.read_prefixed_string()
            length = stream.read8()                                # compressed
            head = f.read(32)                                      # a zstd or lz4 frame header
            if _lz4_data_needed(compression, head):
                head += f.read(max(0, min(length - len(head), os.fstat(f.fileno()).st_size - f.tell())))
            yield compression, stated, head
    else:
        f.seek(0)
        for record in StreamReader(f, emit_chunks=True).records:
            if isinstance(record, Chunk):
                needed = _lz4_data_needed(record.compression, record.data[:32])
                yield record.compression, record.uncompressed_size, record.data if needed else record.data[:32]


def is_recorded_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder ``ros2 bag record`` wrote (its ``metadata.yaml`` beside the files)."""
    path = Path(path)
    return path.is_dir() and (path / "metadata.yaml").is_file()


def folder_without_metadata(path: str | Path) -> str | None:
    """What to say of a folder of MCAP files without the ``metadata.yaml`` that makes it a recorded
    bag (a recording copied without it, a recorder killed before writing it), or None: it was "a
    directory, not an MCAP file" to play_bag and "no images in [...]" to offline."""
    path = Path(path)
    mcaps = sorted(p.name for p in path.glob("*.mcap")) if path.is_dir() else []
    if not mcaps or (path / "metadata.yaml").is_file():
        return None
    shown = ", ".join(mcaps[:3]) + (f" and {len(mcaps) - 3} more" if len(mcaps) > 3 else "")
    return (f"{path}: a folder of MCAP files ({shown}) without the metadata.yaml of ros2 bag record: give one "
            "MCAP file, or write the folder's metadata.yaml with `ros2 bag reindex`")


def bag_files(path: str | Path) -> list[Path]:
    """The MCAP files of a bag: the file itself, or those of a folder ``ros2 bag record`` wrote, in
    the order its ``metadata.yaml`` lists them (``relative_file_paths``: a bag split by size or
    duration, each file after the one before in time). ``ValueError`` for a folder of another storage
    (sqlite3's ``.db3``) or of compressed files, which this reader does not read."""
    path = Path(path)
    if not is_recorded_folder(path):
        problem = folder_without_metadata(path)
        if problem:
            raise ValueError(problem)
        return [path]
    import yaml

    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        listed = info.get("relative_file_paths") or []
        if not isinstance(listed, list):      # a string was listed character by character
            raise TypeError(f"relative_file_paths is {listed!r}, not a list of file names")
        names = [str(name) for name in listed]
        compression = (str(info.get("compression_mode") or "none").lower(), info.get("compression_format") or "")
    except (yaml.YAMLError, OSError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        # in one line: a YAML error's text spans four, with its mark
        raise ValueError(f"{path / 'metadata.yaml'}: not rosbag2's metadata ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from None
    if compression[0] != "none":     # messages (or files) compressed by rosbag2: not CDR as read
        raise ValueError(f"{path}: recorded with --compression-mode {compression[0]} ({compression[1]}): "
                         "only uncompressed recordings are read (MCAP's own chunk compression is fine)")
    names = names or sorted(p.name for p in path.glob("*.mcap"))
    others = [name for name in names if not name.endswith(".mcap")]
    if others or not names:
        raise ValueError(f"{path}: a ros2 bag record folder of {', '.join(others) or 'no files'}: only MCAP files "
                         "are read (record with -s mcap, without --compression-mode file)")
    files = [path / Path(name).name for name in names]      # a name from the file may not lead out of the folder
    for name, file in zip(names, files):
        if not os.path.lexists(file):     # it was "[Errno 2] No such file or directory: 'bag/bag_1.mcap'"
            raise ValueError(f"{path / 'metadata.yaml'} lists {name}, and {file} is not there")
    return files


def _open_bag(path: str | Path):
    """The bag file, opened for reading, or ``ValueError`` for a path that is no regular file (or not
    there, or unreadable: see files.unreadable). MCAP
    is read by seeking to its summary at the end, which a FIFO or a device cannot do, and opening a
    FIFO waits for a writer: ``play_bag`` on one hung, deaf to SIGTERM (see open_regular_file). A file
    that does not begin as MCAP does is ``ValueError`` saying what it is: an empty one, rosbag2's
    sqlite3 storage (``.db3``) or anything else was "not a complete MCAP file (InvalidMagic: ...);
    was it cut short or its recorder killed?", and the offline CLI opened a ``.db3`` as a video."""
    try:
        f = open_regular_file(path, "not an MCAP file (a bag is read by seeking to its end)")
    except OSError as exc:
        raise ValueError(unreadable(path, exc)) from None
    try:
        head = f.read(len(SQLITE_MAGIC))
        f.seek(0)
        if head.startswith(MCAP_MAGIC):
            return f
        if not head:
            raise ValueError(f"{path}: an empty file (0 bytes), not an MCAP bag")
        if head == SQLITE_MAGIC:
            raise ValueError(f"{path}: an SQLite database (rosbag2's sqlite3 storage, .db3), not MCAP: only MCAP "
                             "bags are read (convert it with `ros2 bag convert` to storage mcap, or record with -s mcap)")
        raise ValueError(f"{path}: not an MCAP file (it does not begin with MCAP's magic bytes)")
    except BaseException:
        f.close()
        raise


def read_bag(path: str | Path, topics: Iterable[str] | None = None,
             every_encoding: bool = False) -> Iterator[BagMessage]:
    """The bag's CDR messages on ``topics`` (all when None), in log-time order; with
    ``every_encoding`` also those of channels that are not ROS 2 CDR (their ``message_encoding``
    says what they are; a channel without a schema has ``type_name`` ""), for a caller that
    counts what it cannot use rather than never seeing it. Records that cannot be read (a
    corrupt chunk, a length past the end of the file) raise ``ValueError`` after the messages
    before them; a chunk that would decompress to more than ``MAX_CHUNK_BYTES`` before any.
    ``path``: an MCAP file, or a folder of ``ros2 bag record`` (see :func:`bag_files`)."""
    topics = list(topics) if topics is not None else None
    for file in bag_files(path):
        yield from _read_file(file, topics, every_encoding)


def _read_file(path: Path, topics: list[str] | None, every_encoding: bool) -> Iterator[BagMessage]:
    from mcap.reader import make_reader

    with _open_bag(path) as f:
        # each chunk's CRC checked as it is read: bytes damaged on disk that still decode were
        # lifted and replayed as good data
        reader = make_reader(f, validate_crcs=True)
        try:
            summary = reader.get_summary()
            heads = _chunk_heads(f, summary) if f.seekable() else ()
            sizes = [_decompressed_size(*head) for head in heads]
        except Exception as exc:  # noqa: BLE001 (as below)
            raise ValueError(f"{path}: corrupt MCAP data after 0 messages ({type(exc).__name__}: {exc})") from exc
        if max(sizes, default=0) > MAX_CHUNK_BYTES:
            raise ValueError(f"{path}: a chunk would decompress to at least {max(sizes)} bytes (more than "
                             f"{MAX_CHUNK_BYTES}): not read")
        records = reader.iter_messages(topics=topics, log_time_order=True)
        read, per_channel = 0, {}
        while True:
            try:
                schema, channel, message = next(records)
            except StopIteration:
                _check_every_message_read(path, summary, topics, per_channel)
                return
            # Bytes the summary did not cover come out of the mcap reader as McapError, but also as
            # zstandard.ZstdError, lz4's RuntimeError, OverflowError, UnicodeDecodeError or a
            # MemoryError (a chunk's stated size allocated): all of them mean a corrupt file.
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{path}: corrupt MCAP data after {read} messages "
                                 f"({type(exc).__name__}: {exc})") from exc
            read += 1
            per_channel[channel.id] = per_channel.get(channel.id, 0) + 1
            ros2 = channel.message_encoding == MESSAGE_ENCODING and schema is not None
            if ros2 or every_encoding:         # else not a ROS 2 channel: nothing to publish or decode it as
                yield BagMessage(channel.topic, schema.name if schema is not None else "", message.data,
                                 message.log_time, message.publish_time, channel.message_encoding)


def _check_every_message_read(path: Path, summary, topics: list[str] | None, per_channel: dict[int, int]) -> None:
    """``ValueError`` where fewer messages were read on ``topics`` than the file's statistics state. A
    record inside a chunk whose length runs past the chunk's end (a writer's bug, bytes damaged under
    a CRC of 0, which says "not computed") ends the mcap reader's pass over that chunk without a word:
    that message came out with the rest of the chunk as its bytes, and the chunk's later messages were
    lost, the bag read as if whole."""
    stated = summary.statistics.channel_message_counts if summary is not None and summary.statistics else {}
    wanted = {channel_id: count for channel_id, count in stated.items()
              if topics is None or (channel_id in summary.channels and summary.channels[channel_id].topic in topics)}
    short = sum(max(0, count - per_channel.get(channel_id, 0)) for channel_id, count in wanted.items())
    if short:
        raise ValueError(f"{path}: corrupt MCAP data: {short} of the {sum(wanted.values())} messages its statistics "
                         "state could not be read (a record runs past the end of its chunk)")


@dataclass(frozen=True)
class TopicSummary:
    type_name: str
    count: int
    ros2: bool = True      # a channel of it holds ROS 2 messages (cdr, with a schema): what read_bag gives by default
    # its ROS 2 channels' ``offered_qos_profiles`` metadata (rosbag2 writes it; see recorded_qos)
    offered_qos: tuple[str, ...] = ()


def bag_summary(path: str | Path) -> tuple[dict[str, TopicSummary], tuple[int, int]]:
    """topic -> (type, message count), and the (first, last) log time in ns, over every file of the
    bag (see :func:`bag_files`). A topic held by several channels has its cdr channel's type and all
    their messages."""
    topics: dict[str, TopicSummary] = {}
    ros_typed: set[str] = set()
    starts, ends = [], []
    for file in bag_files(path):
        summary = _file_summary(file)
        counts = summary.statistics.channel_message_counts if summary.statistics else {}
        # MCAP's Statistics record is optional: a file without one was "messages: 0, duration 0.000 s"
        # in `bag info` however many it held; its messages are then counted as read
        read_counts = None if summary.statistics else _counted_messages(file)
        for channel_id, channel in sorted(summary.channels.items()):
            schema = summary.schemas.get(channel.schema_id)
            ros = channel.message_encoding == MESSAGE_ENCODING and schema is not None
            known = topics.get(channel.topic, TopicSummary(schema.name if schema else "", 0))
            # the type is a cdr channel's: a json or protobuf channel of lower id named the topic's
            # type, and play_bag left its ROS messages out, offline refused the bag
            type_name = schema.name if ros and channel.topic not in ros_typed else known.type_name
            if ros:
                ros_typed.add(channel.topic)
            # a topic's messages in several channels (another encoding beside cdr) are all read: each
            # channel's count replaced the one before, and a progress bar fell short of what was read
            offered = known.offered_qos + ((channel.metadata["offered_qos_profiles"],)
                                           if ros and "offered_qos_profiles" in channel.metadata else ())
            topics[channel.topic] = TopicSummary(type_name, known.count + int(counts.get(channel_id, 0)),
                                                 channel.topic in ros_typed, offered)
        if summary.statistics and summary.statistics.message_count:
            starts.append(summary.statistics.message_start_time)
            ends.append(summary.statistics.message_end_time)
        if read_counts is not None:
            per_topic, span = read_counts
            for topic, count in per_topic.items():
                known = topics.get(topic, TopicSummary("", 0, False))    # a channel the summary leaves out
                topics[topic] = TopicSummary(known.type_name, known.count + count, known.ros2, known.offered_qos)
            if span is not None:
                starts.append(span[0])
                ends.append(span[1])
    return topics, ((min(starts), max(ends)) if starts else (0, 0))


def _counted_messages(path: Path) -> tuple[dict[str, int], tuple[int, int] | None]:
    """topic -> messages, and the (first, last) log time in ns (None: no message), of one MCAP file,
    read message by message (with :func:`read_bag`'s checks)."""
    counts: dict[str, int] = {}
    first = last = None
    for message in _read_file(path, None, every_encoding=True):
        counts[message.topic] = counts.get(message.topic, 0) + 1
        first = message.log_time_ns if first is None else min(first, message.log_time_ns)
        last = message.log_time_ns if last is None else max(last, message.log_time_ns)
    return counts, (None if first is None else (first, last))


def _file_summary(path: Path):
    """One MCAP file's summary section; ``ValueError`` for a file that has none."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    with _open_bag(path) as f:
        try:
            summary = make_reader(f).get_summary()
        except (McapError, OSError, ValueError, struct.error) as exc:   # cut short, never closed, not MCAP at all
            raise ValueError(f"{path}: not a complete MCAP file ({type(exc).__name__}: {exc}); "
                             "was it cut short or its recorder killed?") from exc
    if summary is None:
        raise ValueError(f"{path}: no MCAP summary section (the file was not closed properly)")
    return summary


class PlaybackClock:
    """The bag time of a playback, as ``ros2 bag play --clock`` puts it on /clock: the recorded
    (log) time of the message being played, advancing ``rate`` times as fast as the wall clock.

    :meth:`hold` stands it still at a bag time (before playback starts: the first message's time),
    :meth:`start` runs it from a bag time at a wall time (each pass of a loop starts again from the
    first message's time: the clock jumps back). Wall times are any monotonic seconds
    (``time.perf_counter()``). Pure: no ROS."""

    def __init__(self, rate: float = 1.0):
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self._bag_ns: int | None = None     # bag time at the anchor
        self._wall_s: float | None = None   # wall time of the anchor; None: stands still

    def hold(self, bag_ns: int) -> None:
        self._bag_ns, self._wall_s = int(bag_ns), None

    def start(self, bag_ns: int, wall_s: float) -> None:
        self._bag_ns, self._wall_s = int(bag_ns), float(wall_s)

    @property
    def running(self) -> bool:
        return self._wall_s is not None

    def now_ns(self, wall_s: float) -> int | None:
        """The bag time at ``wall_s`` (None before :meth:`hold` or :meth:`start`)."""
        if self._bag_ns is None:
            return None
        if self._wall_s is None:
            return self._bag_ns
        return self._bag_ns + round(max(0.0, wall_s - self._wall_s) * self.rate * 1e9)

    def due(self, log_time_ns: int) -> float:
        """The wall time at which the message recorded at ``log_time_ns`` is due (the clock reads it)."""
        if self._wall_s is None:
            raise ValueError("the clock is not running")
        return self._wall_s + (log_time_ns - self._bag_ns) * 1e-9 / self.rate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Summarise an MCAP bag (like `ros2 bag info`).")
    parser.add_argument("command", choices=["info"])
    parser.add_argument("bag")
    args = parser.parse_args(argv)
    try:
        topics, (start, end) = bag_summary(args.bag)
    except (ValueError, OSError) as exc:
        print(f"bag: error: {exc}", file=sys.stderr)
        return 2
    print(f"file:     {args.bag}")
    print(f"duration: {(end - start) * 1e-9:.3f} s")
    print(f"messages: {sum(t.count for t in topics.values())}")
    for topic, info in sorted(topics.items()):
        print(f"  {topic:32s} {info.type_name:40s} {info.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
