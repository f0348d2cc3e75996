"""A scripted leader arm for the simulated one: rehearse `robot-offrl record --ros` without an operator.

A leader-follower teleop rig has two arms: the operator moves the leader, a bridge makes the follower
track it, and the recorder stores the follower's sensors with the leader's joint positions as the
action. Here the leader is the task's scripted expert moving its own copy of the scene (same task,
seed and region as the sim arm's episode, so the same object pose and joint noise) one control step
per sim-arm ``/clock`` step, and the bridge is this node too:

* out, the leader: ``/leader/joint_states`` (JointState: the joint positions the expert's step
  reached, the deployable task's action) and ``/leader/gripper`` (Float64 in [-1 open, 1 close]);
* out, the bridge: the follower's forward command (Float64MultiArray) and gripper JointTrajectory,
  what the sim arm's controllers take from a real bridge;
* ``~/status`` (String JSON, latched) once the expert is done: its steps and its own success;
* ``~/go`` (Trigger) starts the expert when ``autostart`` is false: the leader rests (and publishes)
  until the recorder is recording, as an operator waits before moving the leader.

After its own success (plus ``steps_after_success``) or ``max_steps`` the leader holds still and
keeps publishing, as a resting leader arm does, so the recorder's action topic stays fresh until
the operator saves. The expert reads its own scene's object pose; nothing of it is published.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.tasks import SCRIPTED_CONTROLLER, make_env

from .params import ParamSpec, coerce_param
from .sim_arm_node import COMMAND_QOS, LATCHED_QOS, stamp_of
from .sim_arm_params import SIM_ARM_PARAMS
from .spinning import run_node

_ARM = {spec.name: spec.default for spec in SIM_ARM_PARAMS}
FINGER_MOVE_S = 0.05  # time_from_start of a gripper command: one control period at 20 Hz

LEADER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("task", "string", "lift_joint", "robot_offrl_sim task with a scripted expert (the sim arm's)"),
    ParamSpec("seed", "int", 0, "the sim arm's episode seed: same object pose and joint noise"),
    ParamSpec("region", "string", "narrow", "the sim arm's region"),
    ParamSpec("max_steps", "int", 0, "expert steps at most; 0: the task's horizon"),
    ParamSpec("steps_after_success", "int", 10, "expert steps after its own success before it holds"),
    ParamSpec("autostart", "bool", True, "start the expert at once; false: rest (publishing) until ~/go"),
    ParamSpec("joint_names", "string[]", list(_ARM["joint_names"]), "arm joints, the sim arm's order"),
    ParamSpec("gripper_joint_names", "string[]", list(_ARM["gripper_joint_names"]), "follower finger joints"),
    ParamSpec("gripper_open_position", "double", _ARM["gripper_open_position"], "finger position when open"),
    ParamSpec("gripper_closed_position", "double", _ARM["gripper_closed_position"], "finger position when closed"),
    ParamSpec("leader_topic", "string", "/leader/joint_states", "the leader's JointState (the recorded action)"),
    ParamSpec("gripper_command_topic", "string", "/leader/gripper", "Float64 gripper command in [-1, 1]"),
    ParamSpec("forward_topic", "string", _ARM["forward_topic"], "the follower's forward position command"),
    ParamSpec("gripper_topic", "string", _ARM["gripper_topic"], "the follower's gripper JointTrajectory"),
)


class SimLeaderNode(Node):
    """The expert on a private copy of the task, stepped once per sim-arm control step."""

    def __init__(self, node_name: str = "sim_leader", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        for spec in LEADER_PARAMS:
            self.declare_parameter(spec.name, spec.default)
        p = {s.name: coerce_param(s, self.get_parameter(s.name).value, "sim_leader parameter") for s in LEADER_PARAMS}
        self.p = p
        self.env = make_env(p["task"], cameras=[])
        if self.env.spec.action != "joint_position":
            raise ConfigError(f"task {p['task']!r} acts in {self.env.spec.action}; the leader drives a joint-position "
                              "arm: use a deployable task (e.g. lift_joint)")
        if len(p["joint_names"]) != self.env.joint_positions().size:
            raise ConfigError(f"joint_names has {len(p['joint_names'])} names for {self.env.joint_positions().size} joints")
        self.env.set_controller(SCRIPTED_CONTROLLER)  # the expert moves the leader through OSC, as in collect
        self.expert = make_expert(self.env.spec)
        self.obs = self.env.reset(p["seed"], region=p["region"])
        self.expert.reset()
        robot = self.env.env.robots[0]
        model = self.env.env.sim.model
        self.lower = np.array(model.jnt_range[robot.arm_joint_indexes, 0], dtype=np.float64)
        self.upper = np.array(model.jnt_range[robot.arm_joint_indexes, 1], dtype=np.float64)
        self.target = np.concatenate([self.env.joint_positions(), [-1.0]])  # at rest, open
        self.max_steps = p["max_steps"] or self.env.horizon
        self.success_step: int | None = None
        self.done = False
        self.going = bool(p["autostart"])
        self._last_clock_ns = -1
        self._leader_pub = self.create_publisher(JointState, p["leader_topic"], COMMAND_QOS)
        self._grip_cmd_pub = self.create_publisher(Float64, p["gripper_command_topic"], COMMAND_QOS)
        self._forward_pub = self.create_publisher(Float64MultiArray, p["forward_topic"], COMMAND_QOS)
        self._gripper_pub = self.create_publisher(JointTrajectory, p["gripper_topic"], COMMAND_QOS)
        self._status_pub = self.create_publisher(String, "~/status", LATCHED_QOS)
        self.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.create_service(Trigger, "~/go", self._on_go)
        self.get_logger().info(f"sim leader ready: {p['task']} expert, seed {p['seed']}, region {p['region']}")

    def _on_clock(self, msg: Clock) -> None:
        now_ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec
        if now_ns <= self._last_clock_ns:
            return
        self._last_clock_ns = now_ns
        if self.going and not self.done:
            self._step()
        self._publish(now_ns)

    def _on_go(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = not self.done
        response.message = "the expert is done; restart the node for another demo" if self.done else "going"
        self.going = True
        return response

    def _step(self) -> None:
        env = self.env
        self.obs = env.step(np.asarray(self.expert.act(self.obs), dtype=np.float64))
        assert env.last_action is not None
        self.target = np.asarray(env.last_action, dtype=np.float64)
        if self.success_step is None and env.success():
            self.success_step = env.t
        after = self.success_step is not None and env.t >= self.success_step + self.p["steps_after_success"]
        if after or env.t >= self.max_steps:
            self.done = True
            status = {"steps": env.t, "success": self.success_step is not None, "success_step": self.success_step}
            self._status_pub.publish(String(data=json.dumps(status)))
            self.get_logger().info(f"leader done: {status}; holding")

    def _publish(self, now_ns: int) -> None:
        p, stamp = self.p, stamp_of(now_ns)
        joints = np.clip(self.target[:-1], self.lower, self.upper)  # a reached position may sit a hair past a limit
        grip = float(np.clip(self.target[-1], -1.0, 1.0))
        leader = JointState(name=list(p["joint_names"]), position=joints.tolist())
        leader.header.stamp = stamp
        self._leader_pub.publish(leader)
        self._grip_cmd_pub.publish(Float64(data=grip))
        self._forward_pub.publish(Float64MultiArray(data=joints.tolist()))
        opening = p["gripper_open_position"] + (grip + 1.0) / 2.0 * (p["gripper_closed_position"] - p["gripper_open_position"])
        traj = JointTrajectory(joint_names=list(p["gripper_joint_names"]))  # stamp 0: from receipt
        point = JointTrajectoryPoint(positions=[opening] * len(p["gripper_joint_names"]))
        point.time_from_start.nanosec = int(FINGER_MOVE_S * 1e9)
        traj.points = [point]
        self._gripper_pub.publish(traj)

    def destroy_node(self) -> None:
        env = self.__dict__.pop("env", None)
        if env is not None:
            env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console entry point (``sim_leader_node``); stops on SIGINT/SIGTERM like the other nodes."""
    return run_node("sim_leader_node", SimLeaderNode, args)


if __name__ == "__main__":
    sys.exit(main())
