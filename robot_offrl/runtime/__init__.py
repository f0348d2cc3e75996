"""The one object that turns observations into actions, used by the sim sweep and the ROS 2 node."""

from robot_offrl.runtime.policy import PolicyRuntime

__all__ = ["PolicyRuntime"]
