"""`robot-offrl record --ros` against the simulated arm, led by the scripted expert: a store that trains.

Four processes over real DDS on a domain of their own: the sim arm (lift_joint, 32x32 agentview), the
scripted leader (the lift expert on its own copy of the scene, driving the sim arm through its
forward and gripper command topics), and the recorder started by the CLI exactly as on a real arm
(joint states + camera of the follower, the leader's joint positions + gripper command as the
action). The test runs the episode through the recorder's services, then checks the store validates,
matches the deployable task's keys, and that a few real training steps on it reduce the loss.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from robot_offrl.data import EpisodeStore  # noqa: E402
from robot_offrl.data.validate import find_problems  # noqa: E402
from robot_offrl_ros.sim_arm_node import LATCHED_QOS  # noqa: E402
from robot_offrl_ros.sim_sweep_backend import child_env  # noqa: E402
from robot_offrl_ros.spinning import SpinThread  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.render, pytest.mark.timeout(1800)]  # four processes; a starved CPU
ROOT = Path(__file__).resolve().parents[2]
TASK, SEED, SIZE = "lift_joint", 4, 32
LEADER_STEPS = 70  # the lift expert succeeds within ~45 steps in the narrow region
WALL_LIMIT_S = 1500.0  # a hang guard only: on a starved 2-core machine the four processes take minutes to start


def recorder_yaml(path: Path) -> Path:
    cfg = {"/**/recorder_node": {"ros__parameters": {
        "control_rate_hz": 10.0, "start_timeout_s": 30.0, "alignment_delay_s": 0.03,
        # On the sim arm's clock: one step per control period of sim time however slow this machine is.
        "use_sim_time": True, "use_header_stamps": True, "task": TASK, "operator": "scripted_leader",
        "joint_states_topic": "/joint_states", "gripper_joint_names": ["panda_finger_joint1", "panda_finger_joint2"],
        "camera_topics": ["/camera/image_raw"], "camera_keys": ["agentview_image"], "camera_reliability": "reliable",
        "image_height": SIZE, "image_width": SIZE, "action_source": "joint_state",
        "action_topic": "/leader/joint_states", "gripper_command_topic": "/leader/gripper",
    }}}
    path.write_text(yaml.safe_dump(cfg))
    return path


class Operator:
    """What a person at the rig does: watch the clock and the leader, press the recorder's buttons."""

    def __init__(self, ctx: Context) -> None:
        self.node = Node("operator", context=ctx)
        self.lock = threading.Lock()
        self.clock_s = 0.0
        self.leader_status: dict[str, Any] | None = None
        self.success: list[bool] = []
        self.node.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.node.create_subscription(String, "/sim_leader/status", self._on_status, LATCHED_QOS)
        self.node.create_subscription(Bool, "/sim_arm/success", lambda m: self.success.append(bool(m.data)),
                                      LATCHED_QOS)
        self.spin = SpinThread(self.node)

    def _on_clock(self, msg: Clock) -> None:
        with self.lock:
            self.clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_status(self, msg: String) -> None:
        with self.lock:
            self.leader_status = json.loads(msg.data)

    def call(self, srv_type: Any, name: str, value: bool | None = None) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=60.0), f"{name} not available"
            request = srv_type.Request()
            if value is not None:
                request.data = value
            future = client.call_async(request)
            end = time.monotonic() + 60.0
            while not future.done():
                assert time.monotonic() < end, f"{name} did not answer"
                time.sleep(0.05)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()


def wait_until(predicate: Any, procs: list[subprocess.Popen[str]], what: str, end: float) -> None:
    while not predicate():
        for proc in procs:
            assert proc.poll() is None, f"{what}: a process exited: {proc.communicate()[0][-4000:]}"
        assert time.monotonic() < end, f"{what}: not within {WALL_LIMIT_S:.0f} s of wall time"
        time.sleep(0.1)


