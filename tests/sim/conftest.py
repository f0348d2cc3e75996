"""Shared fixtures: one Lift env per test session (building robosuite envs costs seconds on 2 cores)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def lift_env() -> Iterator[object]:
    from robot_offrl_sim.tasks import make_env

    env = make_env("lift")
    yield env
    env.close()
