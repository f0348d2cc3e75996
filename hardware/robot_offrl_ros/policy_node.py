"""The managed (lifecycle) ROS 2 node that runs a robot_offrl policy on a physical arm.

Lifecycle: configure loads the policy and checks that the parameters can feed its observation
schema and drive its action space; activate only succeeds on fresh observations; every fault
(stale input, e-stop, NaN, limit violation in hold mode, exception) holds the arm and latches
until an explicit ``~/start``. Commands are only published while the node is running, checked
under the same lock the e-stop takes, so an e-stop that arrives during inference wins, and a
result that outlives its run (deactivate, cleanup, a hold) is dropped. Every controller message
passes the command gate in ``outputs.CommandPublisher``: nothing non-finite or out of limits is
ever sent, holds included. ``main`` handles SIGINT/SIGTERM itself so the hold on exit is sent
(and acknowledged) before the ROS context goes away.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_offrl.errors import ConfigError, NonFiniteActionError, UserError
from robot_offrl.runtime.protocol import PlanningPolicy

from .inference_worker import InferenceWorker
from .observations import JOINT_INPUT, POSE_INPUT, ObservationAssembler
from .outputs import ActionLayout, ForwardOutput, Output, ServoOutput, TrajectoryOutput, action_chunk_msg
from .params import EEF_QUAT_KEY, JOINT_POS_KEY, PARAMS, NodeConfig, declare_params, parse_config
from .policy import PolicyFactory, check_chunk, check_replanning, chunk_length_limit, load_runtime
from .qos import camera_qos
from .safety import JointCommandFilter, JointLimits, UnsafeCommandError, WorkspaceBox, require_finite
from .scheduling import (
    LatencyEstimate,
    first_action_time,
    message_time_s,
    plan_due,
    schedule_chunk,
    splice,
)
from .spinning import StopSignals, run_node
from .watchdog import Watchdog

ESTOP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATUS_QOS = ESTOP_QOS
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Reasons that mean something went wrong (diagnostics ERROR); the others are operator actions.
FAULTS = ("watchdog", "estop", "inference_error", "nonfinite", "joint_limit", "twist_limit", "workspace", "names",
          "observation")
EXIT_HOLD_WAIT_S = 2.0  # how long shutdown waits for the controllers to acknowledge the final hold


def seconds_to_msg(seconds: float) -> Any:
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


class _Stats:
    """Rolling numbers for /diagnostics, reset at each activation."""

    def __init__(self) -> None:
        self.send_times: deque[float] = deque(maxlen=50)
        self.latencies_s: deque[float] = deque(maxlen=200)
        self.dropped_actions = 0
        self.plans = 0
        self.late_chunks = 0
        self.limit_clamped = 0
        self.velocity_capped = 0
        self.last_warning_time = -1e9


class PolicyNode(LifecycleNode):
    """Lifecycle node: policy in, safe joint trajectories / forward commands / servo twists out."""

    def __init__(self, node_name: str = "policy_node", *, policy_factory: PolicyFactory | None = None,
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._factory: PolicyFactory = policy_factory or load_runtime
        declare_params(self, PARAMS)
        self._lock = threading.RLock()
        # Set by ~/start, activation and ~/reset_policy; the inference thread clears the policy's history
        # before its next plan, so no ROS callback ever waits for an inference in progress.
        self._reset_pending = threading.Event()
        self._status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lifecycle = "unconfigured"
        self._state = "unconfigured"  # unconfigured | inactive | running | held
        self._reason = ""
        self._fault = False
        self._estop = False
        self._input_error = ""
        self._qos_errors: dict[str, str] = {}  # camera topic -> why no publisher could match
        self._frames_lost: dict[str, int] = {}  # camera topic -> frames DDS reported lost
        # A fresh object per run (activation or ~/start); None while not running. An inference result
        # is only used if the run it was computed for is still the current one.
        self._run_token: object | None = None
        self._stats = _Stats()
        self._cfg: NodeConfig | None = None
        self._policy: PlanningPolicy | None = None
        self._assembler: ObservationAssembler | None = None
        self._watchdog: Watchdog | None = None
        self._output: Output | None = None
        self._action_names: list[str] = []
        self._dt = 0.0
        # Plan-ahead: recent plan times (observation to send), and the last chunk sent in the current
        # run as (run token, absolute action times, action values): when its last action is due and
        # what the next chunk is spliced onto. A chunk from an ended run is never spliced onto.
        self._plan_latency = LatencyEstimate()
        self._last_sent: tuple[object, np.ndarray, np.ndarray] | None = None
        self._entities: list[tuple[str, Any]] = []
        self._chunk_pub: Any = None
        self._run_timers: list[Any] = []
        rate = self.get_parameter("diagnostics_rate_hz").value
        self._diag_timer = self.create_timer(1.0 / rate if rate > 0 else 1.0, self._publish_diagnostics)
        self._autostart_timer = None
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.5, self._autostart_step)
        # Inference runs here, so every ROS callback (e-stop, watchdog, services) stays on one executor thread.
        self._worker = InferenceWorker(self._control_step, name=f"{node_name}-inference")
        self._publish_status()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = parse_config({spec.name: self._param_value(spec.name) for spec in PARAMS})
            policy = self._factory(cfg)
            check_replanning(policy)
            assembler = ObservationAssembler(policy.obs_schema, cfg)
            layout = ActionLayout.build(policy.action_space, cfg)
            rate = cfg.control_rate_hz or float(policy.control_rate_hz)
            if not rate > 0:
                raise ConfigError(f"control rate must be > 0 Hz: set control_rate_hz (checkpoint gives {rate})")
            limits = JointLimits.from_lists(cfg.joint_names, cfg.joint_lower_limits, cfg.joint_upper_limits,
                                            cfg.max_joint_velocity, cfg.velocity_scale)
            box = WorkspaceBox.from_lists(cfg.workspace_min, cfg.workspace_max)
            joint_filter = JointCommandFilter(limits, cfg.limit_violation)
            self._warm_up(policy, limits, cfg)
        except UserError as exc:
            return self._configure_failed(str(exc))
        except Exception as exc:  # a broken checkpoint or factory must not take the node down
            self.get_logger().error(traceback.format_exc())
            return self._configure_failed(f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._cfg, self._policy, self._assembler = cfg, policy, assembler
            self._action_names = [str(n) for n in policy.action_space.names]
            self._dt = 1.0 / rate
            self._plan_latency = LatencyEstimate()  # the warm-up's one-time costs are not a plan time
            self._last_sent = None
            self._watchdog = Watchdog(assembler.timeouts)
            try:
                self._output = self._make_output(cfg, layout, joint_filter, box, policy)
            except UserError as exc:
                self._destroy_entities()
                return self._configure_failed(str(exc))
            self._create_io(cfg, assembler)
            self._lifecycle, self._state, self._reason, self._fault = "inactive", "inactive", "", False
        mode = "CONTROL ENABLED" if cfg.enable_control else "dry run (enable_control=false)"
        self.get_logger().info(f"configured: {cfg.output_mode} at {rate:.1f} Hz, {mode}")
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            problem = self._start_problem()
            if problem:
                self.get_logger().warning(f"cannot activate: {problem}")
                self._reason = f"cannot activate: {problem}"
                self._publish_status()
                return TransitionCallbackReturn.FAILURE
            assert self._cfg is not None
            self._stats = _Stats()
            self._run_timers.append(self.create_timer(self._dt, self._worker.request))
            watch_period = min(0.5 * self._dt, 0.05)
            self._run_timers.append(self.create_timer(watch_period, self._watchdog_tick))
            if self._cfg.output_mode in ("forward", "servo"):
                self._run_timers.append(self.create_timer(1.0 / self._cfg.forward_rate_hz, self._stream_tick))
            self._lifecycle = "active"
            self._set_running()
        self.get_logger().info("activated: running")
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cancel_run_timers()
        with self._lock:
            self._hold("deactivated", "deactivated by lifecycle transition")
            self._lifecycle, self._state = "inactive", "inactive"
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.safe_stop("shutdown")
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.safe_stop("lifecycle error")
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ public helpers
    @property
    def state(self) -> str:
        """running | held | inactive | unconfigured (the node's own run state, for tests and tools)."""
        return self._state

    def safe_stop(self, why: str, wait_s: float = 0.0) -> bool:
        """Hold if anything may be moving; used on shutdown paths that skip deactivate.

        With ``wait_s`` > 0, wait until the controllers acknowledged the hold (reliable QoS), so a
        process that exits right after still delivered it. True when nothing is left unsent.
        """
        self._cancel_run_timers()
        with self._lock:
            if self._state in ("running", "held"):
                self._hold("deactivated", why)
            output = self._output
        return output is None or wait_s <= 0 or output.wait_sent(wait_s)

    def destroy_node(self) -> None:
        self._worker.close()
        super().destroy_node()

    # ------------------------------------------------------------------ configure helpers
    def _param_value(self, name: str) -> Any:
        """The parameter's value; None for an array declared empty and never set (YAML ``[]``)."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def _configure_failed(self, message: str) -> TransitionCallbackReturn:
        self.get_logger().error(f"configure failed: {message}")
        with self._lock:
            self._reason, self._fault = f"configure failed: {message}", True
        self._publish_status()
        return TransitionCallbackReturn.FAILURE

    def _warm_up(self, policy: PlanningPolicy, limits: JointLimits, cfg: NodeConfig) -> None:
        """One inference on a synthetic observation, so the first real step is not the slow one."""
        obs: dict[str, np.ndarray] = {}
        for spec in policy.obs_schema:
            shape = tuple(spec.shape)
            if spec.name == JOINT_POS_KEY:
                obs[spec.name] = ((limits.lower + limits.upper) / 2).astype(np.float32)
            elif spec.name == EEF_QUAT_KEY:
                obs[spec.name] = np.array([0, 0, 0, 1], dtype=np.float32)
            else:
                obs[spec.name] = np.zeros(shape, dtype=np.dtype(str(spec.dtype)))
        chunk = check_chunk(policy.plan(obs), chunk_length_limit(policy, cfg), len(policy.action_space.names))
        require_finite(chunk, "warm-up action chunk")
        policy.reset()

    def _make_output(self, cfg: NodeConfig, layout: ActionLayout, joint_filter: JointCommandFilter,
                     box: WorkspaceBox, policy: PlanningPolicy) -> Output:
        if cfg.output_mode == "trajectory":
            return TrajectoryOutput(self, cfg, layout, COMMAND_QOS, joint_filter, box)
        if cfg.output_mode == "forward":
            return ForwardOutput(self, cfg, layout, COMMAND_QOS, joint_filter, box)
        low = np.asarray(policy.action_space.low, dtype=np.float64)
        high = np.asarray(policy.action_space.high, dtype=np.float64)
        return ServoOutput(self, cfg, layout, COMMAND_QOS, low, high, box, self._dt)

    def _create_io(self, cfg: NodeConfig, assembler: ObservationAssembler) -> None:
        def keep(kind: str, entity: Any) -> None:
            self._entities.append((kind, entity))

        keep("sub", self.create_subscription(JointState, cfg.joint_states_topic, self._on_joint_state,
                                             qos_profile_sensor_data))
        self._qos_errors.clear()
        self._frames_lost.clear()
        for topic in assembler.camera_topics:
            msg_type = CompressedImage if topic.rstrip("/").endswith("/compressed") else Image
            events = SubscriptionEventCallbacks(incompatible_qos=self._camera_qos_mismatch(topic, cfg),
                                                message_lost=self._camera_frames_lost(topic))
            keep("sub", self.create_subscription(msg_type, topic, self._image_callback(topic),
                                                 camera_qos(cfg.camera_reliability), event_callbacks=events))
        if cfg.ee_pose_topic:
            keep("sub", self.create_subscription(PoseStamped, cfg.ee_pose_topic, self._on_pose,
                                                 qos_profile_sensor_data))
        keep("sub", self.create_subscription(Bool, cfg.estop_topic, self._on_estop_msg, ESTOP_QOS))
        self._chunk_pub = self.create_publisher(JointTrajectory, "~/action_chunk", 10)
        keep("pub", self._chunk_pub)
        for name, srv_type, callback in (
            ("~/start", Trigger, self._srv_start),
            ("~/stop", Trigger, self._srv_stop),
            ("~/reset_policy", Trigger, self._srv_reset),
            ("~/estop", SetBool, self._srv_estop),
        ):
            keep("srv", self.create_service(srv_type, name, callback))

    def _destroy_entities(self) -> None:
        for kind, entity in self._entities:
            {"sub": self.destroy_subscription, "pub": self.destroy_publisher, "srv": self.destroy_service}[kind](
                entity
            )
        self._entities.clear()
        if self._output is not None:
            self._output.destroy()
            self._output = None

    def _teardown(self) -> None:
        self._cancel_run_timers()
        with self._lock:
            self._run_token = None
            self._destroy_entities()
            self._policy = self._assembler = self._watchdog = self._cfg = None
            self._lifecycle, self._state, self._reason, self._fault = "unconfigured", "unconfigured", "", False
        self._publish_status()

    def _cancel_run_timers(self) -> None:
        with self._lock:
            timers, self._run_timers = self._run_timers, []
        for timer in timers:
            timer.cancel()
            self.destroy_timer(timer)

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, header: Any) -> float:
        cfg = self._cfg
        return message_time_s(header, cfg is not None and cfg.use_header_stamps, self._now())

    def _on_joint_state(self, msg: JointState) -> None:
        assembler, watchdog = self._assembler, self._watchdog
        if assembler is None or watchdog is None:
            return
        stamp = self._stamp(msg.header)
        try:
            assembler.on_joint_state(msg.name, msg.position, msg.velocity, stamp)
        except UserError as exc:  # not fed to the watchdog: the joints count as missing
            if self._input_error != str(exc):
                self.get_logger().error(str(exc))
            self._input_error = str(exc)
            if self._state == "running":  # hold now, at the last finite positions, not one timeout later
                self._hold("observation", str(exc))
            return
        self._input_error = ""
        watchdog.feed(JOINT_INPUT, stamp)

    def _image_callback(self, topic: str) -> Any:
        def callback(msg: Any) -> None:
            assembler, watchdog = self._assembler, self._watchdog
            if assembler is None or watchdog is None:
                return
            stamp = self._stamp(msg.header)
            assembler.on_image(topic, msg, stamp)
            watchdog.feed(topic, stamp)

        return callback

    def _camera_qos_mismatch(self, topic: str, cfg: NodeConfig) -> Any:
        def callback(info: Any) -> None:
            message = (f"{topic}: a publisher's QoS cannot feed this camera_reliability={cfg.camera_reliability} "
                       "subscription (a best-effort publisher needs camera_reliability: best_effort, or make "
                       "the driver publish reliable)")
            if self._qos_errors.get(topic) != message:
                self.get_logger().error(message)
            self._qos_errors[topic] = message

        return callback

    def _camera_frames_lost(self, topic: str) -> Any:
        def callback(info: Any) -> None:
            self._frames_lost[topic] = int(info.total_count)

        return callback

    def _on_pose(self, msg: PoseStamped) -> None:
        assembler, watchdog = self._assembler, self._watchdog
        if assembler is None or watchdog is None:
            return
        stamp = self._stamp(msg.header)
        p, q = msg.pose.position, msg.pose.orientation
        assembler.on_pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), stamp)
        watchdog.feed(POSE_INPUT, stamp)

    def _on_estop_msg(self, msg: Bool) -> None:
        self._set_estop(bool(msg.data), f"topic {self._cfg.estop_topic if self._cfg else ''}")

    # ------------------------------------------------------------------ running
    def _start_problem(self) -> str:
        """Why the node may not start running now ('' when it may)."""
        if self._watchdog is None:
            return "not configured"
        if self._estop:
            return "emergency stop is engaged; release it (estop false) first"
        stale = self._watchdog.stale(self._now())
        if stale:
            hints = [self._qos_errors[s.name] for s in stale if s.name in self._qos_errors]
            return "waiting for fresh observations: " + "; ".join([str(s) for s in stale] + hints)
        if self._input_error:
            return self._input_error
        return ""

    def _set_running(self) -> None:
        self._reset_pending.set()
        self._run_token = object()
        self._state, self._reason, self._fault = "running", "", False

    def _plan_due(self, token: object, cfg: NodeConfig) -> bool:
        """plan_ahead auto/chunk: whether this control period must plan (see scheduling.plan_due).

        Decided when the step starts, not when the tick asked: a tick that arrived during the
        previous plan saw the chunk before the one that plan just sent.
        """
        if cfg.plan_ahead == "off":
            return True
        with self._lock:
            last = self._last_sent
            chunk_end = float(last[1][-1]) if last is not None and last[0] is token else None
        return plan_due(self._now(), self._dt, chunk_end, self._plan_latency.value(), cfg.plan_ahead_margin_s,
                        replan_when_fast=cfg.plan_ahead == "auto")

    def _control_step(self) -> None:
        """One control period, on the inference thread: plan from the newest observations, send.

        Inference runs without the lock; everything it then does (log the chunk, send, or hold on
        a fault) happens under the lock and only if its run is still the current one, so a result
        that arrives after a hold, deactivate or cleanup is dropped without touching a publisher.
        """
        with self._lock:
            token = self._run_token
            cfg, assembler, watchdog, policy = self._cfg, self._assembler, self._watchdog, self._policy
            output, chunk_pub = self._output, self._chunk_pub
        if token is None or cfg is None or assembler is None or watchdog is None or policy is None or output is None:
            return
        due = self._plan_due(token, cfg)
        # Between plans the chunk being executed lasts long enough, but a policy that keeps a history
        # (PolicyRuntime.observe, optional in the protocol) still gets this period's observation.
        observe = getattr(policy, "observe", None)
        if not due and observe is None:
            return
        step_start = self._now()
        estimate = self._plan_latency.value()
        fast = estimate is not None and estimate < self._dt  # plans within a period: replan every period
        stale = watchdog.stale(step_start)
        if stale:
            if due:  # between plans the watchdog's own timer holds; stale inputs never enter the history
                self._step_fault(token, "watchdog", "stale observations: " + "; ".join(str(s) for s in stale))
            return
        try:
            obs, obs_stamp = assembler.build()
            start = time.perf_counter()
            if self._reset_pending.is_set():
                self._reset_pending.clear()
                policy.reset()
            if not due:
                observe(obs)
                return
            raw = policy.plan(obs)
            latency = time.perf_counter() - start
            chunk = check_chunk(raw, chunk_length_limit(policy, cfg), len(self._action_names))
            with self._lock:
                if self._run_token is not token:
                    self.get_logger().debug("inference finished after its run ended; result dropped")
                    return
                chunk_pub.publish(action_chunk_msg(self._action_names, chunk, self._dt, seconds_to_msg(obs_stamp)))
                require_finite(chunk, "policy action chunk")
                now = self._now()
                first = first_action_time(obs_stamp, self._dt, cfg.output_mode)
                sched = schedule_chunk(chunk, first, now, self._dt, cfg.min_lead_time_s)
                stats = self._stats
                stats.latencies_s.append(latency)
                stats.plans += 1
                stats.dropped_actions += sched.dropped
                # The whole step, observation to send: what plan-ahead must start early by.
                self._plan_latency.add(now - step_start)
                if sched.empty:  # the controller finishes the previous chunk, then rests
                    stats.late_chunks += 1
                    stats.last_warning_time = now
                    return
                last = self._last_sent
                # Spliced only while plans are timed ahead: a policy that replans every period runs just
                # the first action of each chunk, which must be its own.
                timed = cfg.plan_ahead == "chunk" or (cfg.plan_ahead == "auto" and not fast)
                if timed and last is not None and last[0] is token:
                    sched = splice(last[1], last[2], sched, now)
                report = output.send(sched, assembler.joint_positions(), assembler.ee_position(), now,
                                     seconds_to_msg(now))
                stats.send_times.append(now)
                self._last_sent = (token, now + sched.times_from_now, sched.values)
                stats.limit_clamped += report.limit_clamped
                stats.velocity_capped += report.velocity_capped
                if report.limit_clamped:
                    stats.last_warning_time = now
        except UnsafeCommandError as exc:
            self._step_fault(token, exc.reason, str(exc))
        except NonFiniteActionError as exc:  # a UserError too, but the policy's fault, not the sensors'
            self._step_fault(token, "nonfinite", str(exc))
        except UserError as exc:
            self._step_fault(token, "observation", str(exc))
        except Exception as exc:  # inference must never crash into an unsafe state
            self._step_fault(token, "inference_error", f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def _step_fault(self, token: object, reason: str, message: str, trace: str = "") -> None:
        """Hold for a fault of the control step, unless its run already ended (then: debug log only)."""
        with self._lock:
            if self._run_token is not token:
                self.get_logger().debug(f"late {reason} from an ended run ignored: {message}")
                return
            if trace:
                self.get_logger().error(trace)
            self._hold(reason, message)

    def _watchdog_tick(self) -> None:
        watchdog = self._watchdog
        if self._state != "running" or watchdog is None:
            return
        stale = watchdog.stale(self._now())
        if stale:
            self._hold("watchdog", "stale observations: " + "; ".join(str(s) for s in stale))

    def _stream_tick(self) -> None:
        with self._lock:
            if self._state == "running" and self._output is not None and self._assembler is not None:
                try:
                    self._output.stream(self._now(), self._assembler.ee_position())
                except UnsafeCommandError as exc:
                    self._hold(exc.reason, str(exc))

    def _hold(self, reason: str, message: str) -> None:
        """Stop sending chunks, command a hold at the last finite measured joints, latch until ~/start.

        When no hold can be published (no finite measurement yet, or the measurement is outside
        the limits) the reason says so: the controller then keeps its last checked command.
        """
        with self._lock:
            self._run_token = None  # no result of the ended run is published from here on
            if self._output is not None and self._assembler is not None:
                try:
                    unsent = self._output.hold(self._assembler.joint_positions())
                except Exception:  # publishing a hold must not raise out of a safety path
                    self.get_logger().error(traceback.format_exc())
                    unsent = "no hold published: " + traceback.format_exc(limit=0).strip()
                if unsent:
                    message = f"{message} ({unsent})"
            # State and reason change together, once the hold's outcome is known: a status reader never
            # sees "held" with a reason that omits that no hold was published.
            if self._state in ("running", "held"):
                self._state = "held"
            self._reason, self._fault = f"{reason}: {message}", reason in FAULTS
        if reason in FAULTS:  # rcutils wants one severity per call site, hence two calls
            self.get_logger().error(f"HOLD ({reason}): {message}")
        else:
            self.get_logger().info(f"HOLD ({reason}): {message}")
        self._publish_status()
        self._publish_diagnostics()

    def _set_estop(self, engaged: bool, source: str) -> None:
        with self._lock:
            changed = engaged != self._estop
            self._estop = engaged
        if engaged:
            self._hold("estop", f"emergency stop from {source}")
        elif changed:
            self.get_logger().warning(f"emergency stop released from {source}; call ~/start to resume")
            self._publish_status()

    # ------------------------------------------------------------------ services
    def _srv_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            if self._lifecycle != "active":
                response.success, response.message = False, f"node is {self._lifecycle}; activate it first"
                return response
            problem = self._start_problem()
            if problem:
                response.success, response.message = False, problem
                return response
            was_running = self._state == "running"
            if not was_running:
                self._stats = _Stats()
                self._set_running()
        response.success, response.message = True, "already running" if was_running else "running"
        if not was_running:
            self.get_logger().info("started by ~/start")
            self._publish_status()
        return response

    def _srv_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._lifecycle != "active":
            response.success, response.message = False, f"node is {self._lifecycle}; nothing to stop"
            return response
        self._hold("stopped", "stopped by ~/stop")
        response.success, response.message = True, "holding; call ~/start to resume"
        return response

    def _srv_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._policy is None:
            response.success, response.message = False, "no policy loaded; configure first"
            return response
        self._reset_pending.set()
        response.success, response.message = True, "policy history will be cleared before the next plan"
        return response

    def _srv_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._set_estop(bool(request.data), "service ~/estop")
        response.success = True
        response.message = "emergency stop engaged" if request.data else "released; call ~/start to resume"
        return response

    # ------------------------------------------------------------------ autostart
    def _autostart_step(self) -> None:
        if self._lifecycle == "unconfigured":
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                self.get_logger().error("autostart: configure failed; fix the parameters and configure by hand")
                self._stop_autostart()
        elif self._lifecycle == "inactive":
            self.trigger_activate()
        else:
            self._stop_autostart()

    def _stop_autostart(self) -> None:
        if self._autostart_timer is not None:
            self._autostart_timer.cancel()

    # ------------------------------------------------------------------ reporting
    def _status_dict(self) -> dict[str, Any]:
        cfg = self._cfg
        return {
            "lifecycle": self._lifecycle,
            "state": self._state,
            "reason": self._reason,
            "estop": self._estop,
            "enable_control": bool(cfg.enable_control) if cfg else bool(self.get_parameter("enable_control").value),
            "output_mode": cfg.output_mode if cfg else self.get_parameter("output_mode").value,
        }

    def _publish_status(self) -> None:
        self._status_pub.publish(String(data=json.dumps(self._status_dict())))

    def _publish_diagnostics(self) -> None:
        with self._lock:
            now = self._now()
            stats = self._stats
            status = DiagnosticStatus()
            status.name = f"{self.get_fully_qualified_name()}: policy"
            status.hardware_id = str(self.get_parameter("hardware_id").value)
            recent_warning = now - stats.last_warning_time < 2.0
            if self._fault:
                status.level = DiagnosticStatus.ERROR
            elif self._state == "running" and recent_warning:
                status.level = DiagnosticStatus.WARN
            else:
                status.level = DiagnosticStatus.OK
            status.message = self._state + (f": {self._reason}" if self._reason else "")
            sends = list(stats.send_times)
            rate = (len(sends) - 1) / (sends[-1] - sends[0]) if len(sends) >= 2 and now - sends[-1] < 2.0 else 0.0
            lat = np.asarray(stats.latencies_s) * 1000.0
            cfg = self._cfg
            values = {
                "state": self._state,
                "lifecycle": self._lifecycle,
                "reason": self._reason,
                "estop": str(self._estop).lower(),
                "control_rate_hz": f"{1.0 / self._dt:.2f}" if self._dt else "",
                "command_rate_hz": f"{rate:.2f}",
                "inference_latency_ms_last": f"{lat[-1]:.1f}" if lat.size else "",
                "inference_latency_ms_p50": f"{np.percentile(lat, 50):.1f}" if lat.size else "",
                "inference_latency_ms_max": f"{lat.max():.1f}" if lat.size else "",
                "dropped_actions": str(stats.dropped_actions),
                "late_chunks": str(stats.late_chunks),
                "plans": str(stats.plans),
                "plan_ahead": cfg.plan_ahead if cfg else "",
                "plan_latency_estimate_ms": f"{est * 1000:.1f}" if (est := self._plan_latency.value()) else "",
                "limit_clamped": str(stats.limit_clamped),
                "velocity_capped": str(stats.velocity_capped),
            }
            if self._watchdog is not None:
                for name, age in self._watchdog.ages(now).items():
                    values[f"observation_age_ms[{name}]"] = "never" if age is None else f"{age * 1000:.0f}"
            for topic, lost in self._frames_lost.items():
                values[f"frames_lost[{topic}]"] = str(lost)
            for topic, problem in self._qos_errors.items():
                values[f"qos_error[{topic}]"] = problem
            if self._input_error:
                values["input_error"] = self._input_error
            status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None, *, policy_factory: PolicyFactory | None = None) -> int:
    """Console entry point. One executor thread is enough: inference has its own (see InferenceWorker).

    SIGINT and SIGTERM (Ctrl-C, ``ros2 launch`` stopping) end the spin; the node then publishes a
    hold, waits up to EXIT_HOLD_WAIT_S for the controllers to acknowledge it, and only then
    shuts ROS down: exit code 0. ``policy_factory`` replaces checkpoint loading (tests, benches).
    """

    def hold_before_shutdown(node: PolicyNode, stop: StopSignals) -> None:
        why = f"process exit ({stop.name})" if stop.received is not None else "process exit"
        if not node.safe_stop(why, wait_s=EXIT_HOLD_WAIT_S):
            node.get_logger().warning(f"the exit hold was not acknowledged within {EXIT_HOLD_WAIT_S} s")

    return run_node("policy_node", lambda: PolicyNode(policy_factory=policy_factory), args, hold_before_shutdown)


if __name__ == "__main__":
    sys.exit(main())
