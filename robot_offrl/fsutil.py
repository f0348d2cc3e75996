"""Durable, atomic directory replacement on a local filesystem: one implementation for stores and checkpoints.

A store's ``delete`` and a re-saved checkpoint step both replace a whole directory that readers may be
using. Both need the same three things: an fsync that makes a rename survive a power loss, an atomic
swap where Linux offers one (``renameat2(RENAME_EXCHANGE)``), and otherwise a rename-aside order in
which the old directory is deleted only once the new one is in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a new entry or rename in it becomes durable); best effort."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def replace_directory(new: Path, final: Path, aside: Path) -> None:
    """Put the complete directory ``new`` at the existing ``final``; the old one is then deleted.

    One atomic swap where the OS can. Otherwise ``final`` is renamed to ``aside`` first and ``new``
    into place second: a crash between the two leaves both complete directories on disk (the caller
    knows ``aside`` and can finish the move), never neither.
    """
    if exchange_paths(new, final):
        fsync_path(final.parent)
        shutil.rmtree(new, ignore_errors=True)  # now holds the old directory
        return
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(final, aside)
    os.rename(new, final)
    fsync_path(final.parent)
    shutil.rmtree(aside, ignore_errors=True)
