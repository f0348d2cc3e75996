"""Scripted experts, one per task, behind the policy interface (`reset()`, `act(obs) -> (7,)`)."""

from __future__ import annotations

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts.base import ScriptedExpert
from robot_offrl_sim.experts.can import CanExpert
from robot_offrl_sim.experts.lift import LiftExpert
from robot_offrl_sim.experts.square import SquareExpert
from robot_offrl_sim.spec import TaskSpec, load_task

EXPERTS: dict[str, type[ScriptedExpert]] = {"lift": LiftExpert, "can": CanExpert, "square": SquareExpert}


def make_expert(task: str | TaskSpec, **kwargs: object) -> ScriptedExpert:
    spec = task if isinstance(task, TaskSpec) else load_task(task)
    name = spec.expert or spec.name
    if name not in EXPERTS:
        raise ConfigError(f"no scripted expert for task {spec.name!r}; experts exist for {sorted(EXPERTS)}")
    return EXPERTS[name](spec, **kwargs)  # type: ignore[arg-type]


__all__ = ["EXPERTS", "CanExpert", "LiftExpert", "ScriptedExpert", "SquareExpert", "make_expert"]
