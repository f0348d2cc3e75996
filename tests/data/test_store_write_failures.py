"""A full disk and a read-only mount, for real: every write command fails with one line and every
committed episode hashes the same before and after.

Each scenario runs in a private mount namespace (``unshare -rm``) on a small tmpfs, so the disk is
really full (ENOSPC) or really read-only (EROFS, which also holds for root, unlike ``chmod -w``),
and nothing outside the test is mounted. Where user namespaces are not permitted the tests skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lock_support import child_env
from test_store_robomimic import write_robomimic

DRIVER = r"""
import contextlib, errno, io, json, os, subprocess, sys, traceback
from pathlib import Path
from lock_support import committed_hashes
from store_support import fill_store, make_episode
from robot_offrl_cli.main import main
from robot_offrl.data import EpisodeStore, StoreError
from robot_offrl.data.validate import find_problems

base, scenario, h5 = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
root = base / "s.zarr"
fill_store(root, [5, 6, 4], image=False).close()
before = committed_hashes(root)
report = {"commands": {}}

def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main([str(a) for a in argv])
        except BaseException:  # what must not happen: a traceback instead of one line
            rc = "traceback"
            err.write(traceback.format_exc())
    return {"rc": rc, "stderr": err.getvalue(), "same": committed_hashes(root) == before}

writes = {
    "flag": ["flag", root, "--episodes", "0-1", "--no-expert"],
    "split": ["split", root, "--val-fraction", "0.4"],
    "stats": ["stats", root],
    "delete": ["delete", root, "--episodes", "1"],
    "merge": ["merge", base / "merged.zarr", root],
    "import-robomimic": ["import-robomimic", h5, base / "imported.zarr"],
}
if scenario == "erofs":
    writes["repair"] = ["repair", root]
    subprocess.run(["mount", "-o", "remount,ro", str(base)], check=True)
    for name, argv in writes.items():
        report["commands"][name] = cli("data", *argv)
    try:  # what `train` does to store its split, and `sim collect` / `record` to append
        EpisodeStore.open(root, mode="r+")
        report["open_rw"] = "opened"
    except StoreError as exc:
        report["open_rw"] = str(exc)
    report["info"] = cli("data", "info", root)
else:
    fd = os.open(base / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    for name, argv in writes.items():
        report["commands"][name] = cli("data", *argv)
    report["leftovers"] = sorted(p.name for p in base.iterdir() if p.name not in ("s.zarr", "filler"))
    # The append path (`sim collect`, `record`): room for part of one episode, then none.
    os.ftruncate(fd, os.fstat(fd).st_size - 64 * 1024)
    obs, actions = make_episode(7, 3000, image=False)
    store = EpisodeStore.open(root, mode="r+")
    try:
        store.append_episode(obs, actions, expert=True, source="teleop")
        report["append"] = "appended"
    except StoreError as exc:
        report["append"] = str(exc)
    report["append_same"] = committed_hashes(root) == before
    # Space comes back: the same writer goes on, and the failed attempt left nothing behind.
    os.close(fd)
    os.unlink(base / "filler")
    store.append_episode(obs, actions, expert=True, source="teleop")
    store.close()
    after = committed_hashes(root)
    reread = EpisodeStore.open(root).read_episode(3)
    report["after_free"] = {
        "old_same": after[:3] == before, "count": len(after),
        "new_exact": bool((reread.actions == actions).all() and (reread.obs["object"] == obs["object"]).all()),
        "problems": [str(p) for p in find_problems(EpisodeStore.open(root))],
    }
print(json.dumps(report))
"""


def _private_tmpfs_works(probe: Path) -> bool:
    probe.mkdir()
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(probe)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _run(tmp_path: Path, scenario: str) -> dict:
    if not _private_tmpfs_works(tmp_path / "probe"):
        pytest.skip("needs `unshare -rm` with tmpfs mounts in a user namespace (a real full disk / read-only "
                    "mount); not permitted on this machine")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    h5 = write_robomimic(tmp_path / "demo.hdf5")
    script = 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$1" -c "$2" "$0" "$3" "$4"'
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(mnt), sys.executable, DRIVER, scenario, str(h5)],
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_clean_refusal(name: str, result: dict, reason: str) -> None:
    lines = [line for line in result["stderr"].strip().splitlines() if line.strip()]
    assert result["rc"] == 2 and len(lines) == 1, (name, result["stderr"])
    assert lines[0].startswith("robot-offrl data: error: cannot write ") and reason in lines[0], (name, lines[0])
    assert result["same"], name


def test_full_disk_fails_every_write_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    report = _run(tmp_path, "enospc")
    for name, result in report["commands"].items():
        _assert_clean_refusal(name, result, "disk full")
    assert report["leftovers"] == [".s.zarr.lock"]  # no partial stores: merge and import build in a staging folder
    assert report["append"].startswith("cannot write ") and "disk full" in report["append"]
    assert report["append_same"]
    assert report["after_free"] == {"old_same": True, "count": 4, "new_exact": True, "problems": []}


def test_read_only_mount_fails_every_write_cleanly_and_reads_still_work(tmp_path: Path) -> None:
    report = _run(tmp_path, "erofs")
    assert set(report["commands"]) == {"flag", "split", "stats", "delete", "merge", "import-robomimic", "repair"}
    for name, result in report["commands"].items():
        _assert_clean_refusal(name, result, "read-only file system")
    assert report["open_rw"].startswith("cannot write ") and "read-only file system" in report["open_rw"]
    assert report["info"]["rc"] == 0 and report["info"]["same"]
