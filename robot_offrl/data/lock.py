"""One writer per episode store, enforced: an OS file lock locally, an expiring lease on object stores.

Why: every writable open keeps a snapshot of the episode index and commits by rewriting it whole, so
two writers silently undo each other (lost appends, reverted flags, a repair cutting a live append).
Readers never take the lock; they read the last committed index and nothing they do moves data.

Local stores lock ``<parent>/.<name>.lock`` with ``flock(LOCK_EX)``. The file sits beside the store,
not in it, so it outlives the directory swap of ``delete`` and ``repair``; the kernel drops the lock
when the holder exits, even on ``kill -9``. The file holds the holder's pid, host, command and start
time (one JSON line) for the error message only; the lock itself is the ``flock``.

fsspec stores (s3://, gs://, memory://, ...) have no such lock. A JSON lease object
``<parent>/.<name>.lock`` names the holder and an expiry; the holder renews it from a background
thread and checks it is still the holder before every commit. An expired lease may be taken over.
Object stores offer no atomic create-if-absent on every backend, so two writers starting within the
same instant can both believe they won; the read-back after a settle delay and the check before each
commit narrow that window but cannot close it (docs/dataset.md, "Concurrency and guarantees").
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robot_offrl.data.backend import Location
from robot_offrl.data.errors import StoreLockedError, translate_write_errors

LOCK_SUFFIX = ".lock"
# Seconds an fsspec lease lives without renewal; the holder renews it every third of that.
DEFAULT_LEASE_S = 60.0
# How often a waiting writer (``--wait``) retries.
POLL_S = 0.2

# Seconds a write waits for the lock when the caller passes none; set per command by ``wait_for_lock``.
_DEFAULT_WAIT_S: contextvars.ContextVar[float] = contextvars.ContextVar("robot_offrl_lock_wait_s", default=0.0)


@contextlib.contextmanager
def wait_for_lock(seconds: float | None) -> Iterator[None]:
    """Let every store write inside the block wait up to ``seconds`` for the lock (the CLI's ``--wait``).

    A context value rather than a parameter so commands whose write happens deep inside other code
    (``sim collect``, ``record``, the robomimic importer) need no plumbing.
    """
    if seconds is None:
        yield
        return
    if seconds < 0:
        raise StoreLockedError(f"--wait must be >= 0 seconds, got {seconds:g}")
    token = _DEFAULT_WAIT_S.set(float(seconds))
    try:
        yield
    finally:
        _DEFAULT_WAIT_S.reset(token)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written into the lock file or lease."""

    pid: int
    host: str
    command: str
    since: str

    @classmethod
    def me(cls) -> Holder:
        argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
        command = " ".join(" ".join([os.path.basename(argv[0]), *argv[1:]]).split())  # one line, always
        if len(command) > 100:
            command = command[:97] + "..."
        since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), command, since)

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Holder | None:
        try:
            data = json.loads(raw or b"")
            return cls(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["since"]))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`) since {self.since}"

    def alive(self) -> bool:
        """False only when it provably died (same host, no such process): a stale lock file."""
        return process_alive(self.pid, self.host)


def process_alive(pid: object, host: str | None) -> bool:
    """False only when the process provably died: on this host (or none named) and no such pid.

    Another host's process cannot be checked, so it counts as alive. Serves lock holders and the
    markers of builds in progress (staging.py) alike.
    """
    if host is not None and host != socket.gethostname():
        return True
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False  # not a pid any process can have
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or beyond what this system's pids can be
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _locked_error(location: Location, holder: Holder | None, waited: float) -> StoreLockedError:
    who = holder.describe() if holder is not None else "another process (it has not said who yet)"
    tail = f"still held after waiting {waited:g} s" if waited > 0 else "retry when it finishes"
    return StoreLockedError(
        f"{location}: another writer holds the store: {who}; {tail}, or pass --wait SECONDS to wait for it"
    )


class WriteLock:
    """A held write lock. ``check`` before committing; ``release`` when done (idempotent)."""

    holder: Holder

    def check(self) -> None:
        """Raise StoreLockedError when this writer no longer holds the lock (an expired lease)."""

    def release(self) -> None:
        raise NotImplementedError


class BorrowedLock(WriteLock):
    """The caller's lock lent to a helper store (a rebuild beside the store): checks, never releases."""

    def __init__(self, owner: WriteLock) -> None:
        self.owner = owner
        self.holder = owner.holder

    def check(self) -> None:
        self.owner.check()

    def release(self) -> None:
        return None


class _FileLock(WriteLock):
    def __init__(self, fd: int, holder: Holder) -> None:
        self._fd: int | None = fd
        self.holder = holder
        _HELD_LOCKS.add(self)

    def check(self) -> None:
        if self._fd is None:
            raise StoreLockedError(f"{self.holder.describe()}: this handle no longer holds the write lock")

    def _drop_in_forked_child(self) -> None:
        # A forked child shares the parent's lock; closing its copy of the descriptor leaves the
        # parent's lock held and makes the child's handle unable to write.
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # a read-only remount after acquiring: nothing to clear
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock


# Every lock this process holds, so a forked child can disown its copies (``_disown_in_forked_child``).
_HELD_LOCKS: weakref.WeakSet[_FileLock | _Lease] = weakref.WeakSet()


def _disown_in_forked_child() -> None:
    for lock in list(_HELD_LOCKS):
        lock._drop_in_forked_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_disown_in_forked_child)


def lock_file(location: Location) -> Path:
    """The sibling file a local store is locked through (same folder, so the swap never moves it)."""
    return location.sibling(LOCK_SUFFIX)


def _try_file_lock(location: Location) -> tuple[WriteLock | None, Holder | None]:
    path = lock_file(location)
    with translate_write_errors(str(location)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            holder = Holder.parse(os.pread(fd, 4096, 0))
        finally:
            os.close(fd)
        return None, holder
    holder = Holder.me()
    # The text only words other writers' errors: on a full disk the lock still holds without it, and
    # the write that needs space fails later with its own clear error.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
    return _FileLock(fd, holder), None


class _Lease(WriteLock):
    """An fsspec lease: JSON {pid, host, command, since, token, expires_at} renewed by a daemon thread."""

    def __init__(self, where: str, fs: Any, path: str, holder: Holder, lease_s: float) -> None:
        self.where, self.fs, self.path, self.holder, self.lease_s = where, fs, path, holder, float(lease_s)
        self.token = uuid.uuid4().hex
        self.expires_at = 0.0
        self.lost_to: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forked_copy = False

    def _drop_in_forked_child(self) -> None:
        # A forked child inherits the token but not the renewal thread: left alone, its check() would
        # pass (it could commit under the parent's lease) and its release() would delete the parent's
        # lease while the parent still writes. The child's copy is marked lost and releases nothing.
        self._forked_copy = True
        self._thread = None

    def _payload(self, expires_at: float) -> bytes:
        return json.dumps({**asdict(self.holder), "token": self.token, "expires_at": expires_at}).encode()

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # a torn or foreign object: treated as free only once it cannot be parsed
        return data if isinstance(data, dict) else {}

    def write(self) -> None:
        expires_at = time.time() + self.lease_s
        self.fs.pipe_file(self.path, self._payload(expires_at))
        self.expires_at = expires_at

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="store-lease-renewal", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                current = self.read()
                if current is None or current.get("token") != self.token:
                    self.lost_to = Holder.parse(json.dumps(current or {}))
                    return
                self.write()
            except Exception:  # a transient network error: retry until the lease would expire
                continue

    def check(self) -> None:
        if self._forked_copy:
            raise StoreLockedError(
                f"{self.where}: this handle was inherited by a forked process; only the parent holds the "
                "write lease — open the store in the child to write"
            )
        current = self.read()
        if current is not None and current.get("token") == self.token and time.time() < self.expires_at:
            return
        other = Holder.parse(json.dumps(current)) if current else None
        who = f"taken over by {other.describe()}" if other is not None else "expired"
        raise StoreLockedError(
            f"{self.where}: this writer's lease was {who} (not renewed for {self.lease_s:g} s); nothing more "
            "was committed — reopen the store to continue"
        )

    def release(self) -> None:
        if self._forked_copy:
            return  # the parent's lease, not ours to remove
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # an unreachable store: the lease simply expires
            current = self.read()
            if current is not None and current.get("token") == self.token:
                self.fs.rm_file(self.path)


def _lease_target(location: Location) -> tuple[Any, str]:
    fs, path = location._fs()
    path = path.rstrip("/")
    parent, _, name = path.rpartition("/")
    if not name:
        raise StoreLockedError(f"{location}: a store at the root of a bucket cannot hold a lease beside it")
    return fs, f"{parent}/.{name}{LOCK_SUFFIX}" if parent else f".{name}{LOCK_SUFFIX}"


def _try_lease(location: Location, lease_s: float) -> tuple[WriteLock | None, Holder | None]:
    fs, path = _lease_target(location)
    lease = _Lease(str(location), fs, path, Holder.me(), lease_s)
    with translate_write_errors(str(location)):
        current = lease.read()
        if current and time.time() < float(current.get("expires_at", 0)):
            return None, Holder.parse(json.dumps(current))
        parent = path.rpartition("/")[0]
        if parent and not fs.exists(parent):  # a new store in a new folder (filesystems with folders)
            fs.makedirs(parent, exist_ok=True)
        lease.write()
        # Another writer that read "free" at the same moment overwrites us within the settle delay;
        # whoever's token is there after it holds the lease.
        time.sleep(min(1.0, lease.lease_s / 20))
        current = lease.read()
    if not current or current.get("token") != lease.token:
        return None, Holder.parse(json.dumps(current or {}))
    lease.start_renewing()
    _HELD_LOCKS.add(lease)
    return lease, None


# Locks a caller holds for a location while code it calls opens that location itself (a remote
# ``build_beside`` holds the final URL's lease while ``sim collect`` opens it): keyed by ``_lock_key``.
_LENT: contextvars.ContextVar[dict[str, WriteLock] | None] = contextvars.ContextVar("robot_offrl_lent_locks", default=None)


def _lock_key(location: Location) -> str:
    return str(location.local_path) if location.local_path is not None else location.url.rstrip("/")


@contextlib.contextmanager
def lend_lock(location: Location, lock: WriteLock) -> Iterator[None]:
    """Inside the block, taking ``location``'s write lock borrows ``lock`` instead of waiting on ourselves.

    Why: a build that must hold the lock of the path it writes from start to end (so it alone can
    create it and remove what it created) calls code that opens the store the ordinary way.
    """
    lent = dict(_LENT.get() or {})
    lent[_lock_key(location)] = lock
    token = _LENT.set(lent)
    try:
        yield
    finally:
        _LENT.reset(token)


def try_write_lock(location: Location, *, lease_s: float = DEFAULT_LEASE_S) -> tuple[WriteLock | None, Holder | None]:
    """Take the lock now or report who holds it (``(None, holder)``; holder is None when unknown)."""
    if location.local_path is not None:
        return _try_file_lock(location)
    return _try_lease(location, lease_s)


def acquire_write_lock(
    location: Location, *, wait_s: float | None = None, lease_s: float = DEFAULT_LEASE_S
) -> WriteLock:
    """Take the store's write lock, polling up to ``wait_s`` seconds (default: ``wait_for_lock``'s)."""
    lent = (_LENT.get() or {}).get(_lock_key(location))
    if lent is not None:
        lent.check()
        return BorrowedLock(lent)
    wait = _DEFAULT_WAIT_S.get() if wait_s is None else float(wait_s)
    deadline = time.monotonic() + wait
    while True:
        lock, holder = try_write_lock(location, lease_s=lease_s)
        if lock is not None:
            return lock
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _locked_error(location, holder, wait)
        time.sleep(min(POLL_S, remaining))


def active_writer(location: Location) -> Holder | None:
    """Who is writing the store right now, as far as a reader can tell without taking the lock.

    Readers use it only to word messages (an append in progress is not an interrupted one); it never
    decides whether anything may be written.
    """
    if location.local_path is not None:
        try:
            holder = Holder.parse(lock_file(location).read_bytes())
        except OSError:
            return None
        return holder if holder is not None and holder.alive() else None
    try:
        fs, path = _lease_target(location)
        data = json.loads(fs.cat_file(path))
    except Exception:  # no lease, unreachable, unparsable: nobody known
        return None
    if not isinstance(data, dict) or time.time() >= float(data.get("expires_at", 0)):
        return None
    return Holder.parse(json.dumps(data))
