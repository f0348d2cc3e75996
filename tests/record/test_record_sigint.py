"""Ctrl-C in the middle of an episode keeps every saved episode, intact, and writes nothing of the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
                                                         str(ROOT / "hardware"), str(ROOT / "cli")]),
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


@pytest.fixture
def terminal_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as in a terminal, however pytest itself was started."""
    outer = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, outer)


def test_ctrl_c_is_held_until_the_recorder_asks_and_an_ignored_sigint_stays_ignored(terminal_ctrl_c: None) -> None:
    """A Ctrl-C inside a simulator step (numba, MuJoCo callbacks) must not surface there as a
    SystemError: CtrlC turns it into a flag that the record loop raises between ticks."""
    from robot_offrl.record.session import CtrlC, sigint_deferred

    before = signal.getsignal(signal.SIGINT)
    with CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # delivered here, and nothing is raised
        assert ctrl_c.pressed
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.raise_if_pressed()
        ctrl_c.raise_if_pressed()  # consumed once
    assert signal.getsignal(signal.SIGINT) is before

    with pytest.raises(KeyboardInterrupt), sigint_deferred():  # a save finishes, then the interrupt lands
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with CtrlC() as ctrl_c:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not ctrl_c.pressed
    finally:
        signal.signal(signal.SIGINT, before)
