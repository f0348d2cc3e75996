"""What the ROS 2 recorder does with its inputs, without rclpy: config, schema, alignment, steps.

The live recorder (``recorder.py``, messages from rclpy subscriptions) and the bag importer
(``bag_import.py``, messages read from a rosbag2 file) both feed messages into one ``RecordInputs``
and ask it for the step at a tick time. So a bag imports with exactly the topic -> key mapping, the
stamp alignment and stale-step refusal, the image decoding and the message checks of a live
recording: there is one implementation, and the importer needs no ROS install (messages only need the
attributes of the ROS types, which the ``rosbags`` deserialiser's classes have too).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_offrl.data import ActionSpace, KeySpec, StoreSchema
from robot_offrl.errors import ConfigError, ObservationError, UserError

from .image_codec import decode_image, fit_image
from .params import (
    CAMERA_KEY_SUFFIX,
    EEF_POS_KEY,
    EEF_QUAT_KEY,
    GRIPPER_QPOS_KEY,
    JOINT_POS_KEY,
    PANDA_JOINTS,
    ParamSpec,
    camera_reliability_param,
    check_camera_reliability,
    param,
    param_table,
    parse_params,
)
from .safety import match_names
from .scheduling import message_time_s

ACTION_SOURCES = ("joint_state", "twist", "joint_trajectory", "float64_array")
TWIST_NAMES = ["dx", "dy", "dz", "dax", "day", "daz"]
BUFFER_LEN = 256  # messages kept per input: > 2 s of a 100 Hz topic, far more than any tick looks back



@dataclass(frozen=True)
class StaleInputs:
    """Why a tick produced no step: the inputs (topics) that were too old or missing, and the details."""

    topics: tuple[str, ...]
    message: str
    undecodable: bool = False  # a camera frame that cannot be decoded, not an old one


class SilentTopicError(UserError):
    """A configured input published nothing within the start timeout."""


@dataclass(frozen=True)
class RecorderConfig:
    """The recorder's parameters (field names equal parameter names), validated by ``parse_recorder_config``.

    joint_names defaults to the policy node's arm, so a recorder and a node configured alike agree on
    joint_pos.
    """

    control_rate_hz: float = param(20.0, "double", "steps written per second")
    alignment_delay_s: float = param(0.03, "double", "a tick is built for now - delay, so late messages arrive")
    start_timeout_s: float = param(3.0, "double", "every input must publish within this or the recorder refuses")
    use_header_stamps: bool = param(True, "bool", "align by header stamps; false: by arrival time")
    use_sim_time: bool = param(
        False, "bool",
        "a simulated arm's /clock: steps are one control period of sim time apart, however slow the sim",
    )
    max_episode_steps: int = param(0, "int", "save prompt opens at this length; 0: no limit")
    robot: str = param("Panda", "string", "robot name stored in the schema")
    task: str = param("", "string", "task name stored in the schema")
    joint_states_topic: str = param("/joint_states", "string", "sensor_msgs/JointState of the follower arm")
    joint_names: tuple[str, ...] = param(
        PANDA_JOINTS, "string[]",
        "arm joints -> observation joint_pos, in this order",
    )
    gripper_joint_names: tuple[str, ...] = param((), "string[]", "-> observation robot0_gripper_qpos; empty: none")
    ee_pose_topic: str = param("", "string", "PoseStamped -> robot0_eef_pos / robot0_eef_quat; empty: none")
    camera_topics: tuple[str, ...] = param(
        ("/camera/image_raw",), "string[]",
        "Image topics (…/compressed: CompressedImage)",
    )
    camera_keys: tuple[str, ...] = param(("agentview_image",), "string[]", "observation key of each camera topic")
    camera_reliability: str = camera_reliability_param()
    image_height: int = param(84, "int", "stored image height (centre crop + resize)")
    image_width: int = param(84, "int", "stored image width")
    action_source: str = param("joint_state", "string", "joint_state, twist, joint_trajectory or float64_array")
    action_topic: str = param("/leader/joint_states", "string", "topic of the commanded action")
    action_joint_names: tuple[str, ...] = param((), "string[]", "joints of a joint action; empty: joint_names")
    twist_linear_scale: float = param(0.1, "double", "twist: m/s that maps to action 1.0")
    twist_angular_scale: float = param(0.5, "double", "twist: rad/s that maps to action 1.0")
    gripper_command_topic: str = param("", "string", "std_msgs/Float64 in [-1, 1] appended as action 'gripper'")
    operator: str = param("", "string", "stored in every episode's attrs")

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def action_joints(self) -> tuple[str, ...]:
        return self.action_joint_names or self.joint_names


RECORDER_PARAMS: tuple[ParamSpec, ...] = param_table(RecorderConfig)
RECORDER_PARAM_NAMES = tuple(p.name for p in RECORDER_PARAMS)


def parse_recorder_config(values: Mapping[str, Any]) -> RecorderConfig:
    """Validate raw parameter values; every mistake names the parameter and what to write instead."""
    cfg = parse_params(RecorderConfig, RECORDER_PARAMS, values, "recorder parameter")
    for name in ("control_rate_hz", "start_timeout_s", "twist_linear_scale", "twist_angular_scale",
                 "image_height", "image_width"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"recorder parameter {name} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.alignment_delay_s < cfg.period_s:
        raise ConfigError(
            f"alignment_delay_s must be in [0, one control period = {cfg.period_s:.3f} s), got {cfg.alignment_delay_s}"
        )
    if cfg.max_episode_steps < 0:
        raise ConfigError(f"max_episode_steps must be >= 0 (0: no limit), got {cfg.max_episode_steps}")
    check_camera_reliability(cfg.camera_reliability)
    if cfg.action_source not in ACTION_SOURCES:
        raise ConfigError(f"action_source must be one of {ACTION_SOURCES}, got {cfg.action_source!r}")
    if not cfg.action_topic:
        raise ConfigError("action_topic is empty: name the topic the teleop commands arrive on")
    if not cfg.joint_names:
        raise ConfigError("joint_names is empty: list the follower arm's joints")
    if len(cfg.camera_topics) != len(cfg.camera_keys):
        raise ConfigError(
            f"camera_topics ({len(cfg.camera_topics)}) and camera_keys ({len(cfg.camera_keys)}) must pair up"
        )
    bad_keys = [k for k in cfg.camera_keys if not k.endswith(CAMERA_KEY_SUFFIX)]
    if bad_keys or len(set(cfg.camera_keys)) != len(cfg.camera_keys):
        raise ConfigError(f"camera_keys must be unique and end in '_image' (e.g. agentview_image), got "
                          f"{list(cfg.camera_keys)}")
    topics = [cfg.joint_states_topic, *cfg.camera_topics, cfg.action_topic, cfg.ee_pose_topic,
              cfg.gripper_command_topic]
    topics = [t for t in topics if t]
    dupes = sorted({t for t in topics if topics.count(t) > 1})
    if dupes:
        raise ConfigError(f"topic(s) {dupes} are configured for two inputs; each input needs its own topic")
    return cfg


def load_recorder_yaml(path: str | Path) -> RecorderConfig:
    """Read ``<node>: ros__parameters: {...}`` (a ROS 2 params file) or a flat mapping of parameters."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recorder config {path} not found; start from hardware/config/record.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    nested = [v["ros__parameters"] for v in raw.values() if isinstance(v, Mapping) and "ros__parameters" in v]
    if len(nested) > 1:
        raise ConfigError(f"{path}: more than one node section with ros__parameters; keep only the recorder's")
    params = nested[0] if nested else raw
    if not isinstance(params, Mapping):
        raise ConfigError(f"{path}: ros__parameters must be a mapping")
    try:
        return parse_recorder_config(params)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def store_schema(cfg: RecorderConfig) -> StoreSchema:
    """Observation keys as the policy node names them; the action space as the teleop source defines it."""
    obs = [KeySpec(JOINT_POS_KEY, "float32", (len(cfg.joint_names),), "lowdim")]
    if cfg.gripper_joint_names:
        obs.append(KeySpec(GRIPPER_QPOS_KEY, "float32", (len(cfg.gripper_joint_names),), "lowdim"))
    if cfg.ee_pose_topic:
        obs.append(KeySpec(EEF_POS_KEY, "float32", (3,), "lowdim"))
        obs.append(KeySpec(EEF_QUAT_KEY, "float32", (4,), "lowdim"))
    for key in cfg.camera_keys:
        obs.append(KeySpec(key, "uint8", (cfg.image_height, cfg.image_width, 3), "rgb"))
    if cfg.action_source == "twist":
        names, units, mode = list(TWIST_NAMES), ["normalized"] * 6, "delta"
        low, high = [-1.0] * 6, [1.0] * 6
    else:
        joints = list(cfg.action_joints)
        names, units, mode = joints, ["rad"] * len(joints), "absolute"
        low, high = [-math.inf] * len(joints), [math.inf] * len(joints)
    if cfg.gripper_command_topic:
        names, units, low, high = names + ["gripper"], units + ["normalized"], low + [-1.0], high + [1.0]
    action = ActionSpace(names=names, units=units, mode=mode, low=low, high=high)  # type: ignore[arg-type]
    return StoreSchema(obs=obs, action=action, control_rate_hz=cfg.control_rate_hz, robot=cfg.robot,
                       task=cfg.task)


