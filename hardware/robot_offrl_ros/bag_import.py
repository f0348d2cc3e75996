"""Import rosbag2 recordings (MCAP or sqlite3) into a new episode store, as the live recorder would have.

Teams often record ``ros2 bag record`` first and decide later what becomes training data. Replaying a bag
through the live recorder would work but takes real time and a ROS install; instead the bag's messages
are fed, in the order they arrived, into the recorder's own ``RecordInputs`` (record_inputs.py) and
sampled on the same control-rate ticks: a tick at bag time ``tau`` sees every message logged up to
``tau`` and asks for the step at ``tau - alignment_delay_s``, exactly what the live loop does with
``now``. Topic -> key mapping, stamp alignment, stale-step refusal, image decoding and message checks
are therefore the recorder's, not a copy. Unlike live recording, a malformed message or an image that
cannot be decoded stops the import with one line naming the bag, topic and time: a file can be fixed
and re-imported, and silently dropping its frames would hide the problem.

Reading uses ``rosbags`` (pure Python, the optional ``bags`` extra); the store is built beside its
final path and renamed into place (data/staging.py), so a failed import leaves no store behind.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from robot_offrl.data import EpisodeBuffer, EpisodeStore
from robot_offrl.data.backend import Location
from robot_offrl.data.errors import StoreExistsError
from robot_offrl.data.schema import check_source
from robot_offrl.data.staging import build_beside
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.extras import require

from .record_inputs import RecorderConfig, RecordInputs, input_types, recorder_attrs, store_schema

MARKER_TYPES = ("std_msgs/msg/Bool", "std_msgs/msg/String")
NS = 1_000_000_000


class BagImportError(UserError):
    """A bag that cannot become episodes: unreadable, a topic missing or of another type, a bad message."""


@dataclass(frozen=True)
class SplitRule:
    """How a bag is cut into episodes: the whole bag, a marker topic, or gaps in the input messages."""

    kind: str  # "bag", "topic" or "gap"
    topic: str = ""
    gap_s: float = 0.0

    def __str__(self) -> str:
        return {"bag": "bag", "topic": f"topic:{self.topic}", "gap": f"gap:{self.gap_s:g}"}[self.kind]


def parse_split(text: str) -> SplitRule:
    """``bag`` (one bag per episode), ``topic:/episode`` (a Bool/String marker topic) or ``gap:SECONDS``."""
    kind, _, arg = text.partition(":")
    if kind == "bag" and not arg:
        return SplitRule("bag")
    if kind == "topic" and arg.startswith("/"):
        return SplitRule("topic", topic=arg)
    if kind == "gap":
        try:
            gap = float(arg)
        except ValueError:
            gap = -1.0
        if gap > 0:
            return SplitRule("gap", gap_s=gap)
    raise ConfigError(f"--split must be bag, topic:/TOPIC (std_msgs Bool or String) or gap:SECONDS (> 0), "
                      f"got {text!r}")


@dataclass(frozen=True)
class EpisodeFlags:
    """Labels of an imported episode: the command line's, unless the marker message says otherwise."""

    expert: bool
    source: str
    success: bool | None = None


@dataclass
class Segment:
    """One episode's time range in one bag (log time, ns) and the labels its markers gave it."""

    bag: Path
    start_ns: int
    end_ns: int
    flags: dict[str, Any] = field(default_factory=dict)
    preroll_ns: int = NS  # messages fed before start_ns, as a live recorder's subscriptions had them


