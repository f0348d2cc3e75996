"""A deployable task (configs/task/lift_joint.yaml): stores hold only what a real arm provides and
absolute joint-position actions, and those actions (the joint positions the scripted expert's OSC
steps reached) replay to success with the joint-position controller on the same seeds.

Real robosuite episodes into a real zarr store; the closed loop through ROS 2 is
tests/ros/test_sim_arm_closed_loop.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_offrl.data import EpisodeStore
from robot_offrl.data.validate import find_problems
from robot_offrl.errors import ConfigError
from robot_offrl_sim.collect import collect
from robot_offrl_sim.rollout import run_episode
from robot_offrl_sim.spec import load_task, spec_from_mapping
from robot_offrl_sim.tasks import SimEnv, make_env

pytestmark = pytest.mark.render
TASK = "lift_joint"
CAMERA_SIZE = 32
N_EXPERT = 3
JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


@pytest.fixture(scope="module")
def joint_env() -> Iterator[SimEnv]:
    env = make_env(TASK, camera_size=CAMERA_SIZE)
    yield env
    env.close()


@pytest.fixture(scope="module")
def expert_store(joint_env: SimEnv, tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    out = str(tmp_path_factory.mktemp("deployable") / "lift_joint.zarr")
    collect(TASK, "expert", N_EXPERT, out, env=joint_env, seed=0)
    return EpisodeStore.open(out)


class Replay:
    """Plays stored actions back in order (then holds the last one)."""

    def __init__(self, actions: np.ndarray) -> None:
        self.actions, self.k = actions, 0

    def reset(self) -> None:
        self.k = 0

    def act(self, obs: Any) -> np.ndarray:
        a = self.actions[min(self.k, len(self.actions) - 1)]
        self.k += 1
        return a


def test_store_holds_only_what_a_real_arm_provides(expert_store: EpisodeStore) -> None:
    schema = expert_store.schema
    assert find_problems(expert_store) == []
    assert {k.name: (k.kind, tuple(k.shape)) for k in schema.obs} == {
        "joint_pos": ("lowdim", (7,)),
        "robot0_gripper_qpos": ("lowdim", (2,)),
        "agentview_image": ("rgb", (CAMERA_SIZE, CAMERA_SIZE, 3)),
    }
    action = schema.action
    assert action.mode == "absolute" and action.names == [*JOINTS, "gripper"]
    assert action.units == ["rad"] * 7 + ["normalized"] and (action.low[-1], action.high[-1]) == (-1.0, 1.0)
    assert [(e.expert, e.source, e.success) for e in expert_store.episodes] == [(True, "scripted", True)] * N_EXPERT
    ep = expert_store.read_episode(0)
    assert ep.actions.shape == (ep.meta.length, 8)
    # Fingers as franka's /joint_states reports them: opening per finger, never negative.
    assert (ep.obs["robot0_gripper_qpos"] >= 0).all()
    # Each step's action is where that step took the joints: the next observation's joint_pos.
    np.testing.assert_allclose(ep.actions[:-1, :7], ep.obs["joint_pos"][1:], atol=1e-6)
    assert set(np.unique(ep.actions[:, 7])) <= {-1.0, 1.0}


def test_converted_actions_replay_to_success_with_the_joint_controller(
    joint_env: SimEnv, expert_store: EpisodeStore
) -> None:
    """Measured: 20/20 expert episodes (collect seed 0) replay to success, ~2 steps later than
    under OSC (the PD loop lags its setpoints by about a control period)."""
    joint_env.set_controller("joint_position")
    try:
        outcomes = []
        for meta in expert_store.episodes:
            ep = expert_store.read_episode(meta.index)
            result = run_episode(joint_env, Replay(ep.actions), meta.attrs["seed"],
                                 initial_condition=meta.attrs["initial_condition"], horizon=meta.length + 10)
            outcomes.append((result.success, result.success_step, meta.attrs["success_step"]))
    finally:
        joint_env.set_controller("osc_pose")
    assert all(ok for ok, _, _ in outcomes), outcomes
    assert all(replayed <= original + 5 for _, replayed, original in outcomes), outcomes


def test_joint_controller_takes_joint_targets_and_names_a_wrong_action(joint_env: SimEnv) -> None:
    joint_env.set_controller("joint_position")
    try:
        joint_env.reset(1)
        q0 = joint_env.joint_positions()
        target = q0 + np.array([0.2, 0, 0, 0, 0, 0, 0])
        for _ in range(20):
            joint_env.step(np.concatenate([target, [-1.0]]))
        assert abs(joint_env.joint_positions()[0] - target[0]) < 0.02
        with pytest.raises(ConfigError, match=r"shape \(8,\) for the joint_position controller"):
            joint_env.step(np.zeros(7))
        joint_env.set_controller("osc_pose")  # from the next reset on: until then, joints
        assert joint_env.action_dim == 8
        joint_env.reset(1)
        joint_env.step(np.array([0, 0, 0.5, 0, 0, 0, -1.0]))  # an OSC delta again, recorded as a joint target
        assert joint_env.last_action is not None and joint_env.last_action.shape == (8,)
        np.testing.assert_allclose(joint_env.last_action[:7], joint_env.joint_positions(), atol=1e-6)
    finally:
        joint_env.set_controller("osc_pose")


def test_recipe_builds_a_deployable_store_with_non_expert_kinds(tmp_path: Path) -> None:
    """Scripted non-expert kinds read the cube pose privately; the store still never holds it."""
    from robot_offrl_cli import sim_cmd

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"name: tiny\ntask: {TASK}\nseed: 1\nhorizon: 30\ncameras: [agentview]\nparts:\n"
                      "  - {kind: expert, episodes: 1}\n  - {kind: failed_smooth, episodes: 1, region: wide}\n")
    parser = argparse.ArgumentParser(prog="robot-offrl")
    sim_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sim", "build-dataset", str(recipe), "--quiet", "--out", str(tmp_path / "s.zarr")])
    assert int(args.func(args) or 0) == 0
    store = EpisodeStore.open(str(tmp_path / "s.zarr"))
    assert find_problems(store) == []
    assert [e.source for e in store.episodes][0] == "scripted"
    assert sorted(k.name for k in store.schema.obs) == ["agentview_image", "joint_pos", "robot0_gripper_qpos"]
    assert store.schema.action.mode == "absolute"


def test_the_shipped_recipe_is_deployable() -> None:
    from robot_offrl_sim.recipes import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "datasets" / "lift_joint_small.yaml")
    spec = load_task(recipe.task)
    assert spec.action == "joint_position" and "object" not in spec.lowdim_keys
    assert [f"{c}_image" for c in recipe.cameras] == list(spec.image_keys)


@pytest.mark.parametrize("change, message", [
    ({"action": "joint_velocity"}, "action must be one of"),
    ({"action": "osc_pose"}, "joint_pos goes with action: joint_position"),
    ({"joint_names": []}, "needs joint_names"),
    ({"joint_kp": 0}, "joint_kp must be > 0"),
])
def test_a_wrong_deployable_task_config_is_named(change: dict[str, Any], message: str) -> None:
    raw = {**load_task(TASK).raw, **change}
    with pytest.raises(ConfigError, match=message):
        spec_from_mapping(raw, Path("lift_joint.yaml"))
