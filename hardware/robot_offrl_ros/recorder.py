"""Record demonstrations on a real arm from ROS 2 topics into an episode store.

Observations (cameras, joint states, optional end-effector pose) and the commanded action (a leader
arm's JointState, a SpaceMouse TwistStamped, or the JointTrajectory / Float64MultiArray sent to the
controller) arrive on their own topics at their own rates. Each control tick takes, for every input,
the newest message stamped at or before the tick; if any input has nothing that recent within one
control period the whole step is refused (not padded), because a step that pairs a fresh image with a
stale action teaches the policy something the operator never did. Observation keys are the ones
``observations.py`` builds for the policy node, so recorded data trains a policy the node can run.

The record loop and its episode controls are the library's (``robot_offrl.record``), the same the sim
recorder drives; this module is a ``RecordBackend`` plus a second
node only exposes them as std_srvs services and forwards calls to a handler the session installs.
Each service call waits for the record loop to answer, so the services spin in a thread apart from
the subscriptions: a slow ``~/save`` never delays an input message.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_offrl.data import ActionSpace, KeySpec, StoreSchema
from robot_offrl.errors import ConfigError, ObservationError, UserError
from robot_offrl.record.backend import RecordBackend, Refused, Step

from .image_codec import decode_image, fit_image
from .params import CAMERA_RELIABILITY_PARAM, PARAMS, ParamSpec, check_camera_reliability, coerce_param
from .qos import camera_qos
from .safety import match_names
from .scheduling import message_time_s
from .spinning import SpinThread

NODE_NAME = "recorder_node"  # serves ~/start, ~/save, ...
INPUTS_NODE_NAME = "recorder_inputs"  # subscribes the configured topics
ACTION_SOURCES = ("joint_state", "twist", "joint_trajectory", "float64_array")
TWIST_NAMES = ["dx", "dy", "dz", "dax", "day", "daz"]
# The policy node's default arm, so a recorder and a node configured alike agree on joint_pos.
_DEFAULT_JOINTS = next(p.default for p in PARAMS if p.name == "joint_names")
BUFFER_LEN = 256  # messages kept per input: > 2 s of a 100 Hz topic, far more than any tick looks back

RECORDER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("control_rate_hz", "double", 20.0, "steps written per second"),
    ParamSpec("alignment_delay_s", "double", 0.03, "a tick is built for now - delay, so late messages arrive"),
    ParamSpec("start_timeout_s", "double", 3.0, "every input must publish within this or the recorder refuses"),
    ParamSpec("use_header_stamps", "bool", True, "align by header stamps; false: by arrival time"),
    ParamSpec("max_episode_steps", "int", 0, "save prompt opens at this length; 0: no limit"),
    ParamSpec("robot", "string", "Panda", "robot name stored in the schema"),
    ParamSpec("task", "string", "", "task name stored in the schema"),
    ParamSpec("joint_states_topic", "string", "/joint_states", "sensor_msgs/JointState of the follower arm"),
    ParamSpec("joint_names", "string[]", _DEFAULT_JOINTS, "arm joints -> observation joint_pos, in this order"),
    ParamSpec("gripper_joint_names", "string[]", [], "-> observation robot0_gripper_qpos; empty: none"),
    ParamSpec("ee_pose_topic", "string", "", "PoseStamped -> robot0_eef_pos / robot0_eef_quat; empty: none"),
    ParamSpec("camera_topics", "string[]", ["/camera/image_raw"], "Image topics (…/compressed: CompressedImage)"),
    ParamSpec("camera_keys", "string[]", ["agentview_image"], "observation key of each camera topic"),
    CAMERA_RELIABILITY_PARAM,
    ParamSpec("image_height", "int", 84, "stored image height (centre crop + resize)"),
    ParamSpec("image_width", "int", 84, "stored image width"),
    ParamSpec("action_source", "string", "joint_state", "joint_state, twist, joint_trajectory or float64_array"),
    ParamSpec("action_topic", "string", "/leader/joint_states", "topic of the commanded action"),
    ParamSpec("action_joint_names", "string[]", [], "joints of a joint action; empty: joint_names"),
    ParamSpec("twist_linear_scale", "double", 0.1, "twist: m/s that maps to action 1.0"),
    ParamSpec("twist_angular_scale", "double", 0.5, "twist: rad/s that maps to action 1.0"),
    ParamSpec("gripper_command_topic", "string", "", "std_msgs/Float64 in [-1, 1] appended as action 'gripper'"),
    ParamSpec("operator", "string", "", "stored in every episode's attrs"),
)
RECORDER_PARAM_NAMES = tuple(p.name for p in RECORDER_PARAMS)


@dataclass(frozen=True)
class StaleInputs:
    """Why a tick produced no step: the inputs (topics) that were too old or missing, and the details."""

    topics: tuple[str, ...]
    message: str


class SilentTopicError(UserError):
    """A configured input published nothing within the start timeout."""


@dataclass(frozen=True)
class RecorderConfig:
    """Validated recorder parameters (field names equal parameter names)."""

    control_rate_hz: float
    alignment_delay_s: float
    start_timeout_s: float
    use_header_stamps: bool
    max_episode_steps: int
    robot: str
    task: str
    joint_states_topic: str
    joint_names: tuple[str, ...]
    gripper_joint_names: tuple[str, ...]
    ee_pose_topic: str
    camera_topics: tuple[str, ...]
    camera_keys: tuple[str, ...]
    camera_reliability: str
    image_height: int
    image_width: int
    action_source: str
    action_topic: str
    action_joint_names: tuple[str, ...]
    twist_linear_scale: float
    twist_angular_scale: float
    gripper_command_topic: str
    operator: str

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def action_joints(self) -> tuple[str, ...]:
        return self.action_joint_names or self.joint_names


def parse_recorder_config(values: Mapping[str, Any]) -> RecorderConfig:
    """Validate raw parameter values; every mistake names the parameter and what to write instead."""
    unknown = sorted(set(values) - set(RECORDER_PARAM_NAMES))
    if unknown:
        raise ConfigError(f"unknown recorder parameter(s) {unknown}; known: {list(RECORDER_PARAM_NAMES)}")
    cfg = RecorderConfig(**{p.name: coerce_param(p, values.get(p.name, p.default), "recorder parameter")
                            for p in RECORDER_PARAMS})
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
    bad_keys = [k for k in cfg.camera_keys if not k.endswith("_image")]
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
    obs = [KeySpec("joint_pos", "float32", (len(cfg.joint_names),), "lowdim")]
    if cfg.gripper_joint_names:
        obs.append(KeySpec("robot0_gripper_qpos", "float32", (len(cfg.gripper_joint_names),), "lowdim"))
    if cfg.ee_pose_topic:
        obs.append(KeySpec("robot0_eef_pos", "float32", (3,), "lowdim"))
        obs.append(KeySpec("robot0_eef_quat", "float32", (4,), "lowdim"))
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


class RecorderNode(Node):
    """Subscribes every configured input into a TopicBuffer and builds aligned steps from them."""

    def __init__(self, cfg: RecorderConfig, *, context: Any = None, node_name: str = INPUTS_NODE_NAME) -> None:
        super().__init__(node_name, context=context)
        self.cfg = cfg
        self.errors: deque[str] = deque(maxlen=20)  # bad messages, newest last (shown when steps are refused)
        self.buffers: dict[str, TopicBuffer] = {}
        self._arm_idx: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray | None]] = {}
        self._action_idx: dict[tuple[str, ...], np.ndarray] = {}

        def sub(msg_type: Any, topic: str, handler: Callable[[Any, str], None],
                qos: QoSProfile = qos_profile_sensor_data) -> None:
            self.buffers[topic] = TopicBuffer(topic)
            self.create_subscription(msg_type, topic, lambda m, t=topic: self._guard(handler, m, t), qos)

        sub(JointState, cfg.joint_states_topic, self._on_joint_state)
        for topic in cfg.camera_topics:
            sub(CompressedImage if topic.endswith("/compressed") else Image, topic, self._on_image,
                camera_qos(cfg.camera_reliability))
        if cfg.ee_pose_topic:
            sub(PoseStamped, cfg.ee_pose_topic, self._on_pose)
        action_types = {"joint_state": JointState, "twist": TwistStamped, "joint_trajectory": JointTrajectory,
                        "float64_array": Float64MultiArray}
        sub(action_types[cfg.action_source], cfg.action_topic, self._on_action)
        if cfg.gripper_command_topic:
            sub(Float64, cfg.gripper_command_topic, self._on_gripper_command)

    # ------------------------------------------------------------------ time
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, msg: Any) -> float:
        return message_time_s(getattr(msg, "header", None), self.cfg.use_header_stamps, self.now_s())

    # ------------------------------------------------------------------ callbacks
    def _guard(self, handler: Callable[[Any, str], None], msg: Any, topic: str) -> None:
        """A malformed message is dropped and remembered; it never kills the executor thread."""
        try:
            handler(msg, topic)
        except UserError as err:
            self.errors.append(f"{topic}: {err}")

    def _on_joint_state(self, msg: Any, topic: str) -> None:
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
        self.buffers[topic].add(self._stamp(msg), (pos[arm], None if grip is None else pos[grip]))

    def _on_image(self, msg: Any, topic: str) -> None:
        self.buffers[topic].add(self._stamp(msg), msg)  # decoded only for the ticks that use it

    def _on_pose(self, msg: Any, topic: str) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self.buffers[topic].add(self._stamp(msg), (np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])))

    def _joint_action(self, names: tuple[str, ...], values: Any, topic: str) -> np.ndarray:
        idx = self._action_idx.get(names)
        if idx is None:
            idx = self._action_idx[names] = match_names(names, self.cfg.action_joints, topic)
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (len(names),):
            raise ObservationError(f"{len(names)} joint names but {arr.size} values")
        return arr[idx]

    def _on_action(self, msg: Any, topic: str) -> None:
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
        self.buffers[topic].add(self._stamp(msg), value)

    def _on_gripper_command(self, msg: Any, topic: str) -> None:
        value = float(msg.data)
        if not math.isfinite(value):
            raise ObservationError(f"non-finite gripper command {value}")
        self.buffers[topic].add(self._stamp(msg), float(np.clip(value, -1.0, 1.0)))

    # ------------------------------------------------------------------ sampling
    def silent_topics(self) -> list[str]:
        return [t for t, b in self.buffers.items() if b.count == 0]

    def wait_for_topics(self, timeout_s: float) -> None:
        """Refuse to start while any input is silent; the error names each silent topic."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.silent_topics():
            time.sleep(0.02)
        silent = self.silent_topics()
        if silent:
            raise SilentTopicError(
                f"refusing to record: {', '.join(silent)} published nothing within {timeout_s:.1f} s. "
                "Check the driver is running, the topic name (`ros2 topic list`, `ros2 topic hz TOPIC`), "
                "ROS_DOMAIN_ID, or remove the input from the recorder config"
            )

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
        obs: dict[str, np.ndarray] = {"joint_pos": arm.astype(np.float32)}
        if cfg.gripper_joint_names:
            obs["robot0_gripper_qpos"] = grip.astype(np.float32)
        if cfg.ee_pose_topic:
            pos, quat = picked[cfg.ee_pose_topic]
            obs["robot0_eef_pos"], obs["robot0_eef_quat"] = pos.astype(np.float32), quat.astype(np.float32)
        shape = (cfg.image_height, cfg.image_width, 3)
        for topic, key in zip(cfg.camera_topics, cfg.camera_keys, strict=True):
            try:
                obs[key] = fit_image(decode_image(picked[topic], topic), shape)
            except ObservationError as err:
                return StaleInputs((topic,), f"undecodable image: {err}")
        action = np.asarray(picked[cfg.action_topic], dtype=np.float32)
        if cfg.gripper_command_topic:
            action = np.append(action, np.float32(picked[cfg.gripper_command_topic]))
        return obs, action


