"""kill -9 a writer mid-append (and interrupt a rebuild swap): committed episodes survive bit-identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from store_support import fill_store

from robot_offrl.data import EpisodeStore, UncommittedDataWarning
from robot_offrl.data.backend import OLD_SUFFIX, REBUILD_SUFFIX, Location
from robot_offrl.data.ops import repair
from robot_offrl.data.validate import find_problems

REPO = Path(__file__).resolve().parents[2]

# The child appends one long image episode (hundreds of chunks) after telling the parent it started.
WRITER = """
import sys, numpy as np
from pathlib import Path
from robot_offrl.data import EpisodeStore
store = EpisodeStore.open(sys.argv[1], mode="r+")
length = int(sys.argv[3])
rng = np.random.default_rng(123)
obs = {
    "robot0_eef_pos": rng.normal(size=(length, 3)).astype(np.float32),
    "object": rng.normal(size=(length, 10)).astype(np.float32),
    "agentview_image": rng.integers(0, 256, size=(length, 84, 84, 3), dtype=np.uint8),
}
actions = rng.uniform(-1, 1, size=(length, 7)).astype(np.float32)
Path(sys.argv[2]).write_text("writing")
store.append_episode(obs, actions, expert=True, source="teleop")
Path(sys.argv[2]).write_text("done")
"""


def _snapshot(store: EpisodeStore) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    return [(ep.obs, ep.actions) for ep in (store.read_episode(i) for i in range(store.num_episodes))]


def _image_array_len(root: Path) -> int:
    return json.loads((root / "obs" / "agentview_image" / "zarr.json").read_text())["shape"][0]


def _start_writer(root: Path, flag: Path, length: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sim"), str(REPO / "hardware"), str(REPO / "cli")])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(flag), str(length)], env=env)


def test_sigkill_mid_append_keeps_committed_episodes(tmp_path: Path) -> None:
    root = tmp_path / "crash.zarr"
    # 25 committed steps: not a multiple of the 3-frame image chunk, so the child rewrites a chunk
    # that holds committed frames, and the low-dim/action tail chunks are shared too.
    before = _snapshot(fill_store(root, [7, 12, 6]))
    committed_steps = 25
    flag = tmp_path / "flag"
    child = _start_writer(root, flag, length=1500)
    deadline = time.monotonic() + 60
    try:
        # Wait until the child is writing data: the image array has grown past the committed end.
        while time.monotonic() < deadline:
            if flag.exists() and _image_array_len(root) > committed_steps:
                break
            assert child.poll() is None, "writer exited before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail("writer never started appending")
        time.sleep(0.2)  # well inside the ~1500-frame write
        assert flag.read_text() == "writing" and child.poll() is None
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with pytest.warns(UncommittedDataWarning, match="uncommitted steps"):
        store = EpisodeStore.open(root)
    assert store.num_episodes == 3 and store.num_steps == committed_steps
    assert store.uncommitted_steps > 0
    after = _snapshot(store)
    for (obs_a, act_a), (obs_b, act_b) in zip(before, after, strict=True):
        np.testing.assert_array_equal(act_a, act_b)
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    assert any("uncommitted" in str(p) for p in find_problems(store))

    report = repair(str(root))
    assert report["truncated_steps"] == store.uncommitted_steps
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncommittedDataWarning)
        repaired = EpisodeStore.open(root, mode="r+")
    assert repaired.uncommitted_steps == 0
    assert find_problems(repaired) == []
    assert not list(root.rglob("*.partial"))
    # The store keeps working: the next append lands right after the committed episodes.
    obs, actions = after[0]
    assert repaired.append_episode(obs, actions, expert=False, source="play") == 3
    assert repaired.episodes[3].start == committed_steps
    np.testing.assert_array_equal(EpisodeStore.open(root).read_episode(3).obs["agentview_image"],
                                  obs["agentview_image"])


def test_append_after_crash_without_repair_overwrites_the_tail(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    store = fill_store(root, [5, 4])
    obs, actions = store.read_episode(0).obs, store.read_episode(0).actions
    # Simulate what a killed writer leaves: arrays grown past the committed end, index unchanged.
    for key in store.schema.obs_keys:
        arr = store.obs_array(key)
        arr.append(np.ones((6, *arr.shape[1:]), dtype=arr.dtype), axis=0)
    store.close()  # the writer "dies" with its append uncommitted
    with pytest.warns(UncommittedDataWarning):
        rw = EpisodeStore.open(root, mode="r+")
    assert rw.uncommitted_steps == 6
    rw.append_episode(obs, actions, expert=True, source="teleop")
    fresh = EpisodeStore.open(root)
    assert fresh.uncommitted_steps == 0 and fresh.num_steps == 14
    np.testing.assert_array_equal(fresh.read_episode(2).obs["agentview_image"], obs["agentview_image"])


def test_leftover_temp_files_are_reported_and_removed(small_store: EpisodeStore) -> None:
    root = Path(small_store.url)
    temp = root / "obs" / "object" / "c" / "0" / "0.1234abcd.partial"
    temp.write_bytes(b"half a chunk")
    small_store.close()
    assert any("leftover temp file" in str(p) for p in find_problems(EpisodeStore.open(root)))
    assert repair(str(root))["removed_temp_files"] == [str(temp)]
    assert find_problems(EpisodeStore.open(root)) == []


def test_interrupted_swap_between_renames_is_finished_on_open(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    old_snapshot = _snapshot(fill_store(root, [3, 4]))
    location = Location.parse(str(root))
    rebuilt = location.sibling(REBUILD_SUFFIX)
    fill_store(rebuilt, [3])  # the complete new layout
    os.rename(root, location.sibling(OLD_SUFFIX))  # the crash hit right after the first rename
    assert not root.exists()
    store = EpisodeStore.open(root)
    assert store.num_episodes == 1
    assert not location.sibling(OLD_SUFFIX).exists() and not rebuilt.exists()
    np.testing.assert_array_equal(store.read_episode(0).actions, old_snapshot[0][1])


def test_stale_rebuild_next_to_intact_store_is_ignored_then_removed(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    fill_store(root, [3, 4])
    rebuilt = Location.parse(str(root)).sibling(REBUILD_SUFFIX)
    fill_store(rebuilt, [3])
    shutil.rmtree(rebuilt / "index")  # a half-built copy: the crash hit while it was being written
    assert EpisodeStore.open(root).num_episodes == 2
    assert repair(str(root))["removed_stale_dirs"] == [str(rebuilt)]
    assert not rebuilt.exists()


# The child appends small deterministic episodes forever; episode i is built from seed i.
LOOP_WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from store_support import make_episode
from robot_offrl.data import EpisodeStore
store = EpisodeStore.open(sys.argv[1], mode="r+")
while True:
    i = store.num_episodes
    obs, actions = make_episode(i, 10 + i % 7)
    store.append_episode(obs, actions, expert=True, source="scripted")
"""