class TopicBuffer:
    """Recent (stamp, value) pairs of one input; ``at_or_before(t)`` is the sample-and-hold lookup."""

    def __init__(self, topic: str, maxlen: int = BUFFER_LEN) -> None:
        self.topic = topic
        self._items: deque[tuple[float, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, stamp: float, value: Any) -> None:
        with self._lock:
            self._items.append((stamp, value))
            self.count += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def at_or_before(self, t: float) -> tuple[float, Any] | None:
        """Newest entry stamped <= t (stamps may arrive slightly out of order from multi-threaded drivers)."""
        with self._lock:
            best: tuple[float, Any] | None = None
            for item in self._items:
                if item[0] <= t and (best is None or item[0] >= best[0]):
                    best = item
            return best

    def newest_stamp(self) -> float | None:
        with self._lock:
            return self._items[-1][0] if self._items else None




# ROS type of each input, by role; the live node maps these to rclpy classes, the importer checks bags by them.
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
ACTION_TYPES = {"joint_state": JOINT_STATE_TYPE, "twist": "geometry_msgs/msg/TwistStamped",
                "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
                "float64_array": "std_msgs/msg/Float64MultiArray"}


def camera_type(topic: str) -> str:
    return "sensor_msgs/msg/CompressedImage" if topic.endswith("/compressed") else "sensor_msgs/msg/Image"


def input_types(cfg: RecorderConfig) -> dict[str, str]:
    """Every configured input topic and the ROS message type it must carry, in subscription order."""
    types = {cfg.joint_states_topic: JOINT_STATE_TYPE}
    types.update({topic: camera_type(topic) for topic in cfg.camera_topics})
    if cfg.ee_pose_topic:
        types[cfg.ee_pose_topic] = "geometry_msgs/msg/PoseStamped"
    types[cfg.action_topic] = ACTION_TYPES[cfg.action_source]
    if cfg.gripper_command_topic:
        types[cfg.gripper_command_topic] = "std_msgs/msg/Float64"
    return types


def recorder_attrs(cfg: RecorderConfig) -> dict[str, Any]:
    """Episode attributes that say how a step was built from topics (live and imported episodes alike)."""
    return {
        "task": cfg.task,
        "robot": cfg.robot,
        "action_source": cfg.action_source,
        "topics": {"joint_states": cfg.joint_states_topic, "action": cfg.action_topic,
                   "cameras": dict(zip(cfg.camera_keys, cfg.camera_topics, strict=True)),
                   "ee_pose": cfg.ee_pose_topic, "gripper_command": cfg.gripper_command_topic},
    }


class RecordInputs:
    """One TopicBuffer per configured input; turns messages into values and builds aligned steps.

    ``add`` raises a UserError for a malformed message (the importer stops on it); ``add_guarded`` drops
    and remembers it (a live recorder must keep running).
    """

    def __init__(self, cfg: RecorderConfig) -> None:
        self.cfg = cfg
        self.errors: deque[str] = deque(maxlen=20)  # bad messages, newest last (shown when steps are refused)
        self.buffers: dict[str, TopicBuffer] = {topic: TopicBuffer(topic) for topic in input_types(cfg)}
        self._arm_idx: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray | None]] = {}
        self._action_idx: dict[tuple[str, ...], np.ndarray] = {}
        self._handlers: dict[str, Callable[[Any, str], Any]] = {cfg.joint_states_topic: self._joint_state}
        self._handlers.update({topic: self._image for topic in cfg.camera_topics})
        if cfg.ee_pose_topic:
            self._handlers[cfg.ee_pose_topic] = self._pose
        self._handlers[cfg.action_topic] = self._action
        if cfg.gripper_command_topic:
            self._handlers[cfg.gripper_command_topic] = self._gripper_command

    def add(self, topic: str, msg: Any, arrival_s: float) -> None:
        """File ``msg`` under its header stamp (or ``arrival_s``, as ``use_header_stamps`` says)."""
        value = self._handlers[topic](msg, topic)
        stamp = message_time_s(getattr(msg, "header", None), self.cfg.use_header_stamps, arrival_s)
        self.buffers[topic].add(stamp, value)

    def add_guarded(self, topic: str, msg: Any, arrival_s: float) -> None:
        """A malformed message is dropped and remembered; it never kills the executor thread."""
        try:
            self.add(topic, msg, arrival_s)
        except UserError as err:
            self.errors.append(f"{topic}: {err}")

    def clear(self) -> None:
        for buf in self.buffers.values():
            buf.clear()

    # ------------------------------------------------------------------ message -> value
    def _joint_state(self, msg: Any, topic: str) -> tuple[np.ndarray, np.ndarray | None]:
        names = tuple(msg.name)
        idx = self._arm_idx.get(names)
        if idx is None:
            arm = match_names(names, self.cfg.joint_names, topic)
            grip = match_names(names, self.cfg.gripper_joint_names, topic) if self.cfg.gripper_joint_names else None
            idx = self._arm_idx[names] = (arm, grip)
        pos = np.asarray(msg.position, dtype=np.float64)
        if pos.shape != (len(names),):
            raise ObservationError(f"{len(names)} joint names but {pos.size} positions")
        arm, grip = idx
        return pos[arm], None if grip is None else pos[grip]

    def _image(self, msg: Any, topic: str) -> Any:
        return msg  # decoded only for the ticks that use it

    def _pose(self, msg: Any, topic: str) -> tuple[np.ndarray, np.ndarray]:
        p, q = msg.pose.position, msg.pose.orientation
        return np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])

    def _joint_action(self, names: tuple[str, ...], values: Any, topic: str) -> np.ndarray:
        idx = self._action_idx.get(names)
        if idx is None:
            idx = self._action_idx[names] = match_names(names, self.cfg.action_joints, topic)
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (len(names),):
            raise ObservationError(f"{len(names)} joint names but {arr.size} values")
        return arr[idx]

    def _action(self, msg: Any, topic: str) -> np.ndarray:
        source = self.cfg.action_source
        if source == "joint_state":
            value = self._joint_action(tuple(msg.name), msg.position, topic)
        elif source == "joint_trajectory":
            if not msg.points:
                raise ObservationError("JointTrajectory without points carries no command")
            value = self._joint_action(tuple(msg.joint_names), msg.points[0].positions, topic)
        elif source == "float64_array":
            value = np.asarray(msg.data, dtype=np.float64)
            if value.shape != (len(self.cfg.action_joints),):
                raise ObservationError(
                    f"{value.size} commands but action_joint_names has {len(self.cfg.action_joints)} joints"
                )
        else:
            lin, ang = msg.twist.linear, msg.twist.angular
            value = np.concatenate([
                np.array([lin.x, lin.y, lin.z]) / self.cfg.twist_linear_scale,
                np.array([ang.x, ang.y, ang.z]) / self.cfg.twist_angular_scale,
            ]).clip(-1.0, 1.0)
        if not np.all(np.isfinite(value)):
            raise ObservationError(f"non-finite action {value.tolist()}")
        return value

    def _gripper_command(self, msg: Any, topic: str) -> float:
        value = float(msg.data)
        if not math.isfinite(value):
            raise ObservationError(f"non-finite gripper command {value}")
        return float(np.clip(value, -1.0, 1.0))

    # ------------------------------------------------------------------ sampling
    def silent_topics(self) -> list[str]:
        return [t for t, b in self.buffers.items() if b.count == 0]

    def sample(self, t: float) -> tuple[dict[str, np.ndarray], np.ndarray] | StaleInputs:
        """The step for tick time ``t``, or the reason it is refused (which inputs are too old)."""
        cfg, period = self.cfg, self.cfg.period_s
        picked: dict[str, Any] = {}
        stale: list[str] = []
        stale_topics: list[str] = []
        for topic, buf in self.buffers.items():
            item = buf.at_or_before(t)
            if item is None:
                newest = buf.newest_stamp()
                hint = (f"newest is {1000 * (newest - t):.0f} ms after the tick: clocks out of sync? "
                        "(chrony, or use_header_stamps: false)" if newest is not None else "nothing received")
                stale.append(f"{topic} ({hint})")
                stale_topics.append(topic)
            elif t - item[0] > period:
                stale.append(f"{topic} ({1000 * (t - item[0]):.0f} ms old > {1000 * period:.0f} ms)")
                stale_topics.append(topic)
            else:
                picked[topic] = item[1]
        if stale:
            recent = f"; last bad message: {self.errors[-1]}" if self.errors else ""
            return StaleInputs(tuple(stale_topics), "stale input: " + ", ".join(stale) + recent)
        arm, grip = picked[cfg.joint_states_topic]
        obs: dict[str, np.ndarray] = {JOINT_POS_KEY: arm.astype(np.float32)}
        if cfg.gripper_joint_names:
            obs[GRIPPER_QPOS_KEY] = grip.astype(np.float32)
        if cfg.ee_pose_topic:
            pos, quat = picked[cfg.ee_pose_topic]
            obs[EEF_POS_KEY], obs[EEF_QUAT_KEY] = pos.astype(np.float32), quat.astype(np.float32)
        shape = (cfg.image_height, cfg.image_width, 3)
        for topic, key in zip(cfg.camera_topics, cfg.camera_keys, strict=True):
            try:
                obs[key] = fit_image(decode_image(picked[topic], topic), shape)
            except ObservationError as err:
                return StaleInputs((topic,), f"undecodable image: {err}", undecodable=True)
        action = np.asarray(picked[cfg.action_topic], dtype=np.float32)
        if cfg.gripper_command_topic:
            action = np.append(action, np.float32(picked[cfg.gripper_command_topic]))
        return obs, action
