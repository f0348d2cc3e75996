"""The policy node running a real checkpoint trained by the project's own trainer.

Everything else in tests/ros uses a scripted policy to drive the safety paths precisely; this test
closes the loop: store -> trainer -> safetensors checkpoint -> PolicyRuntime.load inside the
node's configure -> JointTrajectory chunks on the controller topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import PANDA_JOINTS
from ros_rig import Q0, TRAJECTORY_TOPIC, Rig, is_hold

from robot_offrl.config import compose
from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema
from robot_offrl.train.loop import train

pytestmark = pytest.mark.ros


def _train_tiny_arm_checkpoint(tmp: Path) -> Path:
    """Absolute joint-position actions around the rig's home pose, one 32x32 camera, 10 Hz."""
    schema = StoreSchema(
        obs=[KeySpec("joint_pos", "float32", (7,), "lowdim"), KeySpec("agentview_image", "uint8", (32, 32, 3), "rgb")],
        action=ActionSpace(names=list(PANDA_JOINTS), units=["rad"] * 7, mode="absolute",
                           low=[-2.9] * 7, high=[2.9] * 7),
        control_rate_hz=10.0, robot="Panda", task="reach",
    )
    store = EpisodeStore.create(str(tmp / "arm.zarr"), schema)
    rng = np.random.default_rng(0)
    for _ in range(4):
        q = Q0 + np.cumsum(rng.normal(0, 0.01, size=(20, 7)), axis=0)
        store.append_episode(
            obs={"joint_pos": q.astype(np.float32),
                 "agentview_image": rng.integers(0, 255, size=(20, 32, 32, 3), dtype=np.uint8)},
            actions=(q + 0.01).astype(np.float32), expert=True, source="teleop", success=True,
        )
    run = tmp / "run"
    cfg = compose("train", [
        f"data={tmp / 'arm.zarr'}", f"out={run}", "algo=bc", "task.lowdim_keys=[joint_pos]",
        "task.image_keys=[agentview_image]", "trainer.steps=3", "trainer.batch_size=4", "trainer.warmup_steps=1",
        "trainer.checkpoint_every=3", "trainer.val_fraction=0", "trainer.progress=false",
        "policy.hidden_dim=32", "policy.num_blocks=1", "policy.pred_horizon=16", "policy.n_action_steps=12",
        "encoder.feature_dim=16", "encoder.num_keypoints=8",
    ])
    train(cfg)
    return run


def test_node_runs_a_trained_checkpoint(ros_context: Any, tmp_path: Path) -> None:
    run = _train_tiny_arm_checkpoint(tmp_path)
    rig = Rig(ros_context, None, {"checkpoint": str(run), "enable_control": True, "device": "cpu"})
    try:
        assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
        assert rig.activate(timeout=10.0), rig.node._reason
        commands = lambda: [m for m in rig.msgs(TRAJECTORY_TOPIC) if not is_hold(m)]  # noqa: E731
        assert rig.wait_for(lambda: len(commands()) >= 3, timeout=20.0)
        for msg in commands():
            assert list(msg.joint_names) == PANDA_JOINTS
            times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            assert all(b > a for a, b in zip(times, times[1:], strict=False))
            positions = np.array([p.positions for p in msg.points])
            assert np.isfinite(positions).all()
    finally:
        rig.close()
