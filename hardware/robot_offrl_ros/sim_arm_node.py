"""A simulated arm behind the ROS 2 interfaces of a real one: rehearse a deployment before the robot.

One of the project's robosuite tasks (robot_offrl_sim.tasks) runs behind the topics a lab's arm
driver and controllers expose, with the names policy_node already uses:

* out: ``/joint_states`` (sensor-data QoS), one ``sensor_msgs/Image`` (rgb8) per camera at
  ``camera_rate_hz``, the end-effector ``PoseStamped`` in ``base_link``, ``/clock``, the task's
  success flag (``/sim_arm/success``), the object's true pose (``~/object_pose``, for evaluation
  only) and the number of refused commands (``~/refused_commands``);
* in: ``JointTrajectory`` (trajectory mode, followed in time), ``Float64MultiArray`` (forward
  mode), ``TwistStamped`` (servo mode, turned into joint motion as MoveIt Servo would) and the
  gripper's ``JointTrajectory``. Commands are checked first (sim_arm_controller) and a bad one is
  refused whole and counted; the arm keeps its setpoint.

Time is the simulation's: the arm steps at the task's control rate, paced to the wall clock by
``real_time_factor`` (0: as fast as the CPU allows), every stamp is sim time and ``/clock``
carries it, so a graph started with ``use_sim_time:=true`` runs correctly however slow the CPU.
Sim time starts at the wall-clock time of start-up, so at real time a wall-clock graph works too.

Episodes: ``~/reset`` (std_srvs/Trigger) starts one from the episode parameters (seed, region,
exact object pose, perturbation, horizon) as they are at that moment; a sweep sets them with ``ros2
param set`` (or the SetParameters service) and then calls reset. The episode ends at the first
success or after ``horizon`` control steps, and its record (success, success_step, steps, seed,
initial condition, perturbations, final object pose: what a direct sweep keeps per episode) is
published once, latched, on ``~/episode_result`` (std_msgs/String, JSON, with the episode's number).
The arm keeps running afterwards, as a real one would. A trajectory stamped before the latest reset
was planned in the previous episode: it is dropped (and counted), never applied to the new one.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String, UInt64
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_offrl.errors import ConfigError, UserError
from robot_offrl_sim.initial_conditions import InitialCondition, exact_initial_condition
from robot_offrl_sim.perturbations import Perturbation, parse_perturbation

from .image_codec import to_image_msg
from .params import declare_params
from .qos import camera_qos
from .sim_arm_controller import (
    CommandRefused,
    SetpointTracker,
    require_finite,
    require_within,
    trajectory_arrays,
)
from .sim_arm_env import GRIPPER_CLOSE_ACTION, GRIPPER_OPEN_ACTION, JointArmSim
from .sim_arm_params import EPISODE_PARAMS, SIM_ARM_PARAMS, SimArmConfig, parse_sim_arm_config
from .spinning import run_node

COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
FASTEST_PERIOD_S = 1e-3  # the step timer's period at real_time_factor 0


def stamp_of(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def seconds_of(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


class RateGate:
    """Says when a stream is due on the sim clock, keeping a steady cadence (period 0: always)."""

    def __init__(self, period_ns: int) -> None:
        self.period_ns = int(period_ns)
        self.next_ns: int | None = None

    def due(self, now_ns: int) -> bool:
        if self.period_ns <= 0:
            return True
        if self.next_ns is None:
            self.next_ns = now_ns
        if now_ns < self.next_ns:
            return False
        while self.next_ns <= now_ns:
            self.next_ns += self.period_ns
        return True


class SimArmNode(Node):
    """robosuite task + position-controlled arm, stepped on a steady-clock timer at the control rate."""

    def __init__(self, node_name: str = "sim_arm", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._timer: Any = None
        # Only the episode parameters can change while running (read at each reset); a changed task
        # or topic would be silently ignored, so ROS refuses setting them.
        declare_params(self, SIM_ARM_PARAMS, read_only=lambda name: name not in EPISODE_PARAMS)
        if self.get_parameter("use_sim_time").value:
            raise ConfigError("sim_arm publishes /clock itself: start it with use_sim_time false")
        cfg = self._read_config()
        self.cfg = cfg
        self.lock = threading.Lock()  # one step, reset or test probe of the physics at a time
        self.arm = JointArmSim(cfg.task, cfg.camera_names, cfg.camera_size, cfg.kp)
        if len(cfg.joint_names) != self.arm.n_joints:
            raise ConfigError(f"joint_names has {len(cfg.joint_names)} names; the simulated {self.arm.sim.spec.robot} "
                              f"arm has {self.arm.n_joints} joints")
        if len(cfg.gripper_joint_names) != self.arm.finger_positions().size:
            raise ConfigError(f"gripper_joint_names must name the {self.arm.finger_positions().size} finger joints")
        control_hz = 1.0 / self.arm.dt
        for name in ("state_rate_hz", "camera_rate_hz"):
            if getattr(cfg, name) > control_hz + 1e-9:  # the arm's state only changes once per control step
                raise ConfigError(f"{name} {getattr(cfg, name):g} exceeds task {cfg.task}'s control rate {control_hz:g} Hz")
        lo, hi = sorted((cfg.gripper_open_position, cfg.gripper_closed_position))
        self._grip_lower = np.full(len(cfg.gripper_joint_names), lo)
        self._grip_upper = np.full(len(cfg.gripper_joint_names), hi)
        self._dt_ns = int(round(self.arm.dt * 1e9))
        self._now_ns = time.time_ns()
        self.refused: dict[str, int] = {}
        self.perturbation: Perturbation | None = None
        self.perturbation_result: dict[str, Any] | None = None
        self.episode = 0  # numbered from 1 by each reset (the start-up episode is 1)
        self.episode_start_ns = self._now_ns
        self.success_step: int | None = None
        self.episode_result: dict[str, Any] | None = None  # set once the episode ended
        self.previous_episode_commands = 0
        self._twist: np.ndarray | None = None
        self._twist_ns = 0
        self._state_gate = RateGate(int(1e9 / cfg.state_rate_hz) if cfg.state_rate_hz > 0 else 0)
        self._camera_gate = RateGate(int(1e9 / cfg.camera_rate_hz))

        self._clock_pub = self.create_publisher(ClockMsg, "/clock", 10) if cfg.publish_clock else None
        self._joint_pub = self.create_publisher(JointState, cfg.joint_states_topic, qos_profile_sensor_data)
        self._pose_pub = self.create_publisher(PoseStamped, cfg.ee_pose_topic, qos_profile_sensor_data)
        self._object_pub = self.create_publisher(PoseStamped, "~/object_pose", qos_profile_sensor_data)
        # Reliable, as camera drivers publish and as policy_node / the recorder subscribe by default
        # (robot_offrl_ros/qos.py): big raw frames lose fragments under load otherwise.
        self._image_pubs = [self.create_publisher(Image, topic, camera_qos("reliable")) for topic in cfg.camera_topics]
        self._success_pub = self.create_publisher(Bool, cfg.success_topic, LATCHED_QOS)
        self._refused_pub = self.create_publisher(UInt64, "~/refused_commands", LATCHED_QOS)
        self._episode_pub = self.create_publisher(String, "~/episode_result", LATCHED_QOS)
        self.create_subscription(JointTrajectory, cfg.trajectory_topic, self._on_trajectory, COMMAND_QOS)
        self.create_subscription(Float64MultiArray, cfg.forward_topic, self._on_forward, COMMAND_QOS)
        self.create_subscription(TwistStamped, cfg.servo_topic, self._on_twist, COMMAND_QOS)
        self.create_subscription(JointTrajectory, cfg.gripper_topic, self._on_gripper, COMMAND_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)

        ic, pert = self._episode_from(cfg)
        self._start_episode(cfg, ic, pert)
        self._publish_refused()
        rtf = cfg.real_time_factor
        period = self.arm.dt / rtf if rtf > 0 else FASTEST_PERIOD_S
        self._timer = self.create_timer(period, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"sim arm ready: task {cfg.task}, {1 / self.arm.dt:g} Hz control, real_time_factor {rtf:g}, "
            f"cameras {list(cfg.camera_names)} -> {list(cfg.camera_topics)}"
        )

    # ------------------------------------------------------------------ configuration and episodes
    def _read_config(self) -> SimArmConfig:
        return parse_sim_arm_config({s.name: self.get_parameter(s.name).value for s in SIM_ARM_PARAMS})

    def _episode_from(self, cfg: SimArmConfig) -> tuple[InitialCondition | None, Perturbation | None]:
        """Initial condition (None: drawn from the region) and perturbation, validated before any reset."""
        ic = None
        if cfg.place_object:
            ic = exact_initial_condition(self.arm.sim.spec, cfg.object_x, cfg.object_y, cfg.object_yaw)
        else:
            self.arm.sim.spec.region(cfg.region)  # names a wrong region now
        pert = parse_perturbation(cfg.perturbation) if cfg.perturbation else None
        if pert is not None and pert.kind not in ("object", "arm-nudge"):
            raise ConfigError(f"perturbation {cfg.perturbation!r}: the sim arm applies object and arm-nudge "
                              "perturbations (an 'arm' push needs the OSC controller)")
        return ic, pert

    def _start_episode(self, cfg: SimArmConfig, ic: InitialCondition | None, pert: Perturbation | None) -> None:
        with self.lock:
            self.initial_condition = self.arm.reset(cfg.seed, ic, cfg.region)
            self.perturbation, self.perturbation_result = pert, None
            self.episode += 1
            self.episode_seed, self.horizon = int(cfg.seed), int(cfg.horizon)
            self.episode_start_ns, self.success_step, self.episode_result = self._now_ns, None, None
            self.previous_episode_commands = 0
            self.arm_tracker = SetpointTracker(self.arm.joint_positions())
            self.gripper_tracker = SetpointTracker(np.full(len(self.cfg.gripper_joint_names),
                                                           self.cfg.gripper_open_position))
            self._twist = None
            self._publish_state(force=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            cfg = self._read_config()
            ic, pert = self._episode_from(cfg)
            self._start_episode(cfg, ic, pert)
        except UserError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(f"reset refused: {exc}")
            return response
        response.success = True
        response.message = json.dumps({
            "task": self.cfg.task, "episode": self.episode, "initial_condition": self.initial_condition.to_dict(),
            "perturbation": None if pert is None else pert.to_dict(),
        })
        self.get_logger().info(f"reset: {response.message}")
        return response

    # ------------------------------------------------------------------ commands
    def _refuse(self, what: str, exc: CommandRefused) -> None:
        self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
        self.get_logger().warning(f"refused {what}: {exc}", throttle_duration_sec=1.0)
        self._publish_refused()

    def _publish_refused(self) -> None:
        self._refused_pub.publish(UInt64(data=int(sum(self.refused.values()))))

    def _follow(self, msg: JointTrajectory, tracker: SetpointTracker, names: tuple[str, ...],
                lower: np.ndarray, upper: np.ndarray, what: str) -> None:
        try:
            points = [(seconds_of(p.time_from_start), list(p.positions)) for p in msg.points]
            # Positions are what is tracked, but a real controller reads the rest too: numbers only.
            require_finite(np.array([v for p in msg.points for v in (*p.velocities, *p.accelerations)],
                                    dtype=np.float64), f"{what} velocities/accelerations")
            times, positions = trajectory_arrays(msg.joint_names, points, names, lower, upper, what)
            with self.lock:
                now_s = self._now_ns * 1e-9
                stamp_s = seconds_of(msg.header.stamp)
                if 0 < stamp_s < self.episode_start_ns * 1e-9:
                    self.previous_episode_commands += 1
                    self.get_logger().info(f"dropped a {what} stamped before the reset of episode {self.episode}",
                                           throttle_duration_sec=1.0)
                    return
                tracker.follow(now_s, stamp_s if stamp_s > 0 else now_s, times, positions)
                if tracker is self.arm_tracker:
                    self._twist = None
        except CommandRefused as exc:
            self._refuse(what, exc)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        self._follow(msg, self.arm_tracker, self.cfg.joint_names, self.arm.lower, self.arm.upper, "joint trajectory")

    def _on_gripper(self, msg: JointTrajectory) -> None:
        self._follow(msg, self.gripper_tracker, self.cfg.gripper_joint_names, self._grip_lower, self._grip_upper,
                     "gripper trajectory")

    def _on_forward(self, msg: Float64MultiArray) -> None:
        try:
            values = np.asarray(msg.data, dtype=np.float64)
            if values.shape != (self.arm.n_joints,):
                raise CommandRefused("names", f"forward command has {values.size} values for {self.arm.n_joints} joints")
            require_within(values, self.arm.lower, self.arm.upper, "forward command")
            with self.lock:
                self.arm_tracker.hold(values)
                self._twist = None
        except CommandRefused as exc:
            self._refuse("forward command", exc)

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        twist = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
        try:
            if msg.header.frame_id and msg.header.frame_id != self.cfg.base_frame_id:
                raise CommandRefused("frame", f"twist in frame {msg.header.frame_id!r}; this arm takes "
                                              f"{self.cfg.base_frame_id!r}")
            bound = np.repeat([self.cfg.max_linear_speed, self.cfg.max_angular_speed], 3)
            require_within(twist, -bound, bound, "servo twist")
        except CommandRefused as exc:
            self._refuse("servo twist", exc)
            return
        with self.lock:
            self._twist, self._twist_ns = twist, self._now_ns

    # ------------------------------------------------------------------ stepping
    def _tick(self) -> None:
        with self.lock:
            self._step()
            self._publish_state()

    def _step(self) -> None:
        arm = self.arm
        pert = self.perturbation
        if pert is not None and self.perturbation_result is None and self.episode_result is None \
                and arm.step_count >= pert.step:
            self.perturbation_result = arm.apply(self.perturbation)
            if self.perturbation.kind == "arm-nudge":  # the bump stays: the controller re-anchors where it was left
                self.arm_tracker.hold(arm.joint_positions())
            self.get_logger().info(f"perturbation {self.perturbation.to_dict()} applied: {self.perturbation_result}")
        next_ns = self._now_ns + self._dt_ns
        if self._twist is not None and next_ns - self._twist_ns <= self.cfg.servo_timeout_s * 1e9:
            setpoint = self.arm_tracker.sample(self._now_ns * 1e-9) + arm.twist_to_joint_step(self._twist, arm.dt)
            self.arm_tracker.hold(np.clip(setpoint, arm.lower, arm.upper))
        q_target = self.arm_tracker.sample(next_ns * 1e-9)
        grip = float(np.mean(self.gripper_tracker.sample(next_ns * 1e-9)))
        open_, closed = self.cfg.gripper_open_position, self.cfg.gripper_closed_position
        frac_closed = float(np.clip((grip - open_) / (closed - open_), 0.0, 1.0))
        arm.step(q_target, GRIPPER_OPEN_ACTION + frac_closed * (GRIPPER_CLOSE_ACTION - GRIPPER_OPEN_ACTION))
        self._now_ns = next_ns
        if self.episode_result is None:
            if self.success_step is None and arm.success():
                self.success_step = arm.step_count
            if self.success_step is not None or 0 < self.horizon <= arm.step_count:
                self._end_episode()

    def _end_episode(self) -> None:
        """Publish the episode's record once: the keys of rollout.EpisodeResult.to_dict, plus the arm's own."""
        pert = self.perturbation
        if pert is None:
            perturbations = []
        elif self.perturbation_result is None:  # never reached: said, as a direct sweep says it
            perturbations = [{**pert.to_dict(), "applied_step": None}]
        else:
            perturbations = [self.perturbation_result]
        self.episode_result = {
            "success": self.success_step is not None, "steps": self.arm.step_count, "seed": self.episode_seed,
            "initial_condition": self.initial_condition.to_dict(), "perturbations": perturbations,
            "success_step": self.success_step, "final_object_pose": self.arm.object_pose(),
            "sim_arm": {"episode": self.episode, "task": self.cfg.task,
                        "ended": "success" if self.success_step is not None else "horizon",
                        "start_time_s": self.episode_start_ns * 1e-9, "end_time_s": self._now_ns * 1e-9,
                        "refused_commands_total": int(sum(self.refused.values())),
                        "previous_episode_commands": self.previous_episode_commands},
        }
        self._episode_pub.publish(String(data=json.dumps(self.episode_result)))

    def _publish_state(self, force: bool = False) -> None:
        """Clock every step; joint states, poses and success at state_rate_hz; images at camera_rate_hz."""
        now_ns, cfg, arm = self._now_ns, self.cfg, self.arm
        stamp = stamp_of(now_ns)
        if self._clock_pub is not None:
            self._clock_pub.publish(ClockMsg(clock=stamp))
        if self._state_gate.due(now_ns) or force:
            js = JointState()
            js.header.stamp = stamp
            js.name = [*cfg.joint_names, *cfg.gripper_joint_names]
            js.position = [*arm.joint_positions().tolist(), *arm.finger_positions().tolist()]
            js.velocity = [*arm.joint_velocities().tolist(), *arm.finger_velocities().tolist()]
            self._joint_pub.publish(js)
            pos, quat = arm.eef_pose()
            self._pose_pub.publish(self._pose_msg(stamp, cfg.base_frame_id, pos, quat))
            obj_pos, obj_quat = arm.object_world_pose()
            self._object_pub.publish(self._pose_msg(stamp, "world", obj_pos, obj_quat))
            self._success_pub.publish(Bool(data=arm.success()))
        if self._image_pubs and (self._camera_gate.due(now_ns) or force):
            for camera, pub in zip(cfg.camera_names, self._image_pubs, strict=True):
                pub.publish(to_image_msg(arm.render(camera), "rgb8", camera, stamp))

    @staticmethod
    def _pose_msg(stamp: Time, frame_id: str, pos: np.ndarray, quat_xyzw: np.ndarray) -> PoseStamped:
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = stamp, frame_id
        p, o = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(v) for v in pos)
        o.x, o.y, o.z, o.w = (float(v) for v in quat_xyzw)
        return msg

    def now_s(self) -> float:
        """Current sim time (s since the epoch, as stamped)."""
        return self._now_ns * 1e-9

    def destroy_node(self) -> None:
        """Stop stepping, then release the simulator (also after a failed __init__: rclpy may call this)."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        arm = self.__dict__.pop("arm", None)
        if arm is not None:
            with self.lock:
                arm.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console entry point (``sim_arm_node``): a bad parameter exits with one clear line, code 1.

    Stops on SIGINT/SIGTERM like the other nodes (spinning.StopSignals), exit code 0.
    """
    return run_node("sim_arm_node", SimArmNode, args)


if __name__ == "__main__":
    sys.exit(main())
