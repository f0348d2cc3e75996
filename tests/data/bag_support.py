"""Write real rosbag2 recordings (MCAP or sqlite3) with the ``rosbags`` library's own writer.

The topics are those of hardware/config/record.yaml: the follower's /joint_states (7 arm + 2 finger
joints), a raw camera on /camera/image_raw and a leader arm on /leader/joint_states. Every message
carries its own header stamp in its payload (joint 1's position = stamp - T0; the camera frame's
colour = frame number), so a test can tell which message each imported step used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1000.0  # bag time of the first message, s
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
LATENCY_S = 0.004  # header stamp = log (arrival) time - latency
RATES = {"/joint_states": 50.0, "/camera/image_raw": 30.0, "/leader/joint_states": 50.0}


@dataclass
class BagSpec:
    """What to write: time spans of input traffic, marker messages, and deliberate faults."""

    spans: Sequence[tuple[float, float]] = ((0.0, 1.0),)  # seconds after T0 during which inputs publish
    markers: Sequence[tuple[float, Any]] = ()  # (s after T0, str or bool) on /episode
    encoding: str = "rgb8"
    drop_topics: Sequence[str] = ()
    image_hw: tuple[int, int] = (48, 64)
    extra: dict[str, Any] = field(default_factory=dict)


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def _header(ts: Any, stamp: float, frame: str = "") -> Any:
    sec = int(stamp)
    t = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=round((stamp - sec) * 1e9))
    return ts.types["std_msgs/msg/Header"](stamp=t, frame_id=frame)


def joint_state(ts: Any, stamp: float, names: list[str], first: float) -> Any:
    pos = np.arange(len(names), dtype=np.float64) * 0.1
    pos[0] = first
    zeros = np.zeros(len(names))
    return ts.types["sensor_msgs/msg/JointState"](header=_header(ts, stamp), name=list(names), position=pos,
                                                  velocity=zeros, effort=zeros)


def image(ts: Any, stamp: float, frame: int, encoding: str, hw: tuple[int, int]) -> Any:
    h, w = hw
    channels = 2 if encoding == "16UC1" else 3
    data = np.full((h, w, channels), frame % 256, dtype=np.uint8)
    return ts.types["sensor_msgs/msg/Image"](header=_header(ts, stamp, "cam"), height=h, width=w, encoding=encoding,
                                             is_bigendian=0, step=w * channels, data=data.reshape(-1))


def write_bag(path: Path, storage: str, spec: BagSpec | None = None) -> Path:
    """A rosbag2 folder at ``path`` (storage "mcap" or "sqlite3") following ``spec``."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    spec = spec or BagSpec()
    ts = _typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    events: list[tuple[float, str, Any, str]] = []  # (log time s, topic, msg, type)
    for topic, rate in RATES.items():
        if topic in spec.drop_topics:
            continue
        for lo, hi in spec.spans:
            n = int(round((hi - lo) * rate))
            for k in range(n):
                t_log = T0 + lo + k / rate + (0.001 if topic == "/leader/joint_states" else 0.0)
                stamp = t_log - LATENCY_S
                if topic == "/camera/image_raw":
                    frame = int(round((lo + k / rate) * rate))
                    msg, kind = image(ts, stamp, frame, spec.encoding, spec.image_hw), "sensor_msgs/msg/Image"
                elif topic == "/joint_states":
                    msg, kind = joint_state(ts, stamp, ARM + FINGERS, stamp - T0), "sensor_msgs/msg/JointState"
                else:
                    msg, kind = joint_state(ts, stamp, ARM, -(stamp - T0)), "sensor_msgs/msg/JointState"
                events.append((t_log, topic, msg, kind))
    for t, value in spec.markers:
        if isinstance(value, bool):
            events.append((T0 + t, "/episode", ts.types["std_msgs/msg/Bool"](data=value), "std_msgs/msg/Bool"))
        else:
            events.append((T0 + t, "/episode", ts.types["std_msgs/msg/String"](data=value), "std_msgs/msg/String"))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: dict[str, Any] = {}
        for t_log, topic, msg, kind in events:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, kind, typestore=ts)
            writer.write(conns[topic], int(round(t_log * 1e9)), ts.serialize_cdr(msg, kind))
    return path


def expected_joint(tick_s: float, delay_s: float) -> float:
    """joint_pos[0] the recorder must store for a tick at bag time ``tick_s`` (50 Hz, stamps = log - latency)."""
    rate = RATES["/joint_states"]
    t_sample = tick_s - delay_s
    # newest message with stamp <= t_sample and log time <= tick (always true here: stamp < log <= tick)
    k = int(np.floor((t_sample + LATENCY_S - T0) * rate + 1e-9))
    return (T0 + k / rate - LATENCY_S) - T0
