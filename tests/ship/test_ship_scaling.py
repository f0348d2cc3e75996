"""docs/scaling.md's single-node torchrun command, run for real: two CPU processes (gloo) through the
`robot-offrl` module entry point, a tiny budget, only rank 0 writes the run.
(Weights staying identical across ranks is tests/train/test_ddp.py.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ship_support import PYTHONPATH, REPO, fenced_shell_lines, make_lift_store


def _documented_command() -> list[str]:
    lines = [line for line in fenced_shell_lines(REPO / "docs" / "scaling.md")
             if line.startswith("torchrun --standalone")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_documented_torchrun_command_trains_with_two_processes(tmp_path: Path):
    store = make_lift_store(tmp_path / "lift.zarr")
    out = tmp_path / "ddp"
    words = _documented_command()
    assert words[0] == "torchrun" and "--nproc_per_node=4" in words
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    for word in words[1:]:
        if word.startswith("--nproc_per_node="):
            word = "--nproc_per_node=2"
        elif word.startswith("data="):
            word = f"data={store}"
        elif word.startswith("out="):
            word = f"out={out}"
        cmd.append(word)
    cmd += ["trainer=small", "trainer.steps=2", "trainer.batch_size=4", "trainer.checkpoint_every=2",
            "trainer.val_every=2", "trainer.progress=false", "trainer.device=cpu"]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, "only rank 0 reports: " + proc.stdout
    assert results[0]["step"] == 2 and results[0]["checkpoint"] != "None"
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_0000002"]
    assert (out / "checkpoints" / "latest").is_file()
    logs = (out / "train_log.jsonl").read_text().splitlines()
    assert logs, "rank 0 writes the training log"
