"""Every parameter of the policy node, in one declaration, and the helpers all three nodes share.

A node's parameters are the fields of one frozen dataclass (``NodeConfig`` here, ``RecorderConfig`` in
recorder.py, ``SimArmConfig`` in sim_arm_params.py): each field states its default, ROS type and
description once (``param``). The declare_parameter table (``param_table``), the parsing of raw values
(``parse_params``) and the declaration on a node (``declare_params``) are generated from it, so a
parameter cannot be renamed in one place and silently ignored in another; config/policy.yaml documents
exactly these and a test checks both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from robot_offrl.errors import ConfigError

OUTPUT_MODES = ("trajectory", "forward", "servo")
CAMERA_RELIABILITY = ("reliable", "best_effort")
PLAN_AHEAD_MODES = ("auto", "off", "chunk")
PARAM_KINDS = ("bool", "int", "double", "string", "string[]", "double[]")

# The Franka Emika Panda as shipped by franka_ros2: a sensible, documented default arm.
PANDA_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
_PANDA_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
_PANDA_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
_PANDA_VEL = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)

# Observation keys of a real arm, as the policy node assembles them and the recorder stores them.
JOINT_POS_KEY = "joint_pos"  # arm joint positions, in joint_names order
JOINT_VEL_KEY = "joint_vel"  # arm joint velocities, in joint_names order
GRIPPER_QPOS_KEY = "robot0_gripper_qpos"  # finger joint positions, in gripper_joint_names order
EEF_POS_KEY = "robot0_eef_pos"  # end-effector position from ee_pose_topic
EEF_QUAT_KEY = "robot0_eef_quat"  # end-effector xyzw quaternion from ee_pose_topic
CAMERA_KEY_SUFFIX = "_image"  # every camera observation key ends so (agentview_image)

Config = TypeVar("Config")

@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``kind`` is bool, int, double, string, string[] or double[]."""

    name: str
    kind: str
    default: Any
    description: str


def param(default: Any, kind: str, description: str) -> Any:
    """A config field that is also a ROS parameter: default, ROS type and description, stated once."""
    if kind not in PARAM_KINDS:
        raise ValueError(f"unknown parameter kind {kind!r}")
    return field(default=tuple(default) if isinstance(default, list) else default,
                 metadata={"ros_kind": kind, "description": description})


def param_table(config: type) -> tuple[ParamSpec, ...]:
    """The declare_parameter table of a config dataclass, in field order (arrays as lists, as ROS takes them)."""
    return tuple(
        ParamSpec(f.name, f.metadata["ros_kind"], list(f.default) if isinstance(f.default, tuple) else f.default,
                  f.metadata["description"])
        for f in fields(config)
    )


def parse_params(config: Callable[..., Config], table: tuple[ParamSpec, ...], values: Mapping[str, Any],
                 what: str) -> Config:
    """Typed config from raw values (a YAML mapping or the node's parameters); ``what`` names the kind
    of parameter in every message ("recorder parameter"). Unknown names are refused, missing ones default."""
    names = [spec.name for spec in table]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; it declares {names}")
    return config(**{spec.name: coerce_param(spec, values.get(spec.name, spec.default), what) for spec in table})


