"""The rollout runner: any policy (`reset()`, `act(obs)`) in a SimEnv, with seeds, poses and perturbations.

Evaluation, data collection and sweeps all go through `run_episode`, so a success in a sweep, in a
collected dataset and in a recorded policy rollout is the same thing: the env's own success check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl.runtime.protocol import Policy
from robot_offrl_sim.initial_conditions import InitialCondition
from robot_offrl_sim.perturbations import ArmPush, Perturbation
from robot_offrl_sim.tasks import Obs, SimEnv


@dataclass
class EpisodeResult:
    success: bool
    steps: int
    seed: int
    initial_condition: dict[str, Any]
    perturbations: list[dict[str, Any]]
    success_step: int | None
    final_object_pose: list[float]
    obs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    actions: np.ndarray | None = field(default=None, repr=False)
    frames: list[np.ndarray] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (no arrays): what sweep.json and episode attrs keep."""
        return {
            "success": self.success,
            "steps": self.steps,
            "seed": self.seed,
            "initial_condition": self.initial_condition,
            "perturbations": self.perturbations,
            "success_step": self.success_step,
            "final_object_pose": self.final_object_pose,
        }


def apply_perturbation(env: SimEnv, p: Perturbation, last_gripper: float) -> tuple[dict[str, Any], ArmPush | None]:
    """Apply ``p`` now; returns its record for the episode's results and the push still to drive (``arm``).

    Shared with the simulated ROS arm, so a sweep through ROS records perturbations as a direct one does.
    """
    record: dict[str, Any] = p.to_dict()
    record["applied_step"] = env.t
    if p.kind == "object":
        dx, dy = p.offset[0], p.offset[1]
        dyaw = p.offset[2] if len(p.offset) > 2 else 0.0
        before = env.object_pose()
        after = env.displace_object(dx, dy, dyaw)
        record["object_pose_before"] = [round(v, 6) for v in before]
        record["object_pose_after"] = [round(v, 6) for v in after]
        return record, None
    start = env.eef_pos()
    record["eef_before"] = [round(float(v), 6) for v in start]
    if p.kind == "arm-nudge":
        env.nudge_arm(p.offset)
        record["eef_after"] = [round(float(v), 6) for v in env.eef_pos()]
        return record, None
    push = ArmPush(target=start + np.asarray(p.offset), steps_left=p.push_steps, gripper=last_gripper, record=record)
    return record, push


def run_episode(
    env: SimEnv,
    policy: Policy,
    seed: int,
    initial_condition: InitialCondition | Mapping[str, Any] | None = None,
    region: str = "narrow",
    horizon: int | None = None,
    perturbations: Sequence[Perturbation] = (),
    stop_on_success: bool = True,
    post_success_steps: int = 0,
    record: bool = False,
    video_camera: str | None = None,
    video_size: int = 128,
) -> EpisodeResult:
    """One episode. Perturbations fire when the step counter reaches their step (before the action).

    With stop_on_success the episode ends `post_success_steps` after the env first reports success
    (data for "what success looks like" without idling to the horizon). `record` keeps the observation
    before each action and the action executed (forced push actions included), ready for a store.
    """
    horizon = int(horizon or env.horizon)
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    reseed = getattr(policy, "reseed", None)
    if callable(reseed):
        reseed(seed)
    obs = env.reset(seed, initial_condition=initial_condition, region=region)
    ic = env.initial_condition
    assert ic is not None
    policy.reset()
    pending = sorted(perturbations, key=lambda p: p.step)
    applied: list[dict[str, Any]] = []
    push: ArmPush | None = None
    obs_log: list[Obs] = []
    act_log: list[np.ndarray] = []
    frames: list[np.ndarray] | None = [] if video_camera else None
    success_step: int | None = None
    last_gripper = -1.0
    steps = 0
    while steps < horizon:
        while pending and pending[0].step <= steps:
            rec, new_push = apply_perturbation(env, pending.pop(0), last_gripper)
            applied.append(rec)
            if new_push is not None:
                push = new_push
            obs = env.observe()
        if push is not None and push.steps_left > 0:
            action = push.action(obs["robot0_eef_pos"].astype(np.float64))
        else:
            action = np.asarray(policy.act(obs), dtype=np.float32).reshape(-1)
        if record:
            obs_log.append({k: obs[k] for k in env.obs_keys})
        if frames is not None:
            frames.append(env.frame(video_camera or "agentview", video_size))
        last_gripper = float(action[6]) if action.shape == (7,) else last_gripper
        obs = env.step(action)
        if record:  # the action as the task's store holds it (a deployable task's: the joint target reached)
            assert env.last_action is not None
            act_log.append(env.last_action)
        steps += 1
        if push is not None and push.steps_left == 0:
            push.record["eef_after"] = [round(float(v), 6) for v in env.eef_pos()]
            push = None
        if success_step is None and env.success():
            success_step = steps
        if stop_on_success and success_step is not None and steps >= success_step + post_success_steps:
            break
        if getattr(policy, "finished", False):  # a policy that ends its own episode (reset play, once home)
            break
    for p in pending:  # never reached: say so rather than silently dropping it
        applied.append({**p.to_dict(), "applied_step": None})
    result = EpisodeResult(
        success=success_step is not None,
        steps=steps,
        seed=int(seed),
        initial_condition=ic.to_dict(),
        perturbations=applied,
        success_step=success_step,
        final_object_pose=[round(v, 6) for v in env.object_pose()],
        frames=frames,
    )
    if record:
        result.obs = {k: np.stack([o[k] for o in obs_log]) for k in obs_log[0]}
        result.actions = np.stack(act_log)
    return result


def episode_attrs(result: EpisodeResult, task: str, **extra: Any) -> dict[str, Any]:
    """Attributes saved with a sim episode: enough to re-run it exactly."""
    attrs: dict[str, Any] = {
        "task": task,
        "initial_condition": result.initial_condition,
        "seed": result.seed,
        "perturbations": result.perturbations,
        "success_step": result.success_step,
        "final_object_pose": result.final_object_pose,
        "simulator": "robosuite",
    }
    attrs.update(extra)
    return attrs


def record_episode(
    store: Any,
    result: EpisodeResult,
    task: str,
    expert: bool = False,
    source: str = "policy_rollout",
    **attrs: Any,
) -> int:
    """Append a recorded rollout to an EpisodeStore; success comes from the env, never from the caller."""
    if result.obs is None or result.actions is None:
        raise ConfigError("this episode was run without record=True; nothing to write to the store")
    return int(
        store.append_episode(
            obs=result.obs,
            actions=result.actions,
            expert=expert,
            source=source,
            success=result.success,
            attrs=episode_attrs(result, task, **attrs),
        )
    )
