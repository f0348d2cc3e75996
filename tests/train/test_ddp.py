"""torchrun with two CPU processes (gloo): both ranks train and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from train_support import small_overrides


def test_torchrun_two_processes_keep_ranks_in_sync(lowdim_store, tmp_path):
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           *small_overrides(lowdim_store, out, "rise", steps=6), "trainer.checkpoint_every=6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1 of 2 finished at step 6" in proc.stdout
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert (out / "checkpoints" / "step_0000006").is_dir(), "rank 0 writes the checkpoint"
