"""From a scheduled, still-unfiltered chunk to controller messages, one class per output mode.

Each output applies the safety filter for its kind of command before anything is published,
and knows how to hold. Whatever an output builds, it can only reach a controller through a
:class:`CommandPublisher`, which checks the finished message itself (every number finite, every
joint inside its limits, every twist axis inside its bound) and refuses it otherwise: one
check, after all the arithmetic, that no code path can skip. In a dry run the same classes
publish under ``~/dry_run/`` so an operator can inspect exactly what would have been sent while
no controller hears it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import TwistStamped
from rclpy.duration import Duration as RosDuration
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robot_offrl.errors import ConfigError

from .params import NodeConfig
from .safety import (
    Bounds,
    FilterReport,
    JointCommandFilter,
    UnsafeCommandError,
    WorkspaceBox,
    match_names,
    require_finite,
)
from .scheduling import ScheduledChunk, finite_difference_velocities

SERVO_ACTIONS = ("dx", "dy", "dz", "dax", "day", "daz")
TWIST_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
NO_MEASUREMENT = "no hold published: no finite joint positions measured yet"


def duration(seconds: float) -> Duration:
    sec = int(np.floor(seconds))
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def trajectory_msg(joint_names: Sequence[str], positions: np.ndarray, times_s: np.ndarray,
                   stamp: Any = None, velocities: bool = True) -> JointTrajectory:
    """A JointTrajectory with strictly increasing time_from_start and finite-difference velocities."""
    msg = JointTrajectory()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    vel = finite_difference_velocities(positions, times_s)
    for k in range(positions.shape[0]):
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in positions[k]]
        if velocities:
            point.velocities = [float(v) for v in vel[k]]
        point.time_from_start = duration(float(times_s[k]))
        msg.points.append(point)
    return msg


def action_chunk_msg(action_names: Sequence[str], chunk: np.ndarray, dt: float, stamp: Any) -> JointTrajectory:
    """The raw predicted chunk for logging: stamped with the observation time, step k at k*dt."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.joint_names = list(action_names)
    for k in range(chunk.shape[0]):
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in chunk[k]]
        point.time_from_start = duration(k * dt)
        msg.points.append(point)
    return msg


def float_array_msg(values: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="joints", size=int(values.size), stride=int(values.size))]
    msg.data = [float(v) for v in values]
    return msg


def twist_values(msg: TwistStamped) -> np.ndarray:
    t = msg.twist
    return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], dtype=np.float64)


def check_command(msg: Any, bounds: Bounds, what: str) -> None:
    """Raise UnsafeCommandError unless every number in ``msg`` is finite and inside ``bounds``.

    Reads the message as it will go on the wire (not the arrays it was built from), so a bug
    anywhere upstream (a NaN measurement in a hold, an interpolation, a scaling) is caught here.
    """
    if isinstance(msg, JointTrajectory):
        index = bounds.indices(list(msg.joint_names), what)
        if not msg.points:
            raise UnsafeCommandError("names", f"{what}: a trajectory without points; not sent")
        for k, point in enumerate(msg.points):
            label = f"{what} point {k}"
            if len(point.positions) != len(index):
                raise UnsafeCommandError("names", f"{label} has {len(point.positions)} positions for "
                                                  f"{len(index)} joints; not sent")
            bounds.require_within(np.asarray(point.positions, dtype=np.float64), label, index)
            for field in ("velocities", "accelerations", "effort"):
                require_finite(np.asarray(getattr(point, field), dtype=np.float64), f"{label} {field}")
            tfs = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
            if tfs < 0:
                raise UnsafeCommandError("names", f"{label}: negative time_from_start {tfs}; not sent")
    elif isinstance(msg, Float64MultiArray):
        bounds.require_within(np.asarray(msg.data, dtype=np.float64), what)
    elif isinstance(msg, TwistStamped):
        bounds.require_within(twist_values(msg), what)
    else:
        raise TypeError(f"{what}: no command check for {type(msg).__name__}")


class CommandPublisher:
    """The only way a message reaches a controller topic (or its ``~/dry_run`` stand-in)."""

    def __init__(self, node: Any, msg_type: Any, topic: str, qos: Any, bounds: Bounds) -> None:
        self.node = node
        self.topic = topic
        self.bounds = bounds
        self.pub = node.create_publisher(msg_type, topic, qos)
        self._what = f"command on {self.pub.topic_name}"

    def publish(self, msg: Any) -> None:
        """Check, then publish; a refused message raises UnsafeCommandError and nothing is sent."""
        check_command(msg, self.bounds, self._what)
        self.pub.publish(msg)

    def wait_sent(self, timeout_s: float) -> bool:
        """Block until every reliable subscriber acknowledged what was published (shutdown holds)."""
        return bool(self.pub.wait_for_all_acked(RosDuration(nanoseconds=int(timeout_s * 1e9))))

    def destroy(self) -> None:
        self.node.destroy_publisher(self.pub)


