"""Sweeps of the scripted Lift expert: deterministic, worker-count independent, shards merge exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_offrl.errors import ConfigError, UserError
from robot_offrl_sim.sweep import SweepConfig, episode_seed, merge_sweeps, run_sweep

BASE = dict(task="lift", policy="scripted:lift", region="wide", grid=(3, 3), episodes_per_cell=1, horizon=25, seed=5)


def _load(d: Path) -> dict:
    return json.loads((d / "sweep.json").read_text())


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "all"
    run_sweep(SweepConfig(**BASE, workers=1), out)
    return out


def test_sweep_outputs_and_narrow_rate(unsharded: Path) -> None:
    data = _load(unsharded)
    assert (unsharded / "heatmap.png").stat().st_size > 1000
    assert "inside narrow" in (unsharded / "report.md").read_text()
    assert len(data["cells"]) == 9 and data["totals"]["episodes"] == 9
    centre = [c for c in data["cells"] if c["in_narrow"]]
    assert [c["cell"] for c in centre] == [4]  # the 3x3 grid's centre lies inside the narrow region
    assert data["narrow"]["episodes"] == 1
    for c in data["cells"]:
        ic = c["results"][0]["initial_condition"]
        assert (ic["x"], ic["y"]) == (c["x"], c["y"]) and ic["seed"] == episode_seed(5, c["cell"], 0)


def test_same_seed_same_results_with_two_workers(unsharded: Path, tmp_path: Path) -> None:
    run_sweep(SweepConfig(**BASE, workers=2), tmp_path / "w2")
    assert _load(tmp_path / "w2") == _load(unsharded)


def test_shards_merge_to_the_unsharded_sweep(unsharded: Path, tmp_path: Path) -> None:
    run_sweep(SweepConfig(**BASE, shard=(1, 2)), tmp_path / "s1")
    run_sweep(SweepConfig(**BASE, shard=(0, 2)), tmp_path / "s0")
    assert [c["cell"] for c in _load(tmp_path / "s1")["cells"]] == [1, 3, 5, 7]
    merged = merge_sweeps([tmp_path / "s1", tmp_path / "s0"], tmp_path / "merged")
    assert merged == _load(unsharded) == _load(tmp_path / "merged")
    with pytest.raises(UserError, match="do not cover"):
        merge_sweeps([tmp_path / "s0"], tmp_path / "bad")
    with pytest.raises(UserError, match="not found"):
        merge_sweeps([tmp_path / "nothing"], tmp_path / "bad")


def test_bad_sweep_configs(tmp_path: Path) -> None:
    bad = [
        dict(BASE, grid=(0, 3)),
        dict(BASE, episodes_per_cell=0),
        dict(BASE, policy="scripted:can"),
        dict(BASE, policy="magic"),
        dict(BASE, region="everywhere"),
        dict(BASE, task="stack"),
        dict(BASE, shard=(2, 2)),
    ]
    for cfg in bad:
        with pytest.raises(ConfigError):
            run_sweep(SweepConfig(**cfg), tmp_path / "x")
    assert not (tmp_path / "x").exists()
