"""A sim-trained deployable policy runs closed-loop through policy_node on the simulated arm.

Everything is the real thing at a tiny size: lift_joint expert episodes (robosuite, 32x32 agentview)
in a zarr store -> the project's trainer (BC, a few steps) -> a safetensors checkpoint that
policy_node loads at configure -> separate sim arm and policy_node processes over real DDS on a
domain of their own, on the sim arm's /clock -> one episode after ~/reset: the node's trajectories
move the arm, none is refused, and the task's success flag is read back from /sim_arm/success.

The checkpoint is far too small to lift the cube; the test asserts the episode ran its horizon (or
succeeded) and reports the flag, not a success rate (that is a sweep's job).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
from deployable_checkpoint import CAMERA_SIZE, TASK, train_tiny_deployable_checkpoint  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, UInt64  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from robot_offrl_ros.sim_arm_node import COMMAND_QOS, LATCHED_QOS  # noqa: E402
from robot_offrl_ros.spinning import SpinThread  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.render]
ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "hardware"
EPISODE_STEPS = 60  # control steps of sim time after the reset (lift_joint runs at 20 Hz)
CONTROL_PERIOD_S = 0.05
TRAJ_TOPIC = "/joint_trajectory_controller/joint_trajectory"
GRIPPER_TOPIC = "/gripper_controller/joint_trajectory"
WALL_LIMIT_S = 240.0  # generous: a loaded 2-core machine; every assertion is on sim time


def child_env(domain: int) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "sim"), str(HW), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


class Listener:
    """What an evaluator watches: sim time, joint states, commands, refusals and the success flag."""

    def __init__(self, ctx: Context) -> None:
        self.node = Node("closed_loop_listener", context=ctx)
        self.lock = threading.Lock()
        self.clock_s = 0.0
        self.states: list[tuple[float, np.ndarray]] = []
        self.commands: list[tuple[float, JointTrajectory]] = []
        self.gripper: list[JointTrajectory] = []
        self.refused: list[int] = []
        self.success: list[tuple[float, bool]] = []
        self.node.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.node.create_subscription(JointState, "/joint_states", self._on_state, qos_profile_sensor_data)
        self.node.create_subscription(JointTrajectory, TRAJ_TOPIC, self._on_command, COMMAND_QOS)
        self.node.create_subscription(JointTrajectory, GRIPPER_TOPIC, self.gripper.append, COMMAND_QOS)
        self.node.create_subscription(UInt64, "/sim_arm/refused_commands", lambda m: self.refused.append(m.data),
                                      LATCHED_QOS)
        self.node.create_subscription(Bool, "/sim_arm/success", self._on_success, LATCHED_QOS)
        self.reset_client = self.node.create_client(Trigger, "/sim_arm/reset")
        self.spin = SpinThread(self.node)

    def _on_clock(self, msg: Clock) -> None:
        with self.lock:
            self.clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_state(self, msg: JointState) -> None:
        with self.lock:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.states.append((stamp, np.array(msg.position[:7])))

    def _on_command(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.commands.append((self.clock_s, msg))

    def _on_success(self, msg: Bool) -> None:
        with self.lock:
            self.success.append((self.clock_s, bool(msg.data)))

    def now(self) -> float:
        with self.lock:
            return self.clock_s

    def reset(self) -> Trigger.Response:
        assert self.reset_client.wait_for_service(timeout_sec=30.0)
        future = self.reset_client.call_async(Trigger.Request())
        end = time.monotonic() + 30.0
        while not future.done():
            assert time.monotonic() < end, "sim arm ~/reset did not answer"
            time.sleep(0.05)
        return future.result()

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()


def wait_until(predicate, procs: list[subprocess.Popen], what: str, end: float) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        for proc in procs:
            assert proc.poll() is None, f"{what}: a process exited: {proc.communicate()[0][-4000:]}"
        assert time.monotonic() < end, f"{what}: not within {WALL_LIMIT_S:.0f} s of wall time"
        time.sleep(0.1)


def policy_commands(listener: Listener, since_s: float) -> list[JointTrajectory]:
    """Policy chunks (several points) received at or after sim time ``since_s``; holds are one point."""
    with listener.lock:
        return [m for t, m in listener.commands if t >= since_s and len(m.points) > 1]


def test_a_sim_trained_checkpoint_runs_one_episode_through_policy_node(tmp_path: Path) -> None:
    run = train_tiny_deployable_checkpoint(tmp_path)
    domain = random.randint(167, 231)  # test_sim_arm's child range; its module domain is never this one
    env = child_env(domain)
    sim = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_ros.sim_arm_node", "--ros-args", "--params-file",
         str(HW / "config" / "sim_arm.yaml"), "-p", f"task:={TASK}", "-p", f"camera_size:={CAMERA_SIZE}",
         "-p", "seed:=2", "-p", "real_time_factor:=0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_ros.policy_node", "--ros-args", "--params-file",
         str(HW / "config" / "policy.yaml"), "-p", f"checkpoint:={run}", "-p", "device:=cpu",
         "-p", "use_sim_time:=true", "-p", "enable_control:=true", "-p", "autostart:=true",
         "-p", f"gripper_topic:={GRIPPER_TOPIC}",
         "-p", "joint_state_timeout_s:=0.5", "-p", "image_timeout_s:=0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [sim, node]
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    listener = Listener(ctx)
    try:
        end = time.monotonic() + WALL_LIMIT_S
        # The checkpoint was accepted at configure and the node is active: policy chunks arrive.
        wait_until(lambda: len(policy_commands(listener, 0.0)) >= 2, procs, "first policy commands", end)
        reply = listener.reset()
        assert reply.success, reply.message
        start_s = listener.now()
        with listener.lock:
            q_start = listener.states[-1][1]
        horizon_s = start_s + EPISODE_STEPS * CONTROL_PERIOD_S

        def finished() -> bool:
            with listener.lock:
                succeeded = any(ok for t, ok in listener.success if t >= start_s)
            return succeeded or listener.now() >= horizon_s

        wait_until(finished, procs, "the episode", end)
        end_s = listener.now()
        with listener.lock:
            flags = [ok for t, ok in listener.success if t >= start_s]
            q_path = np.array([q for t, q in listener.states if t >= start_s])
            refused = list(listener.refused)
        # The node's commands were applied: they kept coming during the episode, the arm moved, and
        # the sim arm refused none of them.
        assert len(policy_commands(listener, start_s)) >= 3
        assert listener.gripper, "no gripper command reached the sim arm"
        assert np.abs(q_path - q_start).max() > 0.01, "the arm did not move under the policy's commands"
        assert refused and refused[-1] == 0
        # The episode ended at its horizon or on success, and the task's own flag was read back.
        assert flags, "no /sim_arm/success message during the episode"
        succeeded = any(flags)
        assert succeeded or end_s >= horizon_s
        print(f"closed-loop episode: success={succeeded}, {round((end_s - start_s) / CONTROL_PERIOD_S)} control "
              f"steps of sim time, {len(policy_commands(listener, start_s))} policy chunks, 0 refused")
        for proc in (node, sim):
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        listener.close()
        ctx.try_shutdown()
