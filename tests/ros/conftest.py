"""Fixtures for the ROS 2 tests: an isolated rclpy context per test and the policy under test."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from ros_policy_double import ScriptedPolicy  # noqa: E402


@pytest.fixture
def ros_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """A fresh rclpy Context on a random domain, discovery limited to this host."""
    import rclpy

    domain = random.randint(1, 100)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    yield ctx
    ctx.try_shutdown()


@pytest.fixture
def policy() -> Any:
    """The policy the node runs. To test a trained checkpoint instead, return None here and pass
    params={"checkpoint": ...} (the node then calls PolicyRuntime.load)."""
    return ScriptedPolicy()
