"""The robot image's entry point: launch arguments go to `ros2 launch`, anything else runs as a command.

ROS 2's command line is not installed on the development machine, so `ros2` is a small script here
that prints what it was called with; the entry point itself is the real file the image copies.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ship_support import DOCKER

SCRIPT = DOCKER / "ros_entrypoint.sh"


@pytest.fixture
def ros_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ros2 = bin_dir / "ros2"
    ros2.write_text('#!/usr/bin/env bash\nprintf "ros2"; printf " %s" "$@"; printf "\\n"\n')
    ros2.chmod(0o755)
    (tmp_path / "ros_setup.bash").write_text("export SOURCED_ROS=yes\n")
    (tmp_path / "ws_setup.bash").write_text("export SOURCED_WORKSPACE=yes\n")
    env = {k: v for k, v in os.environ.items() if k != "CHECKPOINT"}
    env.update(ROS_DISTRO="jazzy", ROS_SETUP=str(tmp_path / "ros_setup.bash"),
               WORKSPACE_SETUP=str(tmp_path / "ws_setup.bash"), PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


LAUNCH = "ros2 launch robot_offrl_ros policy.launch.py"


def test_no_arguments_launches_with_the_mounted_checkpoint(ros_env):
    proc = _run(ros_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{LAUNCH} checkpoint:=/checkpoint"


def test_checkpoint_env_sets_the_default(ros_env):
    proc = _run({**ros_env, "CHECKPOINT": "/runs/lift"}, "start_camera:=true")
    assert proc.stdout.strip() == f"{LAUNCH} checkpoint:=/runs/lift start_camera:=true"


def test_launch_arguments_pass_through_and_an_explicit_checkpoint_wins(ros_env):
    proc = _run(ros_env, "enable_control:=true", "checkpoint:=/mine", "params_file:=/config/arm.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{LAUNCH} enable_control:=true checkpoint:=/mine params_file:=/config/arm.yaml"


def test_other_commands_run_in_the_sourced_environment(ros_env):
    proc = _run(ros_env, "bash", "-c", 'echo "$SOURCED_ROS $SOURCED_WORKSPACE"; ros2 topic list')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["yes yes", "ros2 topic list"]


def test_exit_status_of_the_command_is_kept(ros_env):
    assert _run(ros_env, "bash", "-c", "exit 7").returncode == 7


def test_missing_workspace_says_which_file(ros_env, tmp_path):
    proc = _run({**ros_env, "WORKSPACE_SETUP": str(tmp_path / "absent.bash")})
    assert proc.returncode == 1
    assert "absent.bash is missing" in proc.stderr
    assert "ros2" not in proc.stdout


def test_missing_ros_distro_is_named(ros_env):
    env = {k: v for k, v in ros_env.items() if k != "ROS_DISTRO"}
    proc = _run(env)
    assert proc.returncode != 0
    assert "ROS_DISTRO is not set" in proc.stderr
