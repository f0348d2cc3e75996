"""Task specs, the env wrapper and its errors, on real robosuite Lift episodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_offrl.errors import ConfigError, UserError
from robot_offrl_sim.initial_conditions import (
    InitialCondition,
    draw_initial_condition,
    exact_initial_condition,
)
from robot_offrl_sim.regions import parse_grid
from robot_offrl_sim.spec import load_task, spec_from_mapping

ROOT = Path(__file__).resolve().parents[2]


def test_task_configs_load_with_nested_regions() -> None:
    for name in ("lift", "can", "square"):
        spec = load_task(name)
        wide, narrow = spec.region("wide"), spec.narrow
        assert wide.contains_region(narrow)
        assert wide.area >= 4 * narrow.area, f"{name}: wide must be several times larger than narrow"
        assert spec.control_freq == 20
        assert list(spec.lowdim_keys) == ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]


@pytest.mark.parametrize("variant", ["lift_pose", "can_pose"])
def test_task_variants_inherit_their_base_the_same_way_in_sim_and_trainer(variant: str) -> None:
    """`defaults: [base, _self_]` is read by Hydra for the trainer and by spec.py for the sim."""
    from omegaconf import OmegaConf

    from robot_offrl.config import compose

    spec = load_task(variant)
    trainer_view = OmegaConf.to_container(compose("train", [f"task={variant}", "data=unused"]).task)
    assert spec.raw == trainer_view
    base = load_task(variant.removesuffix("_pose"))
    assert (spec.env_name, spec.regions, spec.horizon) == (base.env_name, base.regions, base.horizon)
    assert spec.name == variant and spec.object_state and not base.object_state


def test_task_defaults_must_name_a_task_and_end_with_self(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("defaults: [nope, _self_]\nname: a\n")
    with pytest.raises(ConfigError, match="names task 'nope'"):
        load_task(str(tmp_path / "a.yaml"))
    (tmp_path / "b.yaml").write_text("defaults: [b, _self_]\nname: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_task(str(tmp_path / "b.yaml"))
    (tmp_path / "c.yaml").write_text("defaults: [_self_, b]\nname: c\n")
    with pytest.raises(ConfigError, match="must end with _self_"):
        load_task(str(tmp_path / "c.yaml"))


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'stack'.*lift"):
        load_task("stack")


def test_region_outside_table_is_refused() -> None:
    raw = dict(load_task("lift").raw)
    raw["regions"] = {"narrow": {"x": [-0.03, 0.03], "y": [-0.03, 0.03]}, "wide": {"x": [-0.9, 0.9], "y": [-0.1, 0.1]}}
    with pytest.raises(ConfigError, match=r"region 'wide'.*outside the table"):
        spec_from_mapping(raw, Path("lift.yaml"))
    spec = load_task("lift")
    with pytest.raises(ConfigError, match="outside the table"):
        exact_initial_condition(spec, 0.7, 0.0)


def test_unknown_region_and_camera_and_zero_grid() -> None:
    from robot_offrl_sim.tasks import make_env

    with pytest.raises(ConfigError, match="no region 'huge'"):
        draw_initial_condition(load_task("lift"), "huge", 0)
    with pytest.raises(ConfigError, match=r"unknown camera\(s\) \['topview'\]"):
        make_env("lift", cameras=["topview"])
    for bad in ("0x3", "3x0", "seven"):
        with pytest.raises(UserError):
            parse_grid(bad)


def test_exact_initial_condition_and_determinism(lift_env) -> None:
    ic = InitialCondition(x=0.05, y=-0.04, yaw=0.3)
    obs = lift_env.reset(7, initial_condition=ic)
    x, y, yaw = lift_env.object_pose()
    assert (x, y, yaw) == pytest.approx((0.05, -0.04, 0.3), abs=1e-6)
    assert obs["object"][:2] == pytest.approx([0.05, -0.04], abs=1e-6)  # lift: origin is the table centre
    for key, dim in [("robot0_eef_pos", 3), ("robot0_eef_quat", 4), ("robot0_gripper_qpos", 2), ("object", 10)]:
        assert obs[key].shape == (dim,) and obs[key].dtype == np.float32
    a = np.array([0.3, -0.2, 0.1, 0, 0, 0.2, 1.0])
    first = [lift_env.step(a)["robot0_eef_pos"] for _ in range(5)]
    lift_env.reset(7, initial_condition=ic)
    again = [lift_env.step(a)["robot0_eef_pos"] for _ in range(5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    with pytest.raises(ConfigError, match="outside the table"):
        lift_env.reset(0, initial_condition={"x": 0.5, "y": 0.0})
    with pytest.raises(ConfigError, match="not finite"):
        lift_env.step(np.array([np.nan] * 7))


def test_region_draws_are_seeded_and_inside(lift_env) -> None:
    spec = lift_env.spec
    a, b = draw_initial_condition(spec, "wide", 11), draw_initial_condition(spec, "wide", 11)
    assert a == b and a.region == "wide" and a.seed == 11
    lift_env.reset(11, region="wide")
    assert lift_env.initial_condition == a
    assert spec.region("wide").contains(*lift_env.object_pose()[:2])


def test_importing_the_library_does_not_import_robosuite() -> None:
    code = (
        "import sys, robot_offrl, robot_offrl_cli.sim_cmd, robot_offrl_sim.spec, robot_offrl_sim.regions;"
        "assert 'robosuite' not in sys.modules and 'rclpy' not in sys.modules"
    )
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'sim'}:{ROOT / 'cli'}", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
