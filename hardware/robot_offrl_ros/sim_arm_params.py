"""Every parameter of the simulated arm node, in one table (config/sim_arm.yaml documents exactly these).

Topic defaults equal policy_node's (params.py) so the two nodes meet without remapping; names
and limits default to the Franka Panda that the robosuite tasks simulate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robot_offrl.errors import ConfigError

from .params import PARAMS as POLICY_PARAMS
from .params import ParamSpec, coerce_param

_POLICY = {spec.name: spec.default for spec in POLICY_PARAMS}

SIM_ARM_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("task", "string", "lift", "robot_offrl_sim task (configs/task/<name>.yaml); fixed at start-up"),
    ParamSpec("real_time_factor", "double", 1.0,
              "sim seconds per wall second; 0 steps as fast as the CPU allows (run the graph on use_sim_time)"),
    ParamSpec("publish_clock", "bool", True, "publish /clock from sim time"),
    ParamSpec("kp", "double", 150.0, "joint position controller stiffness (robosuite JOINT_POSITION kp)"),
    ParamSpec("joint_names", "string[]", list(_POLICY["joint_names"]), "arm joints, in the simulated arm's order"),
    ParamSpec("gripper_joint_names", "string[]", ["panda_finger_joint1", "panda_finger_joint2"],
              "finger joints reported in /joint_states and accepted on gripper_topic"),
    ParamSpec("gripper_open_position", "double", _POLICY["gripper_open_position"], "finger position when open (m)"),
    ParamSpec("gripper_closed_position", "double", _POLICY["gripper_closed_position"],
              "finger position when closed (m)"),
    ParamSpec("joint_states_topic", "string", _POLICY["joint_states_topic"], "sensor_msgs/JointState output"),
    ParamSpec("state_rate_hz", "double", 0.0,
              "joint_states and pose rate (sim time); 0 publishes at every control step"),
    ParamSpec("ee_pose_topic", "string", "/ee_pose", "geometry_msgs/PoseStamped of the end effector in base_frame_id"),
    ParamSpec("base_frame_id", "string", "base_link", "frame of the pose and of servo twists"),
    ParamSpec("camera_names", "string[]", ["agentview"], "robosuite cameras rendered"),
    ParamSpec("camera_topics", "string[]", list(_POLICY["camera_topics"]), "sensor_msgs/Image topic per camera"),
    ParamSpec("camera_size", "int", 84, "rendered image height and width in pixels"),
    ParamSpec("camera_rate_hz", "double", 10.0, "image rate (sim time)"),
    ParamSpec("trajectory_topic", "string", _POLICY["trajectory_topic"], "JointTrajectory input (trajectory mode)"),
    ParamSpec("forward_topic", "string", _POLICY["forward_topic"], "Float64MultiArray input (forward mode)"),
    ParamSpec("servo_topic", "string", _POLICY["servo_topic"], "TwistStamped input (servo mode)"),
    ParamSpec("servo_timeout_s", "double", 0.2, "a twist older than this (sim time) stops the servo motion"),
    ParamSpec("max_linear_speed", "double", 1.0, "twists faster than this (m/s) are refused"),
    ParamSpec("max_angular_speed", "double", 3.0, "twists faster than this (rad/s) are refused"),
    ParamSpec("gripper_topic", "string", "/gripper_controller/joint_trajectory", "gripper JointTrajectory input"),
    ParamSpec("success_topic", "string", "/sim_arm/success", "std_msgs/Bool: the task's success check"),
    ParamSpec("seed", "int", 0, "episode seed (robot joint noise; object pose when place_object is false)"),
    ParamSpec("region", "string", "narrow", "task region the object pose is drawn from"),
    ParamSpec("place_object", "bool", False, "true: put the object at object_x, object_y, object_yaw exactly"),
    ParamSpec("object_x", "double", 0.0, "object x relative to the task origin (m)"),
    ParamSpec("object_y", "double", 0.0, "object y relative to the task origin (m)"),
    ParamSpec("object_yaw", "double", 0.0, "object yaw (rad)"),
    ParamSpec("perturbation", "string", "",
              "applied once per episode: object:dx,dy[,dyaw]@step or arm-nudge:dx,dy,dz@step; empty: none"),
    ParamSpec("horizon", "int", 0,
              "control steps after ~/reset at which the episode ends (~/episode_result); 0: only success ends it"),
)

SIM_ARM_PARAM_NAMES: tuple[str, ...] = tuple(spec.name for spec in SIM_ARM_PARAMS)
EPISODE_PARAMS = ("seed", "region", "place_object", "object_x", "object_y", "object_yaw", "perturbation", "horizon")


@dataclass(frozen=True)
class SimArmConfig:
    """The validated parameters (field names equal parameter names)."""

    task: str
    real_time_factor: float
    publish_clock: bool
    kp: float
    joint_names: tuple[str, ...]
    gripper_joint_names: tuple[str, ...]
    gripper_open_position: float
    gripper_closed_position: float
    joint_states_topic: str
    state_rate_hz: float
    ee_pose_topic: str
    base_frame_id: str
    camera_names: tuple[str, ...]
    camera_topics: tuple[str, ...]
    camera_size: int
    camera_rate_hz: float
    trajectory_topic: str
    forward_topic: str
    servo_topic: str
    servo_timeout_s: float
    max_linear_speed: float
    max_angular_speed: float
    gripper_topic: str
    success_topic: str
    seed: int
    region: str
    place_object: bool
    object_x: float
    object_y: float
    object_yaw: float
    perturbation: str
    horizon: int


def parse_sim_arm_config(values: Mapping[str, Any]) -> SimArmConfig:
    """Validate raw parameter values; every mistake names the parameter."""
    unknown = sorted(set(values) - set(SIM_ARM_PARAM_NAMES))
    if unknown:
        raise ConfigError(f"unknown sim_arm parameter(s) {unknown}; it declares {list(SIM_ARM_PARAM_NAMES)}")
    kw = {s.name: coerce_param(s, values.get(s.name, s.default), "sim_arm parameter") for s in SIM_ARM_PARAMS}
    cfg = SimArmConfig(**kw)
    if not (cfg.real_time_factor >= 0 and math.isfinite(cfg.real_time_factor)):
        raise ConfigError(f"real_time_factor must be >= 0 (0: as fast as possible), got {cfg.real_time_factor}")
    for name in ("kp", "camera_rate_hz", "servo_timeout_s", "max_linear_speed", "max_angular_speed"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"sim_arm parameter {name} must be > 0, got {getattr(cfg, name)}")
    if cfg.horizon < 0:
        raise ConfigError(f"horizon must be >= 0 (0: only success ends an episode), got {cfg.horizon}")
    if cfg.state_rate_hz < 0:
        raise ConfigError(f"state_rate_hz must be >= 0 (0: every control step), got {cfg.state_rate_hz}")
    if cfg.camera_size < 8:
        raise ConfigError(f"camera_size must be at least 8 pixels, got {cfg.camera_size}")
    if len(cfg.camera_names) != len(cfg.camera_topics):
        raise ConfigError(f"camera_names ({len(cfg.camera_names)}) and camera_topics ({len(cfg.camera_topics)}) "
                          "must pair up one to one")
    if cfg.gripper_open_position == cfg.gripper_closed_position:
        raise ConfigError("gripper_open_position and gripper_closed_position must differ")
    return cfg
