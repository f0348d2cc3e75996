"""Sim commands refuse nonsense in one line before any episode runs (issue #15).

Real CLI calls (`robot_offrl_cli.main.main`, or a subprocess where a regression could exhaust the
machine's memory), a real store collected in robosuite and a real (tiny) trained checkpoint.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robot_offrl_cli.main import main


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def lift_run(lift_env: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bc checkpoint trained for 2 steps on 3 scripted Lift episodes (task=lift)."""
    from robot_offrl.config import compose
    from robot_offrl.train.loop import train
    from robot_offrl_sim.collect import collect

    base = tmp_path_factory.mktemp("lift_run")
    store = base / "lift.zarr"
    collect("lift", "expert", 3, str(store), horizon=20, env=lift_env)  # type: ignore[arg-type]
    out = base / "run"
    train(compose("train", [
        f"data={store}", f"out={out}", "task=lift", "algo=bc", "trainer.steps=2", "trainer.batch_size=8",
        "trainer.warmup_steps=1", "trainer.checkpoint_every=2", "trainer.val_fraction=0", "trainer.progress=false",
        "trainer.device=cpu", "policy.hidden_dim=32", "policy.num_blocks=1", "policy.pred_horizon=8",
        "policy.n_action_steps=4",
    ]))
    return out


def test_collect_refuses_a_non_positive_horizon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for horizon in ("0", "-3"):
        err = _cli_error(capsys, ["sim", "collect", "--task", "lift", "--kind", "expert", "--episodes", "1",
                                  "--horizon", horizon, "--out", str(tmp_path / "s.zarr"), "--quiet"])
        assert "--horizon must be >= 1" in err
    assert not (tmp_path / "s.zarr").exists()


def _limit_memory() -> None:
    # A regression would build 10^10 cells; fail with MemoryError here instead of OOM-killing the host.
    # 5 GiB of address space: importing torch alone reserves about 3.
    resource.setrlimit(resource.RLIMIT_AS, (5 << 30, 5 << 30))


def test_sweep_grid_is_bounded_before_anything_is_allocated(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robot_offrl_cli.main", "sweep", "--policy", "scripted:lift", "--task", "lift",
         "--grid", "100000x100000", "--out", str(tmp_path / "sweep"), "--quiet"],
        capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "10000000000 cells" in err and "10000" in err
    assert not (tmp_path / "sweep").exists()


def test_sweep_out_must_not_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    err = _cli_error(capsys, ["sweep", "--policy", "scripted:lift", "--task", "lift", "--grid", "1x1",
                              "--horizon", "5", "--out", str(a_file), "--quiet"])
    assert "existing file" in err and a_file.read_text() == "keep me"


def test_sweep_refuses_a_checkpoint_of_another_task(lift_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli_error(capsys, ["sweep", "--checkpoint", str(lift_run), "--task", "square", "--grid", "1x1",
                              "--out", str(tmp_path / "sweep"), "--quiet"])
    assert "trained on task 'lift'" in err and "'square'" in err
    assert not (tmp_path / "sweep").exists()


def test_sweep_names_a_garbage_checkpoint_config(lift_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(lift_run, run)
    config = run / "checkpoints" / "step_0000002" / "config.yaml"
    config.write_bytes(b"task: {name: [lift\n\x00\xff")
    err = _cli_error(capsys, ["sweep", "--checkpoint", str(run), "--task", "lift", "--grid", "1x1",
                              "--out", str(tmp_path / "sweep"), "--quiet"])
    assert str(config) in err
