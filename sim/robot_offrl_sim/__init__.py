"""Simulation station: robosuite tasks, scripted experts, generators, rollouts and sweeps (docs/sim.md).

Import the submodules directly (``robot_offrl_sim.tasks``, ``.sweep``, ...): this package file stays
free of robosuite so tools can read task configs without a simulator.
"""

from robot_offrl_sim.initial_conditions import InitialCondition
from robot_offrl_sim.regions import Region
from robot_offrl_sim.spec import TaskSpec, available_tasks, load_task

__all__ = ["InitialCondition", "Region", "TaskSpec", "available_tasks", "load_task"]
