"""The benchmark's cheap-data kinds keep their promises on real robosuite episodes.

reset_play ends with the object in the expert's region and never does the task; failed_smooth is
smooth (std <= 0.2, jerk a small multiple of the expert's) or a fumbled grasp; policy_rollout runs a
real trained checkpoint and is flagged non-expert with its source; the pose-only task configs have
no gripper-to-object feature. These test the generators, not the benchmark outcome.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_offrl.data import EpisodeStore
from robot_offrl.errors import ConfigError
from robot_offrl_sim.attempts import MAX_SMOOTH_STD, FumbledGrasp, SmoothNoisePolicy
from robot_offrl_sim.collect import collect, collect_seed
from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.generators import load_rollout_policy, plan_episode
from robot_offrl_sim.recipes import build_dataset, load_recipe
from robot_offrl_sim.rollout import run_episode
from robot_offrl_sim.spec import load_task
from robot_offrl_sim.tasks import make_env

REPO = Path(__file__).resolve().parents[2]
SMOOTH_JERK_FACTOR = 5.0  # white-noise `failed` episodes measured ~16x the expert's jerk


def _jerk(actions: np.ndarray) -> float:
    """Mean absolute step-to-step change of the six arm action dims."""
    return float(np.abs(np.diff(actions[:, :6], axis=0)).mean())


def _run(env, kind: str, index: int, region: str = "wide", horizon: int | None = None):
    seed = collect_seed(0, kind, index)
    plan = plan_episode(kind, env.spec, seed, horizon=horizon)
    res = run_episode(env, plan.policy, seed, region=region, horizon=plan.horizon,
                      stop_on_success=plan.stop_on_success, post_success_steps=plan.post_success_steps, record=True)
    return plan, res


# ----------------------------------------------------------------------------- reset play
@pytest.mark.parametrize(("index", "primitive"), [(1, "push"), (3, "slide")])
def test_lift_reset_play_moves_the_cube_into_the_expert_region_goes_home_and_never_lifts(
    lift_env, index: int, primitive: str
) -> None:
    plan, res = _run(lift_env, "reset_play", index)  # starts 7.5 cm left / 17 cm away of the narrow region
    assert (plan.expert, plan.source, plan.never_succeeds) == (False, "play", True)
    assert not res.success and res.success_step is None
    start = res.initial_condition
    assert not lift_env.spec.narrow.contains(start["x"], start["y"])
    x, y, _ = res.final_object_pose
    assert lift_env.spec.narrow.contains(x, y), (start, res.final_object_pose)
    assert plan.details["primitive"] == primitive and plan.details["reached"] is True
    # It ended itself, back home, well before the horizon: no idling.
    assert plan.policy.finished and res.steps < lift_env.horizon
    home = res.obs["robot0_eef_pos"][0]
    assert np.linalg.norm(lift_env.eef_pos() - home) < 0.03
    # Pushing and sliding keep the cube on the table: never near the 4 cm lift that counts as success.
    assert res.obs["object"][:, 2].max() - res.obs["object"][0, 2] < 0.02


def test_can_reset_play_carries_the_can_inside_the_start_bin() -> None:
    env = make_env("can")
    try:
        plan, res = _run(env, "reset_play", 3)
        assert plan.details["primitive"] == "carry" and not res.success
        x, y, _ = res.final_object_pose
        assert env.spec.narrow.contains(x, y) and plan.policy.finished and res.steps <= 150
    finally:
        env.close()


def test_reset_play_ends_inside_a_short_horizon(lift_env) -> None:
    _, res = _run(lift_env, "reset_play", 3, horizon=60)  # a far start: gives up in time to go home
    assert res.steps <= 60 and not res.success


# ----------------------------------------------------------------------------- failed attempts
class _Still:
    def reset(self) -> None: ...

    def act(self, obs) -> np.ndarray:
        return np.zeros(7, dtype=np.float32)


def test_smooth_noise_is_an_ou_process_with_bounded_std() -> None:
    pol = SmoothNoisePolicy(_Still(), std=0.2, tau=15.0, rng=np.random.default_rng(0))
    pol.reset()
    a = np.stack([pol.act({}) for _ in range(6000)])
    assert np.all(a[:, 6] == 0.0)  # the gripper command is untouched
    assert 0.16 < a[:, :6].std() < 0.24
    step = np.diff(a[:, :6], axis=0).std()
    assert step < 0.4 * a[:, :6].std()  # white noise of the same std would give sqrt(2) x std
    with pytest.raises(ValueError, match="std"):
        SmoothNoisePolicy(_Still(), std=0.5, tau=10.0, rng=np.random.default_rng(0))


def test_failed_smooth_is_smooth_compared_with_the_expert(lift_env) -> None:
    expert = run_episode(lift_env, make_expert("lift"), 5, region="narrow", record=True)
    drift = [i for i in range(40) if plan_episode("failed_smooth", lift_env.spec, collect_seed(0, "failed_smooth", i))
             .details["failure"] == "smooth_noise"][:2]
    for i in drift:
        plan, res = _run(lift_env, "failed_smooth", i)
        assert plan.details["noise_std"] <= MAX_SMOOTH_STD and plan.source == "failed" and not plan.expert
        assert res.steps <= 2 * lift_env.spec.expert_steps
        assert _jerk(res.actions) < SMOOTH_JERK_FACTOR * _jerk(expert.actions), (plan.details, _jerk(expert.actions))
    white_plan, white = _run(lift_env, "failed", 0, horizon=40)  # the stress test's white noise, for contrast
    if white_plan.details["failure"] == "action_noise":
        assert _jerk(white.actions) > SMOOTH_JERK_FACTOR * _jerk(expert.actions)


@pytest.mark.parametrize(("mode", "amount"), [("miss", 0.035), ("late_close", 10.0), ("early_close", 0.04)])
def test_fumbled_grasps_fail_from_the_expert_region(lift_env, mode: str, amount: float) -> None:
    policy = FumbledGrasp(make_expert("lift"), mode, amount, np.random.default_rng(1))
    res = run_episode(lift_env, policy, 2, region="narrow", horizon=90, record=True)
    assert not res.success, mode
    assert _jerk(res.actions) < 0.1


def test_tiny_recipe_flags_every_new_kind(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "task": "lift", "seed": 0, "horizon": 90, "parts": [
        {"kind": "expert", "episodes": 1}, {"kind": "reset_play", "episodes": 1},
        {"kind": "failed_smooth", "episodes": 2}, {"kind": "partial", "episodes": 1}]}))
    build_dataset(recipe, str(tmp_path / "s.zarr"))
    store = EpisodeStore.open(str(tmp_path / "s.zarr"))
    rows = [(store.episode(i).attrs["generator"], store.episode(i)) for i in range(store.num_episodes)]
    for gen, meta in rows:
        assert meta.expert == (gen == "expert")
        if gen == "reset_play":
            assert meta.source == "play" and meta.success is False
        if gen == "failed_smooth":
            assert meta.source == ("suboptimal" if meta.success else "failed")
    assert sorted({g for g, _ in rows}) == ["expert", "failed_smooth", "partial", "reset_play"]


# ----------------------------------------------------------------------------- policy rollouts
@pytest.fixture(scope="module")
def bc_run(tmp_path_factory) -> Path:
    """A BC-expert checkpoint trained for a few real steps on two real expert episodes."""
    from robot_offrl.config import compose
    from robot_offrl.train.loop import train

    root = tmp_path_factory.mktemp("bc")
    collect("lift", "expert", 2, str(root / "expert.zarr"), horizon=40)
    cfg = compose("train", [
        "task=lift", "algo=bc", f"data={root / 'expert.zarr'}", f"out={root / 'run'}", "trainer.steps=3",
        "trainer.batch_size=8", "trainer.warmup_steps=1", "trainer.log_every=1", "trainer.checkpoint_every=3",
        "trainer.val_fraction=0", "trainer.progress=false", "policy.hidden_dim=32", "policy.num_blocks=1",
        "critic.hidden_dim=32", "critic.num_layers=1",
    ])
    train(cfg)
    return root / "run"


def test_policy_rollouts_are_flagged_non_expert_with_their_source(tmp_path: Path, bc_run: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "task": "lift", "seed": 0, "horizon": 12, "parts": [
        {"kind": "policy_rollout", "episodes": 2, "region": "wide", "checkpoint": str(bc_run)}]}))
    out = str(tmp_path / "s.zarr")
    build_dataset(recipe, out)
    store = EpisodeStore.open(out)
    assert store.num_episodes == 2
    for i in range(2):
        meta = store.episode(i)
        assert (meta.expert, meta.source) == (False, "policy_rollout")
        assert meta.attrs["generator"] == "policy_rollout"
        assert meta.attrs["generator_details"]["checkpoint"] == str(bc_run)
        assert meta.attrs["initial_condition"]["region"] == "wide"
    # Same recipe, same seed: the same actions (sampling is seeded per episode).
    build_dataset(recipe, str(tmp_path / "again.zarr"))
    again = EpisodeStore.open(str(tmp_path / "again.zarr"))
    np.testing.assert_array_equal(store.read_episode(1).actions, again.read_episode(1).actions)


def test_policy_rollout_checkpoint_errors(tmp_path: Path, bc_run: Path) -> None:
    def recipe(**part):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"task": "lift", "parts": [{"episodes": 1, **part}]}))
        return path

    with pytest.raises(ConfigError, match="needs `checkpoint:`"):
        load_recipe(recipe(kind="policy_rollout"))
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(recipe(kind="policy_rollout", checkpoint=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="belongs to kind policy_rollout"):
        load_recipe(recipe(kind="expert", checkpoint=str(bc_run)))
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        plan_episode("policy_rollout", make_env("lift_pose").spec, 0)
    # A checkpoint trained on lift's 10-D object cannot run on lift_pose's 7-D one.
    env = make_env("lift_pose")
    try:
        env.reset(0)
        with pytest.raises(ConfigError, match="another task config"):
            load_rollout_policy(str(bc_run), env.obs_shapes())
    finally:
        env.close()


# ----------------------------------------------------------------------------- pose-only tasks
@pytest.mark.parametrize(("task", "parts"), [("lift_pose", ("cube_pos", "cube_quat")), ("can_pose", ("Can_pos", "Can_quat"))])
def test_pose_tasks_observe_the_object_pose_only(task: str, parts: tuple[str, ...]) -> None:
    env = make_env(task)
    try:
        assert env.spec.object_state == parts and env.spec.expert == task.split("_")[0]
        obs = env.reset(0, region="narrow")
        raw = env.env._get_observations(force_update=True)
        assert not any("to" in k for k in env.spec.object_state)
        np.testing.assert_allclose(obs["object"], np.concatenate([raw[k] for k in parts]), atol=1e-6)
        assert obs["object"].shape == (7,)
        # Moving the hand alone leaves `object` unchanged: nothing in it depends on the gripper.
        for _ in range(5):  # let the object settle on the table first
            obs = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
        before = obs["object"].copy()
        for _ in range(5):
            obs = env.step(np.array([0.5, 0.0, 0.3, 0, 0, 0, -1.0]))
        np.testing.assert_allclose(obs["object"], before, atol=2e-3)
        if task == "lift_pose":  # the scripted expert reads the pose from the new layout
            assert run_episode(env, make_expert(task), 1, region="narrow").success
    finally:
        env.close()


def test_object_state_names_are_checked(tmp_path: Path) -> None:
    raw = dict(load_task("lift_pose").raw)  # with lift.yaml's keys merged in: the copy stands alone
    raw["object_state"] = ["cube_pos", "gripper_to_cube"]
    path = tmp_path / "bad_task.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="gripper_to_cube"):
        make_env(str(path))


def test_shipped_reset_recipes_use_the_new_kinds() -> None:
    for name in ("lift_reset", "can_reset", "lift_small"):
        kinds = {p.kind for p in load_recipe(REPO / "datasets" / f"{name}.yaml").parts}
        assert {"expert", "reset_play", "failed_smooth", "partial"} <= kinds
        assert not kinds & {"play", "failed", "suboptimal"}
