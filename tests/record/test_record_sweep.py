"""`robot-offrl sweep --record STORE` (built by the sim station), checked from the recording side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_offrl.data import EpisodeStore
from robot_offrl.data.validate import find_problems
from robot_offrl_cli.main import main

pytestmark = pytest.mark.timeout(180)


def test_sweep_record_saves_rollouts_with_their_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, store_path = tmp_path / "sweep", tmp_path / "rollouts.zarr"
    code = main(["sweep", "--policy", "scripted:lift", "--task", "lift", "--region", "narrow", "--grid", "2x1",
                 "--horizon", "80", "--record", str(store_path), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = [r for cell in json.loads((out / "sweep.json").read_text())["cells"] for r in cell["results"]]
    store = EpisodeStore.open(str(store_path))
    assert find_problems(store) == []
    assert store.num_episodes == len(results) == 2
    for meta, result in zip(store.episodes, results, strict=True):
        assert meta.source == "policy_rollout" and meta.expert is False
        assert meta.success is result["success"]
        assert meta.length == result["steps"]
        assert meta.attrs["initial_condition"] == result["initial_condition"]
        assert meta.attrs["policy"] == "scripted:lift"
    # Rollouts and teleop demos share the sim schema: the schema is the task's, as `sim collect` writes it.
    assert store.schema.task == "lift" and store.schema.action.names[-1] == "gripper"