class RecorderServices(Node):
    """The episode-control services (``~/start``, ``~/save``, ...), forwarded to the record loop's handler."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME) -> None:
        super().__init__(node_name, context=context)
        self.command_handler: Callable[[str, Any], tuple[bool, str]] | None = None
        for name in ("start", "save", "discard", "quit"):
            self.create_service(Trigger, f"~/{name}", self._trigger(name))
        for name in ("set_expert", "set_success"):
            self.create_service(SetBool, f"~/{name}", self._set_bool(name))

    def _call(self, name: str, value: Any = None) -> tuple[bool, str]:
        if self.command_handler is None:
            return False, "the record loop is not running yet"
        return self.command_handler(name, value)

    def _trigger(self, name: str) -> Callable[[Any, Any], Any]:
        def callback(request: Any, response: Any) -> Any:
            response.success, response.message = self._call(name)
            return response

        return callback

    def _set_bool(self, name: str) -> Callable[[Any, Any], Any]:
        def callback(request: Any, response: Any) -> Any:
            response.success, response.message = self._call(name, bool(request.data))
            return response

        return callback


class RosBackend(RecordBackend):
    """The record loop's back end on a ROS 2 arm: the inputs node and the services node, each on its own spin
    thread. The operator resets the scene by hand and decides success at save time, so the base class's
    no-op ``new_scene``, ``replay_scene``, ``idle`` and ``detected_success`` (None) are what a real arm needs."""

    def __init__(self, cfg: RecorderConfig, context: Any = None) -> None:
        self.cfg = cfg
        self.control_rate_hz = cfg.control_rate_hz
        self.max_steps: int | None = cfg.max_episode_steps or None
        self.node = RecorderNode(cfg, context=context)
        self.services = RecorderServices(context=context)
        self._spinners = [SpinThread(self.node, context=context), SpinThread(self.services, context=context)]
        self._t_start = 0.0
        self._refused_by_topic: dict[str, int] = {}
        self._last_refusal = ""

    def set_command_handler(self, handler: Callable[[str, Any], tuple[bool, str]]) -> None:
        self.services.command_handler = handler

    def wait_for_topics(self) -> None:
        self.node.wait_for_topics(self.cfg.start_timeout_s)

    def schema(self) -> StoreSchema:
        return store_schema(self.cfg)

    def begin_episode(self) -> None:
        self._t_start = self.node.now_s()
        self._refused_by_topic = {}
        self._last_refusal = ""

    def step(self) -> Step | Refused:
        result = self.node.sample(self.node.now_s() - self.cfg.alignment_delay_s)
        if isinstance(result, StaleInputs):
            for topic in result.topics:
                self._refused_by_topic[topic] = self._refused_by_topic.get(topic, 0) + 1
            self._last_refusal = result.message
            return Refused(result.message)
        return Step(obs=result[0], action=result[1])

    def episode_attrs(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "task": cfg.task,
            "robot": cfg.robot,
            "recorder": "ros2",
            "action_source": cfg.action_source,
            "topics": {"joint_states": cfg.joint_states_topic, "action": cfg.action_topic,
                       "cameras": dict(zip(cfg.camera_keys, cfg.camera_topics, strict=True)),
                       "ee_pose": cfg.ee_pose_topic, "gripper_command": cfg.gripper_command_topic},
            "ros_time_start": self._t_start,
            "ros_time_end": self.node.now_s(),
            "refused_by_topic": dict(self._refused_by_topic),
            "last_refusal": self._last_refusal,
        }

    def close(self) -> None:
        for spinner in self._spinners:
            spinner.close()
        self.services.destroy_node()
        self.node.destroy_node()
