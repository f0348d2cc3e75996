"""Where a sweep's episodes run: a small registry of back ends, chosen with ``sweep --backend NAME``.

A back end takes the sweep's job list (one dict per episode, see ``sweep.run_sweep``) and returns one
``sweep.run_job`` output per job, in any order. Seeds live in the jobs, so every back end gives the same
``sweep.json``; only where ``run_job`` executes differs. Entries are "module:function" strings imported on
use, so choosing ``local`` never imports Ray and a new back end is one line here plus its module.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from typing import Any

from robot_offrl.errors import ConfigError

Backend = Callable[[list[dict[str, Any]], Any, bool], list[dict[str, Any]]]

BACKENDS: dict[str, str] = {
    "local": "robot_offrl_sim.sweep:run_local",  # this machine: --workers processes
    "ray": "robot_offrl_sim.sweep_ray:run_ray",  # Ray tasks on a cluster (--address) or a local instance
    "ros": "robot_offrl_ros.sim_sweep_backend:run_ros",  # policy_node + the sim arm over ROS 2 (docs/deploy.md)
}


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ConfigError(f"sweep backend {name!r} is not one of {', '.join(backend_names())}")


def get_backend(name: str) -> Backend:
    check_backend(name)
    module, _, func = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def run_jobs(name: str, jobs: list[dict[str, Any]], config: Any, progress: bool) -> list[dict[str, Any]]:
    """Run ``jobs`` on back end ``name``; outputs sorted by (cell, episode) whatever order they finished in."""
    outputs = get_backend(name)(jobs, config, progress) if jobs else []
    return sorted(outputs, key=lambda r: (r["cell"], r["episode"]))


class Progress:
    """The one-line ``sweep: done/total episodes (rate/min)`` counter every back end prints."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self._t0 = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            rate = self.done / max(time.monotonic() - self._t0, 1e-9) * 60.0
            print(f"\rsweep: {self.done}/{self.total} episodes ({rate:.1f}/min)", end="", flush=True,
                  file=sys.stdout)

    def close(self) -> None:
        if self.enabled:
            print()
