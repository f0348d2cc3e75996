"""A policy node process for the shutdown tests: ``policy_node.main`` with the scripted policy.

    python tests/ros/policy_node_child.py [offset|slow] --ros-args -p autostart:=true ...

Runs exactly the console entry point's code (signal handling, safe stop, exit code); only the
checkpoint loading is replaced by the scripted policy. ROS_DOMAIN_ID comes from the environment.
"""

from __future__ import annotations

import sys

from ros_policy_double import ScriptedPolicy

from robot_offrl_ros.policy_node import main

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "offset"
    policy = ScriptedPolicy(mode=mode, slow_s=0.5)
    sys.exit(main([sys.argv[0], *sys.argv[2:]], policy_factory=lambda cfg: policy))