@dataclass(frozen=True)
class ActionLayout:
    """Where each output finds its values inside the policy's action vector (matched by name)."""

    arm: np.ndarray | None  # indices of joint_names (trajectory / forward)
    servo: np.ndarray | None  # indices of dx..daz (servo)
    gripper: int | None
    gripper_low: float
    gripper_high: float

    @classmethod
    def build(cls, action_space: Any, cfg: NodeConfig) -> ActionLayout:
        names = list(action_space.names)
        mode = str(action_space.mode)
        arm = servo = None
        if cfg.output_mode in ("trajectory", "forward"):
            if mode != "absolute":
                raise ConfigError(
                    f"output_mode {cfg.output_mode} needs absolute joint-position actions but the checkpoint's "
                    f"action space is {mode!r} ({names}); use output_mode servo for end-effector deltas"
                )
            arm = match_names(names, cfg.joint_names, "checkpoint action names")
        else:
            if mode != "delta":
                raise ConfigError(f"output_mode servo needs delta actions {SERVO_ACTIONS}; checkpoint has {mode!r}")
            servo = match_names(names, SERVO_ACTIONS, "checkpoint action names (servo)")
        grip = None
        low = high = 0.0
        if cfg.gripper_topic:
            if cfg.gripper_action_name not in names:
                raise ConfigError(
                    f"gripper_topic is set but gripper_action_name {cfg.gripper_action_name!r} is not an action "
                    f"of this checkpoint ({names}); clear gripper_topic or fix the name"
                )
            grip = names.index(cfg.gripper_action_name)
            low, high = float(action_space.low[grip]), float(action_space.high[grip])
            if not low < high:
                raise ConfigError(f"gripper action bounds must satisfy low < high, got {low}, {high}")
        return cls(arm, servo, grip, low, high)


class Output:
    """Base: gated publishers plus the hold behaviour shared by every mode."""

    def __init__(self, node: Any, cfg: NodeConfig, layout: ActionLayout, qos: Any) -> None:
        self.node = node
        self.cfg = cfg
        self.layout = layout
        self._pubs: list[CommandPublisher] = []
        self.gripper_pub: CommandPublisher | None = None
        if layout.gripper is not None:
            topic = cfg.gripper_topic if cfg.enable_control else "~/dry_run/gripper"
            lo, hi = sorted((cfg.gripper_open_position, cfg.gripper_closed_position))
            names = tuple(cfg.gripper_joint_names)
            bounds = Bounds(names, np.full(len(names), lo), np.full(len(names), hi))
            self.gripper_pub = self._pub(JointTrajectory, topic, qos, bounds)

    def _pub(self, msg_type: Any, topic: str, qos: Any, bounds: Bounds) -> CommandPublisher:
        pub = CommandPublisher(self.node, msg_type, topic, qos, bounds)
        self._pubs.append(pub)
        return pub

    @staticmethod
    def _publish_hold(pub: CommandPublisher, msg: Any) -> str:
        """Publish a hold through the gate; '' when sent, else why nothing was sent (never raises)."""
        try:
            pub.publish(msg)
        except UnsafeCommandError as exc:
            return f"no hold published: {exc}"
        return ""

    def wait_sent(self, timeout_s: float) -> bool:
        """Wait until the controllers acknowledged everything published (True when all did in time)."""
        return all([pub.wait_sent(timeout_s) for pub in self._pubs])

    def _topic(self, controller_topic: str) -> str:
        return controller_topic if self.cfg.enable_control else f"~/dry_run/{self.cfg.output_mode}"

    def send_gripper(self, sched: ScheduledChunk, stamp: Any) -> None:
        if self.gripper_pub is None or self.layout.gripper is None:
            return
        lay, cfg = self.layout, self.cfg
        frac = np.clip((sched.values[:, lay.gripper] - lay.gripper_low) / (lay.gripper_high - lay.gripper_low), 0, 1)
        pos = cfg.gripper_open_position + frac * (cfg.gripper_closed_position - cfg.gripper_open_position)
        pos = np.clip(pos, *sorted((cfg.gripper_open_position, cfg.gripper_closed_position)))  # rounding only
        positions = np.repeat(pos[:, None], len(cfg.gripper_joint_names), axis=1)
        self.gripper_pub.publish(trajectory_msg(cfg.gripper_joint_names, positions, sched.times_from_now, stamp))

    def send(self, sched: ScheduledChunk, current_q: np.ndarray, ee_pos: np.ndarray | None,
             now_s: float, stamp: Any) -> FilterReport:
        raise NotImplementedError  # each mode overrides

    def hold(self, current_q: np.ndarray | None) -> str:
        """Command the arm to stay put; returns '' or why no hold could be published.

        ``current_q`` is the last *finite* measurement (None when there never was one).
        """
        raise NotImplementedError

    def stream(self, now_s: float, ee_pos: np.ndarray | None) -> None:
        """Called at forward_rate_hz while running; only streaming modes publish here."""

    def destroy(self) -> None:
        for pub in self._pubs:
            pub.destroy()
        self._pubs.clear()


