"""Build a new store beside its final path and rename it into place only once it is complete.

``data merge``, ``data import-robomimic`` and ``sim build-dataset`` write many episodes into a new store.
Written straight into the final path, a run killed midway left a store holding the episodes committed
so far, which every tool (``validate``, ``repair``, training) took for the whole dataset. Now the store
is built at ``<parent>/.<name>.staging/<name>`` next to a ``BUILDING`` marker (who builds it, since
when), flushed to disk, and renamed to ``<parent>/<name>`` in one step: the final path either does
not exist or holds the complete store. A staging folder left by a killed run is reported when the
final path is opened, removed when the build is rerun, and removed by ``robot-offrl data repair``.

The rename is atomic only on one local filesystem; remote (fsspec) outputs are written in place. A
remote build holds the final URL's write lease from before it checks the URL is free until it ends
(the build's own opens of that URL borrow it, ``lock.lend_lock``), so what is at the URL when it fails
is provably its own partial store and is removed under that lease; another writer's store is never
touched. A killed remote build leaves its partial store, which must be deleted by hand.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robot_offrl.data.backend import Location, fsync_tree, remove_partial_store
from robot_offrl.fsutil import fsync_path
from robot_offrl.data.errors import StoreError, StoreExistsError, StoreLockedError, translate_write_errors
from robot_offrl.data.lock import acquire_write_lock, lend_lock, process_alive

STAGING_SUFFIX = ".staging"
MARKER = "BUILDING"


class StaleBuildWarning(UserWarning):
    """A staging folder from an interrupted build was found (and removed, when rebuilding)."""


def staging_dir(location: Location) -> Path | None:
    """``<parent>/.<name>.staging`` for a local store, None for a remote one."""
    return None if location.local_path is None else location.sibling(STAGING_SUFFIX)


def stale_build(location: Location) -> dict[str, Any] | None:
    """The marker of an unfinished build of ``location`` (with its ``path``), or None when there is none."""
    stage = staging_dir(location)
    if stage is None or not stage.exists():
        return None
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads((stage / MARKER).read_text())
        info = loaded if isinstance(loaded, dict) else {}
    return {**info, "path": str(stage)}


def _describe(info: dict[str, Any]) -> str:
    what = info.get("what", "a build")
    return f"{info['path']} (left by {what}, pid {info.get('pid', '?')}, started {info.get('started', '?')})"


def staging_note(location: Location) -> str:
    """A sentence to append to "no store here" errors when an interrupted build explains why."""
    info = stale_build(location)
    if info is None:
        return ""
    return (
        f"; an interrupted build left the incomplete store {_describe(info)}: rerun the build, or remove it "
        f"with `robot-offrl data repair {location}`"
    )


def _still_running(info: dict[str, Any]) -> bool:
    """True when the marker's process is alive on this machine (or we cannot tell: another machine)."""
    host, pid = info.get("host"), info.get("pid")
    if pid == os.getpid() and host in (None, socket.gethostname()):
        return False  # our own earlier, finished build in this process
    return process_alive(pid, host)


def remove_stale_build(location: Location) -> str | None:
    """Delete an interrupted build's staging folder; returns its path. Refuses one whose builder still runs."""
    info = stale_build(location)
    if info is None:
        return None
    if _still_running(info):
        raise StoreError(
            f"{location}: a build is still writing {_describe(info)}; wait for it, or stop it first"
        )
    shutil.rmtree(info["path"], ignore_errors=True)
    return str(info["path"])


@contextlib.contextmanager
def build_beside(out: str, what: str) -> Iterator[str]:
    """Yield the path to build the new store at; on success it is renamed to ``out``.

    Refuses an existing ``out`` (a file or a store) before anything is written. When the body raises,
    the partial build is removed and the error propagates; when the process is killed, the staging
    folder and its marker stay behind and are reported / removed as described in the module docstring.
    """
    location = Location.parse(out)
    if location.exists():
        local = location.local_path
        kind = "a file" if local is not None and local.is_file() else "a store or folder"
        raise StoreExistsError(f"{out}: already exists ({kind}); {what} writes a new store, pick another path")
    if location.local_path is None:
        yield from _build_remote(location, what)
        return
    target = location.local_path
    if target.parent.exists() and not target.parent.is_dir():
        raise StoreError(f"{out}: the parent {target.parent} is a file, not a folder")
    stage = staging_dir(location)
    assert stage is not None
    removed = remove_stale_build(location)
    if removed is not None:
        warnings.warn(
            f"{out}: removed {removed}, the incomplete store of an interrupted earlier build",
            StaleBuildWarning,
            stacklevel=3,
        )
    marker = {
        "what": what,
        "target": str(target),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with translate_write_errors(out):  # a read-only mount or a full disk: the one-line write error
            target.parent.mkdir(parents=True, exist_ok=True)
            stage.mkdir()
            try:
                (stage / MARKER).write_text(json.dumps(marker))
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise
    except FileExistsError:
        raise StoreError(f"{out}: another build started writing {stage} just now; wait for it") from None
    except OSError as err:
        raise StoreError(f"{out}: cannot create the staging folder {stage} ({err})") from err
    built = stage / target.name
    try:
        yield str(built)
        if not built.is_dir():
            raise StoreError(f"{out}: {what} finished without writing a store")
        fsync_tree(built)
        # Under the final path's lock: a writer creating `out` meanwhile either finished first (we
        # refuse) or finds our complete store there (it refuses); neither removes the other's store.
        final_lock = acquire_write_lock(location)
        try:
            if target.exists():
                raise StoreExistsError(f"{out}: appeared while {what} was running; the new store was discarded")
            os.rename(built, target)
            fsync_path(target.parent)  # the rename itself survives a power loss
        finally:
            final_lock.release()
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _build_remote(location: Location, what: str) -> Iterator[str]:
    """Build in place at a remote URL while holding its lease; on failure remove only our own partial store."""
    lock = acquire_write_lock(location)
    try:
        if location.exists():  # created by another writer before we held the lease: never ours to touch
            raise StoreExistsError(f"{location}: already exists; {what} writes a new store, pick another path")
        try:
            with lend_lock(location, lock):
                yield location.url
        except BaseException:
            try:
                lock.check()  # still ours: nothing but this build can have written the URL
            except StoreLockedError:
                warnings.warn(
                    f"{location}: {what} failed after losing its write lease; the partial store it wrote "
                    "there was left and must be removed by hand once nobody writes it",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                remove_partial_store(location)
            raise
    finally:
        lock.release()
