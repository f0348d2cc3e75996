"""Collect generated episodes (any kind in generators.KINDS) into an episode store.

All writing goes through robot_offrl.data (the one writer): the store is created with this task's
schema when missing, each episode is appended whole, flagged (expert only for `expert`) and carries its
initial condition, seed and generator details in attrs so it can be regenerated exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.generators import KINDS, load_rollout_policy, plan_episode
from robot_offrl_sim.rollout import record_episode, run_episode
from robot_offrl_sim.tasks import SCRIPTED_CONTROLLER, SimEnv, make_env


def collect_seed(seed: int, kind: str, index: int) -> int:
    """Episode seed from (seed, kind, index): different kinds never replay each other's episodes."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(kind.encode()), int(index)]).generate_state(1)[0])


def collect(
    task: str,
    kind: str,
    episodes: int,
    out: str,
    region: str | None = None,
    cameras: Sequence[str] | None = None,
    seed: int = 0,
    horizon: int | None = None,
    env: SimEnv | None = None,
    progress: bool = False,
    extra_attrs: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    acting: Mapping[str, Any] | None = None,
) -> list[int]:
    """Append `episodes` episodes of `kind` to the store at `out`; returns their indices.

    `checkpoint` is the policy `policy_rollout` episodes run, with the PolicyRuntime options `acting`
    over its own. An episode of a kind that must never do
    the task (reset play) but did is not written: the next seed replaces it, at most `episodes` times.
    """
    from robot_offrl.data import EpisodeStore

    if kind not in KINDS:
        raise ConfigError(f"unknown episode kind {kind!r}; use one of {list(KINDS)}")
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if horizon is not None and horizon < 1:  # 0 used to mean "the task's default", silently
        raise ConfigError(f"--horizon must be >= 1 (leave it out for the task's default), got {horizon}")
    if (kind == "policy_rollout") != (checkpoint is not None):
        raise ConfigError("a checkpoint goes with kind policy_rollout, and policy_rollout needs one")
    own_env = env is None
    env = env or make_env(task, cameras=cameras, horizon=horizon)
    region = region or ("narrow" if kind == "expert" else "wide")
    env.spec.region(region)  # unknown region: error before any episode runs
    # A checkpoint acts in the task's own action space; every scripted kind in OSC_POSE (a deployable
    # task's env then records the joint targets those steps reached).
    env.set_controller(env.spec.action if kind == "policy_rollout" else SCRIPTED_CONTROLLER)
    env.reset(0, region=region)
    rollout_policy = None if checkpoint is None else load_rollout_policy(checkpoint, env.obs_shapes(), acting)
    store = EpisodeStore.open(out, mode="a", schema=env.store_schema())  # closed below: frees the write lock
    indices: list[int] = []
    discarded = 0
    try:
        i = 0
        while len(indices) < episodes:
            ep_seed = collect_seed(seed, kind, i)
            i += 1
            plan = plan_episode(kind, env.spec, ep_seed, horizon=horizon or env.horizon, policy=rollout_policy)
            result = run_episode(
                env, plan.policy, ep_seed, region=region, horizon=plan.horizon,
                stop_on_success=plan.stop_on_success, post_success_steps=plan.post_success_steps, record=True,
            )
            if plan.never_succeeds and result.success:
                discarded += 1
                if discarded > episodes:
                    raise ConfigError(f"{kind}: {discarded} episodes performed the task they must never perform")
                continue
            attrs = {"generator": kind, "generator_details": plan.details, "region": region, **(extra_attrs or {})}
            source = plan.source_for(result.success)
            indices.append(record_episode(store, result, env.spec.name, expert=plan.expert, source=source, **attrs))
            if progress:
                print(f"\r{kind}: {len(indices)}/{episodes} episodes, last success={result.success}", end="", flush=True)
        if progress:
            print()
    finally:
        store.close()
        if own_env:
            env.close()
    return indices
