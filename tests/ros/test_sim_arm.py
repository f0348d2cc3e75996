"""The simulated arm over real rclpy traffic: streams and rates, trajectory tracking in time,
refused commands, episodes driven through ROS (parameters + reset), the success flag, and the
entry point, parameter file and launch file.

One sim arm (a real robosuite Lift episode) serves the in-process tests of this module, on a
domain id of its own; everything is asserted on sim-time stamps, never on wall-clock time.
"""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
import yaml  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray, UInt64  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from robot_offrl_ros.outputs import duration  # noqa: E402
from robot_offrl_ros.sim_arm_controller import CommandRefused, SetpointTracker, trajectory_arrays  # noqa: E402
from robot_offrl_ros.sim_arm_node import COMMAND_QOS, LATCHED_QOS, SimArmNode  # noqa: E402
from robot_offrl_ros.sim_arm_params import SIM_ARM_PARAM_NAMES, parse_sim_arm_config  # noqa: E402
from robot_offrl_ros.spinning import SpinThread  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.render]
ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "hardware"
JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
CAMERA_SIZE = 32
CAMERA_RATE_HZ = 10.0
CONTROL_PERIOD_S = 0.05  # lift's 20 Hz control rate: joint states come at every step by default
TRAJ_TOPIC = "/joint_trajectory_controller/joint_trajectory"
CHILD_DOMAIN_OFFSET = 66
TIMEOUT_S = 60.0  # generous: a loaded 2-core machine; every assertion is on sim time


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Probe:
    """The rest of the graph: subscribes to everything the sim arm publishes and sends commands."""

    def __init__(self, ctx: Context) -> None:
        self.node = Node("sim_arm_probe", context=ctx)
        self._lock = threading.Lock()
        self.msgs: dict[str, list[Any]] = {}
        sensor = qos_profile_sensor_data
        for topic, kind, qos in [("/joint_states", JointState, sensor), ("/camera/image_raw", Image, sensor),
                                 ("/ee_pose", PoseStamped, sensor), ("/sim_arm/object_pose", PoseStamped, sensor),
                                 ("/clock", Clock, 10), ("/sim_arm/success", Bool, LATCHED_QOS),
                                 ("/sim_arm/refused_commands", UInt64, LATCHED_QOS)]:
            self.msgs[topic] = []
            self.node.create_subscription(kind, topic, self._keep(topic), qos)
        self.traj = self.node.create_publisher(JointTrajectory, TRAJ_TOPIC, COMMAND_QOS)
        self.forward = self.node.create_publisher(Float64MultiArray, "/forward_position_controller/commands",
                                                  COMMAND_QOS)
        self.twist = self.node.create_publisher(TwistStamped, "/servo_node/delta_twist_cmds", COMMAND_QOS)
        self.gripper = self.node.create_publisher(JointTrajectory, "/gripper_controller/joint_trajectory", COMMAND_QOS)
        self.reset_client = self.node.create_client(Trigger, "/sim_arm/reset")
        self.param_client = self.node.create_client(SetParameters, "/sim_arm/set_parameters")
        self.spin = SpinThread(self.node)

    def _keep(self, topic: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self._lock:
                self.msgs[topic].append(msg)
        return cb

    def get(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.msgs[topic])

    def wait(self, pred: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
        end = time.monotonic() + timeout_s
        while not pred():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            time.sleep(0.02)

    def joint_states_after(self, t_s: float) -> list[JointState]:
        return [m for m in self.get("/joint_states") if stamp_s(m) > t_s]

    def wait_sim_time(self, t_s: float) -> None:
        """Until a joint state stamped after ``t_s`` (sim time) arrived."""
        self.wait(lambda: bool(self.joint_states_after(t_s)), f"sim time {t_s:.2f}")

    def latest_q(self) -> np.ndarray:
        self.wait(lambda: bool(self.get("/joint_states")), "a joint state")
        return np.array(self.get("/joint_states")[-1].position[:7])

    def now(self) -> float:
        self.wait(lambda: bool(self.get("/clock")), "/clock")
        clock = self.get("/clock")[-1].clock
        return clock.sec + clock.nanosec * 1e-9

    def refused(self) -> int:
        msgs = self.get("/sim_arm/refused_commands")
        return int(msgs[-1].data) if msgs else -1

    def call(self, client: Any, request: Any) -> Any:
        assert client.wait_for_service(timeout_sec=TIMEOUT_S), f"{client.srv_name} not available"
        future = client.call_async(request)
        self.wait(future.done, f"{client.srv_name} response")
        return future.result()

    def set_params(self, **values: Any) -> None:
        req = SetParameters.Request(parameters=[ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
                                                for k, v in values.items()])
        results = self.call(self.param_client, req).results
        assert all(r.successful for r in results), [r.reason for r in results]

    def reset(self, **episode: Any) -> Any:
        if episode:
            self.set_params(**episode)
        return self.call(self.reset_client, Trigger.Request())

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def domain() -> Iterator[int]:
    """A domain id for this test process, discovery limited to this host (as conftest.ros_context)."""
    # 101..165, and the child test's domain + CHILD_DOMAIN_OFFSET stays <= 232 (the highest id DDS
    # ports allow); conftest.ros_context draws 1..100, so no other ROS test shares these.
    domain = random.randint(101, 165)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        mp.setenv("ROS_DOMAIN_ID", str(domain))
        yield domain


@pytest.fixture(scope="module")
def rig(domain: int) -> Iterator[tuple[SimArmNode, Probe]]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    params = {"camera_size": CAMERA_SIZE, "camera_rate_hz": CAMERA_RATE_HZ, "real_time_factor": 1.0, "seed": 3}
    node = SimArmNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    spin = SpinThread(node)
    probe = Probe(ctx)
    try:
        yield node, probe
    finally:
        probe.close()
        spin.close()
        node.destroy_node()
        ctx.try_shutdown()


def trajectory(points: list[tuple[float, np.ndarray]], stamp_s: float = 0.0) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9)) % 1_000_000_000
    msg.joint_names = list(JOINTS)
    for t, q in points:
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in q], time_from_start=duration(t)))
    return msg


