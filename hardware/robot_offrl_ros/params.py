"""Every parameter of the policy node, in one table.

The node declares exactly these, config/policy.yaml documents exactly these and a test checks
both agree, so a parameter cannot be renamed in one place and silently ignored in another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robot_offrl.errors import ConfigError

OUTPUT_MODES = ("trajectory", "forward", "servo")
CAMERA_RELIABILITY = ("reliable", "best_effort")
PLAN_AHEAD_MODES = ("auto", "off")

# The Franka Emika Panda as shipped by franka_ros2: a sensible, documented default arm.
_PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
_PANDA_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
_PANDA_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
_PANDA_VEL = [2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``kind`` is bool, int, double, string, string[] or double[]."""

    name: str
    kind: str
    default: Any
    description: str


# The policy node and the recorder subscribe to cameras the same way (one parameter, one rule).
CAMERA_RELIABILITY_PARAM = ParamSpec(
    "camera_reliability", "string", "reliable",
    "camera subscriptions: reliable (lost fragments of big frames are resent; needs a reliable "
    "publisher) or best_effort (matches any publisher, loses whole frames under load)",
)


def check_camera_reliability(value: str) -> None:
    if value not in CAMERA_RELIABILITY:
        raise ConfigError(f"camera_reliability must be one of {CAMERA_RELIABILITY}, got {value!r}")


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "string", "", "run or checkpoint folder loaded by PolicyRuntime.load"),
    ParamSpec("device", "string", "auto", "torch device for inference: auto, cpu, cuda, cuda:1"),
    ParamSpec("num_candidates", "int", 0,
              "action chunks sampled per step and ranked by the critic (0: the checkpoint's own setting)"),
    ParamSpec("num_inference_steps", "int", 0, "denoising steps per sampled chunk (0: the checkpoint's)"),
    ParamSpec("n_action_steps", "int", 0, "actions per chunk sent to the controller (0: the checkpoint's)"),
    ParamSpec("control_rate_hz", "double", 0.0, "inference and command rate; 0 uses the checkpoint's rate"),
    ParamSpec("autostart", "bool", False, "configure at start-up and activate once observations are fresh"),
    ParamSpec("enable_control", "bool", False, "false: dry run, nothing is sent to the controllers"),
    ParamSpec("output_mode", "string", "trajectory", "trajectory, forward or servo"),
    ParamSpec("joint_names", "string[]", _PANDA_JOINTS, "arm joints in the controller's order"),
    ParamSpec("joint_states_topic", "string", "/joint_states", "sensor_msgs/JointState input"),
    ParamSpec("camera_topics", "string[]", ["/camera/image_raw"], "image topics (…/compressed: CompressedImage)"),
    ParamSpec("camera_keys", "string[]", ["agentview_image"], "observation key of each camera topic, same order"),
    CAMERA_RELIABILITY_PARAM,
    ParamSpec("ee_pose_topic", "string", "", "geometry_msgs/PoseStamped of the end effector; empty: none"),
    ParamSpec("estop_topic", "string", "/emergency_stop", "std_msgs/Bool emergency stop (true stops)"),
    ParamSpec("trajectory_topic", "string", "/joint_trajectory_controller/joint_trajectory", "trajectory mode"),
    ParamSpec("forward_topic", "string", "/forward_position_controller/commands", "forward mode"),
    ParamSpec("forward_rate_hz", "double", 100.0, "forward and servo modes: command stream rate"),
    ParamSpec("servo_topic", "string", "/servo_node/delta_twist_cmds", "servo mode TwistStamped topic"),
    ParamSpec("servo_frame_id", "string", "base_link", "servo mode: frame of the twist"),
    ParamSpec("servo_linear_scale", "double", 0.1, "servo mode: m/s per unit of a dx/dy/dz action"),
    ParamSpec("servo_angular_scale", "double", 0.5, "servo mode: rad/s per unit of a dax/day/daz action"),
    ParamSpec("gripper_topic", "string", "", "gripper JointTrajectory topic; empty: no gripper output"),
    ParamSpec("gripper_action_name", "string", "gripper", "action name that drives the gripper"),
    ParamSpec("gripper_joint_names", "string[]", [], "gripper controller joints"),
    ParamSpec("gripper_open_position", "double", 0.04, "gripper joint position at the action's low bound"),
    ParamSpec("gripper_closed_position", "double", 0.0, "gripper joint position at the action's high bound"),
    ParamSpec("image_timeout_s", "double", 0.25, "watchdog bound on image age"),
    ParamSpec("joint_state_timeout_s", "double", 0.1, "watchdog bound on joint state age"),
    ParamSpec("pose_timeout_s", "double", 0.1, "watchdog bound on end-effector pose age"),
    ParamSpec("use_header_stamps", "bool", True, "age from header stamps; false: from arrival time"),
    ParamSpec("joint_lower_limits", "double[]", _PANDA_LOWER, "rad, per joint"),
    ParamSpec("joint_upper_limits", "double[]", _PANDA_UPPER, "rad, per joint"),
    ParamSpec("max_joint_velocity", "double[]", _PANDA_VEL, "rad/s, per joint"),
    ParamSpec("velocity_scale", "double", 1.0, "multiplies max_joint_velocity; 0.1 for first motions"),
    ParamSpec("limit_violation", "string", "clamp", "clamp or hold when a command leaves the joint limits"),
    ParamSpec("workspace_min", "double[]", [0.2, -0.5, 0.0], "end-effector box lower corner, m"),
    ParamSpec("workspace_max", "double[]", [0.8, 0.5, 0.7], "end-effector box upper corner, m"),
    ParamSpec("min_lead_time_s", "double", 0.0, "drop actions due sooner than this after inference"),
    ParamSpec("plan_ahead", "string", "auto",
              "auto: when inference is slower than a period, time each plan so its chunk arrives before the "
              "current one ends and splice it on without a jump; off: replan every period, chunks replace"),
    ParamSpec("plan_ahead_margin_s", "double", 0.1,
              "plan_ahead auto: the next chunk is due this long before the current chunk's last action"),
    ParamSpec("hold_time_s", "double", 0.1, "time_from_start of the single point of a hold trajectory"),
    ParamSpec("diagnostics_rate_hz", "double", 1.0, "/diagnostics and ~/status publication rate"),
    ParamSpec("hardware_id", "string", "arm", "hardware_id reported on /diagnostics"),
)