def test_record_ros_on_the_sim_arm_with_a_scripted_leader_gives_a_store_that_trains(tmp_path: Path) -> None:
    domain = random.randint(167, 231)  # the sim arm tests' child range
    env = child_env(domain)
    store_path = tmp_path / "led.zarr"
    spawn: dict[str, Any] = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    sim = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_ros.sim_arm_node", "--ros-args", "-p", f"task:={TASK}",
         "-p", f"camera_size:={SIZE}", "-p", f"seed:={SEED}", "-p", "region:=narrow", "-p", "real_time_factor:=1.0"],
        **spawn)
    leader = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_ros.sim_leader_node", "--ros-args", "-p", f"task:={TASK}",
         "-p", f"seed:={SEED}", "-p", "region:=narrow", "-p", f"max_steps:={LEADER_STEPS}", "-p", "autostart:=false"],
        **spawn)
    procs = [sim, leader]
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    op = Operator(ctx)
    recorder: subprocess.Popen[str] | None = None
    try:
        end = time.monotonic() + WALL_LIMIT_S
        wait_until(lambda: op.clock_s > 0, procs, "the sim arm's /clock", end)
        recorder = subprocess.Popen(
            [sys.executable, "-m", "robot_offrl_cli.main", "record", "--ros", "--config",
             str(recorder_yaml(tmp_path / "record.yaml")), "--out", str(store_path), "--source", "teleop"],
            stdin=subprocess.DEVNULL, **spawn)
        procs.append(recorder)
        # The services come up before the record loop (it first waits for every input topic).
        wait_until(lambda: op.call(Trigger, "/recorder_node/start").success, procs, "the recorder's start", end)
        assert op.call(Trigger, "/sim_leader/go").success
        wait_until(lambda: op.leader_status is not None, procs, "the leader's demo", end)
        with op.lock:
            follower_success = any(op.success)
        assert op.call(SetBool, "/recorder_node/set_expert", True).success
        assert op.call(SetBool, "/recorder_node/set_success", follower_success).success
        saved = op.call(Trigger, "/recorder_node/save")
        assert saved.success, saved.message
        assert op.call(Trigger, "/recorder_node/quit").success
        out, _ = recorder.communicate(timeout=120)
        assert recorder.returncode == 0, out[-4000:]
        print(f"leader: {op.leader_status}; follower success flag: {follower_success}; recorder: {out.strip()[-300:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        op.close()
        ctx.try_shutdown()

    store = EpisodeStore.open(str(store_path), mode="r")
    assert find_problems(store) == []
    assert store.num_episodes == 1
    ep = store.read_episode(0)
    steps = ep.actions.shape[0]
    assert steps >= 20, f"only {steps} steps recorded"
    assert ep.actions.shape[1] == 8  # 7 joint positions + gripper: lift_joint's action space
    assert set(store.schema.obs_keys) >= {"joint_pos", "robot0_gripper_qpos", "agentview_image"}
    grip = ep.actions[:, -1]
    assert grip.min() < 0 < grip.max(), "the leader opened and closed the gripper"
    assert np.ptp(ep.actions[:, :7], axis=0).max() > 0.05, "the leader moved the arm"

    from robot_offrl.config import compose
    from robot_offrl.train.loop import train

    os.environ.setdefault("MUJOCO_GL", "egl")
    result = train(compose("train", [
        f"data={store_path}", f"out={tmp_path / 'run'}", f"task={TASK}", "algo=bc", "trainer.steps=40",
        "trainer.batch_size=8", "trainer.lr=1.0e-3", "trainer.warmup_steps=2", "trainer.log_every=1",
        "trainer.checkpoint_every=40",
        "trainer.val_fraction=0", "trainer.progress=false", "policy.hidden_dim=64", "policy.num_blocks=1",
        "encoder.feature_dim=16", "encoder.num_keypoints=8", "seed=0",
    ]))
    losses = [h["loss"] for h in result.loss_history]
    assert len(losses) == 40 and np.isfinite(losses).all()
    assert np.mean(losses[-8:]) < np.mean(losses[:8]), losses
    print(f"recorded {steps} steps; BC loss {np.mean(losses[:8]):.3f} -> {np.mean(losses[-8:]):.3f}")
