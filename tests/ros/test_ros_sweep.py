"""`robot-offrl sweep --backend ros`: the same grid, cells and seeds as a direct sweep, through ROS 2.

Real parts at a tiny size: a deployable checkpoint trained here (deployable_checkpoint), a direct
sweep of it (robosuite in this process), and the same sweep through policy_node and the sim arm as
separate processes over DDS on a free domain, on the sim arm's /clock. The sweep.json files must be
one table: same keys, cells, seeds and initial conditions; the success flag is the sim arm's.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")

from deployable_checkpoint import TASK, train_tiny_deployable_checkpoint  # noqa: E402

from robot_offrl.errors import ConfigError  # noqa: E402
from robot_offrl_cli.main import main  # noqa: E402
from robot_offrl_ros.sim_sweep_backend import RosSweepOptions, RosSweepRunner, ros_sweep  # noqa: E402
from robot_offrl_sim.perturbations import parse_perturbation  # noqa: E402
from robot_offrl_sim.sweep import SweepConfig, SweepStopped, run_sweep  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.render, pytest.mark.timeout(1800)]  # trains + two processes
HORIZON = 12  # control steps: 0.6 s of sim time at lift_joint's 20 Hz


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_deployable_checkpoint(tmp_path_factory.mktemp("deployable"))


def base_config(checkpoint: Path, episodes: int = 1, **kw: Any) -> SweepConfig:
    return SweepConfig(task=TASK, policy=f"checkpoint:{checkpoint}", region="narrow", grid=(1, 1),
                       episodes_per_cell=episodes, seed=3, horizon=HORIZON, **kw)


def shape(summary: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between the back ends: keys everywhere, the grid, and each episode's seed and pose."""
    return {
        "keys": sorted(summary), "config_keys": sorted(summary["config"]),
        "cells": [{k: v for k, v in c.items() if k not in ("results", "successes", "rate")} for c in summary["cells"]],
        "results": [(sorted(r), r["seed"], r["initial_condition"]) for c in summary["cells"] for r in c["results"]],
    }


def test_ros_sweep_is_the_direct_sweeps_table(checkpoint: Path, tmp_path: Path) -> None:
    base = base_config(checkpoint, perturbations=(parse_perturbation("object:0.01,0@4"),))
    direct = run_sweep(base, tmp_path / "direct")
    config, runner = ros_sweep(base, real_time_factor=0.5, log_dir=tmp_path / "ros" / "ros_logs")
    ros = run_sweep(config, tmp_path / "ros", runner=runner)

    assert shape(ros) == shape(direct)
    assert ros["config"] == direct["config"]  # where episodes run is not part of the results' identity
    for name in ("sweep.json", "heatmap.png", "report.md"):
        assert (tmp_path / "ros" / name).is_file()

    # The result is the sim arm's record of its own episode: its success check, its step count.
    result = ros["cells"][0]["results"][0]
    timing = json.loads((tmp_path / "ros" / "timing.json").read_text())
    assert timing["backend"] == "ros"
    details = timing["backend_details"]
    episode = details["episodes"][0]
    assert episode["ended"] == ("success" if result["success"] else "horizon")
    assert result["steps"] == (result["success_step"] if result["success"] else HORIZON)
    assert ros["totals"]["successes"] == int(result["success"])
    # The perturbation was applied by the sim arm at the step a direct sweep applies it, recorded alike.
    applied, direct_applied = result["perturbations"][0], direct["cells"][0]["results"][0]["perturbations"][0]
    assert sorted(applied) == sorted(direct_applied) and applied["applied_step"] == direct_applied["applied_step"] == 4
    # policy_node's commands drove the episode, none was refused, and the stream was measured.
    assert episode["messages"] >= 1 and episode["refused_commands_total"] == 0
    assert details["latency_sim_ms_p50"] >= 0 and details["latency_wall_ms_p50"] > 0
    print(f"ROS sweep episode: {episode}; direct success={direct['totals']['successes']}")


def test_a_sim_arm_that_stops_answering_ends_the_sweep_with_the_finished_episodes_kept(
        checkpoint: Path, tmp_path: Path) -> None:
    options = RosSweepOptions(real_time_factor=0.5, service_timeout_s=10.0, log_dir=tmp_path / "logs")
    config = replace(base_config(checkpoint, episodes=2), backend="ros", backend_options=options.config_options())

    def hang_the_sim_arm(runner: RosSweepRunner, output: dict[str, Any]) -> None:
        assert runner.sim_proc is not None
        os.kill(runner.sim_proc.pid, signal.SIGSTOP)  # alive but silent: no /clock, no service replies

    runner = RosSweepRunner(config, options, after_episode=hang_the_sim_arm)
    with pytest.raises(SweepStopped, match="not answering") as err:
        run_sweep(config, tmp_path / "out", runner=runner)
    assert "stopped after 1 of 2 episode(s)" in str(err.value)
    assert "\n" not in str(err.value)
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert saved["totals"]["episodes"] == 1 and saved["stopped"]["of"] == 2
    assert saved["cells"][0]["results"][0]["seed"] == run_seed(config, 0)
    # Both processes were stopped, the hung one included.
    assert runner.sim_proc is not None and runner.sim_proc.poll() is not None
    assert runner.node_proc is not None and runner.node_proc.poll() is not None


def run_seed(config: SweepConfig, episode: int) -> int:
    from robot_offrl_sim.sweep import episode_seed

    return episode_seed(config.seed, 0, episode)


def test_what_a_ros_sweep_cannot_run_is_refused_before_any_process(checkpoint: Path, tmp_path: Path) -> None:
    cases = [
        (SweepConfig(task=TASK, policy="scripted:lift_joint", grid=(1, 1)), "--checkpoint"),
        (base_config(checkpoint, workers=2), "--workers must be 1"),
        (base_config(checkpoint, perturbations=(parse_perturbation("arm:0,0,0.05@3"),)), "arm-nudge"),
        (base_config(checkpoint, policy_kwargs={"selection": "softmax"}), "not policy_node parameters"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message):
            ros_sweep(config)
    with pytest.raises(ConfigError, match="must be > 0"):
        ros_sweep(base_config(checkpoint), real_time_factor=0.0)
    # The command line: one line, exit code 2, nothing started or written.
    out = tmp_path / "cli"
    assert main(["sweep", "--policy", "scripted:lift_joint", "--task", TASK, "--backend", "ros",
                 "--out", str(out)]) == 2
    assert main(["sweep", "--checkpoint", str(checkpoint), "--task", TASK, "--real-time-factor", "0.5",
                 "--out", str(out)]) == 2
    assert not out.exists()