def test_streams_at_configured_rates(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    start = probe.now()
    probe.wait(lambda: len([m for m in probe.get("/camera/image_raw") if stamp_s(m) > start]) >= 6, "6 images")
    images = [m for m in probe.get("/camera/image_raw") if stamp_s(m) > start]
    assert (images[0].height, images[0].width, images[0].encoding) == (CAMERA_SIZE, CAMERA_SIZE, "rgb8")
    assert len(images[0].data) == CAMERA_SIZE * CAMERA_SIZE * 3 and max(images[0].data) > 0
    image_gaps = np.diff([stamp_s(m) for m in images])
    # Sim-time cadence: a lost sample (best-effort QoS) only makes a gap a multiple of the period.
    assert np.median(image_gaps) == pytest.approx(1 / CAMERA_RATE_HZ, abs=1e-3)
    assert image_gaps.min() >= 1 / CAMERA_RATE_HZ - 1e-3

    states = probe.joint_states_after(start)
    assert list(states[-1].name) == [*JOINTS, "panda_finger_joint1", "panda_finger_joint2"]
    assert len(states[-1].position) == len(states[-1].velocity) == 9
    state_gaps = np.diff([stamp_s(m) for m in states])
    assert np.median(state_gaps) == pytest.approx(CONTROL_PERIOD_S, abs=1e-3)
    assert state_gaps.min() >= CONTROL_PERIOD_S - 1e-3

    clocks = [c.clock.sec + c.clock.nanosec * 1e-9 for c in probe.get("/clock")]
    assert np.all(np.diff(clocks) > 0)
    assert {round(stamp_s(m), 6) for m in states} <= {round(c, 6) for c in clocks}  # stamps are sim time

    poses = [m for m in probe.get("/ee_pose") if stamp_s(m) > start]
    assert poses and poses[-1].header.frame_id == "base_link"
    p = poses[-1].pose.position
    assert 0.2 < p.x < 0.8 and -0.5 < p.y < 0.5 and 0.0 < p.z < 0.7  # policy.yaml's workspace box, base frame
    q = poses[-1].pose.orientation
    assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0, abs=1e-6)


