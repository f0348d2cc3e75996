"""Helpers for the concurrency and write-failure tests: real holder processes and a committed-data hash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from robot_offrl.data import EpisodeStore, UncommittedDataWarning

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# A writer process that holds the store open for writing until the release file appears.
#   hold:        just holds the writer (an idle `record` session)
#   append:      appends a 3-step episode every 50 ms (`sim collect`); prints how many at the end
#   uncommitted: grows every array by 4 steps without committing (an append in progress), then holds
HOLDER = """
import sys, time
from pathlib import Path
import numpy as np
from store_support import make_episode
from robot_offrl.data import EpisodeStore
path, ready, release, mode = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
store = EpisodeStore.open(path, mode="r+")
if mode == "uncommitted":
    for key in store.schema.obs_keys:
        arr = store.obs_array(key)
        arr.append(np.ones((4, *arr.shape[1:]), dtype=arr.dtype), axis=0)
    store.action_array().append(np.ones((4, 7), dtype=np.float32), axis=0)
appended = 0
ready.write_text("ready")
while not release.exists():
    if mode == "append":
        obs, actions = make_episode(100 + appended, 3, image=False)
        store.append_episode(obs, actions, expert=False, source="play")
        appended += 1
    time.sleep(0.05)
store.close()
print(appended)
"""


def child_env() -> dict[str, str]:
    """This worktree's code and the test helpers on the child's path, whatever the parent's cwd."""
    parts = [str(REPO), str(REPO / "sim"), str(REPO / "hardware"), str(REPO / "cli"), str(HERE)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def start_holder(store: str | Path, work: Path, mode: str = "hold") -> tuple[subprocess.Popen[str], Path]:
    """Start a HOLDER process and wait until it holds the writer; returns it and its release file."""
    ready, release = work / f"ready-{time.monotonic_ns()}", work / f"release-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), str(ready), str(release), mode],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"holder exited early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    return proc, release


def finish_holder(proc: subprocess.Popen[str], release: Path) -> int:
    """Let a holder finish normally; returns how many episodes it appended."""
    release.write_text("go")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return int(out.strip().splitlines()[-1])


def run_cli(*argv: object) -> subprocess.CompletedProcess[str]:
    """The real command line in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "robot_offrl_cli.main", *[str(a) for a in argv]],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )


def one_line_error(stderr: str) -> str:
    """The single `error:` line a failed command must print (no traceback, nothing else)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in stderr, stderr
    return lines[0]


def committed_hashes(path: str | Path) -> list[str]:
    """One digest per committed episode: uid, labels, attributes and every array's bytes (not its position)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncommittedDataWarning)
        store = EpisodeStore.open(str(path))
    out = []
    for i in range(store.num_episodes):
        ep = store.read_episode(i)
        m = ep.meta
        h = hashlib.sha256(
            json.dumps([m.uid, m.length, m.expert, m.source, m.success, m.attrs], sort_keys=True).encode()
        )
        for key in sorted(ep.obs):
            h.update(key.encode())
            h.update(ep.obs[key].tobytes())
        h.update(ep.actions.tobytes())
        out.append(h.hexdigest())
    return out


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file beside and under a store with its size and mtime: equal before and after = untouched."""
    files = [p for p in root.parent.rglob("*") if p.is_file()]
    return {str(p.relative_to(root.parent)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