def _committed(root: Path) -> int:
    try:
        return len(json.loads((root / "index" / "zarr.json").read_text())["attributes"]["episodes"])
    except (OSError, ValueError):
        return 0


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.057])
def test_sigkill_at_arbitrary_points_of_a_recording_loop(tmp_path: Path, delay: float) -> None:
    from store_support import make_episode, make_schema

    root = tmp_path / "loop.zarr"
    EpisodeStore.create(str(root), make_schema())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sim"), str(REPO / "hardware"), str(REPO / "cli")])}
    child = subprocess.Popen([sys.executable, "-c", LOOP_WRITER, str(root), str(Path(__file__).parent)], env=env)
    try:
        deadline = time.monotonic() + 60
        while _committed(root) < 3 and time.monotonic() < deadline:
            assert child.poll() is None, "writer died on its own"
            time.sleep(0.002)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncommittedDataWarning)
        store = EpisodeStore.open(root)
    assert store.num_episodes >= 3
    for i in range(store.num_episodes):
        obs, actions = make_episode(i, 10 + i % 7)
        ep = store.read_episode(i)
        np.testing.assert_array_equal(ep.actions, actions)
        for key, values in obs.items():
            np.testing.assert_array_equal(ep.obs[key], values)
    repair(str(root))
    assert find_problems(EpisodeStore.open(root)) == []