def test_trajectory_is_followed_in_time_not_jumped(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    assert probe.reset().success
    q0 = probe.latest_q()
    mid, target = q0.copy(), q0.copy()
    mid[0] += 0.15
    target[0] += 0.3
    start = probe.now() + 0.5  # header stamp half a second ahead: points due at start + 0.5 s and + 1.0 s
    probe.traj.publish(trajectory([(0.5, mid), (1.0, target)], start))
    probe.wait_sim_time(start + 1.8)
    states = [(stamp_s(m), m.position[0]) for m in probe.joint_states_after(start - 0.2)]
    during = [q for t, q in states if start + 0.25 <= t <= start + 0.85]
    assert len(during) >= 3, states
    assert all(q0[0] + 0.02 < q < target[0] - 0.02 for q in during), (q0[0], during)  # between, not a jump
    joint0 = np.array([q for _, q in states])
    assert np.all(np.diff(joint0) > -0.005)  # moves one way
    assert np.max(np.abs(np.diff(joint0))) < 0.06  # no step near the 0.3 rad a jump would be
    final = probe.joint_states_after(start + 1.6)[-1].position
    assert final[0] == pytest.approx(target[0], abs=0.01)
    assert np.allclose(final[1:7], q0[1:7], atol=0.02)


def test_bad_commands_are_refused_and_the_arm_holds(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    assert probe.reset().success
    probe.wait(lambda: probe.refused() >= 0, "refused_commands")
    before = probe.refused()
    q0 = probe.latest_q()
    nan_q = q0.copy()
    nan_q[2] = float("nan")
    out_of_limits = q0.copy()
    out_of_limits[3] = 0.5  # panda_joint4 must stay below -0.0698
    probe.forward.publish(Float64MultiArray(data=nan_q.tolist()))
    probe.traj.publish(trajectory([(0.2, q0), (0.4, nan_q)]))
    probe.traj.publish(trajectory([(0.3, out_of_limits)]))
    bad_twist = TwistStamped()
    bad_twist.header.frame_id = "base_link"
    bad_twist.twist.linear.x = float("inf")
    probe.twist.publish(bad_twist)
    grip = JointTrajectory(joint_names=["panda_finger_joint1", "panda_finger_joint2"],
                           points=[JointTrajectoryPoint(positions=[float("nan"), 0.0], time_from_start=duration(0.1))])
    probe.gripper.publish(grip)
    probe.wait(lambda: probe.refused() >= before + 5, "5 refusals")
    assert probe.refused() == before + 5
    assert sum(node.refused.values()) == probe.refused()
    assert node.refused["non_finite"] >= 4 and node.refused["out_of_limits"] >= 1
    t = probe.now()
    probe.wait_sim_time(t + 0.5)
    held = np.array([m.position[:7] for m in probe.joint_states_after(t)])
    assert np.all(np.isfinite(held))
    assert np.abs(held - q0).max() < 0.01  # nothing was applied


def test_forward_and_servo_commands_move_the_arm(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    assert probe.reset().success
    q0 = probe.latest_q()
    goal = q0.copy()
    goal[5] += 0.1
    probe.forward.publish(Float64MultiArray(data=goal.tolist()))
    t = probe.now()
    probe.wait_sim_time(t + 1.0)
    assert probe.latest_q()[5] == pytest.approx(goal[5], abs=0.01)

    x0 = probe.get("/ee_pose")[-1].pose.position.x
    t = probe.now()
    while probe.now() < t + 0.6:  # a 0.1 m/s twist along base x, streamed as MoveIt Servo expects
        twist = TwistStamped()
        twist.header.frame_id = "base_link"
        twist.twist.linear.x = 0.1
        probe.twist.publish(twist)
        time.sleep(0.02)
    probe.wait_sim_time(probe.now() + 0.5)  # the twist times out: the arm stops
    x1 = probe.get("/ee_pose")[-1].pose.position.x
    assert 0.02 < x1 - x0 < 0.2


def test_reset_places_object_and_applies_perturbation(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    reply = probe.reset(place_object=True, object_x=0.1, object_y=-0.08, object_yaw=0.5)
    assert reply.success, reply.message
    assert json.loads(reply.message)["initial_condition"]["x"] == pytest.approx(0.1)
    t = probe.now()
    probe.wait_sim_time(t + 0.3)
    obj = [m for m in probe.get("/sim_arm/object_pose") if stamp_s(m) > t][-1].pose.position
    origin = node.arm.sim.spec.origin
    assert (obj.x - origin[0], obj.y - origin[1]) == pytest.approx((0.1, -0.08), abs=0.005)

    bad = probe.reset(object_x=5.0)  # off the table: refused, the episode goes on
    assert not bad.success and "table" in bad.message
    fixed = probe.call(probe.param_client, SetParameters.Request(parameters=[
        ParameterMsg(name="task", value=Parameter("task", value="can").get_parameter_value())]))
    assert not fixed.results[0].successful  # the task is fixed at start-up, not silently ignored

    reply = probe.reset(object_x=0.0, object_y=0.0, perturbation="object:0.05,0@4")
    assert reply.success, reply.message
    t = probe.now()
    probe.wait_sim_time(t + 0.6)  # past control step 4
    obj = [m for m in probe.get("/sim_arm/object_pose") if stamp_s(m) > t][-1].pose.position
    assert obj.x - origin[0] == pytest.approx(0.05, abs=0.005)
    assert node.perturbation_result is not None
    probe.set_params(place_object=False, perturbation="")


def test_success_flag_is_the_tasks_own_check(rig: tuple[SimArmNode, Probe]) -> None:
    node, probe = rig
    assert probe.reset().success
    t = probe.now()
    probe.wait_sim_time(t + 0.2)
    assert probe.get("/sim_arm/success")[-1].data is False
    n = len(probe.get("/sim_arm/success"))
    with node.lock:  # lift the cube 15 cm between two steps: Lift counts > 4 cm above the table as success
        lo, _ = node.arm.sim._qpos_addr
        node.arm.sim.env.sim.data.qpos[lo + 2] += 0.15
        node.arm.sim.env.sim.forward()
    probe.wait(lambda: any(m.data for m in probe.get("/sim_arm/success")[n:]), "success true")
    assert probe.reset().success
    probe.wait(lambda: probe.get("/sim_arm/success")[-1].data is False, "success false after reset")


# ---------------------------------------------------------------------------- the controller model alone
def test_tracker_continues_from_the_current_setpoint_and_drops_past_points() -> None:
    tracker = SetpointTracker(np.zeros(2))
    assert tracker.follow(10.0, 10.0, np.array([1.0, 2.0]), np.array([[1.0, 0.0], [1.0, 2.0]])) == 2
    assert tracker.sample(10.5) == pytest.approx([0.5, 0.0])
    assert tracker.sample(11.5) == pytest.approx([1.0, 1.0])
    # Replaced mid-motion: the new one starts where the setpoint is now, and its past point is dropped.
    assert tracker.follow(11.5, 10.0, np.array([1.0, 2.5]), np.array([[9.0, 9.0], [2.0, 1.0]])) == 1
    assert tracker.sample(11.5) == pytest.approx([1.0, 1.0])
    assert tracker.sample(12.0) == pytest.approx([1.5, 1.0])
    assert tracker.sample(20.0) == pytest.approx([2.0, 1.0]) and not tracker.active
    with pytest.raises(CommandRefused, match="before receipt"):
        tracker.follow(30.0, 10.0, np.array([1.0]), np.array([[0.0, 0.0]]))
    assert tracker.sample(30.0) == pytest.approx([2.0, 1.0])  # a refused trajectory changes nothing


def test_trajectory_check_orders_by_name_and_refuses_bad_times() -> None:
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    times, pos = trajectory_arrays(["b", "a"], [(0.5, [0.2, 0.1])], ["a", "b"], lo, hi, "t")
    assert pos.tolist() == [[0.1, 0.2]] and times.tolist() == [0.5]
    for names, points, reason in [(["a"], [(0.5, [0.1])], "names"),
                                  (["a", "b"], [(0.5, [0.1, 0.2]), (0.5, [0.1, 0.2])], "times"),
                                  (["a", "b"], [(0.5, [0.1, 2.0])], "out_of_limits"),
                                  (["a", "b"], [], "empty")]:
        with pytest.raises(CommandRefused) as err:
            trajectory_arrays(names, points, ["a", "b"], lo, hi, "t")
        assert err.value.reason == reason


# ---------------------------------------------------------------------------- files and entry point
def test_parameter_file_matches_the_node() -> None:
    raw = yaml.safe_load((HW / "config" / "sim_arm.yaml").read_text())
    params = raw["/**/sim_arm"]["ros__parameters"]
    assert list(params) == list(SIM_ARM_PARAM_NAMES)
    cfg = parse_sim_arm_config(params)
    policy = yaml.safe_load((HW / "config" / "policy.yaml").read_text())["/**/policy_node"]["ros__parameters"]
    for name in ("joint_states_topic", "trajectory_topic", "forward_topic", "servo_topic", "camera_topics",
                 "joint_names", "gripper_open_position", "gripper_closed_position"):
        assert getattr(cfg, name) == (tuple(policy[name]) if isinstance(policy[name], list) else policy[name]), name


def test_launch_file_starts_an_existing_entry_point_with_its_parameter_file() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    text = (HW / "launch" / "sim_arm.launch.py").read_text()
    tree = ast.parse(text)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    executables = {k.value.value for c in calls for k in c.keywords if k.arg == "executable"}
    assert executables == {"sim_arm_node"}
    assert '"sim_arm.yaml"' in text and (HW / "config" / "sim_arm.yaml").is_file()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sim_arm_node"] == "robot_offrl_ros.entry:sim_arm_node"
    setup = ast.parse((HW / "setup.py").read_text())
    console = [e.value for e in ast.walk(setup) if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    assert "sim_arm_node = robot_offrl_ros.entry:sim_arm_node" in console
    from robot_offrl_ros import entry

    assert callable(entry.sim_arm_node)
    modules = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules <= {"launch", "launch_ros"}


def test_package_xml_declares_every_ros_package_the_sim_arm_imports() -> None:
    import xml.etree.ElementTree as ET

    deps = {e.text for e in ET.parse(HW / "package.xml").getroot().iter("exec_depend")}
    imported = set()
    for path in (HW / "robot_offrl_ros").glob("sim_arm*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                imported.add(n.module.split(".")[0])
    ros = {m for m in imported if m.endswith(("_msgs", "_srvs", "_interfaces")) or m == "rclpy"}
    assert ros and ros <= deps, sorted(ros - deps)


def child_env(domain: int) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "sim"), str(HW), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_entry_point_refuses_a_bad_parameter_in_one_line(domain: int) -> None:
    bad = subprocess.run([sys.executable, "-c", "import sys; from robot_offrl_ros.entry import sim_arm_node; "
                          "sys.exit(sim_arm_node())", "--ros-args", "-p", "task:=no_such_task"],
                         env=child_env(domain + CHILD_DOMAIN_OFFSET), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("sim_arm_node: ") and "Traceback" not in bad.stderr


def test_policy_node_closes_the_loop_through_the_sim_arm_on_sim_time(domain: int) -> None:
    """Separate processes over real DDS: sim arm -> joint states + images -> policy_node (scripted
    policy, use_sim_time) -> trajectories -> the sim arm moves; nothing is refused. The sim arm runs
    from the shipped parameter file through its console entry point's code and stops on SIGINT
    with exit code 0."""
    child_domain = domain + CHILD_DOMAIN_OFFSET
    env = child_env(child_domain)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "ros"), env["PYTHONPATH"]])
    sim = subprocess.Popen([sys.executable, "-m", "robot_offrl_ros.sim_arm_node", "--ros-args",
                            "--params-file", str(HW / "config" / "sim_arm.yaml"), "-p", "seed:=1",
                            "-p", "real_time_factor:=0.5"],  # sim time falls behind the wall clock
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ros" / "policy_node_child.py"), "offset",
                             "--ros-args", "-p", "use_sim_time:=true", "-p", "enable_control:=true",
                             "-p", "autostart:=true", "-p", "joint_state_timeout_s:=1.0",
                             "-p", "image_timeout_s:=1.0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=child_domain)
    listener = Node("loop_listener", context=ctx)
    states: list[JointState] = []
    refused: list[int] = []
    trajectories: list[JointTrajectory] = []
    listener.create_subscription(JointState, "/joint_states", states.append, qos_profile_sensor_data)
    listener.create_subscription(UInt64, "/sim_arm/refused_commands", lambda m: refused.append(m.data), LATCHED_QOS)
    listener.create_subscription(JointTrajectory, TRAJ_TOPIC, trajectories.append, COMMAND_QOS)
    spin = SpinThread(listener)
    try:
        end = time.monotonic() + 180
        while not states or len(trajectories) < 3 or states[-1].position[0] - states[0].position[0] < 0.1:
            for proc in (sim, node):
                assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < end, f"{len(states)} joint states, {len(trajectories)} trajectories"
            time.sleep(0.1)
        # Commands are stamped on sim time (the sim's /clock), which runs at half the wall clock's
        # speed: a wall-clock stamp would be seconds ahead of the latest joint state by now.
        assert stamp_s(trajectories[-1]) <= max(stamp_s(m) for m in states) + 0.5
        assert refused and refused[-1] == 0
        for proc in (node, sim):
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
    finally:
        for proc in (node, sim):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        spin.close()
        listener.destroy_node()
        ctx.try_shutdown()