def hold_positions(measured_q: np.ndarray, bounds: Bounds) -> np.ndarray:
    """The hold target: the measured joints, clipped into the limits.

    A joint read a little past its limit (tracking overshoot, or MuJoCo settling at a joint stop) must
    still get a hold: otherwise the controller keeps executing the last trajectory after a fault or
    an e-stop. Clipping moves that joint by at most its overshoot, towards the inside.
    """
    return np.clip(np.asarray(measured_q, dtype=np.float64), bounds.lower, bounds.upper)


class TrajectoryOutput(Output):
    """joint_trajectory_controller: each new chunk replaces the previous one on arrival."""

    def __init__(self, node: Any, cfg: NodeConfig, layout: ActionLayout, qos: Any,
                 joint_filter: JointCommandFilter, box: WorkspaceBox) -> None:
        super().__init__(node, cfg, layout, qos)
        self.filter = joint_filter
        self.box = box
        self.pub = self._pub(JointTrajectory, self._topic(cfg.trajectory_topic), qos, joint_filter.limits.bounds)

    def filtered(self, sched: ScheduledChunk, current_q: np.ndarray, ee_pos: np.ndarray | None
                 ) -> tuple[np.ndarray, FilterReport]:
        if ee_pos is not None:
            self.box.require_inside(ee_pos)
        assert self.layout.arm is not None
        return self.filter.apply(sched.values[:, self.layout.arm], sched.times_from_now, current_q)

    def send(self, sched: ScheduledChunk, current_q: np.ndarray, ee_pos: np.ndarray | None,
             now_s: float, stamp: Any) -> FilterReport:
        positions, report = self.filtered(sched, current_q, ee_pos)
        self.pub.publish(trajectory_msg(self.cfg.joint_names, positions, sched.times_from_now, stamp))
        self.send_gripper(sched, stamp)
        return report

    def hold(self, current_q: np.ndarray | None) -> str:
        if current_q is None:
            return NO_MEASUREMENT
        times = np.array([self.cfg.hold_time_s])
        q = hold_positions(current_q, self.pub.bounds)
        return self._publish_hold(self.pub, trajectory_msg(self.cfg.joint_names, q[None, :], times))


class Timeline:
    """Absolute-time waypoints sampled by the streaming modes between policy steps."""

    def __init__(self) -> None:
        self.times: np.ndarray | None = None
        self.values: np.ndarray | None = None

    def set(self, times_s: np.ndarray, values: np.ndarray) -> None:
        self.times, self.values = np.asarray(times_s, dtype=np.float64), np.asarray(values, dtype=np.float64)

    def clear(self) -> None:
        self.times = self.values = None

    def interpolate(self, now_s: float) -> np.ndarray | None:
        """Linear between waypoints, first value before them, last value after them."""
        if self.times is None or self.values is None:
            return None
        value = np.array([np.interp(now_s, self.times, self.values[:, j]) for j in range(self.values.shape[1])])
        # Mathematically a no-op; removes rounding that could put a value an ulp past a waypoint at a limit.
        return np.clip(value, self.values.min(axis=0), self.values.max(axis=0))

    def step(self, now_s: float, period_s: float) -> np.ndarray | None:
        """Zero-order hold: the value whose slot [t_k, t_k + period) contains now; None after the end."""
        if self.times is None or self.values is None or now_s >= self.times[-1] + period_s:
            return None
        k = max(0, int(np.searchsorted(self.times, now_s, side="right")) - 1)
        return self.values[k]


