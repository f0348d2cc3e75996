"""The objectives: diffusion behaviour cloning, the IDQL critic and the RISE additions.

``build_agent(cfg, obs_info, action_dim)`` is the one entry point (docs/contracts.md, "Algorithms").
"""

from robot_offrl.algos.agent import Agent, build_agent
from robot_offrl.algos.config import AgentConfig
from robot_offrl.models.obs_info import ObsInfo

__all__ = ["Agent", "AgentConfig", "ObsInfo", "build_agent"]
