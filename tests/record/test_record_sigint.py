"""Ctrl-C in the middle of an episode keeps every saved episode, intact, and writes nothing of the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_offrl.data import EpisodeStore
from robot_offrl.data.validate import find_problems

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
pytestmark = pytest.mark.timeout(120)


def test_sigint_mid_episode_keeps_saved_episodes(tmp_path: Path) -> None:
    store_path, actions_path = tmp_path / "rec.zarr", tmp_path / "actions.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), str(ROOT / "sim"),
                                                         str(ROOT / "hardware")]),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, str(HERE / "record_child.py"), str(store_path), str(actions_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "READY", (line, proc.stderr.read() if proc.stderr else "")
        time.sleep(0.3)  # the third episode keeps growing in RAM
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "2 episode(s) saved this session are safe" in err
    assert "Traceback" not in err

    store = EpisodeStore.open(str(store_path))
    assert store.num_episodes == 2 and store.uncommitted_steps == 0
    assert find_problems(store) == []
    expected = np.load(actions_path)
    np.testing.assert_array_equal(store.read_episode(0).actions, expected["ep0"])
    np.testing.assert_array_equal(store.read_episode(1).actions, expected["ep1"])
    assert store.num_steps == 8 + 5 == store.action_array().shape[0]
