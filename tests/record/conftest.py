"""Fixtures for the recording tests: one Lift env per session and an isolated rclpy context per test."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def record_env() -> Iterator[Any]:
    """Building a robosuite env costs seconds on 2 cores: every sim test shares this one."""
    from robot_offrl_sim.tasks import make_env

    env = make_env("lift")
    yield env
    env.close()


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A random domain limited to this host, so parallel test runs never hear each other."""
    domain = random.randint(1, 101)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture
def ros_context(ros_domain: int) -> Iterator[Any]:
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    yield ctx
    ctx.try_shutdown()
