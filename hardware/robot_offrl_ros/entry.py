"""Console entry points that fail with one clear line when ROS 2 is not importable.

``policy_node`` and ``camera_node`` are the first things a lab runs on a robot computer; a
``ModuleNotFoundError: rclpy`` traceback there says nothing about what to do, so the import is
tried here and the message names the fix.
"""

from __future__ import annotations

import sys

ROS_MISSING = (
    "{name}: ROS 2 (rclpy) is not importable here: {err}. Source your ROS 2 install "
    "(source /opt/ros/<distro>/setup.bash) or pip install -e '.[ros]'; see docs/deploy.md."
)


def _run(name: str, module: str) -> int:
    try:
        import rclpy  # noqa: F401
    except ImportError as err:
        print(ROS_MISSING.format(name=name, err=err), file=sys.stderr)
        return 1
    from importlib import import_module

    result = import_module(f"robot_offrl_ros.{module}").main()
    return int(result or 0)


def policy_node() -> int:
    return _run("policy_node", "policy_node")


def camera_node() -> int:
    return _run("camera_node", "camera_node")


def sim_arm_node() -> int:
    return _run("sim_arm_node", "sim_arm_node")


def sim_leader_node() -> int:
    return _run("sim_leader_node", "sim_leader_node")
