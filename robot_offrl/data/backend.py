"""Where a store lives: a local directory or an fsspec URL, and the filesystem guarantees we lean on.

Crash safety rests on one property of the backend: writing one key (a chunk or a zarr.json) replaces
it whole or not at all. zarr's ``LocalStore`` writes every key to a temp file and renames it into place
(checked in zarr 3.1: ``zarr/storage/_local.py::_atomic_write``), and object stores (S3, GCS) replace
objects whole. fsspec's local filesystem does NOT (it writes in place), so ``file://`` URLs are routed
to ``LocalStore``. On top of that, local writes are fsync'ed before the episode index is committed, so
after a power loss the index never points at data the disk has not kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot_offrl.data.errors import StoreCorruptError, StoreError, StoreNotFoundError
from robot_offrl.fsutil import fsync_path
from robot_offrl.fsutil import replace_directory

# Sibling directories used while rebuilding a store (delete, compaction); see swap_into_place.
REBUILD_SUFFIX = ".rebuild"
OLD_SUFFIX = ".old"
# zarr LocalStore temp files left behind by a writer killed mid-write.
PARTIAL_GLOB = "*.partial"


@dataclass(frozen=True)
class Location:
    """A parsed store address; ``local_path`` is set when the store is a directory on this machine."""

    url: str
    local_path: Path | None

    @classmethod
    def parse(cls, path_or_url: str | os.PathLike[str]) -> Location:
        """``local_path`` is the real directory (symlinks resolved): the lock, the rebuild folder and the
        swap of ``delete``/``repair`` must act on the store itself, not replace a link to it."""
        text = os.fspath(path_or_url)
        if text.startswith("file://"):
            return cls(text, Path(text[len("file://") :]).resolve())
        if "://" in text:
            return cls(text, None)
        return cls(text, Path(text).resolve())

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    def __str__(self) -> str:
        return self.url

    def zarr_store(self, *, read_only: bool) -> Any:
        from zarr.storage import FsspecStore, LocalStore

        if self.local_path is not None:
            return LocalStore(self.local_path, read_only=read_only)
        try:
            return FsspecStore.from_url(self.url, read_only=read_only)
        except (ImportError, ValueError) as err:
            raise StoreError(f"cannot open {self.url}: {err} (is the fsspec backend for it installed?)") from err

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        try:
            return fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as err:
            raise StoreError(
                f"cannot open {self.url}: {err} (pip install s3fs for s3://, gcsfs for gs://)"
            ) from err

    def exists(self) -> bool:
        """Anything at all at this address (a store or not)."""
        if self.local_path is not None:
            return self.local_path.exists()
        fs, path = self._fs()
        return bool(fs.exists(path))

    def read_key(self, key: str) -> bytes | None:
        if self.local_path is not None:
            file = self.local_path / key
            return file.read_bytes() if file.is_file() else None
        fs, path = self._fs()
        full = f"{path.rstrip('/')}/{key}"
        return fs.cat_file(full) if fs.exists(full) else None

    def read_json(self, key: str) -> dict[str, Any]:
        """Parse one zarr.json, turning garbage into a clear StoreCorruptError naming the file."""
        raw = self.read_key(key)
        if raw is None:
            raise StoreNotFoundError(
                f"{self.url}: no episode store here ({key} is missing); create one with "
                "EpisodeStore.create or `robot-offrl data import-robomimic`"
            )
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreCorruptError(
                f"{self.url}: {key} is not valid JSON ({err}); the store is damaged — restore it from a "
                "backup or re-record"
            ) from err
        if not isinstance(data, dict):
            raise StoreCorruptError(f"{self.url}: {key} does not hold a JSON object; the store is damaged")
        return data

    def size_bytes(self) -> int:
        if self.local_path is not None:
            return sum(f.stat().st_size for f in self.local_path.rglob("*") if f.is_file())
        fs, path = self._fs()
        try:
            return int(fs.du(path, total=True))
        except (OSError, NotImplementedError):
            return 0

    def fsync_keys(self, keys: list[str]) -> None:
        """Flush written keys and their directories to disk (local stores only; no-op elsewhere)."""
        if self.local_path is None:
            return
        dirs: set[Path] = set()
        for key in keys:
            file = self.local_path / key
            if file.is_file():
                fsync_path(file)
            parent = file.parent
            while True:
                dirs.add(parent)
                if parent == self.local_path or parent == parent.parent:
                    break
                parent = parent.parent
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_path(d)
        fsync_path(self.local_path.parent)

    def leftover_temp_files(self) -> list[Path]:
        if self.local_path is None or not self.local_path.is_dir():
            return []
        return sorted(self.local_path.rglob(PARTIAL_GLOB))

    def sibling(self, suffix: str) -> Path:
        assert self.local_path is not None
        return self.local_path.parent / f".{self.local_path.name}{suffix}"


def swap_into_place(location: Location, rebuilt: Path) -> None:
    """Replace the store at ``location`` by the complete store at ``rebuilt``.

    With RENAME_EXCHANGE the swap is one atomic step. Without it (other OSes, some filesystems) the
    old store goes to ``.old`` first; a crash between the two renames is finished by
    ``recover_interrupted_swap`` the next time a writer opens the store, because ``rebuilt`` is only
    ever moved once it is complete.
    """
    target = location.local_path
    assert target is not None
    replace_directory(rebuilt, target, location.sibling(OLD_SUFFIX))


def recover_interrupted_swap(location: Location) -> bool:
    """Finish a two-rename swap that a crash interrupted; True when something was recovered."""
    target = location.local_path
    if target is None or target.exists():
        return False
    rebuilt = location.sibling(REBUILD_SUFFIX)
    old = location.sibling(OLD_SUFFIX)
    if rebuilt.is_dir() and old.is_dir():
        os.rename(rebuilt, target)
        fsync_path(target.parent)
        shutil.rmtree(old, ignore_errors=True)
        return True
    if old.is_dir():
        os.rename(old, target)
        return True
    return False


def remove_partial_store(location: Location) -> None:
    """Delete a store this process began creating and could not finish (best effort, never raises).

    Only called by the creator while it holds the store's lock, so nobody else's data is at the path.
    """
    with contextlib.suppress(Exception):
        if location.local_path is not None:
            shutil.rmtree(location.local_path, ignore_errors=True)
            return
        fs, path = location._fs()
        if fs.exists(path):
            fs.rm(path, recursive=True)


def stale_siblings(location: Location) -> list[Path]:
    """Leftovers of an interrupted rebuild next to an intact store; safe to delete."""
    if location.local_path is None or not location.local_path.exists():
        return []
    return [p for p in (location.sibling(REBUILD_SUFFIX), location.sibling(OLD_SUFFIX)) if p.exists()]


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root``: used once after bulk copies written without fsync."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        fsync_path(path)
    fsync_path(root)
    fsync_path(root.parent)