def find_bags(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Each path is a rosbag2 folder (holding metadata.yaml) or a folder of them (taken in name order)."""
    bags: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / "metadata.yaml").is_file():
            bags.append(path)
        elif path.is_dir() and (children := sorted(p for p in path.iterdir() if (p / "metadata.yaml").is_file())):
            bags.extend(children)
        elif not path.exists():
            raise BagImportError(f"{path}: no such bag folder")
        else:
            raise BagImportError(f"{path}: not a rosbag2 recording (a folder with metadata.yaml and .mcap or .db3 "
                                 "files, as `ros2 bag record -o NAME` writes) nor a folder of them")
    if len({p.resolve() for p in bags}) != len(bags):
        raise BagImportError("the same bag is given twice")
    return bags


def _rosbags() -> Any:
    highlevel = require("rosbags.highlevel", "bags", "importing bags")
    typesys = require("rosbags.typesys", "bags", "importing bags")
    return highlevel.AnyReader, _default_typestore(typesys)


@functools.cache
def _default_typestore(typesys: Any) -> Any:
    """For bags without embedded definitions; built once per process (it creates ~300 message classes)."""
    return typesys.get_typestore(typesys.Stores.LATEST)


class Bag:
    """An open rosbag2 recording with the recorder's input topics checked against it."""

    def __init__(self, path: Path, cfg: RecorderConfig, marker_topic: str = "") -> None:
        any_reader, typestore = _rosbags()
        self.path = path
        try:
            self.reader = any_reader([path], default_typestore=typestore)
            self.reader.open()
        except Exception as err:  # rosbags raises its own error classes, and OSError / sqlite3 errors
            raise BagImportError(f"{path}: cannot be read as a rosbag2 recording ({_one_line(err)})") from None
        by_topic = {c.topic: c for c in self.reader.connections}
        wanted = dict(input_types(cfg))
        if marker_topic:
            wanted[marker_topic] = " or ".join(MARKER_TYPES)
        missing = [t for t in wanted if t not in by_topic]
        if missing:
            self.close()
            raise BagImportError(
                f"{path}: no topic {', '.join(missing)} in the bag (it has {', '.join(sorted(by_topic)) or 'none'}); "
                "fix the topic names in the recorder config, or record them"
            )
        for topic, expected in wanted.items():
            got = by_topic[topic].msgtype
            if got not in expected.split(" or "):
                self.close()
                raise BagImportError(f"{path}: topic {topic} carries {got}, but the recorder config needs {expected} "
                                     "there")
        self.connections = {t: by_topic[t] for t in input_types(cfg)}
        self.marker = by_topic[marker_topic] if marker_topic else None
        self.storage = "mcap" if any(path.glob("*.mcap")) else "sqlite3"

    def close(self) -> None:
        if self.reader.stack is not None:
            self.reader.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def messages(self, connections: Sequence[Any], start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[tuple[str, int, Any]]:
        """(topic, log time ns, deserialised message) in log-time order."""
        for conn, t_ns, raw in self._raw(connections, start_ns, stop_ns):
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
            except Exception as err:
                raise BagImportError(f"{self.path}: {conn.topic} at {t_ns / NS:.3f} s: cannot deserialise a "
                                     f"{conn.msgtype} ({_one_line(err)})") from None
            yield conn.topic, t_ns, msg

    def _raw(self, connections: Sequence[Any], start_ns: int | None = None,
             stop_ns: int | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """rosbags' message iterator, with a damaged file (truncated, bad chunk) as one BagImportError line."""
        it = self.reader.messages(connections=connections, start=start_ns, stop=stop_ns)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as err:
                raise BagImportError(f"{self.path}: damaged, reading stopped ({_one_line(err)})") from None
            yield item

    def log_times(self) -> list[int]:
        return [t for _, t, _ in self._raw(list(self.connections.values()))]

    def segments(self, rule: SplitRule) -> list[Segment]:
        if rule.kind == "bag":
            return [Segment(self.path, self.reader.start_time, self.reader.end_time + 1)]
        if rule.kind == "gap":
            times = self.log_times()
            out, start = [], times[0] if times else 0
            for prev, cur in zip(times, times[1:], strict=False):
                if cur - prev > rule.gap_s * NS:
                    out.append(Segment(self.path, start, prev + 1, preroll_ns=0))
                    start = cur
            if times:
                out.append(Segment(self.path, start, times[-1] + 1, preroll_ns=0))
            return out
        return self._marker_segments()

    def _marker_segments(self) -> list[Segment]:
        assert self.marker is not None
        out: list[Segment] = []
        open_seg: Segment | None = None
        for _, t_ns, msg in self.messages([self.marker]):
            command, flags = parse_marker(msg, f"{self.path}: {self.marker.topic} at {t_ns / NS:.3f} s")
            if command == "start":
                if open_seg is not None:  # a start without a stop: the previous episode ends here
                    open_seg.end_ns = t_ns
                    out.append(open_seg)
                open_seg = Segment(self.path, t_ns, self.reader.end_time + 1, flags)
            elif open_seg is not None:
                open_seg.end_ns = t_ns
                open_seg.flags.update(flags)
                out.append(open_seg)
                open_seg = None
        if open_seg is not None:
            out.append(open_seg)
        return out


def parse_marker(msg: Any, where: str) -> tuple[str, dict[str, Any]]:
    """A marker: Bool true/false = start/stop; String ``start|stop [expert=true] [source=play] [success=false]``."""
    data = msg.data
    if isinstance(data, bool):
        return ("start" if data else "stop"), {}
    tokens = str(data).split()
    if not tokens or tokens[0] not in ("start", "stop"):
        raise BagImportError(f"{where}: marker {str(data)!r} must start with 'start' or 'stop'")
    flags: dict[str, Any] = {}
    for token in tokens[1:]:
        key, _, value = token.partition("=")
        if key == "source":
            try:
                check_source(value, episode="(marker)")
            except UserError as err:
                raise BagImportError(f"{where}: {err}") from None
            flags["source"] = value
        elif key in ("expert", "success") and value in ("true", "false", "unknown"):
            if key == "expert" and value == "unknown":
                raise BagImportError(f"{where}: expert must be true or false, got 'unknown'")
            flags[key] = {"true": True, "false": False, "unknown": None}[value]
        else:
            raise BagImportError(f"{where}: marker field {token!r} is not one of expert=true|false, "
                                 "success=true|false|unknown, source=NAME")
    return tokens[0], flags


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def replay_segment(bag: Bag, seg: Segment, cfg: RecorderConfig, buffer: EpisodeBuffer) -> dict[str, Any]:
    """Fill ``buffer`` with the segment's steps, as the live record loop would have; returns episode attrs.

    Ticks start once every input has delivered a message (the live recorder's start condition) plus the
    alignment delay, and run every control period until the segment ends. Messages from up to one
    second before a marked segment are fed first, as a live recorder's subscriptions would have buffered
    them (none before a gap-split one: those belong to the previous episode).
    """
    inputs = RecordInputs(cfg)
    period_ns, delay_ns = round(cfg.period_s * NS), round(cfg.alignment_delay_s * NS)
    where = f"{bag.path} (episode from {seg.start_ns / NS:.3f} s)"
    stream = bag.messages(list(bag.connections.values()), max(seg.start_ns - seg.preroll_ns, 0), seg.end_ns)
    pending: tuple[str, int, Any] | None = next(stream, None)
    refused: dict[str, int] = {}
    last_refusal, first_tick, last_tick = "", 0, 0
    limit = cfg.max_episode_steps or None

    def feed_until(t_ns: int) -> None:
        nonlocal pending
        while pending is not None and pending[1] <= t_ns:
            topic, t_msg, msg = pending
            try:
                inputs.add(topic, msg, t_msg / NS)
            except UserError as err:
                raise BagImportError(f"{bag.path}: {topic} at {t_msg / NS:.3f} s: {err}") from None
            pending = next(stream, None)

    t_all = 0
    while pending is not None and inputs.silent_topics():
        t_all = pending[1]
        feed_until(t_all)
    if inputs.silent_topics():
        silent = ", ".join(inputs.silent_topics())
        raise BagImportError(f"{where}: {silent} published nothing in this episode; nothing to import")
    tick = max(seg.start_ns, t_all + delay_ns)
    first_tick = tick
    while tick < seg.end_ns and (limit is None or len(buffer) < limit):
        feed_until(tick)
        result = inputs.sample((tick - delay_ns) / NS)
        if isinstance(result, tuple):
            buffer.add(result[0], result[1])
            last_tick = tick
        elif result.undecodable:
            raise BagImportError(f"{bag.path}: at {tick / NS:.3f} s: {result.message}")
        else:
            for topic in result.topics:
                refused[topic] = refused.get(topic, 0) + 1
            last_refusal = result.message
        tick += period_ns
    if not len(buffer):
        raise BagImportError(f"{where}: every step was refused (last: {last_refusal})")
    return {
        **recorder_attrs(cfg),
        "recorder": "ros2_bag",
        "bag": bag.path.name,
        "bag_storage": bag.storage,
        "ros_time_start": first_tick / NS,
        "ros_time_end": last_tick / NS,
        "recorded_at": datetime.fromtimestamp(first_tick / NS, timezone.utc).isoformat(),
        "refused_steps": sum(refused.values()),
        "refused_by_topic": refused,
        "last_refusal": last_refusal,
        "operator": cfg.operator,
    }


def import_bags(
    paths: Sequence[str | os.PathLike[str]],
    out: str,
    cfg: RecorderConfig,
    split: SplitRule,
    flags: EpisodeFlags,
    *,
    durable: bool = False,
) -> EpisodeStore:
    """Turn the bags into episodes of a new store at ``out``; all or nothing.

    Every bag is opened and checked (topics, types, markers) before the store is started, so most
    mistakes cost no writing; anything later discards the staged store (staging.py).
    """
    check_source(flags.source, episode="(command line)")
    if Location.parse(out).exists():
        raise StoreExistsError(f"{out}: already exists; import-bag writes a new store, pick another path")
    bags = find_bags(paths)
    if not bags:
        raise BagImportError("no bag given")
    plan: list[tuple[Path, list[Segment]]] = []
    for path in bags:
        with Bag(path, cfg, split.topic) as bag:
            segments = bag.segments(split)
        if not segments:
            raise BagImportError(f"{path}: no episode found with --split {split} (no start marker?)")
        plan.append((path, segments))
    schema = store_schema(cfg)
    with build_beside(out, "data import-bag") as staged, EpisodeStore.create(staged, schema, durable=durable) as store:
        buffer = EpisodeBuffer()
        for path, segments in plan:
            with Bag(path, cfg, split.topic) as bag:
                for seg in segments:
                    attrs = replay_segment(bag, seg, cfg, buffer)
                    labels = {"expert": flags.expert, "source": flags.source, "success": flags.success, **seg.flags}
                    attrs["split"] = str(split)
                    try:
                        buffer.commit(store, attrs=attrs, **labels)
                    except UserError as err:
                        raise BagImportError(f"{path}: {err}") from None
    return EpisodeStore.open(out, mode="r")
