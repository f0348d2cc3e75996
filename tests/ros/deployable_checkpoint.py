"""A tiny deployable checkpoint, trained for real: shared by the closed-loop and the ROS sweep tests.

Two lift_joint expert episodes (robosuite, 32x32 agentview) in a zarr store -> the project's trainer
(BC, 10 steps, batch 4) -> a safetensors checkpoint policy_node loads. Far too small to lift the cube;
every part is the real one.
"""

from __future__ import annotations

from pathlib import Path

TASK = "lift_joint"
CAMERA_SIZE = 32


def train_tiny_deployable_checkpoint(tmp: Path) -> Path:
    """Train it under ``tmp`` and return the run folder."""
    from robot_offrl.config import compose
    from robot_offrl.train.loop import train
    from robot_offrl_sim.collect import collect
    from robot_offrl_sim.tasks import make_env

    store = tmp / "lift_joint.zarr"
    env = make_env(TASK, camera_size=CAMERA_SIZE)
    try:
        collect(TASK, "expert", 2, str(store), env=env, seed=0)
    finally:
        env.close()
    run = tmp / "run"
    train(compose("train", [
        f"data={store}", f"out={run}", f"task={TASK}", "algo=bc", "trainer.steps=10", "trainer.batch_size=4",
        "trainer.warmup_steps=2", "trainer.checkpoint_every=10", "trainer.val_fraction=0", "trainer.progress=false",
        "policy.hidden_dim=64", "policy.num_blocks=1", "encoder.feature_dim=16", "encoder.num_keypoints=8",
    ]))
    return run