PARAM_NAMES: tuple[str, ...] = tuple(spec.name for spec in PARAMS)


@dataclass(frozen=True)
class NodeConfig:
    """The validated parameters (field names equal parameter names)."""

    checkpoint: str
    device: str
    num_candidates: int
    num_inference_steps: int
    n_action_steps: int
    control_rate_hz: float
    autostart: bool
    enable_control: bool
    output_mode: str
    joint_names: tuple[str, ...]
    joint_states_topic: str
    camera_topics: tuple[str, ...]
    camera_keys: tuple[str, ...]
    camera_reliability: str
    ee_pose_topic: str
    estop_topic: str
    trajectory_topic: str
    forward_topic: str
    forward_rate_hz: float
    servo_topic: str
    servo_frame_id: str
    servo_linear_scale: float
    servo_angular_scale: float
    gripper_topic: str
    gripper_action_name: str
    gripper_joint_names: tuple[str, ...]
    gripper_open_position: float
    gripper_closed_position: float
    image_timeout_s: float
    joint_state_timeout_s: float
    pose_timeout_s: float
    use_header_stamps: bool
    joint_lower_limits: tuple[float, ...]
    joint_upper_limits: tuple[float, ...]
    max_joint_velocity: tuple[float, ...]
    velocity_scale: float
    limit_violation: str
    workspace_min: tuple[float, ...]
    workspace_max: tuple[float, ...]
    min_lead_time_s: float
    plan_ahead: str
    plan_ahead_margin_s: float
    hold_time_s: float
    diagnostics_rate_hz: float
    hardware_id: str


def coerce_param(spec: ParamSpec, value: Any, what: str = "parameter") -> Any:
    """One typed value per ParamSpec; shared by the policy node and the recorder so both accept
    exactly the same YAML. Booleans are not numbers and a string is not a list."""
    if value is None:  # an empty array in YAML arrives as "not set"
        value = spec.default
    try:
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if spec.kind in ("int", "double"):
            if isinstance(value, bool) or (spec.kind == "int" and float(value) != int(value)):
                raise TypeError
            return int(value) if spec.kind == "int" else float(value)
        if spec.kind == "string":
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(value, str):
            raise TypeError
        if spec.kind == "string[]":
            return tuple(str(v) for v in value)
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {spec.name} must be {spec.kind}, got {value!r}") from None


def parse_config(values: Mapping[str, Any]) -> NodeConfig:
    """Validate raw parameter values into a NodeConfig; every mistake names the parameter."""
    unknown = sorted(set(values) - set(PARAM_NAMES))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; the node declares {list(PARAM_NAMES)}")
    kw = {spec.name: coerce_param(spec, values.get(spec.name, spec.default)) for spec in PARAMS}
    cfg = NodeConfig(**kw)
    for name in ("num_candidates", "num_inference_steps", "n_action_steps"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"parameter {name} must be >= 0 (0: the checkpoint's own setting), got {getattr(cfg, name)}")
    positive = ("forward_rate_hz",
                "image_timeout_s", "joint_state_timeout_s", "pose_timeout_s", "hold_time_s",
                "diagnostics_rate_hz", "servo_linear_scale", "servo_angular_scale")
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"parameter {name} must be > 0, got {getattr(cfg, name)}")
    if cfg.control_rate_hz < 0:
        raise ConfigError(f"control_rate_hz must be >= 0 (0: the checkpoint's rate), got {cfg.control_rate_hz}")
    if cfg.output_mode not in OUTPUT_MODES:
        raise ConfigError(f"output_mode must be one of {OUTPUT_MODES}, got {cfg.output_mode!r}")
    check_camera_reliability(cfg.camera_reliability)
    if cfg.plan_ahead not in PLAN_AHEAD_MODES:
        raise ConfigError(f"plan_ahead must be one of {PLAN_AHEAD_MODES}, got {cfg.plan_ahead!r}")
    if not cfg.plan_ahead_margin_s >= 0:
        raise ConfigError(f"plan_ahead_margin_s must be >= 0, got {cfg.plan_ahead_margin_s}")
    if len(cfg.camera_topics) != len(cfg.camera_keys):
        raise ConfigError(
            f"camera_topics ({len(cfg.camera_topics)}) and camera_keys ({len(cfg.camera_keys)}) must pair up "
            "one to one: topic i feeds observation key i"
        )
    if len(set(cfg.camera_keys)) != len(cfg.camera_keys):
        raise ConfigError(f"camera_keys has duplicates: {list(cfg.camera_keys)}")
    if cfg.gripper_topic and not cfg.gripper_joint_names:
        raise ConfigError("gripper_topic is set but gripper_joint_names is empty; name the gripper's joints")
    return cfg
