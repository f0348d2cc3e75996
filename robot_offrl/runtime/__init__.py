"""The one object that turns observations into actions, used by the sim sweep and the ROS 2 node,
and the policy interfaces (``Policy``, ``PlanningPolicy``) both of them type against.

``PolicyRuntime`` is imported on first use: a scripted sim rollout types against ``Policy`` without
importing torch and the networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robot_offrl.runtime.protocol import Camera, PlanningPolicy, Policy

if TYPE_CHECKING:
    from robot_offrl.runtime.policy import PolicyRuntime

__all__ = ["Camera", "PlanningPolicy", "Policy", "PolicyRuntime"]


def __getattr__(name: str) -> Any:
    if name == "PolicyRuntime":
        from robot_offrl.runtime.policy import PolicyRuntime

        return PolicyRuntime
    raise AttributeError(f"module 'robot_offrl.runtime' has no attribute {name!r}")
