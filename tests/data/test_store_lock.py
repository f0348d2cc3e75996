"""One writer per store, with real processes: a second writer is refused naming the first, --wait
waits, readers see committed data and move nothing, kill -9 frees the lock, leases on fsspec stores
expire and are taken over, and delete through a symlink keeps the link."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import fsspec
import numpy as np
import pytest
from lock_support import (
    HOLDER,
    child_env,
    committed_hashes,
    finish_holder,
    one_line_error,
    run_cli,
    start_holder,
    tree_state,
)
from store_support import fill_store, make_episode, make_schema

from robot_offrl.data import EpisodeStore, UncommittedDataWarning
from robot_offrl.data.backend import OLD_SUFFIX, REBUILD_SUFFIX, Location
from robot_offrl.data.errors import StoreLockedError
from robot_offrl.data.lock import acquire_write_lock


def _store(tmp_path: Path, lengths: tuple[int, ...] = (5, 6, 4, 3)) -> Path:
    root = tmp_path / "s.zarr"
    fill_store(root, list(lengths), image=False).close()
    return root


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    root = _store(tmp_path)
    before = committed_hashes(root)
    holder, release = start_holder(root, tmp_path)
    try:
        with pytest.raises(StoreLockedError) as caught:
            EpisodeStore.open(root, mode="r+")
        message = str(caught.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "--wait" in message
        assert "since 20" in message and "-c" in message  # the holder's command line and start time
        line = one_line_error(run_cli("data", "flag", root, "--episodes", "0", "--no-expert").stderr)
        assert f"pid {holder.pid}" in line
        # A second appender (two `sim collect` on one store) is refused before it writes anything.
        args = [str(root), str(tmp_path / "ready2"), str(tmp_path / "release2"), "append"]
        second = subprocess.run([sys.executable, "-c", HOLDER, *args], env=child_env(), capture_output=True,
                                text=True, timeout=60)
        assert second.returncode != 0 and "StoreLockedError" in second.stderr
        assert f"pid {holder.pid}" in second.stderr
    finally:
        finish_holder(holder, release)
    assert committed_hashes(root) == before


def test_wait_takes_the_lock_once_the_holder_exits(tmp_path: Path) -> None:
    root = _store(tmp_path)
    holder, release = start_holder(root, tmp_path, mode="append")
    # The flag command starts while the holder appends; the holder is told to finish a moment later.
    threading.Timer(0.5, release.write_text, args=("go",)).start()
    result = run_cli("data", "flag", root, "--episodes", "0-1", "--no-expert", "--wait", "60")
    assert result.returncode == 0, result.stderr
    appended = int(holder.communicate(timeout=60)[0].strip())
    store = EpisodeStore.open(root)
    assert appended >= 1 and store.num_episodes == 4 + appended  # nothing the holder appended was lost
    assert [m.expert for m in store.episodes[:2]] == [False, False]  # the flag landed after the holder


def test_writes_during_a_held_write_are_refused(tmp_path: Path) -> None:
    root = _store(tmp_path)
    before = committed_hashes(root)
    holder, release = start_holder(root, tmp_path, mode="append")
    try:
        for argv in (
            ("delete", root, "--episodes", "0"),
            ("flag", root, "--episodes", "1", "--expert"),
            ("repair", root),
            ("split", root, "--val-fraction", "0.5"),
            ("stats", root),
        ):
            line = one_line_error(run_cli("data", *argv).stderr)
            assert f"pid {holder.pid}" in line and "--wait" in line, argv
    finally:
        appended = finish_holder(holder, release)
    after = committed_hashes(root)
    assert after[:4] == before and len(after) == 4 + appended  # nothing deleted, resurrected or cut
    store = EpisodeStore.open(root)
    assert store.uncommitted_steps == 0 and store.split is None and "norm_stats" not in store.attrs
    for i in range(appended):
        obs, actions = make_episode(100 + i, 3, image=False)
        np.testing.assert_array_equal(store.read_episode(4 + i).actions, actions)


def test_readers_during_a_write_see_committed_data_and_change_nothing(tmp_path: Path) -> None:
    root = _store(tmp_path)
    before = committed_hashes(root)
    holder, release = start_holder(root, tmp_path, mode="uncommitted")
    try:
        untouched = tree_state(root)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UncommittedDataWarning)  # a live append is not "interrupted"
            reader = EpisodeStore.open(root)
        assert reader.uncommitted_steps == 4 and reader.num_episodes == 4
        assert reader.active_writer is not None and reader.active_writer.pid == holder.pid
        assert committed_hashes(root) == before
        for argv in (("info", root), ("list", root), ("show", root, "2")):
            assert run_cli("data", *argv).returncode == 0, argv
        assert tree_state(root) == untouched
    finally:
        finish_holder(holder, release)
    # The holder died with its append uncommitted; only now may repair cut it.
    result = run_cli("data", "repair", root)
    assert result.returncode == 0 and "dropped 4 uncommitted steps" in result.stdout
    assert committed_hashes(root) == before


def test_reader_leaves_a_swap_in_progress_alone(tmp_path: Path) -> None:
    root = _store(tmp_path)
    location = Location.parse(str(root))
    # A delete between its two renames (no RENAME_EXCHANGE): the store is at .old, the copy at .rebuild.
    root.rename(location.sibling(OLD_SUFFIX))
    fill_store(location.sibling(REBUILD_SUFFIX), [5], image=False).close()
    lock = acquire_write_lock(location)  # the deleting process, still running
    try:
        with pytest.raises(StoreLockedError, match="being rebuilt by pid"):
            EpisodeStore.open(root)
        assert not root.exists() and location.sibling(OLD_SUFFIX).is_dir()
    finally:
        lock.release()
    # With nobody holding the lock it is a crashed delete: the next open finishes it.
    assert EpisodeStore.open(root).num_episodes == 1
    assert not location.sibling(OLD_SUFFIX).exists()


def test_kill_9_frees_the_lock(tmp_path: Path) -> None:
    root = _store(tmp_path)
    holder, _ = start_holder(root, tmp_path, mode="uncommitted")
    with pytest.raises(StoreLockedError):
        EpisodeStore.open(root, mode="r+")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with pytest.warns(UncommittedDataWarning):  # a dead writer's tail is reported again
        reader = EpisodeStore.open(root)
    assert reader.active_writer is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncommittedDataWarning)
        with EpisodeStore.open(root, mode="r+") as writer:
            assert writer.uncommitted_steps == 4


def _memory_url() -> str:
    return f"memory://locks/{uuid.uuid4().hex}/s.zarr"


def test_lease_refuses_a_second_writer_on_an_fsspec_store() -> None:
    url = _memory_url()
    first = EpisodeStore.create(url, make_schema(image=False), lease_s=30)
    with pytest.raises(StoreLockedError, match=r"pid \d+ on .* since"):
        EpisodeStore.open(url, mode="r+")
    assert EpisodeStore.open(url).active_writer is not None
    first.close()
    fs, path = fsspec.core.url_to_fs(url)
    assert not fs.exists(path.rsplit("/", 1)[0] + "/.s.zarr.lock")  # released, not left to expire
    with EpisodeStore.open(url, mode="r+") as second:
        obs, actions = make_episode(0, 3, image=False)
        second.append_episode(obs, actions, expert=True, source="teleop")
    assert EpisodeStore.open(url).num_episodes == 1


def _write_foreign_lease(url: str, expires_at: float, pid: int = 999999) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    lease = {"pid": pid, "host": "other-host", "command": "robot-offrl sim collect", "since": "2026-01-01T00:00:00+00:00",
             "token": "theirs", "expires_at": expires_at}
    fs.pipe_file(path.rsplit("/", 1)[0] + "/.s.zarr.lock", json.dumps(lease).encode())


def test_expired_lease_is_taken_over_and_a_live_one_is_not() -> None:
    url = _memory_url()
    EpisodeStore.create(url, make_schema(image=False)).close()
    _write_foreign_lease(url, time.time() + 30)  # a writer on another machine, alive
    with pytest.raises(StoreLockedError, match="pid 999999 on other-host"):
        EpisodeStore.open(url, mode="r+", lease_s=2)
    _write_foreign_lease(url, time.time() - 1)  # it died and its lease ran out
    with EpisodeStore.open(url, mode="r+", lease_s=2) as store:
        store.set_flags([], expert=True)
        assert EpisodeStore.open(url).active_writer.pid == store._lock.holder.pid


def test_writer_whose_lease_was_taken_over_cannot_commit() -> None:
    url = _memory_url()
    store = EpisodeStore.create(url, make_schema(image=False), lease_s=30)
    obs, actions = make_episode(0, 3, image=False)
    store.append_episode(obs, actions, expert=True, source="teleop")
    before = committed_hashes(url)
    _write_foreign_lease(url, time.time() + 30)  # e.g. this writer stalled past its lease and lost it
    with pytest.raises(StoreLockedError, match="taken over by pid 999999"):
        store.append_episode(obs, actions, expert=True, source="teleop")
    with pytest.raises(StoreLockedError, match="taken over"):
        store.set_flags([0], expert=False)
    assert committed_hashes(url) == before
    store.close()


LEASE_HOLDER = """
import sys, time
from robot_offrl.data.backend import Location
from robot_offrl.data.lock import acquire_write_lock
lock = acquire_write_lock(Location.parse(sys.argv[1]), lease_s=float(sys.argv[2]))
print("held", flush=True)
time.sleep(600)
"""


def test_lease_of_a_killed_process_expires_and_is_taken_over(tmp_path: Path) -> None:
    # Two real processes sharing an fsspec filesystem (the local one through fsspec, as a stand-in
    # for an object store); the lease alone is under test, so no zarr store is needed.
    location = Location.parse(f"local://{tmp_path}/s.zarr")
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, location.url, "1.5"], env=child_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            acquire_write_lock(location)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        lock = acquire_write_lock(location, wait_s=30)  # free once the dead holder's lease runs out
        lock.check()
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_delete_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = _store(tmp_path)
    link = tmp_path / "link.zarr"
    link.symlink_to(real, target_is_directory=True)
    holder, release = start_holder(real, tmp_path)
    try:  # the link names the same store, so the same lock
        assert f"pid {holder.pid}" in one_line_error(run_cli("data", "delete", link, "--episodes", "1").stderr)
    finally:
        finish_holder(holder, release)
    before = committed_hashes(real)
    result = run_cli("data", "delete", link, "--episodes", "1")
    assert result.returncode == 0 and "3 remain" in result.stdout, result.stderr
    assert link.is_symlink() and link.resolve() == real.resolve() and real.is_dir() and not real.is_symlink()
    assert committed_hashes(link) == committed_hashes(real) == [before[0], *before[2:]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".s.zarr.lock"]


def _forked_child(store: EpisodeStore, tried: object, done: object, result: object) -> None:
    try:
        store.set_flags([0], expert=False)
        result.value = 1  # type: ignore[attr-defined]
    except StoreLockedError:
        result.value = 2  # type: ignore[attr-defined]
    tried.set()  # type: ignore[attr-defined]
    done.wait(60)  # type: ignore[attr-defined]


def test_a_forked_child_neither_keeps_nor_uses_the_parents_lock(tmp_path: Path) -> None:
    import multiprocessing as mp

    root = _store(tmp_path)
    ctx = mp.get_context("fork")  # what a DataLoader or a pool does by default on Linux
    tried, done, result = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    writer = EpisodeStore.open(root, mode="r+")
    child = ctx.Process(target=_forked_child, args=(writer, tried, done, result))
    child.start()
    try:
        assert tried.wait(60)
        assert result.value == 2  # the child's copy of the writer could not commit
        writer.close()  # the child is still alive: the lock must be free now
        result_flag = run_cli("data", "flag", root, "--episodes", "1", "--no-expert")
        assert result_flag.returncode == 0, result_flag.stderr
    finally:
        done.set()
        child.join(30)
    assert EpisodeStore.open(root).episodes[0].expert is True


@pytest.mark.parametrize("command", [("data", "flag"), ("data", "repair"), ("data", "merge"), ("data", "split"),
                                     ("data", "delete"), ("data", "stats"), ("data", "import-robomimic"),
                                     ("sim", "collect"), ("sweep",), ("record",)])
def test_every_write_command_offers_wait(command: tuple[str, ...]) -> None:
    from robot_offrl_cli.main import build_parser

    parser = build_parser()
    sub = parser
    for name in command:  # walk down to the subcommand's own parser
        action = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        sub = action.choices[name]
    assert "--wait" in sub.format_help()


def _forked_lease_child(lock: object, result: object) -> None:
    try:
        lock.check()  # type: ignore[attr-defined]
        result.value = 1  # type: ignore[attr-defined]
    except StoreLockedError:
        result.value = 2  # type: ignore[attr-defined]
    lock.release()  # type: ignore[attr-defined]  # what close() or garbage collection would do


def test_a_forked_child_neither_uses_nor_releases_the_parents_lease(tmp_path: Path) -> None:
    import multiprocessing as mp

    from robot_offrl.data.lock import _lease_target

    # The local filesystem through fsspec: a lease both processes see (memory:// would be copied).
    location = Location.parse(f"local://{tmp_path}/s.zarr")
    lock = acquire_write_lock(location, lease_s=30)
    ctx = mp.get_context("fork")
    result = ctx.Value("i", 0)
    child = ctx.Process(target=_forked_lease_child, args=(lock, result))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and result.value == 2  # the child's copy could not commit
    fs, lease = _lease_target(location)
    assert fs.exists(lease)  # the child's release left the parent's lease in place
    lock.check()  # the parent still holds it and can commit
    with pytest.raises(StoreLockedError, match=f"pid {lock.holder.pid}"):
        acquire_write_lock(location)
    lock.release()
    assert not fs.exists(lease)


def test_process_alive_serves_lock_holders_and_build_markers(tmp_path: Path) -> None:
    from robot_offrl.data.lock import Holder, process_alive
    from robot_offrl.data.staging import _still_running

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = socket.gethostname()
        assert process_alive(child.pid, here) and process_alive(child.pid, None)
        assert Holder(child.pid, here, "x", "t").alive()
        assert _still_running({"pid": child.pid, "host": here})
    finally:
        child.kill()
        child.wait(30)
    assert not process_alive(child.pid, here)  # reaped: provably gone
    assert not Holder(child.pid, here, "x", "t").alive()
    assert not _still_running({"pid": child.pid, "host": here})
    assert process_alive(child.pid, "another-host")  # cannot be checked from here
    assert not process_alive(0, here) and not process_alive("42", here) and not process_alive(2**80, here)
    assert not _still_running({"pid": os.getpid(), "host": here})  # our own, finished build
