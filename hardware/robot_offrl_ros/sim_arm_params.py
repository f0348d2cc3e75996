"""Every parameter of the simulated arm node, in one dataclass (config/sim_arm.yaml documents exactly these).

Topic defaults equal policy_node's (params.py) so the two nodes meet without remapping; names
and limits default to the Franka Panda that the robosuite tasks simulate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robot_offrl.errors import ConfigError

from .params import NodeConfig, ParamSpec, param, param_table, parse_params

_POLICY = NodeConfig()  # the policy node's defaults: topics and arm shared, so the two nodes meet unremapped



@dataclass(frozen=True)
class SimArmConfig:
    """The simulated arm's parameters (field names equal parameter names), validated by ``parse_sim_arm_config``."""

    task: str = param("lift", "string", "robot_offrl_sim task (configs/task/<name>.yaml); fixed at start-up")
    real_time_factor: float = param(
        1.0, "double",
        "sim seconds per wall second; 0 steps as fast as the CPU allows (run the graph on use_sim_time)",
    )
    publish_clock: bool = param(True, "bool", "publish /clock from sim time")
    kp: float = param(150.0, "double", "joint position controller stiffness (robosuite JOINT_POSITION kp)")
    joint_names: tuple[str, ...] = param(
        _POLICY.joint_names, "string[]",
        "arm joints, in the simulated arm's order",
    )
    gripper_joint_names: tuple[str, ...] = param(
        ("panda_finger_joint1", "panda_finger_joint2"), "string[]",
        "finger joints reported in /joint_states and accepted on gripper_topic",
    )
    gripper_open_position: float = param(_POLICY.gripper_open_position, "double", "finger position when open (m)")
    gripper_closed_position: float = param(
        _POLICY.gripper_closed_position, "double",
        "finger position when closed (m)",
    )
    joint_states_topic: str = param(_POLICY.joint_states_topic, "string", "sensor_msgs/JointState output")
    state_rate_hz: float = param(
        0.0, "double",
        "joint_states and pose rate (sim time); 0 publishes at every control step",
    )
    ee_pose_topic: str = param("/ee_pose", "string", "geometry_msgs/PoseStamped of the end effector in base_frame_id")
    base_frame_id: str = param("base_link", "string", "frame of the pose and of servo twists")
    camera_names: tuple[str, ...] = param(("agentview",), "string[]", "robosuite cameras rendered")
    camera_topics: tuple[str, ...] = param(
        _POLICY.camera_topics, "string[]",
        "sensor_msgs/Image topic per camera",
    )
    camera_size: int = param(84, "int", "rendered image height and width in pixels")
    camera_rate_hz: float = param(10.0, "double", "image rate (sim time)")
    trajectory_topic: str = param(_POLICY.trajectory_topic, "string", "JointTrajectory input (trajectory mode)")
    forward_topic: str = param(_POLICY.forward_topic, "string", "Float64MultiArray input (forward mode)")
    servo_topic: str = param(_POLICY.servo_topic, "string", "TwistStamped input (servo mode)")
    servo_timeout_s: float = param(0.2, "double", "a twist older than this (sim time) stops the servo motion")
    max_linear_speed: float = param(1.0, "double", "twists faster than this (m/s) are refused")
    max_angular_speed: float = param(3.0, "double", "twists faster than this (rad/s) are refused")
    gripper_topic: str = param("/gripper_controller/joint_trajectory", "string", "gripper JointTrajectory input")
    success_topic: str = param("/sim_arm/success", "string", "std_msgs/Bool: the task's success check")
    seed: int = param(0, "int", "episode seed (robot joint noise; object pose when place_object is false)")
    region: str = param("narrow", "string", "task region the object pose is drawn from")
    place_object: bool = param(False, "bool", "true: put the object at object_x, object_y, object_yaw exactly")
    object_x: float = param(0.0, "double", "object x relative to the task origin (m)")
    object_y: float = param(0.0, "double", "object y relative to the task origin (m)")
    object_yaw: float = param(0.0, "double", "object yaw (rad)")
    perturbation: str = param(
        "", "string",
        "applied once per episode: object:dx,dy[,dyaw]@step or arm-nudge:dx,dy,dz@step; empty: none",
    )
    horizon: int = param(
        0, "int",
        "control steps after ~/reset at which the episode ends (~/episode_result); 0: only success ends it",
    )


SIM_ARM_PARAMS: tuple[ParamSpec, ...] = param_table(SimArmConfig)
SIM_ARM_PARAM_NAMES: tuple[str, ...] = tuple(spec.name for spec in SIM_ARM_PARAMS)
EPISODE_PARAMS = ("seed", "region", "place_object", "object_x", "object_y", "object_yaw", "perturbation", "horizon")


def parse_sim_arm_config(values: Mapping[str, Any]) -> SimArmConfig:
    """Validate raw parameter values; every mistake names the parameter."""
    cfg = parse_params(SimArmConfig, SIM_ARM_PARAMS, values, "sim_arm parameter")
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
