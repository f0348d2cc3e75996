"""A build never deletes or replaces a store it did not create: remote builds hold the output's lease
for the whole build, local builds rename into place under the output's lock, and a failed create
removes only a root it made itself."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest
from lock_support import committed_hashes
from store_support import fill_store, make_episode, make_schema

from robot_offrl.data import EpisodeStore
from robot_offrl.data.backend import Location
from robot_offrl.data.errors import StoreExistsError, StoreLockedError
from robot_offrl.data.lock import _lease_target, acquire_write_lock, try_write_lock
from robot_offrl.data.ops import merge_stores
from robot_offrl.data.staging import build_beside


def _url() -> str:
    return f"memory://build-{uuid.uuid4().hex}/x.zarr"


def _input(tmp_path: Path) -> Path:
    root = tmp_path / "in.zarr"
    fill_store(root, [4, 5], image=False).close()
    return root


def test_remote_merge_never_deletes_a_store_another_writer_holds(tmp_path: Path) -> None:
    url = _url()
    location = Location.parse(url)
    held = acquire_write_lock(location, lease_s=30)  # another writer took the lease and is creating the store
    with pytest.raises(StoreLockedError, match="another writer holds the store"):
        merge_stores(url, [str(_input(tmp_path))])
    other = EpisodeStore.create(url, make_schema(image=False), lock=held)
    obs, actions = make_episode(7, 3, image=False)
    other.append_episode(obs, actions, expert=True, source="teleop")
    with pytest.raises(StoreExistsError):
        merge_stores(url, [str(_input(tmp_path))])
    other.append_episode(obs, actions, expert=False, source="play")  # still its lease: it can commit
    other.close()
    held.release()
    assert EpisodeStore.open(url).num_episodes == 2


def test_remote_build_holds_the_lease_so_nobody_else_can_create_the_output() -> None:
    url = _url()
    with build_beside(url, "sim build-dataset") as path:
        assert path == url
        with pytest.raises(StoreLockedError, match="another writer holds the store"):
            _other_create(url)
        with EpisodeStore.open(path, mode="a", schema=make_schema(image=False)) as store:  # borrows the lease
            obs, actions = make_episode(0, 3, image=False)
            store.append_episode(obs, actions, expert=True, source="teleop")
    fs, lease = _lease_target(Location.parse(url))
    assert not fs.exists(lease)  # released at the end
    assert EpisodeStore.open(url).num_episodes == 1


def _other_create(url: str) -> None:
    """What another process's create sees: the lease is taken (try_write_lock ignores lent locks)."""
    lock, holder = try_write_lock(Location.parse(url))
    assert lock is None and holder is not None
    raise StoreLockedError(f"{url}: another writer holds the store: {holder.describe()}")


def test_failed_remote_build_removes_only_its_own_partial_store(tmp_path: Path) -> None:
    url = _url()
    with pytest.raises(RuntimeError, match="midway"), build_beside(url, "sim build-dataset") as path:
        with EpisodeStore.open(path, mode="a", schema=make_schema(image=False)) as store:
            obs, actions = make_episode(0, 3, image=False)
            store.append_episode(obs, actions, expert=True, source="teleop")
        raise RuntimeError("the simulator crashed midway")
    fs, path = fsspec.core.url_to_fs(url)
    assert not fs.exists(path)  # ours, removed under our lease
    assert not fs.exists(_lease_target(Location.parse(url))[1])


def test_remote_build_whose_output_appears_before_the_lease_is_taken_refuses_it(tmp_path: Path) -> None:
    url = _url()
    EpisodeStore.create(url, make_schema(image=False)).close()
    before = committed_hashes(url)
    with pytest.raises(StoreExistsError, match="already exists"), build_beside(url, "data merge"):
        raise AssertionError("the build must not start")
    assert committed_hashes(url) == before


def test_remote_merge_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    src = _input(tmp_path)
    (src / "actions" / "c" / "0" / "0").unlink()  # the second read fails: a lost chunk
    url = _url()
    with pytest.raises(Exception, match="chunk"):
        merge_stores(url, [str(src)])
    fs, path = fsspec.core.url_to_fs(url)
    assert not fs.exists(path)


def test_create_racing_a_store_that_appears_never_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The window between create's exists() check and zarr's "w-" open: a complete store appears in it
    # (a writer that takes no lock). Simulated by letting the check miss it; the create must fail
    # without removing it.
    root = tmp_path / "s.zarr"
    fill_store(root, [4, 5], image=False).close()
    before = committed_hashes(root)
    real_exists = Location.exists
    calls = {"n": 0}

    def first_check_misses(self: Location) -> bool:
        calls["n"] += 1
        return False if calls["n"] == 1 else real_exists(self)

    monkeypatch.setattr(Location, "exists", first_check_misses)
    with pytest.raises(StoreExistsError, match="appeared while this store was being created"):
        EpisodeStore.create(str(root), make_schema(image=False))
    monkeypatch.undo()
    assert committed_hashes(root) == before


HOLD_LOCK = """
import sys, time
from robot_offrl.data.backend import Location
from robot_offrl.data.lock import acquire_write_lock
lock = acquire_write_lock(Location.parse(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def test_local_build_renames_into_place_only_under_the_outputs_lock(tmp_path: Path) -> None:
    import subprocess
    import sys

    from lock_support import child_env

    out = tmp_path / "out.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=child_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"), build_beside(str(out), "data merge") as path:
            fill_store(path, [3], image=False).close()
        assert not out.exists()  # the holder is creating `out`: our build was discarded, not renamed over it
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.zarr.lock"]
    finally:
        holder.kill()
        holder.wait(30)
    with build_beside(str(out), "data merge") as path:  # lock free: the rename goes through
        fill_store(path, [3], image=False).close()
    assert EpisodeStore.open(out).num_episodes == 1