def declare_params(node: Any, table: tuple[ParamSpec, ...], read_only: Callable[[str], bool] | None = None) -> None:
    """Declare every parameter of ``table`` on an rclpy node (an empty array is declared by its type)."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

    array_types = {"string[]": Parameter.Type.STRING_ARRAY, "double[]": Parameter.Type.DOUBLE_ARRAY}
    for spec in table:
        default = array_types[spec.kind] if spec.kind in array_types and not spec.default else spec.default
        descriptor = ParameterDescriptor(description=spec.description,
                                         read_only=bool(read_only and read_only(spec.name)))
        node.declare_parameter(spec.name, default, descriptor)


def camera_reliability_param() -> Any:
    """The policy node and the recorder subscribe to cameras the same way (one parameter, one rule)."""
    return param(
        "reliable", "string",
        "camera subscriptions: reliable (lost fragments of big frames are resent; needs a reliable "
        "publisher) or best_effort (matches any publisher, loses whole frames under load)",
    )


def check_camera_reliability(value: str) -> None:
    if value not in CAMERA_RELIABILITY:
        raise ConfigError(f"camera_reliability must be one of {CAMERA_RELIABILITY}, got {value!r}")


@dataclass(frozen=True)
class NodeConfig:
    """The policy node's parameters (field names equal parameter names), validated by ``parse_config``."""

    checkpoint: str = param("", "string", "run or checkpoint folder loaded by PolicyRuntime.load")
    device: str = param("auto", "string", "torch device for inference: auto, cpu, cuda, cuda:1")
    num_candidates: int = param(
        0, "int",
        "action chunks sampled per step and ranked by the critic (0: the checkpoint's own setting)",
    )
    num_inference_steps: int = param(0, "int", "denoising steps per sampled chunk (0: the checkpoint's)")
    n_action_steps: int = param(0, "int", "actions per chunk sent to the controller (0: the checkpoint's)")
    amp: str = param("", "string", "acting precision: off, bf16 or auto (empty: the runtime's default, auto)")
    conv1d: str = param("", "string", "fp32 U-Net convolutions: auto or native (empty: the runtime's, auto)")
    prune_after: int = param(
        -1, "int",
        "rank the candidates by Q after this many denoising steps and finish only prune_keep of them "
        "(0: off; -1: the checkpoint's own setting)",
    )
    prune_keep: int = param(0, "int", "candidates that survive pruning (0: the checkpoint's own setting)")
    control_rate_hz: float = param(0.0, "double", "inference and command rate; 0 uses the checkpoint's rate")
    autostart: bool = param(False, "bool", "configure at start-up and activate once observations are fresh")
    enable_control: bool = param(False, "bool", "false: dry run, nothing is sent to the controllers")
    output_mode: str = param("trajectory", "string", "trajectory, forward or servo")
    joint_names: tuple[str, ...] = param(PANDA_JOINTS, "string[]", "arm joints in the controller's order")
    joint_states_topic: str = param("/joint_states", "string", "sensor_msgs/JointState input")
    camera_topics: tuple[str, ...] = param(
        ("/camera/image_raw",), "string[]",
        "image topics (…/compressed: CompressedImage)",
    )
    camera_keys: tuple[str, ...] = param(
        ("agentview_image",), "string[]",
        "observation key of each camera topic, same order",
    )
    camera_reliability: str = camera_reliability_param()
    ee_pose_topic: str = param("", "string", "geometry_msgs/PoseStamped of the end effector; empty: none")
    estop_topic: str = param("/emergency_stop", "string", "std_msgs/Bool emergency stop (true stops)")
    trajectory_topic: str = param("/joint_trajectory_controller/joint_trajectory", "string", "trajectory mode")
    forward_topic: str = param("/forward_position_controller/commands", "string", "forward mode")
    forward_rate_hz: float = param(100.0, "double", "forward and servo modes: command stream rate")
    servo_topic: str = param("/servo_node/delta_twist_cmds", "string", "servo mode TwistStamped topic")
    servo_frame_id: str = param("base_link", "string", "servo mode: frame of the twist")
    servo_linear_scale: float = param(0.1, "double", "servo mode: m/s per unit of a dx/dy/dz action")
    servo_angular_scale: float = param(0.5, "double", "servo mode: rad/s per unit of a dax/day/daz action")
    gripper_topic: str = param("", "string", "gripper JointTrajectory topic; empty: no gripper output")
    gripper_action_name: str = param("gripper", "string", "action name that drives the gripper")
    gripper_joint_names: tuple[str, ...] = param((), "string[]", "gripper controller joints")
    gripper_open_position: float = param(0.04, "double", "gripper joint position at the action's low bound")
    gripper_closed_position: float = param(0.0, "double", "gripper joint position at the action's high bound")
    image_timeout_s: float = param(0.25, "double", "watchdog bound on image age")
    joint_state_timeout_s: float = param(0.1, "double", "watchdog bound on joint state age")
    pose_timeout_s: float = param(0.1, "double", "watchdog bound on end-effector pose age")
    use_header_stamps: bool = param(True, "bool", "age from header stamps; false: from arrival time")
    joint_lower_limits: tuple[float, ...] = param(_PANDA_LOWER, "double[]", "rad, per joint")
    joint_upper_limits: tuple[float, ...] = param(_PANDA_UPPER, "double[]", "rad, per joint")
    max_joint_velocity: tuple[float, ...] = param(_PANDA_VEL, "double[]", "rad/s, per joint")
    velocity_scale: float = param(1.0, "double", "multiplies max_joint_velocity; 0.1 for first motions")
    limit_violation: str = param("clamp", "string", "clamp or hold when a command leaves the joint limits")
    workspace_min: tuple[float, ...] = param((0.2, -0.5, 0.0), "double[]", "end-effector box lower corner, m")
    workspace_max: tuple[float, ...] = param((0.8, 0.5, 0.7), "double[]", "end-effector box upper corner, m")
    min_lead_time_s: float = param(0.0, "double", "drop actions due sooner than this after inference")
    plan_ahead: str = param(
        "chunk", "string",
        "chunk: time each plan so its chunk arrives before the current one ends and splice it on without a "
        "jump, whatever the inference speed, so each chunk runs to near its end as PolicyRuntime.act runs "
        "n_action_steps (what a direct sweep evaluates); auto: the same timing only when inference is slower "
        "than a period, else replan every period; off: replan every period, chunks replace",
    )
    plan_ahead_margin_s: float = param(
        0.1, "double",
        "plan_ahead auto/chunk: the next chunk is due this long before the current chunk's last action",
    )
    hold_time_s: float = param(0.1, "double", "time_from_start of the single point of a hold trajectory")
    diagnostics_rate_hz: float = param(1.0, "double", "/diagnostics and ~/status publication rate")
    hardware_id: str = param("arm", "string", "hardware_id reported on /diagnostics")


PARAMS: tuple[ParamSpec, ...] = param_table(NodeConfig)
PARAM_NAMES: tuple[str, ...] = tuple(spec.name for spec in PARAMS)


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
    cfg = parse_params(NodeConfig, PARAMS, values, "parameter")
    for name in ("num_candidates", "num_inference_steps", "n_action_steps", "prune_keep"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"parameter {name} must be >= 0 (0: the checkpoint's own setting), got {getattr(cfg, name)}")
    if cfg.prune_after < -1:
        raise ConfigError(
            f"parameter prune_after must be >= -1 (0: off, -1: the checkpoint's own setting), got {cfg.prune_after}"
        )
    positive = ("forward_rate_hz",
                "image_timeout_s", "joint_state_timeout_s", "pose_timeout_s", "hold_time_s",
                "diagnostics_rate_hz", "servo_linear_scale", "servo_angular_scale")
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"parameter {name} must be > 0, got {getattr(cfg, name)}")
    chosen = {name: getattr(cfg, name) for name in ("amp", "conv1d") if getattr(cfg, name)}
    if chosen:
        from robot_offrl.runtime.policy import check_acting_options  # torch is imported only when asked

        check_acting_options(chosen, shown={name: f"parameter {name}" for name in chosen})
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
