"""Scripted experts, non-expert generators and perturbations on real Lift episodes (and Square/Can smoke)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.generators import plan_episode
from robot_offrl_sim.perturbations import parse_perturbation
from robot_offrl_sim.rollout import run_episode
from robot_offrl_sim.tasks import make_env


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lift_expert_succeeds_from_narrow(lift_env, seed: int) -> None:
    res = run_episode(lift_env, make_expert("lift"), seed, region="narrow", horizon=90)
    assert res.success, res.to_dict()
    assert lift_env.spec.narrow.contains(res.initial_condition["x"], res.initial_condition["y"])
    assert res.success_step is not None and res.steps == res.success_step  # stops at success


def test_play_episode_moves_the_object(lift_env) -> None:
    plan = plan_episode("play", lift_env.spec, 0, horizon=120)
    assert not plan.expert and plan.source == "play"
    res = run_episode(lift_env, plan.policy, 0, region="wide", horizon=plan.horizon, stop_on_success=False)
    start = np.array([res.initial_condition["x"], res.initial_condition["y"]])
    assert np.linalg.norm(np.array(res.final_object_pose[:2]) - start) > 0.02, res.to_dict()


def test_generators_are_flagged_non_expert_and_seeded(lift_env) -> None:
    spec = lift_env.spec
    for kind, source in [("failed", "failed"), ("partial", "partial"), ("suboptimal", "suboptimal")]:
        a, b = plan_episode(kind, spec, 5), plan_episode(kind, spec, 5)
        assert (a.expert, a.source, a.details) == (False, source, b.details)
    assert plan_episode("expert", spec, 0).expert
    partial = plan_episode("partial", spec, 3)
    res = run_episode(lift_env, partial.policy, 3, region="wide", horizon=partial.horizon, stop_on_success=False)
    assert res.steps == partial.details["stopped_at"] and not res.success
    with pytest.raises(ConfigError, match="unknown episode kind"):
        plan_episode("random", spec, 0)


def test_object_perturbation_fires_at_its_step(lift_env) -> None:
    p = parse_perturbation("object:0.04,-0.03,0.5@12")
    res = run_episode(lift_env, make_expert("lift"), 4, horizon=13, perturbations=[p], stop_on_success=False,
                      record=True)
    rec = res.perturbations[0]
    assert rec["applied_step"] == 12
    before, after = np.array(rec["object_pose_before"]), np.array(rec["object_pose_after"])
    np.testing.assert_allclose(after - before, [0.04, -0.03, 0.5], atol=1e-6)
    obj = res.obs["object"][:, :2]  # recorded obs: the jump is between steps 11 and 12, nowhere else
    jumps = np.linalg.norm(np.diff(obj, axis=0), axis=1)
    assert int(np.argmax(jumps)) == 11 and jumps[11] > 0.045 and np.delete(jumps, 11).max() < 0.01


def test_arm_push_and_nudge_move_the_hand(lift_env) -> None:
    push = run_episode(lift_env, make_expert("lift"), 1, horizon=20, stop_on_success=False,
                       perturbations=[parse_perturbation("arm:0,0.06,0.04@5")])
    rec = push.perturbations[0]
    moved = np.array(rec["eef_after"]) - np.array(rec["eef_before"])
    assert rec["applied_step"] == 5 and moved[1] > 0.03 and moved[2] > 0.02
    nudge = run_episode(lift_env, make_expert("lift"), 1, horizon=8, stop_on_success=False,
                        perturbations=[parse_perturbation("arm-nudge:0,0,0.05@5")])
    rec = nudge.perturbations[0]
    np.testing.assert_allclose(np.array(rec["eef_after"]) - np.array(rec["eef_before"]), [0, 0, 0.05], atol=2e-3)
    late = run_episode(lift_env, make_expert("lift"), 1, horizon=5, stop_on_success=False,
                       perturbations=[parse_perturbation("object:0.01,0@50")])
    assert late.perturbations[0]["applied_step"] is None  # never reached, and said so


def test_bad_perturbations() -> None:
    for bad in ("object:0.1@x", "wind:0,0@3", "arm:0.1,0@3", "object:0,0@-1"):
        with pytest.raises(ConfigError):
            parse_perturbation(bad)


@pytest.mark.parametrize("task", ["square", "can"])
def test_other_tasks_smoke(task: str) -> None:
    env = make_env(task)
    try:
        res = run_episode(env, make_expert(task), 0, horizon=15, stop_on_success=False, record=True)
        assert res.steps == 15 and res.obs["object"].shape == (15, 14)
        assert env.spec.narrow.contains(res.initial_condition["x"], res.initial_condition["y"])
    finally:
        env.close()


def test_scripted_policies_read_no_cameras() -> None:
    """The sweep asks a policy's typed ``cameras``; a scripted expert states no inputs, so none."""
    from robot_offrl.runtime import PlanningPolicy, Policy
    from robot_offrl_sim.sweep import policy_cameras

    expert = make_expert("lift")
    assert isinstance(expert, Policy) and not isinstance(expert, PlanningPolicy)
    assert policy_cameras(expert) == ([], None)
