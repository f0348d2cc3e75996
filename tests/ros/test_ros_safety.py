"""The command filter on its own: no ROS, every rule and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from robot_offrl.errors import ConfigError, UserError
from robot_offrl_ros.safety import (
    JointCommandFilter,
    JointLimits,
    UnsafeCommandError,
    WorkspaceBox,
    match_names,
    require_finite,
)

NAMES = ["j1", "j2", "j3"]


def limits(scale: float = 1.0) -> JointLimits:
    return JointLimits.from_lists(NAMES, [-1.0, -2.0, -3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 0.5], scale)


def test_match_names_maps_by_name_and_names_the_missing_joint() -> None:
    np.testing.assert_array_equal(match_names(["j3", "x", "j1", "j2"], NAMES, "js"), [2, 3, 0])
    with pytest.raises(ConfigError, match=r"\['j2'\].*joint_names"):
        match_names(["j1", "j3"], NAMES, "js")


def test_require_finite_rejects_nan_and_inf() -> None:
    require_finite(np.zeros(3), "x")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(UnsafeCommandError, match="NaN/inf") as info:
            require_finite(np.array([0.0, bad]), "cmd")
        assert info.value.reason == "nonfinite" and isinstance(info.value, UserError)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"names": []}, "joint_names is empty"),
        ({"names": ["a", "a", "b"]}, "duplicates"),
        ({"lower": [0.0, 0.0]}, "joint_lower_limits has 2"),
        ({"upper": [1.0, -5.0, 3.0]}, "lower < upper"),
        ({"max_velocity": [1.0, 0.0, 1.0]}, "max_joint_velocity"),
        ({"velocity_scale": 0.0}, "velocity_scale"),
    ],
)
def test_bad_limits_are_config_errors(kwargs: dict, needle: str) -> None:
    args = {"names": NAMES, "lower": [-1.0] * 3, "upper": [1.0] * 3, "max_velocity": [1.0] * 3, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        JointLimits.from_lists(**args)


def test_clamp_and_velocity_cap() -> None:
    filt = JointCommandFilter(limits())
    current = np.zeros(3)
    target = np.array([[5.0, 0.1, -0.1], [5.0, 0.2, -0.2]])
    out, report = filt.apply(target, np.array([0.1, 0.2]), current)
    # j1 clamped to 1.0 then capped at 1 rad/s * 0.1 s per step; j3 capped at 0.5 rad/s.
    np.testing.assert_allclose(out[:, 0], [0.1, 0.2])
    np.testing.assert_allclose(out[:, 1], [0.1, 0.2])
    np.testing.assert_allclose(out[:, 2], [-0.05, -0.1])
    assert report.limit_clamped == 2 and report.velocity_capped == 4


def test_velocity_scale_slows_first_motions() -> None:
    out, _ = JointCommandFilter(limits(0.1)).apply(np.array([[1.0, 0.0, 0.0]]), np.array([1.0]), np.zeros(3))
    np.testing.assert_allclose(out[0, 0], 0.1)


def test_hold_policy_refuses_out_of_limit_commands() -> None:
    filt = JointCommandFilter(limits(), "hold")
    with pytest.raises(UnsafeCommandError, match=r"j2=2\.5000 at step 1") as info:
        filt.apply(np.array([[0.0, 0.0, 0.0], [0.0, 2.5, 0.0]]), np.array([0.1, 0.2]), np.zeros(3))
    assert info.value.reason == "joint_limit"
    with pytest.raises(ConfigError, match="limit_violation"):
        JointCommandFilter(limits(), "ignore")


@pytest.mark.parametrize(
    ("positions", "times", "current", "reason"),
    [
        ([[np.nan, 0, 0]], [0.1], [0, 0, 0], "nonfinite"),
        ([[0, 0, 0]], [np.inf], [0, 0, 0], "nonfinite"),
        ([[0, 0, 0]], [0.1], [0, np.nan, 0], "nonfinite"),
        ([[0, 0]], [0.1], [0, 0, 0], "names"),
        ([[0, 0, 0], [0, 0, 0]], [0.2, 0.1], [0, 0, 0], "names"),
        ([[0, 0, 0]], [0.1], [1.5, 0, 0], "joint_limit"),  # the arm itself is outside its limits
    ],
)
def test_malformed_commands_are_refused(positions: list, times: list, current: list, reason: str) -> None:
    with pytest.raises(UnsafeCommandError) as info:
        JointCommandFilter(limits()).apply(np.array(positions, float), np.array(times, float), np.array(current, float))
    assert info.value.reason == reason


@settings(max_examples=60, deadline=None)
@given(
    target=arrays(np.float64, (5, 3), elements=st.floats(-10, 10)),
    current=arrays(np.float64, (3,), elements=st.floats(-1, 1)),
    gaps=arrays(np.float64, (5,), elements=st.floats(0.01, 0.3)),
)
def test_filtered_commands_always_respect_limits_and_velocity(
    target: np.ndarray, current: np.ndarray, gaps: np.ndarray
) -> None:
    lim = limits()
    times = np.cumsum(gaps)
    out, _ = JointCommandFilter(lim).apply(target, times, current)
    assert np.all(out >= lim.lower - 1e-12) and np.all(out <= lim.upper + 1e-12)
    steps = np.abs(np.diff(np.vstack([current, out]), axis=0))
    assert np.all(steps <= lim.max_velocity * gaps[:, None] + 1e-9)


def test_workspace_box() -> None:
    box = WorkspaceBox.from_lists([0.0, -0.5, 0.0], [1.0, 0.5, 1.0])
    box.require_inside(np.array([0.5, 0.0, 0.5]))
    with pytest.raises(UnsafeCommandError, match="outside the workspace box") as info:
        box.require_inside(np.array([0.5, 0.7, 0.5]))
    assert info.value.reason == "workspace"
    # Near the +x face: the outward x velocity shrinks so one step lands on the face; inward is untouched.
    v = box.clip_velocity(np.array([0.95, 0.0, 0.5]), np.array([1.0, -0.2, 0.0]), 0.1)
    np.testing.assert_allclose(v, [0.5, -0.2, 0.0])
    # Outside on y: only motion back inside survives.
    np.testing.assert_allclose(box.clip_velocity(np.array([0.5, 0.6, 0.5]), np.array([0, 0.3, 0]), 0.1), [0, 0, 0])
    np.testing.assert_allclose(box.clip_velocity(np.array([0.5, 0.6, 0.5]), np.array([0, -0.3, 0]), 0.1), [0, -0.3, 0])
    for low, high in (([0, 0], [1, 1]), ([0, 0, 1], [1, 1, 1])):
        with pytest.raises(ConfigError, match="workspace_min"):
            WorkspaceBox.from_lists(low, high)