class ForwardOutput(TrajectoryOutput):
    """forward_command_controller: the node interpolates the filtered chunk at forward_rate_hz."""

    def __init__(self, node: Any, cfg: NodeConfig, layout: ActionLayout, qos: Any,
                 joint_filter: JointCommandFilter, box: WorkspaceBox) -> None:
        Output.__init__(self, node, cfg, layout, qos)
        self.filter = joint_filter
        self.box = box
        self.pub = self._pub(Float64MultiArray, self._topic(cfg.forward_topic), qos, joint_filter.limits.bounds)
        self.timeline = Timeline()

    def send(self, sched: ScheduledChunk, current_q: np.ndarray, ee_pos: np.ndarray | None,
             now_s: float, stamp: Any) -> FilterReport:
        positions, report = self.filtered(sched, current_q, ee_pos)
        # Start the interpolation at the measured position now: the first segment then obeys the
        # same velocity cap the filter applied.
        times = np.concatenate([[now_s], now_s + sched.times_from_now])
        self.timeline.set(times, np.vstack([current_q[None, :], positions]))
        self.send_gripper(sched, stamp)
        return report

    def stream(self, now_s: float, ee_pos: np.ndarray | None) -> None:
        value = self.timeline.interpolate(now_s)
        if value is not None:
            self.pub.publish(float_array_msg(value))

    def hold(self, current_q: np.ndarray | None) -> str:
        self.timeline.clear()
        if current_q is None:  # the controller keeps the last (checked) command it was sent
            return NO_MEASUREMENT
        return self._publish_hold(self.pub, float_array_msg(hold_positions(current_q, self.pub.bounds)))


class ServoOutput(Output):
    """MoveIt Servo: end-effector delta actions become TwistStamped, clipped to the workspace box."""

    def __init__(self, node: Any, cfg: NodeConfig, layout: ActionLayout, qos: Any,
                 action_low: np.ndarray, action_high: np.ndarray, box: WorkspaceBox, period_s: float) -> None:
        super().__init__(node, cfg, layout, qos)
        if not cfg.ee_pose_topic:
            raise ConfigError("output_mode servo needs ee_pose_topic so the workspace box can be enforced")
        self.low, self.high = action_low, action_high
        self.box = box
        self.period_s = period_s
        servo = layout.servo if layout.servo is not None else np.arange(len(SERVO_ACTIONS))
        reach = np.maximum(np.abs(action_low[servo]), np.abs(action_high[servo]))
        limit = reach * np.repeat([cfg.servo_linear_scale, cfg.servo_angular_scale], 3)
        if not np.all(np.isfinite(limit)):  # unbounded actions would make the twist check pass anything
            raise ConfigError(
                "output_mode servo needs finite action bounds in the checkpoint's schema (the twist limit is "
                f"|action bound| x servo scale); got low {action_low[servo].tolist()}, high {action_high[servo].tolist()}"
            )
        self.pub = self._pub(TwistStamped, self._topic(cfg.servo_topic), qos,
                             Bounds(TWIST_AXES, -limit, limit, "twist_limit"))
        self.timeline = Timeline()

    def send(self, sched: ScheduledChunk, current_q: np.ndarray, ee_pos: np.ndarray | None,
             now_s: float, stamp: Any) -> FilterReport:
        assert self.layout.servo is not None
        if ee_pos is None:
            raise ConfigError("servo mode: no end-effector pose received; check ee_pose_topic")
        self.box.require_inside(ee_pos)
        clipped = np.clip(sched.values, self.low, self.high)
        report = FilterReport(limit_clamped=int(np.count_nonzero(clipped != sched.values)))
        self.timeline.set(now_s + sched.times_from_now, clipped[:, self.layout.servo])
        self.send_gripper(sched, stamp)
        return report

    def stream(self, now_s: float, ee_pos: np.ndarray | None) -> None:
        action = self.timeline.step(now_s, self.period_s)
        if action is None:
            self._publish_twist(np.zeros(3), np.zeros(3))
            return
        linear = action[:3] * self.cfg.servo_linear_scale
        if ee_pos is not None:
            linear = self.box.clip_velocity(ee_pos, linear, 1.0 / self.cfg.forward_rate_hz)
        self._publish_twist(linear, action[3:6] * self.cfg.servo_angular_scale)

    def _publish_twist(self, linear: np.ndarray, angular: np.ndarray) -> None:
        self.pub.publish(self._twist_msg(linear, angular))

    def _twist_msg(self, linear: np.ndarray, angular: np.ndarray) -> TwistStamped:
        msg = TwistStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = self.cfg.servo_frame_id
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in angular)
        return msg

    def hold(self, current_q: np.ndarray | None) -> str:
        self.timeline.clear()
        return self._publish_hold(self.pub, self._twist_msg(np.zeros(3), np.zeros(3)))
